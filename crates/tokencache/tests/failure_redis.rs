//! L2 failures with a real `redis-server` (started here, never the one on 6379):
//! an L2 unreachable from the start, a wrong password, and a server killed under load
//! and restarted on the same port.

mod common;

use common::capture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::RedisServer;
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::schema::AccessTokenQuery;
use tokencache::twolevel::BreakerOptions;
use tokencache::{Lookup, Partition, SaveFor, SaveRequest, TokenCache};

const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];

fn oid(i: usize) -> String {
    format!("{i:08}-aaaa-bbbb-cccc-dddddddddddd")
}

async fn save(cache: &TokenCache, oid: &str, scopes: &[&str], now: i64) -> tokencache::Saved {
    let resp = sample::user_response(oid, TENANT, scopes, now, 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
    cache
        .save_token_response(&req, &resp)
        .await
        .expect("a save never fails because of L2")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Works from L1 for a while and returns the error lines logged meanwhile.
async fn work_from_l1(url: &str) -> (Vec<String>, Vec<String>) {
    let (logs, _guard) = capture();
    let cache = TokenCache::builder()
        .store_url(url)
        .build()
        .await
        .expect("builds even though L2 is unusable");
    for i in 0..10 {
        let o = oid(i);
        let saved = save(&cache, &o, GRAPH, now_secs()).await;
        assert!(saved.write.stored && !saved.write.l2_written);
        let home = format!("{o}.{TENANT}");
        for _ in 0..5 {
            let found = cache
                .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
                .await
                .unwrap();
            assert!(found.is_some(), "served from L1");
        }
    }
    let s = cache.stats();
    assert_eq!(s.queued, 10);
    assert!(s.l2_errors >= 1);
    (logs.errors(), logs.lines())
}

#[tokio::test]
async fn an_unreachable_l2_at_start_is_one_clear_error_and_l1_works() {
    let port = testkit::free_port(); // nothing listens there
    let (errors, _) =
        work_from_l1(&format!("redis://127.0.0.1:{port}?connect_timeout_ms=200")).await;
    assert_eq!(
        errors.len(),
        1,
        "one error line for the whole outage: {errors:#?}"
    );
    let line = &errors[0];
    assert!(
        line.contains(&format!("L2 unreachable at 127.0.0.1:{port}")),
        "{line}"
    );
    assert!(line.contains("serving from L1"), "{line}");
    println!("{line}");
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_the_password() {
    let server = RedisServer::start_with(&["--requirepass", "right-secret"]);
    let url = format!("redis://:wrong-secret-123@127.0.0.1:{}", server.port());
    let (errors, all) = work_from_l1(&url).await;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains(&format!("127.0.0.1:{}", server.port())),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("serving from L1"), "{}", errors[0]);
    assert!(
        all.iter().all(|l| !l.contains("wrong-secret-123")),
        "the password is never logged"
    );
    println!("{}", errors[0]);
}

/// What a caller last did to a user.
#[derive(Clone, Debug)]
enum Last {
    Saved { scope: String, at: i64 },
    Removed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_redis_under_load_loses_nothing() {
    // fsync on every write, so that the restarted server has what the killed one took
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let cache = TokenCache::builder()
        .store_url(&format!(
            "{}?connect_timeout_ms=200&response_timeout_ms=500",
            server.url()
        ))
        .l2_timeout(Duration::from_millis(300))
        .l2_breaker(BreakerOptions {
            failure_threshold: 3,
            open_for: Duration::from_millis(200),
            max_open_for: Duration::from_secs(1),
        })
        .build()
        .await
        .unwrap();
    const TASKS: usize = 4;
    const USERS_PER_TASK: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let during_outage = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, stop, outage, ops, during) = (
            cache.clone(),
            stop.clone(),
            outage.clone(),
            ops.clone(),
            during_outage.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut last: HashMap<String, Last> = HashMap::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let o = oid(t * USERS_PER_TASK + n % USERS_PER_TASK);
                let home = format!("{o}.{TENANT}");
                match n % 10 {
                    0..=3 => {
                        let scope = format!("api://load/s{}", n % 7);
                        let at = now_secs();
                        save(&cache, &o, &[scope.as_str()], at).await;
                        if outage.load(Ordering::Relaxed) {
                            during.fetch_add(1, Ordering::Relaxed);
                        }
                        last.insert(home, Last::Saved { scope, at });
                    }
                    4 => {
                        cache
                            .remove_client_credentials(CLIENT_ID, &home)
                            .await
                            .expect("never an error");
                        last.insert(home, Last::Removed);
                    }
                    _ => {
                        let found = cache
                            .find_access_token(&Lookup::user(CLIENT_ID, &home, GRAPH))
                            .await;
                        assert!(found.is_ok(), "no L2 error reaches the caller");
                    }
                }
                ops.fetch_add(1, Ordering::Relaxed);
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            last
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| server.stop());
    outage.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    outage.store(false, Ordering::Relaxed);
    tokio::task::block_in_place(|| server.restart());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut last = HashMap::new();
    for t in tasks {
        last.extend(t.await.expect("no caller saw a panic or an error"));
    }
    // L2 catches up by itself
    let two = cache.two_level().clone();
    for _ in 0..300 {
        if !two.is_degraded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = cache.stats();
    assert!(!two.is_degraded(), "recovered: {s:?}");
    assert!(
        during_outage.load(Ordering::Relaxed) > 0,
        "writes happened during the outage"
    );
    assert!(s.l2_errors > 0 && s.queued > 0 && s.recovered > 0, "{s:?}");
    assert_eq!(
        s.dropped_overflow, 0,
        "the queue was big enough: nothing dropped"
    );
    assert_eq!(s.superseded, 0, "no other replica wrote");
    // Redis holds exactly what each caller last did
    let store = tokencache::store::open(&server.url()).await.unwrap();
    assert_eq!(last.len(), TASKS * USERS_PER_TASK);
    for (home, what) in &last {
        let value = store.get(home).await.unwrap();
        match what {
            Last::Removed => assert!(value.is_none(), "{home}: removed last, yet in Redis"),
            Last::Saved { scope, at } => {
                let v = value
                    .unwrap_or_else(|| panic!("{home}: saved last ({scope}), missing from Redis"));
                let p = Partition::parse(&v.bytes).unwrap();
                let scopes = [scope.as_str()];
                let mut q = AccessTokenQuery::new(CLIENT_ID, &scopes);
                q.home_account_id = Some(home);
                let token = p
                    .find_access_token(&q, now_secs())
                    .unwrap_or_else(|| panic!("{home}: last token {scope} missing"));
                assert!(
                    token.cached_at >= *at,
                    "{home}: Redis holds an older token than the last write"
                );
            }
        }
    }
    println!("ops={} stats={s:?}", ops.load(Ordering::Relaxed));
}
