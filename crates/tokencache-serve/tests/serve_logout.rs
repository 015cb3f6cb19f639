//! Back-channel logout through `tokencache serve`, end to end: a real `redis-server`, the
//! built binary, and a provider's key set served over HTTP. A web app (the library, on
//! the same Redis and prefix) recorded the user's provider session at sign-in; the
//! provider's logout token, posted to the service, signs the user out everywhere.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use testkit::{OidcProvider, RedisServer};
use tokencache::sample::{self, CLIENT_ID, ENVIRONMENT, TENANT};
use tokencache::signout::SessionIndex;
use tokencache::{SaveFor, SaveRequest, TokenCache};

mod common;

use common::*;

const ISSUER: &str = "https://login.example.test/tenant/v2.0";
const WEB_APP: &str = "web-app";
const PREFIX: &str = "bcl:";

/// The provider's signing key (ES256) and its public half as a JWKS document.
struct ProviderKey {
    pair: EcdsaKeyPair,
    jwks: Value,
}

impl ProviderKey {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref(); // 0x04 || x || y
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
        ProviderKey { pair, jwks }
    }

    /// A compact JWS (ES256: the fixed-size r || s signature is the JWS form).
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"});
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let input = format!("{}.{}", b64(&header), b64(claims));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// Serves `body` as JSON to every request on a loopback port; returns the URL.
fn serve_json(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn logout_claims(jti: &str, sid: &str, sub: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": WEB_APP, "iat": now(), "exp": now() + 120, "jti": jti,
        "sid": sid, "sub": sub,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    })
}

#[test]
fn a_backchannel_logout_posted_to_the_service_signs_the_user_out() {
    let redis = RedisServer::start();
    let op = OidcProvider::start(); // the configuration's APIs point at it; unused here
    let key = ProviderKey::new();
    let jwks_uri = serve_json(key.jwks.to_string());
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "key_prefix = \"{PREFIX}\"\n[backchannel_logout]\nissuer = \"{ISSUER}\"\nclient_id = \"{WEB_APP}\"\njwks_uri = \"{jwks_uri}\""
    );
    let cfg = config(dir.path(), &op, &redis.url(), &extra);
    let s = Serve::start(&cfg, &[]);
    let spec = openapi();

    // The web app: signs two users in (tokens in L2, provider sessions recorded).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (web, homes) = rt.block_on(async {
        let store = tokencache::store::open(&redis.url()).await.unwrap();
        let web = TokenCache::builder()
            .store(store)
            .key_prefix(PREFIX)
            .no_encryption()
            .build()
            .await
            .unwrap();
        let sessions = SessionIndex::new(&web);
        let mut homes = Vec::new();
        for (oid, sid, sub) in [
            ("aaaaaaaa-0000-0000-0000-00000000b0b1", "sid-1", "sub-1"),
            ("aaaaaaaa-0000-0000-0000-00000000b0b2", "sid-2", "sub-2"),
        ] {
            let scopes = sample::USER_SCOPES[0];
            let resp = sample::user_response(oid, TENANT, scopes, now(), 3600).unwrap();
            let req = SaveRequest::new(CLIENT_ID, SaveFor::User, ENVIRONMENT, TENANT, scopes);
            let home = web
                .save_token_response(&req, &resp)
                .await
                .unwrap()
                .partition;
            sessions
                .record(ISSUER, Some(sid), Some(sub), &home)
                .await
                .unwrap();
            homes.push(home);
        }
        (web, homes)
    });
    let in_l2 = |home: &str| redis.cli(&["EXISTS", &format!("{PREFIX}{home}")]).trim() == "1";
    assert!(homes.iter().all(|h| in_l2(h)));

    // The provider's logout token for the first user's session.
    let token = key.sign(&logout_claims("jti-1", "sid-1", "sub-1"));
    let a = form_post(
        &s.addr,
        "/v1/backchannel-logout",
        &format!("logout_token={token}"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    conforms(&spec, "post", "/v1/backchannel-logout", &a);
    assert!(!in_l2(&homes[0]), "the user's partition is gone from L2");
    assert!(in_l2(&homes[1]), "the other user is still signed in");
    let sessions = SessionIndex::new(&web);
    let found = rt.block_on(sessions.find_by_sid(ISSUER, "sid-1")).unwrap();
    assert_eq!(found, None, "the session record went with it");
    assert_eq!(
        rt.block_on(sessions.find_by_sid(ISSUER, "sid-2"))
            .unwrap()
            .as_deref(),
        Some(homes[1].as_str())
    );

    // The same token again (a replay), a token for another audience, one signed by
    // another key: refused, and the second user stays signed in.
    let stranger = ProviderKey::new();
    let mut other_audience = logout_claims("jti-3", "sid-2", "sub-2");
    other_audience["aud"] = json!("another-app");
    for bad in [
        token.clone(),
        key.sign(&other_audience),
        stranger.sign(&logout_claims("jti-4", "sid-2", "sub-2")),
    ] {
        let a = form_post(
            &s.addr,
            "/v1/backchannel-logout",
            &format!("logout_token={bad}"),
        );
        assert_eq!(a.status, 400, "{}", a.body);
        conforms(&spec, "post", "/v1/backchannel-logout", &a);
    }
    assert!(in_l2(&homes[1]));
    drop(web);
    drop(rt);
    // No token reached the logs.
    let logs = s.logs();
    assert!(!logs.contains(&token));
}
