//! Web sign-out over real HTTP on loopback: a fake OpenID provider serves its JWKS with
//! axum on 127.0.0.1, signs real logout tokens (RS256 with the test-only key in
//! `tests/fixtures/signout-provider-rsa.pem`, ES256 with a key made here), and the app
//! runs `tokencache::signout::axum::router` on 127.0.0.1 too. A valid back-channel
//! logout removes the user partition, the linked OBO partitions and the link set;
//! forged, unknown-key, expired, too old, wrong-audience, wrong-issuer, non-logout,
//! nonce-carrying and replayed tokens are refused with their own error and remove
//! nothing. Front-channel logout by `iss` + `sid` and the app's own sign-out route are
//! exercised the same way. In-process store for most cases, a real redis-server for one.
//!
//! The two RSA keys under `tests/fixtures/` (`signout-provider-rsa.pem`,
//! `signout-forger-rsa.pem`) were made once with `openssl genrsa -traditional 2048`
//! for these tests only; they protect nothing.
#![cfg(all(feature = "axum", feature = "jwks-fetch"))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use testkit::RedisServer;
use tokencache::partition::{assertion_hash, PartitionKey};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::signout::axum::{router, SignOutState};
use tokencache::signout::{
    Jwks, LogoutError, LogoutTokenValidator, RemoteOptions, SessionIndex, BACKCHANNEL_LOGOUT_EVENT,
};
use tokencache::store::{self, SharedStore};
use tokencache::{SaveFor, SaveRequest, TokenCache};

const API_CLIENT: &str = "0b7e1f4e-5a43-4d1c-9d3b-api000000001";
const DOWNSTREAM: &[&str] = &["api://downstream/Orders.Read"];
const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
const ALICE: &str = "a11ce000-0000-0000-0000-000000000001";
const BOB: &str = "b0b00000-0000-0000-0000-000000000002";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------- the fake provider

struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn rsa_signer(fixture: &str, kid: &str) -> Signer {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(path).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    let pair = ring::signature::RsaKeyPair::from_der(&der).unwrap();
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    Signer {
        kid: kid.to_string(),
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&der),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)}),
    }
}

fn ec_signer(kid: &str) -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    Signer {
        kid: kid.to_string(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
    }
}

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("logout+jwt".into());
        encode(&header, claims, &self.key).unwrap()
    }
}

/// An OpenID provider on loopback: its issuer and a JWKS endpoint that counts fetches.
struct Provider {
    issuer: String,
    jwks_uri: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    /// While set, the JWKS endpoint answers `500` (after 50 ms, so that fetches overlap).
    failing: Arc<AtomicBool>,
    rsa: Signer,
    ec: Signer,
}

impl Provider {
    async fn start() -> Provider {
        let rsa = rsa_signer("signout-provider-rsa.pem", "rsa-2026");
        let ec = ec_signer("ec-2026");
        let keys = Arc::new(RwLock::new(vec![rsa.jwk.clone(), ec.jwk.clone()]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (k, f, down) = (keys.clone(), fetches.clone(), failing.clone());
        let app = Router::new().route(
            "/discovery/keys",
            get(move || {
                let (k, f, down) = (k.clone(), f.clone(), down.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    if down.load(Ordering::SeqCst) {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                    }
                    axum::Json(json!({"keys": *k.read().unwrap()})).into_response()
                }
            }),
        );
        let base = serve(app).await;
        Provider {
            issuer: format!("{base}/tenant-1/v2.0"),
            jwks_uri: format!("{base}/discovery/keys"),
            keys,
            fetches,
            failing,
            rsa,
            ec,
        }
    }

    /// Claims of a valid logout token for a session.
    fn claims(&self, sid: Option<&str>, sub: Option<&str>) -> Value {
        let mut c = json!({
            "iss": self.issuer, "aud": CLIENT_ID, "iat": now(), "exp": now() + 120,
            "jti": format!("jti-{}", uuidish()),
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        });
        if let Some(sid) = sid {
            c["sid"] = json!(sid);
        }
        if let Some(sub) = sub {
            c["sub"] = json!(sub);
        }
        c
    }

    fn validator(&self, cache: &TokenCache) -> LogoutTokenValidator {
        LogoutTokenValidator::builder(
            &self.issuer,
            CLIENT_ID,
            Jwks::remote(&self.jwks_uri).unwrap(),
        )
        .replay_cache(cache)
        .build()
    }
}

fn uuidish() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Serves `app` on 127.0.0.1 (a free port); returns `http://127.0.0.1:port`.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

// ---------------------------------------------------------------- the app

/// The web app (and its web API, on the same L2) with its sign-out routes on loopback.
struct App {
    base: String,
    cache: TokenCache,
    store: SharedStore,
    http: reqwest::Client,
}

impl App {
    async fn start(store: SharedStore, provider: &Provider) -> App {
        let cache = TokenCache::builder()
            .store(store.clone())
            .build()
            .await
            .unwrap();
        let validator = provider.validator(&cache);
        App::with(cache, validator).await
    }

    /// The app on `cache`, with this validator.
    async fn with(cache: TokenCache, validator: LogoutTokenValidator) -> App {
        let store = cache.two_level().store().clone();
        let state = SignOutState::new(&cache, validator)
            // test only: a real app takes the account from its authenticated session
            .account_resolver(|parts| {
                parts
                    .headers
                    .get("x-test-account")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            });
        let base = serve(Router::new().nest("/auth", router(state))).await;
        App {
            base,
            cache,
            store,
            http: reqwest::Client::new(),
        }
    }

    async fn back_channel(&self, token: &str) -> (u16, Option<String>, Value) {
        read(self.post_back_channel(token).await).await
    }

    async fn post_back_channel(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/logout/backchannel", self.base))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap()
    }

    /// `n` back-channel POSTs of `token` at once; their statuses.
    async fn flood(&self, token: &str, n: usize) -> Vec<u16> {
        let posts = (0..n).map(|_| async {
            let r = self.post_back_channel(token).await;
            let status = r.status().as_u16();
            if status == 503 {
                assert_eq!(
                    r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
                    Some("10")
                );
            }
            status
        });
        futures::future::join_all(posts).await
    }
}

async fn read(r: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = r.status().as_u16();
    let cc = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.bytes().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, cc, json)
}

/// A signed-in user: a user partition, two OBO partitions and an OBO session linked to
/// it, and the provider session recorded in the session index.
struct User {
    home: String,
    assertions: Vec<String>,
    session: String,
    sid: String,
    sub: String,
}

async fn sign_in(cache: &TokenCache, provider: &Provider, oid: &str) -> User {
    let t = now();
    let resp = sample::user_response(oid, TENANT, GRAPH, t, 3600).unwrap();
    let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, GRAPH);
    let home = cache
        .save_token_response(&req, &resp)
        .await
        .unwrap()
        .partition;
    let mut assertions = Vec::new();
    for i in 0..2 {
        let assertion = sample::incoming_assertion(oid, TENANT, t + i, t + 3600 + i);
        let resp = sample::obo_response(oid, TENANT, DOWNSTREAM, t, 3600).unwrap();
        let req = SaveRequest::new(
            API_CLIENT,
            SaveFor::Obo {
                assertion: &assertion,
            },
            ENVIRONMENT,
            TENANT,
            DOWNSTREAM,
        );
        cache.save_token_response(&req, &resp).await.unwrap();
        assertions.push(assertion);
    }
    let session = format!("session-{oid}");
    let resp = sample::user_response(oid, TENANT, DOWNSTREAM, t, 3600).unwrap();
    let req = SaveRequest::new(
        API_CLIENT,
        SaveFor::OboSession {
            session_key: &session,
            user: &home,
        },
        ENVIRONMENT,
        TENANT,
        DOWNSTREAM,
    );
    cache.save_token_response(&req, &resp).await.unwrap();
    let (sid, sub) = (format!("sid-{oid}"), format!("sub-{oid}"));
    SessionIndex::new(cache)
        .record(&provider.issuer, Some(&sid), Some(&sub), &home)
        .await
        .unwrap();
    let user = User {
        home,
        assertions,
        session,
        sid,
        sub,
    };
    assert_eq!(
        present(cache, &user).await,
        5,
        "signed in: user, 2 OBO, session, link set"
    );
    user
}

/// How many of the user's token keys are in L2: user partition, OBO partitions, OBO
/// session, link set.
async fn present(cache: &TokenCache, user: &User) -> usize {
    let keys = cache.two_level().keys();
    let store = cache.two_level().store();
    let mut all = vec![
        keys.partition_str(&user.home),
        keys.partition_str(PartitionKey::obo_session(&user.session).as_str()),
        keys.link_set(&user.home),
    ];
    all.extend(
        user.assertions
            .iter()
            .map(|a| keys.partition_str(&assertion_hash(a))),
    );
    let mut n = 0;
    for k in &all {
        let there = if k.contains("tc:links:") {
            !store.link_members(k).await.unwrap().is_empty()
        } else {
            store.get(k).await.unwrap().is_some()
        };
        n += usize::from(there);
    }
    n
}

fn expect_refused(got: (u16, Option<String>, Value), err: &LogoutError) {
    let (status, cc, body) = got;
    assert_eq!(status, 400, "{body}");
    assert_eq!(cc.as_deref(), Some("no-store"));
    assert_eq!(body["error"], json!(err.error_code()), "{body}");
    assert_eq!(body["error_description"], json!(err.to_string()), "{body}");
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn back_channel_logout_with_a_signed_token_removes_the_user_and_linked_obo_partitions() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let bob = sign_in(&app.cache, &provider, BOB).await;

    // RS256, by sid
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    let (status, cc, _) = app.back_channel(&token).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-store")));
    assert_eq!(
        present(&app.cache, &alice).await,
        0,
        "alice's partition, OBO partitions, session and link set are gone"
    );
    assert_eq!(present(&app.cache, &bob).await, 5, "bob is untouched");
    let sessions = SessionIndex::new(&app.cache);
    assert_eq!(
        sessions
            .find_by_sid(&provider.issuer, &alice.sid)
            .await
            .unwrap(),
        None
    );
    let stamp = app.cache.two_level().keys().revocation(&alice.home);
    assert!(
        app.store.get(&stamp).await.unwrap().is_some(),
        "revocation stamp written"
    );

    // the same token again: refused as a replay
    expect_refused(
        app.back_channel(&token).await,
        &LogoutError::Replayed {
            jti: token_jti(&token),
        },
    );

    // ES256, by sub only
    let token = provider.ec.sign(&provider.claims(None, Some(&bob.sub)));
    let (status, _, _) = app.back_channel(&token).await;
    assert_eq!(status, 200);
    assert_eq!(present(&app.cache, &bob).await, 0);
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        1,
        "the JWKS is fetched once and cached"
    );

    // a valid token for a session not known here: 200, nothing to do
    let token = provider
        .rsa
        .sign(&provider.claims(Some("sid-unknown"), None));
    assert_eq!(app.back_channel(&token).await.0, 200);
}

/// The `jti` of a token (the test made it; read back for the expected error).
fn token_jti(token: &str) -> String {
    let claims = token.split('.').nth(1).unwrap();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    v["jti"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn refused_logout_tokens_remove_nothing() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let valid = || provider.claims(Some(&alice.sid), Some(&alice.sub));
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = valid();
        f(c.as_object_mut().unwrap());
        c
    };
    let forger = rsa_signer("signout-forger-rsa.pem", "rsa-2026"); // the provider's kid
    let stranger = ec_signer("ec-unknown");
    let t = now();

    let cases: Vec<(&str, String, LogoutError)> = vec![
        (
            "forged signature",
            forger.sign(&valid()),
            LogoutError::BadSignature {
                kid: Some("rsa-2026".into()),
            },
        ),
        (
            "unknown kid",
            stranger.sign(&valid()),
            LogoutError::UnknownKey {
                kid: Some("ec-unknown".into()),
            },
        ),
        (
            "expired",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iat".into(), json!(t - 200));
                m.insert("exp".into(), json!(t - 100));
            })),
            LogoutError::Expired {
                exp: t - 100,
                now: t,
            },
        ),
        (
            "too old",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iat".into(), json!(t - 3600));
                m.remove("exp");
            })),
            LogoutError::TooOld {
                iat: t - 3600,
                max_age_secs: 300,
                now: t,
            },
        ),
        (
            "issued in the future",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iat".into(), json!(t + 3600));
            })),
            LogoutError::IssuedInFuture {
                iat: t + 3600,
                now: t,
            },
        ),
        (
            "wrong audience",
            provider.rsa.sign(&edit(&|m| {
                m.insert("aud".into(), json!("another-app"));
            })),
            LogoutError::WrongAudience {
                expected: CLIENT_ID.into(),
                found: vec!["another-app".into()],
            },
        ),
        (
            "wrong issuer",
            provider.rsa.sign(&edit(&|m| {
                m.insert("iss".into(), json!("https://evil.example.test/v2.0"));
            })),
            LogoutError::WrongIssuer {
                expected: provider.issuer.clone(),
                found: "https://evil.example.test/v2.0".into(),
            },
        ),
        (
            "no events (an ID token)",
            provider.rsa.sign(&edit(&|m| {
                m.remove("events");
            })),
            LogoutError::NotALogoutToken,
        ),
        (
            "nonce",
            provider.ec.sign(&edit(&|m| {
                m.insert("nonce".into(), json!("n-1"));
            })),
            LogoutError::NonceNotAllowed,
        ),
        (
            "neither sid nor sub",
            provider.ec.sign(&edit(&|m| {
                m.remove("sid");
                m.remove("sub");
            })),
            LogoutError::MissingSidAndSub,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"logout+jwt"}"#),
                URL_SAFE_NO_PAD.encode(valid().to_string())
            ),
            LogoutError::UnsupportedAlgorithm { alg: "none".into() },
        ),
        (
            "garbage",
            "not-a-jwt".into(),
            LogoutError::Malformed("not a JWT (three dot-separated parts)".into()),
        ),
    ];
    for (what, token, err) in &cases {
        let got = app.back_channel(token).await;
        // times in the expected errors are those of the test; a second may pass
        if let (
            LogoutError::Expired { .. }
            | LogoutError::TooOld { .. }
            | LogoutError::IssuedInFuture { .. },
            Some(desc),
        ) = (err, got.2["error_description"].as_str())
        {
            let kind = err.to_string();
            let head = &kind[..kind.find(|c: char| c.is_ascii_digit()).unwrap()];
            assert!(desc.starts_with(head), "{what}: {desc}");
            assert_eq!(got.0, 400, "{what}");
        } else {
            expect_refused(got, err);
        }
        assert_eq!(
            present(&app.cache, &alice).await,
            5,
            "{what}: nothing removed"
        );
    }

    // no logout_token field
    let r = app
        .http
        .post(format!("{}/auth/logout/backchannel", app.base))
        .form(&[("other", "x")])
        .send()
        .await
        .unwrap();
    expect_refused(
        read(r).await,
        &LogoutError::MissingParameter("logout_token"),
    );

    // not a form at all
    let r = app
        .http
        .post(format!("{}/auth/logout/backchannel", app.base))
        .header("content-type", "application/json")
        .body(r#"{"logout_token":"x"}"#)
        .send()
        .await
        .unwrap();
    expect_refused(
        read(r).await,
        &LogoutError::Malformed("the request is not a form with a `logout_token` field".into()),
    );
    assert_eq!(present(&app.cache, &alice).await, 5);

    // after all that, the valid token still works (refusals use up no jti)
    assert_eq!(app.back_channel(&provider.rsa.sign(&valid())).await.0, 200);
    assert_eq!(present(&app.cache, &alice).await, 0);
}

#[tokio::test]
async fn front_channel_logout_by_iss_and_sid() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let bob = sign_in(&app.cache, &provider, BOB).await;
    let url = format!("{}/auth/logout/frontchannel", app.base);

    // wrong issuer, missing sid: refused, nothing removed
    let r = app
        .http
        .get(&url)
        .query(&[
            ("iss", "https://evil.example.test"),
            ("sid", alice.sid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    expect_refused(
        read(r).await,
        &LogoutError::WrongIssuer {
            expected: provider.issuer.clone(),
            found: "https://evil.example.test".into(),
        },
    );
    let r = app
        .http
        .get(&url)
        .query(&[("iss", provider.issuer.as_str())])
        .send()
        .await
        .unwrap();
    expect_refused(read(r).await, &LogoutError::MissingParameter("sid"));
    assert_eq!(present(&app.cache, &alice).await, 5);

    // an unknown session: 200, nothing removed
    let r = app
        .http
        .get(&url)
        .query(&[("iss", provider.issuer.as_str()), ("sid", "sid-unknown")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(present(&app.cache, &alice).await, 5);

    let r = app
        .http
        .get(&url)
        .query(&[
            ("iss", provider.issuer.as_str()),
            ("sid", alice.sid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, cc, _) = read(r).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-cache, no-store")));
    assert_eq!(present(&app.cache, &alice).await, 0);
    assert_eq!(present(&app.cache, &bob).await, 5);
}

#[tokio::test]
async fn the_apps_own_sign_out_route() {
    let provider = Provider::start().await;
    let app = App::start(store::open("memory://").await.unwrap(), &provider).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let url = format!("{}/auth/signout", app.base);

    let r = app.http.post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no signed-in account");
    assert_eq!(present(&app.cache, &alice).await, 5);

    let r = app
        .http
        .post(&url)
        .header("x-test-account", &alice.home)
        .send()
        .await
        .unwrap();
    let (status, cc, body) = read(r).await;
    assert_eq!((status, cc.as_deref()), (200, Some("no-store")));
    assert_eq!(
        body,
        json!({"signed_out": true, "obo_partitions": 3, "complete": true})
    );
    assert_eq!(present(&app.cache, &alice).await, 0);
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_again_for_a_rotated_key() {
    let provider = Provider::start().await;
    let cache = TokenCache::builder()
        .store(store::open("memory://").await.unwrap())
        .build()
        .await
        .unwrap();
    let options = RemoteOptions {
        min_refetch_interval: std::time::Duration::ZERO,
        ..RemoteOptions::default()
    };
    let validator = LogoutTokenValidator::builder(
        &provider.issuer,
        CLIENT_ID,
        Jwks::remote_with(&provider.jwks_uri, options).unwrap(),
    )
    .replay_cache(&cache)
    .build();
    validator
        .validate(&provider.rsa.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap();
    assert_eq!(provider.fetches.load(Ordering::SeqCst), 1);

    // the provider rotates in a new key
    let rotated = ec_signer("ec-2027");
    provider.keys.write().unwrap().push(rotated.jwk.clone());
    validator
        .validate(&rotated.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap();
    assert_eq!(
        provider.fetches.load(Ordering::SeqCst),
        2,
        "fetched again for the unknown kid"
    );

    // a kid the provider does not publish: one more fetch, then refused
    let stranger = ec_signer("nobody");
    let err = validator
        .validate(&stranger.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnknownKey {
            kid: Some("nobody".into())
        }
    );

    // with the default interval, made-up kids do not make it fetch again
    let default_validator = provider.validator(&cache);
    default_validator
        .validate(&provider.rsa.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap();
    let before = provider.fetches.load(Ordering::SeqCst);
    for _ in 0..3 {
        let err = default_validator
            .validate(&stranger.sign(&provider.claims(Some("s"), None)))
            .await
            .unwrap_err();
        assert!(matches!(err, LogoutError::UnknownKey { .. }));
    }
    assert_eq!(provider.fetches.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_clear_temporary_failure() {
    let provider = Provider::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // dropped: nothing listens there now
    let jwks = Jwks::remote(&format!("http://{closed}/keys")).unwrap();
    let validator = LogoutTokenValidator::builder(&provider.issuer, CLIENT_ID, jwks).build();
    let err = validator
        .validate(&provider.rsa.sign(&provider.claims(Some("s"), None)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogoutError::Jwks(tokencache::signout::JwksError::Fetch { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.error_code(), "temporarily_unavailable");
    assert!(err.to_string().contains("fetching the JWKS"), "{err}");
}

#[tokio::test]
async fn back_channel_logout_in_redis_across_two_replicas() {
    let server = RedisServer::start();
    let provider = Provider::start().await;
    let replica_a = App::start(store::open(&server.url()).await.unwrap(), &provider).await;
    let replica_b = App::start(store::open(&server.url()).await.unwrap(), &provider).await;
    let alice = sign_in(&replica_a.cache, &provider, ALICE).await;
    let bob = sign_in(&replica_a.cache, &provider, BOB).await;

    // replica B never saw alice sign in: the session index in Redis finds her
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    assert_eq!(replica_b.back_channel(&token).await.0, 200);
    assert_eq!(present(&replica_a.cache, &alice).await, 0);
    assert_eq!(present(&replica_a.cache, &bob).await, 5);
    // the same token sent to replica A: the jti marker in Redis refuses it
    expect_refused(
        replica_a.back_channel(&token).await,
        &LogoutError::Replayed {
            jti: token_jti(&token),
        },
    );

    // what Redis holds of alice: her revocation stamp only (the jti marker names no user)
    let keys = server.cli(&["--scan"]);
    let alice_keys: Vec<&str> = keys
        .lines()
        .filter(|k| k.contains(&alice.home) || k.contains(&alice.sid))
        .collect();
    assert_eq!(
        alice_keys,
        vec![format!("tc:revoked:{{{}}}", alice.home)],
        "{keys}"
    );
    assert!(keys.lines().any(|k| k.starts_with("tc:jti:")), "{keys}");
    assert!(
        keys.lines()
            .any(|k| k.starts_with("tc:sid:") && k.ends_with(&bob.sid)),
        "{keys}"
    );
}

/// Expects a `503` with `Retry-After`, `Cache-Control: no-store` and a
/// `temporarily_unavailable` body.
fn expect_unavailable(got: (u16, Option<String>, Value)) {
    let (status, cc, body) = got;
    assert_eq!(status, 503, "{body}");
    assert_eq!(cc.as_deref(), Some("no-store"));
    assert_eq!(body["error"], json!("temporarily_unavailable"), "{body}");
    assert!(body["error_description"].is_string(), "{body}");
}

#[tokio::test]
async fn a_flood_of_forged_logouts_costs_a_failing_provider_one_fetch_per_backoff() {
    let provider = Provider::start().await;
    provider.failing.store(true, Ordering::SeqCst);
    let backoff = std::time::Duration::from_millis(2000);
    let refetch = std::time::Duration::from_millis(3000);
    let cache = TokenCache::builder()
        .store(store::open("memory://").await.unwrap())
        .build()
        .await
        .unwrap();
    let options = RemoteOptions {
        failure_backoff: backoff,
        max_failure_backoff: backoff,
        min_refetch_interval: refetch,
        ..RemoteOptions::default()
    };
    let validator = LogoutTokenValidator::builder(
        &provider.issuer,
        CLIENT_ID,
        Jwks::remote_with(&provider.jwks_uri, options).unwrap(),
    )
    .replay_cache(&cache)
    .build();
    let app = App::with(cache, validator).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let fetches = || provider.fetches.load(Ordering::SeqCst);

    // a forger's token under the provider's kid, before any fetch has succeeded
    let mut forger = rsa_signer("signout-forger-rsa.pem", "rsa-2026");
    let forged = forger.sign(&provider.claims(Some(&alice.sid), None));
    let statuses = app.flood(&forged, 100).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let after_first = fetches();
    assert!(
        (1..=2).contains(&after_first),
        "100 POSTs: {after_first} fetches"
    );
    // within the backoff, one after the other (no fetch to share): answered from the
    // remembered failure
    for _ in 0..10 {
        expect_unavailable(app.back_channel(&forged).await);
    }
    assert_eq!(fetches(), after_first, "no fetch within the backoff");

    // after the backoff the provider is asked again, once for a whole flood
    tokio::time::sleep(backoff + std::time::Duration::from_millis(100)).await;
    let before = fetches();
    let statuses = app.flood(&forged, 100).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let asked = fetches() - before;
    assert!((1..=2).contains(&asked), "{asked} fetches");
    assert_eq!(present(&app.cache, &alice).await, 5, "nothing removed");

    // the provider heals: after the backoff one fetch, then forgeries are refused as such
    provider.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(backoff + std::time::Duration::from_millis(100)).await;
    let before = fetches();
    expect_refused(
        app.back_channel(&forged).await,
        &LogoutError::BadSignature {
            kid: Some("rsa-2026".into()),
        },
    );
    assert_eq!(fetches(), before + 1);
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    assert_eq!(app.back_channel(&token).await.0, 200);
    assert_eq!(present(&app.cache, &alice).await, 0);
    assert_eq!(fetches(), before + 1, "the fetched set is used");

    // unknown kids: no refetch within min_refetch_interval, then one per flood
    forger.kid = "made-up".into();
    let unknown = forger.sign(&provider.claims(Some(&alice.sid), None));
    let before = fetches();
    for _ in 0..10 {
        expect_refused(
            app.back_channel(&unknown).await,
            &LogoutError::UnknownKey {
                kid: Some("made-up".into()),
            },
        );
    }
    assert_eq!(fetches(), before, "no refetch within min_refetch_interval");
    // ... and the provider fails again meanwhile: the refetch an unknown kid asks for
    // fails, which is a temporary failure (the sender may retry), not "unknown key";
    // the keys fetched before keep verifying real tokens
    provider.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(refetch + std::time::Duration::from_millis(100)).await;
    let before = fetches();
    let statuses = app.flood(&unknown, 100).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    let asked = fetches() - before;
    assert!(
        (1..=2).contains(&asked),
        "{asked} fetches for 100 unknown kids"
    );
    let bob = sign_in(&app.cache, &provider, BOB).await;
    let token = provider.rsa.sign(&provider.claims(Some(&bob.sid), None));
    assert_eq!(app.back_channel(&token).await.0, 200);
    assert_eq!(present(&app.cache, &bob).await, 0);
    assert_eq!(fetches() - before, asked, "no fetch for a known kid");
}

#[tokio::test]
async fn a_back_channel_logout_during_an_l2_outage_is_503_and_the_retry_completes_it() {
    let server = RedisServer::start();
    let provider = Provider::start().await;
    let chaos = Arc::new(store::chaos::ChaosStore::passthrough(
        store::open(&server.url()).await.unwrap(),
    ));
    let cache = TokenCache::builder()
        .store(chaos.clone())
        // no breaker: the call after the outage goes straight to Redis
        .l2_breaker(tokencache::twolevel::BreakerOptions {
            failure_threshold: 0,
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let validator = provider.validator(&cache);
    let app = App::with(cache, validator).await;
    let alice = sign_in(&app.cache, &provider, ALICE).await;
    let bob = sign_in(&app.cache, &provider, BOB).await;
    let token = provider.rsa.sign(&provider.claims(Some(&alice.sid), None));
    let jti_keys = || {
        server
            .cli(&["--scan", "--pattern", "tc:jti:*"])
            .lines()
            .count()
    };

    chaos.fail_always(store::StoreErrorKind::Connection);
    for _ in 0..2 {
        // the provider retries: each answer is a 503, never a replay refusal
        let r = app.post_back_channel(&token).await;
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.to_str().unwrap()),
            Some("10")
        );
        expect_unavailable(read(r).await);
    }
    // front channel, same outage
    let r = app
        .http
        .get(format!("{}/auth/logout/frontchannel", app.base))
        .query(&[
            ("iss", provider.issuer.as_str()),
            ("sid", alice.sid.as_str()),
        ])
        .send()
        .await
        .unwrap();
    expect_unavailable(read(r).await);
    // the app's own sign-out (bob): the session ends here, but not durably
    let r = app
        .http
        .post(format!("{}/auth/signout", app.base))
        .header("x-test-account", &bob.home)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read(r).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["complete"], json!(false), "{body}");
    chaos.fail_never();
    assert_eq!(jti_keys(), 0, "the jti is not spent");

    // the failed attempts left alice in Redis: the logout below is what removes her
    let alice_partition = app.cache.two_level().keys().partition_str(&alice.home);
    let still_there = server.cli(&["EXISTS", &alice_partition]);
    assert_eq!(still_there, "1", "L2 still holds alice's partition");

    let (status, _, body) = app.back_channel(&token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.cli(&["EXISTS", &alice_partition]), "0");
    assert_eq!(present(&app.cache, &alice).await, 0);
    assert_eq!(jti_keys(), 1, "spent now");
    expect_refused(
        app.back_channel(&token).await,
        &LogoutError::Replayed {
            jti: token_jti(&token),
        },
    );
}
