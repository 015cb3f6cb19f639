//! One test per validation rule of the logout token, with real signatures (an EC key
//! made here, an RSA key from the test fixtures) and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::*;
use crate::clock::ManualClock;

mod durable;
mod hostile;

const ISS: &str = "https://login.example.test/tenant-1/v2.0";
const CLIENT: &str = "client-1";
const NOW: i64 = 1_800_000_000;

struct Signer {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn ec_signer(kid: &str) -> Signer {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    Signer {
        kid: kid.to_string(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
    }
}

fn rsa_signer(kid: &str) -> Signer {
    let pem = include_str!("../../../tests/fixtures/signout-provider-rsa.pem");
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

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("logout+jwt".into());
        encode(&header, claims, &self.key).unwrap()
    }
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": CLIENT, "iat": NOW - 10, "exp": NOW + 110, "jti": "jti-1",
        "sid": "sid-1", "sub": "sub-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    })
}

fn validator(signers: &[&Signer]) -> LogoutTokenValidator {
    let jwks = json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()});
    let keys = KeySet::from_json(jwks.to_string().as_bytes()).unwrap();
    LogoutTokenValidator::builder(ISS, CLIENT, Jwks::fixed(keys))
        .clock(Arc::new(ManualClock::at_secs(NOW)))
        .build()
}

fn with(mut c: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    f(c.as_object_mut().unwrap());
    c
}

#[tokio::test]
async fn valid_es256_and_rs256_tokens_are_accepted() {
    let (ec, rsa) = (ec_signer("ec-1"), rsa_signer("rsa-1"));
    let v = validator(&[&ec, &rsa]);
    let got = v.validate(&ec.sign(&claims())).await.unwrap();
    assert_eq!(got.sid.as_deref(), Some("sid-1"));
    assert_eq!(got.sub.as_deref(), Some("sub-1"));
    assert_eq!(
        (got.jti.as_str(), got.iat, got.exp),
        ("jti-1", NOW - 10, Some(NOW + 110))
    );
    assert_eq!(got.kid.as_deref(), Some("ec-1"));
    let c = with(claims(), |m| {
        m.insert("jti".into(), json!("jti-2"));
    });
    let got = v.validate(&rsa.sign(&c)).await.unwrap();
    assert_eq!(got.kid.as_deref(), Some("rsa-1"));
}

#[tokio::test]
async fn a_signature_by_another_key_with_the_same_kid_is_refused() {
    let (real, forger) = (ec_signer("k1"), ec_signer("k1"));
    let v = validator(&[&real]);
    let err = v.validate(&forger.sign(&claims())).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::BadSignature {
            kid: Some("k1".into())
        }
    );
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let token = s.sign(&claims());
    let parts: Vec<&str> = token.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(
        with(claims(), |m| {
            m.insert("sid".into(), json!("someone-else"));
        })
        .to_string(),
    );
    let forged = format!("{}.{}.{}", parts[0], other, parts[2]);
    assert!(matches!(
        v.validate(&forged).await,
        Err(LogoutError::BadSignature { .. })
    ));
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let (known, other) = (ec_signer("k1"), ec_signer("k2"));
    let v = validator(&[&known]);
    let err = v.validate(&other.sign(&claims())).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnknownKey {
            kid: Some("k2".into())
        }
    );
    assert!(err.to_string().contains("k2"), "{err}");
}

#[tokio::test]
async fn a_key_of_another_type_than_the_algorithm_is_not_used() {
    // an RSA key published under the kid of an ES256 token: no candidate key
    let rsa = rsa_signer("k1");
    let ec = ec_signer("k1");
    let v = validator(&[&rsa]);
    let err = v.validate(&ec.sign(&claims())).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnknownKey {
            kid: Some("k1".into())
        }
    );
}

#[tokio::test]
async fn none_and_hmac_algorithms_are_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"logout+jwt"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims().to_string());
    let err = v.validate(&format!("{header}.{body}.")).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnsupportedAlgorithm { alg: "none".into() }
    );
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let err = v.validate(&hs).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
}

#[tokio::test]
async fn algorithms_can_be_restricted() {
    let s = ec_signer("k1");
    let jwks = json!({"keys": [s.jwk.clone()]}).to_string();
    let v = LogoutTokenValidator::builder(
        ISS,
        CLIENT,
        Jwks::fixed(KeySet::from_json(jwks.as_bytes()).unwrap()),
    )
    .algorithms(&[Algorithm::RS256])
    .clock(Arc::new(ManualClock::at_secs(NOW)))
    .build();
    let err = v.validate(&s.sign(&claims())).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::UnsupportedAlgorithm {
            alg: "ES256".into()
        }
    );
}

#[tokio::test]
async fn wrong_typ_is_refused_and_jwt_is_accepted() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    header.typ = Some("at+jwt".into());
    let err = v
        .validate(&encode(&header, &claims(), &s.key).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LogoutError::WrongType {
            typ: "at+jwt".into()
        }
    );
    header.typ = Some("JWT".into());
    assert!(v
        .validate(&encode(&header, &claims(), &s.key).unwrap())
        .await
        .is_ok());
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.insert("iss".into(), json!("https://evil.example.test"));
    });
    let err = v.validate(&s.sign(&c)).await.unwrap_err();
    assert_eq!(
        err,
        LogoutError::WrongIssuer {
            expected: ISS.into(),
            found: "https://evil.example.test".into()
        }
    );
}

#[tokio::test]
async fn wrong_audience_is_refused_and_an_audience_list_is_read() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.insert("aud".into(), json!("another-client"));
    });
    let err = v.validate(&s.sign(&c)).await.unwrap_err();
    assert!(
        matches!(err, LogoutError::WrongAudience { ref found, .. } if found == &["another-client".to_string()])
    );
    let c = with(claims(), |m| {
        m.insert("aud".into(), json!(["x", CLIENT]));
    });
    assert!(v.validate(&s.sign(&c)).await.is_ok());
}

#[tokio::test]
async fn iat_is_required_and_bounded() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.remove("iat");
    });
    assert_eq!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::MissingClaim("iat")
    );
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(NOW + 61));
        m.insert("jti".into(), json!("future"));
    });
    assert_eq!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::IssuedInFuture {
            iat: NOW + 61,
            now: NOW
        }
    );
    // within the leeway
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(NOW + 30));
        m.insert("jti".into(), json!("slightly-ahead"));
    });
    assert!(v.validate(&s.sign(&c)).await.is_ok());
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(NOW - 361));
        m.remove("exp");
        m.insert("jti".into(), json!("old"));
    });
    assert!(
        matches!(v.validate(&s.sign(&c)).await.unwrap_err(), LogoutError::TooOld { iat, max_age_secs: 300, .. } if iat == NOW - 361)
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.insert("iat".into(), json!(NOW - 200));
        m.insert("exp".into(), json!(NOW - 61));
    });
    assert_eq!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::Expired {
            exp: NOW - 61,
            now: NOW
        }
    );
}

#[tokio::test]
async fn the_backchannel_event_is_required_as_an_object() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    for events in [
        None,
        Some(json!({})),
        Some(json!({BACKCHANNEL_LOGOUT_EVENT: "yes"})),
        Some(json!([BACKCHANNEL_LOGOUT_EVENT])),
    ] {
        let c = with(claims(), |m| match events {
            None => {
                m.remove("events");
            }
            Some(e) => {
                m.insert("events".into(), e);
            }
        });
        assert_eq!(
            v.validate(&s.sign(&c)).await.unwrap_err(),
            LogoutError::NotALogoutToken
        );
    }
}

#[tokio::test]
async fn sid_or_sub_is_required() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.remove("sid");
        m.remove("sub");
    });
    assert_eq!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::MissingSidAndSub
    );
    let c = with(claims(), |m| {
        m.remove("sid");
    });
    let got = v.validate(&s.sign(&c)).await.unwrap();
    assert_eq!((got.sid, got.sub.as_deref()), (None, Some("sub-1")));
}

#[tokio::test]
async fn a_nonce_is_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.insert("nonce".into(), json!("n-1"));
    });
    assert_eq!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::NonceNotAllowed
    );
}

#[tokio::test]
async fn jti_is_required_and_a_replay_is_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let c = with(claims(), |m| {
        m.remove("jti");
    });
    assert_eq!(
        v.validate(&s.sign(&c)).await.unwrap_err(),
        LogoutError::MissingClaim("jti")
    );
    let token = s.sign(&claims());
    v.validate(&token).await.unwrap();
    assert_eq!(
        v.validate(&token).await.unwrap_err(),
        LogoutError::Replayed {
            jti: "jti-1".into()
        }
    );
}

#[tokio::test]
async fn a_refused_token_does_not_use_up_its_jti() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let bad = with(claims(), |m| {
        m.insert("nonce".into(), json!("n"));
    });
    assert!(v.validate(&s.sign(&bad)).await.is_err());
    assert!(v.validate(&s.sign(&claims())).await.is_ok());
}

#[tokio::test]
async fn replays_are_caught_across_validators_sharing_l2() {
    let store = crate::store::open("memory://").await.unwrap();
    let clock: crate::clock::SharedClock = Arc::new(ManualClock::at_secs(NOW));
    let cache = TokenCache::builder()
        .store(store)
        .clock(clock)
        .build()
        .await
        .unwrap();
    let s = ec_signer("k1");
    let jwks = || {
        Jwks::fixed(
            KeySet::from_json(json!({"keys": [s.jwk.clone()]}).to_string().as_bytes()).unwrap(),
        )
    };
    let replica_a = LogoutTokenValidator::builder(ISS, CLIENT, jwks())
        .replay_cache(&cache)
        .build();
    let replica_b = LogoutTokenValidator::builder(ISS, CLIENT, jwks())
        .replay_cache(&cache)
        .build();
    let token = s.sign(&claims());
    replica_a.validate(&token).await.unwrap();
    assert_eq!(
        replica_b.validate(&token).await.unwrap_err(),
        LogoutError::Replayed {
            jti: "jti-1".into()
        }
    );
    let key = cache.two_level().keys().logout_jti(ISS, "jti-1");
    let kept = cache
        .two_level()
        .store()
        .get(&key)
        .await
        .unwrap()
        .expect("jti remembered in L2");
    // as long as the token could pass: until min(exp, iat + max age) + leeway
    // = min(NOW + 110, NOW - 10 + 300) + 60 = NOW + 170
    assert!(
        kept.ttl
            .is_some_and(|t| t <= Duration::from_secs(170) && t > Duration::from_secs(120)),
        "{kept:?}"
    );
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    for token in ["", "abc", "a.b", "a.b.c.d", "!!.e30.x", "e30.e30.x"] {
        let err = v.validate(token).await.unwrap_err();
        assert!(
            matches!(
                err,
                LogoutError::Malformed(_) | LogoutError::UnsupportedAlgorithm { .. }
            ),
            "{token}: {err:?}"
        );
    }
    assert!(
        matches!(v.validate("a.b.c.d.e").await.unwrap_err(), LogoutError::Malformed(m) if m.contains("JWE"))
    );
    // a claims part that is not JSON, correctly signed
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let token = encode(&header, &claims(), &s.key).unwrap();
    let h = token.split('.').next().unwrap();
    let message = format!("{h}.{}", URL_SAFE_NO_PAD.encode("not json"));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &s.key, Algorithm::ES256).unwrap();
    assert_eq!(
        v.validate(&format!("{message}.{sig}")).await.unwrap_err(),
        LogoutError::Malformed("the claims is not a JSON object".into())
    );
}

#[test]
fn key_sets_skip_what_cannot_verify() {
    let ec = ec_signer("k1");
    let doc = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "weird", "kid": "w"},
        ec.jwk,
    ]});
    let set = KeySet::from_json(doc.to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.candidates(Some("k1"), Algorithm::ES256).len(), 1);
    assert!(set.candidates(Some("hmac"), Algorithm::HS256).is_empty());
    assert_eq!(
        KeySet::from_json(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap_err(),
        JwksError::NoUsableKeys
    );
    assert!(matches!(
        KeySet::from_json(b"[]").unwrap_err(),
        JwksError::Invalid(_)
    ));
}

#[cfg(feature = "jwks-fetch")]
#[test]
fn remote_jwks_needs_https_except_on_loopback() {
    assert!(Jwks::remote("https://login.example.test/keys").is_ok());
    assert!(Jwks::remote("http://127.0.0.1:8080/keys").is_ok());
    assert!(Jwks::remote("http://localhost/keys").is_ok());
    assert!(matches!(
        Jwks::remote("http://login.example.test/keys"),
        Err(JwksError::BadUri { .. })
    ));
    assert!(matches!(
        Jwks::remote("not a url"),
        Err(JwksError::BadUri { .. })
    ));
}

#[test]
fn errors_say_what_is_wrong_and_map_to_oauth_codes() {
    assert_eq!(LogoutError::NotALogoutToken.error_code(), "invalid_request");
    assert_eq!(
        LogoutError::SignOut("x".into()).error_code(),
        "temporarily_unavailable"
    );
    assert_eq!(
        LogoutError::Replayed { jti: "j".into() }.to_string(),
        "logout token replayed: jti j was already used"
    );
    assert!(LogoutError::NotALogoutToken
        .to_string()
        .contains(BACKCHANNEL_LOGOUT_EVENT));
}

#[tokio::test]
async fn session_index_records_finds_and_forgets() {
    let cache = TokenCache::builder()
        .store(crate::store::open("memory://").await.unwrap())
        .key_prefix("p:")
        .build()
        .await
        .unwrap();
    let idx = SessionIndex::new(&cache);
    idx.record(ISS, Some("sid-1"), Some("sub-1"), "oid.tid")
        .await
        .unwrap();
    assert_eq!(
        idx.find_by_sid(ISS, "sid-1").await.unwrap().as_deref(),
        Some("oid.tid")
    );
    assert_eq!(
        idx.find_by_sub(ISS, "sub-1").await.unwrap().as_deref(),
        Some("oid.tid")
    );
    assert_eq!(
        idx.find_by_sid("https://other.test", "sid-1")
            .await
            .unwrap(),
        None
    );
    let v = cache
        .two_level()
        .store()
        .get(&cache.two_level().keys().session_by_sid(ISS, "sid-1"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        v.ttl
            .is_some_and(|t| t > Duration::from_secs(80 * 24 * 3600)),
        "refresh token lifetime: {v:?}"
    );
    idx.forget(ISS, Some("sid-1"), None).await.unwrap();
    assert_eq!(idx.find_by_sid(ISS, "sid-1").await.unwrap(), None);
    assert_eq!(
        idx.find_by_sub(ISS, "sub-1").await.unwrap().as_deref(),
        Some("oid.tid")
    );
    assert!(idx.record("", Some("s"), None, "oid.tid").await.is_err());
}

#[tokio::test]
async fn a_released_jti_is_accepted_again() {
    let s = ec_signer("k1");
    let v = validator(&[&s]);
    let token = s.sign(&claims());
    let accepted = v.validate(&token).await.unwrap();
    assert!(matches!(
        v.validate(&token).await,
        Err(LogoutError::Replayed { .. })
    ));
    v.release(&accepted).await;
    assert!(v.validate(&token).await.is_ok());
}

#[tokio::test]
async fn a_token_without_kid_is_verified_with_the_keys_that_fit() {
    let (ec, rsa) = (ec_signer("k1"), rsa_signer("k2"));
    let v = validator(&[&rsa, &ec]);
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("logout+jwt".into());
    let got = v
        .validate(&encode(&header, &claims(), &ec.key).unwrap())
        .await
        .unwrap();
    assert_eq!(got.kid, None);
    let other = ec_signer("k3");
    let c = with(claims(), |m| {
        m.insert("jti".into(), json!("jti-2"));
    });
    let err = v
        .validate(&encode(&header, &c, &other.key).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, LogoutError::BadSignature { kid: None });
}
