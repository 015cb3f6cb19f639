//! A caller that gives up strands nothing (issue 20, item 4): the single flight of a
//! token request runs as its own task, so when its only caller is dropped at any await
//! of an acquisition — during discovery, while the token request is held at the real
//! oidc-provider, during the save — the request still finishes, its token is saved, and
//! nothing is left behind (no single-flight entry, no partition lock, no shared load).

use std::sync::Arc;
use std::time::Duration;

use testkit::OidcProvider;
use tokencache::acquire::{Acquirer, TokenSource};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::{MemoryStore, SharedStore};
use tokencache::{Lookup, TokenCache};

#[path = "common/oidc.rs"]
mod oidc;
use oidc::*;

/// A memory store behind a chaos wrapper (to hold one step of the save), and a cache on
/// it whose L2 calls may take a while.
async fn held_cache() -> (TokenCache, Arc<ChaosStore>) {
    let chaos = Arc::new(ChaosStore::passthrough(Arc::new(MemoryStore::new())));
    let store: SharedStore = chaos.clone();
    let cache = TokenCache::builder()
        .store(store)
        .l2_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("cache");
    (cache, chaos)
}

/// After the caller was dropped: the flight ends by itself, the token it got is in the
/// cache (in L2: a fresh replica finds it), the provider saw exactly one token request,
/// and nothing is held.
async fn the_flight_finished(op: &OidcProvider, a: &Acquirer, chaos: &ChaosStore) {
    wait_until("the flight to end", Duration::from_secs(20), || async {
        a.flights_running() == 0
    })
    .await;
    let held = a.cache().two_level().in_flight();
    assert_eq!((held.locks, held.loads), (0, 0), "nothing is held");
    assert_eq!(grant_count(op, CC).await, 1, "{}", stats(op).await);
    assert_eq!(a.token_requests(), 1);
    // in L2: a second replica on the same store serves it without a request
    let other = TokenCache::builder()
        .store(chaos.inner().clone())
        .build()
        .await
        .unwrap();
    let found = other
        .find_access_token(
            &Lookup::app("app", &a.authority().tenant, API).environment(&environment(op)),
        )
        .await
        .unwrap()
        .expect("the token the abandoned flight acquired is cached");
    assert!(active(op, found.secret.expose()).await);
    // and this replica serves it from the cache
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Cache);
    assert_eq!(t.secret, found.secret);
    assert_eq!(grant_count(op, CC).await, 1);
}

fn environment(op: &OidcProvider) -> String {
    format!("127.0.0.1:{}", op.port())
}

#[tokio::test]
async fn a_caller_dropped_during_discovery_strands_nothing() {
    let op = OidcProvider::start();
    let (c, chaos) = held_cache().await;
    let a = basic(c, &op);
    // the provider holds the discovery request 600 ms
    fault(&op, "path=discovery&kind=slow&ms=600").await;
    let a2 = a.clone();
    let caller = tokio::spawn(async move { a2.client_credentials(API).await });
    wait_until("discovery to arrive", Duration::from_secs(10), || async {
        arrived(&op, "discovery").await >= 1
    })
    .await;
    assert_eq!(arrived(&op, "token").await, 0, "still in discovery");
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    the_flight_finished(&op, &a, &chaos).await;
}

#[tokio::test]
async fn a_caller_dropped_while_the_provider_holds_the_request_strands_nothing() {
    let op = OidcProvider::start();
    let (c, chaos) = held_cache().await;
    let a = basic(c, &op);
    a.provider().await.unwrap();
    // the provider holds the token request 600 ms before serving it
    fault(&op, "kind=slow&ms=600").await;
    let a2 = a.clone();
    let caller = tokio::spawn(async move { a2.client_credentials(API).await });
    wait_until(
        "the token request to arrive",
        Duration::from_secs(10),
        || async { arrived(&op, "token").await >= 1 },
    )
    .await;
    assert_eq!(grant_count(&op, CC).await, 0, "not answered yet");
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    the_flight_finished(&op, &a, &chaos).await;
}

#[tokio::test]
async fn a_caller_dropped_during_the_save_strands_nothing() {
    let op = OidcProvider::start();
    let (c, chaos) = held_cache().await;
    let a = basic(c, &op);
    a.provider().await.unwrap();
    // the save's commit (its compare-and-swap, under the partition lock) takes 600 ms
    chaos.set_delay_of("compare_and_swap", Duration::from_millis(600));
    let a2 = a.clone();
    let caller = tokio::spawn(async move { a2.client_credentials(API).await });
    wait_until("the save to commit", Duration::from_secs(10), || async {
        chaos.calls_of("compare_and_swap") >= 1
    })
    .await;
    assert_eq!(grant_count(&op, CC).await, 1, "answered");
    assert_eq!(
        a.cache().two_level().in_flight().locks,
        1,
        "the save holds its lock"
    );
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    the_flight_finished(&op, &a, &chaos).await;
}

#[tokio::test]
async fn callers_that_join_an_abandoned_flight_share_its_result() {
    let op = OidcProvider::start();
    let (c, chaos) = held_cache().await;
    let a = basic(c, &op);
    a.provider().await.unwrap();
    fault(&op, "kind=slow&ms=600").await;
    let a2 = a.clone();
    let first = tokio::spawn(async move { a2.client_credentials(API).await });
    wait_until(
        "the token request to arrive",
        Duration::from_secs(10),
        || async { arrived(&op, "token").await >= 1 },
    )
    .await;
    first.abort();
    // a caller arriving now joins the running flight instead of starting another
    let joined = a.client_credentials(API).await.unwrap();
    assert_eq!(joined.source, TokenSource::Provider);
    assert_eq!(a.flights_started(), 1);
    the_flight_finished(&op, &a, &chaos).await;
}
