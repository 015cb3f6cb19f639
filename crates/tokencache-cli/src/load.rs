//! `tokencache load`: drives the cache the way a web app would (token lookups, saves
//! after sign-ins and refreshes, sign-outs) from several tasks for a bounded time,
//! optionally through a chaos store, then checks that L2 caught up.
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
use tokencache::protect::read_partition;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::schema::AccessTokenQuery;
use tokencache::store::chaos::{ChaosConfig, ChaosStore};
use tokencache::store::SharedStore;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

/// Arguments of `tokencache load`.
#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The L2 store URL (redis://…, redb:///path, memory://).
    #[arg(long)]
    store: String,
    /// Distinct users.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// How long to run, in seconds.
    #[arg(long)]
    duration: f64,
    /// Share of operations that save a token (the rest are lookups and sign-outs).
    #[arg(long, default_value_t = 0.2)]
    writers_share: f64,
    /// Share of operations that sign a user out.
    #[arg(long, default_value_t = 0.02)]
    signout_share: f64,
    /// Concurrent tasks.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// Fault injection in front of the store, e.g. `p=0.2,kind=timeout,delay_ms=2`
    /// (keys: p, fail=always|never, kind, delay_ms, seed); lifted at the end.
    #[arg(long)]
    chaos: Option<String>,
    /// Bound of each L2 call, in milliseconds.
    #[arg(long, default_value_t = 250)]
    l2_timeout_ms: u64,
    /// Longest wait for L2 to catch up at the end, in seconds.
    #[arg(long, default_value_t = 15.0)]
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
    if args.users == 0 || args.tasks == 0 || args.duration.is_nan() || args.duration <= 0.0 {
        return Err("--users, --tasks and --duration must be positive".into());
    }
    if !(0.0..=1.0).contains(&(args.writers_share + args.signout_share))
        || args.writers_share < 0.0
        || args.signout_share < 0.0
    {
        return Err("--writers-share plus --signout-share must be between 0 and 1".into());
    }
    let chaos_config = match &args.chaos {
        Some(spec) => ChaosConfig::parse(spec)?,
        None => ChaosConfig::default(),
    };
    let inner = tokencache::store::open(&args.store)
        .await
        .map_err(|e| e.to_string())?;
    let chaos = Arc::new(ChaosStore::new(inner.clone(), chaos_config));
    let cache = TokenCache::builder()
        .store(chaos.clone() as SharedStore)
        .l2_timeout(Duration::from_millis(args.l2_timeout_ms))
        .build()
        .await
        .map_err(|e| e.to_string())?;

    let last: Arc<Mutex<HashMap<usize, Last>>> = Arc::default();
    let ops = Arc::new(AtomicU64::new(0));
    let caller_errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
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

    // L2 is healthy again: give it time to catch up.
    chaos.fail_never();
    chaos.set_delay(Duration::ZERO);
    let two = cache.two_level();
    let settle_until = Instant::now() + Duration::from_secs_f64(args.settle.max(0.0));
    while two.is_degraded() && Instant::now() < settle_until {
        if !two.recover_now().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // What L2 holds against what callers last did.
    let last = std::mem::take(&mut *last.lock().unwrap_or_else(|p| p.into_inner()));
    let now = now_secs();
    let mut lost = 0u64;
    for (u, what) in &last {
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
    let s = cache.stats();
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
