//! Credentials of real deployments (issue 24) against the real oidc-provider:
//!
//! * a client assertion read from a file for every token request (workload identity
//!   federation): the provider refuses a replayed assertion (`jti`), so a cached one
//!   would fail; a missing, empty or expired file is a typed error and no request;
//! * the Azure workload identity variables (`AZURE_*`) against a provider served under
//!   `/{tenant}/v2.0` as Entra is;
//! * `private_key_jwt`: a retry sends a new assertion;
//! * certificates (PEM, PKCS#12 modern and legacy, `x5c`) for client `app-cert`;
//! * a secret file and certificate files rotated without restart;
//! * managed identity as the federated credential of an app registration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testkit::{ManagedIdentityEndpoint, OidcOptions, OidcProvider};
use tokencache::acquire::{
    AcquireError, AcquireOptions, Acquirer, AssertionKey, CertificateOptions, CertificatePassword,
    ClientCertificate, ClientCredential, HttpOptions, ManagedIdentity, ManagedIdentitySource,
    OAuthErrorCode, SecretFile, TokenSource, WorkloadIdentity,
};
use tokencache::Secret;

#[path = "common/oidc.rs"]
mod oidc;
use oidc::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/acquire/");

fn fixture(name: &str) -> String {
    format!("{FIXTURES}{name}")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A client assertion for `app-jwt`, signed with its key, as a platform would write it
/// into the token file: a new `jti` each time.
fn signed_assertion(key_pem: &str, kid: &str, audience: &str, exp_in: i64) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let now = unix_now();
    let jti = format!("jti-{}-{}", now, rand_suffix());
    let claims = json!({
        "iss": "app-jwt", "sub": "app-jwt", "aud": audience, "jti": jti,
        "iat": now, "exp": now + exp_in,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 20
}

/// Writes `text` into `path` as a platform does: a new file renamed over the old one.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn token_endpoint(op: &OidcProvider) -> String {
    format!("{}/token", op.issuer())
}

#[tokio::test]
async fn an_assertion_file_is_read_for_every_request_and_checked_before_any() {
    let op = OidcProvider::start();
    let (pem, kid) = app_jwt_key(&op).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let c = cache().await;
    let a = Acquirer::builder(
        c.clone(),
        &op.issuer(),
        "app-jwt",
        ClientCredential::AssertionFile(file.clone()),
    )
    .build()
    .unwrap();
    a.provider().await.unwrap();
    let aud = token_endpoint(&op);
    // missing, empty, not a JWT, expired: typed errors naming the file, no request
    for content in [None, Some(""), Some("garbage"), Some("expired")] {
        match content {
            None => {}
            Some("expired") => rewrite(&file, &signed_assertion(&pem, &kid, &aud, -60)),
            Some(t) => rewrite(&file, t),
        }
        let e = a.client_credentials(API).await.unwrap_err();
        assert!(
            matches!(e, AcquireError::Credential { .. }),
            "{content:?}: {e:?}"
        );
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        assert_eq!(e.code(), "credential");
    }
    assert_eq!(arrived(&op, "token").await, 0, "no request was sent");
    // the platform writes a fresh assertion before each forced request: each is used
    let mut seen = Vec::new();
    for round in 0..3 {
        rewrite(&file, &signed_assertion(&pem, &kid, &aud, 600));
        let t = a
            .client_credentials_with(API, &AcquireOptions::force_refresh())
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(t.source, TokenSource::Provider);
        assert!(active(&op, t.secret.expose()).await);
        seen.push(t.secret);
    }
    assert_eq!(grant_count(&op, CC).await, 3);
    // a cached assertion would be a replay, which the provider refuses: the control
    let e = a
        .client_credentials_with(API, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_code(),
        Some(&OAuthErrorCode::InvalidClient),
        "{e:?}"
    );
    // between requests the token is served from the cache, file or no file
    std::fs::remove_file(&file).unwrap();
    let cached = a.client_credentials(API).await.unwrap();
    assert_eq!(cached.source, TokenSource::Cache);
    assert_eq!(&cached.secret, seen.last().unwrap());
}

#[tokio::test]
async fn workload_identity_variables_name_the_authority_client_and_token_file() {
    // served under /tenant1/v2.0, as Entra's authorities are
    let op = OidcProvider::start_with(&OidcOptions {
        issuer_path: Some("/tenant1/v2.0".into()),
        ..OidcOptions::default()
    });
    let (pem, kid) = app_jwt_key(&op).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let (base, path) = (op.base(), file.display().to_string());
    let wi = WorkloadIdentity::from_lookup(&move |k| match k {
        "AZURE_CLIENT_ID" => Some("app-jwt".into()),
        "AZURE_TENANT_ID" => Some("tenant1".into()),
        "AZURE_FEDERATED_TOKEN_FILE" => Some(path.clone()),
        "AZURE_AUTHORITY_HOST" => Some(format!("{base}/")),
        _ => None,
    })
    .unwrap();
    assert_eq!(wi.authority, op.issuer());
    let a = Acquirer::builder(cache().await, &wi.authority, &wi.client_id, wi.credential())
        .build()
        .unwrap();
    rewrite(
        &file,
        &signed_assertion(&pem, &kid, &token_endpoint(&op), 600),
    );
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert!(active(&op, t.secret.expose()).await);
    // the authority the variables name, keyed by its issuer (not an Entra host)
    assert!(a.authority().url.path().starts_with("/tenant1/"));
    assert_eq!(
        a.authority().tenant,
        tokencache::issuer::issuer_key(&op.issuer())
    );
}

#[tokio::test]
async fn a_private_key_jwt_retry_sends_a_new_assertion() {
    let op = OidcProvider::start();
    let (pem, kid) = app_jwt_key(&op).await;
    let key = AssertionKey::from_pem(pem.as_bytes(), Some(&kid)).unwrap();
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app-jwt",
        ClientCredential::PrivateKeyJwt(Arc::new(key)),
    )
    .http(HttpOptions {
        backoff: Duration::from_millis(20),
        ..HttpOptions::default()
    })
    .build()
    .unwrap();
    a.provider().await.unwrap();
    // the provider serves the request (its assertion's jti is now used), then answers 500
    fault(&op, "kind=consume500").await;
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert_eq!(a.token_requests(), 2, "retried once");
    let s = stats(&op).await;
    assert_eq!(s["by_grant"][CC], 2, "{s}");
    assert!(
        s["errors"].as_object().unwrap().is_empty(),
        "no replayed assertion: {s}"
    );
}

#[tokio::test]
async fn certificates_from_pem_and_pkcs12_authenticate_with_their_thumbprint() {
    let op = OidcProvider::start();
    let c = cache().await;
    let password = || CertificatePassword::Value(Secret::new("p12-test-password"));
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("p12-password");
    std::fs::write(&pw_file, "p12-test-password\n").unwrap();
    let x5c = CertificateOptions {
        send_x5c: true,
        ..CertificateOptions::default()
    };
    let credentials = [
        ClientCertificate::from_pem_files(
            fixture("client-key.pem"),
            Some(fixture("client-cert.pem").into()),
            CertificateOptions::default(),
        ),
        ClientCertificate::from_pem_files(
            fixture("client-key.pem"),
            Some(fixture("client-chain.pem").into()),
            x5c.clone(),
        ),
        ClientCertificate::from_pkcs12_file(fixture("client.p12"), password(), x5c),
        ClientCertificate::from_pkcs12_file(
            fixture("client-legacy.p12"),
            CertificatePassword::File(pw_file.clone()),
            CertificateOptions::default(),
        ),
    ];
    let mut thumbprints = std::collections::HashSet::new();
    for (n, cert) in credentials.into_iter().enumerate() {
        let cert = Arc::new(cert.unwrap_or_else(|e| panic!("credential {n}: {e}")));
        thumbprints.insert(cert.thumbprint_s256().unwrap());
        let a = Acquirer::builder(
            c.clone(),
            &op.issuer(),
            "app-cert",
            ClientCredential::Certificate(cert),
        )
        .build()
        .unwrap();
        let t = a
            .client_credentials_with(API, &AcquireOptions::force_refresh())
            .await
            .unwrap_or_else(|e| panic!("credential {n}: {e:?}"));
        assert_eq!(t.source, TokenSource::Provider, "credential {n}");
        assert!(active(&op, t.secret.expose()).await);
    }
    assert_eq!(thumbprints.len(), 1, "one certificate, one thumbprint");
    // start-up errors: expired, mismatched key, wrong password — each names the file
    let cases = [
        ClientCertificate::from_pem_files(
            fixture("client-key.pem"),
            Some(fixture("expired-cert.pem").into()),
            CertificateOptions::default(),
        )
        .err(),
        ClientCertificate::from_pem_files(
            fixture("other-key.pem"),
            Some(fixture("client-cert.pem").into()),
            CertificateOptions::default(),
        )
        .err(),
        ClientCertificate::from_pkcs12_file(
            fixture("client.p12"),
            CertificatePassword::Value(Secret::new("not-it")),
            CertificateOptions::default(),
        )
        .err(),
    ];
    for (e, want) in cases
        .into_iter()
        .zip(["expired", "does not match", "PKCS#12"])
    {
        let e = e.expect("refused at start");
        assert!(matches!(e, AcquireError::Credential { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(want) && text.contains("fixtures/acquire/"),
            "{text}"
        );
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("not-it"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_secret_file_and_certificate_files_rotate_without_restart() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    // a secret file: wrong at first, then the right secret
    let secret = dir.path().join("client-secret");
    rewrite(&secret, "not-the-secret\n");
    let every = Duration::from_millis(100);
    let file = Arc::new(SecretFile::open_checking_every(&secret, every).unwrap());
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app",
        ClientCredential::SecretFileBasic(file),
    )
    .build()
    .unwrap();
    let e = a.client_credentials(API).await.unwrap_err();
    assert_eq!(
        e.oauth_code(),
        Some(&OAuthErrorCode::InvalidClient),
        "{e:?}"
    );
    rewrite(&secret, "app-secret\n");
    tokio::time::sleep(every * 2).await;
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);

    // certificate files: a valid EC pair the provider does not know, then app-cert's
    // RSA pair (written one file at a time: the half-rotated pair does not load and the
    // previous one stays in use until both are there)
    let key = dir.path().join("tls.key");
    let crt = dir.path().join("tls.crt");
    std::fs::copy(fixture("ec-key.pem"), &key).unwrap();
    std::fs::copy(fixture("ec-cert.pem"), &crt).unwrap();
    let cert = Arc::new(
        ClientCertificate::from_pem_files(
            &key,
            Some(crt.clone()),
            CertificateOptions {
                check_every: every,
                ..CertificateOptions::default()
            },
        )
        .unwrap(),
    );
    let before = cert.thumbprint_s256().unwrap();
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app-cert",
        ClientCredential::Certificate(cert.clone()),
    )
    .build()
    .unwrap();
    let e = a.client_credentials(API).await.unwrap_err();
    assert_eq!(
        e.oauth_code(),
        Some(&OAuthErrorCode::InvalidClient),
        "{e:?}"
    );
    rewrite(
        &key,
        &std::fs::read_to_string(fixture("client-key.pem")).unwrap(),
    );
    tokio::time::sleep(every * 2).await;
    assert_eq!(
        cert.thumbprint_s256().unwrap(),
        before,
        "half rotated: kept"
    );
    rewrite(
        &crt,
        &std::fs::read_to_string(fixture("client-cert.pem")).unwrap(),
    );
    tokio::time::sleep(every * 2).await;
    assert_ne!(cert.thumbprint_s256().unwrap(), before, "rotated");
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
}

#[tokio::test]
async fn managed_identity_as_the_federated_credential_of_an_app_registration() {
    let op = OidcProvider::start();
    let (pem, kid) = app_jwt_key(&op).await;
    let ep = ManagedIdentityEndpoint::start();
    // The managed identity's token for api://AzureADTokenExchange is what the app
    // registration trusts: here, an assertion the provider accepts for app-jwt.
    let aud = token_endpoint(&op);
    ep.set_token_maker(Arc::new(move |_who: &str, resource: &str| {
        assert_eq!(resource, "api://AzureADTokenExchange");
        signed_assertion(&pem, &kid, &aud, 3600)
    }));
    let (endpoint, header) = (ep.identity_endpoint(), ep.identity_header());
    let source = ManagedIdentitySource::from_lookup(&move |k| match k {
        "IDENTITY_ENDPOINT" => Some(endpoint.clone()),
        "IDENTITY_HEADER" => Some(header.clone()),
        _ => None,
    })
    .unwrap();
    let c = cache().await;
    let mi = ManagedIdentity::builder(c.clone())
        .source(source)
        .build()
        .unwrap();
    let a = Acquirer::builder(
        c.clone(),
        &op.issuer(),
        "app-jwt",
        ClientCredential::ManagedIdentityAssertion(mi.clone()),
    )
    .build()
    .unwrap();
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert!(active(&op, t.secret.expose()).await);
    let asked: Vec<_> = ep.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].param("resource"),
        Some("api://AzureADTokenExchange")
    );
    assert_eq!(
        a.client_credentials(API).await.unwrap().source,
        TokenSource::Cache
    );
    // the managed identity endpoint down: a typed credential error, no token request
    drop(ep);
    let before = arrived(&op, "token").await;
    let b = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app-jwt",
        ClientCredential::ManagedIdentityAssertion(
            ManagedIdentity::builder(cache().await)
                .source(mi.source().clone())
                .http(HttpOptions {
                    max_retries: 0,
                    ..HttpOptions::default()
                })
                .build()
                .unwrap(),
        ),
    )
    .build()
    .unwrap();
    let e = b.client_credentials(API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Credential { .. }), "{e:?}");
    assert_eq!(arrived(&op, "token").await, before);
}
