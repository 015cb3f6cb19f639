//! Secrets never leave through `Debug`, `Display`, errors or logs: every public
//! configuration type, store, cache, validator and error that may hold or be built from
//! a URL with a password (or a token) is formatted, every log line of the run is
//! captured at TRACE, and the password may appear nowhere. Nothing here needs a server:
//! the Redis URLs point at 127.0.0.1:1, where nothing listens, so every call fails and
//! its error is formatted too.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokencache::signout::{Jwks, LogoutTokenValidator, RemoteOptions, SessionIndex};
use tokencache::store::chaos::ChaosStore;
use tokencache::store::{
    self, EmbeddedOptions, EmbeddedStore, RedisOptions, RedisStore, SharedStore, StoreUrl,
};
use tokencache::twolevel::TwoLevelOptions;
use tokencache::{Error, TokenCache};

/// The password (and token) that must never be shown.
const SECRET: &str = "hunter2secret";

/// Everything the log subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What was formatted, labelled, so that a failure names the culprit.
#[derive(Default)]
struct Shown(Vec<(String, String)>);

impl Shown {
    /// `{:?}` of `value`.
    fn debug(&mut self, what: &str, value: &dyn std::fmt::Debug) {
        self.0
            .push((format!("{what} (Debug)"), format!("{value:?}")));
    }

    /// `{}` and `{:?}` of `value`.
    fn both<T: std::fmt::Display + std::fmt::Debug>(&mut self, what: &str, value: &T) {
        self.0
            .push((format!("{what} (Display)"), value.to_string()));
        self.debug(what, value);
    }

    fn assert_clean(&self) {
        for (what, text) in &self.0 {
            assert!(!text.contains(SECRET), "{what} shows the secret: {text}");
            assert!(!text.is_empty(), "{what} is empty");
        }
    }
}

#[tokio::test]
async fn no_debug_display_error_or_log_line_shows_a_password_or_token() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let mut shown = Shown::default();

    let url = format!("redis://alice:{SECRET}@127.0.0.1:1/0?password={SECRET}");
    let cluster_url = format!("rediss+cluster://alice:{SECRET}@127.0.0.1:1,127.0.0.1:2");

    // ---- URLs and options
    for u in [&url, &cluster_url] {
        let parsed = StoreUrl::parse(u).unwrap();
        shown.both("StoreUrl", &parsed);
        shown.0.push(("redact_url".into(), store::redact_url(u)));
    }
    shown.debug("RedisOptions", &RedisOptions::default());
    shown.debug("TwoLevelOptions", &TwoLevelOptions::default());
    shown.debug("EmbeddedOptions", &EmbeddedOptions::default());
    shown.debug("RemoteOptions", &RemoteOptions::default());

    // ---- the builder, the cache, the two-level layer
    let builder = TokenCache::builder()
        .store_url(&url)
        .l2_timeout(Duration::from_millis(200));
    shown.debug("TokenCacheBuilder", &builder);
    assert!(
        format!("{builder:?}").contains("redis://alice:***@127.0.0.1:1/0"),
        "the redacted URL is still useful: {builder:?}"
    );
    let cache = builder.build().await.unwrap();
    shown.debug("TokenCache", &cache);
    shown.debug("TwoLevel", cache.two_level());
    shown.debug("Stats", &cache.stats());
    let out = cache.remove_account("oid.tid").await.unwrap();
    assert!(!out.l2_complete, "nothing listens at 127.0.0.1:1");
    shown.debug("SignOut", &out);
    let sessions = SessionIndex::new(&cache);
    shown.debug("SessionIndex", &sessions);
    let e = sessions
        .find_by_sid("https://idp.test", "sid")
        .await
        .unwrap_err();
    shown.both("Error from the session index", &e);

    // ---- stores
    let opened: SharedStore = store::open(&url).await.unwrap();
    shown.debug("store::open (redis)", &opened);
    let e = opened.get("k").await.unwrap_err();
    assert!(e.endpoint.contains("127.0.0.1:1"), "{e}");
    shown.both("StoreError (connection)", &e);
    shown.both("Error::Store", &Error::from(e));
    let redis = RedisStore::standalone(&url, RedisOptions::default()).unwrap();
    shown.debug("RedisStore standalone", &redis);
    shown.0.push((
        "RedisStore::endpoint".into(),
        tokencache::store::Store::endpoint(&redis),
    ));
    let seeds = vec![
        format!("redis://alice:{SECRET}@127.0.0.1:1"),
        format!("redis://alice:{SECRET}@127.0.0.1:2"),
    ];
    let cluster = RedisStore::cluster(&seeds, RedisOptions::default()).unwrap();
    shown.debug("RedisStore cluster", &cluster);
    let e = tokencache::store::Store::health(&cluster)
        .await
        .unwrap_err();
    shown.both("StoreError (cluster)", &e);
    let chaos = ChaosStore::passthrough(Arc::new(redis));
    shown.debug("ChaosStore", &chaos);
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(&dir.path().join("s.redb"))
        .await
        .unwrap();
    shown.debug("EmbeddedStore", &embedded);

    // ---- configuration errors from URLs with a password
    for bad in [
        format!("redis://alice:{SECRET}@127.0.0.1:1/not-a-db"),
        format!("redis://alice:{SECRET}@127.0.0.1:1,127.0.0.1:2/"),
        format!("redis://alice:{SECRET}@127.0.0.1:1/?connect_timeout_ms={SECRET}"),
        format!("rediss://alice:{SECRET}@127.0.0.1:1/?tls_ca_file=/nonexistent/ca.pem"),
        format!("postgres://alice:{SECRET}@db/x"),
        format!("alice:{SECRET}@127.0.0.1:1"),
    ] {
        let e = store::open(&bad).await.unwrap_err();
        shown.both(
            &format!("store::open error for {}", store::redact_url(&bad)),
            &e,
        );
        let e = TokenCache::builder()
            .store_url(&bad)
            .build()
            .await
            .unwrap_err();
        shown.both("TokenCacheBuilder::build error", &e);
    }
    let e = RedisStore::standalone(
        &format!("redis://alice:{SECRET}@127.0.0.1:1/not-a-db"),
        RedisOptions::default(),
    )
    .unwrap_err();
    shown.both("RedisStore::standalone error", &e);

    // ---- back-channel logout: JWKS, validator, state, errors
    let jwks_uri = format!("https://alice:{SECRET}@127.0.0.1:1/keys?api_key={SECRET}");
    let jwks = Jwks::remote_with(
        &jwks_uri,
        RemoteOptions {
            timeout: Duration::from_millis(500),
            ..RemoteOptions::default()
        },
    )
    .unwrap();
    shown.debug("Jwks", &jwks);
    let builder = LogoutTokenValidator::builder("https://idp.test", "client", jwks.clone())
        .replay_cache(&cache);
    shown.debug("LogoutTokenValidatorBuilder", &builder);
    let validator = builder.build();
    shown.debug("LogoutTokenValidator", &validator);
    let state = tokencache::signout::axum::SignOutState::new(&cache, validator.clone())
        .redirect_after_sign_out(&format!(
            "https://idp.test/logout?id_token_hint={SECRET}&post_logout_redirect_uri=x"
        ));
    shown.debug("SignOutState", &state);
    // a well-formed token whose keys must be fetched: the fetch fails
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "RS256", "kid": "k"})),
        b64(serde_json::json!({"iss": "https://idp.test", "secret": SECRET})),
        SECRET
    );
    let e = validator.validate(&token).await.unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    shown.both("LogoutError (JWKS fetch)", &e);
    let form = tokencache::signout::axum::BackChannelForm {
        logout_token: Some(token.clone()),
    };
    shown.debug("BackChannelForm", &form);
    let e = validator
        .validate(&format!("{SECRET}.{SECRET}.{SECRET}"))
        .await
        .unwrap_err();
    shown.both("LogoutError (malformed)", &e);
    let e = Jwks::remote(&format!("http://alice:{SECRET}@idp.test/keys")).unwrap_err();
    shown.both("JwksError (bad URI)", &e);
    let e = Jwks::remote(&format!("https://alice:{SECRET}@[::1/keys")).unwrap_err();
    shown.both("JwksError (unparsable URI)", &e);

    // ---- credentials of deployments (issue 24): files, certificates, managed identity
    {
        use tokencache::acquire::{
            Acquirer, AssertionKey, CertificateOptions, CertificatePassword, ClientCertificate,
            ClientCredential, HttpOptions, ManagedIdentity, ManagedIdentityId,
            ManagedIdentitySource, SecretFile, WorkloadIdentity,
        };
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/acquire/");
        let secret_file = dir.path().join("client-secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        let sf = Arc::new(SecretFile::open_checking_every(&secret_file, Duration::ZERO).unwrap());
        shown.debug("SecretFile", &sf);
        // a rotation that does not load is logged (by path) and the old secret kept
        std::fs::write(&secret_file, "").unwrap();
        let _ = ClientCredential::SecretFileBasic(sf.clone());
        let pem = ClientCertificate::from_pem_files(
            format!("{fixtures}client-key.pem"),
            Some(format!("{fixtures}client-chain.pem").into()),
            CertificateOptions {
                send_x5c: true,
                ..CertificateOptions::default()
            },
        )
        .unwrap();
        shown.debug("ClientCertificate (PEM)", &pem);
        let pw = CertificatePassword::Value(tokencache::Secret::new(SECRET));
        shown.debug("CertificatePassword", &pw);
        shown.debug("CertificateOptions", &CertificateOptions::default());
        let e = ClientCertificate::from_pkcs12_file(
            format!("{fixtures}client.p12"),
            pw,
            CertificateOptions::default(),
        )
        .unwrap_err();
        shown.both("AcquireError (PKCS#12 password)", &e);
        let key = AssertionKey::from_pem(
            &std::fs::read(format!("{fixtures}client-key.pem")).unwrap(),
            Some("kid"),
        )
        .unwrap();
        shown.debug("AssertionKey", &key);
        let assertion_file = dir.path().join("token");
        std::fs::write(&assertion_file, format!("not a jwt {SECRET}")).unwrap();
        let workload = WorkloadIdentity::from_lookup(&|k| match k {
            "AZURE_CLIENT_ID" => Some("c".into()),
            "AZURE_TENANT_ID" => Some("t".into()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some(assertion_file.display().to_string()),
            _ => None,
        })
        .unwrap();
        shown.debug("WorkloadIdentity", &workload);
        let source = ManagedIdentitySource::from_lookup(&|k| match k {
            "IDENTITY_ENDPOINT" => Some("http://127.0.0.1:1/msi/token".into()),
            "IDENTITY_HEADER" => Some(SECRET.into()),
            _ => None,
        })
        .unwrap();
        shown.debug("ManagedIdentitySource", &source);
        let quick = HttpOptions {
            timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(200),
            max_retries: 0,
            ..HttpOptions::default()
        };
        let mi = ManagedIdentity::builder(cache.clone())
            .source(source)
            .identity(ManagedIdentityId::SystemAssigned)
            .http(quick)
            .build()
            .unwrap();
        shown.debug("ManagedIdentity", &mi);
        let e = mi.acquire("https://vault.azure.net").await.unwrap_err();
        shown.both("AcquireError (managed identity down)", &e);
        for credential in [
            ClientCredential::SecretFileBasic(sf.clone()),
            ClientCredential::SecretFilePost(sf),
            ClientCredential::Certificate(Arc::new(pem)),
            ClientCredential::PrivateKeyJwt(Arc::new(key)),
            workload.credential(),
            ClientCredential::ManagedIdentityAssertion(mi.clone()),
        ] {
            shown.debug("ClientCredential", &credential);
            let a = Acquirer::builder(cache.clone(), "https://127.0.0.1:1/t", "c", credential)
                .http(quick)
                .build()
                .unwrap();
            shown.debug("Acquirer", &a);
        }
        let over_mi = Acquirer::managed_identity(mi).unwrap();
        shown.debug("Acquirer (managed identity)", &over_mi);
        // an assertion file that is no JWT: the error names the file, not its content
        let a = Acquirer::builder(
            cache.clone(),
            "http://127.0.0.1:1/t",
            "c",
            workload.credential(),
        )
        .provider(tokencache::acquire::Provider {
            authority: tokencache::acquire::Authority::parse("http://127.0.0.1:1/t").unwrap(),
            metadata: tokencache::acquire::ProviderMetadata {
                issuer: "http://127.0.0.1:1/t".into(),
                token_endpoint: url::Url::parse("http://127.0.0.1:1/t/token").unwrap(),
                authorization_endpoint: None,
                jwks_uri: None,
                token_endpoint_auth_methods: Vec::new(),
                grant_types: Vec::new(),
            },
            jwks: None,
            tenant_id: None,
        })
        .build()
        .unwrap();
        let e = a.client_credentials(&["s"]).await.unwrap_err();
        assert!(e.to_string().contains("client assertion file"), "{e}");
        shown.both("AcquireError (assertion file)", &e);
    }

    // ---- what was logged meanwhile
    drop(_logs);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("127.0.0.1:1"),
        "the L2 and JWKS failures were logged: {logs}"
    );
    shown.0.push(("logs".into(), logs));
    if std::env::var_os("SHOW_SECRETS_TEST").is_some() {
        for (w, t) in &shown.0 {
            eprintln!("== {w}: {t}");
        }
    }
    shown.assert_clean();
}

#[tokio::test]
async fn a_redis_with_a_password_never_shows_it_right_or_wrong() {
    let wrong = "wrong-hunter2secret-guess";
    let server = testkit::RedisServer::start_with(&["--requirepass", SECRET]);
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let mut shown = Shown::default();

    // the right password: the cache works, and shows none of it
    let right = format!("redis://default:{SECRET}@127.0.0.1:{}/", server.port());
    let cache = TokenCache::builder()
        .store_url(&right)
        .build()
        .await
        .unwrap();
    let sessions = SessionIndex::new(&cache);
    sessions
        .record("https://idp.test", Some("sid"), None, "oid.tid")
        .await
        .unwrap();
    assert_eq!(
        sessions
            .find_by_sid("https://idp.test", "sid")
            .await
            .unwrap()
            .as_deref(),
        Some("oid.tid"),
        "Redis with the password works"
    );
    shown.debug("TokenCache", &cache);
    shown.debug("store", cache.two_level().store());

    // a wrong password: an authentication error that names neither password
    let bad = format!("redis://default:{wrong}@127.0.0.1:{}/", server.port());
    let store = store::open(&bad).await.unwrap();
    let e = store.get("k").await.unwrap_err();
    assert!(
        e.message.contains("authentication failed") || e.message.contains("WRONGPASS"),
        "{e}"
    );
    shown.both("StoreError (wrong password)", &e);
    let cache = TokenCache::builder().store_url(&bad).build().await.unwrap();
    let e = SessionIndex::new(&cache)
        .find_by_sid("https://idp.test", "sid")
        .await
        .unwrap_err();
    shown.both("Error (wrong password)", &e);

    drop(_logs);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains(&server.port().to_string()), "{logs}");
    shown.0.push(("logs".into(), logs));
    shown.assert_clean(); // covers `wrong` too: it contains SECRET
    assert!(wrong.contains(SECRET));
}

/// The paths of Redis as it is deployed (TLS, Sentinel, the check, password variables,
/// URLs refused for their password): none shows the password, in what it returns or
/// what it logs.
#[tokio::test]
async fn tls_sentinel_check_and_password_paths_never_show_it() {
    use testkit::{CertFile, TestCerts};
    use tokencache::store::redis::TlsClientCert;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let mut shown = Shown::default();

    // options holding a client key
    let options = RedisOptions {
        tls_client: Some(TlsClientCert {
            cert_pem: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            key_pem: zeroize::Zeroizing::new(format!("KEY {SECRET}").into_bytes()),
        }),
        tls_server_name: Some("redis.internal".into()),
        ..RedisOptions::default()
    };
    shown.debug("RedisOptions (client certificate)", &options);

    // URLs refused for their password, and sentinel URLs
    for bad in [
        format!("redis://alice:{SECRET}/x@127.0.0.1:1"),
        format!("redis://:{SECRET}#x@127.0.0.1:1"),
        format!("redis+sentinel://alice:{SECRET}/x@127.0.0.1:26379/m"),
        format!("redis+sentinel://alice:{SECRET}@127.0.0.1:26379"),
        format!("rediss+cluster://alice:{SECRET}@127.0.0.1:1?tls_server_name=x"),
        format!("rediss://alice:{SECRET}@127.0.0.1:1?tls_cert_file=/nonexistent/c.pem&tls_key_file=/nonexistent/k.pem"),
    ] {
        shown.0.push(("redact_url".into(), store::redact_url(&bad)));
        match store::open(&bad).await {
            Err(e) => shown.both(&format!("open error for {}", store::redact_url(&bad)), &e),
            Ok(s) => shown.debug("opened", &s),
        }
    }
    let sentinel_url =
        format!("redis+sentinel://alice:{SECRET}@127.0.0.1:1,127.0.0.1:2/mymaster/0");
    let parsed = StoreUrl::parse(&sentinel_url).unwrap();
    shown.both("StoreUrl (sentinel)", &parsed);
    let sentinel = parsed.open_redis().unwrap();
    shown.debug("RedisStore (sentinel)", &sentinel);
    let e = tokencache::store::Store::get(&sentinel, "k")
        .await
        .unwrap_err();
    shown.both("StoreError (no Sentinel answers)", &e);
    shown.0.push((
        "check (no Sentinel)".into(),
        sentinel.check("P").await.to_string(),
    ));

    // TLS refusals, and a check over TLS, with the password in the URL
    let certs = TestCerts::new();
    let server = testkit::RedisServer::start_tls(&certs, true, &["--requirepass", SECRET]);
    let port = server.tls_port().unwrap();
    for query in [
        String::new(),
        format!("tls_ca_file={}", certs.file(CertFile::OtherCa)),
        format!("tls_ca_file={}", certs.file(CertFile::Ca)),
    ] {
        let url = format!("rediss://default:{SECRET}@localhost:{port}/0?{query}");
        let s = StoreUrl::parse(&url).unwrap().open_redis().unwrap();
        let e = tokencache::store::Store::get(&s, "k").await.unwrap_err();
        shown.both("StoreError (TLS)", &e);
        shown
            .0
            .push(("check (TLS)".into(), s.check("P").await.to_string()));
    }
    let url = format!(
        "rediss://default:{SECRET}x@localhost:{port}/0?tls_ca_file={}&tls_cert_file={}&tls_key_file={}",
        certs.file(CertFile::Ca),
        certs.file(CertFile::ClientCert),
        certs.file(CertFile::ClientKey)
    );
    let s = StoreUrl::parse(&url).unwrap().open_redis().unwrap();
    let report = s.check("P").await;
    assert!(
        report
            .line("auth")
            .is_some_and(|l| l.to_string().contains("MISSING")),
        "{report}"
    );
    shown.0.push((
        "check (wrong password over mutual TLS)".into(),
        report.to_string(),
    ));
    report.log_missing();
    // a cache on it: the start-up check and the outage are logged
    let cache = TokenCache::builder().store_url(&url).build().await.unwrap();
    let lookup = tokencache::Lookup::user("client", "o.t", &["s"]);
    let _ = cache.find_access_token(&lookup).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    drop(_logs);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("authentication failed"),
        "the failures were logged: {logs}"
    );
    shown.0.push(("logs".into(), logs));
    if std::env::var_os("SHOW_SECRETS_TEST").is_some() {
        for (w, t) in &shown.0 {
            eprintln!("== {w}: {t}");
        }
    }
    shown.assert_clean();
}
