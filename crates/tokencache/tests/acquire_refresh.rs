//! Refresh-token redemption edge cases (issue 20, item 6) against the real oidc-provider
//! (refresh tokens rotate; a reused one revokes the whole grant) and, across replicas, a
//! real redis-server:
//!
//! * a single-use request is sent once: a 5xx after the provider used the refresh token
//!   up, or a 429, is returned, never retried;
//! * a rotated refresh token is kept from every successful response — one without an
//!   `id_token` (OIDC allows it), one the acquirer cannot use otherwise;
//! * the cross-replica lock is renewed while its holder waits for the provider, so a
//!   holder paused past the lock's TTL never lets a second replica redeem the same
//!   refresh token.

use std::time::Duration;

use testkit::{OidcProvider, RedisServer};
use tokencache::acquire::{
    AcquireError, AcquireOptions, Acquirer, ClientCredential, HttpOptions, OAuthErrorCode,
    RefreshLockOptions, TokenSource,
};
use tokencache::{Secret, TokenCache};

#[path = "common/oidc.rs"]
mod oidc;
use oidc::*;

fn force() -> AcquireOptions {
    AcquireOptions::force_refresh()
}

/// The cached refresh token of `user`.
async fn refresh_token(c: &TokenCache, user: &str) -> Secret {
    c.find_refresh_token("app", user, None)
        .await
        .unwrap()
        .expect("a cached refresh token")
}

/// No error at the provider so far (a reused refresh token would be one).
async fn no_provider_errors(op: &OidcProvider) {
    let e = provider_errors(op).await;
    assert!(e.as_object().unwrap().is_empty(), "{}", stats(op).await);
}

#[tokio::test]
async fn a_500_after_the_provider_used_the_refresh_token_is_returned_not_retried() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let alice = sign_in(&a, "alice").await.home_account_id;
    let sent = a.token_requests();
    // the provider redeems (rotates) the refresh token, then answers 500
    fault(&op, "kind=consume500").await;
    let e = a
        .acquire_silent_with(&alice, API, &force())
        .await
        .unwrap_err();
    assert!(
        matches!(e, AcquireError::Status { status: 500, .. })
            || e.oauth_code() == Some(&OAuthErrorCode::ServerError),
        "{e:?}"
    );
    assert!(e.is_temporary());
    // exactly one request: a retry would have replayed the used refresh token
    assert_eq!(a.token_requests(), sent + 1);
    assert_eq!(grant_count(&op, REFRESH).await, 1, "{}", stats(&op).await);
    no_provider_errors(&op).await;
    // The rotated token never reached us: the next redemption sends the used one, which
    // the provider refuses (and revokes the grant): the user signs in again.
    let e = a
        .acquire_silent_with(&alice, API, &force())
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some(&OAuthErrorCode::InvalidGrant), "{e}");
    assert!(e.requires_interaction());
}

#[tokio::test]
async fn a_429_on_a_refresh_is_returned_and_the_next_call_redeems() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let bea = sign_in(&a, "bea").await.home_account_id;
    let sent = a.token_requests();
    fault(&op, "kind=429&retry_after=0").await;
    let e = a
        .acquire_silent_with(&bea, API, &force())
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_code(),
        Some(&OAuthErrorCode::TemporarilyUnavailable),
        "{e:?}"
    );
    assert_eq!(a.token_requests(), sent + 1, "sent once");
    // the provider refused it before using the refresh token: the next call redeems it
    let t = a.acquire_silent_with(&bea, API, &force()).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    no_provider_errors(&op).await;
}

#[tokio::test]
async fn a_refresh_response_without_id_token_keeps_the_rotated_refresh_token() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let carl = sign_in(&a, "carl").await.home_account_id;
    let before = refresh_token(&c, &carl).await;
    // served as OIDC allows for a refresh: no id_token (so it names no account)
    fault(&op, "kind=no_id_token").await;
    let t = a.acquire_silent_with(&carl, API, &force()).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    assert!(active(&op, t.secret.expose()).await);
    let rotated = refresh_token(&c, &carl).await;
    assert_ne!(
        rotated, before,
        "the rotated refresh token is saved for carl"
    );
    let p = c
        .partition(&tokencache::Subject::User(&carl), "app")
        .await
        .unwrap();
    assert_eq!(p.refresh_tokens().count(), 1);
    assert_eq!(p.accounts().count(), 1, "carl's account is kept");
    // the new access token is served from the cache
    let cached = a.acquire_silent(&carl, API).await.unwrap();
    assert_eq!(
        (cached.source, &cached.secret),
        (TokenSource::Cache, &t.secret)
    );
    // and the next redemption uses the rotated token: the grant is alive
    let next = a.acquire_silent_with(&carl, API, &force()).await.unwrap();
    assert_eq!(next.source, TokenSource::Provider);
    no_provider_errors(&op).await;
    assert_eq!(grant_count(&op, REFRESH).await, 2);
}

#[tokio::test]
async fn an_unusable_refresh_response_still_keeps_its_rotated_refresh_token() {
    let op = OidcProvider::start();
    let c = cache().await;
    let a = basic(c.clone(), &op);
    let dina = sign_in(&a, "dina").await.home_account_id;
    let before = refresh_token(&c, &dina).await;
    // served (the refresh token rotated) but without an access token
    fault(&op, "kind=no_access_token").await;
    let e = a
        .acquire_silent_with(&dina, API, &force())
        .await
        .unwrap_err();
    assert!(matches!(e, AcquireError::Malformed { .. }), "{e:?}");
    assert_ne!(refresh_token(&c, &dina).await, before, "rotated token kept");
    // the next call redeems the rotated token (the used one would revoke the grant)
    let t = a.acquire_silent_with(&dina, API, &force()).await.unwrap();
    assert_eq!(t.source, TokenSource::Provider);
    no_provider_errors(&op).await;
}

#[tokio::test]
async fn a_lock_holder_paused_past_the_lock_ttl_keeps_the_lock_and_the_grant_lives() {
    let op = OidcProvider::start();
    let redis = RedisServer::start();
    let lock = RefreshLockOptions {
        ttl: Duration::from_millis(600),
        poll: Duration::from_millis(50),
    };
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
        .refresh_lock(lock)
        .http(HttpOptions {
            timeout: Duration::from_secs(6),
            ..HttpOptions::default()
        })
        .build()
        .unwrap();
        (c, a)
    };
    let (c1, a1) = replica().await;
    let (c2, a2) = replica().await;
    let erik = sign_in(&a1, "erik").await.home_account_id;
    assert_eq!(
        refresh_token(&c1, &erik).await,
        refresh_token(&c2, &erik).await
    );

    // The provider redeems replica 1's refresh token, then holds the answer 2.5 s:
    // four lock lifetimes.
    fault(&op, "kind=slow&ms=2500&after=1").await;
    let first = {
        let (a1, erik) = (a1.clone(), erik.clone());
        tokio::spawn(async move { a1.acquire_silent_with(&erik, API, &force()).await })
    };
    wait_until(
        "the first redemption to be served",
        Duration::from_secs(10),
        || async { grant_count(&op, REFRESH).await >= 1 },
    )
    .await;
    // past the lock's TTL, replica 2 wants to refresh too
    tokio::time::sleep(Duration::from_millis(900)).await;
    let second = a2.acquire_silent_with(&erik, API, &force()).await;
    let first = first.await.unwrap();
    let s = stats(&op).await;
    let t1 = first.unwrap_or_else(|e| panic!("replica 1: {e:?}; {s}"));
    let t2 = second.unwrap_or_else(|e| panic!("replica 2: {e:?}; {s}"));
    // replica 2 waited for replica 1 and redeemed the token replica 1 saved
    no_provider_errors(&op).await;
    assert_eq!(grant_count(&op, REFRESH).await, 2, "{s}");
    assert!(active(&op, t1.secret.expose()).await);
    assert!(active(&op, t2.secret.expose()).await);
    // the grant is alive
    a1.acquire_silent_with(&erik, API, &force()).await.unwrap();
    no_provider_errors(&op).await;
}

/// An unsigned JWT with these claims (the cache reads claims without verifying).
fn jwt(claims: &serde_json::Value) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        b.encode(br#"{"alg":"none"}"#),
        b.encode(claims.to_string())
    )
}

#[tokio::test]
async fn a_known_users_save_keeps_a_nameless_response_and_refuses_another_account() {
    use tokencache::{SaveFor, SaveRequest, TokenResponse};
    let c = cache().await;
    let scopes = ["api.read"];
    let save = |subject, response: TokenResponse| {
        let c = c.clone();
        async move {
            let req = SaveRequest::new("app", subject, "op.example", "t1", &scopes);
            c.save_token_response(&req, &response).await
        }
    };
    let named = |sub: &str, rt: &str| TokenResponse {
        access_token: Some(Secret::new(format!("at-{rt}"))),
        refresh_token: Some(Secret::new(rt)),
        id_token: Some(Secret::new(jwt(&serde_json::json!({"sub": sub})))),
        expires_in: Some(3600),
        ..TokenResponse::default()
    };
    let known = SaveFor::KnownUser {
        home_account_id: "u1",
    };
    // a response naming the user, then one naming nobody (a refresh without id_token)
    save(known, named("u1", "rt-1")).await.unwrap();
    let nameless = TokenResponse {
        id_token: None,
        ..named("u1", "rt-2")
    };
    let saved = save(known, nameless).await.unwrap();
    assert_eq!(saved.partition, "u1");
    assert_eq!(refresh_token(&c, "u1").await.expose(), "rt-2");
    let p = c
        .partition(&tokencache::Subject::User("u1"), "app")
        .await
        .unwrap();
    assert_eq!(p.refresh_tokens().count(), 1, "rt-2 replaced rt-1");
    assert_eq!(p.accounts().count(), 1);
    // a response naming another account is refused, and nothing of it is saved
    let e = save(known, named("u2", "rt-3")).await.unwrap_err();
    assert!(matches!(e, tokencache::Error::InvalidRequest(_)), "{e:?}");
    assert_eq!(refresh_token(&c, "u1").await.expose(), "rt-2");
    assert!(c
        .partition(&tokencache::Subject::User("u2"), "app")
        .await
        .is_none());
    // an account id in tokencache's own key space is refused
    let e = save(
        SaveFor::KnownUser {
            home_account_id: "tc:revoked:u1",
        },
        named("tc:revoked:u1", "rt-4"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, tokencache::Error::InvalidRequest(_)), "{e:?}");
}
