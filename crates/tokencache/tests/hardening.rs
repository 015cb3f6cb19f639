//! The hardening pass: cancelled callers, a failed read before a write, hostile session
//! keys, sign-out during an L2 outage, bounded TTLs for every partition kind, guests.
//! Fast tests run on the memory store behind a fault-injecting wrapper, on Tokio's
//! paused clock; the TTL and outage tests run on a real `redis-server`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Counting;
use serde_json::json;
use testkit::RedisServer;
use tokencache::clock::{Clock, ManualClock};
use tokencache::partition::{assertion_hash, PartitionKey};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::memory::MemoryStore;
use tokencache::store::{SharedStore, Store, StoreErrorKind};
use tokencache::twolevel::{BreakerOptions, BreakerState, InFlight, MAX_TTL};
use tokencache::{
    Error, Lookup, Partition, SaveFor, SaveRequest, Subject, TokenCache, TokenResponse,
};

const T0: i64 = 1_800_000_000;
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const MAIL: &[&str] = &["https://graph.microsoft.com/Mail.Send"];
const OTHER_CLIENT: &str = "11111111-2222-3333-4444-555555555555";

fn home(oid: &str) -> String {
    format!("{oid}.{TENANT}")
}

async fn save_user(cache: &TokenCache, client: &str, oid: &str, scopes: &[&str], now: i64) {
    let resp = sample::user_response(oid, TENANT, scopes, now, 3600).unwrap();
    let req = SaveRequest::new(client, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    cache.save_token_response(&req, &resp).await.unwrap();
}

async fn find_user(cache: &TokenCache, client: &str, oid: &str, scopes: &[&str]) -> bool {
    let h = home(oid);
    cache
        .find_access_token(&Lookup::user(client, &h, scopes))
        .await
        .unwrap()
        .is_some()
}

async fn l2_partition(store: &dyn Store, key: &str) -> Option<Partition> {
    let v = store.get(key).await.unwrap()?;
    Some(Partition::parse(&v.bytes).unwrap())
}

/// Lets spawned tasks run until they wait on a timer.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn idle() -> InFlight {
    InFlight::default()
}

// ---- 1. cancelled callers -----------------------------------------------------------

/// A load whose task never ran (its runtime went away first) leaves no in-flight entry
/// behind: otherwise every later caller of the key would wait for it forever.
#[test]
fn a_load_dropped_with_its_runtime_before_it_ran_leaves_nothing_behind() {
    let current = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let main = current();
    let oid = "eeeeeeee-0000-0000-0000-000000000001";
    let (writer, cache) = main.block_on(async {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let build = || {
            TokenCache::builder()
                .store(store.clone())
                .probe_l2_at_start(false)
                .build()
        };
        (build().await.unwrap(), build().await.unwrap())
    });
    main.block_on(save_user(&writer, CLIENT_ID, oid, GRAPH, sample_now()));
    let other = current();
    other.block_on(async {
        // Polled once: it spawns the load on this runtime and waits; the task has not run.
        let mut find = std::pin::pin!(find_user(&cache, CLIENT_ID, oid, GRAPH));
        let once = std::future::poll_fn(|cx| {
            let _ = std::future::Future::poll(find.as_mut(), cx);
            std::task::Poll::Ready(())
        });
        once.await;
        assert_eq!(cache.two_level().in_flight().loads, 1);
    });
    drop(other); // drops the spawned load, never polled
    assert_eq!(cache.two_level().in_flight(), idle(), "nothing left behind");
    assert!(main.block_on(find_user(&cache, CLIENT_ID, oid, GRAPH)));
}

fn sample_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The first caller of a key leads its load; when it is dropped mid-await, the callers
/// who joined it still get the answer of that one load.
#[tokio::test(start_paused = true)]
async fn followers_of_a_dropped_leader_get_its_answer() {
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let counting = Counting::new(memory.clone() as SharedStore, Duration::from_secs(2));
    let writer = TokenCache::builder()
        .store(memory.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let oid = "dddddddd-0000-0000-0000-000000000001";
    save_user(&writer, CLIENT_ID, oid, GRAPH, T0).await;
    let cache = TokenCache::builder()
        .store(counting.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
        .l2_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let spawn_find = || {
        let c = cache.clone();
        tokio::spawn(async move { find_user(&c, CLIENT_ID, oid, GRAPH).await })
    };
    let leader = spawn_find();
    settle().await;
    let followers: Vec<_> = (0..3).map(|_| spawn_find()).collect();
    settle().await;
    assert_eq!(cache.two_level().in_flight().loads, 1, "one load, joined");
    leader.abort();
    for f in followers {
        assert!(f.await.unwrap(), "a follower got the token");
    }
    assert_eq!(
        Counting::n(&counting.gets),
        1,
        "one read of L2 for all of them"
    );
    assert_eq!(cache.two_level().in_flight(), idle());
}

#[tokio::test(start_paused = true)]
async fn dropped_waiters_never_freeze_a_key_or_the_breaker() {
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(memory.clone() as SharedStore));
    let cache = TokenCache::builder()
        .store(chaos.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
        .l2_timeout(Duration::from_secs(5))
        .l2_breaker(BreakerOptions {
            failure_threshold: 2,
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_secs(1),
        })
        .build()
        .await
        .unwrap();
    let two = cache.two_level().clone();
    let oid = "aaaaaaaa-0000-0000-0000-000000000001";

    // A slow L2: every waiter of one load is dropped mid-await.
    chaos.set_delay(Duration::from_secs(2));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { find_user(&c, CLIENT_ID, oid, GRAPH).await })
        })
        .collect();
    settle().await;
    assert_eq!(two.in_flight().loads, 1, "one shared load");
    for w in &waiters {
        w.abort();
    }
    // The write, the sign-out and the drain of the same key finish within a bound.
    let bound = Duration::from_secs(30);
    tokio::time::timeout(bound, save_user(&cache, CLIENT_ID, oid, GRAPH, T0))
        .await
        .expect("a save of the key finishes");
    tokio::time::timeout(bound, cache.remove_account(&home(oid)))
        .await
        .expect("a sign-out of the key finishes")
        .unwrap();
    assert_eq!(two.in_flight(), idle(), "nothing left behind");

    // The half-open probe is a load whose only caller is dropped: it still answers.
    chaos.set_delay(Duration::ZERO);
    chaos.fail_always(StoreErrorKind::Connection);
    for i in 0..2 {
        let o = format!("bbbbbbbb-0000-0000-0000-00000000000{i}");
        assert!(!find_user(&cache, CLIENT_ID, &o, GRAPH).await);
    }
    assert_eq!(two.breaker_state(), BreakerState::Open);
    chaos.fail_never();
    chaos.set_delay(Duration::from_secs(2));
    tokio::time::advance(Duration::from_millis(1100)).await;
    let probe = {
        let c = cache.clone();
        tokio::spawn(async move {
            find_user(&c, CLIENT_ID, "cccccccc-0000-0000-0000-0000000000c1", GRAPH).await
        })
    };
    settle().await;
    assert_eq!(two.breaker_state(), BreakerState::HalfOpen);
    probe.abort();
    tokio::time::sleep(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(
        two.breaker_state(),
        BreakerState::Closed,
        "the abandoned probe answered and closed the breaker"
    );
    assert_eq!(two.in_flight(), idle());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_sign_out_still_completes() {
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let slow = Counting::new(memory.clone() as SharedStore, Duration::from_millis(50));
    let cache = TokenCache::builder()
        .store(slow.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    let oid = "aaaaaaaa-0000-0000-0000-000000000002";
    save_user(&cache, CLIENT_ID, oid, GRAPH, T0).await;
    let h = home(oid);
    let signing_out = {
        let c = cache.clone();
        let h = h.clone();
        tokio::spawn(async move { c.remove_account(&h).await })
    };
    tokio::time::sleep(Duration::from_millis(60)).await; // mid-way: the stamp is written
    signing_out.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    assert!(
        memory.get(&h).await.unwrap().is_none(),
        "the sign-out ran to its end"
    );
    assert_eq!(cache.two_level().in_flight(), idle());
}

// ---- 2. a failed read is never followed by a write of a partial partition -----------

#[tokio::test(start_paused = true)]
async fn a_timed_out_read_then_a_save_leaves_l2_intact() {
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let flaky = Counting::new(memory.clone() as SharedStore, Duration::ZERO);
    let build = |store: SharedStore| {
        TokenCache::builder()
            .store(store)
            .clock(Arc::new(clock.clone()))
            .probe_l2_at_start(false)
            .build()
    };
    let other = build(memory.clone() as SharedStore).await.unwrap();
    let cache = build(flaky.clone() as SharedStore).await.unwrap();
    let oid = "aaaaaaaa-0000-0000-0000-000000000003";
    let h = home(oid);
    // Another replica stored tokens of two clients for the user.
    save_user(&other, CLIENT_ID, oid, GRAPH, T0).await;
    save_user(&other, OTHER_CLIENT, oid, GRAPH, T0).await;
    let before = l2_partition(memory.as_ref(), &h).await.unwrap();

    // One GET times out (the breaker stays closed); the SET would succeed.
    flaky.fail_gets(true);
    clock.advance_secs(10);
    let resp = sample::user_response(oid, TENANT, MAIL, clock.now_secs(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, MAIL);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    assert!(saved.write.merged_later && !saved.write.l2_written);
    let removed = cache
        .remove_client_credentials(OTHER_CLIENT, &h)
        .await
        .unwrap();
    assert_eq!(
        removed, 0,
        "this replica knows no record of that client to remove"
    );
    assert_eq!(
        l2_partition(memory.as_ref(), &h).await.unwrap(),
        before,
        "L2's partition was not replaced"
    );
    assert_eq!(Counting::n(&flaky.sets), 0, "no SET of a partial partition");
    // This replica serves the new token meanwhile.
    assert!(find_user(&cache, CLIENT_ID, oid, MAIL).await);

    // L2 answers again: the queued change is merged into L2's partition.
    flaky.fail_gets(false);
    assert!(cache.two_level().recover_now().await);
    let after = l2_partition(memory.as_ref(), &h).await.unwrap();
    let mut q = tokencache::schema::AccessTokenQuery::new(CLIENT_ID, MAIL);
    q.home_account_id = Some(&h);
    assert!(
        after.find_access_token(&q, clock.now_secs()).is_some(),
        "ours merged in"
    );
    for client in [CLIENT_ID, OTHER_CLIENT] {
        let mut q = tokencache::schema::AccessTokenQuery::new(client, GRAPH);
        q.home_account_id = Some(&h);
        assert!(
            after.find_access_token(&q, clock.now_secs()).is_some(),
            "{client}'s older tokens kept"
        );
    }
}

// ---- 3. hostile session keys ----------------------------------------------------------

#[tokio::test]
async fn session_keys_cannot_reach_another_partition() {
    let cache = TokenCache::builder()
        .store_url("memory://")
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    let now = cache.two_level().clock().now_secs();
    let victim_oid = "11111111-0000-0000-0000-00000000000a";
    let attacker_oid = "22222222-0000-0000-0000-00000000000b";
    let (victim, attacker) = (home(victim_oid), home(attacker_oid));
    save_user(&cache, CLIENT_ID, victim_oid, GRAPH, now).await;
    // The victim's own OBO partition, linked to them.
    let assertion = sample::incoming_assertion(victim_oid, TENANT, now, now + 3600);
    let obo = sample::obo_response(victim_oid, TENANT, MAIL, now, 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    cache.save_token_response(&req, &obo).await.unwrap();

    // A session lookup keyed by the victim's home account id finds nothing.
    let lookup = Lookup::new(
        CLIENT_ID,
        Subject::OboSession {
            session_key: &victim,
        },
        GRAPH,
    );
    assert!(cache.find_access_token(&lookup).await.unwrap().is_none());
    // A session saved under the victim's id by the attacker is the attacker's own
    // partition: the attacker's sign-out leaves the victim's tokens alone.
    let resp = sample::user_response(attacker_oid, TENANT, GRAPH, now, 3600).unwrap();
    let store = cache.two_level().store().clone();
    let keys = cache.two_level().keys().clone();
    let victim_links = keys.link_set(&victim);
    for session_key in [victim.as_str(), victim_links.as_str()] {
        let req = SaveRequest::new(
            CLIENT_ID,
            SaveFor::OboSession {
                session_key,
                user: &attacker,
            },
            ENVIRONMENT,
            TENANT,
            GRAPH,
        );
        let saved = cache.save_token_response(&req, &resp).await.unwrap();
        assert_eq!(
            saved.partition,
            PartitionKey::obo_session(session_key).as_str()
        );
        assert_ne!(saved.partition, session_key);
    }
    cache.remove_account(&attacker).await.unwrap();
    assert!(
        l2_partition(store.as_ref(), &victim).await.is_some(),
        "victim's partition stands"
    );
    assert_eq!(
        store.link_members(&victim_links).await.unwrap(),
        vec![keys.partition_str(&assertion_hash(&assertion))],
        "victim's link set untouched"
    );
    assert!(find_user(&cache, CLIENT_ID, victim_oid, GRAPH).await);

    // User and app keys in tokencache's namespaces are refused with a typed error.
    for bad in ["tc:links:{x.y}", "tc:revoked:{x.y}", "obo-session:abc", ""] {
        let err = cache
            .find_access_token(&Lookup::user(CLIENT_ID, bad, GRAPH))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{bad}: {err}");
        assert!(cache.remove_account(bad).await.is_err(), "{bad}");
    }
    let err = cache
        .find_access_token(&Lookup::app("tc:links:{x.y}", "t", GRAPH))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
}

// ---- 4. sign-out during an L2 outage -------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_sign_out_during_an_outage_is_queued_and_completes_when_l2_returns() {
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(memory.clone() as SharedStore));
    let cache = TokenCache::builder()
        .store(chaos.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    let oid = "aaaaaaaa-0000-0000-0000-000000000004";
    let h = home(oid);
    save_user(&cache, CLIENT_ID, oid, GRAPH, T0).await;
    let keys = cache.two_level().keys().clone();
    chaos.fail_always(StoreErrorKind::Connection);
    clock.advance_secs(5);
    let out = cache.remove_account(&h).await.unwrap();
    assert!(!out.l2_complete, "not durable while L2 is down");
    assert!(
        !find_user(&cache, CLIENT_ID, oid, GRAPH).await,
        "refused here at once"
    );
    assert!(memory.get(&h).await.unwrap().is_some(), "L2 still holds it");
    chaos.fail_never();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
        if !cache.two_level().is_degraded() {
            break;
        }
    }
    assert!(!cache.two_level().is_degraded());
    assert!(
        memory.get(&h).await.unwrap().is_none(),
        "removed once L2 was back"
    );
    let stamp = memory
        .get(&keys.revocation(&h))
        .await
        .unwrap()
        .expect("stamp queued and written");
    assert_eq!(
        std::str::from_utf8(&stamp.bytes).unwrap(),
        format!("{}.000", T0 + 5),
        "Unix seconds with milliseconds: the moment of the sign-out"
    );
    // Now it is durable.
    let again = cache.remove_account(&h).await.unwrap();
    assert!(again.l2_complete);
}

#[tokio::test]
async fn a_sign_out_while_redis_is_down_completes_when_it_is_back() {
    let mut server = RedisServer::start();
    let cache = TokenCache::builder()
        .store_url(&server.url())
        .l2_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let now = cache.two_level().clock().now_secs();
    let oid = "aaaaaaaa-0000-0000-0000-000000000005";
    let h = home(oid);
    save_user(&cache, CLIENT_ID, oid, GRAPH, now).await;
    let assertion = sample::incoming_assertion(oid, TENANT, now, now + 3600);
    let obo = sample::obo_response(oid, TENANT, MAIL, now, 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    cache.save_token_response(&req, &obo).await.unwrap();
    server.stop();
    let out = cache.remove_account(&h).await.unwrap();
    assert!(!out.l2_complete);
    server.restart();
    // The recovery task finds L2 healthy and drains the stamp and the user partition.
    let mut drained = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !cache.two_level().is_degraded() {
            drained = true;
            break;
        }
    }
    assert!(drained, "{:?}", cache.stats());
    assert_eq!(server.cli(&["EXISTS", &h]).trim(), "0");
    let stamp = server.cli(&["GET", &cache.two_level().keys().revocation(&h)]);
    assert!(
        stamp
            .trim()
            .split_once('.')
            .is_some_and(|(s, ms)| s.parse::<i64>().is_ok() && ms.len() == 3),
        "stamp written: {stamp:?}"
    );
    // A second sign-out (the provider's retry) finds the linked OBO partition and is durable.
    let again = cache.remove_account(&h).await.unwrap();
    assert!(again.l2_complete);
    assert_eq!(
        server.cli(&["EXISTS", &assertion_hash(&assertion)]).trim(),
        "0"
    );
}

// ---- 5. every entry is bounded --------------------------------------------------------

fn pttl(server: &RedisServer, key: &str) -> i64 {
    let out = server.cli(&["PTTL", key]);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("PTTL {key}: {out:?}"))
}

#[tokio::test]
async fn every_partition_kind_gets_a_bounded_ttl_on_a_real_redis() {
    let server = RedisServer::start();
    let cache = TokenCache::builder()
        .store_url(&server.url())
        .build()
        .await
        .unwrap();
    let now = cache.two_level().clock().now_secs();
    let max_ms = MAX_TTL.as_millis() as i64;
    let rt_ms = cache
        .two_level()
        .expiry()
        .refresh_token_lifetime
        .as_millis() as i64;
    let within = |ms: i64, hi: i64, what: &str| {
        assert!(ms > 0 && ms <= hi, "{what}: PTTL {ms} not in (0, {hi}]");
    };

    // A user partition with a refresh token: the refresh-token lifetime.
    let u = "aaaaaaaa-0000-0000-0000-00000000000a";
    save_user(&cache, CLIENT_ID, u, GRAPH, now).await;
    within(pttl(&server, &home(u)), rt_ms, "user");

    // A user partition holding only an id token: the refresh-token lifetime too.
    let idt_oid = "aaaaaaaa-0000-0000-0000-00000000000b";
    let id_token = sample::fake_jwt(
        json!({"iss": "https://login.microsoftonline.com/t/v2.0", "aud": CLIENT_ID,
               "oid": idt_oid, "tid": TENANT, "sub": "s", "iat": now, "exp": now + 3600}),
        600,
    );
    let body = json!({"token_type": "Bearer", "id_token": id_token,
                      "client_info": sample::client_info(idt_oid, TENANT)});
    let resp = TokenResponse::from_json(body.to_string().as_bytes()).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    assert!(saved.write.stored);
    within(pttl(&server, &home(idt_oid)), rt_ms, "id-token-only user");

    // An app token claiming to live almost forever: clamped, and L2 takes the write.
    let body = json!({"token_type": "Bearer", "access_token": "eyJ0eXAi.app.token",
                      "expires_in": i64::MAX, "ext_expires_in": i64::MAX});
    let resp = TokenResponse::from_json(body.to_string().as_bytes()).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::App, ENVIRONMENT, TENANT, GRAPH);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    assert!(saved.write.l2_written, "{:?}", cache.stats());
    within(
        pttl(&server, &saved.partition),
        max_ms,
        "app with a huge expires_in",
    );
    assert_eq!(
        cache.two_level().queue_depth(),
        0,
        "nothing stuck in the queue"
    );

    // OBO: the assertion's end; an opaque assertion: the access token's end.
    let o = "aaaaaaaa-0000-0000-0000-00000000000c";
    let assertion = sample::incoming_assertion(o, TENANT, now, now + 1800);
    let obo = sample::obo_response(o, TENANT, MAIL, now, 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    let saved = cache.save_token_response(&req, &obo).await.unwrap();
    within(pttl(&server, &saved.partition), 1800 * 1000, "OBO");
    let links = cache.two_level().keys().link_set(&home(o));
    assert!(
        pttl(&server, &links) >= pttl(&server, &saved.partition) - 1000,
        "link set outlives its members"
    );
    let opaque = "an-opaque-reference-token-0123456789";
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo { assertion: opaque },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    let saved = cache.save_token_response(&req, &obo).await.unwrap();
    within(pttl(&server, &saved.partition), 3600 * 1000, "opaque OBO");

    // A long-running session: the user rule.
    let owner = home(o);
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::OboSession {
            session_key: "job-42",
            user: &owner,
        },
        ENVIRONMENT,
        TENANT,
        GRAPH,
    );
    let resp = sample::user_response(o, TENANT, GRAPH, now, 3600).unwrap();
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    within(pttl(&server, &saved.partition), rt_ms, "session");

    // A sign-out stamp: bounded too.
    cache.remove_account(&home(u)).await.unwrap();
    within(
        pttl(&server, &cache.two_level().keys().revocation(&home(u))),
        rt_ms,
        "stamp",
    );

    // No key without a TTL at all.
    let keys = server.cli(&["--scan"]);
    for k in keys.lines().filter(|k| !k.is_empty()) {
        assert!(pttl(&server, k) > 0, "{k} has no TTL");
    }
}

// ---- 7. guests --------------------------------------------------------------------------

#[tokio::test]
async fn a_guests_obo_partitions_go_with_the_home_account() {
    let cache = TokenCache::builder()
        .store_url("memory://")
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    let now = cache.two_level().clock().now_secs();
    let store = cache.two_level().store().clone();
    let keys = cache.two_level().keys().clone();
    let (home_oid, home_tid) = (
        "9999aaaa-0000-0000-0000-000000000001",
        "9999bbbb-0000-0000-0000-000000000002",
    );
    let (res_oid, res_tid) = ("5555aaaa-0000-0000-0000-000000000003", TENANT);
    let guest_home = format!("{home_oid}.{home_tid}");
    // Entra's guest access token: the resource tenant's oid/tid, home_oid and idp.
    let assertion = sample::fake_jwt(
        json!({"aud": "api://orders-api", "iss": format!("https://sts.windows.net/{res_tid}/"),
               "iat": now, "exp": now + 3600, "oid": res_oid, "tid": res_tid,
               "home_oid": home_oid, "idp": format!("https://sts.windows.net/{home_tid}/")}),
        1200,
    );
    let obo = sample::obo_response(res_oid, res_tid, MAIL, now, 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    let a = cache.save_token_response(&req, &obo).await.unwrap();
    // A guest whose token carries no home claims: the web app names the user.
    let plain = sample::incoming_assertion(res_oid, res_tid, now, now + 3600);
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::OboFor {
            assertion: &plain,
            user: &guest_home,
        },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    let b = cache.save_token_response(&req, &obo).await.unwrap();
    let mut members = store
        .link_members(&keys.link_set(&guest_home))
        .await
        .unwrap();
    members.sort();
    let mut want = vec![
        keys.partition_str(&a.partition),
        keys.partition_str(&b.partition),
    ];
    want.sort();
    assert_eq!(members, want, "both linked to the home account");
    assert!(store
        .link_members(&keys.link_set(&format!("{res_oid}.{res_tid}")))
        .await
        .unwrap()
        .is_empty());

    let out = cache.remove_account(&guest_home).await.unwrap();
    assert_eq!(out.obo_partitions, 2);
    assert!(store
        .get(&keys.partition_str(&a.partition))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get(&keys.partition_str(&b.partition))
        .await
        .unwrap()
        .is_none());
    // and the guest's OBO lookups are refused by the stamp under the home account
    assert!(cache
        .find_access_token(&Lookup::obo(CLIENT_ID, &assertion, MAIL))
        .await
        .unwrap()
        .is_none());
}

// ---- one log line per problem, not per call (issue 9, item 3) --------------------------

#[tokio::test(start_paused = true)]
async fn unreadable_answers_are_logged_once_with_a_count_not_per_call() {
    let (logs, _guard) = common::capture();
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(memory.clone() as SharedStore));
    let cache = TokenCache::builder()
        .store(chaos.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    // A foreign value under a partition key, and an L2 that answers garbage.
    let bad_oid = "dddddddd-0000-0000-0000-000000000001";
    memory
        .set(&home(bad_oid), b"{not json", None)
        .await
        .unwrap();
    for _ in 0..200 {
        assert!(!find_user(&cache, CLIENT_ID, bad_oid, GRAPH).await);
        cache.two_level().forget_local(&home(bad_oid));
    }
    chaos.fail_always(StoreErrorKind::BadData);
    for i in 0..300 {
        let oid = format!("eeeeeeee-0000-0000-0000-{i:012}");
        assert!(!find_user(&cache, CLIENT_ID, &oid, GRAPH).await);
        save_user(&cache, CLIENT_ID, &oid, GRAPH, T0).await;
    }
    let lines = logs.lines();
    let unreadable: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("unreadable partition"))
        .collect();
    let nonsense: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("could not be understood"))
        .collect();
    assert_eq!(unreadable.len(), 1, "{unreadable:#?}");
    assert_eq!(nonsense.len(), 1, "{nonsense:#?}");
    assert!(!nonsense[0].contains("`set`") || nonsense[0].contains("recovery queue"));
    // A minute later, one summary line with the count.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(
        !find_user(
            &cache,
            CLIENT_ID,
            "ffffffff-0000-0000-0000-000000000001",
            GRAPH
        )
        .await
    );
    let summary: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("more answers could not be understood"))
        .collect();
    assert_eq!(summary.len(), 1, "{summary:#?}");
    assert!(cache.stats().l2_errors_by_class.bad_data >= 600);
}

// ---- 5. link sets keep only live members ------------------------------------------------

#[tokio::test]
async fn link_sets_drop_members_whose_partitions_ended_on_a_real_redis() {
    let server = RedisServer::start();
    let cache = TokenCache::builder()
        .store_url(&server.url())
        .build()
        .await
        .unwrap();
    let now = cache.two_level().clock().now_secs();
    let oid = "aaaaaaaa-0000-0000-0000-0000000000d1";
    let links = cache.two_level().keys().link_set(&home(oid));
    // Incoming tokens that rotate: each OBO partition ends with its assertion.
    for i in 0..5 {
        let assertion = sample::incoming_assertion(oid, TENANT, now + i, now + 2);
        let obo = sample::obo_response(oid, TENANT, MAIL, now, 3600).unwrap();
        let req = SaveRequest::new(
            CLIENT_ID,
            SaveFor::Obo {
                assertion: &assertion,
            },
            ENVIRONMENT,
            TENANT,
            MAIL,
        );
        cache.save_token_response(&req, &obo).await.unwrap();
    }
    assert_eq!(server.cli(&["ZCARD", &links]).trim(), "5");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let assertion = sample::incoming_assertion(oid, TENANT, now + 9, now + 3600);
    let obo = sample::obo_response(oid, TENANT, MAIL, now, 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        MAIL,
    );
    let saved = cache.save_token_response(&req, &obo).await.unwrap();
    assert_eq!(
        server.cli(&["ZRANGE", &links, "0", "-1"]).trim(),
        saved.partition,
        "the write pruned the members that ended"
    );
    let ttl = pttl(&server, &links);
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "the set lives as its longest member: {ttl}"
    );

    // A link set written as a plain set (before members had deadlines) converts in place.
    let old = cache.two_level().keys().link_set("legacy.user");
    server.cli(&["SADD", &old, "p1", "p2"]);
    server.cli(&["PEXPIRE", &old, "60000"]);
    let store = cache.two_level().store();
    let mut members = store.link_members(&old).await.unwrap();
    members.sort();
    assert_eq!(members, vec!["p1", "p2"]);
    store
        .link_add(&old, "p3", Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(server.cli(&["TYPE", &old]).trim(), "zset");
    assert_eq!(store.link_members(&old).await.unwrap().len(), 3);
    store
        .link_remove(&old, &["p1".into(), "p2".into()])
        .await
        .unwrap();
    assert_eq!(store.link_members(&old).await.unwrap(), vec!["p3"]);
}

// ---- 9. lookups default to the tenant and cloud the tokens were saved for ---------------

#[tokio::test]
async fn lookups_never_mix_tenants_or_clouds_unless_told() {
    let cache = TokenCache::builder()
        .store_url("memory://")
        .probe_l2_at_start(false)
        .build()
        .await
        .unwrap();
    let now = cache.two_level().clock().now_secs();
    let oid = "aaaaaaaa-0000-0000-0000-0000000000e1";
    let h = home(oid);
    let (t_home, t_guest) = (TENANT, "77777777-0000-0000-0000-000000000007");
    // One tenant only: a lookup that names none finds the token.
    save_user(&cache, CLIENT_ID, oid, GRAPH, now).await;
    assert!(find_user(&cache, CLIENT_ID, oid, GRAPH).await);
    // The same user's token for the same scope in a second tenant (a guest sign-in: the
    // id token's tid is the resource tenant, client_info names the home account).
    let id_token = sample::fake_jwt(
        json!({"iss": format!("https://login.microsoftonline.com/{t_guest}/v2.0"), "aud": CLIENT_ID,
               "oid": "guest-object-id", "tid": t_guest, "sub": "s", "iat": now, "exp": now + 3600}),
        600,
    );
    let body = json!({"token_type": "Bearer", "scope": GRAPH[0], "expires_in": 3600,
                      "access_token": "eyJ0eXAi.guest.token", "id_token": id_token,
                      "client_info": sample::client_info(oid, TENANT)});
    let resp = TokenResponse::from_json(body.to_string().as_bytes()).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, t_guest, GRAPH);
    cache.save_token_response(&req, &resp).await.unwrap();
    let err = cache
        .find_access_token(&Lookup::user(CLIENT_ID, &h, GRAPH))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("several tenants"), "{err}");
    for t in [t_home, t_guest] {
        let l = Lookup::user(CLIENT_ID, &h, GRAPH).tenant(t);
        assert!(cache.find_access_token(&l).await.unwrap().is_some(), "{t}");
    }
    let any = Lookup::user(CLIENT_ID, &h, GRAPH).any_tenant();
    assert!(cache.find_access_token(&any).await.unwrap().is_some());

    // Clouds: the same user's token from the US Government cloud.
    let oid2 = "aaaaaaaa-0000-0000-0000-0000000000e2";
    let h2 = home(oid2);
    save_user(&cache, CLIENT_ID, oid2, MAIL, now).await;
    let resp = sample::user_response(oid2, TENANT, MAIL, now + 1, 3600).unwrap();
    let req = SaveRequest::new(
        CLIENT_ID,
        SaveFor::User,
        "login.microsoftonline.us",
        TENANT,
        MAIL,
    );
    cache.save_token_response(&req, &resp).await.unwrap();
    let err = cache
        .find_access_token(&Lookup::user(CLIENT_ID, &h2, MAIL))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("several clouds"), "{err}");
    // An alias of the public cloud is the same cloud.
    let l = Lookup::user(CLIENT_ID, &h2, MAIL).environment("login.windows.net");
    assert!(cache.find_access_token(&l).await.unwrap().is_some());
    let l = Lookup::user(CLIENT_ID, &h2, MAIL).environment("login.microsoftonline.us");
    assert!(cache.find_access_token(&l).await.unwrap().is_some());
    let l = Lookup::user(CLIENT_ID, &h2, MAIL).any_cloud();
    assert!(cache.find_access_token(&l).await.unwrap().is_some());
}
