//! What the store requires of a server, checked at connect and by `RedisStore::check`:
//! a version of at least 6.2 (only Redis 7.0 runs here, so an older server is a fake one
//! that answers `HELLO` and `INFO server` as Redis 6.0 does), the URL's mode, and ACL
//! permissions (a refusal names the key; a cache built on a user without the backplane
//! channel logs once what is missing). No password in any of it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::{FakeRedis, RedisServer};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::{open, StoreErrorKind, StoreUrl};
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

const SECRET: &str = "req-pw-51d0";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                .with_writer(self.clone())
                .finish(),
        )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_server_older_than_6_2_is_refused_in_one_line_and_not_reconnected_to_per_call() {
    let old = FakeRedis::old_redis("6.0.16");
    let store = open(&old.url()).await.unwrap();
    let e = store.get("k").await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(
        e.message.contains("Redis 6.0.16")
            && e.message.contains("too old")
            && e.message.contains("6.2"),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'));
    // HELLO was refused as an unknown command, then INFO said the version.
    let asked: Vec<String> = old.commands().iter().map(|c| c[0].to_uppercase()).collect();
    assert!(
        asked.contains(&"HELLO".to_string()) && asked.contains(&"INFO".to_string()),
        "{asked:?}"
    );
    // The refusal is remembered: a hundred more calls make no new connection.
    for _ in 0..100 {
        assert_eq!(
            store.get("k").await.unwrap_err().kind,
            StoreErrorKind::Config
        );
    }
    assert_eq!(old.connections(), 1);
}

#[tokio::test]
async fn a_cache_on_an_old_server_logs_it_and_never_storms() {
    let logs = Captured::default();
    let _guard = logs.install();
    let old = FakeRedis::old_redis("6.0.16");
    let cache = TokenCache::builder()
        .store_url(&old.url())
        .build()
        .await
        .unwrap();
    let lookup = Lookup::user(CLIENT_ID, "o.t", &["s"]);
    for _ in 0..20 {
        assert!(cache.find_access_token(&lookup).await.unwrap().is_none());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connected = old.connections();
    for _ in 0..200 {
        assert!(cache.find_access_token(&lookup).await.unwrap().is_none());
    }
    assert!(
        old.connections() <= connected + 1,
        "200 reads made {} connections",
        old.connections() - connected
    );
    let text = logs.text();
    let lines = text.lines().filter(|l| l.contains("too old")).count();
    assert!(
        (1..=2).contains(&lines),
        "logged once (the outage, the start check):\n{text}"
    );
    assert!(cache.stats().breaker_opened <= 1, "{:?}", cache.stats());
}

#[tokio::test]
async fn a_url_of_the_wrong_mode_names_the_one_to_use() {
    let server = RedisServer::start();
    let cluster_url = format!("redis+cluster://127.0.0.1:{}", server.port());
    let store = open(&cluster_url).await.unwrap();
    let e = store.get("k").await.unwrap_err();
    assert!(
        e.message.contains("not a Cluster node") && e.message.contains("use redis://"),
        "{e}"
    );
}

#[tokio::test]
async fn an_acl_refusal_names_the_key_and_the_fix() {
    let server = RedisServer::start();
    server.acl_user("app", SECRET, &["~P*", "&P*", "+@all"]);
    let store = open(&format!("redis://app:{SECRET}@127.0.0.1:{}", server.port()))
        .await
        .unwrap();
    store.set("Pk", b"v", None).await.unwrap();
    let e = store.set("Qk", b"v", None).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    assert!(e.message.starts_with("key \"Qk\": "), "{e}");
    assert!(e.message.contains("~PREFIX*"), "{e}");
    assert!(!e.to_string().contains(SECRET));
    let backplane = store.backplane().unwrap();
    let e = match backplane.subscribe("Qtc:backplane").await {
        Ok(_) => panic!("a channel outside &P* was allowed"),
        Err(e) => e,
    };
    assert!(
        e.message.contains("\"Qtc:backplane\"") && e.message.contains("NOPERM"),
        "{e}"
    );
}

#[tokio::test]
async fn a_cache_on_a_user_without_the_channel_logs_once_what_is_missing() {
    let logs = Captured::default();
    let _guard = logs.install();
    let server = RedisServer::start();
    server.acl_user(
        "app",
        SECRET,
        &[
            "~P*",
            "+@read",
            "+@write",
            "+@scripting",
            "+@pubsub",
            "-@dangerous",
            "+ping",
            "+time",
        ],
    );
    let url = format!("redis://app:{SECRET}@127.0.0.1:{}", server.port());
    assert!(!StoreUrl::parse(&url).unwrap().to_string().contains(SECRET));
    let cache = TokenCache::builder()
        .store_url(&url)
        .key_prefix("P")
        .build()
        .await
        .unwrap();
    // The cache works on (from L2: the subscription is refused, so L1 is bypassed).
    let scopes = ["https://graph.microsoft.com/User.Read"];
    let resp = sample::user_response("aaaa-acl", TENANT, &scopes, now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, &scopes);
    let home = cache
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition;
    let lookup = Lookup::user(CLIENT_ID, &home, &scopes);
    assert!(cache.find_access_token(&lookup).await.unwrap().is_some());
    // The start-up check's line: what is missing, with the rule to add.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = logs.text();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("lacks what tokencache needs"))
        {
            break l.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no check line in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("pubsub") && line.contains("&P*"), "{line}");
    assert!(
        !line.contains("keys:") && !line.contains("scripts:"),
        "only what is missing: {line}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = logs.text();
    assert_eq!(
        text.matches("lacks what tokencache needs").count(),
        1,
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}
