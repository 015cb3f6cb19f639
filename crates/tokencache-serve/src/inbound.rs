//! Validation of the tokens callers forward (`[inbound]`): signature against the
//! issuer's keys (discovery → `jwks_uri`, cached; an unknown `kid` refetches the set at a
//! bounded rate, `tokencache::signout::Jwks`), `iss`, `aud`, `exp`/`nbf` with the clock
//! skew, the algorithm allow-list (never `none` nor HMAC), and the required scopes or
//! roles. A valid token is remembered by its SHA-256 until its `exp` (a bounded memo),
//! so a request that repeats a token costs one hash and one map lookup.
//!
//! Reasons are short and fixed: they never hold the token nor a claim of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokencache::acquire::{HttpOptions, Provider};
use tokencache::signout::{Jwks, SignatureCheck};

use super::config::InboundConfig;

/// Longest token accepted (bytes).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most tokens remembered at once.
const MEMO_CAPACITY: usize = 10_000;
/// A failed discovery is not repeated for this long (requests meanwhile get its error).
const DISCOVERY_BACKOFF: Duration = Duration::from_secs(5);
/// Dates beyond year 9999 (either way) are not dates.
const MAX_DATE: i64 = 253_402_300_799;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The token is not valid: 401 with this short reason.
    Invalid(&'static str),
    /// The issuer's keys could not be had: 503 (the token may be valid; try later).
    Unavailable(String),
}

/// A validated token's claims.
#[derive(Debug)]
pub(crate) struct Validated {
    /// Every claim of the token.
    pub(crate) claims: Map<String, Value>,
    /// `exp`, Unix seconds.
    pub(crate) exp: i64,
}

/// The validator of `[inbound]`.
#[derive(Debug)]
pub(crate) struct Inbound {
    issuers: Vec<Issuer>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    required_scopes: Vec<String>,
    required_roles: Vec<String>,
    skew: i64,
    memo: Memo,
    http: HttpOptions,
}

#[derive(Debug)]
struct Issuer {
    iss: String,
    keys: Keys,
}

#[derive(Debug)]
enum Keys {
    /// `jwks_uri` given: every issuer's keys are there.
    Fixed(Jwks),
    /// From the issuer's discovery document, on first use.
    Discovered {
        found: OnceLock<Jwks>,
        /// One discovery at a time; the last failure, remembered for a while.
        failed: tokio::sync::Mutex<Option<(Instant, String)>>,
    },
}

impl Inbound {
    /// The validator of a checked `[inbound]` (with `validate = true`).
    pub(crate) fn new(c: &InboundConfig, http: HttpOptions) -> Result<Self, String> {
        let fixed = match &c.jwks_uri {
            Some(u) => Some(Jwks::remote(u).map_err(|e| format!("inbound.jwks_uri: {e}"))?),
            None => None,
        };
        let issuers = c
            .issuers
            .iter()
            .map(|iss| Issuer {
                iss: iss.clone(),
                keys: match &fixed {
                    Some(j) => Keys::Fixed(j.clone()),
                    None => Keys::Discovered {
                        found: OnceLock::new(),
                        failed: tokio::sync::Mutex::new(None),
                    },
                },
            })
            .collect();
        Ok(Self {
            issuers,
            audiences: c.audiences.clone(),
            algorithms: c.algorithms.clone(),
            required_scopes: c.required_scopes.clone(),
            required_roles: c.required_roles.clone(),
            skew: c.clock_skew.as_secs().min(600) as i64,
            memo: Memo::default(),
            http,
        })
    }

    /// Fetches every issuer's discovery document now (a failure is logged: requests will
    /// try again), so that the first caller does not wait for it.
    pub(crate) async fn warm_up(&self) {
        for i in &self.issuers {
            if let Err(e) = i.jwks(self.http).await {
                tracing::warn!(issuer = %i.iss, error = %e, "[inbound]: the issuer's keys are not available yet; tokens are refused (503) until they are");
            }
        }
    }

    /// Validates `token` (the credentials of `Authorization: Bearer`).
    pub(crate) async fn validate(&self, token: &str) -> Result<Arc<Validated>, Refused> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refused::Invalid("the token is too long"));
        }
        let now = now_secs();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(v) = self.memo.get(&digest, now, self.skew) {
            return Ok(v);
        }
        let v = Arc::new(self.check(token, now).await?);
        self.memo.insert(digest, v.clone(), now, self.skew);
        Ok(v)
    }

    async fn check(&self, token: &str, now: i64) -> Result<Validated, Refused> {
        use Refused::Invalid;
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() == 5 {
            return Err(Invalid("encrypted tokens (JWE) are not accepted"));
        }
        let [header_b64, claims_b64, signature] = parts[..] else {
            return Err(Invalid("not a JWT"));
        };
        let header = json_part(header_b64).ok_or(Invalid("the JWT header is not readable"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<Algorithm>().ok())
            .filter(|a| self.algorithms.contains(a))
            .ok_or(Invalid("signature algorithm not accepted"))?;
        if header.contains_key("crit") {
            return Err(Invalid("critical header extensions are not supported"));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(Invalid("the JWT header's kid is not a string")),
        };
        let claims = json_part(claims_b64).ok_or(Invalid("the JWT claims are not readable"))?;
        // The issuer picks the keys; the signature then proves the issuer.
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.iss == iss)
            .ok_or(Invalid("issuer not accepted"))?;
        let jwks = issuer.jwks(self.http).await.map_err(Refused::Unavailable)?;
        let input = &token[..header_b64.len() + 1 + claims_b64.len()];
        match jwks
            .verify_signature(kid, alg, input.as_bytes(), signature)
            .await
        {
            Ok(SignatureCheck::Verified) => {}
            Ok(SignatureCheck::BadSignature) => {
                return Err(Invalid("the signature does not verify"))
            }
            Ok(SignatureCheck::UnknownKey) => {
                return Err(Invalid("signed with a key the issuer does not publish"))
            }
            Err(e) => return Err(Refused::Unavailable(e.to_string())),
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !audience_ok {
            return Err(Invalid("audience not accepted"));
        }
        let exp = date(&claims, "exp")?.ok_or(Invalid("no exp claim"))?;
        if exp.saturating_add(self.skew) <= now {
            return Err(Invalid("the token has expired"));
        }
        if let Some(nbf) = date(&claims, "nbf")? {
            if nbf.saturating_sub(self.skew) > now {
                return Err(Invalid("the token is not valid yet (nbf)"));
            }
        }
        if !self.required_scopes.is_empty() || !self.required_roles.is_empty() {
            let scope_ok = claims.get("scp").and_then(Value::as_str).is_some_and(|s| {
                s.split(' ')
                    .any(|x| self.required_scopes.iter().any(|r| r == x))
            });
            let role_ok = claims
                .get("roles")
                .and_then(Value::as_array)
                .is_some_and(|roles| {
                    roles
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|x| self.required_roles.iter().any(|r| r == x))
                });
            if !scope_ok && !role_ok {
                return Err(Invalid(
                    "the token has none of the required scopes or roles",
                ));
            }
        }
        Ok(Validated { claims, exp })
    }
}

impl Issuer {
    async fn jwks(&self, http: HttpOptions) -> Result<Jwks, String> {
        let (found, failed) = match &self.keys {
            Keys::Fixed(j) => return Ok(j.clone()),
            Keys::Discovered { found, failed } => (found, failed),
        };
        if let Some(j) = found.get() {
            return Ok(j.clone());
        }
        let mut failed = failed.lock().await;
        if let Some(j) = found.get() {
            return Ok(j.clone());
        }
        if let Some((at, e)) = &*failed {
            if at.elapsed() < DISCOVERY_BACKOFF {
                return Err(e.clone());
            }
        }
        let result = match Provider::fetch(&self.iss, http).await {
            Ok(p) => p
                .jwks
                .ok_or_else(|| format!("the discovery document of {} has no jwks_uri", self.iss)),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(j) => {
                let _ = found.set(j.clone());
                *failed = None;
                Ok(j)
            }
            Err(e) => {
                *failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}

/// A JSON object from a base64url JWT part.
fn json_part(b64: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// A NumericDate claim, when present; out of the range of dates is invalid.
fn date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Refused> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = v
        .as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .filter(|n| n.abs() <= MAX_DATE);
    match n {
        Some(n) => Ok(Some(n)),
        None => Err(Refused::Invalid(match name {
            "exp" => "the exp claim is not a date",
            _ => "the nbf claim is not a date",
        })),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The user a token names, as the cache keys that user's OBO partitions: the library's
/// home account id of the token's claims (`tokencache::issuer::account_of`: Entra's
/// `oid.tid`; `sub.{issuer key}` for any other issuer). The one place serve derives a user from a token: the
/// sign-out of "this user" and the cache's links of OBO partitions to their user agree
/// by construction.
pub(crate) fn user_of(token: &str) -> Option<String> {
    let claims = tokencache::schema::decode_jwt_claims(token).ok()?;
    tokencache::issuer::account_of(&claims)
}

/// Validated tokens by SHA-256, each until its `exp` (plus the skew), at most
/// [`MEMO_CAPACITY`] of them.
#[derive(Debug, Default)]
struct Memo {
    entries: Mutex<HashMap<[u8; 32], Arc<Validated>>>,
}

impl Memo {
    fn get(&self, digest: &[u8; 32], now: i64, skew: i64) -> Option<Arc<Validated>> {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get(digest)?;
        if v.exp.saturating_add(skew) > now {
            return Some(v.clone());
        }
        m.remove(digest);
        None
    }

    fn insert(&self, digest: [u8; 32], v: Arc<Validated>, now: i64, skew: i64) {
        let mut m = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MEMO_CAPACITY {
            m.retain(|_, v| v.exp.saturating_add(skew) > now);
            if m.len() >= MEMO_CAPACITY {
                // Still full of live tokens: start over (each is checked again once).
                m.clear();
            }
        }
        m.insert(digest, v);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;
    use tokencache::signout::KeySet;

    const ISS: &str = "https://issuer.example/t/v2.0";

    struct Key {
        pair: EcdsaKeyPair,
        jwks: Value,
    }

    fn key(kid: &str) -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let p = pair.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])}]});
        Key { pair, jwks }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn sign(k: &Key, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let sig = k.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn validator(k: &Key, f: impl FnOnce(&mut InboundConfig)) -> Inbound {
        let mut c = InboundConfig {
            validate: true,
            issuers: vec![ISS.into()],
            jwks_uri: None,
            audiences: vec!["api://mine".into()],
            algorithms: crate::config::DEFAULT_ALGORITHMS.to_vec(),
            required_scopes: vec![],
            required_roles: vec![],
            clock_skew: Duration::from_secs(60),
        };
        f(&mut c);
        let mut v = Inbound::new(&c, HttpOptions::default()).unwrap();
        let set = KeySet::from_json(k.jwks.to_string().as_bytes()).unwrap();
        for i in &mut v.issuers {
            i.keys = Keys::Fixed(Jwks::fixed(set.clone()));
        }
        v
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": ISS, "aud": "api://mine", "exp": now_secs() + 600,
            "nbf": now_secs() - 10, "sub": "u", "scp": "read write", "oid": "o1", "tid": "t1"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn es256() -> Value {
        json!({"alg": "ES256", "kid": "k1", "typ": "JWT"})
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_valid_token_is_accepted_once_checked_then_from_the_memo() {
        let k = key("k1");
        let v = validator(&k, |_| {});
        let t = sign(&k, &es256(), &claims(json!({})));
        let got = run(v.validate(&t)).unwrap();
        assert_eq!(got.claims["sub"], "u");
        assert_eq!(v.memo.len(), 1);
        let again = run(v.validate(&t)).unwrap();
        assert!(Arc::ptr_eq(&got, &again));
        // a provider other than Entra: its subject qualified by its issuer (its oid/tid
        // claims are not trusted to name a user)
        let user = tokencache::issuer::generic_home_account_id("u", ISS);
        assert_eq!(user_of(&t).as_deref(), Some(user.as_str()));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused_with_a_short_reason() {
        let k = key("k1");
        let other = key("k1");
        let v = validator(&k, |_| {});
        let good = sign(&k, &es256(), &claims(json!({})));
        let (h, rest) = good.split_once('.').unwrap();
        let (c, s) = rest.split_once('.').unwrap();
        let tampered_claims = format!("{h}.{}.{s}", b64(&claims(json!({"sub": "admin"}))));
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[3] ^= 1;
        let tampered_sig = format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig));
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none"})),
            b64(&claims(json!({})))
        );
        let hs = format!("{}.{c}.{s}", b64(&json!({"alg": "HS256", "kid": "k1"})));
        let cases: Vec<(String, &str)> = vec![
            (none, "signature algorithm not accepted"),
            (hs, "signature algorithm not accepted"),
            (tampered_claims, "the signature does not verify"),
            (tampered_sig, "the signature does not verify"),
            (
                sign(&other, &es256(), &claims(json!({}))),
                "the signature does not verify",
            ),
            (
                sign(
                    &k,
                    &json!({"alg": "ES256", "kid": "k9"}),
                    &claims(json!({})),
                ),
                "signed with a key the issuer does not publish",
            ),
            (
                sign(&k, &es256(), &claims(json!({"aud": "api://other"}))),
                "audience not accepted",
            ),
            (
                sign(&k, &es256(), &claims(json!({"aud": ["x", "y"]}))),
                "audience not accepted",
            ),
            (
                sign(
                    &k,
                    &es256(),
                    &claims(json!({"iss": "https://evil.example/"})),
                ),
                "issuer not accepted",
            ),
            (
                sign(&k, &es256(), &claims(json!({"iss": null}))),
                "issuer not accepted",
            ),
            (
                sign(&k, &es256(), &claims(json!({"exp": now_secs() - 61}))),
                "the token has expired",
            ),
            (
                sign(&k, &es256(), &claims(json!({"exp": null}))),
                "no exp claim",
            ),
            (
                sign(&k, &es256(), &claims(json!({"exp": 1e300}))),
                "the exp claim is not a date",
            ),
            (
                sign(&k, &es256(), &claims(json!({"exp": i64::MAX}))),
                "the exp claim is not a date",
            ),
            (
                sign(&k, &es256(), &claims(json!({"nbf": now_secs() + 3600}))),
                "the token is not valid yet (nbf)",
            ),
            (
                sign(
                    &k,
                    &json!({"alg": "ES256", "kid": "k1", "crit": ["x"]}),
                    &claims(json!({})),
                ),
                "critical header extensions are not supported",
            ),
            ("a.b".into(), "not a JWT"),
            (
                "a.b.c.d.e".into(),
                "encrypted tokens (JWE) are not accepted",
            ),
            ("!!.e30.x".into(), "the JWT header is not readable"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "the token is too long"),
        ];
        for (t, reason) in cases {
            assert_eq!(
                run(v.validate(&t)).unwrap_err(),
                Refused::Invalid(reason),
                "{reason}"
            );
        }
        assert_eq!(v.memo.len(), 0);
        // an algorithm the key fits but the allow-list does not name
        let only_rs = validator(&k, |c| c.algorithms = vec![Algorithm::RS256]);
        assert_eq!(
            run(only_rs.validate(&good)).unwrap_err(),
            Refused::Invalid("signature algorithm not accepted")
        );
    }

    #[test]
    fn required_scopes_or_roles_and_several_issuers() {
        let k = key("k1");
        let v = validator(&k, |c| {
            c.required_scopes = vec!["admin".into()];
            c.required_roles = vec!["Tokens.Read".into()];
            c.issuers.push("https://second.example/".into());
            c.audiences.push("api://alt".into());
        });
        let no = sign(&k, &es256(), &claims(json!({})));
        assert_eq!(
            run(v.validate(&no)).unwrap_err(),
            Refused::Invalid("the token has none of the required scopes or roles")
        );
        let scope = sign(&k, &es256(), &claims(json!({"scp": "read admin"})));
        assert!(run(v.validate(&scope)).is_ok());
        let role = sign(
            &k,
            &es256(),
            &claims(
                json!({"scp": null, "roles": ["Tokens.Read"], "iss": "https://second.example/", "aud": ["z", "api://alt"]}),
            ),
        );
        assert!(run(v.validate(&role)).is_ok());
    }

    #[test]
    fn the_memo_is_bounded_and_forgets_expired_tokens() {
        let m = Memo::default();
        let now = 1_000_000;
        let v = |exp| {
            Arc::new(Validated {
                claims: Map::new(),
                exp,
            })
        };
        m.insert([1; 32], v(now + 10), now, 0);
        assert!(m.get(&[1; 32], now, 0).is_some());
        assert!(m.get(&[1; 32], now + 10, 0).is_none());
        assert_eq!(m.len(), 0);
        for i in 0..MEMO_CAPACITY + 5 {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64).to_le_bytes());
            m.insert(d, v(now + 100), now, 0);
        }
        assert!(m.len() <= MEMO_CAPACITY);
    }
}
