//! Issuer identity against the real oidc-provider (docs/design.md §4): two providers
//! mounted on one host and port under `/realms/a` and `/realms/b`, with the same client
//! id and secret, as two Keycloak realms are — client credentials, OBO and the
//! authorization code flow never cross; users of a provider whose tokens carry no
//! `oid`/`tid` are named by issuer and subject, and their sign-out removes their
//! partition and every OBO partition linked to them; an issuer that is not the
//! authority is a permanent configuration error.

use std::sync::Arc;

use serde_json::Value;
use testkit::{OidcOptions, OidcProvider};
use tokencache::acquire::{
    AcquireError, AcquireOptions, Acquirer, AssertionKey, ClientCredential, OboRequest, TokenSource,
};
use tokencache::partition::PartitionKey;
use tokencache::{Secret, Subject};

#[path = "common/oidc.rs"]
mod oidc;
use oidc::{cache, sign_in, API, CC, REFRESH};

const OBO: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const A: &str = "/realms/a";
const B: &str = "/realms/b";

fn two_realms() -> OidcProvider {
    OidcProvider::start_with(&OidcOptions {
        realms: vec![A.into(), B.into()],
        ..OidcOptions::default()
    })
}

/// Client `app` (same id and secret in both realms) at `issuer`.
fn app(cache: tokencache::TokenCache, issuer: &str) -> Acquirer {
    Acquirer::builder(
        cache,
        issuer,
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .build()
    .expect("acquirer")
}

async fn get_json(url: String) -> Value {
    let b = oidc::http().get(url).send().await.unwrap().bytes().await;
    serde_json::from_slice(&b.unwrap()).unwrap()
}

/// A realm's counters.
async fn realm_stats(op: &OidcProvider, realm: &str) -> Value {
    get_json(format!("{}/__test/stats", op.realm_issuer(realm))).await
}

async fn realm_grants(op: &OidcProvider, realm: &str, grant: &str) -> u64 {
    realm_stats(op, realm).await["by_grant"][grant]
        .as_u64()
        .unwrap_or(0)
}

async fn realm_arrived(op: &OidcProvider, realm: &str) -> u64 {
    realm_stats(op, realm).await["arrived"]["token"]
        .as_u64()
        .unwrap_or(0)
}

/// A user access token of `realm` for `sub` (audience `app`) that carries `iss` and
/// `sub` only, as Keycloak's, Okta's or Auth0's do (no `oid`, no `tid`).
async fn plain_user_token(op: &OidcProvider, realm: &str, sub: &str) -> String {
    let url = format!(
        "{}/__test/mint?sub={sub}&aud=app&plain=1",
        op.realm_issuer(realm)
    );
    let v = get_json(url).await;
    let t = v["access_token"].as_str().unwrap().to_string();
    let claims = tokencache::schema::decode_jwt_claims(&t).unwrap();
    assert_eq!((claims.oid, claims.tid), (None, None), "no oid/tid");
    t
}

/// Whether `realm` says `token` is its own (signed by it, unexpired).
async fn active_at(op: &OidcProvider, realm: &str, token: &str) -> bool {
    let v: Value = oidc::http()
        .post(format!("{}/__test/active", op.realm_issuer(realm)))
        .body(token.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    v["active"].as_bool().unwrap_or(false)
}

#[tokio::test]
async fn client_credentials_of_two_realms_of_one_host_never_cross() {
    let op = two_realms();
    let c = cache().await;
    let a = app(c.clone(), &op.realm_issuer(A));
    let b = app(c.clone(), &op.realm_issuer(B));
    assert_ne!(a.authority().tenant, b.authority().tenant);
    assert_ne!(a.authority().tenant, "realms");
    assert_eq!(a.authority().environment, b.authority().environment);

    let ta = a.client_credentials(API).await.unwrap();
    assert_eq!(ta.source, TokenSource::Provider);
    // realm b's token comes from realm b, not from realm a's cached one
    let tb = b.client_credentials(API).await.unwrap();
    assert_eq!(tb.source, TokenSource::Provider);
    assert_ne!(ta.secret.expose(), tb.secret.expose());
    assert!(active_at(&op, A, ta.secret.expose()).await);
    assert!(!active_at(&op, B, ta.secret.expose()).await);
    assert!(active_at(&op, B, tb.secret.expose()).await);
    // then each from the cache, its own
    let again_a = a.client_credentials(API).await.unwrap();
    let again_b = b.client_credentials(API).await.unwrap();
    assert_eq!(again_a.source, TokenSource::Cache);
    assert_eq!(again_b.source, TokenSource::Cache);
    assert_eq!(again_a.secret.expose(), ta.secret.expose());
    assert_eq!(again_b.secret.expose(), tb.secret.expose());
    // one token request each
    assert_eq!(realm_grants(&op, A, CC).await, 1);
    assert_eq!(realm_grants(&op, B, CC).await, 1);
    // two app partitions, each with its realm's record
    let pa = PartitionKey::app("app", &a.authority().tenant);
    let pb = PartitionKey::app("app", &b.authority().tenant);
    assert_ne!(pa.as_str(), pb.as_str());
    let part = c
        .partition(
            &Subject::App {
                tenant: &a.authority().tenant,
            },
            "app",
        )
        .await
        .unwrap();
    let realms: Vec<&str> = part.access_tokens().map(|t| t.realm.as_str()).collect();
    assert_eq!(realms, [a.authority().tenant.as_str()]);
}

#[tokio::test]
async fn an_obo_assertion_of_one_realm_is_refused_by_the_other_before_any_lookup_or_request() {
    let op = two_realms();
    let c = cache().await;
    let a = app(c.clone(), &op.realm_issuer(A));
    let b = app(c.clone(), &op.realm_issuer(B));
    let x = plain_user_token(&op, A, "alice").await;
    let ta = a.on_behalf_of(&x, API).await.unwrap();
    assert_eq!(ta.source, TokenSource::Provider);
    assert_eq!(
        a.on_behalf_of(&x, API).await.unwrap().source,
        TokenSource::Cache
    );
    // realm b's API is handed realm a's assertion: refused, no cache read, no request
    let before = realm_arrived(&op, B).await;
    let e = b.on_behalf_of(&x, API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("another issuer"), "{e}");
    assert!(
        !e.to_string().contains(&x),
        "the assertion is never in an error"
    );
    assert!(b.obo_lookup(&x, API).is_err());
    // the same check from claims a caller decoded (serve's validated bearer)
    let a_iss = op.realm_issuer(A);
    assert!(b
        .obo_lookup_with_claims(&x, Some(&a_iss), None, API)
        .is_err());
    assert!(b.obo_lookup_with_claims(&x, None, None, API).is_err());
    let b_iss = op.realm_issuer(B);
    assert!(b
        .obo_lookup_with_claims(&x, Some(&b_iss), None, API)
        .is_ok());
    assert!(b
        .obo_lookup_with_claims(&x, Some(&format!("{b_iss}/")), None, API)
        .is_ok());
    let mut exchange = OboRequest::new(&x, API);
    exchange.form = tokencache::acquire::OboForm::TokenExchange;
    assert!(b
        .on_behalf_of_with(&exchange, &AcquireOptions::default())
        .await
        .is_err());
    assert_eq!(realm_arrived(&op, B).await, before);
    assert_eq!(realm_grants(&op, B, OBO).await, 0);
    // realm b's own users get realm b's tokens
    let y = plain_user_token(&op, B, "alice").await;
    let tb = b.on_behalf_of(&y, API).await.unwrap();
    assert_eq!(tb.source, TokenSource::Provider);
    assert_ne!(tb.secret.expose(), ta.secret.expose());
    assert!(active_at(&op, B, tb.secret.expose()).await);
    assert_eq!(realm_grants(&op, A, OBO).await, 1);
    assert_eq!(realm_grants(&op, B, OBO).await, 1);
    // a forged assertion naming realm b's issuer but signed by nobody is b's to refuse:
    // the cache holds nothing for it
    let forged = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64_url(&format!(
            r#"{{"iss":"{}","sub":"alice","aud":"app"}}"#,
            op.realm_issuer(B)
        ))
    );
    assert!(c
        .find_access_token(&b.obo_lookup(&forged, API).unwrap().expect("a lookup"))
        .await
        .unwrap()
        .is_none());
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn sign_ins_of_one_subject_at_two_realms_are_two_users() {
    let op = two_realms();
    let c = cache().await;
    let a = app(c.clone(), &op.realm_issuer(A));
    let b = app(c.clone(), &op.realm_issuer(B));
    let sa = sign_in(&a, "carol").await;
    let sb = sign_in(&b, "carol").await;
    assert_eq!(sa.subject, sb.subject, "one subject name in both realms");
    assert_ne!(sa.home_account_id, sb.home_account_id);
    assert_eq!(
        sa.home_account_id,
        format!("carol.{}", a.authority().tenant)
    );
    assert_eq!(
        a.acquire_silent(&sa.home_account_id, API)
            .await
            .unwrap()
            .secret
            .expose(),
        sa.token.secret.expose()
    );
    assert_eq!(
        b.acquire_silent(&sb.home_account_id, API)
            .await
            .unwrap()
            .secret
            .expose(),
        sb.token.secret.expose()
    );
    // realm a's account at realm b: refused before its refresh token could be sent
    let before = realm_arrived(&op, B).await;
    let e = b
        .acquire_silent_with(&sa.home_account_id, API, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::Config(_)), "{e:?}");
    assert_eq!(realm_arrived(&op, B).await, before);
    // each realm refreshes its own
    a.acquire_silent_with(&sa.home_account_id, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();
    assert_eq!(realm_grants(&op, A, REFRESH).await, 1);
    assert_eq!(realm_grants(&op, B, REFRESH).await, 0);
    assert_eq!(realm_grants(&op, A, "authorization_code").await, 1);
    assert_eq!(realm_grants(&op, B, "authorization_code").await, 1);
}

#[tokio::test]
async fn sign_out_of_a_user_without_oid_tid_removes_the_user_and_every_obo_partition() {
    let op = two_realms();
    let c = cache().await;
    let a = app(c.clone(), &op.realm_issuer(A));
    let s = sign_in(&a, "dora").await;
    let home = s.home_account_id.clone();
    // two OBO partitions of dora's (two incoming tokens), linked by issuer and subject
    let x1 = plain_user_token(&op, A, "dora").await;
    let x2 = plain_user_token(&op, A, "dora").await;
    a.on_behalf_of(&x1, API).await.unwrap();
    a.on_behalf_of(&x2, API).await.unwrap();
    // another user's, which stays
    let other = plain_user_token(&op, A, "erin").await;
    a.on_behalf_of(&other, API).await.unwrap();
    assert_eq!(realm_grants(&op, A, OBO).await, 3);
    assert_eq!(
        a.on_behalf_of(&x1, API).await.unwrap().source,
        TokenSource::Cache
    );

    let out = c.remove_account(&home).await.unwrap();
    assert_eq!(out.obo_partitions, 2, "{out:?}");
    // (a request started in the sign-out's own second is refused: the safe side)
    let clock = c.two_level().clock().clone();
    let signed_out_at = clock.now_secs();
    oidc::wait_until("the next second", std::time::Duration::from_secs(5), || {
        let clock = clock.clone();
        async move { clock.now_secs() > signed_out_at }
    })
    .await;
    // the next OBO request goes to the provider
    assert_eq!(
        a.on_behalf_of(&x1, API).await.unwrap().source,
        TokenSource::Provider
    );
    assert_eq!(realm_grants(&op, A, OBO).await, 4);
    // the user partition is gone: no silent token
    let e = a.acquire_silent(&home, API).await.unwrap_err();
    assert!(e.requires_interaction(), "{e:?}");
    // erin's stays
    assert_eq!(
        a.on_behalf_of(&other, API).await.unwrap().source,
        TokenSource::Cache
    );
}

#[tokio::test]
async fn an_issuer_that_is_not_the_authority_is_a_permanent_configuration_error() {
    // discovery at 127.0.0.1, the document's issuer localhost
    let op = OidcProvider::start_with(&OidcOptions {
        issuer_host: Some("localhost".into()),
        ..OidcOptions::default()
    });
    let c = cache().await;
    let a = app(c, &format!("http://127.0.0.1:{}", op.port()));
    for _ in 0..2 {
        let e = a.client_credentials(API).await.unwrap_err();
        assert!(
            matches!(e, AcquireError::ProviderMisconfigured { .. }),
            "{e:?}"
        );
        assert!(!e.is_temporary());
        assert_eq!(e.code(), "provider_misconfigured");
        assert!(e.to_string().contains("localhost"), "{e}");
    }
    assert_eq!(oidc::arrived(&op, "token").await, 0);
}

#[tokio::test]
async fn a_refresh_response_without_id_token_keeps_the_account_and_the_rotated_refresh_token() {
    let op = two_realms();
    let c = cache().await;
    let a = app(c.clone(), &op.realm_issuer(A));
    let s = sign_in(&a, "fred").await;
    let rt0 = c
        .find_refresh_token("app", &s.home_account_id, None)
        .await
        .unwrap()
        .unwrap();
    // the provider serves the refresh (rotating the refresh token) without id_token
    let fault = format!("{}/__test/fault?kind=no_id_token", op.realm_issuer(A));
    assert!(oidc::http()
        .post(fault)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let t1 = a
        .acquire_silent_with(&s.home_account_id, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();
    assert_eq!(t1.source, TokenSource::Provider);
    let rt1 = c
        .find_refresh_token("app", &s.home_account_id, None)
        .await
        .unwrap()
        .expect("the rotated refresh token is kept under the user");
    assert_ne!(rt0.expose(), rt1.expose());
    // the rotated one works (reusing the old one would revoke the grant)
    let t2 = a
        .acquire_silent_with(&s.home_account_id, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();
    assert_ne!(t1.secret.expose(), t2.secret.expose());
    assert_eq!(realm_grants(&op, A, REFRESH).await, 2);
    assert!(realm_stats(&op, A).await["errors"]
        .as_object()
        .unwrap()
        .is_empty());
    // the account record is still there, with its issuer-qualified id
    let p = c
        .partition(&Subject::User(&s.home_account_id), "app")
        .await
        .unwrap();
    assert!(p
        .accounts()
        .any(|acc| acc.home_account_id == s.home_account_id && acc.realm == a.authority().tenant));
}

#[tokio::test]
async fn a_private_key_jwt_assertion_is_made_anew_for_every_attempt_retries_included() {
    let op = OidcProvider::start();
    let (pem, kid) = oidc::app_jwt_key(&op).await;
    let key = AssertionKey::from_pem(pem.as_bytes(), Some(&kid)).unwrap();
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app-jwt",
        ClientCredential::PrivateKeyJwt(Arc::new(key)),
    )
    .build()
    .unwrap();
    // the first attempt is served (its assertion's jti is used up), then answered 500:
    // the retry must carry a new assertion, or oidc-provider refuses the replayed jti
    oidc::fault(&op, "kind=consume500").await;
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert_eq!(a.token_requests(), 2);
    assert_eq!(oidc::grant_count(&op, CC).await, 2);
    let errors = oidc::provider_errors(&op).await;
    assert!(errors.get("invalid_client").is_none(), "{errors}");
    assert!(oidc::active(&op, t.secret.expose()).await);
}

#[tokio::test]
async fn an_assertion_file_that_was_not_renewed_is_not_sent_again_on_a_retry() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("assertion");
    let v = get_json(format!("{}/__test/client-assertion", op.base())).await;
    std::fs::write(&file, v["assertion"].as_str().unwrap()).unwrap();
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app-jwt",
        ClientCredential::AssertionFile(file.clone()),
    )
    .build()
    .unwrap();
    // served (the file's jti used up), answered 500: the retry would replay it
    oidc::fault(&op, "kind=consume500").await;
    let e = a.client_credentials(API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Credential { .. }), "{e:?}");
    assert_eq!(a.token_requests(), 1, "the replay was not sent");
    assert_eq!(oidc::arrived(&op, "token").await, 1);
    assert!(oidc::provider_errors(&op)
        .await
        .get("invalid_client")
        .is_none());
    // a renewed file is used at the next call
    let v = get_json(format!("{}/__test/client-assertion", op.base())).await;
    std::fs::write(&file, v["assertion"].as_str().unwrap()).unwrap();
    a.client_credentials(API).await.unwrap();
}

#[tokio::test]
async fn a_provider_error_that_is_not_oauth_json_keeps_its_status_and_a_secret_free_excerpt() {
    let op = OidcProvider::start();
    let a = app(cache().await, &op.issuer());
    oidc::fault(&op, "kind=html").await;
    let e = a.client_credentials(API).await.unwrap_err();
    let AcquireError::Status {
        status, excerpt, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(*status, 404);
    let excerpt = excerpt.as_deref().unwrap();
    assert!(excerpt.contains("Realm does not exist"), "{excerpt}");
    assert!(e.to_string().contains("Realm does not exist"), "{e}");
    // the echoed Basic credentials and secret are not kept
    for secret in ["app-secret", "YXBwOmFwcC1zZWNyZXQ", "<html>"] {
        assert!(!e.to_string().contains(secret), "{secret} in {e}");
    }
    assert!(!e.is_temporary());
}

#[tokio::test]
async fn a_long_running_session_key_of_one_realm_is_not_the_others() {
    let op = two_realms();
    let c = cache().await;
    let a = app(c.clone(), &op.realm_issuer(A));
    let b = app(c.clone(), &op.realm_issuer(B));
    let x = plain_user_token(&op, A, "gail").await;
    let gail_a = format!("gail.{}", a.authority().tenant);
    let mut start = OboRequest::new(&x, API);
    start.session_key = Some("nightly-report");
    start.user = Some(&gail_a);
    a.on_behalf_of_with(&start, &AcquireOptions::default())
        .await
        .unwrap();
    // realm a's session goes on from its own refresh token
    let t = a
        .acquire_in_session_with(
            "nightly-report",
            &gail_a,
            API,
            &AcquireOptions::force_refresh(),
        )
        .await
        .unwrap();
    assert!(active_at(&op, A, t.secret.expose()).await);
    // realm b, same session key: nothing of realm a's session, no refresh token sent
    let before = realm_arrived(&op, B).await;
    let gail_b = format!("gail.{}", b.authority().tenant);
    let e = b
        .acquire_in_session("nightly-report", &gail_b, API)
        .await
        .unwrap_err();
    assert!(e.requires_interaction(), "{e:?}");
    assert_eq!(realm_arrived(&op, B).await, before);
}
