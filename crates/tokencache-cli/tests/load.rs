//! `tokencache load` end to end: against a memory store with injected faults, and
//! against a real redis-server; L2 failures never reach callers and nothing is lost.

use std::process::Command;

fn tokencache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokencache"))
}

/// Parses `ops=.. caller_errors=.. ...` into (name, value) pairs.
fn report(stdout: &[u8]) -> std::collections::HashMap<String, u64> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or_default().to_string();
    let map: std::collections::HashMap<String, u64> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.parse()
                    .unwrap_or_else(|_| panic!("bad value in `{line}`")),
            )
        })
        .collect();
    for k in [
        "ops",
        "caller_errors",
        "l2_errors",
        "queued",
        "recovered",
        "lost",
    ] {
        assert!(map.contains_key(k), "`{k}` missing from `{line}`");
    }
    map
}

#[test]
fn load_with_chaos_surfaces_no_error_and_loses_nothing() {
    let out = tokencache()
        .args([
            "load",
            "--store",
            "memory://",
            "--users",
            "20",
            "--duration",
            "1",
            "--writers-share",
            "0.5",
        ])
        .args([
            "--signout-share",
            "0",
            "--chaos",
            "p=0.3,kind=connection,seed=7",
        ])
        .env("TOKENCACHE_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out.stdout);
    assert!(r["ops"] > 0);
    assert_eq!(r["caller_errors"], 0);
    assert!(r["l2_errors"] > 0, "chaos injected failures");
    assert!(r["queued"] > 0);
    assert_eq!(r["lost"], 0);
}

#[test]
fn load_against_redis_reports_a_clean_run() {
    let server = testkit::RedisServer::start();
    let out = tokencache()
        .args([
            "load",
            "--store",
            &server.url(),
            "--users",
            "10",
            "--duration",
            "1",
        ])
        .env("TOKENCACHE_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out.stdout);
    assert!(r["ops"] > 0);
    assert_eq!(
        (r["caller_errors"], r["l2_errors"], r["queued"], r["lost"]),
        (0, 0, 0, 0),
        "{r:?}"
    );
}

#[test]
fn load_rejects_bad_arguments() {
    let out = tokencache()
        .args([
            "load",
            "--store",
            "memory://",
            "--duration",
            "1",
            "--chaos",
            "p=7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 0 and 1"));
}
