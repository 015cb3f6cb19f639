//! Token acquisition end to end against a real OpenID provider on loopback:
//! `oidc-provider` (npm, pinned in interop/oidc/package-lock.json), installed by
//! interop/oidc/setup.sh and started per test by `testkit::OidcProvider` (its test
//! controls count token requests per grant and inject faults). The rotation race also
//! runs a real `redis-server`. A missing peer fails the test, with the reason.

#[path = "common/oidc.rs"]
mod oidc;
use oidc::sign_in;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testkit::{OidcOptions, OidcProvider, RedisServer};
use tokencache::acquire::{
    AcquireError, AcquireOptions, Acquirer, AssertionKey, AuthorizationParams, ClientCredential,
    HttpOptions, OAuthErrorCode, OboForm, OboRequest, RefreshLockOptions, TokenSource,
};
use tokencache::{Lookup, Secret, TokenCache};

const API: &[&str] = &["api.read"];

async fn cache() -> TokenCache {
    TokenCache::builder()
        .store_url("memory://")
        .build()
        .await
        .expect("memory cache")
}

fn basic(cache: TokenCache, op: &OidcProvider) -> Acquirer {
    Acquirer::builder(
        cache,
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .build()
    .expect("acquirer")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn stats(op: &OidcProvider) -> Value {
    http()
        .get(format!("{}/__test/stats", op.issuer()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

async fn grant_count(op: &OidcProvider, grant: &str) -> u64 {
    stats(op).await["by_grant"][grant].as_u64().unwrap_or(0)
}

async fn fault(op: &OidcProvider, query: &str) {
    let r = http()
        .post(format!("{}/__test/fault?{query}", op.issuer()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// A user access token for `sub` with audience `app`, as a web API receives it.
async fn user_token(op: &OidcProvider, sub: &str) -> String {
    let v: Value = http()
        .get(format!("{}/__test/mint?sub={sub}&aud=app", op.issuer()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

/// What the provider says of an access token: signed by it, for urn:api, unexpired
/// (then `sub` and `client_id` are the token's).
async fn introspect(op: &OidcProvider, token: &str) -> Value {
    http()
        .post(format!("{}/__test/active", op.issuer()))
        .body(token.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

async fn active(op: &OidcProvider, token: &str) -> bool {
    introspect(op, token).await["active"]
        .as_bool()
        .unwrap_or(false)
}

const CC: &str = "client_credentials";
const OBO: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const REFRESH: &str = "refresh_token";

#[tokio::test]
async fn client_credentials_by_every_client_authentication_then_from_the_cache() {
    let op = OidcProvider::start();
    let c = cache().await;
    let key: Value = http()
        .get(format!("{}/__test/client-key", op.issuer()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let signing =
        AssertionKey::from_pem(key["pem"].as_str().unwrap().as_bytes(), key["kid"].as_str())
            .unwrap();
    let clients = [
        (
            "app",
            ClientCredential::SecretBasic(Secret::new("app-secret")),
        ),
        (
            "app-post",
            ClientCredential::SecretPost(Secret::new("post-secret")),
        ),
        (
            "app-jwt",
            ClientCredential::PrivateKeyJwt(Arc::new(signing)),
        ),
    ];
    for (n, (client, credential)) in clients.into_iter().enumerate() {
        let a = Acquirer::builder(c.clone(), &op.issuer(), client, credential)
            .build()
            .unwrap();
        let first = a.client_credentials(API).await.unwrap();
        assert_eq!(first.source, TokenSource::Provider, "{client}");
        assert!(active(&op, first.secret.expose()).await, "{client}");
        let second = a.client_credentials(API).await.unwrap();
        assert_eq!(second.source, TokenSource::Cache, "{client}");
        assert_eq!(second.secret, first.secret);
        // counted at the provider: one request per client, the second call never left
        assert_eq!(grant_count(&op, CC).await, n as u64 + 1, "{client}");
        // it is in the app partition, where MSAL looks
        let found = c
            .find_access_token(&Lookup::app(client, &a.authority().tenant, API))
            .await
            .unwrap()
            .expect("in the app partition");
        assert_eq!(found.secret, first.secret);
    }
}

#[tokio::test]
async fn a_thousand_concurrent_callers_make_one_token_request() {
    let op = OidcProvider::start();
    let a = basic(cache().await, &op);
    // discovery first, so that the flight under test is the token request alone
    a.provider().await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (a, b) = (a.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            a.client_credentials(API).await
        }));
    }
    let mut secrets = std::collections::HashSet::new();
    for t in tasks {
        secrets.insert(t.await.unwrap().unwrap().secret.expose().to_string());
    }
    assert_eq!(secrets.len(), 1, "every caller got the same token");
    assert_eq!(grant_count(&op, CC).await, 1, "{}", stats(&op).await);
    assert_eq!(a.token_requests(), 1);
}

#[tokio::test]
async fn on_behalf_of_both_forms_then_from_the_cache_and_gone_at_sign_out() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let incoming = user_token(&op, "user1").await;

    let first = a.on_behalf_of(&incoming, API).await.unwrap();
    assert_eq!(first.source, TokenSource::Provider);
    assert!(active(&op, first.secret.expose()).await);
    let again = a.on_behalf_of(&incoming, API).await.unwrap();
    assert_eq!(again.source, TokenSource::Cache);
    assert_eq!(again.secret, first.secret);
    assert_eq!(grant_count(&op, OBO).await, 1);

    // RFC 8693, with another incoming token (another OBO partition)
    let incoming2 = user_token(&op, "user2").await;
    let x = a.token_exchange(&incoming2, API).await.unwrap();
    assert_eq!(x.source, TokenSource::Provider);
    assert!(active(&op, x.secret.expose()).await);
    assert_eq!(
        a.token_exchange(&incoming2, API).await.unwrap().source,
        TokenSource::Cache
    );
    assert_eq!(grant_count(&op, EXCHANGE).await, 1);

    // linked to the user the web app knows: that user's sign-out removes it
    let incoming3 = user_token(&op, "user3").await;
    let mut r = OboRequest::new(&incoming3, API);
    r.user = Some("user3.tenant1");
    let linked = a
        .on_behalf_of_with(&r, &AcquireOptions::default())
        .await
        .unwrap();
    assert_eq!(linked.source, TokenSource::Provider);
    let out = c.remove_account("user3.tenant1").await.unwrap();
    assert_eq!(out.obo_partitions, 1);
    assert!(c
        .find_access_token(&Lookup::obo("app", &incoming3, API))
        .await
        .unwrap()
        .is_none());

    // long-running OBO under a session key, by token exchange
    let incoming4 = user_token(&op, "user4").await;
    let mut s = OboRequest::new(&incoming4, API);
    s.form = OboForm::TokenExchange;
    s.user = Some("user4.tenant1");
    s.session_key = Some("job-42");
    let t = a
        .on_behalf_of_with(&s, &AcquireOptions::default())
        .await
        .unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    let t2 = a
        .on_behalf_of_with(&s, &AcquireOptions::default())
        .await
        .unwrap();
    assert_eq!(t2.source, TokenSource::Cache);
    assert_eq!(grant_count(&op, EXCHANGE).await, 2);

    // an assertion the provider did not issue
    let e = a.on_behalf_of("not.a.token", API).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant), "{e}");
}

#[tokio::test]
async fn authorization_code_with_pkce_then_silent_from_cache_then_refresh_with_rotation() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let signed = sign_in(&a, "alice").await;
    // a provider that is not Entra: the subject qualified by the issuer
    let alice = signed.home_account_id.clone();
    assert_eq!(alice, format!("alice.{}", a.authority().tenant));
    assert_eq!(signed.username.as_deref(), Some("alice@example.test"));
    assert!(active(&op, signed.token.secret.expose()).await);
    let partition = c
        .partition(&tokencache::Subject::User(&alice), "app")
        .await
        .unwrap();
    assert_eq!(partition.accounts().count(), 1);
    assert_eq!(partition.id_tokens().count(), 1);
    assert_eq!(partition.refresh_tokens().count(), 1);
    let rt0 = c
        .find_refresh_token("app", &alice, None)
        .await
        .unwrap()
        .unwrap();

    // silent: the access token from the sign-in
    let s = a.acquire_silent(&alice, API).await.unwrap();
    assert_eq!(s.source, TokenSource::Cache);
    assert_eq!(s.secret, signed.token.secret);
    assert_eq!(grant_count(&op, REFRESH).await, 0);

    // forced (a claims challenge would do the same): the refresh token, rotated
    let f = a
        .acquire_silent_with(&alice, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();
    assert_eq!(f.source, TokenSource::Provider);
    assert_ne!(f.secret, signed.token.secret);
    assert_eq!(grant_count(&op, REFRESH).await, 1);
    let rt1 = c
        .find_refresh_token("app", &alice, None)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(rt1, rt0, "the rotated refresh token replaced the old one");
    let partition = c
        .partition(&tokencache::Subject::User(&alice), "app")
        .await
        .unwrap();
    assert_eq!(partition.refresh_tokens().count(), 1);
    // and the new access token replaced the old one in the cache
    let s2 = a.acquire_silent(&alice, API).await.unwrap();
    assert_eq!(s2.source, TokenSource::Cache);
    assert_eq!(s2.secret, f.secret);

    // a user nobody signed in: interaction required, typed
    let bob = format!("bob.{}", a.authority().tenant);
    let e = a.acquire_silent(&bob, API).await.unwrap_err();
    assert!(matches!(e, AcquireError::InteractionRequired(_)), "{e:?}");
    assert!(e.requires_interaction());

    // a code redeemed with the wrong state is refused before any request
    let req = a
        .authorization_url(&AuthorizationParams {
            redirect_uri: "http://127.0.0.1/callback",
            scopes: API,
            login_hint: Some("carol"),
            prompt: None,
        })
        .await
        .unwrap();
    let before = stats(&op).await["token_requests"].as_u64().unwrap();
    let e = a
        .redeem_code(&req, "code", "another-state")
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::AuthorizationResponse(_)));
    assert_eq!(stats(&op).await["token_requests"].as_u64().unwrap(), before);
}

#[tokio::test]
async fn two_replicas_refreshing_one_user_at_once_keep_the_grant() {
    let op = OidcProvider::start();
    let redis = RedisServer::start();
    let replica = || async {
        let c = TokenCache::builder()
            .store_url(&redis.url())
            .build()
            .await
            .unwrap();
        let a = Acquirer::builder(
            c.clone(),
            &op.issuer(),
            "app",
            ClientCredential::SecretBasic(Secret::new("app-secret")),
        )
        .refresh_lock(RefreshLockOptions::default())
        .build()
        .unwrap();
        (c, a)
    };
    let (c1, a1) = replica().await;
    let (c2, a2) = replica().await;
    let dave = sign_in(&a1, "dave").await.home_account_id;
    for round in 0..3 {
        // both replicas hold the same refresh token in L1
        let rt1 = c1
            .find_refresh_token("app", &dave, None)
            .await
            .unwrap()
            .unwrap();
        let rt2 = c2
            .find_refresh_token("app", &dave, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rt1, rt2, "round {round}");
        let force = AcquireOptions::force_refresh();
        let (r1, r2) = tokio::join!(
            a1.acquire_silent_with(&dave, API, &force),
            a2.acquire_silent_with(&dave, API, &force)
        );
        let s = stats(&op).await;
        let (t1, t2) = (
            r1.unwrap_or_else(|e| panic!("round {round}, replica 1: {e:?}; {s}")),
            r2.unwrap_or_else(|e| panic!("round {round}, replica 2: {e:?}; {s}")),
        );
        assert!(active(&op, t1.secret.expose()).await, "round {round}");
        assert!(active(&op, t2.secret.expose()).await, "round {round}");
        let s = stats(&op).await;
        assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");
        // each replica redeemed once, one after the other, never the same token
        assert_eq!(grant_count(&op, REFRESH).await, 2 * (round + 1), "{s}");
    }
    // the grant is alive: yet another refresh works
    a2.acquire_silent_with(&dave, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();

    // The control: the provider does revoke the grant when a rotated token is reused.
    let old = c1
        .find_refresh_token("app", &dave, None)
        .await
        .unwrap()
        .unwrap();
    a1.acquire_silent_with(&dave, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();
    let reuse = http()
        .post(format!("{}/token", op.issuer()))
        .basic_auth("app", Some("app-secret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", old.expose()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), 400);
    let e = a1
        .acquire_silent_with(&dave, API, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant), "{e}");
}

fn quick_http() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(300),
        max_retries: 2,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

/// After a failed call, nothing is cached: the app partition has no token.
async fn nothing_cached(c: &TokenCache, op: &OidcProvider, client: &str) {
    let tenant = tokencache::issuer::issuer_key(&op.issuer());
    assert!(c
        .find_access_token(&Lookup::app(client, &tenant, API))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn provider_errors_are_typed_and_nothing_is_cached() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = Acquirer::builder(
        c.clone(),
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .http(quick_http())
    .build()
    .unwrap();

    // wrong secret
    let wrong = Acquirer::builder(
        c.clone(),
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("not-the-secret")),
    )
    .build()
    .unwrap();
    let e = wrong.client_credentials(API).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidClient), "{e}");
    assert!(!e.to_string().contains("not-the-secret"));
    assert!(!format!("{e:?}").contains("not-the-secret"));
    nothing_cached(&c, &op, "app").await;

    // a scope the client may not have
    let e = a.client_credentials(&["api.admin"]).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidScope), "{e}");
    match &e {
        AcquireError::OAuth(o) => assert!(o.description.is_some()),
        other => panic!("{other:?}"),
    }

    // malformed JSON from the provider
    fault(&op, "kind=malformed").await;
    let e = a.client_credentials(API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Malformed { .. }), "{e:?}");
    nothing_cached(&c, &op, "app").await;

    // 5xx on every attempt: retried, then a typed status
    let before = stats(&op).await["faults"].as_u64().unwrap();
    fault(&op, "kind=500&times=3").await;
    let e = a.client_credentials(API).await.unwrap_err();
    assert!(
        matches!(e, AcquireError::Status { status: 500, .. })
            || e.oauth_code() == Some(&OAuthErrorCode::ServerError),
        "{e:?}"
    );
    assert!(e.is_temporary());
    assert_eq!(stats(&op).await["faults"].as_u64().unwrap(), before + 3);
    nothing_cached(&c, &op, "app").await;

    // 429 with Retry-After: waited for, then served
    fault(&op, "kind=429&retry_after=0").await;
    let t = a.client_credentials(API).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert_eq!(stats(&op).await["faults"].as_u64().unwrap(), before + 4);
    // a Retry-After longer than the bound is not waited for
    c.two_level()
        .forget_local(&format!("app_{}_AppTokenCache", a.authority().tenant));
    let a2 = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .http(quick_http())
    .build()
    .unwrap();
    fault(&op, "kind=429&retry_after=120").await;
    let e = a2.client_credentials(API).await.unwrap_err();
    match e {
        AcquireError::OAuth(o) => {
            assert_eq!(o.code, OAuthErrorCode::TemporarilyUnavailable);
            assert_eq!(o.status, 429);
            assert_eq!(o.retry_after, Some(Duration::from_secs(120)));
        }
        other => panic!("{other:?}"),
    }
    // remembered for its flight key until it passes (retry_after.rs; serve_provider_errors.rs
    // proves it): another acquirer, its own flights, for what follows
    let a2 = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .http(quick_http())
    .build()
    .unwrap();

    // slow: every attempt times out
    fault(&op, "kind=slow&ms=2000&times=3").await;
    let e = a2.client_credentials(API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Timeout { .. }), "{e:?}");
    assert!(e.is_temporary());
    nothing_cached(a2.cache(), &op, "app").await;
    // the provider serves the next one (a failure was not cached)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        a2.client_credentials(API).await.unwrap().source,
        TokenSource::Provider
    );
}

#[tokio::test]
async fn provider_down_is_a_transport_error_and_not_cached() {
    let mut op = OidcProvider::start();
    let c = cache().await;
    let a = Acquirer::builder(
        c.clone(),
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .http(quick_http())
    .build()
    .unwrap();
    a.provider().await.unwrap();
    op.stop();
    let e = a.client_credentials(API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Transport { .. }), "{e:?}");
    assert!(e.is_temporary());
    nothing_cached(&c, &op, "app").await;
    // discovery of a provider that is down is a discovery error, tried again next time
    let b = basic(cache().await, &op);
    let e = b.client_credentials(API).await.unwrap_err();
    assert!(matches!(e, AcquireError::Discovery { .. }), "{e:?}");
}

#[tokio::test]
async fn refresh_tokens_expired_or_revoked_are_invalid_grant_and_nothing_is_cached() {
    let op = OidcProvider::start_with(&OidcOptions {
        refresh_ttl: Duration::from_secs(2),
        ..OidcOptions::default()
    });
    let c = cache().await;
    let a = basic(c.clone(), &op);
    // revoked
    let erin = sign_in(&a, "erin").await.home_account_id;
    let rt = c
        .find_refresh_token("app", &erin, None)
        .await
        .unwrap()
        .unwrap();
    let r = http()
        .post(format!("{}/token/revocation", op.issuer()))
        .basic_auth("app", Some("app-secret"))
        .form(&[("token", rt.expose()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let e = a
        .acquire_silent_with(&erin, API, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant), "{e}");
    assert!(e.requires_interaction());
    // the cached access token from the sign-in is still the only one
    let p = c
        .partition(&tokencache::Subject::User(&erin), "app")
        .await
        .unwrap();
    assert_eq!(p.access_tokens().count(), 1);

    // expired
    let signed = sign_in(&a, "frank").await;
    let frank = signed.home_account_id.clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let e = a
        .acquire_silent_with(&frank, API, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant), "{e}");
    let still = a.acquire_silent(&frank, API).await.unwrap();
    assert_eq!(still.secret, signed.token.secret, "nothing new was cached");
}

#[tokio::test]
async fn a_user_who_signs_out_during_the_request_is_not_served_its_result() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    a.provider().await.unwrap();
    let incoming = user_token(&op, "gina").await;
    // the provider holds the next token request 1.5 s before answering it
    fault(&op, "kind=slow&ms=1500").await;
    let (a2, incoming2) = (a.clone(), incoming.clone());
    let flight = tokio::spawn(async move {
        let mut r = OboRequest::new(&incoming2, API);
        r.user = Some("gina.tenant1");
        a2.on_behalf_of_with(&r, &AcquireOptions::default()).await
    });
    // the request is at the provider now; the user signs out
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.remove_account("gina.tenant1").await.unwrap();
    let e = flight.await.unwrap().unwrap_err();
    assert!(matches!(e, AcquireError::SignedOut), "{e:?}");
    assert!(c
        .find_access_token(&Lookup::obo("app", &incoming, API))
        .await
        .unwrap()
        .is_none());
    assert_eq!(grant_count(&op, OBO).await, 1, "the provider did answer");
}

#[tokio::test]
async fn past_refresh_on_the_token_is_served_while_a_new_one_is_fetched_in_the_background() {
    let op = OidcProvider::start_with(&OidcOptions {
        refresh_in: Some(Duration::from_secs(1)),
        ..OidcOptions::default()
    });
    let a = basic(cache().await, &op);
    let first = a.client_credentials(API).await.unwrap();
    assert_eq!(first.source, TokenSource::Provider);
    let refresh_on = first.refresh_on.expect("refresh_in was sent");
    assert!(refresh_on < first.expires_on);
    // before refresh_on: served, nothing sent
    let early = a.client_credentials(API).await.unwrap();
    assert_eq!(early.secret, first.secret);
    // wait until refresh_on has passed (the cache's clock is in seconds)
    while tokencache::clock::Clock::now_secs(&tokencache::clock::SystemClock) <= refresh_on {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = a.client_credentials(API).await.unwrap();
    assert_eq!(late.source, TokenSource::Cache);
    assert_eq!(
        late.secret, first.secret,
        "the current token is still served"
    );
    // the background refresh reaches the provider and replaces the cached token
    let mut waited = 0;
    while grant_count(&op, CC).await < 2 {
        assert!(waited < 100, "no background refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let mut next = a.client_credentials(API).await.unwrap();
    for _ in 0..100 {
        if next.secret != first.secret {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        next = a.client_credentials(API).await.unwrap();
    }
    assert_ne!(next.secret, first.secret);
    assert_eq!(next.source, TokenSource::Cache);
}

#[tokio::test]
async fn a_claims_challenge_bypasses_the_cache_and_replaces_the_token() {
    let op = OidcProvider::start();
    let a = basic(cache().await, &op);
    let first = a.client_credentials(API).await.unwrap();
    let challenge = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
    let forced = a
        .client_credentials_with(API, &AcquireOptions::claims(challenge))
        .await
        .unwrap();
    assert_eq!(forced.source, TokenSource::Provider);
    assert_ne!(forced.secret, first.secret);
    assert_eq!(grant_count(&op, CC).await, 2);
    let after = a.client_credentials(API).await.unwrap();
    assert_eq!(after.source, TokenSource::Cache);
    assert_eq!(
        after.secret, forced.secret,
        "the new token replaced the old"
    );
    assert_eq!(grant_count(&op, CC).await, 2);
}

#[tokio::test]
async fn a_failing_background_refresh_is_not_retried_on_every_hit() {
    let op = OidcProvider::start_with(&OidcOptions {
        refresh_in: Some(Duration::from_secs(1)),
        ..OidcOptions::default()
    });
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .http(HttpOptions {
        max_retries: 0,
        ..quick_http()
    })
    .build()
    .unwrap();
    let first = a.client_credentials(API).await.unwrap();
    let refresh_on = first.refresh_on.unwrap();
    while tokencache::clock::Clock::now_secs(&tokencache::clock::SystemClock) <= refresh_on {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the provider fails every token request from now on
    fault(&op, "kind=500&times=100").await;
    for _ in 0..50 {
        let t = a.client_credentials(API).await.unwrap();
        assert_eq!(t.secret, first.secret, "the current token is served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // one background refresh reached the provider; its failure holds the next ones back
    assert_eq!(stats(&op).await["faults"].as_u64().unwrap(), 1);
    assert_eq!(grant_count(&op, CC).await, 1);
}

/// Everything the log subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
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

/// Every flow and some failures, with every log line of every crate captured at TRACE
/// (the runtime is this thread's, so the spawned work logs here too): no secret, token,
/// assertion or refresh token is in the logs, the errors or the `Debug` of anything.
#[tokio::test]
async fn no_secret_token_or_assertion_reaches_a_log_an_error_or_debug() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let post = Acquirer::builder(
        c.clone(),
        &op.issuer(),
        "app-post",
        ClientCredential::SecretPost(Secret::new("post-secret")),
    )
    .build()
    .unwrap();
    let mut shown: Vec<String> = vec![format!("{a:?}"), format!("{post:?}")];
    let mut secrets: Vec<String> = vec!["app-secret".into(), "post-secret".into()];
    for t in [
        a.client_credentials(API).await.unwrap(),
        post.client_credentials(API).await.unwrap(),
    ] {
        shown.push(format!("{t:?}"));
        secrets.push(t.secret.expose().to_string());
    }
    let incoming = user_token(&op, "harry").await;
    secrets.push(incoming.clone());
    let t = a.on_behalf_of(&incoming, API).await.unwrap();
    shown.push(format!("{t:?}"));
    secrets.push(t.secret.expose().to_string());
    let signed = sign_in(&a, "harry").await;
    let harry = signed.home_account_id.clone();
    shown.push(format!("{signed:?}"));
    secrets.push(signed.token.secret.expose().to_string());
    secrets.push(
        c.find_refresh_token("app", &harry, None)
            .await
            .unwrap()
            .unwrap()
            .expose()
            .to_string(),
    );
    let r = a
        .acquire_silent_with(&harry, API, &AcquireOptions::force_refresh())
        .await
        .unwrap();
    secrets.push(r.secret.expose().to_string());
    // (its own cache: the shared one would serve app's cached token without a request)
    let wrong = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app",
        ClientCredential::SecretPost(Secret::new("wrong-secret-value")),
    )
    .build()
    .unwrap();
    secrets.push("wrong-secret-value".into());
    let e = wrong.client_credentials(API).await.unwrap_err();
    shown.push(format!("{e:?} {e}"));
    fault(&op, "kind=malformed").await;
    let e = a
        .acquire_silent_with(&harry, API, &AcquireOptions::force_refresh())
        .await
        .unwrap_err();
    shown.push(format!("{e:?} {e}"));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("DEBUG") || logs.contains("TRACE"),
        "logs were captured"
    );
    for s in &secrets {
        // any 24-character piece of a secret would be a leak
        let piece = &s[..24.min(s.len())];
        assert!(!logs.contains(piece), "a secret reached the logs");
        for text in &shown {
            assert!(
                !text.contains(piece),
                "a secret reached Debug/Display: {text}"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_callers_share_one_failure_and_the_next_call_tries_again() {
    let op = OidcProvider::start();
    let a = Acquirer::builder(
        cache().await,
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .http(HttpOptions {
        max_retries: 0,
        ..quick_http()
    })
    .build()
    .unwrap();
    a.provider().await.unwrap();
    // the next request is held 300 ms, then answered 500
    fault(&op, "kind=500&ms=300").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (a, b) = (a.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            a.client_credentials(API).await
        }));
    }
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert!(e.is_temporary(), "{e:?}");
    }
    // the 200 callers made one request, and shared its failure
    assert_eq!(a.token_requests(), 1);
    assert_eq!(stats(&op).await["faults"].as_u64().unwrap(), 1);
    // the failure was not kept: the next call asks again, and is served
    let next = a.client_credentials(API).await.unwrap();
    assert_eq!(next.source, TokenSource::Provider);
    assert_eq!(a.token_requests(), 2);
}

#[tokio::test]
async fn a_long_running_obo_session_goes_on_from_its_own_refresh_token() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let incoming = user_token(&op, "ivy").await;
    let mut start = OboRequest::new(&incoming, API);
    start.user = Some("ivy.tenant1");
    start.session_key = Some("nightly-report-7");
    let first = a
        .on_behalf_of_with(&start, &AcquireOptions::default())
        .await
        .unwrap();
    assert_eq!(first.source, TokenSource::Provider);
    assert_eq!(grant_count(&op, OBO).await, 1);

    // later, without the incoming token: the session's access token...
    let t = a
        .acquire_in_session("nightly-report-7", "ivy.tenant1", API)
        .await
        .unwrap();
    assert_eq!(t.source, TokenSource::Cache);
    assert_eq!(t.secret, first.secret);
    // ...and when it must be renewed, the session's refresh token (rotated)
    let renewed = a
        .acquire_in_session_with(
            "nightly-report-7",
            "ivy.tenant1",
            API,
            &AcquireOptions::force_refresh(),
        )
        .await
        .unwrap();
    assert_eq!(renewed.source, TokenSource::Provider);
    assert_ne!(renewed.secret, first.secret);
    assert_eq!(introspect(&op, renewed.secret.expose()).await["sub"], "ivy");
    assert_eq!(grant_count(&op, REFRESH).await, 1);
    let again = a
        .acquire_in_session_with(
            "nightly-report-7",
            "ivy.tenant1",
            API,
            &AcquireOptions::force_refresh(),
        )
        .await
        .unwrap();
    assert_eq!(
        again.source,
        TokenSource::Provider,
        "the rotated token worked"
    );
    let s = stats(&op).await;
    assert!(s["errors"].as_object().unwrap().is_empty(), "{s}");

    // an unknown session, and a session whose user signed out: interaction required
    let e = a
        .acquire_in_session("no-such-session", "ivy.tenant1", API)
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::InteractionRequired(_)), "{e:?}");
    c.remove_account("ivy.tenant1").await.unwrap();
    let e = a
        .acquire_in_session("nightly-report-7", "ivy.tenant1", API)
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::InteractionRequired(_)), "{e:?}");
}
