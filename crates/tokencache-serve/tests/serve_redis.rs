//! `tokencache serve` on a real Redis whose ACL user lacks the backplane channel: serve
//! starts, checks what the user allows (as `tokencache check` does) and logs once what
//! is missing, with the rule to add; the password (from `TOKENCACHE_REDIS_PASSWORD`) is
//! in no log line.

mod common;

use common::Serve;
use std::time::{Duration, Instant};

const PASSWORD: &str = "serve-redis-pw-93a1";

#[test]
fn serve_checks_its_redis_at_start_and_logs_once_what_is_missing() {
    let server = testkit::RedisServer::start();
    // everything tokencache needs but the channel
    server.acl_user(
        "app",
        PASSWORD,
        &[
            "~*",
            "+@read",
            "+@write",
            "+@scripting",
            "+@pubsub",
            "-@dangerous",
            "+ping",
            "+time",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "store = \"redis://app@127.0.0.1:{}\"\n[apis.a]\nauthority = \"http://127.0.0.1:9/t\"\nclient_id = \"c\"\nclient_secret_env = \"APP_SECRET\"\nscopes = [\"s\"]\n",
            server.port()
        ),
    )
    .unwrap();
    let serve = Serve::start(&cfg, &[("TOKENCACHE_REDIS_PASSWORD", PASSWORD)]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let logs = loop {
        let logs = serve.logs();
        if logs.contains("lacks what tokencache needs") {
            break logs;
        }
        assert!(Instant::now() < deadline, "no check line:\n{logs}");
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(500));
    let logs = serve.logs().max(logs);
    assert_eq!(
        logs.matches("lacks what tokencache needs").count(),
        1,
        "{logs}"
    );
    let line = logs
        .lines()
        .find(|l| l.contains("lacks what tokencache needs"))
        .unwrap();
    assert!(
        line.contains("pubsub") && line.contains("ACL SETUSER app &*"),
        "{line}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
    // The password came from the environment: authentication and keys hold.
    assert!(!line.contains("auth:") && !line.contains("keys:"), "{line}");
}
