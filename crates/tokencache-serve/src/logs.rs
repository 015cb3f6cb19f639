//! The log lines of `tokencache` and `tokencache-serve` on stderr, and the one rule
//! they share with every other line the tools print: a closed stderr (`2>&-`, a pipe
//! whose reader is gone) never stops the process. `tracing-subscriber` writes through
//! [`QuietStderr`], which takes a failed write as done, and is told not to report its
//! own write errors (it would report them with `eprint!`, which panics on a closed
//! stderr, and a panic there aborts the process).

use std::io::{IsTerminal, Write};

/// `tracing`'s writer: stderr, where a write that fails (closed, broken pipe) is taken
/// as written, so that a log line never ends the process.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(std::io::stderr().write(buf).unwrap_or(buf.len()))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let _ = std::io::stderr().write_all(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QuietStderr {
    type Writer = QuietStderr;

    fn make_writer(&'a self) -> Self::Writer {
        QuietStderr
    }
}

/// Installs the log subscriber: lines on stderr through [`QuietStderr`], filtered by
/// `TOKENCACHE_LOG` (else `default_filter`); JSON lines, or text with ANSI colours
/// only when stderr is a terminal.
pub fn init(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(QuietStderr)
        .log_internal_errors(false);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Writes one line on stderr; a closed stderr is ignored (never a panic).
pub fn error_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The panic hook of both binaries: one line on stderr (panics are bugs; users get
/// no backtrace), written so that a closed stderr cannot turn it into an abort.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        error_line(&format!("error: internal error: {info}"));
    }));
}
