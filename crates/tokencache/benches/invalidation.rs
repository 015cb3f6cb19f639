//! Cross-replica invalidation on a real `redis-server` (started here on loopback):
//! how long after replica A's save returns replica B has dropped its L1 entry (B's
//! listener received A's message), median and p99; and the optimistic write's cost
//! (read, stamp read, compare-and-swap) against a plain `SET` of the same bytes, side
//! by side in one run; and what strict reads cost per L1 hit (with and without the
//! digest check, and a bare GET of the partition, interleaved). Prints its results;
//! no assertion (the machines are shared).
//!
//! `cargo bench -p tokencache --bench invalidation`

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::RedisServer;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache, TokenResponse};

const ROUNDS: usize = 2000;
const SCOPE: &str = "https://graph.microsoft.com/User.Read";

fn response(oid: &str, n: usize) -> TokenResponse {
    let body = json!({"token_type": "Bearer", "scope": SCOPE, "expires_in": 3600,
        "access_token": format!("at-{n}-{}", "x".repeat(1500)), "refresh_token": format!("rt-{n}"),
        "client_info": sample::client_info(oid, TENANT)});
    TokenResponse::from_json(body.to_string().as_bytes()).unwrap()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let build = || TokenCache::builder().store_url(&server.url()).build();
        let (a, b) = (build().await.unwrap(), build().await.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await; // both subscribed
        let oid = "aaaaaaaa-0000-0000-0000-0000000bench";
        let home = format!("{oid}.{TENANT}");
        let scopes = [SCOPE];
        let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, &scopes);
        let (mut latency_us, mut save_us, mut set_us) = (Vec::new(), Vec::new(), Vec::new());
        let raw = tokencache::store::open(&server.url()).await.unwrap();
        for n in 0..ROUNDS {
            // B holds the partition in L1.
            let _ = b.find_access_token(&Lookup::user(CLIENT_ID, &home, &scopes)).await;
            let seen = b.stats().invalidated;
            let t = Instant::now();
            a.save_token_response(&req, &response(oid, n)).await.unwrap();
            let saved = Instant::now();
            save_us.push(saved.duration_since(t).as_secs_f64() * 1e6);
            while b.stats().invalidated == seen {
                if saved.elapsed() > Duration::from_secs(1) {
                    break; // a lost message shows as a 1 s outlier
                }
                tokio::task::yield_now().await;
            }
            latency_us.push(saved.elapsed().as_secs_f64() * 1e6);
            // The same bytes with a plain SET, for the write-path ratio.
            let bytes = raw.get(&home).await.unwrap().unwrap().bytes;
            let t = Instant::now();
            raw.set("bench:plain", &bytes, Some(Duration::from_secs(60))).await.unwrap();
            set_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        // Strict reads: an L1 hit with and without the digest check, and a bare GET of
        // the same partition, interleaved (side by side in one run).
        let strict = TokenCache::builder()
            .store_url(&server.url())
            .strict_reads(true)
            .build()
            .await
            .unwrap();
        let lookup = Lookup::user(CLIENT_ID, &home, &scopes);
        assert!(strict.find_access_token(&lookup).await.unwrap().is_some());
        assert!(b.find_access_token(&lookup).await.unwrap().is_some());
        let (mut strict_ns, mut lax_ns, mut get_ns) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let hit = b.find_access_token(&lookup).await.unwrap();
            lax_ns.push(t.elapsed().as_secs_f64() * 1e9);
            assert!(hit.is_some());
            let t = Instant::now();
            let hit = strict.find_access_token(&lookup).await.unwrap();
            strict_ns.push(t.elapsed().as_secs_f64() * 1e9);
            assert!(hit.is_some());
            let t = Instant::now();
            let _ = raw.get(&home).await.unwrap();
            get_ns.push(t.elapsed().as_secs_f64() * 1e9);
        }
        let st = strict.stats();
        assert_eq!(st.strict_checks, st.l1_hits, "every strict hit was checked");
        let (sn, ln, gn) = (pct(&mut strict_ns, 0.5), pct(&mut lax_ns, 0.5), pct(&mut get_ns, 0.5));
        println!("strict reads: L1 hit p50 {:.1} µs with the digest check vs {:.2} µs without (+{:.1} µs per hit); a bare GET of the partition p50 {:.1} µs", sn / 1e3, ln / 1e3, (sn - ln) / 1e3, gn / 1e3);
        let (p50, p99) = (pct(&mut latency_us, 0.5), pct(&mut latency_us, 0.99));
        let (s50, w50) = (pct(&mut save_us, 0.5), pct(&mut set_us, 0.5));
        println!("invalidation (A's save returned → B dropped its L1 entry), {ROUNDS} rounds: p50 {p50:.0} µs, p99 {p99:.0} µs");
        println!("write path: optimistic save p50 {s50:.0} µs vs plain SET of the same bytes p50 {w50:.0} µs: {:.2}×", s50 / w50);
        println!("invalidation_p50_us={p50:.0} invalidation_p99_us={p99:.0} save_over_set={:.2} strict_hit_us={:.1} l1_hit_us={:.2} strict_over_get={:.2}", s50 / w50, sn / 1e3, ln / 1e3, sn / gn);
    });
}
