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
fn load_cleans_up_after_itself_unless_kept() {
    let server = testkit::RedisServer::start();
    let run = |extra: &[&str]| {
        let out = tokencache()
            .args(["load", "--store", &server.url(), "--users", "10"])
            .args(["--duration", "0.5", "--signout-share", "0.2"])
            .args(extra)
            .env("TOKENCACHE_LOG", "off")
            .env_remove("TOKENCACHE_PREFIX")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report(&out.stdout)["ops"] > 0);
        stdout
    };
    let stdout = run(&[]);
    assert!(stdout.contains("removed the run's"), "{stdout}");
    assert_eq!(server.cli(&["DBSIZE"]).trim(), "0", "nothing left behind");

    // A prefix shared with an application: only the run's own keys go.
    assert_eq!(server.cli(&["SET", "app:someone.else", "{}"]), "OK");
    let stdout = run(&["--prefix", "app:"]);
    assert!(stdout.contains("removed the run's"), "{stdout}");
    assert_eq!(
        server.cli(&["--scan"]).trim(),
        "app:someone.else",
        "{stdout}"
    );
    assert_eq!(server.cli(&["DEL", "app:someone.else"]), "1");

    let stdout = run(&["--keep", "--prefix", "kept:"]);
    assert!(
        stdout.contains("kept the run's keys under prefix \"kept:\""),
        "{stdout}"
    );
    let keys = server.cli(&["--scan"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with("kept:")), "{keys:?}");
    // Fake users only: never a real, well-known tenant id.
    assert!(
        keys.iter().all(|k| !k.contains(tokencache::sample::TENANT)),
        "{keys:?}"
    );
    // TOKENCACHE_PREFIX is the default of --prefix.
    let out = tokencache()
        .args(["load", "--store", &server.url(), "--users", "3"])
        .args(["--duration", "0.2", "--keep"])
        .env("TOKENCACHE_LOG", "off")
        .env("TOKENCACHE_PREFIX", "fromenv:")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(server
        .cli(&["--scan", "--pattern", "fromenv:*"])
        .contains("fromenv:"));
}

#[test]
fn load_against_a_dead_redis_fails_at_once() {
    let port = testkit::free_port();
    let started = std::time::Instant::now();
    let out = tokencache()
        .args(["load", "--store", &format!("redis://127.0.0.1:{port}")])
        .args(["--duration", "30", "--settle", "30"])
        .env("TOKENCACHE_LOG", "off")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "not after duration + settle"
    );
    assert!(err.contains("connection"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
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
