//! `tokencache bench`: L1 and L2 hits measured side by side with their raw baselines
//! in one run (docs/design.md §10-11), so the ratios mean something on a noisy
//! machine: the two sides alternate in short rounds and share every disturbance. On a
//! terminal each phase shows a bar on stderr; piped, the output is its lines only.

use clap::Args;
use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokencache::protect::read_partition;
use tokencache::sample;
use tokencache::store::{self, SharedStore};
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache};

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The L2 store to bench (`redis://…`, `redis+cluster://…`, `redb:///…`); default: an
    /// embedded store in a temporary folder, nothing started.
    #[arg(long, env = "TOKENCACHE_STORE")]
    store: Option<String>,
    /// Rough time budget, in seconds (1 to 18): the L1 phase takes it once, the L2 phase
    /// twice, so the whole run stays under 60 s.
    #[arg(long, default_value_t = 5, value_parser = crate::args::int::<1, 18>)]
    seconds: u64,
}

/// Latencies of one measured operation, in nanoseconds per call.
struct Series(Vec<f64>);

impl Series {
    fn quantile(&mut self, q: f64) -> f64 {
        self.0.sort_by(|a, b| a.total_cmp(b));
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i]
    }
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    crate::block_on(crate::Runtime::CurrentThread, bench(args))
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    let seconds = args.seconds;
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let url = match &args.store {
        Some(u) => u.clone(),
        None => format!("redb://{}", tmp.path().join("bench.redb").display()),
    };
    let store = store::open(&url)
        .await
        .map_err(|e| format!("cannot open {url}: {e}"))?;
    store
        .health()
        .await
        .map_err(|e| format!("store {url} does not answer: {e}"))?;
    let prefix = format!("tcbench:{}:", std::process::id());

    // One realistic ~7 KB user partition, saved through the cache like an app would.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let oid = "00000000-0000-0000-66f3-3332eca7ea81";
    let writer = TokenCache::builder()
        .store(store.clone())
        .key_prefix(&prefix)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut home = String::new();
    for scopes in sample::USER_SCOPES {
        let resp = sample::user_response(oid, sample::TENANT, scopes, now, 3600)
            .map_err(|e| e.to_string())?;
        let req = SaveRequest::new(
            sample::CLIENT_ID,
            SaveFor::User,
            sample::ENVIRONMENT,
            sample::TENANT,
            scopes,
        );
        let saved = writer
            .save_token_response(&req, &resp)
            .await
            .map_err(|e| e.to_string())?;
        home = saved.partition;
    }
    let full_key = format!("{prefix}{home}");
    let blob = store
        .get(&full_key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the saved partition is not in the store")?
        .bytes;
    let scopes: &[&str] = sample::USER_SCOPES[1];
    let lookup = Lookup::user(sample::CLIENT_ID, &home, scopes);
    println!(
        "store: {}  partition: {} bytes  runtime: current-thread",
        store.endpoint(),
        blob.len()
    );
    match writer.two_level().protection() {
        Some(p) => println!(
            "encryption: on (primary key id {}; L2 hits include opening the envelope)",
            p.ring().primary().id()
        ),
        None => println!("encryption: off (no TOKENCACHE_KEYS)"),
    }

    // Phase 1: L1 hit vs a bare HashMap lookup of the same key.
    let phase = crate::progress::Timed::start(
        "phase 1/2: L1 hit vs HashMap get",
        Duration::from_secs(seconds),
    );
    let (mut l1, mut map) = l1_phase(&writer, &lookup, &home, &blob, seconds).await?;
    phase.finish();
    let l1_median = l1.quantile(0.5);
    println!(
        "L1 hit  find_access_token: median {:>8.0} ns  p99 {:>8.0} ns",
        l1_median,
        l1.quantile(0.99)
    );
    println!(
        "        bare HashMap get:  median {:>8.0} ns  p99 {:>8.0} ns",
        map.quantile(0.5),
        map.quantile(0.99)
    );

    // Phase 2: L2 hit (L1 off: get + parse + lookup) vs a raw GET of the same bytes.
    let reader = TokenCache::builder()
        .store(store.clone())
        .key_prefix(&prefix)
        .disable_l1()
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let raw = RawGet::connect(&url, store.clone()).await?;
    let phase = crate::progress::Timed::start(
        &format!("phase 2/2: L2 hit vs raw {} GET", raw.name()),
        Duration::from_secs(seconds * 2),
    );
    let (mut l2, mut base) =
        l2_phase(&reader, &lookup, &raw, &full_key, blob.len(), seconds).await?;
    phase.finish();
    let ratio = l2.quantile(0.5) / base.quantile(0.5);
    println!(
        "L2 hit  find_access_token: median {:>8.0} ns  p99 {:>8.0} ns",
        l2.quantile(0.5),
        l2.quantile(0.99)
    );
    println!(
        "        raw {} GET:    median {:>8.0} ns  p99 {:>8.0} ns",
        raw.name(),
        base.quantile(0.5),
        base.quantile(0.99)
    );
    let _ = store.remove(&full_key).await;
    println!("l1_ns={:.0} l2_over_raw_get={:.2}", l1_median, ratio);
    Ok(())
}

async fn l1_phase(
    cache: &TokenCache,
    lookup: &Lookup<'_>,
    home: &str,
    blob: &[u8],
    seconds: u64,
) -> Result<(Series, Series), String> {
    cache
        .find_access_token(lookup)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the benchmark token is not found")?;
    let protection = cache.two_level().protection();
    let full = cache.two_level().keys().partition_str(home);
    let parsed = Arc::new(read_partition(protection, &full, blob).map_err(|e| e.to_string())?);
    let mut map: HashMap<String, Arc<Partition>> = HashMap::new();
    for i in 0..1000 {
        map.insert(format!("{i:08}.{}", sample::TENANT), parsed.clone());
    }
    map.insert(home.to_string(), parsed);
    const BATCH: u32 = 200;
    let (mut ours, mut bare) = (Series(Vec::new()), Series(Vec::new()));
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(cache.find_access_token(black_box(lookup)).await.ok());
        }
        ours.0.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(map.get(black_box(home)).cloned());
        }
        bare.0.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    Ok((ours, bare))
}

async fn l2_phase(
    cache: &TokenCache,
    lookup: &Lookup<'_>,
    raw: &RawGet,
    full_key: &str,
    size: usize,
    seconds: u64,
) -> Result<(Series, Series), String> {
    cache
        .find_access_token(lookup)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the benchmark token is not found through L2")?;
    let (mut ours, mut base) = (Series(Vec::new()), Series(Vec::new()));
    let end = Instant::now() + Duration::from_secs(seconds * 2);
    while Instant::now() < end {
        for _ in 0..20 {
            let t = Instant::now();
            black_box(
                cache
                    .find_access_token(lookup)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            ours.0.push(t.elapsed().as_nanos() as f64);
        }
        for _ in 0..20 {
            let t = Instant::now();
            let n = raw.get(full_key).await?;
            base.0.push(t.elapsed().as_nanos() as f64);
            if n != size {
                return Err(format!("raw GET returned {n} bytes, expected {size}"));
            }
        }
    }
    if cache.stats().l1_hits > 0 {
        return Err("L1 answered in the L2 phase".into());
    }
    Ok((ours, base))
}

/// The baseline: a raw read of the same bytes on the same kind of connection.
enum RawGet {
    Redis(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    Store(SharedStore),
}

impl RawGet {
    async fn connect(url: &str, store: SharedStore) -> Result<Self, String> {
        let err = |e: redis::RedisError| format!("raw connection to {}: {e}", store.endpoint());
        if let Some(rest) = url
            .strip_prefix("redis+cluster://")
            .map(|r| ("redis", r))
            .or_else(|| url.strip_prefix("rediss+cluster://").map(|r| ("rediss", r)))
        {
            let (scheme, hosts) = rest;
            let nodes: Vec<String> = hosts
                .split(',')
                .map(|h| format!("{scheme}://{h}"))
                .collect();
            let client = redis::cluster::ClusterClient::new(nodes).map_err(err)?;
            return Ok(RawGet::Cluster(
                client.get_async_connection().await.map_err(err)?,
            ));
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            let client = redis::Client::open(url).map_err(err)?;
            return Ok(RawGet::Redis(
                redis::aio::ConnectionManager::new(client)
                    .await
                    .map_err(err)?,
            ));
        }
        Ok(RawGet::Store(store))
    }

    fn name(&self) -> &'static str {
        match self {
            RawGet::Redis(_) => "Redis",
            RawGet::Cluster(_) => "Cluster",
            RawGet::Store(_) => "store",
        }
    }

    async fn get(&self, key: &str) -> Result<usize, String> {
        let bytes: Option<Vec<u8>> = match self {
            RawGet::Redis(c) => {
                let mut c = c.clone();
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .map_err(|e| e.to_string())?
            }
            RawGet::Cluster(c) => {
                let mut c = c.clone();
                redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut c)
                    .await
                    .map_err(|e| e.to_string())?
            }
            RawGet::Store(s) => s
                .get(key)
                .await
                .map_err(|e| e.to_string())?
                .map(|v| v.bytes),
        };
        Ok(black_box(bytes).map_or(0, |b| b.len()))
    }
}
