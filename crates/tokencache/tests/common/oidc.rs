//! Helpers of the acquisition tests that run against the real oidc-provider
//! (`testkit::OidcProvider`, `interop/oidc/provider.mjs`): its test controls (stats,
//! faults, minted user tokens), a browser-like sign-in, and waiting for a condition.
//! Included by `#[path = "common/oidc.rs"] mod oidc;`.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::OidcProvider;
use tokencache::acquire::{Acquirer, AuthorizationParams, ClientCredential};
use tokencache::{Secret, TokenCache};

/// The scopes most tests ask for.
pub const API: &[&str] = &["api.read"];
/// Grant type names, as the provider's stats count them.
pub const CC: &str = "client_credentials";
pub const REFRESH: &str = "refresh_token";

/// A cache on the in-process memory store.
pub async fn cache() -> TokenCache {
    TokenCache::builder()
        .store_url("memory://")
        .build()
        .await
        .expect("memory cache")
}

/// An acquirer for client `app` (client_secret_basic).
pub fn basic(cache: TokenCache, op: &OidcProvider) -> Acquirer {
    Acquirer::builder(
        cache,
        &op.issuer(),
        "app",
        ClientCredential::SecretBasic(Secret::new("app-secret")),
    )
    .build()
    .expect("acquirer")
}

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get_json(url: String) -> Value {
    http()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap()
}

/// The provider's counters (`/__test/stats`).
pub async fn stats(op: &OidcProvider) -> Value {
    get_json(format!("{}/__test/stats", op.base())).await
}

/// Token requests of `grant` the provider served (answered or refused).
pub async fn grant_count(op: &OidcProvider, grant: &str) -> u64 {
    stats(op).await["by_grant"][grant].as_u64().unwrap_or(0)
}

/// Requests that arrived at `what` (`token` or `discovery`), counted on arrival.
pub async fn arrived(op: &OidcProvider, what: &str) -> u64 {
    stats(op).await["arrived"][what].as_u64().unwrap_or(0)
}

/// Error codes the provider answered, by code.
pub async fn provider_errors(op: &OidcProvider) -> Value {
    stats(op).await["errors"].clone()
}

/// Queues a fault (`/__test/fault?{query}`).
pub async fn fault(op: &OidcProvider, query: &str) {
    let r = http()
        .post(format!("{}/__test/fault?{query}", op.base()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// A user access token for `sub` with audience `app`, as a web API receives it.
pub async fn user_token(op: &OidcProvider, sub: &str) -> String {
    let v = get_json(format!("{}/__test/mint?sub={sub}&aud=app", op.base())).await;
    v["access_token"].as_str().unwrap().to_string()
}

/// The private key (PKCS#8 PEM) and kid of client `app-jwt`.
pub async fn app_jwt_key(op: &OidcProvider) -> (String, String) {
    let v = get_json(format!("{}/__test/client-key", op.base())).await;
    (
        v["pem"].as_str().unwrap().to_string(),
        v["kid"].as_str().unwrap().to_string(),
    )
}

/// Whether the provider says an access token is its own, for urn:api, unexpired.
pub async fn active(op: &OidcProvider, token: &str) -> bool {
    let v: Value = http()
        .post(format!("{}/__test/active", op.base()))
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

/// Drives the authorization endpoint like a browser that logs in at once: follows the
/// redirects (keeping the cookies) up to the redirect URI; returns its query.
pub async fn sign_in_redirect(url: &url::Url) -> Vec<(String, String)> {
    let client = http();
    let mut cookies: Vec<String> = Vec::new();
    let mut next = url.to_string();
    for _ in 0..10 {
        if next.starts_with("http://127.0.0.1/callback") {
            let u = url::Url::parse(&next).unwrap();
            return u.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        }
        let mut req = client.get(&next);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies.join("; "));
        }
        let resp = req.send().await.unwrap();
        for v in resp.headers().get_all("set-cookie") {
            let pair = v.to_str().unwrap().split(';').next().unwrap().to_string();
            let name = pair.split('=').next().unwrap().to_string();
            cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            cookies.push(pair);
        }
        assert!(
            resp.status().is_redirection(),
            "{} at {next}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        next = url::Url::parse(&next)
            .unwrap()
            .join(&loc)
            .unwrap()
            .to_string();
    }
    panic!("too many redirects");
}

/// Signs `user` in through `a` (with consent, so that a refresh token is issued).
pub async fn sign_in(a: &Acquirer, user: &str) -> tokencache::acquire::SignIn {
    let req = a
        .authorization_url(&AuthorizationParams {
            redirect_uri: "http://127.0.0.1/callback",
            scopes: API,
            login_hint: Some(user),
            prompt: Some("consent"),
        })
        .await
        .unwrap();
    let q = sign_in_redirect(&req.url).await;
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in {q:?}"))
    };
    a.redeem_code(&req, &get("code"), &get("state"))
        .await
        .unwrap()
}

/// Polls `check` every 10 ms until it holds; panics with `what` after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
