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

fn scoped_response(oid: &str, scope: &str, secret: &str) -> TokenResponse {
    let body = json!({
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 3600,
        "access_token": secret,
        "refresh_token": format!("rt-{secret}"),
        "client_info": sample::client_info(oid, TENANT),
    });
    TokenResponse::from_json(body.to_string().as_bytes()).unwrap()
}

/// Two replicas each save 500 different scopes into one user partition at the same
/// time: all 1,000 are there at the end (no replica's read-modify-write drops the
/// other's tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_saving_into_one_partition_lose_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    // A generous L2 timeout: on a loaded machine a write (which waits for the key's lock
    // behind hundreds of others) must not time out into the recovery queue; this test is
    // about lost updates, not timeouts.
    let patient = || async {
        TokenCache::builder()
            .store_url(&url)
            .key_prefix("app:")
            .l2_timeout(Duration::from_secs(10))
            .build()
            .await
            .unwrap()
    };
    let (a, b) = (patient().await, patient().await);
    let oid = "aaaaaaaa-0000-0000-0000-000000000lu1";
    let run = |cache: TokenCache, who: &'static str| {
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..500 {
                let c = cache.clone();
                tasks.push(tokio::spawn(async move {
                    let scope = format!("api://lost-updates/{who}{i}");
                    let scopes = [scope.as_str()];
                    let resp = scoped_response(oid, &scope, &format!("{who}-{i}"));
                    let req =
                        SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, &scopes);
                    let saved = c.save_token_response(&req, &resp).await.unwrap();
                    assert!(saved.write.l2_written, "{:?}", c.stats());
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let (ra, rb) = (run(a.clone(), "a"), run(b.clone(), "b"));
    ra.await.unwrap();
    rb.await.unwrap();
    let blob = server.cli(&["GET", &format!("app:{oid}.{TENANT}")]);
    let p = tokencache::Partition::parse(blob.trim_end().as_bytes()).unwrap();
    assert_eq!(
        p.access_tokens().count(),
        1000,
        "every save of both replicas is there"
    );
    for who in ["a", "b"] {
        for i in [0, 250, 499] {
            let scope = format!("api://lost-updates/{who}{i}");
            let scopes = [scope.as_str()];
            let home = format!("{oid}.{TENANT}");
            let found = b
                .find_access_token(&Lookup::user(CLIENT_ID, &home, &scopes))
                .await
                .unwrap();
            assert_eq!(found.unwrap().secret.expose(), format!("{who}-{i}"));
        }
    }
    let conflicts = a.stats().write_conflicts + b.stats().write_conflicts;
    assert!(
        conflicts > 0,
        "the saves did race (replayed {conflicts} times)"
    );
}

/// A save on B races a sign-out on A: B read the partition before A removed it, and
/// writes after. The user gets nothing afterwards from either replica, and no refresh
/// token of theirs is left in L2.
#[tokio::test]
async fn a_sign_out_wins_a_race_with_a_save_in_flight() {
    let server = RedisServer::start();
    let url = server.url();
    let a = replica(&url).await;
    // B's store holds its reads back until A has signed the user out.
    let gate = Arc::new(tokio::sync::Notify::new());
    let slow = Arc::new(HeldRead {
        inner: tokencache::store::open(&url).await.unwrap(),
        hold: std::sync::atomic::AtomicBool::new(false),
        hold_swap: std::sync::atomic::AtomicBool::new(false),
        read_done: Arc::new(tokio::sync::Notify::new()),
        release: gate.clone(),
    });
    let b = TokenCache::builder()
        .store(slow.clone() as tokencache::store::SharedStore)
        .key_prefix("app:")
        .build()
        .await
        .unwrap();
    subscribed(&[&a, &b]).await;
    let oid = "aaaaaaaa-0000-0000-0000-00000000race";
    let home = format!("{oid}.{TENANT}");
    save(&a, oid, "signed-in").await;
    // B starts a save (its token was requested now, before the sign-out)...
    slow.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let read_done = slow.read_done.clone();
    let saving = {
        let b = b.clone();
        tokio::spawn(async move { save_outcome(&b, oid, "in-flight").await })
    };
    read_done.notified().await; // B has read the partition
                                // ...A signs the user out meanwhile...
    tokio::time::sleep(Duration::from_millis(5)).await;
    let out = a.remove_account(&home).await.unwrap();
    assert!(out.l2_complete);
    // ...then B writes.
    gate.notify_one();
    let write = saving.await.unwrap();
    assert!(write.revoked && !write.l2_written, "{write:?}");
    assert_eq!(token(&a, oid).await, None);
    assert_eq!(token(&b, oid).await, None);
    assert_eq!(
        server.cli(&["EXISTS", &format!("app:{home}")]).trim(),
        "0",
        "no refresh token left"
    );
}

async fn save_outcome(
    cache: &TokenCache,
    oid: &str,
    secret: &str,
) -> tokencache::twolevel::WriteOutcome {
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    cache
        .save_token_response(&req, &response(oid, secret))
        .await
        .unwrap()
        .write
}

/// B's write lands in L2, then A's lands over it and A's message reaches B, all before
/// B's write returns: B must not keep its own (older) partition in L1 afterwards. (The
/// write path filled L1 after the swap whatever came meanwhile: B served its older
/// token from L1 until the entry's deadline. Found by `tokencache load --replicas 3`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_overtaken_before_it_returns_is_not_kept_in_l1() {
    let store: tokencache::store::SharedStore = Arc::new(tokencache::store::MemoryStore::new());
    let gate = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(HeldRead {
        inner: store.clone(),
        hold: std::sync::atomic::AtomicBool::new(false),
        hold_swap: std::sync::atomic::AtomicBool::new(false),
        read_done: Arc::new(tokio::sync::Notify::new()),
        release: gate.clone(),
    });
    let build = |s: tokencache::store::SharedStore| {
        TokenCache::builder()
            .store(s)
            .probe_l2_at_start(false)
            .build()
    };
    let a = build(store.clone()).await.unwrap();
    let b = build(held.clone() as tokencache::store::SharedStore)
        .await
        .unwrap();
    subscribed(&[&a, &b]).await;
    let oid = "aaaaaaaa-0000-0000-0000-000overtake";
    save(&a, oid, "one").await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("one"));
    // B's save of "two" reaches L2 and is held there...
    held.hold_swap
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let swapped = held.read_done.clone();
    let saving = {
        let b = b.clone();
        tokio::spawn(async move { save(&b, oid, "two").await })
    };
    swapped.notified().await;
    // ...A saves "three" over it, and B hears of it...
    let seen = b.stats().invalidated;
    save(&a, oid, "three").await;
    until("B got the message", || b.stats().invalidated > seen).await;
    // ...then B's save returns.
    gate.notify_one();
    saving.await.unwrap();
    assert_eq!(token(&a, oid).await.as_deref(), Some("three"));
    assert_eq!(
        token(&b, oid).await.as_deref(),
        Some("three"),
        "B kept its overtaken write in L1"
    );
}

/// A store whose first `get` of a partition, once `hold` is set, answers and then
/// waits for `release` before the caller can go on (the caller's next call waits);
/// likewise its first successful `compare_and_swap` once `hold_swap` is set.
#[derive(Debug)]
struct HeldRead {
    inner: tokencache::store::SharedStore,
    hold: std::sync::atomic::AtomicBool,
    hold_swap: std::sync::atomic::AtomicBool,
    read_done: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl tokencache::store::Store for HeldRead {
    async fn get(
        &self,
        key: &str,
    ) -> tokencache::store::StoreResult<Option<tokencache::store::StoreValue>> {
        let v = self.inner.get(key).await;
        if !key.contains("tc:") && self.hold.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.read_done.notify_one();
            self.release.notified().await;
        }
        v
    }
    async fn get_and_touch(
        &self,
        key: &str,
        ttl: Duration,
    ) -> tokencache::store::StoreResult<Option<tokencache::store::StoreValue>> {
        self.inner.get_and_touch(key, ttl).await
    }
    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> tokencache::store::StoreResult<()> {
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> tokencache::store::StoreResult<bool> {
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: tokencache::store::EntryExpiry,
    ) -> tokencache::store::StoreResult<bool> {
        let swapped = self
            .inner
            .compare_and_swap(key, expected, new, expiry)
            .await;
        if matches!(swapped, Ok(true))
            && self
                .hold_swap
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.read_done.notify_one();
            self.release.notified().await;
        }
        swapped
    }
    async fn touch(&self, key: &str, ttl: Duration) -> tokencache::store::StoreResult<bool> {
        self.inner.touch(key, ttl).await
    }
    async fn remove(&self, key: &str) -> tokencache::store::StoreResult<bool> {
        self.inner.remove(key).await
    }
    async fn remove_many(&self, keys: &[String]) -> tokencache::store::StoreResult<u64> {
        self.inner.remove_many(keys).await
    }
    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> tokencache::store::StoreResult<()> {
        self.inner.link_add(set_key, member, ttl).await
    }
    async fn link_members(&self, set_key: &str) -> tokencache::store::StoreResult<Vec<String>> {
        self.inner.link_members(set_key).await
    }
    async fn link_remove(
        &self,
        set_key: &str,
        members: &[String],
    ) -> tokencache::store::StoreResult<()> {
        self.inner.link_remove(set_key, members).await
    }
    async fn health(&self) -> tokencache::store::StoreResult<()> {
        self.inner.health().await
    }
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> tokencache::store::StoreResult<(u64, Vec<String>)> {
        self.inner.scan(prefix, cursor, count).await
    }
    fn endpoint(&self) -> String {
        self.inner.endpoint()
    }
    fn backplane(&self) -> Option<tokencache::backplane::SharedBackplane> {
        self.inner.backplane()
    }
}

/// A save queued during an outage on B; meanwhile A signs the user out; when B's L2
/// comes back, its drain writes nothing back.
#[tokio::test(start_paused = false)]
async fn a_drain_after_another_replicas_sign_out_writes_nothing_back() {
    let server = RedisServer::start();
    let url = server.url();
    let a = replica(&url).await;
    let chaos = Arc::new(tokencache::store::chaos::ChaosStore::passthrough(
        tokencache::store::open(&url).await.unwrap(),
    ));
    let b = TokenCache::builder()
        .store(chaos.clone() as tokencache::store::SharedStore)
        .key_prefix("app:")
        .build()
        .await
        .unwrap();
    let oid = "aaaaaaaa-0000-0000-0000-0000000drain";
    let home = format!("{oid}.{TENANT}");
    save(&a, oid, "before").await;
    chaos.fail_always(tokencache::store::StoreErrorKind::Connection);
    let w = save_outcome(&b, oid, "queued-on-b").await;
    assert!(w.merged_later, "{w:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(a.remove_account(&home).await.unwrap().l2_complete);
    chaos.fail_never();
    until_async(|| async { b.two_level().recover_now().await }).await;
    assert_eq!(
        server.cli(&["EXISTS", &format!("app:{home}")]).trim(),
        "0",
        "nothing written back"
    );
    assert!(b.stats().superseded >= 1, "{:?}", b.stats());
    assert_eq!(token(&b, oid).await, None);
}

async fn until_async<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = tokio::time::Instant::now();
    while !f().await {
        assert!(t.elapsed() < BOUND, "not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `cache`'s recovery queue has reached L2.
async fn drained(cache: &TokenCache) {
    until_async(|| async {
        cache.two_level().recover_now().await;
        !cache.two_level().is_degraded()
    })
    .await;
}

/// A replica that missed a sign-out's message (here: it has no backplane at all), or
/// started after it, reads the owner's stamp with the partition: the user's older
/// tokens, still in L2 (written there by a writer that knows nothing of stamps, say),
/// are not served, for the user's partition as for the OBO partitions linked to them.
async fn a_load_reads_the_owners_stamp(url: &str) {
    let a = replica(url).await;
    let oid = "aaaaaaaa-0000-0000-0000-0000000stamp";
    let home = format!("{oid}.{TENANT}");
    save(&a, oid, "before-sign-out").await;
    let assertion = sample::incoming_assertion(oid, TENANT, now(), now() + 900);
    let scopes = ["api://downstream/.default"];
    let obo = SaveRequest::new(
        CLIENT_ID,
        SaveFor::Obo {
            assertion: &assertion,
        },
        ENVIRONMENT,
        TENANT,
        &scopes,
    );
    let resp = sample::obo_response(oid, TENANT, &scopes, now(), 3600).unwrap();
    a.save_token_response(&obo, &resp).await.unwrap();
    let obo_lookup = Lookup::obo(CLIENT_ID, &assertion, &scopes);

    // Control: a deaf replica reads both while no stamp exists.
    let early = deaf_replica(url, false).await;
    assert_eq!(token(&early, oid).await.as_deref(), Some("before-sign-out"));
    assert!(early
        .find_access_token(&obo_lookup)
        .await
        .unwrap()
        .is_some());

    // The stamp alone (the partitions stay in L2): the user signed out after both saves.
    let at_ms = (now() + 1) * 1000;
    assert!(a.two_level().revoke_everywhere(&home, at_ms).await);
    let late = deaf_replica(url, false).await;
    assert_eq!(token(&late, oid).await, None, "the user's own partition");
    assert!(
        late.find_access_token(&obo_lookup).await.unwrap().is_none(),
        "an OBO partition linked to the user"
    );
    assert_eq!(late.two_level().revocation_of(&home), Some(at_ms / 1000));
    assert!(late.stats().l2_hits >= 1, "{:?}", late.stats());
}

#[tokio::test]
async fn a_load_reads_the_owners_stamp_on_a_real_redis() {
    let server = RedisServer::start();
    a_load_reads_the_owners_stamp(&server.url()).await;
}

#[tokio::test]
async fn a_load_reads_the_owners_stamp_on_a_real_cluster() {
    let cluster = RedisCluster::start();
    a_load_reads_the_owners_stamp(&cluster.url()).await;
}

async fn deaf_replica(url: &str, strict: bool) -> TokenCache {
    TokenCache::builder()
        .store_url(url)
        .key_prefix("app:")
        .backplane(BackplaneOptions {
            enabled: false,
            ..BackplaneOptions::default()
        })
        .strict_reads(strict)
        .build()
        .await
        .unwrap()
}

/// Strict reads: with no message at all (no backplane), a strict replica's next read
/// after another replica's save is the new token; a replica without strict reads keeps
/// serving its L1 copy (the control: what strict reads are for).
async fn strict_reads_see_a_write_at_once(url: &str) {
    let a = deaf_replica(url, false).await;
    let strict = deaf_replica(url, true).await;
    let lax = deaf_replica(url, false).await;
    let oid = "aaaaaaaa-0000-0000-0000-000000strict";
    save(&a, oid, "one").await;
    for r in [&strict, &lax] {
        assert_eq!(token(r, oid).await.as_deref(), Some("one"));
        assert_eq!(token(r, oid).await.as_deref(), Some("one"), "from L1");
    }
    let s = strict.stats();
    assert_eq!(
        (s.l1_hits, s.strict_checks, s.strict_stale),
        (1, 1, 0),
        "{s:?}"
    );

    save(&a, oid, "two").await;
    assert_eq!(token(&strict, oid).await.as_deref(), Some("two"));
    assert_eq!(strict.stats().strict_stale, 1);
    assert_eq!(
        token(&strict, oid).await.as_deref(),
        Some("two"),
        "L1 again"
    );
    assert_eq!(strict.stats().strict_stale, 1);
    assert_eq!(
        token(&lax, oid).await.as_deref(),
        Some("one"),
        "without strict reads (nor a backplane) L1 is served"
    );

    // Its own write is L1's version: the next hit checks and serves it.
    save(&strict, oid, "three").await;
    let before = strict.stats();
    assert_eq!(token(&strict, oid).await.as_deref(), Some("three"));
    let after = strict.stats();
    assert_eq!(after.l1_hits, before.l1_hits + 1);
    assert_eq!(after.strict_stale, before.strict_stale);

    // A sign-out elsewhere: the partition is gone from L2, so nothing is served.
    a.remove_account(&format!("{oid}.{TENANT}")).await.unwrap();
    assert_eq!(token(&strict, oid).await, None);
}

#[tokio::test]
async fn strict_reads_on_a_real_redis() {
    let server = RedisServer::start();
    strict_reads_see_a_write_at_once(&server.url()).await;
}

#[tokio::test]
async fn strict_reads_on_a_real_cluster() {
    let cluster = RedisCluster::start();
    strict_reads_see_a_write_at_once(&cluster.url()).await;
}

/// Strict reads never turn an L2 failure into a miss: the check fails, L1 serves.
#[tokio::test]
async fn strict_reads_serve_l1_while_l2_fails() {
    use tokencache::store::chaos::ChaosStore;
    use tokencache::store::StoreErrorKind;
    let chaos = Arc::new(ChaosStore::passthrough(Arc::new(
        tokencache::store::MemoryStore::new(),
    )));
    let cache = TokenCache::builder()
        .store(chaos.clone())
        .probe_l2_at_start(false)
        .strict_reads(true)
        .build()
        .await
        .unwrap();
    let oid = "aaaaaaaa-0000-0000-0000-00strictdown";
    save(&cache, oid, "kept").await;
    assert_eq!(token(&cache, oid).await.as_deref(), Some("kept"));
    chaos.fail_always(StoreErrorKind::Connection);
    assert_eq!(token(&cache, oid).await.as_deref(), Some("kept"));
    assert_eq!(token(&cache, oid).await.as_deref(), Some("kept"));
    let s = cache.stats();
    assert!(s.l2_errors + s.l2_skipped >= 1, "{s:?}");
    assert_eq!(s.strict_stale, 0, "{s:?}");
}

/// A publish that fails is retried: the other replica still drops its L1 copy.
#[tokio::test]
async fn a_failed_publish_is_retried() {
    use tokencache::store::chaos::ChaosStore;
    let inner: tokencache::store::SharedStore = Arc::new(tokencache::store::MemoryStore::new());
    let chaos = Arc::new(ChaosStore::passthrough(inner.clone()));
    // Heartbeats far apart: the one publish that fails is the save's.
    let quiet = BackplaneOptions {
        heartbeat: Duration::from_secs(30),
        ..BackplaneOptions::default()
    };
    let build = |store: tokencache::store::SharedStore| {
        TokenCache::builder()
            .store(store)
            .probe_l2_at_start(false)
            .backplane(quiet.clone())
            .build()
    };
    let a = build(chaos.clone()).await.unwrap();
    let b = build(inner).await.unwrap();
    for c in [&a, &b] {
        let two = c.two_level().clone();
        until("subscribed", || {
            two.stats().published >= 1 && !two.l1_bypassed()
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let oid = "aaaaaaaa-0000-0000-0000-000000retry1";
    save(&a, oid, "one").await;
    assert_eq!(token(&b, oid).await.as_deref(), Some("one"));
    assert_eq!(token(&b, oid).await.as_deref(), Some("one"), "B's L1");
    let seen = b.stats().invalidated;
    chaos.fail_next_publishes(1);
    save(&a, oid, "two").await;
    until("B got the retried message", || b.stats().invalidated > seen).await;
    assert_eq!(a.stats().publish_retries, 1, "{:?}", a.stats());
    assert_eq!(token(&b, oid).await.as_deref(), Some("two"));
}

/// Two replicas on one in-process store; `b`'s L2 calls all fail until `chaos.fail_never()`.
async fn healthy_and_cut_off() -> (
    TokenCache,
    TokenCache,
    Arc<tokencache::store::chaos::ChaosStore>,
    tokencache::store::SharedStore,
) {
    use tokencache::store::chaos::{ChaosConfig, ChaosStore};
    let store: tokencache::store::SharedStore = Arc::new(tokencache::store::MemoryStore::new());
    let chaos = Arc::new(ChaosStore::new(
        store.clone(),
        ChaosConfig {
            error_probability: 1.0,
            ..ChaosConfig::default()
        },
    ));
    let build = |s: tokencache::store::SharedStore| {
        TokenCache::builder()
            .store(s)
            .probe_l2_at_start(false)
            .build()
    };
    let a = build(store.clone()).await.unwrap();
    let b = build(chaos.clone() as tokencache::store::SharedStore)
        .await
        .unwrap();
    subscribed(&[&a]).await;
    (a, b, chaos, store)
}

/// The access token of scope `scope` that L2 itself holds for `oid`.
async fn in_l2(store: &tokencache::store::SharedStore, oid: &str, scope: &str) -> Option<String> {
    let home = format!("{oid}.{TENANT}");
    let bytes = store.get(&home).await.unwrap()?.bytes;
    let p = tokencache::Partition::parse(&bytes).unwrap();
    let scopes = [scope];
    let mut q = tokencache::schema::AccessTokenQuery::new(CLIENT_ID, &scopes);
    q.home_account_id = Some(&home);
    p.find_access_token(&q, now())
        .map(|t| t.secret.expose().to_owned())
}

/// Waits for the start of the next second (two saves then fall in one `cached_at`).
async fn next_second() {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms) + 10)).await;
}

/// Found by `tokencache load --replicas 3 --chaos ...`: B's save of "older" is queued
/// (B's L2 fails); then A saves "newer" for the same scope, in the same second, and L2
/// takes it; when B's L2 is back, its drain must not merge "older" over "newer". Records
/// carry `cached_at` in whole seconds (MSAL's format), so a tie went to the change being
/// applied; tokencache's saves now also record the millisecond (`WRITTEN_AT_MS`). It
/// fails without it.
#[tokio::test]
async fn a_drained_change_does_not_overwrite_a_later_save_of_the_same_second() {
    let (a, b, chaos, store) = healthy_and_cut_off().await;
    let oid = "aaaaaaaa-0000-0000-0000-0000000tie00";
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    next_second().await;
    let older = b
        .save_token_response(&req, &response(oid, "older"))
        .await
        .unwrap();
    assert!(older.write.merged_later, "{:?}", older.write);
    // In a later millisecond (B's failed save takes less than one here): within one
    // millisecond no order is known, and a tie goes to the change being applied.
    tokio::time::sleep(Duration::from_millis(2)).await;
    save(&a, oid, "newer").await;
    chaos.fail_never();
    drained(&b).await;
    assert_eq!(in_l2(&store, oid, GRAPH[0]).await.as_deref(), Some("newer"));
}

/// Found by `tokencache load --replicas 3 --chaos ...`: B, cut off from L2, signs the
/// user out (the removal is queued); A then saves a token for the user, in the same
/// second, and L2 takes it. When B's L2 is back, its queued removal must not remove A's
/// later token (L2 holds a credential written after the removal was made, to the
/// millisecond; by the second, the removal won), and must still remove the user's
/// tokens written before the sign-out (when the removal stood back for newer tokens,
/// those stayed in L2, where a reader that knows nothing of stamps would serve them).
#[tokio::test]
async fn a_queued_sign_out_removes_older_tokens_and_keeps_one_saved_after_it_in_its_second() {
    let (a, b, chaos, store) = healthy_and_cut_off().await;
    let oid = "aaaaaaaa-0000-0000-0000-000000000rm1";
    let home = format!("{oid}.{TENANT}");
    let one: &[&str] = &["api://one"];
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, one);
    a.save_token_response(&req, &scoped_response(oid, one[0], "before"))
        .await
        .unwrap();
    next_second().await;
    let out = b.remove_account(&home).await.unwrap();
    assert!(!out.l2_complete, "queued: {out:?}");
    tokio::time::sleep(Duration::from_millis(5)).await;
    save(&a, oid, "after").await;
    assert_eq!(in_l2(&store, oid, GRAPH[0]).await.as_deref(), Some("after"));
    chaos.fail_never();
    drained(&b).await;
    assert_eq!(in_l2(&store, oid, GRAPH[0]).await.as_deref(), Some("after"));
    assert_eq!(
        in_l2(&store, oid, one[0]).await,
        None,
        "saved before the sign-out"
    );
}

/// Found by `tokencache load --replicas 3 --chaos ...` once records carried their
/// millisecond: A signs the user out; B, cut off from L2, saves a token requested after
/// the sign-out but in the same second: queued. When B's L2 is back, the drain keeps it
/// (it drops only what was written at or before the stamp, to the millisecond); by the
/// second alone it was dropped as "cached at or before the sign-out".
#[tokio::test]
async fn a_change_queued_just_after_a_sign_out_in_its_second_reaches_l2() {
    let (a, b, chaos, store) = healthy_and_cut_off().await;
    let oid = "aaaaaaaa-0000-0000-0000-00000000late";
    let home = format!("{oid}.{TENANT}");
    next_second().await;
    assert!(a.remove_account(&home).await.unwrap().l2_complete);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let w = b
        .save_token_response(&req, &response(oid, "after"))
        .await
        .unwrap();
    assert!(w.write.merged_later && !w.write.revoked, "{:?}", w.write);
    chaos.fail_never();
    drained(&b).await;
    assert_eq!(in_l2(&store, oid, GRAPH[0]).await.as_deref(), Some("after"));
}

/// Found by `tokencache load --replicas 3 --chaos ...`: B's save of scope one is queued
/// (B's L2 fails); A signs the user out; B then saves scope two (requested after the
/// sign-out: rightly not refused), which B's queue composes with the first change under
/// the *later* request time. When B's L2 is back, the drain writes scope two only: the
/// credentials cached at or before L2's stamp are dropped from the change.
#[tokio::test]
async fn a_change_queued_before_a_sign_out_never_reaches_l2() {
    let (a, b, chaos, store) = healthy_and_cut_off().await;
    let oid = "aaaaaaaa-0000-0000-0000-0000000rides";
    let home = format!("{oid}.{TENANT}");
    let one: &[&str] = &["api://one"];
    let two: &[&str] = &["api://two"];
    let req = |s| SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, s);
    let w = b
        .save_token_response(&req(one), &scoped_response(oid, one[0], "before"))
        .await
        .unwrap();
    assert!(w.write.merged_later, "{:?}", w.write);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(a.remove_account(&home).await.unwrap().l2_complete);
    // the next second: no doubt that scope two's tokens were requested after it
    next_second().await;
    let w = b
        .save_token_response(&req(two), &scoped_response(oid, two[0], "after"))
        .await
        .unwrap();
    assert!(w.write.merged_later && !w.write.revoked, "{:?}", w.write);
    chaos.fail_never();
    drained(&b).await;
    assert_eq!(
        in_l2(&store, oid, one[0]).await,
        None,
        "acquired before the sign-out"
    );
    assert_eq!(in_l2(&store, oid, two[0]).await.as_deref(), Some("after"));
}
