//! One sick shard of a real 3-master Redis Cluster degrades only its own keys: with one
//! master frozen (`kill -STOP`), the keys of the other masters keep their L2 hits
//! (counted) and the cache's circuit breaker stays closed; the frozen master's keys
//! fail fast after two misses, and come back once it answers a probe. And the
//! backplane moves to a node it learnt from the cluster when its own node goes away.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use testkit::RedisCluster;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::redis::key_slot;
use tokencache::twolevel::BreakerState;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

const SCOPES: &[&str] = &["https://graph.microsoft.com/User.Read"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Everything the log subscriber writes.
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
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn oid(i: usize) -> String {
    format!("{i:08x}-0000-0000-0000-00000000shrd")
}

async fn found(cache: &TokenCache, home: &str) -> bool {
    let lookup = Lookup::user(CLIENT_ID, home, SCOPES);
    cache
        .find_access_token(&lookup)
        .await
        .expect("a lookup never fails")
        .is_some()
}

// One thread: the log subscriber set for this test sees the background tasks too.
#[tokio::test]
async fn a_frozen_master_degrades_only_its_own_keys() {
    let captured = Captured::default();
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish(),
    );
    // The other masters keep serving while one is down (as a production cluster does
    // for the time a failover takes).
    let cluster = RedisCluster::start_with(&["--cluster-require-full-coverage", "no"]);
    let cache = TokenCache::builder()
        .store_url(&format!("{}?node_timeout_ms=150", cluster.url()))
        .disable_l1()
        .build()
        .await
        .unwrap();
    // Users spread over the three masters.
    let mut by_node: HashMap<usize, Vec<String>> = HashMap::new();
    for i in 0..30 {
        let resp = sample::user_response(&oid(i), TENANT, SCOPES, now(), 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, SCOPES);
        let home = cache
            .save_token_response(&req, &resp)
            .await
            .unwrap()
            .partition;
        by_node
            .entry(cluster.node_of_slot(key_slot(&home)))
            .or_default()
            .push(home);
    }
    assert_eq!(by_node.len(), 3, "keys on every master");
    let frozen = 0;
    let healthy: Vec<&String> = by_node
        .iter()
        .filter(|(n, _)| **n != frozen)
        .flat_map(|(_, keys)| keys)
        .collect();
    let sick = &by_node[&frozen];

    cluster.nodes()[frozen].pause();
    let before = cache.stats();
    let rounds = 5;
    let mut healthy_hits = 0;
    let mut sick_hits = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        // The frozen shard's keys first, one after the other (more failures in a row
        // than the breaker's threshold), then the others'.
        for home in sick {
            if found(&cache, home).await {
                sick_hits += 1;
            }
        }
        for home in &healthy {
            if found(&cache, home).await {
                healthy_hits += 1;
            }
        }
    }
    let took = started.elapsed();
    let after = cache.stats();
    cluster.nodes()[frozen].resume();

    assert_eq!(
        healthy_hits,
        rounds * healthy.len(),
        "every read of the other masters' keys was an L2 hit"
    );
    assert_eq!(sick_hits, 0, "the frozen master's keys are misses");
    assert_eq!(
        after.l2_hits - before.l2_hits,
        (rounds * healthy.len()) as u64,
        "counted as L2 hits"
    );
    assert_eq!(
        after.breaker_opened, before.breaker_opened,
        "the breaker never opened"
    );
    assert_eq!(cache.two_level().breaker_state(), BreakerState::Closed);
    assert!(
        after.l2_errors > before.l2_errors,
        "the frozen shard's reads failed"
    );
    // Two reads waited for the node timeout; the others failed fast (not timed: a
    // generous bound only says they did not each wait).
    let reads_of_sick = rounds * sick.len();
    assert!(
        took < Duration::from_millis(150) * (reads_of_sick as u32) / 4,
        "{reads_of_sick} reads of the frozen shard took {took:?}"
    );

    // Thawed: a probe gets through and its keys are hits again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if found(&cache, &sick[0]).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the thawed master's keys never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for home in sick {
        assert!(found(&cache, home).await);
    }
    // The outage is logged once, when the node opens, and once when it is back.
    let logs = captured.text();
    let node = format!("127.0.0.1:{}", cluster.nodes()[frozen].port());
    let opened = format!("Redis Cluster node {node} (slots");
    let back = format!("Redis Cluster node {node} answers again");
    assert_eq!(logs.matches(&opened).count(), 1, "{logs}");
    assert_eq!(logs.matches(&back).count(), 1, "{logs}");
    assert!(!logs.contains("circuit breaker opened"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_moves_to_a_node_the_cluster_named_when_its_own_goes_away() {
    let mut cluster = RedisCluster::start_with(&["--cluster-require-full-coverage", "no"]);
    // One seed only: the other nodes are known from the cluster itself.
    let seed = cluster.seeds()[0].clone();
    let store = tokencache::store::open(&format!("redis+cluster://{seed}"))
        .await
        .unwrap();
    store.health().await.unwrap(); // connected: the slot map is known
    let backplane = store.backplane().unwrap();
    let mut first = backplane.subscribe("ch").await.unwrap();
    backplane.publish("ch", b"one").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), first.next()).await;
    assert_eq!(got.unwrap().unwrap(), b"one");

    cluster.node_mut(0).stop();
    let ended = tokio::time::timeout(Duration::from_secs(10), first.next()).await;
    assert_eq!(ended.expect("the subscription ends"), None);
    let mut second = backplane
        .subscribe("ch")
        .await
        .expect("subscribed on a node learnt from the cluster");
    // The publisher moves on too (its first attempt may meet the dead node).
    let deadline = Instant::now() + Duration::from_secs(10);
    while backplane.publish("ch", b"two").await.is_err() {
        assert!(Instant::now() < deadline, "publishing never moved on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), second.next()).await;
    assert_eq!(got.unwrap().unwrap(), b"two");
}
