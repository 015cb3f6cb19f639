//! The promises of docs/design.md §6–§8 where they used to break (issue "every promise
//! holds"), each with the store doing what real stores do at the worst moment: a drain
//! still carrying a change when the cache says it caught up; two saves of one token in
//! one millisecond; a full recovery queue with a sign-out in it; a sign-out racing a
//! write of a partition that did not exist; a replica whose clock runs 5 s fast.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Counting;
use tokencache::clock::{Clock, ManualClock};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::memory::MemoryStore;
use tokencache::store::{SharedStore, Store, StoreErrorKind};
use tokencache::{Error, Lookup, Partition, SaveFor, SaveRequest, TokenCache, TokenCacheBuilder};

const T0: i64 = 1_800_000_000;
const A: &[&str] = &["api://promises/a"];
const B: &[&str] = &["api://promises/b"];

fn oid(i: usize) -> String {
    format!("{i:08}-0000-4000-8000-0000promises")
}

fn home(oid: &str) -> String {
    format!("{oid}.{TENANT}")
}

fn builder(store: SharedStore, clock: &ManualClock) -> TokenCacheBuilder {
    TokenCache::builder()
        .store(store)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
}

/// Saves a token for `oid` and `scopes` whose secret is `secret`.
async fn save(cache: &TokenCache, oid: &str, scopes: &[&str], secret: &str) -> tokencache::Saved {
    let now = cache.two_level().clock().now_secs();
    let mut resp = sample::user_response(oid, TENANT, scopes, now, 3600).unwrap();
    resp.access_token = Some(secret.into());
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    cache
        .save_token_response(&req, &resp)
        .await
        .expect("a save never fails because of L2")
}

/// The secrets L2 holds for `oid`'s access tokens of `scopes`.
async fn in_l2(store: &MemoryStore, oid: &str, scopes: &[&str]) -> Vec<String> {
    let Some(v) = store.get(&home(oid)).await.unwrap() else {
        return Vec::new();
    };
    let p = Partition::parse(&v.bytes).unwrap();
    p.access_tokens()
        .filter(|t| t.target == scopes[0])
        .map(|t| t.secret.expose().to_string())
        .collect()
}

async fn found(cache: &TokenCache, oid: &str, scopes: &[&str]) -> Option<String> {
    let h = home(oid);
    cache
        .find_access_token(&Lookup::user(CLIENT_ID, &h, scopes))
        .await
        .unwrap()
        .map(|t| t.secret.expose().to_string())
}

/// Recovers until nothing is queued (on Tokio's paused clock).
async fn drained(cache: &TokenCache) {
    for _ in 0..50 {
        if cache.two_level().recover_now().await && !cache.two_level().is_degraded() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("still degraded: {:?}", cache.stats());
}

/// Item 1 of the issue, as it happened: the background drain had taken a user's queued
/// change out of the queue and was still on its way to L2 when another drain (the load
/// tool's, a shutdown's) found the queue empty and said L2 had caught up; whoever
/// trusted that read L2 without the change (a "lost" acknowledged write).
#[tokio::test(start_paused = true)]
async fn a_change_on_its_way_to_l2_keeps_the_cache_degraded_until_it_lands() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(store.clone() as SharedStore));
    let cache = builder(chaos.clone(), &clock).build().await.unwrap();
    let u = oid(1);
    chaos.fail_always(StoreErrorKind::Connection);
    assert!(save(&cache, &u, A, "x1").await.write.merged_later);
    chaos.fail_never();
    // every call now takes 100 ms: the first drain is slow
    chaos.set_delay(Duration::from_millis(100));
    let two = cache.two_level().clone();
    let first = tokio::spawn(async move { two.recover_now().await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // the first drain holds the change (it read L2 and is about to write it)
    assert!(cache.two_level().is_degraded(), "a change is not in L2 yet");
    let caught_up = cache.two_level().recover_now().await;
    if caught_up || !cache.two_level().is_degraded() {
        assert_eq!(
            in_l2(&store, &u, A).await,
            vec!["x1"],
            "said caught up while the change was still on its way"
        );
    }
    assert!(first.await.unwrap());
    assert!(!cache.two_level().is_degraded());
    assert_eq!(in_l2(&store, &u, A).await, vec!["x1"]);
}

/// Two saves of one token in one millisecond (a frozen clock: every write is in the
/// same one): the earlier, queued on replica A during its outage, never replaces the
/// later one replica B stored meanwhile, when A's queue drains.
#[tokio::test(start_paused = true)]
async fn two_saves_of_one_token_in_one_millisecond_keep_the_later() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(store.clone() as SharedStore));
    let a = builder(chaos.clone(), &clock).build().await.unwrap();
    let b = builder(store.clone(), &clock).build().await.unwrap();
    let u = oid(2);
    chaos.fail_always(StoreErrorKind::Connection);
    assert!(save(&a, &u, A, "earlier").await.write.merged_later);
    assert!(save(&b, &u, A, "later").await.write.l2_written);
    chaos.fail_never();
    drained(&a).await;
    assert_eq!(in_l2(&store, &u, A).await, vec!["later"]);
    assert_eq!(found(&a, &u, A).await.as_deref(), Some("later"));
}

/// A sign-out during an outage is the oldest entry of a queue that then fills with other
/// users' writes: it is never the one dropped, and reaches L2 when L2 is back.
#[tokio::test(start_paused = true)]
async fn a_full_recovery_queue_never_drops_a_signout() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(store.clone() as SharedStore));
    let cache = builder(chaos.clone(), &clock)
        .recovery_queue_capacity(2)
        .build()
        .await
        .unwrap();
    let leaving = oid(3);
    save(&cache, &leaving, A, "before-signout").await;
    assert_eq!(in_l2(&store, &leaving, A).await, vec!["before-signout"]);
    chaos.fail_always(StoreErrorKind::Connection);
    let out = cache.remove_account(&home(&leaving)).await.unwrap();
    assert!(!out.l2_complete);
    for i in 10..16 {
        save(&cache, &oid(i), A, &format!("other-{i}")).await;
    }
    let stats = cache.stats();
    assert_eq!(stats.dropped_overflow, 4, "writes only: {stats:?}");
    chaos.fail_never();
    drained(&cache).await;
    assert!(
        store.get(&home(&leaving)).await.unwrap().is_none(),
        "the sign-out's removal reached L2"
    );
    let stamp = cache.two_level().keys().revocation(&home(&leaving));
    assert!(store.get(&stamp).await.unwrap().is_some(), "and its stamp");
}

/// When the queue already holds as many sign-outs as it may, a new one is refused with a
/// typed error (the caller retries): none queued is dropped for it.
#[tokio::test(start_paused = true)]
async fn a_signout_beyond_the_queue_bound_is_refused_not_dropped() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(store.clone() as SharedStore));
    let cache = builder(chaos.clone(), &clock)
        .signout_queue_capacity(3)
        .build()
        .await
        .unwrap();
    let (first, second) = (oid(4), oid(5));
    save(&cache, &first, A, "first").await;
    save(&cache, &second, A, "second").await;
    chaos.fail_always(StoreErrorKind::Connection);
    // stamp, partition and link set: three sign-out entries
    assert!(
        !cache
            .remove_account(&home(&first))
            .await
            .unwrap()
            .l2_complete
    );
    match cache.remove_account(&home(&second)).await {
        Err(Error::SignOutRefused { home_account_id }) => {
            assert_eq!(home_account_id, home(&second))
        }
        other => panic!("not refused: {other:?}"),
    }
    assert!(cache.stats().refused_signouts >= 1);
    chaos.fail_never();
    drained(&cache).await;
    assert!(
        store.get(&home(&first)).await.unwrap().is_none(),
        "the queued sign-out was not dropped for the refused one"
    );
    // The refused one, retried now, goes through.
    assert!(
        cache
            .remove_account(&home(&second))
            .await
            .unwrap()
            .l2_complete
    );
    assert!(store.get(&home(&second)).await.unwrap().is_none());
}

/// A user who signs out and in again during one outage: the new token is queued over
/// the queued removal, which still removes what L2 held from before the sign-out.
#[tokio::test(start_paused = true)]
async fn a_save_queued_after_a_queued_signout_keeps_the_removal() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(store.clone() as SharedStore));
    let cache = builder(chaos.clone(), &clock).build().await.unwrap();
    let u = oid(6);
    save(&cache, &u, A, "old-a").await;
    chaos.fail_always(StoreErrorKind::Connection);
    clock.advance_secs(1);
    assert!(!cache.remove_account(&home(&u)).await.unwrap().l2_complete);
    clock.advance_secs(1);
    assert!(save(&cache, &u, B, "new-b").await.write.merged_later);
    chaos.fail_never();
    drained(&cache).await;
    assert_eq!(in_l2(&store, &u, B).await, vec!["new-b"]);
    assert!(
        in_l2(&store, &u, A).await.is_empty(),
        "a token acquired before the sign-out is left in L2"
    );
}

/// Item 2: a write of a partition that did not exist races a sign-out on another replica
/// (the sign-out's removal finds nothing to remove, then the write lands). The token was
/// requested before the acknowledged sign-out: it must not stay in L2 — MSAL and .NET
/// readers of the same store do not check stamps — nor be served.
#[tokio::test]
async fn a_write_racing_a_signout_of_another_replica_leaves_nothing_in_l2() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let counting = Counting::new(store.clone() as SharedStore, Duration::ZERO);
    let a = builder(counting.clone(), &clock).build().await.unwrap();
    let b = builder(store.clone(), &clock).build().await.unwrap();
    let u = oid(7);
    let (reached, release) = counting.hold_next_cas();
    let a2 = a.clone();
    let uu = u.clone();
    let write = tokio::spawn(async move { save(&a2, &uu, A, "requested-before").await });
    reached.notified().await; // A read "nothing, no stamp" and is about to write
    clock.advance_millis(1);
    let out = b.remove_account(&home(&u)).await.unwrap();
    assert!(out.l2_complete, "the sign-out is acknowledged");
    release.notify_one();
    let saved = write.await.unwrap();
    assert!(saved.write.revoked, "{:?}", saved.write);
    assert!(in_l2(&store, &u, A).await.is_empty(), "left in L2");
    assert_eq!(found(&a, &u, A).await, None);
    assert_eq!(found(&b, &u, A).await, None);
}

/// Item 2 as the issue saw it: a change queued during replica A's outage drains while
/// replica B signs the user out; whichever replica wrote the stamp, the drain writes no
/// credential requested before it.
#[tokio::test]
async fn a_drain_racing_a_signout_of_another_replica_leaves_nothing_in_l2() {
    let clock = ManualClock::at_secs(T0);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let counting = Counting::new(store.clone() as SharedStore, Duration::ZERO);
    let a = builder(counting.clone(), &clock).build().await.unwrap();
    let b = builder(store.clone(), &clock).build().await.unwrap();
    let u = oid(8);
    counting.fail(true);
    assert!(save(&a, &u, A, "queued-before").await.write.merged_later);
    counting.fail(false);
    clock.advance_millis(1);
    let (reached, release) = counting.hold_next_cas();
    let two = a.two_level().clone();
    let drain = tokio::spawn(async move { two.recover_now().await });
    reached.notified().await;
    clock.advance_millis(1);
    assert!(b.remove_account(&home(&u)).await.unwrap().l2_complete);
    release.notify_one();
    assert!(drain.await.unwrap());
    assert!(in_l2(&store, &u, A).await.is_empty(), "left in L2");
    assert_eq!(found(&b, &u, A).await, None);
}

/// Item 7: replica A's clock runs 5 s fast. Sign-outs are stamped by the store's clock
/// and A gives the times it compares on it (its measured offset), so (1) a sign-out on A
/// does not refuse what B acquires after it, and (2) what A acquired before a sign-out
/// on B is refused, however A's clock reads.
#[tokio::test]
async fn a_replica_whose_clock_runs_5_s_fast_keeps_signouts_right() {
    let truth = ManualClock::at_secs(T0);
    let fast = ManualClock::new(truth.now_millis() + 5_000);
    let store = Arc::new(MemoryStore::with_clock(Arc::new(truth.clone())));
    let a = builder(store.clone(), &fast).build().await.unwrap();
    let b = builder(store.clone(), &truth).build().await.unwrap();
    assert_eq!(a.two_level().store_clock_offset_ms(), Some(-5_000));
    let advance = |ms: u64| {
        truth.advance_millis(ms);
        fast.advance_millis(ms);
    };
    // (1) A signs a user out; 2 s later (really) the user signs in again through B.
    let u = oid(9);
    save(&b, &u, A, "before").await;
    advance(1_000);
    a.remove_account(&home(&u)).await.unwrap();
    advance(2_000);
    let saved = save(&b, &u, A, "after").await;
    assert!(
        !saved.write.revoked,
        "a token acquired after the sign-out was refused"
    );
    assert_eq!(found(&b, &u, A).await.as_deref(), Some("after"));
    assert_eq!(found(&a, &u, A).await.as_deref(), Some("after"));
    // (2) A starts a request for another user, B signs the user out, A's answer comes.
    let v = oid(10);
    let started = fast.now_secs();
    advance(1_000);
    b.remove_account(&home(&v)).await.unwrap();
    advance(1_000);
    let mut resp = sample::user_response(&v, TENANT, A, started, 3600).unwrap();
    resp.access_token = Some("requested-before".into());
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, A);
    let saved = a
        .save_token_response_at(&req, &resp, started)
        .await
        .unwrap();
    assert!(saved.write.revoked, "{:?}", saved.write);
    assert!(in_l2(&store, &v, A).await.is_empty());
    assert_eq!(found(&a, &v, A).await, None);
    assert_eq!(found(&b, &v, A).await, None);
}

/// On a real redis-server, a replica whose clock runs 2 minutes fast stamps sign-outs by
/// the server's `TIME` (read inside the script that writes the stamp), and a replica with
/// a right clock keeps what it acquires right after.
#[tokio::test]
async fn on_a_real_redis_signouts_are_stamped_by_its_clock() {
    let server = testkit::RedisServer::start();
    let real = || tokencache::clock::SystemClock.now_millis();
    let fast = ManualClock::new(real() + 120_000);
    let fast_cache = TokenCache::builder()
        .store_url(&server.url())
        .clock(Arc::new(fast.clone()))
        .build()
        .await
        .unwrap();
    let offset = fast_cache.two_level().store_clock_offset_ms().expect("adopted");
    assert!((-121_000..=-119_000).contains(&offset), "{offset}");
    let right = TokenCache::builder()
        .store_url(&server.url())
        .build()
        .await
        .unwrap();
    let u = oid(11);
    save(&right, &u, A, "before").await;
    fast.set_millis(real() + 120_000);
    fast_cache.remove_account(&home(&u)).await.unwrap();
    let key = fast_cache.two_level().keys().revocation(&home(&u));
    let stamp = tokencache::store::stamp::parse_stamp(server.cli(&["GET", &key]).as_bytes())
        .expect("a stamp");
    let now = real() as i64;
    assert!((now - 2_000..=now).contains(&stamp), "stamp {stamp}, now {now}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let saved = save(&right, &u, A, "after").await;
    assert!(!saved.write.revoked, "{:?}", saved.write);
    assert_eq!(found(&right, &u, A).await.as_deref(), Some("after"));
}
