//! Replicas agree (docs/design.md §8): three `TokenCache` instances, each with its own
//! connections, on one real `redis-server` (and a real 3-master Cluster). Every wait
//! is on the message itself, with a bound: never sleep-and-hope.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testkit::{RedisCluster, RedisServer};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::twolevel::BackplaneOptions;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache, TokenResponse};

const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const BOUND: Duration = Duration::from_secs(5);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn replica(url: &str) -> TokenCache {
    TokenCache::builder()
        .store_url(url)
        .key_prefix("app:")
        .backplane(BackplaneOptions {
            heartbeat: Duration::from_millis(200),
            ..BackplaneOptions::default()
        })
        .build()
        .await
        .unwrap()
}

/// A user token response whose access token is `secret` (the test tells tokens apart by it).
fn response(oid: &str, secret: &str) -> TokenResponse {
    let body = json!({
        "token_type": "Bearer",
        "scope": GRAPH[0],
        "expires_in": 3600,
        "access_token": secret,
        "refresh_token": format!("rt-{secret}"),
        "client_info": sample::client_info(oid, TENANT),
    });
    TokenResponse::from_json(body.to_string().as_bytes()).unwrap()
}

async fn save(cache: &TokenCache, oid: &str, secret: &str) {
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    cache
        .save_token_response(&req, &response(oid, secret))
        .await
        .unwrap();
}

async fn token(cache: &TokenCache, oid: &str) -> Option<String> {
    let home = format!("{oid}.{TENANT}");
    cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .map(|t| t.secret.expose().to_owned())
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t = tokio::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < BOUND, "not within {BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until every replica's subscription is up (its own heartbeat came back once).
async fn subscribed(caches: &[&TokenCache]) {
    for c in caches {
        let two = c.two_level().clone();
        assert!(two.has_backplane());
        until("subscribed", || {
            two.stats().published >= 2 && !two.l1_bypassed()
        })
        .await;
    }
    // the first heartbeat of each is published right after its subscription is in place
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn mfa_case_and_sign_out(url: &str) {
    let (a, b, c) = (replica(url).await, replica(url).await, replica(url).await);
    subscribed(&[&a, &b, &c]).await;
    let oid = "aaaaaaaa-0000-0000-0000-00000000mfa1";
    let seen = b.stats().invalidated;
    save(&a, oid, "before-mfa").await;
    // (a load that races a message is not kept in L1: wait for it first)
    until("B got the first save's message", || {
        b.stats().invalidated > seen
    })
    .await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("before-mfa"));
    assert_eq!(
        token(&b, oid).await.as_deref(),
        Some("before-mfa"),
        "now from B's L1"
    );
    assert!(b.stats().l1_hits >= 1, "{:?}", b.stats());
    // A stores a token with the new claims: B's next read after the message is the new one.
    let seen = b.stats().invalidated;
    save(&a, oid, "after-mfa").await;
    until("B got A's message", || b.stats().invalidated > seen).await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("after-mfa"));
    assert_eq!(token(&c, oid).await.as_deref(), Some("after-mfa"));

    // Sign-out on A: B (which holds the user in L1) finds nothing once the message came.
    assert_eq!(token(&b, oid).await.as_deref(), Some("after-mfa"));
    let seen = b.stats().invalidated;
    let out = a.remove_account(&format!("{oid}.{TENANT}")).await.unwrap();
    assert!(out.l2_complete);
    until("B got the sign-out", || b.stats().invalidated > seen).await;
    assert_eq!(token(&b, oid).await, None);
    assert_eq!(token(&c, oid).await, None);
    assert_eq!(token(&a, oid).await, None);
}

#[tokio::test]
async fn replicas_agree_on_a_real_redis() {
    let server = RedisServer::start();
    mfa_case_and_sign_out(&server.url()).await;
}

#[tokio::test]
async fn replicas_agree_on_a_real_cluster() {
    let cluster = RedisCluster::start();
    mfa_case_and_sign_out(&cluster.url()).await;
}

/// `CLIENT KILL TYPE pubsub` while A writes: B's subscription is gone, A's message is
/// lost; B serves nothing stale, during the outage (L1 bypassed) or after it resubscribed.
#[tokio::test]
async fn a_killed_subscription_never_leaves_a_stale_l1() {
    let server = RedisServer::start();
    let url = server.url();
    let (a, b) = (replica(&url).await, replica(&url).await);
    subscribed(&[&a, &b]).await;
    let oid = "aaaaaaaa-0000-0000-0000-0000000kill1";
    let seen = b.stats().invalidated;
    save(&a, oid, "v1").await;
    until("B got the first save's message", || {
        b.stats().invalidated > seen
    })
    .await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("v1"));
    assert_eq!(token(&b, oid).await.as_deref(), Some("v1"));
    let hits = b.stats().l1_hits;
    assert!(hits >= 1, "B holds v1 in L1");
    let losses = b.stats().backplane_losses;
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    save(&a, oid, "v2").await; // its message may reach nobody
    until("B noticed", || b.stats().backplane_losses > losses).await;
    assert_eq!(
        token(&b, oid).await.as_deref(),
        Some("v2"),
        "while bypassed: from L2"
    );
    let two = b.two_level().clone();
    until("B resubscribed", || !two.l1_bypassed()).await;
    assert_eq!(
        token(&b, oid).await.as_deref(),
        Some("v2"),
        "after: never v1"
    );
    // and the backplane works again
    let seen = b.stats().invalidated;
    save(&a, oid, "v3").await;
    until("B got v3's message", || b.stats().invalidated > seen).await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("v3"));
}

/// A replica that stops hearing its own heartbeats (the server pauses every client:
/// `CLIENT PAUSE`) treats its subscription as lost: L1 is cleared and bypassed.
#[tokio::test]
async fn a_silent_subscription_is_a_lost_one() {
    let server = RedisServer::start();
    let b = replica(&server.url()).await;
    subscribed(&[&b]).await;
    let losses = b.stats().backplane_losses;
    // Writes pause (PUBLISH waits), so no heartbeat comes back for 1.5 s.
    server.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    until("silence noticed", || b.stats().backplane_losses > losses).await;
    let two = b.two_level().clone();
    until("resubscribed after the pause", || !two.l1_bypassed()).await;
}

/// The in-process backplane: two caches on one memory store agree too.
#[tokio::test]
async fn replicas_in_one_process_agree_on_the_memory_store() {
    let store: tokencache::store::SharedStore = Arc::new(tokencache::store::MemoryStore::new());
    let build = || {
        TokenCache::builder()
            .store(store.clone())
            .probe_l2_at_start(false)
            .build()
    };
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    subscribed(&[&a, &b]).await;
    let oid = "aaaaaaaa-0000-0000-0000-0000000local";
    save(&a, oid, "one").await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("one"));
    let seen = b.stats().invalidated;
    save(&a, oid, "two").await;
    until("B got the message", || b.stats().invalidated > seen).await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("two"));
    let _ = now();
}
