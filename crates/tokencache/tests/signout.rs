//! Sign-out removes everything a user left behind, OBO partitions included: a web app
//! and a web API (two `TokenCache`s) share one L2; the user signs in, the API acquires
//! OBO tokens for several incoming tokens (they rotate) and a long-running session;
//! sign-out leaves no key of that user but the revocation stamp, and touches no other
//! user's keys. Run on the in-process store, a real redis-server and a real Cluster.

use std::sync::Arc;
use testkit::{RedisCluster, RedisServer};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::{self, SharedStore};
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

const API_CLIENT: &str = "0b7e1f4e-5a43-4d1c-9d3b-api000000001";
const DOWNSTREAM: &[&str] = &["api://downstream/Orders.Read"];
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn all_keys(store: &SharedStore) -> Vec<String> {
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page) = store.scan("", cursor, 100).await.unwrap();
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}

struct User {
    oid: String,
    home: String,
    assertions: Vec<String>,
}

/// The user signs in to the web app; the web API gets three incoming tokens (hourly
/// rotation) and one long-running OBO session for the user.
async fn sign_in_and_call(web_app: &TokenCache, web_api: &TokenCache, oid: &str) -> User {
    let t = now();
    let resp = sample::user_response(oid, TENANT, GRAPH, t, 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let home = web_app
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition;
    let mut assertions = Vec::new();
    for i in 0..3 {
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
        assert!(web_api
            .find_access_token(&Lookup::obo(API_CLIENT, &assertion, DOWNSTREAM))
            .await
            .unwrap()
            .is_some());
        assertions.push(assertion);
    }
    let session = format!("session-{oid}");
    let resp = sample::user_response(oid, TENANT, DOWNSTREAM, t, 3600).unwrap();
    let req = SaveRequest::new(
        API_CLIENT,
        SaveFor::OboSession {
            session_key: &session,
            user: &home,
        },
        ENVIRONMENT,
        TENANT,
        DOWNSTREAM,
    );
    web_api.save_token_response(&req, &resp).await.unwrap();
    User {
        oid: oid.to_string(),
        home,
        assertions,
    }
}

async fn scenario(store: SharedStore) {
    let web_app = TokenCache::builder()
        .store(store.clone())
        .build()
        .await
        .unwrap();
    let web_api = TokenCache::builder()
        .store(store.clone())
        .build()
        .await
        .unwrap();
    let alice = sign_in_and_call(&web_app, &web_api, "a11ce000-0000-0000-0000-000000000001").await;
    let bob = sign_in_and_call(&web_app, &web_api, "b0b00000-0000-0000-0000-000000000002").await;
    let before = all_keys(&store).await;
    // per user: user partition, 3 OBO partitions, 1 session, 1 link set
    assert_eq!(before.len(), 12, "{before:?}");

    let out = web_app.remove_account(&alice.home).await.unwrap();
    assert_eq!(
        out.obo_partitions, 4,
        "3 OBO partitions and the session are linked"
    );
    assert_eq!(out.l2_keys_removed, 6);
    assert!(out.l2_complete);

    let after = all_keys(&store).await;
    let alice_left: Vec<&String> = after
        .iter()
        .filter(|k| {
            !before.contains(k)
                || k.contains(&alice.home)
                || alice
                    .assertions
                    .iter()
                    .any(|a| **k == tokencache::partition::assertion_hash(a))
        })
        .collect();
    assert_eq!(
        alice_left,
        vec![&format!("tc:revoked:{{{}}}", alice.home)],
        "only the revocation stamp of the signed-out user remains"
    );
    // Bob is untouched: his 6 keys are all there.
    let bob_keys: Vec<&String> = before
        .iter()
        .filter(|k| !k.contains(&alice.home) && after.contains(k))
        .collect();
    assert_eq!(bob_keys.len(), 6, "{bob_keys:?}");
    for a in &bob.assertions {
        assert!(web_api
            .find_access_token(&Lookup::obo(API_CLIENT, a, DOWNSTREAM))
            .await
            .unwrap()
            .is_some());
    }

    // The web app's own lookups miss now.
    assert!(web_app
        .find_access_token(&Lookup::user(CLIENT_ID, &alice.home, GRAPH))
        .await
        .unwrap()
        .is_none());
    // The web API still has Alice's OBO partitions in its L1 (no backplane yet): once it
    // knows the revocation stamp, it refuses them.
    assert!(web_api
        .refresh_revocation(&alice.home)
        .await
        .unwrap()
        .is_some());
    for a in &alice.assertions {
        assert!(web_api
            .find_access_token(&Lookup::obo(API_CLIENT, a, DOWNSTREAM))
            .await
            .unwrap()
            .is_none());
    }
    // A fresh replica finds nothing of Alice in L2.
    let fresh = TokenCache::builder()
        .store(store.clone())
        .build()
        .await
        .unwrap();
    for a in &alice.assertions {
        assert!(fresh
            .find_access_token(&Lookup::obo(API_CLIENT, a, DOWNSTREAM))
            .await
            .unwrap()
            .is_none());
    }
    // Idempotent.
    let again = web_app.remove_account(&alice.home).await.unwrap();
    assert_eq!((again.obo_partitions, again.l2_keys_removed), (0, 0));
    assert!(again.l2_complete);
    let _ = alice.oid;
}

#[tokio::test]
async fn sign_out_removes_linked_obo_partitions_in_memory() {
    scenario(store::open("memory://").await.unwrap()).await;
}

#[tokio::test]
async fn sign_out_removes_linked_obo_partitions_in_redis() {
    let server = RedisServer::start();
    let store = store::open(&server.url()).await.unwrap();
    scenario(store).await;
    // double-check with the raw server
    let keys = server.cli(&["--scan"]);
    assert_eq!(
        keys.lines().filter(|k| k.contains("a11ce000")).count(),
        1,
        "{keys}"
    );
}

#[tokio::test]
async fn sign_out_removes_linked_obo_partitions_in_redis_cluster() {
    let cluster = RedisCluster::start();
    let store = store::open(&cluster.url()).await.unwrap();
    scenario(store).await;
}

#[tokio::test]
async fn tokens_saved_after_sign_out_are_served_again() {
    let store: SharedStore = store::open("memory://").await.unwrap();
    let clock = tokencache::clock::ManualClock::at_secs(now());
    let cache = TokenCache::builder()
        .store(store.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let oid = "c0ffee00-0000-0000-0000-000000000003";
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let resp = sample::user_response(oid, TENANT, GRAPH, now(), 3600).unwrap();
    let home = cache
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition;
    cache.remove_account(&home).await.unwrap();
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_none());
    clock.advance_secs(2);
    cache.save_token_response(&req, &resp).await.unwrap();
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_some());
    assert!(cache
        .find_refresh_token(CLIENT_ID, &home, None)
        .await
        .unwrap()
        .is_some());
}
