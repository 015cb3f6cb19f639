//! Redis behind a real Sentinel (`redis-server --sentinel`, a master and a replica):
//! the store finds the master through the Sentinel, follows `SENTINEL FAILOVER` (its
//! writes land on the new master, the old subscription ends and the next one is on the
//! new master), and a write is acknowledged only once a replica has it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use testkit::RedisSentinel;
use tokencache::store::{open, SharedStore, StoreErrorKind};

/// Retries `set` until it succeeds (writes fail, and are queued by the cache, while a
/// failover is under way).
async fn set_eventually(store: &SharedStore, key: &str, value: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.set(key, value, None).await {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "writes never came back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_is_followed_by_the_store_and_the_backplane() {
    let sentinel = RedisSentinel::start();
    let store = open(&sentinel.url()).await.unwrap();
    let first = sentinel.master_port();
    store.set("before", b"1", None).await.unwrap();
    assert_eq!(sentinel.server(first).cli(&["GET", "before"]), "1");
    let backplane = store.backplane().unwrap();
    let mut sub = backplane.subscribe("ch").await.unwrap();
    backplane
        .publish("ch", b"on the first master")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
    assert_eq!(got.unwrap().unwrap(), b"on the first master");

    let second = sentinel.failover();
    assert_ne!(first, second);
    // The store writes to the new master.
    set_eventually(&store, "after", b"2").await;
    assert_eq!(sentinel.server(second).cli(&["GET", "after"]), "2");
    assert_eq!(
        sentinel.server(second).cli(&["GET", "before"]),
        "1",
        "acknowledged before the failover, kept after it"
    );
    // The subscription on the old master ends; the next one is on the new master.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while sub.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the old subscription ended");
    let mut sub = backplane.subscribe("ch").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while backplane.publish("ch", b"on the second").await.is_err() {
        assert!(Instant::now() < deadline, "publishing never moved on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next()).await;
    assert_eq!(got.unwrap().unwrap(), b"on the second");
    assert!(
        sentinel
            .server(second)
            .cli(&["PUBSUB", "NUMSUB", "ch"])
            .ends_with('1'),
        "subscribed on the new master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_confirms_is_not_acknowledged() {
    let sentinel = RedisSentinel::start();
    let store = open(&sentinel.url()).await.unwrap();
    store.set("k", b"replicated", None).await.unwrap();
    let replica = sentinel
        .servers()
        .iter()
        .find(|s| s.port() != sentinel.master_port())
        .unwrap();
    replica.pause();
    let e = store.set("k", b"not replicated", None).await.unwrap_err();
    replica.resume();
    assert_eq!(e.kind, StoreErrorKind::Connection, "{e}");
    assert!(e.message.contains("no replica confirmed the write"), "{e}");
    // Once the replica answers again, writes are acknowledged again.
    set_eventually(&store, "k", b"again").await;
}
