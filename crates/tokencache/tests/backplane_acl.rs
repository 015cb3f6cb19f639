//! A Redis 7 ACL user created without channel permission (`resetchannels`, Redis 7's
//! default for new users) cannot subscribe to the backplane: on a real redis-server, the
//! replica says so (status, stats, one log line per replica naming the channel and the ACL
//! rule to add), keeps L1 bypassed on every path — hits, loads and write-back fills — and serves
//! from L2, so another replica's newer token is what it serves.

mod common;

use std::time::{Duration, Instant};

use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::twolevel::BackplaneStatus;
use tokencache::{Lookup, SaveFor, SaveRequest, TokenCache};

const SCOPES: &[&str] = &["api://acl/read"];

async fn cache(url: &str, prefix: &str) -> TokenCache {
    TokenCache::builder()
        .store_url(url)
        .key_prefix(prefix)
        .build()
        .await
        .unwrap()
}

async fn save(cache: &TokenCache, oid: &str, secret: &str) {
    let now = cache.two_level().clock().now_secs();
    let mut resp = sample::user_response(oid, TENANT, SCOPES, now, 3600).unwrap();
    resp.access_token = Some(secret.into());
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, SCOPES);
    let saved = cache.save_token_response(&req, &resp).await.unwrap();
    assert!(saved.write.l2_written, "{:?}", saved.write);
}

async fn found(cache: &TokenCache, home: &str) -> Option<String> {
    cache
        .find_access_token(&Lookup::user(CLIENT_ID, home, SCOPES))
        .await
        .unwrap()
        .map(|t| t.secret.expose().to_string())
}

// One thread: the listener logs from its own task, which the capture sees there.
#[tokio::test]
async fn a_user_without_channel_permission_bypasses_l1_and_serves_from_l2() {
    let server = testkit::RedisServer::start();
    // keys and scripts under the prefix, but no channel: what operators create
    let acl = server.cli(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-password",
        "~acl:*",
        "resetchannels",
        "+@all",
    ]);
    assert_eq!(acl, "OK");
    let url = format!("redis://app:app-password@127.0.0.1:{}", server.port());
    let (logs, _guard) = common::capture();
    let a = cache(&url, "acl:").await;
    let b = cache(&url, "acl:").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        a.two_level().backplane_status(),
        BackplaneStatus::Refused(_)
    ) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            a.two_level().backplane_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = a.two_level().backplane_status();
    let reason = status.reason().unwrap();
    assert!(reason.contains("acl:tc:backplane"), "{reason}");
    assert!(reason.contains("ACL SETUSER"), "{reason}");
    assert!(!reason.contains("app-password"), "{reason}");
    assert!(a.two_level().l1_bypassed());
    let stats = a.stats();
    assert!(stats.l1_bypassed && stats.backplane_refused, "{stats:?}");

    let oid = "00000001-0000-4000-8000-000000000acl";
    let home = format!("{oid}.{TENANT}");
    // A's own write is not kept in L1, its reads go to L2...
    save(&a, oid, "from-a").await;
    assert_eq!(found(&a, &home).await.as_deref(), Some("from-a"));
    // ...so B's newer token, of which A hears nothing, is what A serves.
    save(&b, oid, "from-b").await;
    assert_eq!(found(&a, &home).await.as_deref(), Some("from-b"));
    assert_eq!(found(&a, &home).await.as_deref(), Some("from-b"));
    let stats = a.stats();
    assert_eq!(stats.l1_hits, 0, "{stats:?}");
    assert!(stats.l2_hits >= 3, "{stats:?}");
    assert_eq!(
        stats.l2_errors, 0,
        "only the subscription is refused: {stats:?}"
    );

    // One clear line about it per replica, naming the channel, whether the subscription
    // or a publish (the writes above, the heartbeats of a second and more) met the
    // refusal first; no password anywhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let errors: Vec<String> = logs
        .lines()
        .into_iter()
        .filter(|l| l.contains("NOPERM"))
        .collect();
    assert_eq!(errors.len(), 2, "one per replica: {errors:#?}");
    assert!(errors.iter().all(|l| l.contains("may not use the channel")));
    assert!(errors.iter().all(|l| l.contains("acl:tc:backplane")));
    assert!(errors.iter().all(|l| l.contains("ACL SETUSER")));
    assert!(logs.lines().iter().all(|l| !l.contains("app-password")));

    // Granted: the replica subscribes and uses L1 again.
    let grant = server.cli(&["ACL", "SETUSER", "app", "&acl:*"]);
    assert_eq!(grant, "OK");
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.two_level().backplane_status() != BackplaneStatus::Subscribed {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            a.two_level().backplane_status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!a.two_level().l1_bypassed());
}
