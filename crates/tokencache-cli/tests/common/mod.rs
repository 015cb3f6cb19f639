//! What the CLI's test files share: the binary as a process with a clean environment,
//! its output as text, and a server that accepts connections and never answers.
#![allow(dead_code)] // each test file uses its own part

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

/// `tokencache` with none of the tool's variables from the test's own environment.
pub fn tokencache() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokencache"));
    for var in [
        "TOKENCACHE_STORE",
        "TOKENCACHE_PREFIX",
        "TOKENCACHE_KEYS",
        "TOKENCACHE_KEYS_FILE",
        "TOKENCACHE_LOG",
        "TOKENCACHE_CLIENT_SECRET",
        "TOKENCACHE_ACCEPT_PLAINTEXT",
    ] {
        c.env_remove(var);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `tokencache args` and waits for it.
pub fn run(args: &[&str]) -> Output {
    tokencache().args(args).output().expect("run tokencache")
}

/// stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// stderr, asserting it is one line.
pub fn one_line_error(out: &Output) -> String {
    let (_, err) = text(out);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    err.trim().to_string()
}

/// A TCP port that accepts connections and never answers (a stopped server, a
/// firewall that lets the handshake through): clients time out. Held until dropped.
pub struct Silent {
    listener: TcpListener,
}

impl Silent {
    /// Starts accepting on a free loopback port (the connections are kept open).
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let accept = listener.try_clone().expect("clone the listener");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in accept.incoming().flatten() {
                held.push(c);
            }
        });
        Silent { listener }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().expect("addr").port()
    }
}

/// The machine-readable last line `word: k=v ...` (or `k=v ...` when `word` is empty)
/// as a map; panics when the command failed.
pub fn last_line(out: &Output, word: &str) -> std::collections::BTreeMap<String, String> {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "exit {:?}: {stderr}\n{stdout}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let rest = if word.is_empty() {
        last
    } else {
        last.strip_prefix(&format!("{word}: "))
            .unwrap_or_else(|| panic!("last line {last:?} in\n{stdout}"))
    };
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}
