//! `tokencache load`: drives the cache the way a web app would (token lookups, saves
//! after sign-ins and refreshes, sign-outs) from several tasks for a bounded time,
//! on one or several replicas, optionally through a chaos store, checks every read
//! against the history of acknowledged saves and sign-outs, then checks that L2
//! caught up.
//!
//! `--replicas N` builds N `TokenCache` instances in this process, each on its own
//! store handle (its own connections to Redis, its own subscription to the
//! backplane; memory and embedded stores are one store in a process, so the replicas
//! share it), on one key prefix. Every operation picks a replica and a user at random,
//! so any replica reads what another wrote. A probe task measures how long a replica
//! takes to drop its L1 copy after another's save (`invalidation.rs`). The checks are
//! in `history.rs`; the run's fake tokens carry the id of their save (`tokens.rs`).
//!
//! Its keys go under `--prefix` (default `tcload:<pid>:`), its users belong to a fake
//! tenant, and the keys it can have written (each fake user's partition, link set and
//! revocation stamp; nothing else under the prefix) are removed at the end unless
//! `--keep`, also after an error or Ctrl-C (which stops the traffic at once and skips
//! the checks; a second Ctrl-C exits without removing and prints the prefix). Every
//! key it writes lives at most the run's length (`--duration` + `--settle`) plus
//! [`crate::capped::MARGIN`], kept or not, so that even a killed run leaves nothing for
//! long. A store that does not answer fails the command at once.
//!
//! The final report line (the command exits 1 after it when any anomaly below is
//! counted: `caller_errors`, `lost`, `stale_reads`, `lost_updates`,
//! `served_after_signout`):
//! `ops=<n> caller_errors=<n> l2_errors=<n> queued=<n> recovered=<n> lost=<n>
//! replicas=<n> stale_reads=<n> lost_updates=<n> served_after_signout=<n>
//! invalidation_p50_us=<n> invalidation_p99_us=<n>`, where
//! - `caller_errors` counts errors the cache API returned (L2 failures must never be
//!   among them);
//! - `l2_errors`, `queued`, `recovered` are the replicas' counters, summed;
//! - `lost` counts users whose L2 state, once L2 is healthy again and the recovery
//!   queues are drained, is not what the history allows (a saved token missing or
//!   older, or a token acquired before the user's sign-out still there);
//! - `stale_reads`: reads that began more than `--stale-bound-ms` after a save of
//!   their (user, scope) was acknowledged, by any replica, and returned an older
//!   token or nothing (that no sign-out or L2 failure explains);
//! - `lost_updates`: (user, scope) pairs whose latest stored token is not in L2 at the
//!   end though the user did not sign out afterwards;
//! - `served_after_signout`: reads that began more than the bound after a sign-out of
//!   their user was acknowledged and returned a token acquired before it;
//! - `invalidation_p50_us`, `invalidation_p99_us`: from one replica's save returning
//!   to another's L1 dropping that partition (0 with one replica or no backplane).

use clap::Args;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokencache::partition::KeySpace;
use tokencache::protect::read_partition;
use tokencache::sample::{CLIENT_ID, ENVIRONMENT};
use tokencache::schema::AccessTokenQuery;
use tokencache::store::chaos::{ChaosConfig, ChaosStore};
use tokencache::store::SharedStore;
use tokencache::twolevel::{BackplaneOptions, BackplaneStatus};
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

use crate::capped::CappedStore;
use history::{Anomaly, Got, History, Read, Recorder, SaveOutcome};

mod history;
mod invalidation;
mod tokens;

/// Arguments of `tokencache load`.
#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The L2 store URL (redis://…, redb:///path, memory://).
    #[arg(long, env = "TOKENCACHE_STORE", hide_env_values = true)]
    store: String,
    /// The key prefix of every key the run writes (default: `tcload:<pid>:`, unique per run).
    #[arg(long, env = "TOKENCACHE_PREFIX", hide_env_values = true)]
    prefix: Option<String>,
    /// Leave the run's keys in the store, until their TTL ends (the run's length plus
    /// 10 minutes; default: the keys of its fake users are removed at the end; other
    /// keys under the prefix are never touched).
    #[arg(long)]
    keep: bool,
    /// Distinct users (1 to 1,000,000).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = crate::args::count::<1, 1_000_000>)]
    users: usize,
    /// How long to run, in seconds (more than 0, at most a week).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::args::run_seconds)]
    duration: f64,
    /// Share of operations that save a token (the rest are lookups and sign-outs).
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true, value_parser = crate::args::share)]
    writers_share: f64,
    /// Share of operations that sign a user out.
    #[arg(long, default_value_t = 0.02, allow_negative_numbers = true, value_parser = crate::args::share)]
    signout_share: f64,
    /// Concurrent tasks (1 to 256).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = crate::args::count::<1, 256>)]
    tasks: usize,
    /// Fault injection in front of the store, e.g. `p=0.2,kind=timeout,delay_ms=2`
    /// (keys: p, fail=always|never, kind, delay_ms, seed); lifted at the end.
    #[arg(long)]
    chaos: Option<String>,
    /// Bound of each L2 call, in milliseconds (1 to 60,000).
    #[arg(long, default_value_t = 250, allow_negative_numbers = true, value_parser = crate::args::int::<1, 60_000>)]
    l2_timeout_ms: u64,
    /// Longest wait for L2 to catch up at the end, in seconds (0 to 3,600).
    #[arg(long, default_value_t = 15.0, allow_negative_numbers = true, value_parser = crate::args::wait_seconds)]
    settle: f64,
    /// `TokenCache` instances in this process, each with its own store handle (1 to 64).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = crate::args::count::<1, 64>)]
    replicas: usize,
    /// How long after a save or sign-out is acknowledged every replica must see it,
    /// in milliseconds (0 to 60,000): a read that begins later and returns older data
    /// is counted.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true, value_parser = crate::args::int::<0, 60_000>)]
    stale_bound_ms: u64,
    /// Builds the replicas without the backplane, to show the checker catching the
    /// stale reads that follow (for tests and demonstrations).
    #[arg(long, hide = true)]
    no_backplane: bool,
}

/// The op mix: how many users, and the shares of saves and sign-outs.
#[derive(Clone, Copy)]
struct Mix {
    users: usize,
    writers: f64,
    signouts: f64,
}

/// Runs the load and prints its report line; exits 1 when the checks counted any
/// anomaly (a broken promise is a failure, not a statistic), 2 when it could not run.
pub(crate) fn run(args: LoadArgs) -> ExitCode {
    let anomalies = std::sync::Arc::new(AtomicU64::new(0));
    let found = anomalies.clone();
    crate::cancel::install();
    let code = crate::block_on(crate::Runtime::MultiThread, async move {
        if let Some(report) = load(args).await? {
            outln!("{}", report.line);
            found.store(report.anomalies, Ordering::Relaxed);
        }
        Ok(())
    });
    let n = anomalies.load(Ordering::Relaxed);
    if code == ExitCode::SUCCESS && n > 0 {
        eprintln!("error: the run broke {n} promise(s): see the report line (and the warnings above for each)");
        return ExitCode::from(1);
    }
    code
}

/// What a run found: the report line, and how many anomalies it counts.
struct Report {
    line: String,
    anomalies: u64,
}

/// The tenant of the run's fake users: not a real directory's id.
const TENANT: &str = "00000000-10ad-4000-8000-000000000000";

fn home(i: usize) -> (String, String) {
    let oid = format!("{i:08}-0000-4000-8000-00000000load");
    let home = format!("{oid}.{TENANT}");
    (oid, home)
}

/// xorshift64: a uniform number in [0, 1).
fn next(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform index below `n` (`n` > 0).
fn pick(state: &mut u64, n: usize) -> usize {
    ((next(state) * n as f64) as usize).min(n - 1)
}

/// Counters the traffic tasks share.
#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    caller_errors: AtomicU64,
    stale_reads: AtomicU64,
    served_after_signout: AtomicU64,
}

/// Whether the store of `url` lives in this process (memory, embedded; the default
/// is embedded).
fn in_process(url: &str) -> bool {
    let u = url.trim();
    u.is_empty() || u.starts_with("memory:") || u.starts_with("redb:")
}

/// Opens the replicas' stores: one handle each for Redis (its own connections), one
/// shared handle for stores that live in this process (a second `memory://` would be
/// another, empty store; an embedded file is shared by the library anyway).
/// Every handle caps the TTL of what it writes at `run` plus the margin.
async fn open_stores(url: &str, n: usize, run: Duration) -> Result<Vec<SharedStore>, String> {
    let in_process = in_process(url);
    let capped = |s: SharedStore| -> SharedStore { Arc::new(CappedStore::new(s, run)) };
    // Fail now, not after duration + settle.
    let first = capped(crate::stores::open(Some(url), crate::stores::Create::IfMissing).await?);
    let mut stores = vec![first.clone()];
    for _ in 1..n {
        stores.push(if in_process {
            first.clone()
        } else {
            capped(
                tokencache::store::open(url)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        });
    }
    Ok(stores)
}

/// Runs the traffic and the checks, then removes the run's keys (unless `--keep`),
/// also after an error or an interruption; the report, or `None` when interrupted.
async fn load(args: LoadArgs) -> Result<Option<Report>, String> {
    // Each number is range-checked by clap (crate::args); only the sum is left.
    if args.writers_share + args.signout_share > 1.0 {
        return Err("--writers-share plus --signout-share must be between 0 and 1".into());
    }
    let chaos_config = match &args.chaos {
        Some(spec) => ChaosConfig::parse(spec)?,
        None => ChaosConfig::default(),
    };
    // The longest the run can take: traffic, settling, checks (a margin is added).
    let run = Duration::from_secs_f64(args.duration + args.settle) + Duration::from_secs(60);
    let stores = open_stores(&args.store, args.replicas, run).await?;
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("tcload:{}:", std::process::id()));
    crate::cancel::leaving(Some(format!(
        "the run's keys under prefix {prefix:?} in {} (they expire within {} s; `tokencache purge --prefix {prefix} --force` removes them now)",
        stores[0].endpoint(),
        (run + crate::capped::MARGIN).as_secs()
    )));
    let keys = KeySpace::new(prefix.clone());
    let result = traffic_and_checks(&args, chaos_config, &stores, &prefix).await;
    // Removed through a handle of its own (no fault injection, no replica's state).
    let cleanup = if args.keep {
        outln!(
            "kept the run's keys under prefix {prefix:?} (--keep; they expire within {} s)",
            (run + crate::capped::MARGIN).as_secs()
        );
        Ok(())
    } else {
        let fresh = if in_process(&args.store) {
            Ok(stores[0].clone())
        } else {
            tokencache::store::open(&args.store)
                .await
                .map_err(|e| format!("cannot open L2 to remove the run's keys: {e}"))
        };
        // The users and the probe user.
        match fresh {
            Ok(fresh) => remove_own(&fresh, &keys, args.users + 1)
                .await
                .map(|removed| {
                    outln!("removed the run's {removed} keys under prefix {prefix:?}");
                }),
            Err(e) => Err(e),
        }
    };
    crate::cancel::leaving(None);
    match (result, cleanup) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
        (Ok(None), Ok(())) => {
            if crate::cancel::signalled() {
                errln!("interrupted: the traffic stopped; no report");
            }
            Ok(None)
        }
        (Ok(report), Ok(())) => Ok(report),
    }
}

/// The traffic on every replica, then (unless interrupted) L2's catching up and the
/// checks; the report line, or `None` when interrupted.
async fn traffic_and_checks(
    args: &LoadArgs,
    chaos_config: ChaosConfig,
    stores: &[SharedStore],
    prefix: &str,
) -> Result<Option<Report>, String> {
    let mut chaos = Vec::with_capacity(args.replicas);
    let mut replicas = Vec::with_capacity(args.replicas);
    for store in stores {
        let c = Arc::new(ChaosStore::new(store.clone(), chaos_config.clone()));
        let mut builder = TokenCache::builder()
            .store(c.clone() as SharedStore)
            .key_prefix(prefix)
            .probe_l2_at_start(false)
            .l2_timeout(Duration::from_millis(args.l2_timeout_ms));
        if args.no_backplane {
            builder = builder.backplane(BackplaneOptions {
                enabled: false,
                ..BackplaneOptions::default()
            });
        }
        replicas.push(builder.build().await.map_err(|e| e.to_string())?);
        chaos.push(c);
    }
    if replicas.len() > 1 && replicas.iter().all(|r| r.two_level().has_backplane()) {
        // Every replica subscribed before the traffic (a message sent before that is
        // missed, which the checks would count against the backplane): a replica
        // publishes its first heartbeat once its subscription is in place.
        let until = Instant::now() + Duration::from_secs(5);
        // A replica whose subscription is refused (an ACL user without the channel)
        // is settled too: it bypasses L1 and reads L2.
        let subscribed = |r: &TokenCache| {
            let two = r.two_level();
            match two.backplane_status() {
                BackplaneStatus::Refused(_) => true,
                _ => two.stats().published >= 2 && !two.l1_bypassed(),
            }
        };
        while !replicas.iter().all(subscribed) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let bound = Duration::from_millis(args.stale_bound_ms);
    let recorder = Arc::new(Recorder::new(History::new(args.users, bound)));
    let counts = Arc::new(Counts::default());
    let length = Duration::from_secs_f64(args.duration);
    let deadline = Instant::now() + length;
    let phase = crate::progress::Timed::start(
        &format!(
            "traffic, {} users, {} tasks, {} replica{}",
            args.users,
            args.tasks,
            args.replicas,
            if args.replicas == 1 { "" } else { "s" }
        ),
        length,
    );
    // The probe user is one past the run's users (removed with them at the end).
    let (probe_oid, _) = home(args.users);
    let probe = tokio::spawn(invalidation::probe(
        replicas.clone(),
        probe_oid,
        TENANT,
        deadline,
    ));
    let mix = Mix {
        users: args.users,
        writers: args.writers_share,
        signouts: args.signout_share,
    };
    let mut tasks = Vec::with_capacity(args.tasks);
    for t in 0..args.tasks {
        let (replicas, recorder, counts) = (replicas.clone(), recorder.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ ((t as u64 + 1) * 0x9E37_79B9);
            while Instant::now() < deadline && !crate::cancel::requested() {
                let cache = &replicas[pick(&mut rng, replicas.len())];
                let ok = one_op(cache, &recorder, &counts, mix, &mut rng).await;
                if !ok {
                    counts.caller_errors.fetch_add(1, Ordering::Relaxed);
                }
                counts.ops.fetch_add(1, Ordering::Relaxed);
                // Every op: an in-process store never makes a task wait, and a task
                // that keeps its worker delays the replicas' listeners (which the
                // checks would count as late invalidations).
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("a load task failed: {e}"))?;
    }
    let mut latencies = probe
        .await
        .map_err(|e| format!("the invalidation probe failed: {e}"))?;
    phase.finish();
    if crate::cancel::requested() {
        return Ok(None);
    }

    // L2 is healthy again: give it time to catch up.
    for c in &chaos {
        c.fail_never();
        c.set_delay(Duration::ZERO);
    }
    let settle_until = Instant::now() + Duration::from_secs_f64(args.settle);
    let bar = crate::progress::spinner("L2 catching up (recovery queues)");
    for r in &replicas {
        let two = r.two_level();
        while two.is_degraded() && Instant::now() < settle_until && !crate::cancel::requested() {
            if !two.recover_now().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    bar.finish_and_clear();

    // What L2 holds, read through a handle of its own, against the history.
    let fresh = if in_process(&args.store) {
        stores[0].clone()
    } else {
        tokencache::store::open(&args.store)
            .await
            .map_err(|e| format!("cannot open L2 to check it: {e}"))?
    };
    let two = replicas[0].two_level();
    let history = recorder.with(|h, _| std::mem::replace(h, History::new(0, bound)));
    let (mut lost, mut lost_updates) = (0u64, 0u64);
    let bar = crate::progress::bar("checking L2 against the history", args.users as u64);
    for u in 0..args.users {
        if crate::cancel::requested() {
            return Ok(None);
        }
        bar.inc(1);
        if !history.saved_any(u) {
            continue;
        }
        let (_, home) = home(u);
        let key = two.keys().partition_str(&home);
        let value = fresh
            .get(&key)
            .await
            .map_err(|e| format!("cannot read L2 to check it: {e}"))?;
        let partition = value.and_then(|v| read_partition(two.protection(), &key, &v.bytes).ok());
        let mut wrong = false;
        for s in 0..tokens::SCOPES {
            let found = found_in(partition.as_ref(), &home, s);
            if history.lost_update(u, s, found) {
                tracing::warn!("lost update: {}", history.explain_lost(u, s, found));
                lost_updates += 1;
                wrong = true;
            }
            if history.resurrected(u, found) {
                tracing::warn!(
                    "acquired before a sign-out, still in L2: {}",
                    history.explain_lost(u, s, found)
                );
                wrong = true;
            }
        }
        if wrong {
            lost += 1;
        }
    }
    bar.finish_and_clear();
    let (mut l2_errors, mut queued, mut recovered) = (0, 0, 0);
    for r in &replicas {
        let s = r.stats();
        l2_errors += s.l2_errors;
        queued += s.queued;
        recovered += s.recovered;
    }
    let p50 = invalidation::quantile(&mut latencies, 0.5);
    let p99 = invalidation::quantile(&mut latencies, 0.99);
    let caller_errors = counts.caller_errors.load(Ordering::Relaxed);
    let stale_reads = counts.stale_reads.load(Ordering::Relaxed);
    let served_after_signout = counts.served_after_signout.load(Ordering::Relaxed);
    Ok(Some(Report {
        line: format!(
            "ops={} caller_errors={caller_errors} l2_errors={l2_errors} queued={queued} recovered={recovered} lost={lost} \
             replicas={} stale_reads={stale_reads} lost_updates={lost_updates} served_after_signout={served_after_signout} \
             invalidation_p50_us={p50} invalidation_p99_us={p99}",
            counts.ops.load(Ordering::Relaxed),
            args.replicas,
        ),
        anomalies: caller_errors + lost + stale_reads + lost_updates + served_after_signout,
    }))
}

/// What `partition` (L2's, at the end) holds for `home`'s scope `s`.
fn found_in(partition: Option<&tokencache::Partition>, home: &str, s: usize) -> Got {
    let Some(p) = partition else {
        return Got::Nothing;
    };
    let scope = tokens::scope(s);
    let scopes = [scope.as_str()];
    let mut q = AccessTokenQuery::new(CLIENT_ID, &scopes);
    q.home_account_id = Some(home);
    // Expiry does not matter here (the run's tokens live an hour): any time will do.
    match p.find_access_token(&q, 0) {
        None => Got::Nothing,
        Some(t) => tokens::id_of(t.secret.expose()).map_or(Got::Foreign, Got::Token),
    }
}

/// One operation on `cache` for a random user; false when the cache API failed.
async fn one_op(
    cache: &TokenCache,
    recorder: &Recorder,
    counts: &Counts,
    mix: Mix,
    rng: &mut u64,
) -> bool {
    let u = pick(rng, mix.users);
    let (oid, home) = home(u);
    let s = pick(rng, tokens::SCOPES);
    let scope = tokens::scope(s);
    let scopes = [scope.as_str()];
    let r = next(rng);
    if r < mix.writers {
        let id = recorder.with(|h, now| h.begin_save(u, s, now));
        let result = match tokens::response(&oid, TENANT, &scope, id) {
            Ok(resp) => {
                let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, &scopes);
                cache.save_token_response(&req, &resp).await.ok()
            }
            Err(_) => None,
        };
        let outcome = match &result {
            None => SaveOutcome::Failed,
            Some(saved) if saved.write.revoked => SaveOutcome::Refused,
            Some(saved) if saved.write.l2_written => SaveOutcome::Stored,
            Some(_) => SaveOutcome::StoredLater,
        };
        recorder.with(|h, now| h.end_save(id, now, outcome));
        result.is_some()
    } else if r < mix.writers + mix.signouts {
        let i = recorder.with(|h, now| h.begin_sign_out(u, now));
        let out = cache.remove_account(&home).await;
        let acked = out.as_ref().is_ok_and(|o| o.l2_complete);
        recorder.with(|h, now| h.end_sign_out(u, i, now, acked));
        out.is_ok()
    } else {
        let before = l2_trouble(cache);
        let degraded_before = cache.two_level().is_degraded();
        let start = recorder.now();
        let found = cache
            .find_access_token(&Lookup::user(CLIENT_ID, &home, &scopes))
            .await;
        let Ok(found) = found else {
            return false;
        };
        let got = match &found {
            None => Got::Nothing,
            Some(t) => tokens::id_of(t.secret.expose()).map_or(Got::Foreign, Got::Token),
        };
        let degraded =
            degraded_before || cache.two_level().is_degraded() || l2_trouble(cache) != before;
        let verdict = recorder.with(|h, now| {
            let read = Read {
                user: u,
                scope: s,
                start,
                end: now,
                got,
                degraded,
            };
            let verdict = h.check_read(&read);
            if let Some(a) = verdict {
                let n = counts.stale_reads.load(Ordering::Relaxed)
                    + counts.served_after_signout.load(Ordering::Relaxed);
                if n < LOGGED_ANOMALIES {
                    tracing::warn!(anomaly = ?a, "{}", h.explain(&read));
                } else if n == LOGGED_ANOMALIES {
                    tracing::warn!("further anomalies are counted, not logged");
                }
            }
            verdict
        });
        match verdict {
            Some(Anomaly::Stale) => counts.stale_reads.fetch_add(1, Ordering::Relaxed),
            Some(Anomaly::ServedAfterSignOut) => {
                counts.served_after_signout.fetch_add(1, Ordering::Relaxed)
            }
            None => 0,
        };
        true
    }
}

/// Anomalous reads logged (with what they were checked against) before the rest are
/// only counted.
const LOGGED_ANOMALIES: u64 = 20;

/// The replica's L2 calls that failed or were skipped so far.
fn l2_trouble(cache: &TokenCache) -> u64 {
    let s = cache.stats();
    s.l2_errors + s.l2_skipped
}

/// Removes the keys the run can have written: for each fake user, the user partition,
/// the link set and the revocation stamp (saves are user saves, sign-outs write stamps).
/// Named keys only, never a prefix scan: a prefix shared with an application (from
/// `TOKENCACHE_PREFIX`) keeps the application's keys.
async fn remove_own(store: &SharedStore, keys: &KeySpace, users: usize) -> Result<u64, String> {
    let bar = crate::progress::bar("removing the run's keys", users as u64);
    let mut removed = 0;
    let all: Vec<usize> = (0..users).collect();
    for chunk in all.chunks(500) {
        let doomed: Vec<String> = chunk
            .iter()
            .flat_map(|&u| {
                let (_, home) = home(u);
                [
                    keys.partition_str(&home),
                    keys.link_set(&home),
                    keys.revocation(&home),
                ]
            })
            .collect();
        removed += store
            .remove_many(&doomed)
            .await
            .map_err(|e| format!("cannot remove the run's keys: {e}"))?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(removed)
}
