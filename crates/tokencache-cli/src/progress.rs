//! Progress for commands that run longer than a couple of seconds: a phase name and a
//! bar on stderr when stderr is a terminal; nothing at all when it is not (piped or
//! redirected output stays the command's own lines).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Where bars draw: stderr on a terminal, nowhere otherwise.
fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar of `len` steps for the phase `what` (`len` 0: a spinner with a counter).
pub(crate) fn bar(what: &str, len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target((len > 0).then_some(len), target());
    let template = if len > 0 {
        "{spinner} {msg} [{bar:40}] {pos}/{len} ({elapsed})"
    } else {
        "{spinner} {msg} {pos} ({elapsed})"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A spinner for the phase `what`, for steps of unknown number.
pub(crate) fn spinner(what: &str) -> ProgressBar {
    bar(what, 0)
}

/// A bar that fills over `length` of wall-clock time (a timed run), ticked by a
/// background task until [`Timed::finish`] or drop.
pub(crate) struct Timed {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Timed {
    /// Starts the phase `what`, expected to last `length`. Must run inside a runtime.
    pub(crate) fn start(what: &str, length: Duration) -> Self {
        let tenths = (length.as_millis() / 100).max(1) as u64;
        let bar = ProgressBar::with_draw_target(Some(tenths), target());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {elapsed}/{duration}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        let started = Instant::now();
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let done = (started.elapsed().as_millis() / 100) as u64;
                ticking.set_position(done.min(tenths));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Timed { bar, ticker }
    }

    /// Ends the phase and clears its bar.
    pub(crate) fn finish(self) {
        drop(self);
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
