//! Two-level benchmarks (docs/design.md §11), each next to its raw baseline:
//!
//! * `l1_hit/find_access_token` vs `l1_hit/bare_hashmap_get`
//! * `l1_hit/obo_find_access_token` (the assertion's key included) vs
//!   `l1_hit/obo_key_sha256` (computing that key alone)
//! * `l1_hit/two_threads` vs `l1_hit/one_thread`: 2 × 10,000 hits on two threads at once
//!   (each its own user) vs 10,000 on one: a time ratio near 1 is linear scaling
//! * `l2_hit/memory/find_access_token` vs `l2_hit/memory/raw_get` and
//!   `l2_hit/memory/value_parse` (a `serde_json::Value` parse of the same blob): the CPU
//!   an L2 hit adds
//! * `l2_hit/<store>/find_access_token` (L1 off: get + parse + lookup) vs
//!   `l2_hit/<store>/raw_get` of the same bytes on the same kind of connection
//! * `write/<store>/save_token_response`
//!
//! The Redis group starts its own `redis-server` on loopback (testkit).

use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::{self, SharedStore};
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache};

const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const OID_2: &str = "00000000-0000-0000-66f3-3332eca7ea82";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn seeded(store: SharedStore, l1: bool) -> (TokenCache, String) {
    // Plaintext whatever TOKENCACHE_KEYS says: benches/protect.rs measures encryption.
    let mut b = TokenCache::builder().store(store).no_encryption();
    if !l1 {
        b = b.disable_l1();
    }
    let cache = b.build().await.unwrap();
    let home = sample::save_user(&cache, OID, TENANT, now()).await.unwrap();
    (cache, home)
}

fn l1_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(store::open("memory://")).unwrap();
    let (cache, home) = rt.block_on(seeded(store.clone(), true));
    let scopes = sample::USER_SCOPES[1];
    let lookup = Lookup::user(CLIENT_ID, &home, scopes);
    assert!(rt
        .block_on(cache.find_access_token(&lookup))
        .unwrap()
        .is_some());
    let blob = rt.block_on(store.get(&home)).unwrap().unwrap().bytes;
    let mut map: HashMap<String, Arc<Partition>> = HashMap::new();
    let parsed = Arc::new(Partition::parse(&blob).unwrap());
    for i in 0..1000 {
        map.insert(format!("{i:08}.{TENANT}"), parsed.clone());
    }
    map.insert(home.clone(), parsed);

    let mut g = c.benchmark_group("l1_hit");
    g.bench_function("find_access_token", |b| {
        b.iter(|| {
            rt.block_on(cache.find_access_token(black_box(&lookup)))
                .unwrap()
        })
    });
    g.bench_function("bare_hashmap_get", |b| {
        b.iter(|| map.get(black_box(home.as_str())).cloned())
    });

    let obo_scopes: &[&str] = &["api://downstream/.default"];
    let assertion = sample::incoming_assertion(OID, TENANT, now(), now() + 3600);
    rt.block_on(sample::save_obo(
        &cache,
        OID,
        TENANT,
        &assertion,
        obo_scopes,
        now(),
    ))
    .unwrap();
    let obo = Lookup::obo(CLIENT_ID, &assertion, obo_scopes);
    assert!(rt
        .block_on(cache.find_access_token(&obo))
        .unwrap()
        .is_some());
    g.bench_function("obo_find_access_token", |b| {
        b.iter(|| {
            rt.block_on(cache.find_access_token(black_box(&obo)))
                .unwrap()
        })
    });
    g.bench_function("obo_key_sha256", |b| {
        b.iter(|| tokencache::partition::assertion_hash(black_box(&assertion)))
    });

    // Scaling: the same work per thread, one thread alone vs two at once.
    let second = rt
        .block_on(sample::save_user(&cache, OID_2, TENANT, now()))
        .unwrap();
    let homes = [home.clone(), second];
    let run = |threads: usize| {
        std::thread::scope(|s| {
            for home in &homes[..threads] {
                let cache = cache.clone();
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let lookup = Lookup::user(CLIENT_ID, home, scopes);
                    rt.block_on(async {
                        for _ in 0..10_000 {
                            black_box(cache.find_access_token(black_box(&lookup)).await.ok());
                        }
                    })
                });
            }
        })
    };
    g.bench_function("one_thread", |b| b.iter(|| run(1)));
    g.bench_function("two_threads", |b| b.iter(|| run(2)));
    g.finish();
}

fn l2_memory(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(store::open("memory://")).unwrap();
    let blob = {
        let (_w, home) = rt.block_on(seeded(store.clone(), true));
        rt.block_on(store.get(&home)).unwrap().unwrap().bytes
    };
    let raw = |k: &str| {
        rt.block_on(store.get(k))
            .unwrap()
            .map_or(0, |v| v.bytes.len())
    };
    l2_group(c, "memory", &rt, store.clone(), raw);
    let mut g = c.benchmark_group("l2_hit/memory");
    g.bench_function("value_parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&blob)).unwrap())
    });
    g.finish();
}

fn l2_group(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: SharedStore,
    raw: impl Fn(&str) -> usize,
) {
    let (_writer, home) = rt.block_on(seeded(store.clone(), true));
    let (reader, _) = rt.block_on(seeded(store.clone(), false));
    let scopes = sample::USER_SCOPES[1];
    let lookup = Lookup::user(CLIENT_ID, &home, scopes);
    assert!(rt
        .block_on(reader.find_access_token(&lookup))
        .unwrap()
        .is_some());
    let size = rt.block_on(store.get(&home)).unwrap().unwrap().bytes.len();
    assert_eq!(raw(&home), size);

    let mut g = c.benchmark_group(format!("l2_hit/{name}"));
    g.bench_function("find_access_token", |b| {
        b.iter(|| {
            rt.block_on(reader.find_access_token(black_box(&lookup)))
                .unwrap()
        })
    });
    g.bench_function("raw_get", |b| b.iter(|| raw(black_box(&home))));
    // The backend alone (for Redis: GET + PTTL pipelined), without parse and lookup.
    g.bench_function("store_get", |b| {
        b.iter(|| rt.block_on(store.get(black_box(&home))).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group(format!("write/{name}"));
    let resp = sample::user_response(OID, TENANT, scopes, now(), 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    g.bench_function("save_token_response", |b| {
        b.iter(|| {
            rt.block_on(reader.save_token_response(&req, black_box(&resp)))
                .unwrap()
        })
    });
    g.finish();
}

fn l2_embedded(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().join("bench.redb").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(store::open(&url)).unwrap();
    // The embedded store's own get is the raw baseline: the same bytes, no parse.
    let raw = |k: &str| {
        rt.block_on(store.get(k))
            .unwrap()
            .map_or(0, |v| v.bytes.len())
    };
    l2_group(c, "embedded", &rt, store.clone(), raw);
}

fn l2_redis(c: &mut Criterion) {
    let server = testkit::RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    let raw = |k: &str| {
        let mut conn = conn.clone();
        let v: Option<Vec<u8>> = rt
            .block_on(redis::cmd("GET").arg(k).query_async(&mut conn))
            .unwrap();
        v.map_or(0, |v| v.len())
    };
    let store = rt.block_on(store::open(&url)).unwrap();
    l2_group(c, "redis", &rt, store, raw);
}

criterion_group!(benches, l1_hit, l2_memory, l2_embedded, l2_redis);
criterion_main!(benches);
