//! Stopping early, cleanly: Ctrl-C (SIGINT), SIGTERM, or a stdout whose reader went
//! away, for the commands that write to a store (`load`, `simulate`, `bench`).
//!
//! The first signal asks the command to stop: it ends its traffic, removes what it
//! wrote, says so, and exits 130 (SIGINT) or 143 (SIGTERM). A second signal exits at
//! once and prints what was left (the prefix of the run's keys); those keys end by
//! themselves, since everything these commands write gets a TTL of at most the run's
//! length plus a margin ([`crate::capped`]), and `tokencache purge --prefix P --force`
//! removes them now.
//!
//! Signals are watched by a thread of their own (with its own small runtime), so a
//! second Ctrl-C works even while the command keeps its own runtime busy (`bench`'s
//! tight loops). Commands that do not [`install`] it keep the default: Ctrl-C ends
//! them at once (they write nothing that would be left).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The signal that asked (0: none; the stdout reader went away).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static WAKE: Notify = Notify::const_new();
/// What exiting now would leave behind, for the second Ctrl-C's line.
static LEFT: Mutex<Option<String>> = Mutex::new(None);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Watches SIGINT and SIGTERM from now on (see the module docs).
pub(crate) fn install() {
    let ready = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ = ready.0.send(());
                return;
            };
            rt.block_on(watch(ready.0));
        });
    if spawned.is_ok() {
        // The handlers are in place before the command writes anything.
        let _ = ready.1.recv();
    }
}

async fn watch(ready: std::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = ready.send(());
        return;
    };
    let _ = ready.send(());
    loop {
        let sig = tokio::select! {
            _ = int.recv() => SIGINT,
            _ = term.recv() => SIGTERM,
        };
        if REQUESTED.load(Ordering::SeqCst) && SIGNAL.load(Ordering::SeqCst) != 0 {
            let left = LEFT
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_else(|| "nothing".into());
            errln!("interrupted again: exiting at once; left behind: {left}");
            crate::out::flush();
            std::process::exit(128 + sig);
        }
        SIGNAL.store(sig, Ordering::SeqCst);
        REQUESTED.store(true, Ordering::SeqCst);
        WAKE.notify_waiters();
        errln!("interrupted: stopping and removing what this run wrote (interrupt again to exit at once)");
    }
}

/// Called when stdout's reader went away: stop as after Ctrl-C, without a word.
pub(crate) fn stdout_gone() {
    REQUESTED.store(true, Ordering::SeqCst);
    WAKE.notify_waiters();
}

/// Whether the command was asked to stop.
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Whether a signal asked (not a closed stdout, which ends a command without a word).
pub(crate) fn signalled() -> bool {
    SIGNAL.load(Ordering::SeqCst) != 0
}

/// Resolves once the command is asked to stop (at once if it was).
pub(crate) async fn wait() {
    loop {
        let woken = WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if requested() {
            return;
        }
        woken.await;
    }
}

/// Says what exiting at once would leave behind (`None`: nothing).
pub(crate) fn leaving(what: Option<String>) {
    if let Ok(mut l) = LEFT.lock() {
        *l = what;
    }
}

/// The exit code of a command stopped by a signal (130 for SIGINT, 143 for SIGTERM).
pub(crate) fn signal_exit_code() -> Option<u8> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(128 + sig as u8),
    }
}
