//! `tokencache simulate`, run as a user runs it (the binary, default embedded store),
//! on a small, fast workload: tokencache ends with no orphaned partition, the
//! Microsoft.Identity.Web default keeps piling them up as the horizon grows, and a seed
//! gives the same run every time.

use std::collections::BTreeMap;
use std::process::Command;

/// Runs a small simulation; returns stdout.
fn simulate(hours: u32, seed: u64, chart: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args([
            "simulate",
            "--users",
            "30",
            "--refresh-token-hours",
            "6",
            "--sample-minutes",
            "120",
        ])
        .args(["--hours", &hours.to_string(), "--seed", &seed.to_string()])
        .arg("--chart")
        .arg(chart)
        .output()
        .expect("run tokencache simulate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "simulate failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The last line, `orphaned: name=n ...`, as a map.
fn orphaned(stdout: &str) -> BTreeMap<String, u64> {
    let last = stdout.lines().last().expect("some output");
    let rest = last
        .strip_prefix("orphaned: ")
        .unwrap_or_else(|| panic!("last line: {last:?}"));
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=n");
            (k.to_string(), v.parse().expect("a count"))
        })
        .collect()
}

#[test]
fn tokencache_leaves_no_orphans_while_the_default_piles_them_up() {
    let dir = tempfile::tempdir().unwrap();
    let short = orphaned(&simulate(14, 3, &dir.path().join("short.svg")));
    let long_out = simulate(30, 3, &dir.path().join("long.svg"));
    let long = orphaned(&long_out);
    assert_eq!(
        long.keys().cloned().collect::<Vec<_>>(),
        ["msidweb-default", "msidweb-sliding", "tokencache"]
    );
    assert_eq!(short["tokencache"], 0, "{short:?}");
    assert_eq!(long["tokencache"], 0, "{long:?}\n{long_out}");
    assert!(short["msidweb-default"] > 0, "{short:?}");
    assert!(
        long["msidweb-default"] > short["msidweb-default"],
        "the default grows with the horizon: {short:?} then {long:?}"
    );
    // No key in L2 that the run did not produce, no L2 error.
    assert!(!long_out.contains("warning:"), "{long_out}");

    let svg = std::fs::read_to_string(dir.path().join("long.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // all keys + orphaned, for each of the three policies
    assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
    assert!(svg.contains("tokencache-orphaned"));
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("elapsed:") && !l.starts_with("chart:"))
            .map(str::to_string)
            .collect()
    };
    let a = simulate(10, 11, &dir.path().join("a.svg"));
    let b = simulate(10, 11, &dir.path().join("b.svg"));
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(a.lines().last(), b.lines().last());
    let c = simulate(10, 12, &dir.path().join("c.svg"));
    assert_ne!(strip(&a), strip(&c), "another seed, other traffic");
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["simulate", "--sign-out-share", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--sign-out-share"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn an_unwritable_chart_fails_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("chart.svg");
    for chart in [missing.as_path(), dir.path()] {
        let started = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
            .args(["simulate", "--hours", "200", "--chart"])
            .arg(chart)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--chart"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty(), "nothing ran");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    assert!(!missing.parent().unwrap().exists());
}

/// On Redis the run is paced; the report says how far behind schedule events ran, and
/// warns when a pace the machine cannot keep made it fall behind.
#[test]
fn a_paced_run_reports_its_lag_and_warns_when_it_falls_behind() {
    let server = testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let run = |pace: &str, hours: &str, users: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
            .args(["simulate", "--store", &server.url(), "--pace", pace])
            .args([
                "--hours",
                hours,
                "--users",
                users,
                "--sample-minutes",
                "120",
            ])
            .arg("--chart")
            .arg(dir.path().join("c.svg"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    // 3 virtual hours in 3 real seconds: a pace this machine keeps.
    let kept = run("3600", "3", "20");
    assert!(kept.contains("  pacing: events ran at most"), "{kept}");
    assert!(!kept.contains("fell behind"), "{kept}");
    // 6 virtual hours in 0.2 real seconds: no machine does that work in time.
    let behind = run("100000", "6", "100");
    assert!(
        behind.contains("warning: the run fell behind virtual time"),
        "{behind}"
    );
    assert!(behind.contains("use a lower --pace"), "{behind}");
}

/// Piped, each sample's line comes out as it is measured, not with the report at the
/// end: once the first line is out, the store is paused (SIGSTOP), so the run cannot
/// go on; the lines that do come are those already written, and the report is not
/// among them. Then the store resumes and the run ends with every line.
#[test]
fn piped_output_streams_each_sample_line() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;
    let server = testkit::RedisServer::start();
    let info = server.cli(&["INFO", "server"]);
    let redis_pid = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:"))
        .unwrap()
        .to_string();
    let pause = |how: &str| {
        assert!(Command::new("kill")
            .args([how, &redis_pid])
            .status()
            .unwrap()
            .success())
    };
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["simulate", "--store", &server.url(), "--pace", "1800"])
        .args(["--hours", "6", "--users", "50", "--chart"])
        .arg(dir.path().join("c.svg"))
        .env("TOKENCACHE_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let is_row = |l: &str| {
        l.split_whitespace()
            .next()
            .is_some_and(|h| h.parse::<u32>().is_ok())
    };
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("a line");
        let row = is_row(&line);
        lines.push(line);
        if row {
            break;
        }
    }
    pause("-STOP");
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
        lines.push(line);
    }
    pause("-CONT");
    assert!(
        !lines.iter().any(|l| l.starts_with("At the end")),
        "the report came with the first sample line: {lines:?}"
    );
    lines.extend(rx.iter());
    let status = child.wait().unwrap();
    assert!(status.success());
    let rows = lines.iter().filter(|l| is_row(l)).count();
    assert_eq!(rows, 7, "hours 0 to 6, every one: {lines:?}");
    assert!(lines.last().unwrap().starts_with("orphaned: "));
}
