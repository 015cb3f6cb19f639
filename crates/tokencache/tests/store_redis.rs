//! Redis store against real servers: outages, lazy connection, authentication, URLs.

use std::time::{Duration, Instant};
use testkit::RedisServer;
use tokencache::store::{
    open, RedisOptions, RedisStore, Store, StoreError, StoreErrorKind, StoreUrl,
};

/// Generous bound for "fails quickly, does not hang" (the connect timeout is 2 s).
const NO_HANG: Duration = Duration::from_secs(6);

async fn timed<T>(f: impl std::future::Future<Output = T>) -> T {
    let start = Instant::now();
    let out = tokio::time::timeout(NO_HANG, f)
        .await
        .expect("store call hung");
    assert!(start.elapsed() < NO_HANG);
    out
}

/// Retries `f` until it succeeds (a reconnect may fail the first call after a restart).
async fn eventually<T>(
    mut f: impl FnMut() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>,
    >,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    matches!(e.kind, StoreErrorKind::Connection | StoreErrorKind::Timeout),
                    "{e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("store did not recover: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_while_down_then_works_when_redis_starts() {
    let mut server = RedisServer::start();
    server.stop();
    let url = server.url();
    // Construction returns at once and does not fail.
    let store = timed(open(&url)).await.expect("open while Redis is down");
    assert_eq!(store.endpoint(), format!("127.0.0.1:{}", server.port()));
    let e = timed(store.get("k")).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Connection, "{e}");
    let e = timed(store.set("k", b"v", None)).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Connection, "{e}");
    let e = timed(store.health()).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Connection, "{e}");

    server.restart();
    let s = store.clone();
    eventually(move || {
        let s = s.clone();
        Box::pin(async move { s.set("k", b"v", Some(Duration::from_secs(60))).await })
    })
    .await;
    assert_eq!(store.get("k").await.unwrap().unwrap().bytes, b"v");
    assert_eq!(server.cli(&["GET", "k"]), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_after_connect_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let store = RedisStore::standalone(&server.url(), RedisOptions::default()).unwrap();
    assert!(
        !store.is_connected(),
        "lazy: no connection before first use"
    );
    store.set("a", b"1", None).await.unwrap();
    assert!(store.is_connected());

    server.stop();
    for _ in 0..3 {
        let e = timed(store.get("a")).await.unwrap_err();
        assert!(
            matches!(e.kind, StoreErrorKind::Connection | StoreErrorKind::Timeout),
            "{e}"
        );
        assert!(e.endpoint.starts_with("127.0.0.1:"), "{e}");
    }

    server.restart(); // empty: no persistence
    let shared = std::sync::Arc::new(store);
    let s = shared.clone();
    let v = eventually(move || {
        let s = s.clone();
        Box::pin(async move { s.get("a").await })
    })
    .await;
    let store = shared;
    assert_eq!(v, None);
    store.set("a", b"2", None).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().unwrap().bytes, b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_server_error() {
    let server = RedisServer::start_with(&["--requirepass", "right-pass"]);
    let port = server.port();

    let wrong = RedisStore::standalone(
        &format!("redis://:wrong-pass@127.0.0.1:{port}"),
        RedisOptions::default(),
    )
    .unwrap();
    let e = timed(wrong.get("k")).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    let text = e.to_string().to_lowercase();
    assert!(text.contains("auth") || text.contains("wrongpass"), "{e}");
    assert!(
        !e.to_string().contains("wrong-pass"),
        "password leaked: {e}"
    );
    assert!(!wrong.endpoint().contains("wrong-pass"));
    // Still an error on the next call (a new attempt, not a hang).
    assert_eq!(
        timed(wrong.health()).await.unwrap_err().kind,
        StoreErrorKind::Server
    );

    let none = RedisStore::standalone(&server.url(), RedisOptions::default()).unwrap();
    let e = timed(none.get("k")).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    assert!(e.to_string().contains("NOAUTH"), "{e}");

    let url = format!("redis://:right-pass@127.0.0.1:{port}/0");
    let parsed = StoreUrl::parse(&url).unwrap();
    assert!(!parsed.to_string().contains("right-pass"));
    let right = parsed.open().await.unwrap();
    right.set("k", b"v", None).await.unwrap();
    assert_eq!(right.get("k").await.unwrap().unwrap().bytes, b"v");
    assert_eq!(server.cli(&["GET", "k"]), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_is_a_connection_error_not_a_hang() {
    let port = testkit::free_port(); // nothing listens there
    let store = open(&format!("redis://127.0.0.1:{port}?connect_timeout_ms=300"))
        .await
        .unwrap();
    let e = timed(store.get("k")).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Connection, "{e}");
    let e = timed(store.remove_many(&["a".into(), "b".into()]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Connection, "{e}");
    // An unresolvable name is a connection error too.
    let store = open("redis://no-such-host.invalid:6390?connect_timeout_ms=300")
        .await
        .unwrap();
    let e = timed(store.get("k")).await.unwrap_err();
    assert!(
        matches!(e.kind, StoreErrorKind::Connection | StoreErrorKind::Timeout),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_and_server_errors_map_to_server() {
    let server = RedisServer::start();
    let store = RedisStore::standalone(&server.url(), RedisOptions::default()).unwrap();
    server.cli(&["LPUSH", "list", "x"]);
    let e = store.get("list").await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server);
    assert!(e.message.contains("WRONGTYPE"), "{e}");
    // A server out of memory refuses writes with OOM.
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let e = store.set("big", &[0u8; 1024], None).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Server, "{e}");
    assert!(e.message.contains("OOM"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_picks_the_backend_from_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/folder/t.redb");
    let s = open(&format!("redb://{}", file.display())).await.unwrap();
    s.set("k", b"v", None).await.unwrap();
    assert!(file.exists(), "folder and file created");
    assert_eq!(s.endpoint(), file.display().to_string());
    drop(s);

    let m = open("memory://").await.unwrap();
    m.set("k", b"v", None).await.unwrap();
    assert_eq!(m.endpoint(), "memory");

    let e = open("mysql://x").await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config);
    assert!(e.message.contains("redis://"), "{e}");

    let server = RedisServer::start();
    let r = open(&server.url()).await.unwrap();
    r.set("k", b"v", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let pttl: i64 = server.cli(&["PTTL", "k"]).parse().unwrap();
    assert!(pttl > 25_000, "{pttl}");
}

/// Makes a CA and a server certificate for 127.0.0.1 / localhost with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl on PATH (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=testca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_and_password() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f).display().to_string();
    let tls_port = testkit::free_port().to_string();
    let server = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &p("server.pem"),
        "--tls-key-file",
        &p("server.key"),
        "--tls-ca-cert-file",
        &p("ca.pem"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "tls-pass",
    ]);
    let url = format!(
        "rediss://:tls-pass@localhost:{tls_port}/0?tls_ca_file={}",
        p("ca.pem")
    );
    let store = open(&url).await.unwrap();
    assert_eq!(store.endpoint(), format!("localhost:{tls_port}"));
    store
        .set("t", b"secure", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(store.get("t").await.unwrap().unwrap().bytes, b"secure");
    assert_eq!(server.cli(&["GET", "t"]), "secure");

    // Without the private CA the certificate is refused: an error, not a hang.
    let untrusted = open(&format!("rediss://:tls-pass@localhost:{tls_port}"))
        .await
        .unwrap();
    let e = timed(untrusted.get("t")).await.unwrap_err();
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(e.message.contains("untrusted certificate"), "{e}");
}
