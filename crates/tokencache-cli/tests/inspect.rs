//! `tokencache inspect` and `tokencache purge` against a real redis-server holding a
//! cache prepared with the library: two users, an app, OBO partitions (one made an
//! orphan by deleting its user's link set), a long-running OBO session, and a foreign
//! user partition with no expiry (as Microsoft.Identity.Web writes them).

use std::collections::BTreeMap;
use std::process::{Command, Output};
use testkit::RedisServer;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::{SaveFor, SaveRequest, TokenCache};

const API_CLIENT: &str = "0b7e1f4e-5a43-4d1c-9d3b-a91000000001";
const DOWNSTREAM: &[&str] = &["api://downstream/Orders.Read"];
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const ALICE: &str = "a11ce000-0000-0000-0000-000000000001";
const BOB: &str = "b0b00000-0000-0000-0000-000000000002";
const FOREIGN: &str = "f0e1d2c3-0000-0000-0000-000000000003";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn tokencache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(args)
        .output()
        .expect("run tokencache")
}

/// The machine-readable last line `word: k=v ...` as a map.
fn last_line(out: &Output, word: &str) -> BTreeMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix(&format!("{word}: "))
        .unwrap_or_else(|| panic!("last line {last:?} in\n{stdout}"));
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn counts(m: &BTreeMap<String, String>, keys: &[&str]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (k.to_string(), m[*k].clone()))
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn prepare(url: &str) -> (String, String) {
    let web_app = TokenCache::builder().store_url(url).build().await.unwrap();
    let web_api = TokenCache::builder().store_url(url).build().await.unwrap();
    let t = now();
    let mut homes = Vec::new();
    for (oid, obo_count) in [(ALICE, 3), (BOB, 1)] {
        let resp = sample::user_response(oid, TENANT, GRAPH, t, 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
        let home = web_app
            .save_token_response(&req, &resp)
            .await
            .unwrap()
            .partition;
        for i in 0..obo_count {
            let assertion = sample::incoming_assertion(oid, TENANT, t + i, t + 3600 + i);
            let resp = sample::obo_response(oid, TENANT, DOWNSTREAM, t, 3600).unwrap();
            let req = SaveRequest::new(
                API_CLIENT,
                SaveFor::Obo {
                    assertion: &assertion,
                },
                ENVIRONMENT,
                TENANT,
                DOWNSTREAM,
            );
            web_api.save_token_response(&req, &resp).await.unwrap();
        }
        homes.push(home);
    }
    // Alice also has a long-running OBO session.
    let resp = sample::user_response(ALICE, TENANT, DOWNSTREAM, t, 3600).unwrap();
    let subject = SaveFor::OboSession {
        session_key: "lro-alice-report",
        user: &homes[0],
    };
    let req = SaveRequest::new(API_CLIENT, subject, ENVIRONMENT, TENANT, DOWNSTREAM);
    web_api.save_token_response(&req, &resp).await.unwrap();
    // The web API's app token.
    let resp = sample::app_response("api://inventory-api/.default", t, 3600).unwrap();
    let scopes = ["api://inventory-api/.default"];
    let req = SaveRequest::new(API_CLIENT, SaveFor::App, ENVIRONMENT, TENANT, &scopes);
    web_api.save_token_response(&req, &resp).await.unwrap();
    (homes[0].clone(), homes[1].clone())
}

#[test]
fn inspect_counts_a_prepared_cache_and_purge_signs_a_user_out() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (alice, bob) = rt.block_on(prepare(&url));
    // Bob's link set disappears (as if written by a cache that keeps none): his OBO
    // partition becomes an orphan that no sign-out can reach.
    assert_eq!(server.cli(&["DEL", &format!("tc:links:{{{bob}}}")]), "1");
    // A user partition as Microsoft.Identity.Web writes it by default: no expiry.
    let foreign = format!("{FOREIGN}.{TENANT}");
    assert_eq!(
        server.cli(&["SET", &foreign, r#"{"AccessToken":{},"RefreshToken":{}}"#]),
        "OK"
    );

    let report = tokencache(&["inspect", "--store", &url, "--page", "3"]);
    let m = last_line(&report, "inspect");
    let keys = [
        "keys",
        "user",
        "app",
        "obo",
        "obo-session",
        "other",
        "link-sets",
        "stamps",
        "no-expiry",
        "orphan-obo",
        "dangling-links",
        "plaintext",
        "neither",
    ];
    assert_eq!(
        counts(&m, &keys),
        expect(&[
            ("keys", "10"), // 3 users, 1 app, 4 OBO, 1 session, Alice's link set
            ("user", "3"),
            ("app", "1"),
            ("obo", "4"),
            ("obo-session", "1"),
            ("other", "0"),
            ("link-sets", "1"),
            ("stamps", "0"),
            ("no-expiry", "1"),
            ("orphan-obo", "1"),
            ("dangling-links", "0"),
            ("plaintext", "9"),
            ("neither", "0"),
        ])
    );
    let text = String::from_utf8_lossy(&report.stdout);
    // Secrets never appear: the refresh token of the samples starts with "0.AR".
    assert!(!text.contains("0.AR") && !text.contains("eyJ"), "{text}");
    // The orphan is listed by its hash.
    let bob_assertion_hash = {
        let t = text
            .lines()
            .find(|l| l.starts_with("  ") && l.contains("ttl"))
            .unwrap();
        t.split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(bob_assertion_hash.len(), 43);

    let purged = tokencache(&["purge", "--user", &alice, "--store", &url]);
    let p = last_line(&purged, "purge");
    assert_eq!(p["obo-partitions"], "4", "3 OBO partitions and the session");
    assert_eq!(
        p["l2-keys-removed"], "6",
        "user partition, 4 linked partitions, link set"
    );
    assert_eq!(p["complete"], "true");

    let after = last_line(&tokencache(&["inspect", "--store", &url]), "inspect");
    assert_eq!(
        counts(
            &after,
            &[
                "user",
                "app",
                "obo",
                "obo-session",
                "link-sets",
                "stamps",
                "orphan-obo"
            ]
        ),
        expect(&[
            ("user", "2"),
            ("app", "1"),
            ("obo", "1"),
            ("obo-session", "0"),
            ("link-sets", "0"),
            ("stamps", "1"),
            ("orphan-obo", "1"),
        ])
    );
    let left = server.cli(&["--scan"]);
    assert_eq!(
        left.lines().filter(|k| k.contains(ALICE)).count(),
        1,
        "only the stamp: {left}"
    );

    // Purging again finds nothing: exit 1, and nothing is written.
    let again = tokencache(&["purge", "--user", &alice, "--store", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no such user partition or link set"));
}

#[test]
fn purge_of_nothing_exits_1_and_writes_no_stamp_unless_forced() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (alice, _) = rt.block_on(prepare(&url));
    let before = server.cli(&["DBSIZE"]);
    let unknown = format!("{FOREIGN}.{TENANT}");
    for args in [
        vec!["purge", "--user", &unknown, "--store", &url],
        vec![
            "purge", "--user", &alice, "--store", &url, "--prefix", "wrong:",
        ],
    ] {
        let out = tokencache(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no such user partition or link set"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(
        server.cli(&["DBSIZE"]),
        before,
        "no revocation stamp written"
    );
    let stamp = format!("tc:revoked:{{{unknown}}}");
    assert_eq!(server.cli(&["EXISTS", &stamp]), "0");
    // --force writes the stamp anyway (a user whose partition is elsewhere).
    let forced = tokencache(&["purge", "--user", &unknown, "--store", &url, "--force"]);
    assert_eq!(last_line(&forced, "purge")["l2-keys-removed"], "0");
    assert_eq!(server.cli(&["EXISTS", &stamp]), "1");
    // TOKENCACHE_STORE / TOKENCACHE_PREFIX are the defaults of --store / --prefix.
    let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["purge", "--user", &alice])
        .env("TOKENCACHE_STORE", &url)
        .env("TOKENCACHE_PREFIX", "wrong:")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the prefix came from the environment"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["purge", "--user", &alice])
        .env("TOKENCACHE_STORE", &url)
        .env_remove("TOKENCACHE_PREFIX")
        .output()
        .unwrap();
    assert_eq!(last_line(&out, "purge")["complete"], "true");
}

/// `inspect` meets keys of every Redis type in the same database (a hash as .NET
/// writes them, a list, a set that is not a link set): counted as "other", no error.
#[test]
fn inspect_classifies_keys_of_every_type() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(prepare(&url));
    assert_eq!(server.cli(&["HSET", "h", "f", "v"]), "1");
    assert_eq!(server.cli(&["RPUSH", "l", "a", "b"]), "2");
    assert_eq!(server.cli(&["SADD", "s", "m"]), "1");
    assert_eq!(server.cli(&["ZADD", "z", "1", "m"]), "1");
    let m = last_line(&tokencache(&["inspect", "--store", &url]), "inspect");
    assert_eq!(
        counts(
            &m,
            &[
                "keys",
                "user",
                "app",
                "obo",
                "obo-session",
                "other",
                "not-strings",
                "link-sets"
            ]
        ),
        expect(&[
            ("keys", "14"),
            ("user", "2"),
            ("app", "1"),
            ("obo", "4"),
            ("obo-session", "1"),
            ("other", "4"),
            ("not-strings", "4"),
            ("link-sets", "2"),
        ])
    );
}

/// After `simulate --keep` on Redis, `inspect` without `--prefix` names the three
/// policies' prefixes and classifies their keys instead of failing on the link sets.
#[test]
fn inspect_after_simulate_keep_finds_the_prefixes() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("c.svg");
    let sim = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["simulate", "--store", &url, "--users", "40", "--hours", "3"])
        .args(["--pace", "7200", "--keep", "--chart"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let out = tokencache(&["inspect", "--store", &url]);
    let m = last_line(&out, "inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(m["prefixes"], "3", "{text}");
    for p in [
        "tcsim:msidweb-default:",
        "tcsim:msidweb-sliding:",
        "tcsim:tokencache:",
    ] {
        assert!(text.contains(&format!("{p:?}")), "{p} in {text}");
    }
    // tokencache's own prefix: every key classified (sessions through its link sets).
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.trim_start().starts_with("\"tcsim:tokencache:\""))
        .unwrap()
        .split_whitespace()
        .collect();
    let (keys, other, tc_keys) = (row[1], row[6], row[7]);
    assert_eq!(other, "0", "{text}");
    assert_ne!(tc_keys, "0", "{text}");
    assert_ne!(keys, "0", "{text}");
    // The Microsoft.Identity.Web models link nothing: only their session keys are "other".
    assert!(
        m["other"].parse::<u64>().unwrap() < m["keys"].parse::<u64>().unwrap() / 4,
        "{text}"
    );
    assert_ne!(m["user"], "0", "{text}");
    assert_ne!(m["link-sets"], "0", "{text}");
}

/// `inspect` and `purge` never create a store: a typo'd path is an error and no folder
/// or file appears.
#[test]
fn read_only_commands_create_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo").join("cache.redb");
    let url = format!("redb://{}", path.display());
    for args in [
        vec!["inspect", "--store", &url],
        vec!["purge", "--user", "a.b", "--store", &url],
    ] {
        let out = tokencache(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("no store exists"), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(!dir.path().join("typo").exists(), "nothing was created");
}

/// A store file another process has open: the error names the lock and what to do.
#[test]
fn a_locked_store_file_says_which_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("app.redb").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // This test process plays the running application.
    let _app = rt
        .block_on(TokenCache::builder().store_url(&url).build())
        .unwrap();
    let out = tokencache(&["inspect", "--store", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("locked") && err.contains("another process"),
        "{err}"
    );
    assert!(err.contains("flock") && err.contains("redis://"), "{err}");
}

/// Something that is not Redis on the port: one line, "did not answer as Redis".
#[test]
fn a_server_that_is_not_redis_gets_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let out = tokencache(&["inspect", "--store", &format!("redis://127.0.0.1:{port}")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("did not answer as Redis"), "{err}");
}

/// `purge --user` takes what the library takes for every sign-out (serve's included):
/// `check_key`. A subject without a dot is a home account id (providers other than
/// Entra); empty, blank, a reserved key or a pasted line with spaces are refused.
#[test]
fn purge_checks_the_user_as_every_sign_out_does() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("cache.redb").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // the store file exists (purge never creates one)
        TokenCache::builder().store_url(&url).build().await.unwrap();
    });
    for bad in ["", " ", "tc:revoked:{a.b}", "obo-session:x", "a b"] {
        let out = tokencache(&["purge", "--user", bad, "--store", &url]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("--user"), "{err}");
    }
    for good in ["ab", "user1", "oid.tid"] {
        assert!(tokencache::partition::check_key(good).is_ok());
        let out = tokencache(&["purge", "--user", good, "--store", &url]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{good:?}: taken, not found: {err}"
        );
    }
}

/// The embedded store survives a restart of the process: this test process writes a
/// user partition and an app partition to a redb file and closes it; a separate
/// `tokencache` process then finds both, and purges the user across the restart.
#[test]
fn embedded_store_survives_a_process_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("cache.redb").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = rt.block_on(async {
        let cache = TokenCache::builder().store_url(&url).build().await.unwrap();
        let resp = sample::user_response(ALICE, TENANT, GRAPH, now(), 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
        let home = cache
            .save_token_response(&req, &resp)
            .await
            .unwrap()
            .partition;
        let scopes = ["https://graph.microsoft.com/.default"];
        let resp = sample::app_response(scopes[0], now(), 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::App, ENVIRONMENT, TENANT, &scopes);
        cache.save_token_response(&req, &resp).await.unwrap();
        home
    });
    drop(rt); // the store's file is closed with the last handle

    let report = last_line(&tokencache(&["inspect", "--store", &url]), "inspect");
    assert_eq!(
        counts(&report, &["user", "app"]),
        expect(&[("user", "1"), ("app", "1")])
    );
    let purged = tokencache(&["purge", "--user", &home, "--store", &url]);
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let report = last_line(&tokencache(&["inspect", "--store", &url]), "inspect");
    assert_eq!(
        counts(&report, &["user", "app"]),
        expect(&[("user", "0"), ("app", "1")])
    );
}

/// Without `--store`, a missing default file names the applications' store files that
/// are in the default folder (one per application), and creates nothing.
#[test]
fn a_missing_default_store_names_the_applications_files() {
    let cache_home = tempfile::tempdir().unwrap();
    let folder = cache_home.path().join("tokencache");
    let app_file = folder.join("orders-api.redb");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tokencache"))
            .args(args)
            .env("XDG_CACHE_HOME", cache_home.path())
            .env_remove("TOKENCACHE_STORE")
            .env_remove("TOKENCACHE_PREFIX")
            .output()
            .unwrap()
    };
    let out = run(&["inspect"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no application has a store file"), "{err}");
    assert!(!folder.exists(), "nothing was created");

    let url = format!("redb://{}", app_file.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = TokenCache::builder().store_url(&url).build().await.unwrap();
        drop(app);
    });
    drop(rt);
    let out = run(&["purge", "--user", "a.b"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("orders-api.redb"), "{err}");
    assert!(!folder.join("tokencache.redb").exists(), "{err}");
    let out = run(&["inspect", "--store", &url]);
    assert_eq!(last_line(&out, "inspect")["keys"], "0");
}
