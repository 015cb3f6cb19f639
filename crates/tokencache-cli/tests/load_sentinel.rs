//! `tokencache load` through a real Sentinel (`redis-server --sentinel`, a master and a
//! replica) while `SENTINEL FAILOVER` switches the master: no caller sees an error, no
//! acknowledged save is lost, and the replicas agree.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

fn report(stdout: &str) -> HashMap<String, u64> {
    let line = stdout.lines().last().unwrap_or_default();
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[test]
fn a_failover_under_load_loses_nothing_and_no_caller_sees_an_error() {
    let sentinel = testkit::RedisSentinel::start();
    let old = sentinel.master_port();
    let (out, new) = std::thread::scope(|s| {
        let failover = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            sentinel.failover()
        });
        let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
            .args(["load", "--store", &sentinel.url(), "--replicas", "2"])
            .args(["--duration", "8", "--users", "30"])
            .args(["--writers-share", "0.3", "--signout-share", "0.02"])
            .env("TOKENCACHE_LOG", "off")
            .output()
            .unwrap();
        (out, failover.join().unwrap())
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(old, new, "the master changed during the run");
    let r = report(&stdout);
    assert!(r["ops"] > 0, "{stdout}");
    assert_eq!(
        (
            r["caller_errors"],
            r["lost"],
            r["lost_updates"],
            r["stale_reads"],
            r["served_after_signout"]
        ),
        (0, 0, 0, 0, 0),
        "{stdout}"
    );
    // The new master holds the run's keys (the load writes under its own prefix and
    // removes them at the end: what is left is nothing, on the master now in charge).
    assert_eq!(
        sentinel.server(new).cli(&["ROLE"]).lines().next(),
        Some("master")
    );
}
