//! Progress for commands that run longer than a couple of seconds: a phase name and a
//! bar on stderr when stderr is a terminal; nothing at all when it is not (piped or
//! redirected output stays the command's own lines).
//!
//! Phases that print a line of their own (`bench`) print it to stdout as before; the
//! bars are extra and never mix into stdout.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
/// thread of its own (so it moves even while the command keeps its runtime busy)
/// until [`Timed::finish`] or drop.
pub(crate) struct Timed {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Timed {
    /// Starts the phase `what`, expected to last `length`.
    pub(crate) fn start(what: &str, length: Duration) -> Self {
        let tenths = (length.as_millis() / 100).max(1) as u64;
        let bar = ProgressBar::with_draw_target(Some(tenths), target());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {elapsed}/{duration}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = (!bar.is_hidden()).then(|| {
            let (bar, stop, started) = (bar.clone(), stop.clone(), Instant::now());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let done = (started.elapsed().as_millis() / 100) as u64;
                    bar.set_position(done.min(tenths));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        });
        Timed { bar, stop, ticker }
    }

    /// Ends the phase and clears its bar.
    pub(crate) fn finish(self) {
        drop(self);
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}
