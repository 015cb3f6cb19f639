//! Output that never panics: every line the tool prints goes through [`outln!`] (stdout)
//! or [`errln!`] (stderr), never `println!`/`eprintln!`, which panic when the other end
//! of a pipe is gone (`tokencache simulate | head -1`).
//!
//! * stdout closed (`EPIPE`): nothing more is written, and a command that runs for a
//!   while is asked to stop ([`crate::cancel`]) and clean up as after Ctrl-C; the tool
//!   then exits 0 without a word (the reader had what it wanted). Any other write
//!   error of stdout (a full disk) ends the command with exit code 2.
//! * stderr closed: its lines are dropped; the command goes on.
//!
//! The log writer (`tokencache_serve::logs::QuietStderr`) does the same for `tracing`'s
//! lines.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicU8, Ordering};

/// stdout's state: 0 open, 1 closed by the reader (EPIPE), 2 failed otherwise.
static STDOUT: AtomicU8 = AtomicU8::new(OPEN);
const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const FAILED: u8 = 2;

/// Writes to stdout; see the module docs for what happens when it cannot.
pub(crate) fn write_out(args: fmt::Arguments<'_>) {
    if STDOUT.load(Ordering::Relaxed) != OPEN {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        let state = if e.kind() == ErrorKind::BrokenPipe {
            CLOSED
        } else {
            FAILED
        };
        STDOUT.store(state, Ordering::Relaxed);
        crate::cancel::stdout_gone();
    }
}

/// Writes to stderr; a closed or failing stderr is ignored.
pub(crate) fn write_err(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// How stdout ended, once the command is done: `None` while it took every line, or
/// `Some(true)` closed by its reader (quiet), `Some(false)` failed otherwise.
pub(crate) fn stdout_closed() -> Option<bool> {
    match STDOUT.load(Ordering::Relaxed) {
        OPEN => None,
        CLOSED => Some(true),
        _ => Some(false),
    }
}

/// Flushes stdout at the end of a command, noting a reader that went away.
pub(crate) fn flush() {
    if STDOUT.load(Ordering::Relaxed) == OPEN {
        if let Err(e) = std::io::stdout().lock().flush() {
            let state = if e.kind() == ErrorKind::BrokenPipe {
                CLOSED
            } else {
                FAILED
            };
            STDOUT.store(state, Ordering::Relaxed);
        }
    }
}
