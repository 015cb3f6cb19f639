//! `tokencache rekey` during a key rotation, as an operator runs it: the store, prefix
//! and keys from the environment, over a Redis it shares with another application's
//! lists, sets, hashes and values, and with tokencache's own stamps and link sets.
//! Every partition moves to the new primary; `unreadable` counts only what cannot be
//! opened; the other application's keys are untouched and counted as skipped; a
//! missing store is an error, never a new one.

mod common;

use common::{last_line, tokencache};
use std::process::Output;
use testkit::RedisServer;
use tokencache::protect::{self, Key, KeyId, KeyRing, Stored};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::{SaveFor, SaveRequest, TokenCache};

const OLD: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const NEW: &str = "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const DOWNSTREAM: &[&str] = &["api://downstream/Orders.Read"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Under `app1:` with the old key: two users, an OBO partition linked to the first
/// (a link set), a third user signed out (a revocation stamp); and another
/// application's keys of every type, outside any prefix.
async fn prepare(url: &str) {
    let ring = KeyRing::parse(OLD).unwrap();
    let cache = TokenCache::builder()
        .store_url(url)
        .key_prefix("app1:")
        .keys(ring)
        .build()
        .await
        .unwrap();
    let t = now();
    for oid in [
        "00000000-0000-0000-0000-00000000000a",
        "00000000-0000-0000-0000-00000000000b",
        "00000000-0000-0000-0000-00000000000c",
    ] {
        let resp = sample::user_response(oid, TENANT, DOWNSTREAM, t, 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, DOWNSTREAM);
        cache.save_token_response(&req, &resp).await.unwrap();
    }
    let oid = "00000000-0000-0000-0000-00000000000a";
    let assertion = sample::incoming_assertion(oid, TENANT, t, t + 3600);
    let resp = sample::obo_response(oid, TENANT, DOWNSTREAM, t, 3600).unwrap();
    let subject = SaveFor::Obo {
        assertion: &assertion,
    };
    let req = SaveRequest::new(CLIENT_ID, subject, ENVIRONMENT, TENANT, DOWNSTREAM);
    cache.save_token_response(&req, &resp).await.unwrap();
    cache
        .remove_account(&format!("00000000-0000-0000-0000-00000000000c.{TENANT}"))
        .await
        .unwrap();
}

/// The other application's keys and what `redis-cli` shows of each.
fn other_app(server: &RedisServer) -> Vec<(String, String)> {
    [
        ("jobs:queue", vec!["LRANGE", "jobs:queue", "0", "-1"]),
        ("jobs:seen", vec!["SMEMBERS", "jobs:seen"]),
        ("jobs:ranked", vec!["ZRANGE", "jobs:ranked", "0", "-1"]),
        ("jobs:hash", vec!["HGETALL", "jobs:hash"]),
        ("config", vec!["GET", "config"]),
        ("blob", vec!["GET", "blob"]),
    ]
    .into_iter()
    .map(|(k, read)| (k.to_string(), server.cli(&read)))
    .collect()
}

fn rekey(url: Option<&str>, prefix: Option<&str>, home: &std::path::Path) -> Output {
    let mut cmd = tokencache();
    cmd.arg("rekey")
        .env("TOKENCACHE_KEYS", format!("{NEW},{OLD}"))
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"));
    if let Some(u) = url {
        cmd.env("TOKENCACHE_STORE", u);
    }
    if let Some(p) = prefix {
        cmd.env("TOKENCACHE_PREFIX", p);
    }
    cmd.output().unwrap()
}

fn counts(out: &Output) -> (u64, u64, u64, u64) {
    let m = last_line(out, "");
    let n = |k: &str| m[k].parse::<u64>().unwrap();
    (
        n("rekeyed"),
        n("already_current"),
        n("unreadable"),
        n("skipped"),
    )
}

#[test]
fn rekey_from_the_environment_skips_other_apps_and_own_keys() {
    let server = RedisServer::start();
    let url = server.url();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(prepare(&url));
    for cmd in [
        vec!["RPUSH", "jobs:queue", "a", "b"],
        vec!["SADD", "jobs:seen", "x"],
        vec!["ZADD", "jobs:ranked", "1", "m"],
        vec!["HSET", "jobs:hash", "f", "v"],
        vec!["SET", "config", r#"{"a":1}"#],
        vec!["SET", "blob", "not json, not an envelope"],
    ] {
        server.cli(&cmd);
    }
    let before = other_app(&server);
    let keys = server.cli(&["--scan"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    // Partitions: a's, b's (c's went with the sign-out) and the OBO one; tokencache's
    // own: a's link set, c's revocation stamp; and 6 keys of the other application.
    let partitions: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("app1:") && !k.starts_with("app1:tc:"))
        .collect();
    assert_eq!(partitions.len(), 3, "{keys:?}");
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("app1:tc:")).count(),
        2,
        "a link set and a stamp: {keys:?}"
    );
    let home = tempfile::tempdir().unwrap();

    // No prefix: the whole store. The prefixed stamp and link set are still known as
    // tokencache's own; the other application's six keys are skipped too.
    let out = rekey(Some(&url), None, home.path());
    assert_eq!(
        counts(&out),
        (3, 0, 0, 8),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 of tokencache's own keys") && err.contains("6 keys of other applications"),
        "{err}"
    );
    assert_eq!(other_app(&server), before, "the other application's keys");
    // Every partition is now sealed with the new primary.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(tokencache::store::open(&url)).unwrap();
    for key in &partitions {
        let v = rt.block_on(store.get(key)).unwrap().unwrap().bytes;
        assert_eq!(
            protect::stored(&v),
            Stored::Sealed { key_id: "k2" },
            "{key}"
        );
    }
    // Its tokens read with a ring holding only the new key.
    let only_new = TokenCache::builder()
        .store_url(&url)
        .key_prefix("app1:")
        .keys(KeyRing::new(Key::new(KeyId::new("k2").unwrap(), &[2; 32])))
        .disable_l1()
        .build();
    let cache = rt.block_on(only_new).unwrap();
    let home_a = format!("00000000-0000-0000-0000-00000000000a.{TENANT}");
    let found = rt.block_on(
        cache.find_access_token(&tokencache::Lookup::user(CLIENT_ID, &home_a, DOWNSTREAM)),
    );
    assert!(found.unwrap().is_some());

    // With TOKENCACHE_PREFIX: only the application's keys, all current now.
    let out = rekey(Some(&url), Some("app1:"), home.path());
    assert_eq!(counts(&out), (0, 3, 0, 2));

    // A missing store is an error, and is not created: a mistyped path, the default.
    let missing = home.path().join("typo").join("cache.redb");
    let out = rekey(
        Some(&format!("redb://{}", missing.display())),
        None,
        home.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(!missing.exists() && !missing.parent().unwrap().exists());
    let out = rekey(None, None, home.path());
    assert_eq!(out.status.code(), Some(2), "no default store to rekey");
    assert!(
        !home.path().join(".cache/tokencache").exists(),
        "no default store created"
    );
}

#[test]
fn rekey_counts_what_it_cannot_open_as_unreadable_only() {
    let server = RedisServer::start();
    let url = server.url();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(prepare(&url));
    let home = tempfile::tempdir().unwrap();
    // A ring that lacks the old key: the three partitions cannot be opened.
    let out = tokencache()
        .arg("rekey")
        .env("TOKENCACHE_KEYS", NEW)
        .env("TOKENCACHE_STORE", &url)
        .env("TOKENCACHE_PREFIX", "app1:")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(counts(&out), (0, 0, 3, 2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unreadable: 3 entries: unknown_key_id (key id k1)"),
        "{err}"
    );
}
