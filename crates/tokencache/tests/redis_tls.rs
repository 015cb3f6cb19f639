//! Redis over TLS against real servers (`redis-server --tls-port`, a private CA made by
//! the test): trust by URL option, refusal of an unknown CA and of a name mismatch
//! (each a one-line error that says which), `tls_server_name`, client certificates
//! (`--tls-auth-clients yes`), TLS/plain mismatches both ways, and pub/sub over TLS.
//! Trust by `SSL_CERT_FILE` is tested through the CLI (an environment variable of a
//! process of its own): `crates/tokencache-cli/tests/check.rs`.

use std::time::Duration;

use futures::StreamExt;
use testkit::{CertFile, RedisServer, TestCerts};
use tokencache::store::{open, StoreError, StoreErrorKind};

const PASSWORD: &str = "tls-secret-pw";

/// A TLS server with a password; `auth_clients`: a client certificate is required.
fn tls_server(certs: &TestCerts, auth_clients: bool) -> RedisServer {
    RedisServer::start_tls(certs, auth_clients, &["--requirepass", PASSWORD])
}

/// `rediss://:PASSWORD@host:tls_port/0?query`.
fn url(server: &RedisServer, host: &str, query: &str) -> String {
    format!(
        "rediss://:{PASSWORD}@{host}:{}/0?connect_timeout_ms=1500{query}",
        server.tls_port().unwrap()
    )
}

/// The error of one call, which must be one line without the password.
async fn failure(url: &str) -> StoreError {
    let store = open(url).await.expect("opening does not connect");
    let e = tokio::time::timeout(Duration::from_secs(8), store.get("k"))
        .await
        .expect("no hang")
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains('\n'), "one line: {shown}");
    assert!(!shown.contains(PASSWORD), "no password: {shown}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_given_in_the_url_is_trusted_and_an_unknown_one_is_refused() {
    let certs = TestCerts::new();
    let server = tls_server(&certs, false);
    let ca = format!("&tls_ca_file={}", certs.file(CertFile::Ca));
    let store = open(&url(&server, "localhost", &ca)).await.unwrap();
    store
        .set("t", b"over tls", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(store.get("t").await.unwrap().unwrap().bytes, b"over tls");
    assert_eq!(server.cli(&["GET", "t"]), "over tls");

    // The system store alone does not know the private CA.
    let e = failure(&url(&server, "localhost", "")).await;
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(e.message.starts_with("TLS: untrusted certificate"), "{e}");
    // Nor does another CA.
    let other = format!("&tls_ca_file={}", certs.file(CertFile::OtherCa));
    let e = failure(&url(&server, "localhost", &other)).await;
    assert!(e.message.starts_with("TLS: untrusted certificate"), "{e}");
    assert!(e.message.contains("tls_ca_file"), "says what to do: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_mismatch_says_so_and_tls_server_name_fixes_it() {
    let certs = TestCerts::new();
    let server = tls_server(&certs, false);
    let ca = format!("&tls_ca_file={}", certs.file(CertFile::Ca));
    // The certificate names localhost only; 127.0.0.1 is not in it.
    let e = failure(&url(&server, "127.0.0.1", &ca)).await;
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(
        e.message.starts_with("TLS: certificate name mismatch")
            && e.message.contains("127.0.0.1")
            && e.message.contains("tls_server_name"),
        "{e}"
    );
    let named = format!("{ca}&tls_server_name=localhost");
    let store = open(&url(&server, "127.0.0.1", &named)).await.unwrap();
    store.set("n", b"by name", None).await.unwrap();
    assert_eq!(store.get("n").await.unwrap().unwrap().bytes, b"by name");
    // A wrong name is a mismatch too.
    let wrong = format!("{ca}&tls_server_name=redis.example");
    let e = failure(&url(&server, "127.0.0.1", &wrong)).await;
    assert!(e.message.contains("not valid for redis.example"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_demands_client_certificates_gets_ours() {
    let certs = TestCerts::new();
    let server = tls_server(&certs, true);
    let ca = format!("&tls_ca_file={}", certs.file(CertFile::Ca));
    let e = failure(&url(&server, "localhost", &ca)).await;
    assert!(e.message.contains("client certificate"), "{e}");
    assert!(e.message.contains("tls_cert_file"), "says what to do: {e}");
    let with = format!(
        "{ca}&tls_cert_file={}&tls_key_file={}",
        certs.file(CertFile::ClientCert),
        certs.file(CertFile::ClientKey)
    );
    let store = open(&url(&server, "localhost", &with)).await.unwrap();
    store.set("m", b"mutual", None).await.unwrap();
    assert_eq!(store.get("m").await.unwrap().unwrap().bytes, b"mutual");

    // The backplane's connections are made the same way: pub/sub over mutual TLS.
    let backplane = store.backplane().expect("a Redis store has a backplane");
    let mut sub = backplane.subscribe("ch").await.unwrap();
    backplane.publish("ch", b"hello").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("the message came")
        .unwrap();
    assert_eq!(got, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_against_a_plain_port_and_plain_against_a_tls_port_say_so() {
    let certs = TestCerts::new();
    let server = tls_server(&certs, false);
    // rediss:// at the plain port
    let e = failure(&format!(
        "rediss://:{PASSWORD}@localhost:{}/0?connect_timeout_ms=1500&tls_ca_file={}",
        server.port(),
        certs.file(CertFile::Ca)
    ))
    .await;
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(
        e.message.starts_with("TLS/plain mismatch") && e.message.contains("use redis://"),
        "{e}"
    );
    // redis:// at the TLS port
    let e = failure(&format!(
        "redis://:{PASSWORD}@localhost:{}/0?connect_timeout_ms=1500",
        server.tls_port().unwrap()
    ))
    .await;
    assert_eq!(e.kind, StoreErrorKind::Config, "{e}");
    assert!(
        e.message.starts_with("TLS/plain mismatch") && e.message.contains("use rediss://"),
        "{e}"
    );
}
