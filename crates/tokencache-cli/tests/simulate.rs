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
