//! `tokencache load --replicas N` end to end on a real redis-server: three replicas
//! agree while the server keeps killing their subscriptions, and the checker catches
//! the stale reads of replicas built without the backplane (it is able to fail).

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

fn tokencache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokencache"))
}

/// The report line's fields: today's and the checker's.
const FIELDS: [&str; 12] = [
    "ops",
    "caller_errors",
    "l2_errors",
    "queued",
    "recovered",
    "lost",
    "replicas",
    "stale_reads",
    "lost_updates",
    "served_after_signout",
    "invalidation_p50_us",
    "invalidation_p99_us",
];

/// Parses the last line of stdout into its fields (all of them must be there).
fn report(out: &Output) -> HashMap<String, u64> {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default().to_string();
    let map: HashMap<String, u64> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in `{line}`"));
            (k.to_string(), v)
        })
        .collect();
    for k in FIELDS {
        assert!(map.contains_key(k), "`{k}` missing from `{line}`");
    }
    assert_eq!(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect::<Vec<_>>(),
        FIELDS,
        "the fields, in order"
    );
    map
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn three_replicas_agree_while_the_server_kills_their_subscriptions() {
    let server = testkit::RedisServer::start();
    let done = AtomicBool::new(false);
    let kills = AtomicU32::new(0);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            // Every 2 s (in 100 ms steps, to stop soon after the run).
            let mut ticks = 0;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                ticks += 1;
                if ticks % 20 == 0 {
                    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
                    if killed.trim().parse::<u32>().is_ok_and(|n| n > 0) {
                        kills.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
        let out = tokencache()
            .args(["load", "--store", &server.url(), "--replicas", "3"])
            .args(["--duration", "15", "--users", "50"])
            .args(["--writers-share", "0.3", "--signout-share", "0.05"])
            .env("TOKENCACHE_LOG", "off")
            .output()
            .unwrap();
        done.store(true, Ordering::SeqCst);
        out
    });
    succeeded(&out);
    let r = report(&out);
    assert!(
        kills.load(Ordering::SeqCst) >= 5,
        "the server killed the replicas' subscriptions while they ran"
    );
    assert_eq!(r["replicas"], 3);
    assert!(r["ops"] > 0);
    assert_eq!(
        (
            r["stale_reads"],
            r["lost_updates"],
            r["served_after_signout"],
            r["caller_errors"],
            r["lost"],
        ),
        (0, 0, 0, 0, 0),
        "{r:?}"
    );
    // Measured (reported, never asserted on speed): there were samples.
    assert!(r["invalidation_p99_us"] >= r["invalidation_p50_us"]);
    assert!(r["invalidation_p50_us"] > 0, "{r:?}");
}

#[test]
fn without_the_backplane_the_checker_sees_stale_reads_and_fails() {
    let server = testkit::RedisServer::start();
    let run = |extra: &[&str]| {
        tokencache()
            .args(["load", "--store", &server.url(), "--replicas", "3"])
            .args(["--duration", "3", "--users", "20"])
            .args(["--writers-share", "0.3", "--signout-share", "0.02"])
            .args(extra)
            .env("TOKENCACHE_LOG", "off")
            .output()
            .unwrap()
    };
    let out = run(&["--no-backplane"]);
    // A broken promise fails the run, after the report line.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("broke"), "{err}");
    let off = report(&out);
    assert!(off["stale_reads"] > 0, "{off:?}");
    // nothing to measure without messages
    assert_eq!(
        (off["invalidation_p50_us"], off["invalidation_p99_us"]),
        (0, 0)
    );
    // L2 itself is right either way: only L1s go stale.
    assert_eq!((off["lost_updates"], off["lost"]), (0, 0), "{off:?}");
    // The same traffic with the backplane: nothing stale.
    let out = run(&[]);
    succeeded(&out);
    let on = report(&out);
    assert_eq!(
        (
            on["stale_reads"],
            on["served_after_signout"],
            on["lost_updates"]
        ),
        (0, 0, 0),
        "{on:?}"
    );
}

/// Every anomaly counter of a report is 0 (and the run succeeded).
fn clean(out: &Output) -> HashMap<String, u64> {
    succeeded(out);
    let r = report(out);
    assert_eq!(
        (
            r["caller_errors"],
            r["lost"],
            r["stale_reads"],
            r["lost_updates"],
            r["served_after_signout"],
        ),
        (0, 0, 0, 0, 0),
        "{r:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r
}

/// Redis stopped mid-run and restarted empty, three runs: what was acknowledged and
/// written again after the restart is all there; the outage was lived through.
#[test]
fn a_redis_outage_mid_run_loses_nothing() {
    for _ in 0..3 {
        let mut server = testkit::RedisServer::start();
        let child = tokencache()
            .args(["load", "--store", &server.url(), "--users", "20"])
            .args(["--duration", "5", "--writers-share", "0.3"])
            .env("TOKENCACHE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        server.stop();
        std::thread::sleep(Duration::from_millis(1000));
        server.restart();
        let out = child.wait_with_output().unwrap();
        let r = clean(&out);
        assert!(
            r["l2_errors"] > 0 && r["queued"] > 0,
            "the outage happened: {r:?}"
        );
    }
}

/// `--replicas 3 --chaos p=0.2,kind=timeout`, twice: no token acquired before a
/// sign-out is left in L2 (`lost`), nothing stale, nothing lost.
#[test]
fn three_replicas_under_l2_timeouts_break_no_promise() {
    let server = testkit::RedisServer::start();
    for _ in 0..2 {
        let out = tokencache()
            .args(["load", "--store", &server.url(), "--replicas", "3"])
            .args(["--users", "20", "--duration", "4"])
            .args(["--chaos", "p=0.2,kind=timeout"])
            .env("TOKENCACHE_LOG", "warn")
            .output()
            .unwrap();
        let r = clean(&out);
        assert!(r["l2_errors"] > 0, "{r:?}");
    }
}

/// Three replicas as a Redis 7 ACL user without channel permission: no backplane, so
/// L1 stays bypassed and every read goes to L2; nothing stale, nothing served after a
/// sign-out.
#[test]
fn replicas_of_a_user_without_channel_permission_serve_nothing_stale() {
    let server = testkit::RedisServer::start();
    let acl = server.cli(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-pw",
        "~*",
        "resetchannels",
        "+@all",
    ]);
    assert_eq!(acl, "OK");
    let url = format!("redis://app:app-pw@127.0.0.1:{}", server.port());
    for _ in 0..2 {
        let out = tokencache()
            .args(["load", "--store", &url, "--replicas", "3"])
            .args(["--users", "20", "--duration", "3"])
            .args(["--writers-share", "0.3", "--signout-share", "0.05"])
            .env("TOKENCACHE_LOG", "off")
            .output()
            .unwrap();
        clean(&out);
    }
}

#[test]
fn one_replica_is_the_default_and_measures_no_invalidation() {
    let out = tokencache()
        .args(["load", "--store", "memory://", "--duration", "0.5"])
        .env("TOKENCACHE_LOG", "off")
        .output()
        .unwrap();
    succeeded(&out);
    let r = report(&out);
    assert_eq!(r["replicas"], 1);
    assert_eq!((r["invalidation_p50_us"], r["invalidation_p99_us"]), (0, 0));
    assert_eq!(
        (
            r["stale_reads"],
            r["lost_updates"],
            r["served_after_signout"]
        ),
        (0, 0, 0),
        "{r:?}"
    );
}

#[test]
fn replica_flags_are_range_checked() {
    for bad in [
        "--replicas=0",
        "--replicas=65",
        "--replicas=three",
        "--stale-bound-ms=-1",
        "--stale-bound-ms=60001",
        "--stale-bound-ms=1.5",
    ] {
        let out = tokencache()
            .args(["load", "--store", "memory://", "--duration", "1"])
            .arg(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{bad:?}: {err}");
        let flag = bad.split('=').next().unwrap_or_default();
        assert!(err.contains(flag), "{bad:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}
