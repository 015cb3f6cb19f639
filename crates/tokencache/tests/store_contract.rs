//! One contract, every backend: memory, embedded (redb), Redis standalone and Redis
//! Cluster (real servers started by testkit). Short real TTLs, one shared wait.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use testkit::{RedisCluster, RedisServer};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::redis::key_slot;
use tokencache::store::{
    EmbeddedStore, EntryExpiry, MemoryStore, RedisOptions, RedisStore, StampAt, Store,
    StoreErrorKind, ValueDigest,
};

/// Reads the raw `PTTL` of a key on the real server (Redis backends only).
type RawPttl = Box<dyn Fn(&str) -> i64 + Send + Sync>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn scan_all(store: &dyn Store, prefix: &str, count: usize) -> BTreeSet<String> {
    let mut cursor = 0;
    let mut keys = BTreeSet::new();
    let mut pages = 0;
    loop {
        let (next, page) = store.scan(prefix, cursor, count).await.expect("scan");
        keys.extend(page);
        pages += 1;
        assert!(pages < 10_000, "scan does not end");
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// The contract every [`Store`] meets. `ns` keeps keys of concurrent runs apart.
async fn contract(store: &dyn Store, ns: &str, pttl: Option<RawPttl>) {
    let k = |s: &str| format!("{ns}:{s}");
    store.health().await.expect("health");
    assert!(!store.endpoint().is_empty());

    // get / set / overwrite.
    assert_eq!(store.get(&k("a")).await.unwrap(), None);
    store.set(&k("a"), b"one", None).await.unwrap();
    let v = store.get(&k("a")).await.unwrap().expect("a");
    assert_eq!(v.bytes, b"one");
    assert_eq!(v.ttl, None);
    store.set(&k("a"), b"two", Some(ms(60_000))).await.unwrap();
    let v = store.get(&k("a")).await.unwrap().expect("a");
    assert_eq!(v.bytes, b"two");
    let ttl = v.ttl.expect("ttl after set with ttl");
    assert!(ttl <= ms(60_000) && ttl > ms(55_000), "{ttl:?}");
    if let Some(p) = &pttl {
        let raw = p(&k("a"));
        assert!(raw > 55_000 && raw <= 60_000, "raw PTTL {raw}");
    }
    // Revocation stamps: the later of the one given and the one held is kept.
    let st = k("rev:{u}");
    let ttl = Some(ms(60_000));
    let write = |at: StampAt| {
        let st = st.clone();
        async move { store.write_stamp(&st, at, ttl).await.unwrap() }
    };
    assert_eq!(write(StampAt::Instant(1_800_000_000_500)).await, 1_800_000_000_500);
    let held = store.get(&st).await.unwrap().expect("stamp");
    assert_eq!(held.bytes, b"1800000000.500");
    assert!(held.ttl.is_some_and(|t| t <= ms(60_000)), "{:?}", held.ttl);
    assert_eq!(
        write(StampAt::Instant(1_800_000_000_100)).await,
        1_800_000_000_500,
        "never moves back"
    );
    assert_eq!(write(StampAt::Instant(1_800_000_001_000)).await, 1_800_000_001_000);
    // plain seconds (written before stamps had milliseconds): the end of that second
    store.set(&st, b"1800000005", None).await.unwrap();
    assert_eq!(write(StampAt::Instant(1_800_000_005_100)).await, 1_800_000_005_999);
    // a value that is not a stamp is replaced
    store.set(&st, b"garbage", None).await.unwrap();
    assert_eq!(write(StampAt::Instant(7)).await, 7);
    // "now" by the store's own clock where it has one, else the caller's
    let before = store.time_ms().await.unwrap();
    let now = store
        .write_stamp(&k("rev2"), StampAt::StoreClock { fallback_ms: 42 }, None)
        .await
        .unwrap();
    let after = store.time_ms().await.unwrap();
    match (before, after) {
        (Some(b), Some(a)) => assert!(b as i64 <= now && now <= a as i64, "{b} {now} {a}"),
        (None, None) => assert_eq!(now, 42),
        other => panic!("a clock that comes and goes: {other:?}"),
    }
    store.remove(&k("rev2")).await.unwrap();
    store.remove(&st).await.unwrap();
    // get_along: a value and another key's, in one call; each may be missing.
    store.set(&k("stamp"), b"123.456", None).await.unwrap();
    let (v, other) = store.get_along(&k("a"), None, &k("stamp")).await.unwrap();
    assert_eq!(v.expect("a").bytes, b"two");
    assert_eq!(other.as_deref(), Some(&b"123.456"[..]));
    let (v, other) = store
        .get_along(&k("nothing"), None, &k("stamp"))
        .await
        .unwrap();
    assert!(v.is_none());
    assert_eq!(other.as_deref(), Some(&b"123.456"[..]));
    let (v, other) = store
        .get_along(&k("a"), Some(ms(30_000)), &k("no-stamp"))
        .await
        .unwrap();
    let v = v.expect("a");
    assert_eq!((v.bytes.as_slice(), other), (&b"two"[..], None));
    let ttl = v.ttl.expect("touched");
    assert!(ttl <= ms(30_000) && ttl > ms(25_000), "{ttl:?}");
    store.set(&k("a"), b"two", Some(ms(60_000))).await.unwrap();
    // digest: of what get returns; None for no entry; changes with the value.
    let d = store.digest(&k("a")).await.unwrap().expect("digest");
    assert_eq!(d, ValueDigest::of(b"two"));
    assert_eq!(store.digest(&k("nothing")).await.unwrap(), None);
    store.set(&k("a2"), b"two!", None).await.unwrap();
    assert_ne!(store.digest(&k("a2")).await.unwrap(), Some(d));
    // set_if_absent: written once; refused while the key lives (bytes or link set);
    // written again after the entry expired.
    assert!(store
        .set_if_absent(&k("once"), b"1", Some(ms(300)))
        .await
        .unwrap());
    assert!(!store
        .set_if_absent(&k("once"), b"2", Some(ms(60_000)))
        .await
        .unwrap());
    assert_eq!(
        store.get(&k("once")).await.unwrap().unwrap().bytes,
        b"1",
        "not overwritten"
    );
    store
        .link_add(&k("once-set"), "m", Some(ms(60_000)))
        .await
        .unwrap();
    assert!(!store
        .set_if_absent(&k("once-set"), b"1", None)
        .await
        .unwrap());
    tokio::time::sleep(ms(450)).await;
    assert!(
        store
            .set_if_absent(&k("once"), b"3", Some(ms(60_000)))
            .await
            .unwrap(),
        "expired: free again"
    );
    assert_eq!(store.get(&k("once")).await.unwrap().unwrap().bytes, b"3");
    store
        .remove_many(&[k("once"), k("once-set")])
        .await
        .unwrap();

    // compare_and_swap over bytes: written only over the expected bytes (binary-safe),
    // with the new TTL; never over other bytes, a missing key or an expired entry.
    let old: Vec<u8> = vec![0xFF, 0, b'x', 0x80];
    store.set(&k("cas"), &old, Some(ms(60_000))).await.unwrap();
    assert!(!store
        .compare_and_swap(
            &k("cas"),
            Some(b"other"),
            Some(b"new"),
            EntryExpiry::after(None)
        )
        .await
        .unwrap());
    assert_eq!(store.get(&k("cas")).await.unwrap().unwrap().bytes, old);
    assert!(store
        .compare_and_swap(
            &k("cas"),
            Some(&old),
            Some(b"new"),
            EntryExpiry::after(Some(ms(30_000)))
        )
        .await
        .unwrap());
    let v = store.get(&k("cas")).await.unwrap().unwrap();
    assert_eq!(v.bytes, b"new");
    let ttl = v.ttl.expect("the new TTL");
    assert!(ttl > ms(25_000) && ttl <= ms(30_000), "{ttl:?}");
    assert!(
        !store
            .compare_and_swap(
                &k("cas"),
                Some(&old),
                Some(b"again"),
                EntryExpiry::after(None)
            )
            .await
            .unwrap(),
        "the old value is gone: a second CAS of it fails"
    );
    assert!(store
        .compare_and_swap(
            &k("cas"),
            Some(b"new"),
            Some(b"kept"),
            EntryExpiry::after(None)
        )
        .await
        .unwrap());
    assert_eq!(store.get(&k("cas")).await.unwrap().unwrap().ttl, None);
    assert!(!store
        .compare_and_swap(
            &k("cas-missing"),
            Some(b""),
            Some(b"x"),
            EntryExpiry::after(None)
        )
        .await
        .unwrap());
    assert_eq!(store.get(&k("cas-missing")).await.unwrap(), None);
    store
        .link_add(&k("cas-set"), "m", Some(ms(60_000)))
        .await
        .unwrap();
    assert!(
        store
            .compare_and_swap(
                &k("cas-set"),
                Some(b"m"),
                Some(b"x"),
                EntryExpiry::after(None)
            )
            .await
            .is_err(),
        "a link set is not an entry (WRONGTYPE)"
    );
    // get_along with a link set on either side is an error, touched or not (as get is).
    for touch in [None, Some(ms(30_000))] {
        assert!(store
            .get_along(&k("cas-set"), touch, &k("stamp"))
            .await
            .is_err());
        assert!(store
            .get_along(&k("a"), touch, &k("cas-set"))
            .await
            .is_err());
    }
    assert_eq!(
        store.link_members(&k("cas-set")).await.unwrap(),
        vec!["m".to_string()]
    );
    store.set(&k("cas-exp"), b"e", Some(ms(100))).await.unwrap();
    tokio::time::sleep(ms(250)).await;
    assert!(!store
        .compare_and_swap(
            &k("cas-exp"),
            Some(b"e"),
            Some(b"x"),
            EntryExpiry::after(None)
        )
        .await
        .unwrap());
    assert_eq!(store.get(&k("cas-exp")).await.unwrap(), None);
    store.remove_many(&[k("cas"), k("cas-set")]).await.unwrap();

    // A set without TTL removes the old TTL.
    store.set(&k("a"), b"three", None).await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap().unwrap().ttl, None);
    if let Some(p) = &pttl {
        assert_eq!(p(&k("a")), -1);
    }
    // Binary values survive as they are.
    let binary: Vec<u8> = (0..=255u8).collect();
    store.set(&k("bin"), &binary, None).await.unwrap();
    assert_eq!(store.get(&k("bin")).await.unwrap().unwrap().bytes, binary);

    // get_and_touch extends and returns the new TTL.
    store.set(&k("slide"), b"s", Some(ms(5_000))).await.unwrap();
    let v = store
        .get_and_touch(&k("slide"), ms(90_000))
        .await
        .unwrap()
        .expect("slide");
    assert_eq!(v.bytes, b"s");
    assert_eq!(v.ttl, Some(ms(90_000)));
    let ttl = store.get(&k("slide")).await.unwrap().unwrap().ttl.unwrap();
    assert!(ttl > ms(85_000), "{ttl:?}");
    if let Some(p) = &pttl {
        assert!(p(&k("slide")) > 85_000);
    }
    assert_eq!(
        store.get_and_touch(&k("missing"), ms(1_000)).await.unwrap(),
        None
    );

    // touch.
    assert!(store.touch(&k("a"), ms(120_000)).await.unwrap());
    let ttl = store.get(&k("a")).await.unwrap().unwrap().ttl.unwrap();
    assert!(ttl > ms(115_000) && ttl <= ms(120_000), "{ttl:?}");
    assert!(!store.touch(&k("missing"), ms(1_000)).await.unwrap());

    // remove.
    assert!(store.remove(&k("bin")).await.unwrap());
    assert!(!store.remove(&k("bin")).await.unwrap());
    assert_eq!(store.get(&k("bin")).await.unwrap(), None);

    // remove_many across hash slots (a missing key does not count).
    let many: Vec<String> = (0..20).map(|i| k(&format!("many{i}"))).collect();
    let slots: BTreeSet<u16> = many.iter().map(|m| key_slot(m)).collect();
    assert!(slots.len() > 5, "keys spread over slots");
    for m in &many {
        store.set(m, b"x", Some(ms(60_000))).await.unwrap();
    }
    let mut doomed = many.clone();
    doomed.push(k("never-written"));
    assert_eq!(store.remove_many(&doomed).await.unwrap(), 20);
    for m in &many {
        assert_eq!(store.get(m).await.unwrap(), None);
    }
    assert_eq!(store.remove_many(&[]).await.unwrap(), 0);

    // Link sets: add, members, remove; the set goes with its last member.
    let links = format!("{ns}:tc:links:{{o.t}}");
    assert!(store.link_members(&links).await.unwrap().is_empty());
    store
        .link_add(&links, "obo1", Some(ms(60_000)))
        .await
        .unwrap();
    store
        .link_add(&links, "obo2", Some(ms(60_000)))
        .await
        .unwrap();
    store
        .link_add(&links, "obo1", Some(ms(60_000)))
        .await
        .unwrap();
    let members: BTreeSet<String> = store
        .link_members(&links)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(members, BTreeSet::from(["obo1".into(), "obo2".into()]));
    if let Some(p) = &pttl {
        let raw = p(&links);
        assert!(raw > 55_000 && raw <= 60_000, "{raw}");
    }
    // compare_and_swap: only over exactly the expected value (or absence).
    let cas = k("cas");
    assert!(store
        .compare_and_swap(
            &cas,
            None,
            Some(b"v1"),
            EntryExpiry::after(Some(ms(60_000)))
        )
        .await
        .unwrap());
    assert!(
        !store
            .compare_and_swap(&cas, None, Some(b"v2"), EntryExpiry::after(None))
            .await
            .unwrap(),
        "not absent"
    );
    assert!(!store
        .compare_and_swap(&cas, Some(b"v0"), Some(b"v2"), EntryExpiry::after(None))
        .await
        .unwrap());
    assert_eq!(store.get(&cas).await.unwrap().unwrap().bytes, b"v1");
    assert!(store
        .compare_and_swap(
            &cas,
            Some(b"v1"),
            Some(b"v2"),
            EntryExpiry::after(Some(ms(60_000)))
        )
        .await
        .unwrap());
    assert_eq!(store.get(&cas).await.unwrap().unwrap().bytes, b"v2");
    if let Some(p) = &pttl {
        assert!(p(&cas) > 50_000, "the new TTL");
    }
    assert!(
        store
            .compare_and_swap(&cas, Some(b"v2"), None, EntryExpiry::after(None))
            .await
            .unwrap(),
        "a removal"
    );
    assert_eq!(store.get(&cas).await.unwrap(), None);
    assert!(!store
        .compare_and_swap(&cas, Some(b"v2"), None, EntryExpiry::after(None))
        .await
        .unwrap());
    // The refresh lock's two calls: renew (the same value, a new TTL, only while it is
    // the expected owner's) and compare-and-delete (only the expected owner's).
    let lock = k("lock");
    assert!(store
        .set_if_absent(&lock, b"owner-1", Some(ms(400)))
        .await
        .unwrap());
    assert!(store
        .compare_and_swap(
            &lock,
            Some(b"owner-1"),
            Some(b"owner-1"),
            EntryExpiry::after(Some(ms(60_000)))
        )
        .await
        .unwrap());
    let v = store.get(&lock).await.unwrap().expect("renewed lock");
    assert_eq!(v.bytes, b"owner-1");
    assert!(v.ttl.expect("a TTL") > ms(50_000), "renewed: {:?}", v.ttl);
    assert!(!store
        .compare_and_swap(
            &lock,
            Some(b"owner-2"),
            Some(b"owner-2"),
            EntryExpiry::after(Some(ms(60_000)))
        )
        .await
        .unwrap());
    assert!(
        !store
            .compare_and_swap(&lock, Some(b"owner-2"), None, EntryExpiry::after(None))
            .await
            .unwrap(),
        "another owner's delete is refused"
    );
    assert_eq!(store.get(&lock).await.unwrap().unwrap().bytes, b"owner-1");
    assert!(store
        .compare_and_swap(&lock, Some(b"owner-1"), None, EntryExpiry::after(None))
        .await
        .unwrap());
    assert_eq!(store.get(&lock).await.unwrap(), None);
    // a lock that is gone is not renewed back to life
    assert!(!store
        .compare_and_swap(
            &lock,
            Some(b"owner-1"),
            Some(b"owner-1"),
            EntryExpiry::after(Some(ms(60_000)))
        )
        .await
        .unwrap());
    assert_eq!(store.get(&lock).await.unwrap(), None);

    // A link set is not an entry (as in Redis: WRONGTYPE).
    let e = store.get(&links).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    let e = store.link_add(&k("a"), "m", None).await.unwrap_err();
    assert!(store
        .compare_and_swap(&links, None, Some(b"x"), EntryExpiry::after(None))
        .await
        .is_err());
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    store
        .link_remove(&links, &["obo1".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(store.link_members(&links).await.unwrap(), vec!["obo2"]);
    store.link_remove(&links, &["obo2".into()]).await.unwrap();
    assert!(store.link_members(&links).await.unwrap().is_empty());
    assert!(!store.remove(&links).await.unwrap(), "empty set is gone");
    store.link_remove(&links, &["x".into()]).await.unwrap();
    // No TTL: lives forever, and a later TTL does not shorten it.
    let forever = format!("{ns}:tc:links:{{forever}}");
    store.link_add(&forever, "m", None).await.unwrap();
    store.link_add(&forever, "n", Some(ms(200))).await.unwrap();
    if let Some(p) = &pttl {
        assert_eq!(p(&forever), -1);
    }

    // scan finds exactly the keys under a prefix, in pages.
    let scan_prefix = format!("{ns}:scan:");
    let mut expected = BTreeSet::new();
    for i in 0..25 {
        let key = format!("{scan_prefix}{i:02}");
        store.set(&key, b"v", Some(ms(60_000))).await.unwrap();
        expected.insert(key);
    }
    let set_key = format!("{scan_prefix}tc:links:{{u}}");
    store
        .link_add(&set_key, "m", Some(ms(60_000)))
        .await
        .unwrap();
    expected.insert(set_key);
    store.set(&format!("{ns}:scanx"), b"v", None).await.unwrap();
    assert_eq!(scan_all(store, &scan_prefix, 7).await, expected);
    assert_eq!(scan_all(store, &scan_prefix, 1000).await, expected);
    // Glob characters in the prefix are literal.
    let glob = format!("{ns}:g*[");
    store.set(&format!("{glob}1"), b"v", None).await.unwrap();
    store.set(&format!("{ns}:gX[1"), b"v", None).await.unwrap();
    assert_eq!(
        scan_all(store, &glob, 10).await,
        BTreeSet::from([format!("{glob}1")])
    );

    // Expiry with real time: short TTLs, one shared wait.
    store.set(&k("short"), b"s", Some(ms(300))).await.unwrap();
    store
        .set(&format!("{scan_prefix}short"), b"s", Some(ms(300)))
        .await
        .unwrap();
    let shrink = format!("{ns}:tc:links:{{shrink}}");
    store
        .link_add(&shrink, "m1", Some(ms(1_500)))
        .await
        .unwrap();
    store.link_add(&shrink, "m2", Some(ms(300))).await.unwrap(); // must not shorten the set
    store.link_add(&shrink, "m1", Some(ms(100))).await.unwrap(); // nor its member m1
    let grow = format!("{ns}:tc:links:{{grow}}");
    store.link_add(&grow, "m1", Some(ms(300))).await.unwrap();
    store.link_add(&grow, "m2", Some(ms(3_000))).await.unwrap(); // lengthens
    if let Some(p) = &pttl {
        assert!(p(&grow) > 2_500);
        assert!(p(&shrink) > 1_000);
    }
    tokio::time::sleep(ms(700)).await;
    assert_eq!(store.get(&k("short")).await.unwrap(), None);
    assert_eq!(
        store.get_and_touch(&k("short"), ms(60_000)).await.unwrap(),
        None
    );
    assert!(!store.touch(&k("short"), ms(60_000)).await.unwrap());
    assert!(!store.remove(&k("short")).await.unwrap());
    assert_eq!(scan_all(store, &scan_prefix, 100).await, expected);
    // Each member ends with its own deadline (pruned when the set is read or added to);
    // the set lives as long as its longest-lived member.
    assert_eq!(store.link_members(&shrink).await.unwrap(), vec!["m1"]);
    assert_eq!(store.link_members(&grow).await.unwrap(), vec!["m2"]);
    if let Some(p) = &pttl {
        assert!(
            p(&grow) > 1_500,
            "the set keeps its longest member's deadline"
        );
    }
    tokio::time::sleep(ms(1_000)).await;
    assert!(store.link_members(&shrink).await.unwrap().is_empty());
    assert!(
        !store.remove(&shrink).await.unwrap(),
        "gone with its last member"
    );
    assert_eq!(store.link_members(&grow).await.unwrap(), vec!["m2"]);
    assert_eq!(store.link_members(&forever).await.unwrap(), vec!["m"]);
    if let Some(p) = &pttl {
        assert_eq!(
            p(&forever),
            -1,
            "a member without expiry keeps the set forever"
        );
    }
    // An expired key can be written again.
    store.set(&k("short"), b"again", None).await.unwrap();
    assert_eq!(
        store.get(&k("short")).await.unwrap().unwrap().bytes,
        b"again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_meets_the_contract() {
    contract(&MemoryStore::new(), "mem", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_passthrough_meets_the_contract() {
    // the fault-injection wrapper, with no fault set, forwards every call as it is
    let store = ChaosStore::passthrough(Arc::new(MemoryStore::new()));
    contract(&store, "chaos", None).await;
    assert!(store.calls() > 0);
    assert_eq!(store.injected_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path().join("c.redb"))
        .await
        .unwrap();
    contract(&store, "emb", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_standalone_meets_the_contract() {
    let server = Arc::new(RedisServer::start());
    let store = RedisStore::standalone(&server.url(), RedisOptions::default()).unwrap();
    let s = server.clone();
    let pttl: RawPttl = Box::new(move |key| s.cli(&["PTTL", key]).parse().expect("PTTL"));
    contract(&store, "rs", Some(pttl)).await;
    // Nothing else was written under another prefix.
    let all = scan_all(&store, "", 50).await;
    assert!(all.iter().all(|k| k.starts_with("rs:")), "{all:?}");
    assert_eq!(server.cli(&["GET", "rs:a"]), "three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_meets_the_contract() {
    let cluster = Arc::new(RedisCluster::start());
    let seeds: Vec<String> = cluster
        .seeds()
        .iter()
        .map(|s| format!("redis://{s}"))
        .collect();
    let store = RedisStore::cluster(&seeds, RedisOptions::default()).unwrap();
    assert!(store.is_cluster());
    let c = cluster.clone();
    let pttl: RawPttl = Box::new(move |key| c.cli(&["PTTL", key]).parse().expect("PTTL"));
    contract(&store, "rc", Some(pttl)).await;
    // The scanned keys really live on several masters, and a full scan sees each of
    // them once per master that holds it.
    let per_node: Vec<usize> = cluster
        .cli_all(&["--scan", "--pattern", "rc:scan:*"])
        .iter()
        .map(|out| out.lines().filter(|l| !l.is_empty()).count())
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 26, "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "{per_node:?}"
    );
}
