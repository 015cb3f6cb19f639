//! L2 failures never reach the caller, and L2 catches up afterwards (docs/design.md §6):
//! every failure class, timeouts, the retry callback, the circuit breaker, the bounded
//! latest-wins recovery queue and the newer-value-wins rule, over a chaos store.
//! Breaker timing runs on Tokio's paused clock; token time on a manual clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokencache::clock::{Clock, ManualClock};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::memory::MemoryStore;
use tokencache::store::{SharedStore, Store, StoreErrorKind};
use tokencache::twolevel::{BreakerOptions, BreakerState, L2Decision, L2Failure, RetryOptions};
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache, TokenCacheBuilder};

const T0: i64 = 1_800_000_000;
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const MAIL: &[&str] = &["https://graph.microsoft.com/Mail.Send"];

struct Rig {
    clock: ManualClock,
    store: Arc<MemoryStore>,
    chaos: Arc<ChaosStore>,
}

impl Rig {
    fn new() -> Self {
        let clock = ManualClock::at_secs(T0);
        let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        let chaos = Arc::new(ChaosStore::passthrough(store.clone() as SharedStore));
        Self {
            clock,
            store,
            chaos,
        }
    }

    /// A cache over the chaos store; no start-up probe, so call counts are exact.
    fn builder(&self) -> TokenCacheBuilder {
        TokenCache::builder()
            .store(self.chaos.clone() as SharedStore)
            .clock(Arc::new(self.clock.clone()))
            .probe_l2_at_start(false)
            .l2_breaker(BreakerOptions {
                failure_threshold: 3,
                open_for: Duration::from_secs(1),
                max_open_for: Duration::from_secs(4),
            })
    }

    /// A second replica writing straight to the shared store (no chaos).
    async fn other_replica(&self) -> TokenCache {
        TokenCache::builder()
            .store(self.store.clone() as SharedStore)
            .clock(Arc::new(self.clock.clone()))
            .probe_l2_at_start(false)
            .build()
            .await
            .unwrap()
    }

    fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    /// The partition L2 holds for a user, read directly.
    async fn in_l2(&self, oid: &str) -> Option<Partition> {
        let v = self.store.get(&home(oid)).await.unwrap()?;
        Some(Partition::parse(&v.bytes).unwrap())
    }
}

fn home(oid: &str) -> String {
    format!("{oid}.{TENANT}")
}

fn oid(i: usize) -> String {
    format!("{i:08}-1111-2222-3333-444444444444")
}

async fn save(cache: &TokenCache, oid: &str, scopes: &[&str], now: i64) -> tokencache::Saved {
    let resp = sample::user_response(oid, TENANT, scopes, now, 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    cache
        .save_token_response(&req, &resp)
        .await
        .expect("a save never fails because of L2")
}

async fn find(cache: &TokenCache, oid: &str, scopes: &[&str]) -> bool {
    let h = home(oid);
    cache
        .find_access_token(&Lookup::user(CLIENT_ID, &h, scopes))
        .await
        .expect("a lookup never fails because of L2")
        .is_some()
}

fn has_token(p: &Partition, oid: &str, scopes: &[&str], now: i64) -> bool {
    let h = home(oid);
    let mut q = tokencache::schema::AccessTokenQuery::new(CLIENT_ID, scopes);
    q.home_account_id = Some(&h);
    p.find_access_token(&q, now).is_some()
}

/// Waits (on Tokio's paused clock) for the breaker's next probe; the recovery task then
/// drains the queue by itself.
async fn heal(cache: &TokenCache) {
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
        if !cache.two_level().is_degraded() {
            return;
        }
    }
    panic!("still degraded: {:?}", cache.stats());
}

/// Lets background tasks (recovery) run until they wait on a timer.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_failure_class_is_counted_and_never_reaches_the_caller() {
    for kind in [
        StoreErrorKind::Connection,
        StoreErrorKind::Timeout,
        StoreErrorKind::Server,
        StoreErrorKind::BadData,
        StoreErrorKind::Config,
    ] {
        let rig = Rig::new();
        let cache = rig.builder().build().await.unwrap();
        let warm = oid(1);
        save(&cache, &warm, GRAPH, rig.now()).await;
        rig.chaos.fail_always(kind);
        // L1 answers; a cold key is a miss; a write lands in L1 and the queue
        assert!(find(&cache, &warm, GRAPH).await, "{kind}: L1 serves");
        assert!(
            !find(&cache, &oid(2), GRAPH).await,
            "{kind}: a miss, not an error"
        );
        let saved = save(&cache, &oid(3), GRAPH, rig.now()).await;
        assert!(saved.write.stored && !saved.write.l2_written, "{kind}");
        assert!(
            find(&cache, &oid(3), GRAPH).await,
            "{kind}: the new token is served from L1"
        );
        let s = cache.stats();
        assert!(s.l2_errors_by_class.get(kind) >= 2, "{kind}: {s:?}");
        assert_eq!(
            s.l2_errors,
            s.l2_errors_by_class.get(kind),
            "{kind}: only this class"
        );
        assert_eq!((s.queued, s.queue_depth), (1, 1), "{kind}");
        // L2 heals: the queued write reaches it
        rig.chaos.fail_never();
        heal(&cache).await;
        assert!(
            rig.in_l2(&oid(3)).await.is_some(),
            "{kind}: recovered into L2"
        );
        assert_eq!(cache.stats().recovered, 1, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_l2_is_cut_off_by_the_timeout() {
    let rig = Rig::new();
    let cache = rig
        .builder()
        .l2_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    rig.chaos.set_delay(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    assert!(!find(&cache, &oid(1), GRAPH).await);
    let saved = save(&cache, &oid(1), GRAPH, rig.now()).await;
    assert!(!saved.write.l2_written);
    // one call for the read, one for the write's read (whose failure queues the change
    // instead of setting the whole key): 100 ms each
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "bounded by the timeout, not the 30 s delay"
    );
    let s = cache.stats();
    assert_eq!(s.l2_errors_by_class.timeout, s.l2_errors);
    assert!(s.l2_errors >= 2, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn the_callback_decides_retries_within_bounds() {
    let rig = Rig::new();
    let seen = Arc::new(AtomicU32::new(0));
    let seen2 = seen.clone();
    let cache = rig
        .builder()
        .l2_breaker(BreakerOptions {
            failure_threshold: 0,
            ..BreakerOptions::default()
        })
        .l2_retry(RetryOptions {
            max_retries: 2,
            ..RetryOptions::default()
        })
        .on_l2_failure(move |f: &L2Failure<'_>| {
            seen2.fetch_add(1, Ordering::SeqCst);
            assert!(f.attempt >= 1 && !f.operation.is_empty());
            if f.error.kind == StoreErrorKind::Timeout {
                L2Decision::Retry
            } else {
                L2Decision::GiveUp
            }
        })
        .build()
        .await
        .unwrap();
    rig.chaos.fail_always(StoreErrorKind::Connection);
    let before = rig.chaos.calls();
    assert!(!find(&cache, &oid(1), GRAPH).await);
    assert_eq!(
        rig.chaos.calls() - before,
        1,
        "connection errors: the callback gives up"
    );
    assert_eq!(cache.stats().l2_retries, 0);
    rig.chaos.fail_always(StoreErrorKind::Timeout);
    let before = rig.chaos.calls();
    assert!(!find(&cache, &oid(2), GRAPH).await);
    assert_eq!(
        rig.chaos.calls() - before,
        3,
        "one call and two retries, never more"
    );
    assert_eq!(cache.stats().l2_retries, 2);
    // the callback saw: 1 (connection) + 3 (timeouts; the third is refused by the bound)
    assert_eq!(seen.load(Ordering::SeqCst), 1 + 2);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_skips_l2_probes_and_closes() {
    let rig = Rig::new();
    let cache = rig.builder().build().await.unwrap();
    let two = cache.two_level().clone();
    rig.chaos.fail_always(StoreErrorKind::Connection);
    for i in 0..3 {
        assert!(!find(&cache, &oid(i), GRAPH).await);
    }
    assert_eq!(two.breaker_state(), BreakerState::Open);
    assert_eq!(cache.stats().breaker_opened, 1);
    // open: L2 is not called at all, callers still get answers
    let calls = rig.chaos.calls();
    for i in 10..30 {
        assert!(!find(&cache, &oid(i), GRAPH).await);
        save(&cache, &oid(i), GRAPH, rig.now()).await;
    }
    assert_eq!(rig.chaos.calls(), calls, "no L2 call while open");
    assert_eq!(
        cache.stats().l2_skipped,
        20 * 2,
        "read + write's read (a write whose read failed never sets the whole key)"
    );
    assert_eq!(two.queue_depth(), 20);
    // after open_for a probe goes through; it fails: open again (for longer)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    settle().await;
    assert!(rig.chaos.calls() > calls, "probed");
    assert_eq!(two.breaker_state(), BreakerState::Open);
    assert_eq!(
        cache.stats().breaker_opened,
        1,
        "reopening after a failed probe is not a new opening"
    );
    // L2 heals: the next probe closes the breaker and the queue drains by itself
    rig.chaos.fail_never();
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(two.breaker_state(), BreakerState::Closed);
    assert_eq!(two.queue_depth(), 0);
    assert!(!two.is_degraded());
    assert_eq!(cache.stats().recovered, 20);
    for i in 10..30 {
        assert!(rig.in_l2(&oid(i)).await.is_some(), "user {i} reached L2");
    }
}

#[tokio::test(start_paused = true)]
async fn a_half_open_breaker_lets_one_probe_through() {
    let rig = Rig::new();
    let cache = rig.builder().build().await.unwrap();
    let two = cache.two_level().clone();
    rig.chaos.fail_always(StoreErrorKind::Connection);
    for i in 0..3 {
        find(&cache, &oid(i), GRAPH).await;
    }
    assert_eq!(two.breaker_state(), BreakerState::Open);
    // the probe hangs (slow L2): the breaker is half-open while it is in flight
    rig.chaos.fail_never();
    rig.chaos.set_delay(Duration::from_millis(200));
    tokio::time::advance(Duration::from_millis(1000)).await;
    let probe = {
        let c = cache.clone();
        tokio::spawn(async move { find(&c, &oid(7), GRAPH).await })
    };
    settle().await;
    assert_eq!(two.breaker_state(), BreakerState::HalfOpen);
    let calls = rig.chaos.calls();
    assert!(!find(&cache, &oid(8), GRAPH).await);
    assert_eq!(
        rig.chaos.calls(),
        calls,
        "other calls skip L2 while the probe is out"
    );
    probe.await.unwrap();
    // the probe (the load's, or the recovery task's if it went first) answers after
    // the delay, and closes the breaker
    tokio::time::sleep(Duration::from_millis(250)).await;
    settle().await;
    assert_eq!(two.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_bounded_and_drops_the_oldest() {
    let rig = Rig::new();
    let cache = rig
        .builder()
        .recovery_queue_capacity(3)
        .build()
        .await
        .unwrap();
    rig.chaos.fail_always(StoreErrorKind::Connection);
    for i in 0..5 {
        save(&cache, &oid(i), GRAPH, rig.now()).await;
    }
    let s = cache.stats();
    assert_eq!((s.queued, s.queue_depth, s.dropped_overflow), (5, 3, 2));
    rig.chaos.fail_never();
    heal(&cache).await;
    for i in 0..2 {
        assert!(
            rig.in_l2(&oid(i)).await.is_none(),
            "user {i} was dropped (oldest)"
        );
    }
    for i in 2..5 {
        assert!(rig.in_l2(&oid(i)).await.is_some(), "user {i} was kept");
    }
    assert_eq!(cache.stats().recovered, 3);
}

#[tokio::test(start_paused = true)]
async fn the_latest_change_per_key_wins_removals_included() {
    let rig = Rig::new();
    let cache = rig.builder().build().await.unwrap();
    let (a, b) = (oid(1), oid(2));
    save(&cache, &a, GRAPH, rig.now()).await; // in L2 before the outage
    rig.chaos.fail_always(StoreErrorKind::Connection);
    rig.clock.advance_secs(10);
    save(&cache, &a, MAIL, rig.now()).await;
    rig.clock.advance_secs(10);
    save(&cache, &b, GRAPH, rig.now()).await;
    cache.two_level().remove(&home(&b)).await; // b signs out during the outage
    let s = cache.stats();
    assert_eq!((s.queued, s.queue_depth), (3, 2), "one entry per key");
    assert!(
        !find(&cache, &b, GRAPH).await,
        "the queued removal is what this replica sees"
    );
    assert!(find(&cache, &a, MAIL).await && find(&cache, &a, GRAPH).await);
    rig.chaos.fail_never();
    heal(&cache).await;
    let pa = rig.in_l2(&a).await.expect("a in L2");
    assert!(
        has_token(&pa, &a, GRAPH, rig.now()) && has_token(&pa, &a, MAIL, rig.now()),
        "both of a's tokens"
    );
    assert!(
        rig.in_l2(&b).await.is_none(),
        "b's removal won over b's earlier write"
    );
    assert_eq!(cache.stats().recovered, 2);
}

#[tokio::test(start_paused = true)]
async fn a_queued_change_never_overwrites_newer_values_from_another_replica() {
    let rig = Rig::new();
    let cache = rig.builder().build().await.unwrap();
    let other = rig.other_replica().await;
    let (a, b, c) = (oid(1), oid(2), oid(3));
    // b and c were stored before the outage by the other replica
    save(&other, &b, GRAPH, rig.now()).await;
    save(&other, &c, GRAPH, rig.now()).await;
    rig.chaos.fail_always(StoreErrorKind::Connection);
    rig.clock.advance_secs(60);
    // L2 cannot be read: these writes queue their changes, to be merged record by record
    let saved = save(&cache, &a, GRAPH, rig.now()).await; // queued at T+60
    assert!(saved.write.merged_later && !saved.write.l2_written);
    save(&cache, &b, MAIL, rig.now()).await; // queued at T+60, over b's older value
    cache.two_level().remove(&home(&c)).await; // queued removal at T+60
    rig.clock.advance_secs(60);
    // meanwhile the other replica, which reaches L2, stores newer tokens for a and c
    save(&other, &a, MAIL, rig.now()).await;
    save(&other, &c, MAIL, rig.now()).await;
    rig.chaos.fail_never();
    heal(&cache).await;
    let s = cache.stats();
    assert_eq!((s.superseded, s.recovered), (1, 2), "{s:?}");
    // a: both replicas' tokens are there: the other's newer MAIL token and our GRAPH one
    let pa = rig.in_l2(&a).await.unwrap();
    assert!(has_token(&pa, &a, MAIL, rig.now()) && has_token(&pa, &a, GRAPH, rig.now()));
    // and the refresh token is the other replica's newer one
    let rt_other = other
        .find_refresh_token(CLIENT_ID, &home(&a), None)
        .await
        .unwrap()
        .unwrap();
    let rt_l2 = pa.refresh_tokens().next().unwrap().secret.clone();
    assert_eq!(
        rt_other, rt_l2,
        "a refresh token never goes back to an older one"
    );
    // c: our older removal did not delete the newer tokens
    assert!(rig.in_l2(&c).await.is_some());
    // b: our change merged into L2's older value
    let pb = rig.in_l2(&b).await.unwrap();
    assert!(has_token(&pb, &b, MAIL, rig.now()) && has_token(&pb, &b, GRAPH, rig.now()));
    // this replica dropped its partial L1 copy of a: it now reads the merged value
    assert!(find(&cache, &a, MAIL).await);
    assert!(find(&cache, &a, GRAPH).await);
}

#[tokio::test(start_paused = true)]
async fn a_write_after_recovery_carries_the_queued_change_with_it() {
    let rig = Rig::new();
    let cache = rig.builder().l1_max_bytes(1).build().await.unwrap(); // L1 keeps nothing
    let a = oid(1);
    rig.chaos.fail_always(StoreErrorKind::Connection);
    save(&cache, &a, GRAPH, rig.now()).await;
    // with L1 unable to hold it, the queue still answers this replica's reads
    assert!(find(&cache, &a, GRAPH).await);
    rig.chaos.fail_never();
    rig.clock.advance_secs(5);
    // L2 is back but the queue has not drained yet: a new write builds on the queued one
    let saved = save(&cache, &a, MAIL, rig.now()).await;
    assert!(saved.write.l2_written);
    let pa = rig.in_l2(&a).await.unwrap();
    assert!(has_token(&pa, &a, GRAPH, rig.now()) && has_token(&pa, &a, MAIL, rig.now()));
    assert_eq!(cache.two_level().queue_depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn metrics_show_levels_errors_breaker_and_queue() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let rig = Rig::new();
    let cache = rig.builder().build().await.unwrap();
    save(&cache, &oid(1), GRAPH, rig.now()).await;
    assert!(find(&cache, &oid(1), GRAPH).await); // L1 hit
    let other = rig.other_replica().await;
    save(&other, &oid(2), GRAPH, rig.now()).await;
    assert!(find(&cache, &oid(2), GRAPH).await); // L1 miss, L2 hit
    rig.chaos.fail_always(StoreErrorKind::Timeout);
    for i in 3..6 {
        save(&cache, &oid(i), GRAPH, rig.now()).await; // opens the breaker, queues 3
    }
    // A snapshot drains counters and gauges: take one per look, keep the values.
    type Seen = Vec<(String, Vec<(String, String)>, f64)>;
    fn look(s: &metrics_util::debugging::Snapshotter) -> Seen {
        s.snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| {
                let key = k.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                let v = match v {
                    DebugValue::Counter(c) => c as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(h) => h.len() as f64,
                };
                (key.name().to_string(), labels, v)
            })
            .collect()
    }
    let mut seen = look(&snapshotter);
    let read = |name: &str, label: Option<(&str, &str)>| -> Option<f64> {
        seen.iter().find_map(|(n, labels, v)| {
            let labelled =
                label.is_none_or(|(ln, lv)| labels.iter().any(|(k, val)| k == ln && val == lv));
            (n == name && labelled).then_some(*v)
        })
    };
    assert_eq!(
        read("tokencache_hits_total", Some(("level", "l1"))),
        Some(1.0)
    );
    assert_eq!(
        read("tokencache_hits_total", Some(("level", "l2"))),
        Some(1.0)
    );
    assert!(read("tokencache_misses_total", Some(("level", "l1"))).unwrap() >= 1.0);
    assert_eq!(
        read("tokencache_l2_errors_total", Some(("class", "timeout"))),
        Some(3.0)
    );
    assert_eq!(
        read("tokencache_l2_errors_total", Some(("class", "connection"))),
        Some(0.0)
    );
    assert_eq!(read("tokencache_l2_breaker_state", None), Some(1.0), "open");
    assert_eq!(read("tokencache_recovery_queue_depth", None), Some(3.0));
    rig.chaos.fail_never();
    heal(&cache).await;
    seen = look(&snapshotter);
    let read = |name: &str| seen.iter().find_map(|(n, _, v)| (n == name).then_some(*v));
    assert_eq!(read("tokencache_l2_breaker_state"), Some(0.0), "closed");
    assert_eq!(read("tokencache_recovery_queue_depth"), Some(0.0));
    assert_eq!(read("tokencache_recovery_applied_total"), Some(3.0));
}
