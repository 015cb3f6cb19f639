//! `tokencache load`: drives the cache the way a web app would (token lookups, saves
//! after sign-ins and refreshes, sign-outs) from several tasks for a bounded time,
//! optionally through a chaos store, then checks that L2 caught up.
//!
//! Its keys go under `--prefix` (default `tcload:<pid>:`), its users belong to a fake
//! tenant, and the keys it can have written (each fake user's partition, link set and
//! revocation stamp; nothing else under the prefix) are removed at the end unless
//! `--keep`; a store that does not answer fails the command at once.
//!
//! The final report line:
//! `ops=<n> caller_errors=<n> l2_errors=<n> queued=<n> recovered=<n> lost=<n>`, where
//! `caller_errors` counts errors the cache API returned (L2 failures must never be
//! among them) and `lost` counts users whose L2 state, once L2 is healthy again and
//! the recovery queue is drained, is not what the driver last did (a saved token
//! missing or older, or a signed-out user still there).

use clap::Args;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokencache::partition::KeySpace;
use tokencache::protect::read_partition;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT};
use tokencache::schema::AccessTokenQuery;
use tokencache::store::chaos::{ChaosConfig, ChaosStore};
use tokencache::store::SharedStore;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

/// Arguments of `tokencache load`.
#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The L2 store URL (redis://…, redb:///path, memory://).
    #[arg(long, env = "TOKENCACHE_STORE")]
    store: String,
    /// The key prefix of every key the run writes (default: `tcload:<pid>:`, unique per run).
    #[arg(long, env = "TOKENCACHE_PREFIX")]
    prefix: Option<String>,
    /// Leave the run's keys in the store (default: the keys of its fake users are removed;
    /// other keys under the prefix are never touched).
    #[arg(long)]
    keep: bool,
    /// Distinct users (1 to 1,000,000).
    #[arg(long, default_value_t = 100, value_parser = crate::args::count::<1, 1_000_000>)]
    users: usize,
    /// How long to run, in seconds (more than 0, at most a week).
    #[arg(long, value_parser = crate::args::run_seconds)]
    duration: f64,
    /// Share of operations that save a token (the rest are lookups and sign-outs).
    #[arg(long, default_value_t = 0.2, value_parser = crate::args::share)]
    writers_share: f64,
    /// Share of operations that sign a user out.
    #[arg(long, default_value_t = 0.02, value_parser = crate::args::share)]
    signout_share: f64,
    /// Concurrent tasks (1 to 256).
    #[arg(long, default_value_t = 4, value_parser = crate::args::count::<1, 256>)]
    tasks: usize,
    /// Fault injection in front of the store, e.g. `p=0.2,kind=timeout,delay_ms=2`
    /// (keys: p, fail=always|never, kind, delay_ms, seed); lifted at the end.
    #[arg(long)]
    chaos: Option<String>,
    /// Bound of each L2 call, in milliseconds (1 to 60,000).
    #[arg(long, default_value_t = 250, value_parser = crate::args::int::<1, 60_000>)]
    l2_timeout_ms: u64,
    /// Longest wait for L2 to catch up at the end, in seconds (0 to 3,600).
    #[arg(long, default_value_t = 15.0, value_parser = crate::args::wait_seconds)]
    settle: f64,
}

/// What a caller last did to a user.
#[derive(Debug, Clone)]
enum Last {
    Saved { scope: String, at: i64 },
    SignedOut,
}

pub(crate) fn run(args: LoadArgs) -> ExitCode {
    crate::block_on(crate::Runtime::MultiThread, async move {
        println!("{}", load(args).await?);
        Ok(())
    })
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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

async fn load(args: LoadArgs) -> Result<String, String> {
    // Each number is range-checked by clap (crate::args); only the sum is left.
    if args.writers_share + args.signout_share > 1.0 {
        return Err("--writers-share plus --signout-share must be between 0 and 1".into());
    }
    let chaos_config = match &args.chaos {
        Some(spec) => ChaosConfig::parse(spec)?,
        None => ChaosConfig::default(),
    };
    let inner = tokencache::store::open(&args.store)
        .await
        .map_err(|e| e.to_string())?;
    // Fail now, not after duration + settle.
    inner
        .health()
        .await
        .map_err(|e| format!("the store does not answer: {e}"))?;
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("tcload:{}:", std::process::id()));
    let chaos = Arc::new(ChaosStore::new(inner.clone(), chaos_config));
    let cache = TokenCache::builder()
        .store(chaos.clone() as SharedStore)
        .key_prefix(&prefix)
        .l2_timeout(Duration::from_millis(args.l2_timeout_ms))
        .build()
        .await
        .map_err(|e| e.to_string())?;

    let last: Arc<Mutex<HashMap<usize, Last>>> = Arc::default();
    let ops = Arc::new(AtomicU64::new(0));
    let caller_errors = Arc::new(AtomicU64::new(0));
    let length = Duration::from_secs_f64(args.duration);
    let deadline = Instant::now() + length;
    let phase = crate::progress::Timed::start(
        &format!("traffic, {} users, {} tasks", args.users, args.tasks),
        length,
    );
    let mut tasks = Vec::with_capacity(args.tasks);
    for t in 0..args.tasks {
        let (cache, last, ops, errors) = (
            cache.clone(),
            last.clone(),
            ops.clone(),
            caller_errors.clone(),
        );
        let (users, tasks_n, writers, signouts) = (
            args.users,
            args.tasks,
            args.writers_share,
            args.signout_share,
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ ((t as u64 + 1) * 0x9E37_79B9);
            let mut n = 0u64;
            // Each user belongs to one task (u % tasks == t), so "last" per user is
            // well defined; users t, t + tasks, t + 2 × tasks, ...
            let mine = (t..users).step_by(tasks_n).count();
            if mine == 0 {
                return;
            }
            while Instant::now() < deadline {
                let u = t + tasks_n * ((next(&mut rng) * mine as f64) as usize).min(mine - 1);
                let (oid, home) = home(u);
                let r = next(&mut rng);
                let ok = if r < writers {
                    let scope = format!("api://load/scope{}", n % 5);
                    let at = now_secs();
                    let scopes = [scope.as_str()];
                    let saved = match sample::user_response(&oid, TENANT, &scopes, at, 3600) {
                        Ok(resp) => {
                            let req = SaveRequest::new(
                                CLIENT_ID,
                                SaveFor::User,
                                ENVIRONMENT,
                                TENANT,
                                &scopes,
                            );
                            cache.save_token_response(&req, &resp).await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if saved {
                        last.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(u, Last::Saved { scope, at });
                    }
                    saved
                } else if r < writers + signouts {
                    let out = cache.remove_account(&home).await.is_ok();
                    if out {
                        last.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(u, Last::SignedOut);
                    }
                    out
                } else {
                    let scopes = ["api://load/scope0"];
                    cache
                        .find_access_token(&Lookup::user(CLIENT_ID, &home, &scopes))
                        .await
                        .is_ok()
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                ops.fetch_add(1, Ordering::Relaxed);
                n += 1;
                if n.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("a load task failed: {e}"))?;
    }
    phase.finish();

    // L2 is healthy again: give it time to catch up.
    chaos.fail_never();
    chaos.set_delay(Duration::ZERO);
    let two = cache.two_level();
    let settle_until = Instant::now() + Duration::from_secs_f64(args.settle);
    let bar = crate::progress::spinner("L2 catching up (recovery queue)");
    while two.is_degraded() && Instant::now() < settle_until {
        if !two.recover_now().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    bar.finish_and_clear();

    // What L2 holds against what callers last did.
    let last = std::mem::take(&mut *last.lock().unwrap_or_else(|p| p.into_inner()));
    let now = now_secs();
    let mut lost = 0u64;
    let bar = crate::progress::bar("checking L2 against what callers did", last.len() as u64);
    for (u, what) in &last {
        bar.inc(1);
        let (_, home) = home(*u);
        let key = two.keys().partition_str(&home);
        let value = inner
            .get(&key)
            .await
            .map_err(|e| format!("cannot read L2 to check it: {e}"))?;
        let fine = match what {
            Last::SignedOut => value.is_none(),
            Last::Saved { scope, at } => value
                .and_then(|v| read_partition(two.protection(), &key, &v.bytes).ok())
                .is_some_and(|p| {
                    let scopes = [scope.as_str()];
                    let mut q = AccessTokenQuery::new(CLIENT_ID, &scopes);
                    q.home_account_id = Some(&home);
                    p.find_access_token(&q, now)
                        .is_some_and(|t| t.cached_at >= *at)
                }),
        };
        if !fine {
            lost += 1;
        }
    }
    bar.finish_and_clear();
    let s = cache.stats();
    if args.keep {
        println!("kept the run's keys under prefix {prefix:?} (--keep)");
    } else {
        let removed = remove_own(&inner, two.keys(), args.users).await?;
        println!("removed the run's {removed} keys under prefix {prefix:?}");
    }
    Ok(format!(
        "ops={} caller_errors={} l2_errors={} queued={} recovered={} lost={}",
        ops.load(Ordering::Relaxed),
        caller_errors.load(Ordering::Relaxed),
        s.l2_errors,
        s.queued,
        s.recovered,
        lost
    ))
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
