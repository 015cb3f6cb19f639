//! One kind of hit in a loop, for a profiler (docs/profile.md):
//! `cargo build --release -p tokencache --example profile_hit`, then e.g.
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*hits*'
//! target/release/examples/profile_hit l2 2000`.
//!
//! `l1`: user-partition L1 hits (`find_access_token`); `obo`: OBO L1 hits (the incoming
//! token hashed into the key); `l2`: L2 hits on `memory://` with L1 off (get, decode,
//! lookup: the CPU an L2 hit adds to fetching the bytes).

use std::hint::black_box;
use tokencache::sample::{self, CLIENT_ID, TENANT};
use tokencache::{Lookup, TokenCache};

const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
const OBO_SCOPES: &[&str] = &["api://downstream/.default"];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The measured loop (its name is what the profiler's toggle matches), one `block_on`
/// per hit as in the criterion benches.
#[inline(never)]
fn hits(rt: &tokio::runtime::Runtime, cache: &TokenCache, lookup: &Lookup<'_>, n: u32) {
    for _ in 0..n {
        black_box(rt.block_on(cache.find_access_token(black_box(lookup))).ok());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("l1", String::as_str);
    let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (cache, home, assertion) = rt.block_on(setup(mode == "l2"));
    let lookup = match mode {
        "obo" => Lookup::obo(CLIENT_ID, &assertion, OBO_SCOPES),
        _ => Lookup::user(CLIENT_ID, &home, sample::USER_SCOPES[1]),
    };
    let found = rt.block_on(cache.find_access_token(&lookup));
    assert!(found.expect("lookup").is_some());
    let t = std::time::Instant::now();
    hits(&rt, &cache, &lookup, n);
    println!(
        "{mode}: {n} hits, {:.0} ns each",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}

/// A user partition and an OBO partition saved through the cache; returns the cache to
/// read with (L1 off for `l2`), the home account id and the incoming assertion.
async fn setup(l2: bool) -> (TokenCache, String, String) {
    let store = tokencache::store::open("memory://").await.expect("store");
    let writer = TokenCache::builder()
        .store(store.clone())
        .no_encryption()
        .build()
        .await
        .expect("cache");
    let home = sample::save_user(&writer, OID, TENANT, now())
        .await
        .expect("save");
    let assertion = sample::incoming_assertion(OID, TENANT, now(), now() + 3600);
    sample::save_obo(&writer, OID, TENANT, &assertion, OBO_SCOPES, now())
        .await
        .expect("save");
    if !l2 {
        return (writer, home, assertion);
    }
    let reader = TokenCache::builder()
        .store(store)
        .no_encryption()
        .disable_l1()
        .build()
        .await
        .expect("cache");
    (reader, home, assertion)
}
