//! Progress of the long-running commands: phases and a bar on a terminal (a pseudo
//! terminal made by `script`), nothing but the command's own lines when piped; and
//! log colours only on a terminal.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tokencache");

/// Runs `args` with stdout and stderr piped; returns (stdout, stderr).
fn piped(args: &[&str]) -> (String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("TOKENCACHE_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `args` on a pseudo terminal (util-linux `script`); returns what it showed.
fn on_a_terminal(args: &[&str]) -> String {
    let command = std::iter::once(BIN)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TOKENCACHE_LOG", "off")
        .output()
        .expect("util-linux script(1) makes the pseudo terminal");
    assert!(out.status.success(), "{command}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bench_and_load_are_quiet_when_piped() {
    let (stdout, stderr) = piped(&["bench", "--seconds", "1"]);
    assert!(stderr.is_empty(), "no bar when piped: {stderr:?}");
    assert!(!stdout.contains('\u{1b}'), "no escape codes: {stdout:?}");
    assert!(
        stdout.lines().last().unwrap().starts_with("l1_ns="),
        "{stdout}"
    );
    let (stdout, stderr) = piped(&["load", "--store", "memory://", "--duration", "1"]);
    assert!(stderr.is_empty(), "no bar when piped: {stderr:?}");
    assert!(!stdout.contains('\u{1b}'));
    assert!(
        stdout.lines().last().unwrap().starts_with("ops="),
        "{stdout}"
    );
}

#[test]
fn bench_and_load_show_phases_on_a_terminal() {
    let shown = on_a_terminal(&["bench", "--seconds", "1"]);
    assert!(shown.contains("phase 1/2: L1 hit"), "{shown:?}");
    assert!(shown.contains("phase 2/2: L2 hit"), "{shown:?}");
    assert!(shown.contains("l1_ns="), "{shown:?}");
    let shown = on_a_terminal(&["load", "--store", "memory://", "--duration", "1.5"]);
    assert!(shown.contains("traffic, 100 users, 4 tasks"), "{shown:?}");
    assert!(shown.contains("ops="), "{shown:?}");
}

/// Logs (`TOKENCACHE_LOG`) are plain text when stderr is not a terminal, coloured on one.
#[test]
fn logs_have_colours_only_on_a_terminal() {
    let args = [
        "load",
        "--store",
        "memory://",
        "--duration",
        "0.3",
        "--chaos",
        "p=1,kind=connection",
    ];
    let out = Command::new(BIN)
        .args(args)
        .env("TOKENCACHE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("L2 unreachable"),
        "the log is there: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no ANSI escape when piped: {stderr:?}"
    );
    let command = std::iter::once(BIN)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    let shown = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TOKENCACHE_LOG", "warn")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("L2 unreachable"), "{shown:?}");
    assert!(
        shown.contains("\u{1b}[3"),
        "colours on a terminal: {shown:?}"
    );
}
