//! The token cache against a real `redis-server` and a real 3-master Redis Cluster
//! (started by testkit on loopback), and the embedded store across a restart.

use std::sync::Arc;
use std::time::Duration;
use testkit::{RedisCluster, RedisServer};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::twolevel::ExpiryOptions;
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache};

const OID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn cache(url: &str, expiry: ExpiryOptions) -> TokenCache {
    TokenCache::builder()
        .store_url(url)
        .expiry(expiry)
        .build()
        .await
        .unwrap()
}

async fn save_user(cache: &TokenCache, scopes: &[&str]) -> String {
    let resp = sample::user_response(OID, TENANT, scopes, now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    cache
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition
}

fn pttl_ms(out: &str) -> i64 {
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("PTTL answer {out:?}"))
}

#[tokio::test]
async fn layout_and_ttls_on_a_real_redis() {
    let server = RedisServer::start();
    let expiry = ExpiryOptions {
        refresh_token_lifetime: Duration::from_secs(24 * 3600),
        ..ExpiryOptions::default()
    };
    let cache = cache(&server.url(), expiry).await;

    // User partition: Microsoft.Identity.Web's key (oid.tid, no prefix), MSAL V3 JSON.
    let home = save_user(&cache, GRAPH).await;
    assert_eq!(home, format!("{OID}.{TENANT}"));
    let raw = server.cli(&["--no-raw", "TYPE", &home]);
    assert!(raw.contains("string"), "a plain string value, got {raw}");
    let json = server.cli(&["GET", &home]);
    let parsed = Partition::parse(json.trim_end().as_bytes()).expect("MSAL V3 JSON");
    assert!(parsed.access_tokens().count() == 1 && parsed.refresh_tokens().count() == 1);
    let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    for section in ["AccessToken", "RefreshToken", "IdToken", "Account"] {
        assert!(v.get(section).is_some(), "section {section} missing");
    }
    let ttl = pttl_ms(&server.cli(&["PTTL", &home]));
    assert!(
        (24 * 3600 * 1000 - 60_000..=24 * 3600 * 1000).contains(&ttl),
        "user TTL = RT lifetime, got {ttl}"
    );

    // App partition: TTL = the access token's expiry.
    let scopes = ["https://graph.microsoft.com/.default"];
    let resp = sample::app_response(scopes[0], now(), 1200).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::App, ENVIRONMENT, TENANT, &scopes);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    assert_eq!(
        saved.partition,
        format!("{CLIENT_ID}_{TENANT}_AppTokenCache")
    );
    let ttl = pttl_ms(&server.cli(&["PTTL", &saved.partition]));
    assert!(
        (1_200_000 - 60_000..=1_200_000).contains(&ttl),
        "app TTL, got {ttl}"
    );

    // OBO partition: TTL = the incoming assertion's exp.
    let assertion = sample::incoming_assertion(OID, TENANT, now(), now() + 900);
    let scopes = ["api://downstream/.default"];
    let resp = sample::obo_response(OID, TENANT, &scopes, now(), 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        &scopes,
    );
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    let ttl = pttl_ms(&server.cli(&["PTTL", &saved.partition]));
    assert!(
        (900_000 - 60_000..=900_000).contains(&ttl),
        "OBO TTL, got {ttl}"
    );

    // A second replica reads all three from Redis.
    let other = self::cache(&server.url(), ExpiryOptions::default()).await;
    assert!(other
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_some());
    assert!(other
        .find_access_token(&Lookup::obo(CLIENT_ID, &assertion, &scopes))
        .await
        .unwrap()
        .is_some());
    assert_eq!(other.stats().l2_hits, 2);

    // Removing the last credentials removes the key.
    cache
        .remove_client_credentials(CLIENT_ID, &home)
        .await
        .unwrap();
    assert_eq!(server.cli(&["EXISTS", &home]).trim(), "0");
}

#[tokio::test]
async fn sliding_entries_live_while_read_and_die_when_not() {
    let server = RedisServer::start();
    let expiry = ExpiryOptions {
        sliding_expiration: Some(Duration::from_millis(1500)),
        touch_fraction: 0.2, // touch at most every 300 ms
        ..ExpiryOptions::default()
    };
    let cache = Arc::new(cache(&server.url(), expiry).await);
    let home = save_user(&cache, GRAPH).await;
    let lookup_scopes = GRAPH;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(cache
            .find_access_token(&Lookup::user(CLIENT_ID, &home, lookup_scopes))
            .await
            .unwrap()
            .is_some());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        server.cli(&["EXISTS", &home]).trim(),
        "1",
        "4 s of reads kept a 1.5 s window alive"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        server.cli(&["EXISTS", &home]).trim(),
        "0",
        "gone a window after the last read"
    );
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, lookup_scopes))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn cluster_backend_saves_reads_and_expires() {
    let cluster = RedisCluster::start();
    let cache = cache(&cluster.url(), ExpiryOptions::default()).await;
    let mut homes = Vec::new();
    for i in 0..6 {
        let oid = format!("{i:08}-1111-2222-3333-444444444444");
        let resp = sample::user_response(&oid, TENANT, GRAPH, now(), 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
        homes.push(
            cache
                .save_token_response(&req, &resp)
                .await
                .unwrap()
                .partition,
        );
    }
    let reader = self::cache(&cluster.url(), ExpiryOptions::default()).await;
    for home in &homes {
        assert!(reader
            .find_access_token(&Lookup::user(CLIENT_ID, home, GRAPH))
            .await
            .unwrap()
            .is_some());
        let ttl = pttl_ms(&cluster.cli(&["PTTL", home]));
        assert!(
            ttl > 80 * 24 * 3600 * 1000,
            "RT lifetime TTL (90 d) in cluster, got {ttl}"
        );
    }
    for home in &homes {
        cache
            .remove_client_credentials(CLIENT_ID, home)
            .await
            .unwrap();
        assert_eq!(cluster.cli(&["EXISTS", home]).trim(), "0");
    }
}

#[tokio::test]
async fn embedded_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("tc.redb").display());
    let home = {
        let cache = cache(&url, ExpiryOptions::default()).await;
        save_user(&cache, GRAPH).await
    };
    // a new cache over the same file: L1 is cold, L2 has it
    let cache = cache(&url, ExpiryOptions::default()).await;
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_some());
    assert_eq!(cache.stats().l2_hits, 1);
}
