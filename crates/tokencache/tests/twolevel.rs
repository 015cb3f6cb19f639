//! The two-level cache over an in-memory store with a manual clock: read path,
//! write path, single-flight, expiry rules, sliding touches, failures and bad data.

mod common;

use common::Counting;
use std::sync::Arc;
use std::time::Duration;
use tokencache::clock::{Clock, ManualClock};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::memory::MemoryStore;
use tokencache::store::{SharedStore, Store};
use tokencache::twolevel::ExpiryOptions;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

const T0: i64 = 1_800_000_000;
const OID: &str = "11111111-2222-3333-4444-555555555555";

struct Rig {
    clock: ManualClock,
    store: Arc<MemoryStore>,
    counting: Arc<Counting>,
}

impl Rig {
    fn new(delay_ms: u64) -> Self {
        let clock = ManualClock::at_secs(T0);
        let store = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
        let counting = Counting::new(
            store.clone() as SharedStore,
            Duration::from_millis(delay_ms),
        );
        Self {
            clock,
            store,
            counting,
        }
    }

    async fn cache(&self, expiry: ExpiryOptions) -> TokenCache {
        TokenCache::builder()
            .store(self.counting.clone() as SharedStore)
            .clock(Arc::new(self.clock.clone()))
            .expiry(expiry)
            .build()
            .await
            .unwrap()
    }

    fn now(&self) -> i64 {
        self.clock.now_secs()
    }
}

async fn save_user(cache: &TokenCache, now: i64, scopes: &[&str]) -> String {
    save_user_for(cache, now, scopes, 3600).await
}

async fn save_user_for(cache: &TokenCache, now: i64, scopes: &[&str], expires_in: i64) -> String {
    let resp = sample::user_response(OID, TENANT, scopes, now, expires_in).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    cache
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition
}

const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];

#[tokio::test]
async fn read_path_fills_l1_from_l2() {
    let rig = Rig::new(0);
    let writer = rig.cache(ExpiryOptions::default()).await;
    let home = save_user(&writer, rig.now(), GRAPH).await;
    assert_eq!(home, format!("{OID}.{TENANT}"));

    let reader = rig.cache(ExpiryOptions::default()).await;
    let lookup = Lookup::user(CLIENT_ID, &home, GRAPH);
    let first = reader
        .find_access_token(&lookup)
        .await
        .unwrap()
        .expect("L2 hit");
    let second = reader
        .find_access_token(&lookup)
        .await
        .unwrap()
        .expect("L1 hit");
    assert_eq!(first, second);
    let s = reader.stats();
    assert_eq!((s.l1_hits, s.l1_misses, s.l2_hits), (1, 1, 1));

    // another client id, another user, a scope outside the target: no token
    assert!(reader
        .find_access_token(&Lookup::user("other-client", &home, GRAPH))
        .await
        .unwrap()
        .is_none());
    assert!(reader
        .find_access_token(&Lookup::user(CLIENT_ID, "x.y", GRAPH))
        .await
        .unwrap()
        .is_none());
    let mail = ["https://graph.microsoft.com/Mail.Send"];
    assert!(reader
        .find_access_token(&Lookup::user(CLIENT_ID, &home, &mail))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_read_l2_once() {
    let rig = Rig::new(20);
    let writer = rig.cache(ExpiryOptions::default()).await;
    let home = save_user(&writer, rig.now(), GRAPH).await;
    let reader = rig.cache(ExpiryOptions::default()).await;
    let gets_before = Counting::n(&rig.counting.gets);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (r, h) = (reader.clone(), home.clone());
        tasks.push(tokio::spawn(async move {
            r.find_access_token(&Lookup::user(CLIENT_ID, &h, GRAPH))
                .await
                .unwrap()
                .is_some()
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(
        Counting::n(&rig.counting.gets) - gets_before,
        1,
        "one L2 read for 1000 callers"
    );
}

#[tokio::test]
async fn entries_are_never_served_after_their_deadline() {
    let rig = Rig::new(0);
    let cache = rig.cache(ExpiryOptions::default()).await;
    let scope = "https://graph.microsoft.com/.default";
    let resp = sample::app_response(scope, rig.now(), 3600).unwrap();
    let scopes = [scope];
    let req = SaveRequest::new(CLIENT_ID, SaveFor::App, ENVIRONMENT, TENANT, &scopes);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    // app partition: TTL = the access token's expiry
    assert_eq!(saved.write.ttl, Some(Duration::from_secs(3600)));
    let lookup = Lookup::app(CLIENT_ID, TENANT, &scopes);
    assert!(cache.find_access_token(&lookup).await.unwrap().is_some());
    rig.clock.advance_secs(3600 - 301);
    assert!(
        cache.find_access_token(&lookup).await.unwrap().is_some(),
        "still valid with 5 min skew"
    );
    rig.clock.advance_secs(2);
    assert!(
        cache.find_access_token(&lookup).await.unwrap().is_none(),
        "inside the skew"
    );
    rig.clock.advance_secs(300);
    // past the deadline: neither level has it
    let l1 = cache.two_level().l1().unwrap();
    assert!(l1.get(&saved.partition).is_none());
    assert!(rig.store.get(&saved.partition).await.unwrap().is_none());
}

#[tokio::test]
async fn obo_partitions_end_with_the_incoming_assertion() {
    let rig = Rig::new(0);
    let cache = rig.cache(ExpiryOptions::default()).await;
    let now = rig.now();
    let assertion = sample::incoming_assertion(OID, TENANT, now, now + 1800);
    let scopes = ["api://downstream/.default"];
    let resp = sample::obo_response(OID, TENANT, &scopes, now, 3600).unwrap();
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
    assert_eq!(
        saved.partition,
        tokencache::partition::assertion_hash(&assertion)
    );
    assert_eq!(
        saved.write.ttl,
        Some(Duration::from_secs(1800)),
        "assertion exp, not the AT's 3600"
    );
    let lookup = Lookup::obo(CLIENT_ID, &assertion, &scopes);
    assert!(cache.find_access_token(&lookup).await.unwrap().is_some());
    // another assertion of the same user does not see it
    let other = sample::incoming_assertion(OID, TENANT, now + 1, now + 1800);
    assert!(cache
        .find_access_token(&Lookup::obo(CLIENT_ID, &other, &scopes))
        .await
        .unwrap()
        .is_none());
    rig.clock.advance_secs(1800);
    assert!(cache.find_access_token(&lookup).await.unwrap().is_none());
}

#[tokio::test]
async fn user_partitions_live_a_refresh_token_lifetime_and_options_take_the_earliest() {
    let rig = Rig::new(0);
    let expiry = ExpiryOptions {
        refresh_token_lifetime: Duration::from_secs(24 * 3600),
        ..ExpiryOptions::default()
    };
    let cache = rig.cache(expiry.clone()).await;
    let resp = sample::user_response(OID, TENANT, GRAPH, rig.now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    assert_eq!(saved.write.ttl, Some(Duration::from_secs(24 * 3600)));

    // absolute relative to now (2 h) is earlier than the RT lifetime: it wins
    let cache2 = rig
        .cache(ExpiryOptions {
            absolute_expiration_relative_to_now: Some(Duration::from_secs(7200)),
            sliding_expiration: Some(Duration::from_secs(3 * 3600)),
            ..expiry.clone()
        })
        .await;
    let saved = cache2.save_token_response(&req, &resp).await.unwrap();
    assert_eq!(saved.write.ttl, Some(Duration::from_secs(7200)));

    // sliding (30 min) is earlier still
    let cache3 = rig
        .cache(ExpiryOptions {
            absolute_expiration_relative_to_now: Some(Duration::from_secs(7200)),
            sliding_expiration: Some(Duration::from_secs(1800)),
            ..expiry
        })
        .await;
    let saved = cache3.save_token_response(&req, &resp).await.unwrap();
    assert_eq!(saved.write.ttl, Some(Duration::from_secs(1800)));
}

#[tokio::test]
async fn sliding_touches_l2_at_most_once_per_fraction_of_the_window() {
    let rig = Rig::new(0);
    let expiry = ExpiryOptions {
        sliding_expiration: Some(Duration::from_secs(600)),
        touch_fraction: 0.1, // at most one touch per 60 s
        ..ExpiryOptions::default()
    };
    let cache = rig.cache(expiry).await;
    // a day-long access token, so only the sliding window can end the entry
    let home = save_user_for(&cache, rig.now(), GRAPH, 86_400).await;
    let lookup = Lookup::user(CLIENT_ID, &home, GRAPH);
    let touches = Counting::n(&rig.counting.touches);
    for _ in 0..100 {
        assert!(cache.find_access_token(&lookup).await.unwrap().is_some());
    }
    assert_eq!(
        Counting::n(&rig.counting.touches),
        touches,
        "L1 hits within the interval cost no round trip"
    );
    // The entry stays alive as long as it is read at least once per window.
    for _ in 0..20 {
        rig.clock.advance_secs(300);
        assert!(cache.find_access_token(&lookup).await.unwrap().is_some());
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await; // let the background touch land
    }
    let touched = Counting::n(&rig.counting.touches) - touches;
    assert!(
        (1..=20).contains(&touched),
        "one touch per read past the interval, got {touched}"
    );
    // still alive in L2 after 100 minutes of regular reads (window is 10 minutes)
    assert!(rig.store.get(&home).await.unwrap().is_some());
    // and dead once nobody reads it for a window
    rig.clock.advance_secs(601);
    assert!(rig.store.get(&home).await.unwrap().is_none());
    assert!(cache.find_access_token(&lookup).await.unwrap().is_none());
}

#[tokio::test]
async fn removing_the_last_credential_removes_the_partition_from_l2() {
    let rig = Rig::new(0);
    let cache = rig.cache(ExpiryOptions::default()).await;
    let home = save_user(&cache, rig.now(), GRAPH).await;
    assert!(rig.store.get(&home).await.unwrap().is_some());
    let removed = cache
        .remove_client_credentials(CLIENT_ID, &home)
        .await
        .unwrap();
    assert!(removed >= 3, "AT, RT and id token at least, got {removed}");
    assert!(
        rig.store.get(&home).await.unwrap().is_none(),
        "not written empty: removed"
    );
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn corrupted_l2_values_are_a_miss_not_a_panic() {
    let rig = Rig::new(0);
    let cache = rig.cache(ExpiryOptions::default()).await;
    let key = format!("{OID}.{TENANT}");
    for garbage in [
        &b"not json"[..],
        b"{\"AccessToken\": 5}",
        b"\xff\xfe",
        b"{\"AccessToken\":{\"k\":{\"secret\":1}}}",
    ] {
        rig.store.set(&key, garbage, None).await.unwrap();
        let l = Lookup::user(CLIENT_ID, &key, GRAPH);
        assert!(cache.find_access_token(&l).await.unwrap().is_none());
    }
    assert_eq!(cache.stats().bad_blobs, 4);
    // a save over a corrupted value replaces it
    let home = save_user(&cache, rig.now(), GRAPH).await;
    assert_eq!(home, key);
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &key, GRAPH))
        .await
        .unwrap()
        .is_some());
}

/// An L2 blob whose id token, account or app metadata records are malformed (valid JSON)
/// still serves its access tokens: those sections are decoded only when asked for, and
/// then read as empty with the reason. Their text survives a read; a write decodes the
/// whole blob, refuses it as before and replaces it.
#[tokio::test]
async fn malformed_records_in_a_section_a_read_never_decodes_do_not_hide_the_access_tokens() {
    let rig = Rig::new(0);
    let writer = rig.cache(ExpiryOptions::default()).await;
    let key = save_user(&writer, rig.now(), GRAPH).await;
    let good = rig.store.get(&key).await.unwrap().unwrap().bytes;
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["Account"] = serde_json::json!({"k": {"home_account_id": 7}});
    let bad = serde_json::to_vec(&v).unwrap();
    assert!(tokencache::Partition::parse(&bad).is_err());
    rig.store.set(&key, &bad, None).await.unwrap();

    let reader = rig.cache(ExpiryOptions::default()).await;
    let l = Lookup::user(CLIENT_ID, &key, GRAPH);
    assert!(reader.find_access_token(&l).await.unwrap().is_some());
    assert_eq!(reader.stats().bad_blobs, 0);
    let p = reader
        .partition(&tokencache::Subject::User(&key), CLIENT_ID)
        .await
        .unwrap();
    assert_eq!(p.accounts().count(), 0);
    let why = p.deferred_error().expect("the reason").to_string();
    assert!(why.starts_with("Account.k.home_account_id"), "{why}");
    assert_eq!(
        rig.store.get(&key).await.unwrap().unwrap().bytes,
        bad,
        "a read changes nothing"
    );
    // A write reads the whole blob: refused as unreadable, then replaced.
    save_user(
        &reader,
        rig.now(),
        &["https://graph.microsoft.com/Mail.Send"],
    )
    .await;
    let after = rig.store.get(&key).await.unwrap().unwrap().bytes;
    let after = tokencache::Partition::parse(&after).expect("the write left a whole blob");
    assert_eq!(after.accounts().count(), 1);
    assert_eq!(reader.stats().bad_blobs, 1);
}

#[tokio::test]
async fn l2_failures_fall_back_to_l1_or_a_miss() {
    let rig = Rig::new(0);
    let cache = rig.cache(ExpiryOptions::default()).await;
    let home = save_user(&cache, rig.now(), GRAPH).await;
    rig.counting.fail(true);
    // L1 still answers
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_some());
    // a cold cache gets a miss, not an error
    let cold = rig.cache(ExpiryOptions::default()).await;
    assert!(cold
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_none());
    assert!(cold.stats().l2_errors >= 1);
    // a write during the outage lands in L1 and reports that L2 did not take it
    let saved = {
        let resp = sample::user_response(
            OID,
            TENANT,
            &["api://orders-api/Orders.ReadWrite"],
            rig.now(),
            3600,
        )
        .unwrap();
        let scopes = ["api://orders-api/Orders.ReadWrite"];
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, &scopes);
        cache.save_token_response(&req, &resp).await.unwrap()
    };
    assert!(saved.write.stored && !saved.write.l2_written);
    // both tokens (the earlier from L1, the new one) are served
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
        .await
        .unwrap()
        .is_some());
    let scopes = ["api://orders-api/Orders.ReadWrite"];
    assert!(cache
        .find_access_token(&Lookup::user(CLIENT_ID, &home, &scopes))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn l1_is_bounded_in_bytes() {
    let rig = Rig::new(0);
    let cache = TokenCache::builder()
        .store(rig.counting.clone() as SharedStore)
        .clock(Arc::new(rig.clock.clone()))
        .l1_max_bytes(64 * 1024)
        .build()
        .await
        .unwrap();
    for i in 0..100 {
        let oid = format!("{i:08}-0000-0000-0000-000000000000");
        let resp = sample::user_response(&oid, TENANT, GRAPH, rig.now(), 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
        cache.save_token_response(&req, &resp).await.unwrap();
    }
    let l1 = cache.two_level().l1().unwrap();
    l1.run_pending_tasks();
    assert!(
        l1.weighted_bytes() <= 64 * 1024,
        "L1 holds {} bytes",
        l1.weighted_bytes()
    );
    assert!(rig.store.len() == 100, "L2 holds all of them");
}
