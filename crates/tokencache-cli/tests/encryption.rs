//! The tool with encryption at rest: `keys generate` makes ids a ring accepts together,
//! `partition show|find --key` opens sealed entries with `TOKENCACHE_KEYS` as every
//! reader does (and names a key id the ring lacks), and `inspect` opens encrypted
//! entries instead of trusting their key id, counting authentication failures.

mod common;

use common::{last_line, one_line_error, run, text, tokencache};
use testkit::RedisServer;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::{KeyRing, SaveFor, SaveRequest, TokenCache};

const K1: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
/// The same id as K1, other bytes: a ring that names the key but cannot open its entries.
const K1_OTHER: &str = "k1:BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=";
const K2: &str = "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const OID: &str = "a11ce000-0000-0000-0000-000000000001";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A user partition sealed with `ring` under `prefix`; returns its key (no prefix).
async fn sealed_user(url: &str, prefix: &str, ring: &str, oid: &str) -> String {
    let cache = TokenCache::builder()
        .store_url(url)
        .key_prefix(prefix)
        .keys(KeyRing::parse(ring).unwrap())
        .build()
        .await
        .unwrap();
    let resp = sample::user_response(oid, TENANT, GRAPH, now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    cache
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition
}

#[test]
fn generated_key_ids_are_unique_and_a_ring_takes_them_together() {
    let lines: Vec<String> = (0..12)
        .map(|_| {
            let out = run(&["keys", "generate"]);
            assert!(out.status.success());
            text(&out).0.trim().to_string()
        })
        .collect();
    let mut ids: Vec<&str> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        lines.len(),
        "ids made in one minute differ: {ids:?}"
    );
    let ring = KeyRing::parse(&lines.join(",")).expect("a ring of them all");
    assert_eq!(ring.ids().count(), lines.len());
}

#[test]
fn partition_show_and_find_open_sealed_entries_with_the_ring() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let home = rt.block_on(sealed_user(&url, "p:", K1, OID));
    let with_keys = |keys: Option<&str>, args: &[&str]| {
        let mut cmd = tokencache();
        cmd.args(args)
            .args(["--store", &url, "--prefix", "p:", "--key", &home]);
        if let Some(k) = keys {
            cmd.env("TOKENCACHE_KEYS", k);
        }
        cmd.output().unwrap()
    };
    // The right ring (the sealing key as a decrypt-only one is enough).
    let ring = format!("{K2},{K1}");
    let shown = with_keys(Some(&ring), &["partition", "show"]);
    let (stdout, stderr) = text(&shown);
    assert!(shown.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(!v["records"].as_array().unwrap().is_empty());
    assert!(stderr.contains("sealed with key id k1"), "{stderr}");
    let found = with_keys(
        Some(&ring),
        &[
            "partition",
            "find",
            "--client-id",
            CLIENT_ID,
            "--scopes",
            GRAPH[0],
        ],
    );
    assert!(found.status.success(), "{}", text(&found).1);
    let v: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(v["home_account_id"], home.as_str());
    assert!(v["secret"].as_str().unwrap().starts_with("sha256:"));

    // A ring without k1: the id is named; no ring at all: how to give one.
    let e = one_line_error(&with_keys(Some(K2), &["partition", "show"]));
    assert!(
        e.contains("sealed with key id k1, not in this key ring (it holds k2)"),
        "{e}"
    );
    let e = one_line_error(&with_keys(None, &["partition", "show"]));
    assert!(
        e.contains("sealed with key id k1; set TOKENCACHE_KEYS"),
        "{e}"
    );
    // The id with other bytes: authentication fails, said as such.
    let e = one_line_error(&with_keys(Some(K1_OTHER), &["partition", "show"]));
    assert!(e.contains("authentication failed with key id `k1`"), "{e}");
    // A ring that is not one is refused, whatever the entry.
    for garbage in ["garbage", "k1:notbase64", "k1"] {
        let out = with_keys(Some(garbage), &["partition", "show"]);
        assert_eq!(out.status.code(), Some(2), "{garbage}");
        let e = one_line_error(&out);
        assert!(e.contains("TOKENCACHE_KEYS"), "{garbage}: {e}");
        assert!(!e.contains("notbase64"), "{e}");
    }
}

#[test]
fn inspect_opens_encrypted_entries_and_counts_authentication_failures() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..3 {
        rt.block_on(sealed_user(
            &url,
            "",
            K1,
            &format!("a11ce000-0000-0000-0000-00000000000{i}"),
        ));
    }
    // Another application's JSON is not MSAL JSON; a foreign binary value is neither.
    assert_eq!(server.cli(&["SET", "config", r#"{"a":1}"#]), "OK");
    assert_eq!(server.cli(&["SET", "blob", "hello"]), "OK");
    let inspect = |keys: &str, extra: &[&str]| {
        tokencache()
            .args(["inspect", "--store", &url])
            .args(extra)
            .env("TOKENCACHE_KEYS", keys)
            .output()
            .unwrap()
    };
    let good = inspect(K1, &[]);
    let m = last_line(&good, "inspect");
    let pick = |m: &std::collections::BTreeMap<String, String>, k: &str| m[k].clone();
    assert_eq!(
        [
            "plaintext",
            "encrypted",
            "neither",
            "sampled",
            "opened",
            "auth-failed"
        ]
        .map(|k| pick(&m, k)),
        ["0", "3", "2", "3", "3", "0"].map(String::from)
    );
    // The human line says the same as the machine line.
    let (stdout, _) = text(&good);
    assert!(
        stdout.contains(
            "values: 0 plaintext MSAL JSON, 3 encrypted, 0 encrypted by .NET Data Protection (unreadable here, never overwritten), 2 neither"
        ),
        "{stdout}"
    );
    // Same id, other bytes: the ring "knows" k1, yet nothing opens.
    let bad = inspect(K1_OTHER, &["--verify"]);
    let m = last_line(&bad, "inspect");
    assert_eq!(
        ["encrypted", "sampled", "opened", "auth-failed", "key-ids"].map(|k| pick(&m, k)),
        ["3", "3", "0", "3", "k1:3"].map(String::from)
    );
    let (stdout, _) = text(&bad);
    assert!(
        stdout.contains("key id k1: 3 entries (primary; AUTHENTICATION FAILED for 3 of 3 opened"),
        "{stdout}"
    );
}
