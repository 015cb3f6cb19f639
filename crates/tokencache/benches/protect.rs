//! Encryption at rest (docs/design.md §9 and §11), side by side in one run:
//!
//! * `protect/7kb/{seal,open,seal_open}` of a realistic ~7 KB user partition, beside
//!   `protect/7kb/parse` (what an L2 hit does with the plaintext anyway);
//! * `l2_hit_encryption/redis/{plaintext,encrypted}`: a full L2 hit
//!   (`find_access_token` with L1 off: GET + PTTL, open, parse, lookup) on one
//!   `redis-server` (testkit, loopback), the same partition stored plaintext under one
//!   prefix and sealed under another, beside `raw_get` of the sealed bytes.
//!
//! Then an interleaved run (alternating batches of the two, so that the machine's
//! drift hits both alike) prints the ratio: target, encryption adds ≤ 10 % to an L2 hit.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Instant;
use tokencache::protect::{Key, KeyId, KeyRing, Protection};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::store::{self, SharedStore};
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache};

const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn ring() -> KeyRing {
    KeyRing::new(Key::new(KeyId::new("bench").unwrap(), &[0x5a; 32]))
}

fn envelope(c: &mut Criterion) {
    let (partition, home) = sample::user_partition(OID, TENANT, now()).unwrap();
    let json = partition.to_vec();
    let p = Protection::new(ring());
    let sealed = p.seal(&home, &json);
    println!(
        "partition: {} bytes plaintext, {} bytes sealed",
        json.len(),
        sealed.len()
    );
    let mut g = c.benchmark_group("protect/7kb");
    g.bench_function("seal", |b| {
        b.iter(|| p.seal(black_box(&home), black_box(&json)))
    });
    g.bench_function("open", |b| {
        b.iter(|| {
            p.open(black_box(&home), black_box(&sealed))
                .unwrap()
                .0
                .len()
        })
    });
    g.bench_function("seal_open", |b| {
        b.iter(|| {
            let s = p.seal(black_box(&home), black_box(&json));
            p.open(&home, &s).unwrap().0.len()
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| Partition::parse(black_box(&json)).unwrap())
    });
    g.finish();
}

async fn seeded(store: SharedStore, prefix: &str, keys: Option<KeyRing>) -> (TokenCache, String) {
    let b = TokenCache::builder()
        .store(store)
        .key_prefix(prefix)
        .disable_l1();
    let b = match keys {
        Some(r) => b.keys(r),
        None => b.no_encryption(),
    };
    let cache = b.build().await.unwrap();
    let mut home = String::new();
    for scopes in sample::USER_SCOPES {
        let resp = sample::user_response(OID, TENANT, scopes, now(), 3600).unwrap();
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
        home = cache
            .save_token_response(&req, &resp)
            .await
            .unwrap()
            .partition;
    }
    (cache, home)
}

fn l2_hit_redis(c: &mut Criterion) {
    let server = testkit::RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(store::open(&url)).unwrap();
    let (plain, home) = rt.block_on(seeded(store.clone(), "plain:", None));
    let (sealed, _) = rt.block_on(seeded(store.clone(), "sealed:", Some(ring())));
    let scopes = sample::USER_SCOPES[1];
    let lookup = Lookup::user(CLIENT_ID, &home, scopes);
    for cache in [&plain, &sealed] {
        assert!(rt
            .block_on(cache.find_access_token(&lookup))
            .unwrap()
            .is_some());
    }
    let sealed_key = format!("sealed:{home}");
    let bytes = rt.block_on(store.get(&sealed_key)).unwrap().unwrap().bytes;
    assert!(tokencache::protect::is_envelope(&bytes));
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

    let mut g = c.benchmark_group("l2_hit_encryption/redis");
    g.bench_function("plaintext", |b| {
        b.iter(|| {
            rt.block_on(plain.find_access_token(black_box(&lookup)))
                .unwrap()
        })
    });
    g.bench_function("encrypted", |b| {
        b.iter(|| {
            rt.block_on(sealed.find_access_token(black_box(&lookup)))
                .unwrap()
        })
    });
    g.bench_function("raw_get", |b| b.iter(|| raw(black_box(&sealed_key))));
    g.finish();

    // Interleaved: batches of each in turn; the median of per-batch means per side.
    const BATCH: u32 = 25;
    let (mut p, mut e) = (Vec::new(), Vec::new());
    for _ in 0..400 {
        for (cache, out) in [(&plain, &mut p), (&sealed, &mut e)] {
            let t = Instant::now();
            for _ in 0..BATCH {
                black_box(rt.block_on(cache.find_access_token(&lookup)).unwrap());
            }
            out.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mp, me) = (median(&mut p), median(&mut e));
    println!(
        "interleaved L2 hit on redis: plaintext {:.1} us, encrypted {:.1} us, encrypted/plaintext = {:.3} (encryption adds {:+.1} %; target <= +10 %)",
        mp / 1000.0,
        me / 1000.0,
        me / mp,
        (me / mp - 1.0) * 100.0
    );
}

criterion_group!(benches, envelope, l2_hit_redis);
criterion_main!(benches);
