//! The fake OpenID provider (JWKS over HTTP on loopback, real RS256/ES256 logout tokens),
//! the app running `tokencache::signout::axum::router`, and the signed-in users of the
//! web sign-out tests (`signout_web.rs`, `signout_web_failures.rs`).
#![allow(dead_code, unused_imports)]

pub use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub use std::sync::{Arc, RwLock};

pub use axum::response::IntoResponse;
pub use axum::routing::get;
pub use axum::Router;
pub use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
pub use base64::Engine;
pub use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
pub use ring::rand::SystemRandom;
pub use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
pub use serde_json::{json, Value};
pub use testkit::RedisServer;
pub use tokencache::partition::{assertion_hash, PartitionKey};
pub use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
pub use tokencache::signout::axum::{router, SignOutState};
pub use tokencache::signout::{
    Jwks, LogoutError, LogoutTokenValidator, RemoteOptions, SessionIndex, BACKCHANNEL_LOGOUT_EVENT,
};
pub use tokencache::store::{self, SharedStore};
pub use tokencache::{SaveFor, SaveRequest, TokenCache};

pub const API_CLIENT: &str = "0b7e1f4e-5a43-4d1c-9d3b-api000000001";
pub const DOWNSTREAM: &[&str] = &["api://downstream/Orders.Read"];
pub const GRAPH: &[&str] = &["https://graph.microsoft.com/User.Read"];
pub const ALICE: &str = "a11ce000-0000-0000-0000-000000000001";
pub const BOB: &str = "b0b00000-0000-0000-0000-000000000002";

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------- the fake provider

pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub jwk: Value,
}

pub fn rsa_signer(fixture: &str, kid: &str) -> Signer {
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

pub fn ec_signer(kid: &str) -> Signer {
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
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("logout+jwt".into());
        encode(&header, claims, &self.key).unwrap()
    }
}

/// An OpenID provider on loopback: its issuer and a JWKS endpoint that counts fetches.
pub struct Provider {
    pub issuer: String,
    pub jwks_uri: String,
    pub keys: Arc<RwLock<Vec<Value>>>,
    pub fetches: Arc<AtomicUsize>,
    /// While set, the JWKS endpoint answers `500` (after 50 ms, so that fetches overlap).
    pub failing: Arc<AtomicBool>,
    pub rsa: Signer,
    pub ec: Signer,
}

impl Provider {
    pub async fn start() -> Provider {
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
    pub fn claims(&self, sid: Option<&str>, sub: Option<&str>) -> Value {
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

    pub fn validator(&self, cache: &TokenCache) -> LogoutTokenValidator {
        LogoutTokenValidator::builder(
            &self.issuer,
            CLIENT_ID,
            Jwks::remote(&self.jwks_uri).unwrap(),
        )
        .replay_cache(cache)
        .build()
    }
}

pub fn uuidish() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Serves `app` on 127.0.0.1 (a free port); returns `http://127.0.0.1:port`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

// ---------------------------------------------------------------- the app

/// The web app (and its web API, on the same L2) with its sign-out routes on loopback.
pub struct App {
    pub base: String,
    pub cache: TokenCache,
    pub store: SharedStore,
    pub http: reqwest::Client,
}

impl App {
    pub async fn start(store: SharedStore, provider: &Provider) -> App {
        let cache = TokenCache::builder()
            .store(store.clone())
            .build()
            .await
            .unwrap();
        let validator = provider.validator(&cache);
        App::with(cache, validator).await
    }

    /// The app on `cache`, with this validator.
    pub async fn with(cache: TokenCache, validator: LogoutTokenValidator) -> App {
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

    pub async fn back_channel(&self, token: &str) -> (u16, Option<String>, Value) {
        read(self.post_back_channel(token).await).await
    }

    pub async fn post_back_channel(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/auth/logout/backchannel", self.base))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap()
    }

    /// `n` back-channel POSTs of `token` at once; their statuses.
    pub async fn flood(&self, token: &str, n: usize) -> Vec<u16> {
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

pub async fn read(r: reqwest::Response) -> (u16, Option<String>, Value) {
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
pub struct User {
    pub home: String,
    pub assertions: Vec<String>,
    pub session: String,
    pub sid: String,
    pub sub: String,
}

pub async fn sign_in(cache: &TokenCache, provider: &Provider, oid: &str) -> User {
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
pub async fn present(cache: &TokenCache, user: &User) -> usize {
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

pub fn expect_refused(got: (u16, Option<String>, Value), err: &LogoutError) {
    let (status, cc, body) = got;
    assert_eq!(status, 400, "{body}");
    assert_eq!(cc.as_deref(), Some("no-store"));
    assert_eq!(body["error"], json!(err.error_code()), "{body}");
    assert_eq!(body["error_description"], json!(err.to_string()), "{body}");
}

/// The `jti` of a token (the test made it; read back for the expected error).
pub fn token_jti(token: &str) -> String {
    let claims = token.split('.').nth(1).unwrap();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    v["jti"].as_str().unwrap().to_string()
}
