//! Property test of the whole cache under hostile conditions: random sequences of saves,
//! lookups and sign-outs for several users and clients, some cancelled mid-await, over a
//! chaos store that fails and stalls at random. After every step and at the end:
//!
//! * no lookup returns another user's or another client's token;
//! * no lookup returns a token saved before that user's acknowledged sign-out;
//! * no per-key lock or shared load outlives its operation;
//! * once L2 heals and the queue drains, no key is left without a TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tokencache::clock::{Clock, ManualClock};
use tokencache::sample::{self, ENVIRONMENT, TENANT};
use tokencache::store::chaos::{ChaosConfig, ChaosStore};
use tokencache::store::memory::MemoryStore;
use tokencache::store::{SharedStore, Store, StoreErrorKind};
use tokencache::twolevel::InFlight;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache, TokenResponse};

const T0: i64 = 1_800_000_000;
const USERS: usize = 3;
const CLIENTS: [&str; 2] = [
    "c1111111-0000-0000-0000-000000000001",
    "c2222222-0000-0000-0000-000000000002",
];
const SCOPES: [&str; 2] = [
    "https://graph.microsoft.com/User.Read",
    "https://graph.microsoft.com/Mail.Send",
];

fn oid(u: usize) -> String {
    format!("{u:08}-aaaa-bbbb-cccc-dddddddddddd")
}

fn home(u: usize) -> String {
    format!("{}.{TENANT}", oid(u))
}

#[derive(Debug, Clone)]
enum Op {
    Save {
        user: usize,
        client: usize,
        scope: usize,
    },
    Find {
        user: usize,
        client: usize,
        scope: usize,
    },
    SignOut {
        user: usize,
    },
    /// A hostile lookup: a long-running OBO session keyed by a user's home account id
    /// (no session is ever saved here, so nothing may be found).
    FindSession {
        user: usize,
        client: usize,
    },
    /// L2 fails with this probability (percent) and stalls this long per call.
    Faults {
        percent: u8,
        delay_ms: u16,
    },
    Heal,
    Advance {
        secs: u16,
    },
}

fn op() -> impl Strategy<Value = (Op, Option<u16>)> {
    let u = 0..USERS;
    let c = 0..CLIENTS.len();
    let s = 0..SCOPES.len();
    let op = prop_oneof![
        4 => (u.clone(), c.clone(), s.clone()).prop_map(|(user, client, scope)| Op::Save { user, client, scope }),
        4 => (u.clone(), c, s).prop_map(|(user, client, scope)| Op::Find { user, client, scope }),
        1 => u.clone().prop_map(|user| Op::SignOut { user }),
        1 => (u, 0..CLIENTS.len()).prop_map(|(user, client)| Op::FindSession { user, client }),
        1 => (0u8..=100, 0u16..400).prop_map(|(percent, delay_ms)| Op::Faults { percent, delay_ms }),
        1 => Just(Op::Heal),
        1 => (1u16..600).prop_map(|secs| Op::Advance { secs }),
    ];
    // Some operations are cancelled after a few milliseconds (the caller went away).
    (op, proptest::option::weighted(0.25, 1u16..300))
}

/// A token response whose access token names its user, client and sequence number.
fn response(user: usize, client: usize, scope: usize, n: u64, now: i64) -> TokenResponse {
    let body = json!({
        "token_type": "Bearer",
        "scope": SCOPES[scope],
        "expires_in": 3600,
        "access_token": format!("at|{user}|{client}|{n}"),
        "refresh_token": format!("rt|{user}|{client}|{n}"),
        "client_info": sample::client_info(&oid(user), TENANT),
    });
    let _ = now;
    TokenResponse::from_json(body.to_string().as_bytes()).unwrap()
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

async fn run(ops: Vec<(Op, Option<u16>)>) -> Result<(), TestCaseError> {
    let clock = ManualClock::at_secs(T0);
    let memory = Arc::new(MemoryStore::with_clock(Arc::new(clock.clone())));
    let chaos = Arc::new(ChaosStore::passthrough(memory.clone() as SharedStore));
    let cache = TokenCache::builder()
        .store(chaos.clone() as SharedStore)
        .clock(Arc::new(clock.clone()))
        .probe_l2_at_start(false)
        .l2_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let two = cache.two_level().clone();
    let mut seq = 0u64;
    let mut healthy = true;
    // Per user: the last sequence number saved before an acknowledged sign-out.
    let mut signed_out_at: HashMap<usize, u64> = HashMap::new();
    for (op, cancel_after) in ops {
        let c = cache.clone();
        let now = clock.now_secs();
        let task: tokio::task::JoinHandle<Result<(), TestCaseError>> = match op.clone() {
            Op::Save {
                user,
                client,
                scope,
            } => {
                seq += 1;
                let n = seq;
                tokio::spawn(async move {
                    let resp = response(user, client, scope, n, now);
                    let scopes = [SCOPES[scope]];
                    let req = SaveRequest::new(
                        CLIENTS[client],
                        SaveFor::User,
                        ENVIRONMENT,
                        TENANT,
                        &scopes,
                    );
                    c.save_token_response(&req, &resp)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("save failed: {e}")))?;
                    Ok(())
                })
            }
            Op::Find {
                user,
                client,
                scope,
            } => {
                let barrier = signed_out_at.get(&user).copied();
                tokio::spawn(async move {
                    let h = home(user);
                    let scopes = [SCOPES[scope]];
                    let found = c
                        .find_access_token(&Lookup::user(CLIENTS[client], &h, &scopes))
                        .await
                        .map_err(|e| TestCaseError::fail(format!("lookup failed: {e}")))?;
                    if let Some(t) = found {
                        let parts: Vec<&str> = t.secret.expose().split('|').collect();
                        prop_assert_eq!(parts.len(), 4);
                        prop_assert_eq!(parts[1], user.to_string(), "another user's token");
                        prop_assert_eq!(parts[2], client.to_string(), "another client's token");
                        let n: u64 = parts[3].parse().unwrap();
                        if let Some(b) = barrier {
                            prop_assert!(
                                n > b,
                                "token {} saved before the sign-out (after {})",
                                n,
                                b
                            );
                        }
                    }
                    Ok(())
                })
            }
            Op::FindSession { user, client } => tokio::spawn(async move {
                let key = home(user);
                let subject = tokencache::Subject::OboSession { session_key: &key };
                let found = c
                    .find_access_token(&Lookup::new(CLIENTS[client], subject, &SCOPES))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("lookup failed: {e}")))?;
                prop_assert!(found.is_none(), "a session key reached a user's partition");
                Ok(())
            }),
            Op::SignOut { user } => tokio::spawn(async move {
                c.remove_account(&home(user))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("sign-out failed: {e}")))?;
                Ok(())
            }),
            Op::Faults { percent, delay_ms } => {
                healthy = percent == 0 && delay_ms == 0;
                chaos.set_config(ChaosConfig {
                    error_probability: f64::from(percent) / 100.0,
                    kind: StoreErrorKind::Connection,
                    delay: Duration::from_millis(u64::from(delay_ms)),
                    ..ChaosConfig::default()
                });
                continue;
            }
            Op::Heal => {
                healthy = true;
                chaos.fail_never();
                chaos.set_delay(Duration::ZERO);
                continue;
            }
            Op::Advance { secs } => {
                clock.advance_secs(u64::from(secs));
                continue;
            }
        };
        let mut task = task;
        let finished = match cancel_after {
            Some(ms) => {
                match tokio::time::timeout(Duration::from_millis(u64::from(ms)), &mut task).await {
                    Ok(joined) => Some(joined),
                    Err(_) => {
                        task.abort(); // the caller went away: its future is dropped mid-await
                        None
                    }
                }
            }
            None => Some(task.await),
        };
        match finished {
            Some(Ok(result)) => {
                result?;
                if let Op::SignOut { user } = op {
                    // acknowledged: every token saved so far for the user is refused
                    signed_out_at.insert(user, seq);
                }
            }
            Some(Err(join)) => return Err(TestCaseError::fail(format!("task panicked: {join}"))),
            None => {}
        }
        // A cancelled caller's work settles within the L2 timeouts; while L2 is healthy
        // nothing stays held (with faults on, the recovery task may be mid-drain).
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        if healthy {
            prop_assert_eq!(two.in_flight(), InFlight::default(), "after {:?}", op);
        }
    }
    // Heal, drain, and look at every key.
    chaos.fail_never();
    chaos.set_delay(Duration::ZERO);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        settle().await;
        if !two.is_degraded() {
            break;
        }
    }
    prop_assert!(!two.is_degraded(), "{:?}", cache.stats());
    prop_assert_eq!(two.in_flight(), InFlight::default(), "at the end");
    let (mut cursor, mut keys) = (0, Vec::new());
    loop {
        let (next, page) = memory.scan("", cursor, 100).await.unwrap();
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for k in keys {
        if k.contains("tc:links:") {
            continue; // link sets: each member bounded (store contract tests)
        }
        let v = memory.get(&k).await.unwrap().unwrap();
        prop_assert!(v.ttl.is_some(), "{} has no TTL", k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn no_foreign_token_no_stale_token_nothing_held_every_key_bounded(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(ops))?;
    }
}
