//! `tokencache bench`: L1 and L2 hits measured side by side with their raw baselines
//! in one run (docs/design.md §10-11), so the ratios mean something on a noisy
//! machine: the two sides alternate in short rounds and share every disturbance. On a
//! terminal each phase shows a bar on stderr; piped, the output is its lines only.
//!
//! Phase 1 (L1): a user-partition hit next to a bare `HashMap` get; an OBO hit (which
//! includes the SHA-256 of the ~1.5 KB incoming token, the key) next to that hash
//! alone; hits per second on two threads next to one. Phase 2 (L2, L1 off): a hit on
//! the store given next to a raw `GET` of the same bytes; the same on `memory://`
//! next to a `serde_json::Value` parse of the blob (the CPU an L2 hit adds); the same
//! on an embedded store next to its own get.
//!
//! Its keys go under `tcbench:<pid>:` in the store given; everything under that prefix
//! is removed at the end, also after an error or Ctrl-C, and is written with a TTL of
//! at most a minute plus [`crate::capped::MARGIN`], so that even a killed run leaves
//! nothing for long.

use clap::Args;
use std::collections::HashMap;
use std::hint::black_box;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use tokencache::protect::read_partition;
use tokencache::sample;
use tokencache::store::SharedStore;
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache};

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The L2 store to bench (`redis://…`, `redis+cluster://…`, `redb:///…`); default: an
    /// embedded store in a temporary folder, nothing started.
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: Option<String>,
    /// Rough time budget, in seconds (1 to 18): the L1 phase takes it once, the L2 phase
    /// twice, so the whole run stays under 60 s.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = crate::args::int::<1, 18>)]
    seconds: u64,
}

/// Latencies of one measured operation, in nanoseconds per call.
struct Series(Vec<f64>);

impl Series {
    fn new() -> Self {
        Series(Vec::new())
    }

    fn quantile(&mut self, q: f64) -> f64 {
        self.0.sort_by(|a, b| a.total_cmp(b));
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[i]
    }

    fn median(&mut self) -> f64 {
        self.quantile(0.5)
    }
}

pub(crate) fn run(args: BenchArgs) -> ExitCode {
    crate::cancel::install();
    crate::block_on(crate::Runtime::CurrentThread, bench(args))
}

/// The error a phase returns when the run is asked to stop (Ctrl-C, a closed stdout).
const INTERRUPTED: &str = "interrupted";

/// `Err(INTERRUPTED)` once the run is asked to stop.
fn go_on() -> Result<(), String> {
    if crate::cancel::requested() {
        Err(INTERRUPTED.into())
    } else {
        Ok(())
    }
}

/// The longest a run takes (its phases are bounded by `--seconds`, at most 18).
const RUN: Duration = Duration::from_secs(60);

const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";
/// The second user of the two-thread run (each thread reads its own partition).
const OID_2: &str = "00000000-0000-0000-66f3-3332eca7ea82";
const OBO_SCOPES: &[&str] = &["api://downstream/.default"];

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Saves one realistic ~7 KB user partition through `cache`, as an app would; returns
/// its home account id.
async fn seed_user(cache: &TokenCache, oid: &str) -> Result<String, String> {
    let mut home = String::new();
    for scopes in sample::USER_SCOPES {
        let resp = sample::user_response(oid, sample::TENANT, scopes, unix_now(), 3600)
            .map_err(|e| e.to_string())?;
        let req = SaveRequest::new(
            sample::CLIENT_ID,
            SaveFor::User,
            sample::ENVIRONMENT,
            sample::TENANT,
            scopes,
        );
        let saved = cache
            .save_token_response(&req, &resp)
            .await
            .map_err(|e| e.to_string())?;
        home = saved.partition;
    }
    Ok(home)
}

/// Opens the store (never naming its URL, which may hold a password) and caps the TTL
/// of everything written to it at the run's length plus the margin.
async fn open_store(url: &str) -> Result<SharedStore, String> {
    let store = crate::stores::open(Some(url), crate::stores::Create::IfMissing).await?;
    Ok(Arc::new(crate::capped::CappedStore::new(store, RUN)))
}

/// Removes every key under the run's prefix.
async fn remove_run(store: &SharedStore, prefix: &str) -> Result<u64, String> {
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, page) = store
            .scan(prefix, cursor, 500)
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut removed = 0;
    for chunk in keys.chunks(500) {
        removed += store.remove_many(chunk).await.map_err(|e| e.to_string())?;
    }
    Ok(removed)
}

async fn cache_over(store: &SharedStore, prefix: &str, l1: bool) -> Result<TokenCache, String> {
    let mut b = TokenCache::builder()
        .store(store.clone())
        .key_prefix(prefix)
        .probe_l2_at_start(false);
    if !l1 {
        b = b.disable_l1();
    }
    b.build().await.map_err(|e| e.to_string())
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary folder: {e}"))?;
    let embedded_url = format!("redb://{}", tmp.path().join("bench.redb").display());
    let url = args.store.clone().unwrap_or_else(|| embedded_url.clone());
    let store = open_store(&url).await?;
    let prefix = format!("tcbench:{}:", std::process::id());
    crate::cancel::leaving(Some(format!(
        "keys under prefix {prefix:?} in {} (they expire within {} s; `tokencache purge --prefix {prefix} --force` removes them now)",
        store.endpoint(),
        (RUN + crate::capped::MARGIN).as_secs()
    )));
    let result = measure(&args, &url, &embedded_url, &store, &prefix).await;
    // Whatever happened, the run's keys go (on Redis a failed run would leave them).
    let removed = remove_run(&store, &prefix).await;
    crate::cancel::leaving(None);
    match (result, removed) {
        (Err(e), _) if e == INTERRUPTED => {
            if crate::cancel::signalled() {
                errln!("interrupted: the run's keys under {prefix:?} are removed");
            }
            Ok(())
        }
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(format!(
            "cannot remove the run's keys under {prefix:?}: {e}"
        )),
        (Ok(()), Ok(_)) => Ok(()),
    }
}

/// The two phases and the report.
async fn measure(
    args: &BenchArgs,
    url: &str,
    embedded_url: &str,
    store: &SharedStore,
    prefix: &str,
) -> Result<(), String> {
    let seconds = args.seconds;
    let budget = Duration::from_secs(seconds);
    let prefix = prefix.to_string();
    let url = url.to_string();

    let writer = cache_over(store, &prefix, true).await?;
    let home = seed_user(&writer, OID).await?;
    let full_key = format!("{prefix}{home}");
    let blob = store
        .get(&full_key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the saved partition is not in the store")?
        .bytes;
    let scopes: &[&str] = sample::USER_SCOPES[1];
    let lookup = Lookup::user(sample::CLIENT_ID, &home, scopes);
    outln!(
        "store: {}  partition: {} bytes  runtime: current-thread",
        store.endpoint(),
        blob.len()
    );
    match writer.two_level().protection() {
        Some(p) => outln!(
            "encryption: on (primary key id {}; L2 hits include opening the envelope)",
            p.ring().primary().id()
        ),
        None => outln!("encryption: off (no TOKENCACHE_KEYS)"),
    }

    // Phase 1: L1 hits (user, OBO, two threads), each next to its baseline.
    let phase =
        crate::progress::Timed::start("phase 1/2: L1 hit vs HashMap get; OBO; 2 threads", budget);
    let (mut l1, mut map) = l1_phase(&writer, &lookup, &home, &blob, budget * 4 / 10).await?;
    let assertion = sample::incoming_assertion(OID, sample::TENANT, unix_now(), unix_now() + 3600);
    let (mut obo, mut hash) = obo_phase(&writer, &assertion, budget * 3 / 10).await?;
    let home_2 = seed_user(&writer, OID_2).await?;
    let scaling = scaling_phase(&writer, [&home, &home_2], scopes, budget * 3 / 10)?;
    phase.finish();
    go_on()?;
    let l1_median = l1.median();
    outln!(
        "L1 hit  find_access_token: median {:>8.0} ns  p99 {:>8.0} ns",
        l1_median,
        l1.quantile(0.99)
    );
    outln!(
        "        bare HashMap get:  median {:>8.0} ns  p99 {:>8.0} ns",
        map.median(),
        map.quantile(0.99)
    );
    let obo_median = obo.median();
    outln!(
        "L1 hit  OBO ({} B assertion): median {:>8.0} ns  p99 {:>8.0} ns",
        assertion.len(),
        obo_median,
        obo.quantile(0.99)
    );
    outln!(
        "        its key alone (SHA-256 + base64url): median {:>8.0} ns",
        hash.median()
    );
    outln!(
        "L1 hits/s  1 thread: {:>10.0}  2 threads: {:>10.0}  ({:.2}×; {} cores)",
        scaling.one,
        scaling.two,
        scaling.two / scaling.one,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Phase 2: L2 hits (L1 off: get + decode + lookup) vs raw reads of the same bytes.
    let is_embedded = url.starts_with("redb://");
    let phase = crate::progress::Timed::start(
        "phase 2/2: L2 hit vs raw GET; memory:// vs Value parse; embedded",
        budget * 2,
    );
    let main_share = if is_embedded { 3 } else { 2 };
    let reader = cache_over(store, &prefix, false).await?;
    let raw = RawGet::connect(&url, store.clone()).await?;
    let (mut l2, mut base) = l2_phase(
        &reader,
        &lookup,
        &raw,
        &full_key,
        blob.len(),
        budget * main_share / 4,
    )
    .await?;
    let cpu = cpu_phase(&prefix, budget / 2).await?;
    go_on()?;
    let embedded = if is_embedded {
        None
    } else {
        let store = open_store(embedded_url).await?;
        let cache = cache_over(&store, &prefix, true).await?;
        let home = seed_user(&cache, OID).await?;
        let key = format!("{prefix}{home}");
        let size = store
            .get(&key)
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |v| v.bytes.len());
        let reader = cache_over(&store, &prefix, false).await?;
        let raw = RawGet::Store(store.clone());
        let lookup = Lookup::user(sample::CLIENT_ID, &home, scopes);
        Some(l2_phase(&reader, &lookup, &raw, &key, size, budget / 2).await?)
    };
    phase.finish();
    go_on()?;
    let ratio = l2.median() / base.median();
    outln!(
        "L2 hit  find_access_token: median {:>8.0} ns  p99 {:>8.0} ns",
        l2.median(),
        l2.quantile(0.99)
    );
    outln!(
        "        raw {} GET:    median {:>8.0} ns  p99 {:>8.0} ns",
        raw.name(),
        base.median(),
        base.quantile(0.99)
    );
    let CpuRun {
        mut hit,
        mut get,
        mut value,
    } = cpu;
    let added = (hit.median() - get.median()).max(0.0);
    let cpu_ratio = added / value.median();
    outln!(
        "L2 hit  on memory://: median {:>8.0} ns  raw get {:>8.0} ns  added {:>8.0} ns",
        hit.median(),
        get.median(),
        added
    );
    outln!(
        "        serde_json::Value parse of the blob: median {:>8.0} ns",
        value.median()
    );
    let embedded_ratio = match embedded {
        Some((mut hit, mut get)) => {
            outln!(
                "L2 hit  embedded: median {:>8.0} ns  raw store get {:>8.0} ns",
                hit.median(),
                get.median()
            );
            hit.median() / get.median()
        }
        None => ratio, // the store benched above is the embedded one
    };
    outln!(
        "l1_ns={:.0} l1_obo_ns={:.0} l1_scaling={:.2} l2_cpu_over_value_parse={:.2} l2_over_raw_get={:.2} l2_embedded_over_raw_get={:.2}",
        l1_median,
        obo_median,
        scaling.two / scaling.one,
        cpu_ratio,
        ratio,
        embedded_ratio
    );
    Ok(())
}

/// Batches of calls per sample in the L1 phases (a hit is too short to time alone).
const BATCH: u32 = 200;

async fn l1_phase(
    cache: &TokenCache,
    lookup: &Lookup<'_>,
    home: &str,
    blob: &[u8],
    length: Duration,
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
    let (mut ours, mut bare) = (Series::new(), Series::new());
    let end = Instant::now() + length;
    while Instant::now() < end && !crate::cancel::requested() {
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

/// An OBO hit (the incoming token hashed into the partition key, then L1) next to
/// computing that key alone.
async fn obo_phase(
    cache: &TokenCache,
    assertion: &str,
    length: Duration,
) -> Result<(Series, Series), String> {
    let partition = sample::save_obo(
        cache,
        OID,
        sample::TENANT,
        assertion,
        OBO_SCOPES,
        unix_now(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let lookup = Lookup::obo(sample::CLIENT_ID, assertion, OBO_SCOPES);
    cache
        .find_access_token(&lookup)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the benchmark OBO token is not found")?;
    let (mut ours, mut hash) = (Series::new(), Series::new());
    let end = Instant::now() + length;
    while Instant::now() < end && !crate::cancel::requested() {
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(cache.find_access_token(black_box(&lookup)).await.ok());
        }
        ours.0.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        let t = Instant::now();
        for _ in 0..BATCH {
            black_box(tokencache::partition::assertion_hash(black_box(assertion)));
        }
        hash.0.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    go_on()?;
    if cache.stats().l1_hits == 0 {
        return Err("the OBO lookups missed L1".into());
    }
    let _ = cache.two_level().remove(&partition).await;
    Ok((ours, hash))
}

/// L1 hits per second on one thread and on two at once.
struct Scaling {
    one: f64,
    two: f64,
}

/// Rounds of one thread and of two threads alternate; each thread reads its own
/// user's partition (two users: the common case of many users on a replica), on a
/// runtime of its own, and counts hits for the round's length.
fn scaling_phase(
    cache: &TokenCache,
    homes: [&str; 2],
    scopes: &[&str],
    length: Duration,
) -> Result<Scaling, String> {
    const ROUND: Duration = Duration::from_millis(50);
    let rounds = (length.as_millis() / (2 * ROUND.as_millis())).max(1) as u32;
    let (mut one, mut two) = ((0u64, Duration::ZERO), (0u64, Duration::ZERO));
    for _ in 0..rounds {
        if crate::cancel::requested() {
            break;
        }
        for threads in [1usize, 2] {
            let barrier = Barrier::new(threads);
            let counted: Vec<Result<(u64, Duration), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = homes[..threads]
                    .iter()
                    .map(|home| {
                        let (cache, barrier) = (cache.clone(), &barrier);
                        s.spawn(move || hits_for(&cache, home, scopes, barrier, ROUND))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a bench thread panicked".into()))
                    })
                    .collect()
            });
            for c in counted {
                let (n, took) = c?;
                let slot = if threads == 1 { &mut one } else { &mut two };
                slot.0 += n;
                slot.1 += took;
            }
        }
    }
    // Per thread: hits over its own time; two threads run at once, so their rate is
    // twice the mean rate of one of them.
    let rate = |(n, t): (u64, Duration)| n as f64 / t.as_secs_f64().max(1e-9);
    Ok(Scaling {
        one: rate(one),
        two: 2.0 * rate(two),
    })
}

/// One thread's round: L1 hits of `home` for `length`, after every thread is ready.
fn hits_for(
    cache: &TokenCache,
    home: &str,
    scopes: &[&str],
    barrier: &Barrier,
    length: Duration,
) -> Result<(u64, Duration), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let lookup = Lookup::user(sample::CLIENT_ID, home, scopes);
    rt.block_on(async {
        cache
            .find_access_token(&lookup)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the benchmark token is not found")?;
        barrier.wait();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < length && !crate::cancel::requested() {
            for _ in 0..BATCH {
                black_box(cache.find_access_token(black_box(&lookup)).await.ok());
            }
            n += u64::from(BATCH);
        }
        Ok((n, start.elapsed()))
    })
}

async fn l2_phase(
    cache: &TokenCache,
    lookup: &Lookup<'_>,
    raw: &RawGet,
    full_key: &str,
    size: usize,
    length: Duration,
) -> Result<(Series, Series), String> {
    cache
        .find_access_token(lookup)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the benchmark token is not found through L2")?;
    let (mut ours, mut base) = (Series::new(), Series::new());
    let end = Instant::now() + length;
    while Instant::now() < end && !crate::cancel::requested() {
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

/// The CPU an L2 hit adds: on `memory://` (no I/O), an L2 hit next to the store's own
/// get of the same bytes and to a `serde_json::Value` parse of them.
struct CpuRun {
    hit: Series,
    get: Series,
    value: Series,
}

async fn cpu_phase(prefix: &str, length: Duration) -> Result<CpuRun, String> {
    let store = open_store("memory://").await?;
    let writer = cache_over(&store, prefix, true).await?;
    let home = seed_user(&writer, OID).await?;
    let key = format!("{prefix}{home}");
    let size = store
        .get(&key)
        .await
        .map_err(|e| e.to_string())?
        .map_or(0, |v| v.bytes.len());
    let reader = cache_over(&store, prefix, false).await?;
    let lookup = Lookup::user(sample::CLIENT_ID, &home, sample::USER_SCOPES[1]);
    let raw = RawGet::Store(store.clone());
    let (hit, get) = l2_phase(&reader, &lookup, &raw, &key, size, length * 2 / 3).await?;
    // The plaintext MSAL JSON of the same partition (what a Value parse would see).
    let stored = store
        .get(&key)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the saved partition is not in the memory store")?
        .bytes;
    let protection = writer.two_level().protection();
    let plain = read_partition(protection, &key, &stored)
        .map_err(|e| e.to_string())?
        .to_vec();
    serde_json::from_slice::<serde_json::Value>(&plain)
        .map_err(|e| format!("the blob is not JSON: {e}"))?;
    let mut value = Series::new();
    let end = Instant::now() + length / 3;
    while Instant::now() < end && !crate::cancel::requested() {
        for _ in 0..20 {
            let t = Instant::now();
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&plain)).ok());
            value.0.push(t.elapsed().as_nanos() as f64);
        }
    }
    Ok(CpuRun { hit, get, value })
}
/// The baseline: a raw read of the same bytes on the same kind of connection (a Redis
/// connection of its own, made as the store makes them: TLS options, client
/// certificate, Sentinel, Cluster and password all apply).
enum RawGet {
    Redis(Box<tokencache::store::RedisStore>),
    Store(SharedStore),
}

impl RawGet {
    async fn connect(url: &str, store: SharedStore) -> Result<Self, String> {
        match tokencache::store::StoreUrl::parse(url) {
            Ok(parsed @ tokencache::store::StoreUrl::Redis { .. }) => {
                let redis = parsed
                    .open_redis()
                    .map_err(|e| format!("raw connection to {}: {e}", store.endpoint()))?;
                Ok(RawGet::Redis(Box::new(redis)))
            }
            _ => Ok(RawGet::Store(store)),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            RawGet::Redis(r) if r.is_cluster() => "Cluster",
            RawGet::Redis(_) => "Redis",
            RawGet::Store(_) => "store",
        }
    }

    async fn get(&self, key: &str) -> Result<usize, String> {
        let bytes: Option<Vec<u8>> = match self {
            RawGet::Redis(r) => r.raw_get(key).await.map_err(|e| e.to_string())?,
            RawGet::Store(s) => s
                .get(key)
                .await
                .map_err(|e| e.to_string())?
                .map(|v| v.bytes),
        };
        Ok(black_box(bytes).map_or(0, |b| b.len()))
    }
}
