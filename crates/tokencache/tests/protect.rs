//! Encryption at rest (issue 12): shared rings on a real redis-server, typed errors
//! that name the key id, tampering, the plaintext migration setting, rotation with
//! `rekey` while a load runs, and the compare-and-set that keeps rekey from losing
//! a concurrent write.

mod common;

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::RedisServer;
use tokencache::protect::{self, Key, KeyId, KeyRing, Rekeyed, Stored};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::{self, MemoryStore, SharedStore, Store, StoreResult, StoreValue};
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn key(id: &str, fill: u8) -> Key {
    Key::new(KeyId::new(id).unwrap(), &[fill; 32])
}

fn ring(keys: Vec<Key>) -> KeyRing {
    let mut it = keys.into_iter();
    let mut r = KeyRing::new(it.next().unwrap());
    for k in it {
        r = r.with_decrypt_only(k).unwrap();
    }
    r
}

fn oid(i: usize) -> String {
    format!("00000000-0000-0000-0000-{i:012}")
}

fn home(i: usize) -> String {
    format!("{}.{TENANT}", oid(i))
}

/// A cache over `store` with `keys` (`None`: plaintext), no L1 (every read is L2's).
async fn cache(store: SharedStore, keys: Option<KeyRing>) -> TokenCache {
    let b = TokenCache::builder()
        .store(store)
        .disable_l1()
        .probe_l2_at_start(false);
    let b = match keys {
        Some(r) => b.keys(r),
        None => b.no_encryption(),
    };
    b.build().await.unwrap()
}

/// Saves user `i`'s tokens; returns the access token.
async fn save(cache: &TokenCache, i: usize) -> String {
    let resp = sample::user_response(&oid(i), TENANT, GRAPH, now(), 3600).unwrap();
    let at = resp.access_token.as_ref().unwrap().expose().to_string();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    cache.save_token_response(&req, &resp).await.unwrap();
    at
}

async fn find(cache: &TokenCache, i: usize) -> Option<String> {
    let h = home(i);
    cache
        .find_access_token(&Lookup::user(CLIENT_ID, &h, GRAPH))
        .await
        .expect("a lookup never fails because of L2 contents")
        .map(|t| t.secret.expose().to_string())
}

async fn raw(store: &dyn Store, key: &str) -> Vec<u8> {
    store.get(key).await.unwrap().expect("stored").bytes
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_shared_ring_shares_entries_and_other_keys_say_which_key_id() {
    let server = RedisServer::start();
    let store = store::open(&server.url()).await.unwrap();
    let shared = ring(vec![key("k1", 1)]);
    let a = cache(store.clone(), Some(shared.clone())).await;
    let b = cache(store.clone(), Some(shared)).await;
    let token = save(&a, 1).await;

    // At rest: an envelope on k1, no token in clear.
    let bytes = raw(&*store, &home(1)).await;
    assert_eq!(protect::stored(&bytes), Stored::Sealed { key_id: "k1" });
    assert!(!contains(&bytes, &token));
    assert!(!contains(&bytes, "RefreshToken"));
    // The other replica with the same ring reads it.
    assert_eq!(find(&b, 1).await.as_deref(), Some(token.as_str()));

    let (logs, _guard) = common::capture();
    // Another ring: unknown key id, a miss, the log names the id; once per id and kind.
    let other = cache(store.clone(), Some(ring(vec![key("k9", 9)]))).await;
    assert_eq!(find(&other, 1).await, None);
    assert_eq!(find(&other, 1).await, None);
    assert_eq!(other.stats().bad_blobs, 2);
    let lines = logs.errors();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("unknown_key_id") && lines[0].contains("k1"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("partition_kind=\"user\"") || lines[0].contains("partition_kind=user"),
        "{}",
        lines[0]
    );

    // Same id, other bytes: authentication failed, naming k1.
    let impostor = cache(store.clone(), Some(ring(vec![key("k1", 2)]))).await;
    assert_eq!(find(&impostor, 1).await, None);
    let lines = logs.errors();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[1].contains("authentication_failed") && lines[1].contains("k1"),
        "{}",
        lines[1]
    );

    // No keys at all: an envelope is an unknown key id too, not "bad JSON".
    let plain = cache(store.clone(), None).await;
    assert_eq!(find(&plain, 1).await, None);
    let lines = logs.errors();
    assert!(
        lines.last().unwrap().contains("unknown_key_id"),
        "{lines:#?}"
    );
    // A replica that lacks the key never overwrites what it cannot read: its save
    // stays in its own L1, and the shared partition still opens for the others.
    let lacking = TokenCache::builder()
        .store(store.clone())
        .probe_l2_at_start(false)
        .keys(ring(vec![key("k9", 9)]))
        .build()
        .await
        .unwrap();
    let resp = sample::user_response(&oid(1), TENANT, GRAPH, now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let saved = lacking.save_token_response(&req, &resp).await.unwrap();
    assert!(saved.write.stored && !saved.write.l2_written);
    assert_eq!(
        protect::stored(&raw(&*store, &home(1)).await),
        Stored::Sealed { key_id: "k1" }
    );
    assert_eq!(find(&b, 1).await.as_deref(), Some(token.as_str()));
    assert!(find(&lacking, 1).await.is_some(), "its own L1");
    // Nothing logged carries key material or the token.
    for l in logs.lines() {
        assert!(!l.contains(&token), "{l}");
    }
}

#[tokio::test]
async fn tampered_values_are_typed_misses_never_another_users_token() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let c = cache(store.clone(), Some(ring(vec![key("k1", 1)]))).await;
    let t1 = save(&c, 1).await;
    let t2 = save(&c, 2).await;
    let good = raw(&*store, &home(2)).await;
    let (logs, _guard) = common::capture();

    // User 1's blob copied under user 2's key: does not open (bound to its key).
    let swapped = raw(&*store, &home(1)).await;
    store.set(&home(2), &swapped, None).await.unwrap();
    let got = find(&c, 2).await;
    assert_eq!(got, None);
    assert_ne!(got.as_deref(), Some(t1.as_str()));
    assert!(logs
        .errors()
        .iter()
        .any(|l| l.contains("authentication_failed")));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped", {
            let mut b = good.clone();
            let n = b.len();
            b[n / 2] ^= 0x10;
            b
        }),
        ("truncated", good[..good.len() - 20].to_vec()),
        ("header only", good[..10].to_vec()),
        ("version", {
            let mut b = good.clone();
            b[4] = 9;
            b
        }),
        ("magic", {
            let mut b = good.clone();
            b[1] = b'X';
            b
        }),
    ];
    let expect = [
        "authentication_failed",
        "authentication_failed",
        "malformed_envelope",
        "malformed_envelope",
        "malformed_envelope",
    ];
    for ((name, bytes), kind) in cases.into_iter().zip(expect) {
        store.set(&home(2), &bytes, None).await.unwrap();
        assert_eq!(find(&c, 2).await, None, "{name}");
        let err = tokencache::protect::Protection::new(ring(vec![key("k1", 1)]))
            .open(&home(2), &bytes)
            .unwrap_err();
        assert_eq!(err.kind().as_str(), kind, "{name}: {err}");
    }
    // Logged once per key id and kind: one line for k1's failures, one for the
    // malformed envelopes (which carry no key id they could be trusted with).
    let errors = logs.errors();
    let n = |kind: &str| errors.iter().filter(|l| l.contains(kind)).count();
    assert_eq!(n("error_kind=authentication_failed"), 1, "{errors:#?}");
    assert_eq!(n("error_kind=malformed_envelope"), 1, "{errors:#?}");
    assert_eq!(c.stats().bad_blobs, 6);
    // A fresh save replaces the unreadable value; user 1 is untouched.
    let t2b = save(&c, 2).await;
    assert_eq!(find(&c, 2).await, Some(t2b));
    assert_eq!(find(&c, 1).await, Some(t1));
    let _ = t2;
}

#[tokio::test]
async fn plaintext_needs_the_migration_setting_and_is_sealed_on_its_next_write() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let old = cache(store.clone(), None).await;
    let t1 = save(&old, 1).await;
    assert_eq!(
        protect::stored(&raw(&*store, &home(1)).await),
        Stored::Plaintext
    );

    let (logs, _guard) = common::capture();
    let strict = cache(store.clone(), Some(ring(vec![key("k1", 1)]))).await;
    assert_eq!(find(&strict, 1).await, None);
    assert!(logs.errors().iter().any(|l| l.contains("plaintext_found")));

    let migrating = TokenCache::builder()
        .store(store.clone())
        .disable_l1()
        .probe_l2_at_start(false)
        .keys(ring(vec![key("k1", 1)]))
        .accept_plaintext(true)
        .build()
        .await
        .unwrap();
    assert_eq!(find(&migrating, 1).await.as_deref(), Some(t1.as_str()));
    // The next write of that partition seals it.
    let t1b = save(&migrating, 1).await;
    assert_eq!(
        protect::stored(&raw(&*store, &home(1)).await),
        Stored::Sealed { key_id: "k1" }
    );
    assert_eq!(find(&strict, 1).await, Some(t1b));
}

/// A store that, once armed, lets another "replica" write a new value of a key right
/// after a `get` of it returns: the window rekey's compare-and-set must respect.
#[derive(Debug)]
struct RaceAfterGet {
    inner: SharedStore,
    armed: AtomicBool,
    replacement: std::sync::Mutex<Option<(String, Vec<u8>)>>,
}

#[async_trait]
impl Store for RaceAfterGet {
    async fn get(&self, key: &str) -> StoreResult<Option<StoreValue>> {
        let v = self.inner.get(key).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            let next = self.replacement.lock().unwrap().take();
            if let Some((k, bytes)) = next {
                self.inner.set(&k, &bytes, None).await?;
            }
        }
        Ok(v)
    }
    async fn get_and_touch(&self, key: &str, ttl: Duration) -> StoreResult<Option<StoreValue>> {
        self.inner.get_and_touch(key, ttl).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StoreResult<()> {
        self.inner.set(key, value, ttl).await
    }
    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        self.inner.set_if_absent(key, value, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: tokencache::store::EntryExpiry,
    ) -> StoreResult<bool> {
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> StoreResult<bool> {
        self.inner.touch(key, ttl).await
    }
    async fn remove(&self, key: &str) -> StoreResult<bool> {
        self.inner.remove(key).await
    }
    async fn remove_many(&self, keys: &[String]) -> StoreResult<u64> {
        self.inner.remove_many(keys).await
    }
    async fn link_add(
        &self,
        set_key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        self.inner.link_add(set_key, member, ttl).await
    }
    async fn link_members(&self, set_key: &str) -> StoreResult<Vec<String>> {
        self.inner.link_members(set_key).await
    }
    async fn link_remove(&self, set_key: &str, members: &[String]) -> StoreResult<()> {
        self.inner.link_remove(set_key, members).await
    }
    async fn health(&self) -> StoreResult<()> {
        self.inner.health().await
    }
    async fn scan(
        &self,
        prefix: &str,
        cursor: u64,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        self.inner.scan(prefix, cursor, count).await
    }
    fn endpoint(&self) -> String {
        self.inner.endpoint()
    }
}

#[tokio::test]
async fn rekey_never_overwrites_a_write_made_between_its_read_and_its_write() {
    let mem: SharedStore = Arc::new(MemoryStore::new());
    let old = cache(mem.clone(), Some(ring(vec![key("k1", 1)]))).await;
    save(&old, 1).await;
    // Another replica (still on k1) saves newer tokens right after rekey's read.
    let other = cache(Arc::new(MemoryStore::new()), Some(ring(vec![key("k1", 1)]))).await;
    let newer = save(&other, 1).await;
    let newer_bytes = raw(&**other.two_level().store(), &home(1)).await;
    let racing = Arc::new(RaceAfterGet {
        inner: mem.clone(),
        armed: AtomicBool::new(true),
        replacement: std::sync::Mutex::new(Some((home(1), newer_bytes))),
    });
    let new_ring = protect::Protection::new(ring(vec![key("k2", 2), key("k1", 1)]));
    let out = protect::rekey(&*racing, &new_ring, &home(1), &home(1))
        .await
        .unwrap();
    assert_eq!(
        out,
        Rekeyed::Rekeyed,
        "reread after the failed compare-and-set"
    );
    let bytes = raw(&*mem, &home(1)).await;
    assert_eq!(protect::stored(&bytes), Stored::Sealed { key_id: "k2" });
    let reader = cache(mem.clone(), Some(ring(vec![key("k2", 2)]))).await;
    assert_eq!(
        find(&reader, 1).await,
        Some(newer),
        "the concurrent write survived"
    );
    assert_eq!(
        protect::rekey(&*mem, &new_ring, &home(1), &home(1))
            .await
            .unwrap(),
        Rekeyed::AlreadyCurrent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_end_to_end_with_rekey_under_load_on_redis() {
    const USERS: usize = 40;
    let server = RedisServer::start();
    let store = store::open(&server.url()).await.unwrap();
    let k1 = || key("k1", 1);
    let k2 = || key("k2", 2);

    // Before: every replica on k1.
    let before = cache(store.clone(), Some(ring(vec![k1()]))).await;
    for i in 0..USERS {
        save(&before, i).await;
    }
    // Rotation: k2 becomes primary, k1 stays for reading.
    let rotated = cache(store.clone(), Some(ring(vec![k2(), k1()]))).await;
    assert!(find(&rotated, 0).await.is_some(), "old entries still read");
    save(&rotated, USERS).await;
    assert_eq!(
        protect::stored(&raw(&*store, &home(USERS)).await),
        Stored::Sealed { key_id: "k2" },
        "new entries use the new id"
    );

    // A load on the rotated ring: lookups and saves of the same users, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let (lookups, misses, saves) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let load = {
        let (stop, lookups, misses, saves) =
            (stop.clone(), lookups.clone(), misses.clone(), saves.clone());
        let c = rotated.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let u = i % (USERS + 1);
                if i.is_multiple_of(3) {
                    save(&c, u).await; // panics on a caller error
                    saves.fetch_add(1, Ordering::Relaxed);
                } else {
                    lookups.fetch_add(1, Ordering::Relaxed);
                    if find(&c, u).await.is_none() {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
                i += 1;
            }
        })
    };

    // rekey every key, as `tokencache rekey` does.
    let protection = rotated.two_level().protection().unwrap().clone();
    let mut cursor = 0;
    let (mut rekeyed, mut current) = (0, 0);
    loop {
        let (next, page) = store.scan("", cursor, 7).await.unwrap();
        for k in page {
            match protect::rekey(&*store, &protection, &k, &k).await.unwrap() {
                Rekeyed::Rekeyed => rekeyed += 1,
                Rekeyed::AlreadyCurrent => current += 1,
                other => panic!("{k}: {other:?}"),
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
        tokio::time::sleep(Duration::from_millis(2)).await; // let the load interleave
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.expect("the load saw no caller error");
    assert!(
        rekeyed > 0 && rekeyed + current >= USERS,
        "{rekeyed} {current}"
    );
    assert!(saves.load(Ordering::Relaxed) > 0 && lookups.load(Ordering::Relaxed) > 0);
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "no lookup missed during rekey"
    );

    // No entry left on k1.
    let mut cursor = 0;
    loop {
        let (next, page) = store.scan("", cursor, 100).await.unwrap();
        for k in page {
            let bytes = raw(&*store, &k).await;
            assert_eq!(
                protect::stored(&bytes),
                Stored::Sealed { key_id: "k2" },
                "{k}"
            );
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // The old key removed: everything still reads.
    let after = cache(store.clone(), Some(ring(vec![k2()]))).await;
    for i in 0..=USERS {
        assert!(find(&after, i).await.is_some(), "user {i}");
    }
    assert_eq!(after.stats().bad_blobs, 0);
}

/// A provider as a KMS-backed one would be: the ring is fetched when the cache is built.
struct Vault(Option<KeyRing>);

#[async_trait]
impl protect::KeyProvider for Vault {
    async fn key_ring(&self) -> Result<KeyRing, protect::KeysError> {
        self.0
            .clone()
            .ok_or_else(|| protect::KeysError::Provider("vault sealed".into()))
    }
}

#[tokio::test]
async fn keys_from_a_provider_and_nothing_secret_in_debug() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (generated, line) = Key::generate(KeyId::new("gen1").unwrap());
    let b64 = line.split_once(':').unwrap().1.to_string();
    let provided = ring(vec![generated, key("old", 4)]);
    let c = TokenCache::builder()
        .store(store.clone())
        .probe_l2_at_start(false)
        .key_provider(Arc::new(Vault(Some(provided.clone()))))
        .build()
        .await
        .unwrap();
    let token = save(&c, 1).await;
    assert_eq!(
        protect::stored(&raw(&*store, &home(1)).await),
        Stored::Sealed { key_id: "gen1" }
    );
    // The same key from its text line opens it.
    let from_line = cache(store.clone(), Some(KeyRing::parse(&line).unwrap())).await;
    assert_eq!(find(&from_line, 1).await, Some(token.clone()));

    let failed = TokenCache::builder()
        .store(store.clone())
        .key_provider(Arc::new(Vault(None)))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(failed, tokencache::Error::Keys(_)), "{failed}");
    assert!(failed.to_string().contains("vault sealed"));

    let p = protect::Protection::new(provided.clone());
    let bytes = raw(&*store, &home(1)).await;
    let opened = p.open(&home(1), &bytes).unwrap().0;
    let builder = TokenCache::builder().keys(provided.clone());
    let bad = KeyRing::parse(&format!("gen1:{}", &b64[..40])).unwrap_err();
    let shown = [
        format!("{provided:?}"),
        format!("{:?}", provided.primary()),
        format!("{p:?}"),
        format!("{opened:?}"),
        format!("{builder:?}"),
        format!("{c:?}"),
        format!("{bad} {bad:?}"),
    ];
    for s in &shown {
        assert!(!s.contains(&b64) && !s.contains(&b64[..20]), "{s}");
        assert!(!s.contains(&token), "{s}");
    }
    assert!(
        shown[0].contains("gen1") && shown[0].contains("old"),
        "{}",
        shown[0]
    );
    assert!(shown[3].contains("bytes"), "{}", shown[3]);
}
