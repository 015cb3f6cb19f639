//! Validation of OpenID Connect Back-Channel Logout tokens (OpenID Connect Back-Channel
//! Logout 1.0, section 2.6): signature with the provider's JWKS, `iss`, `aud`, `iat`,
//! `exp`, the `events` claim, `sid`/`sub`, no `nonce`, and replay of `jti`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::jwks::{Jwks, JwksError, SUPPORTED_ALGORITHMS};
use crate::clock::{SharedClock, SystemClock};
use crate::partition::KeySpace;
use crate::TokenCache;

/// The member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Longest logout token accepted (bytes).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a logout token was refused (or could not be checked). `Display` says what is
/// wrong in words an operator can act on; it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutError {
    /// Not a compact JWS with a readable JSON header and claims.
    #[error("malformed logout token: {0}")]
    Malformed(String),
    /// The header names an algorithm that is not accepted (`none`, HMAC, or not enabled).
    #[error("logout token signed with algorithm `{alg}`, which is not accepted")]
    UnsupportedAlgorithm {
        /// The `alg` of the header.
        alg: String,
    },
    /// The `typ` header is neither `logout+jwt` nor `JWT`.
    #[error("logout token has type `{typ}`; expected `logout+jwt` or `JWT`")]
    WrongType {
        /// The `typ` of the header.
        typ: String,
    },
    /// No key of the provider's JWKS has this `kid` (and fits the algorithm).
    #[error("logout token signed with a key the provider does not publish (kid {})", kid.as_deref().unwrap_or("<none>"))]
    UnknownKey {
        /// The `kid` of the header.
        kid: Option<String>,
    },
    /// The signature does not verify with the provider's key.
    #[error("logout token signature does not verify (kid {})", kid.as_deref().unwrap_or("<none>"))]
    BadSignature {
        /// The `kid` of the header.
        kid: Option<String>,
    },
    /// `iss` is not the provider's issuer.
    #[error("logout token issued by `{found}`, expected `{expected}`")]
    WrongIssuer {
        /// The issuer configured.
        expected: String,
        /// The token's `iss` (empty when missing).
        found: String,
    },
    /// `aud` does not name this client.
    #[error("logout token is for audience {found:?}, not for client `{expected}`")]
    WrongAudience {
        /// The client id configured.
        expected: String,
        /// The token's audiences.
        found: Vec<String>,
    },
    /// A claim the specification requires is missing or of the wrong type.
    #[error("logout token has no valid `{0}` claim")]
    MissingClaim(&'static str),
    /// `exp` has passed (beyond the leeway).
    #[error("logout token expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`, Unix seconds.
        exp: i64,
        /// Now, Unix seconds.
        now: i64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("logout token issued in the future: iat {iat}, now {now}")]
    IssuedInFuture {
        /// The token's `iat`, Unix seconds.
        iat: i64,
        /// Now, Unix seconds.
        now: i64,
    },
    /// `iat` is older than the accepted age.
    #[error(
        "logout token too old: issued at {iat}, more than {max_age_secs} s before now ({now})"
    )]
    TooOld {
        /// The token's `iat`, Unix seconds.
        iat: i64,
        /// The accepted age, seconds.
        max_age_secs: u64,
        /// Now, Unix seconds.
        now: i64,
    },
    /// No `events` claim with the back-channel logout event (an ID token, or another
    /// kind of security event token).
    #[error("not a logout token: the `events` claim has no `{BACKCHANNEL_LOGOUT_EVENT}` member")]
    NotALogoutToken,
    /// Neither `sid` nor `sub`: the token does not say whom to sign out.
    #[error("logout token has neither `sid` nor `sub`")]
    MissingSidAndSub,
    /// A `nonce` claim, which logout tokens must not have (it marks an ID token).
    #[error("logout token has a `nonce` claim, which logout tokens must not have")]
    NonceNotAllowed,
    /// This `jti` was accepted before.
    #[error("logout token replayed: jti {jti} was already used")]
    Replayed {
        /// The token id.
        jti: String,
    },
    /// A date claim (`iat`, `exp`) is a number too large or too small to be a date
    /// (beyond year 9999 either way).
    #[error("logout token has a `{claim}` claim out of the range of dates")]
    DateOutOfRange {
        /// The claim.
        claim: &'static str,
    },
    /// A front-channel logout request lacks a parameter.
    #[error("logout request has no `{0}` parameter")]
    MissingParameter(&'static str),
    /// The provider's key set could not be had.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// The token was valid but the sign-out itself failed (the store).
    #[error("sign-out failed: {0}")]
    SignOut(String),
    /// The sign-out ran but is not durable in the shared store (L2 failed on the
    /// revocation stamp or on a removal): this replica refuses the user's tokens, other
    /// replicas may still serve some. The logout should be sent again; a back-channel
    /// token's `jti` is released for that.
    #[error(
        "sign-out not completed in the shared store (L2 unavailable); send the logout again later"
    )]
    NotDurable {
        /// The account whose sign-out is incomplete (not part of the message).
        account: String,
    },
}

impl LogoutError {
    /// The OAuth error code to answer with (`error` of the response):
    /// `invalid_request` when the request or token is at fault, `temporarily_unavailable`
    /// when the keys or the store could not be had (see [`is_temporary`](Self::is_temporary)).
    pub fn error_code(&self) -> &'static str {
        if self.is_temporary() {
            "temporarily_unavailable"
        } else {
            "invalid_request"
        }
    }

    /// Whether the same request may succeed later (keys or store unavailable, sign-out
    /// not durable): the axum routes answer these `503` with `Retry-After`, others `400`.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            LogoutError::Jwks(_) | LogoutError::SignOut(_) | LogoutError::NotDurable { .. }
        )
    }
}

/// The claims of a validated logout token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The issuer.
    pub iss: String,
    /// The session id at the provider, when given.
    pub sid: Option<String>,
    /// The subject, when given.
    pub sub: Option<String>,
    /// The token id.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expiry, Unix seconds, when given.
    pub exp: Option<i64>,
    /// The key that signed it.
    pub kid: Option<String>,
}

/// Validates back-channel logout tokens of one provider (issuer) for one client.
/// Cheap to clone; share one per provider.
#[derive(Debug, Clone)]
pub struct LogoutTokenValidator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    client_id: String,
    jwks: Jwks,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    max_age: Duration,
    clock: SharedClock,
    replay: ReplayGuard,
}

/// Builds a [`LogoutTokenValidator`].
#[derive(Debug)]
pub struct LogoutTokenValidatorBuilder {
    issuer: String,
    client_id: String,
    jwks: Jwks,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    max_age: Duration,
    clock: Option<SharedClock>,
    cache: Option<TokenCache>,
}

impl LogoutTokenValidatorBuilder {
    /// Accepts only these signature algorithms (subset of RS256/384/512, PS256/384/512,
    /// ES256, ES384; others are ignored). Default: all of them.
    pub fn algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms
            .iter()
            .copied()
            .filter(|a| SUPPORTED_ALGORITHMS.contains(a))
            .collect();
        self
    }

    /// Clock skew allowed on `iat` and `exp`. Default 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Tokens issued longer ago than this are refused. Default 5 minutes.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Uses this clock (tests). Default: the replay cache's clock, else the system clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Remembers accepted `jti`s in this cache's L2 too, so that a token replayed to
    /// another replica is refused there. Without it, replays are caught per process.
    pub fn replay_cache(mut self, cache: &TokenCache) -> Self {
        self.cache = Some(cache.clone());
        self
    }

    /// The validator.
    pub fn build(self) -> LogoutTokenValidator {
        let clock = self
            .clock
            .or_else(|| self.cache.as_ref().map(|c| c.two_level().clock().clone()))
            .unwrap_or_else(|| Arc::new(SystemClock));
        LogoutTokenValidator {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                client_id: self.client_id,
                jwks: self.jwks,
                algorithms: self.algorithms,
                leeway: self.leeway,
                max_age: self.max_age,
                clock,
                replay: ReplayGuard {
                    seen: Mutex::new(HashMap::new()),
                    cache: self.cache,
                },
            }),
        }
    }
}

impl LogoutTokenValidator {
    /// A validator for tokens of `issuer` (exactly as in its discovery document) meant
    /// for `client_id`, verified with `jwks`.
    pub fn builder(issuer: &str, client_id: &str, jwks: Jwks) -> LogoutTokenValidatorBuilder {
        LogoutTokenValidatorBuilder {
            issuer: issuer.to_string(),
            client_id: client_id.to_string(),
            jwks,
            algorithms: SUPPORTED_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(60),
            max_age: Duration::from_secs(300),
            clock: None,
            cache: None,
        }
    }

    /// The issuer this validator accepts.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The client id this validator accepts as audience.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// Validates a logout token and, when it is valid, remembers its `jti` so that it is
    /// accepted once. Checks, in order: shape, `alg`, `typ`, signature (key by `kid`),
    /// `iss`, `aud`, `iat` (present, not in the future, not older than the max age),
    /// `exp` (when present), `events`, `sid`/`sub`, no `nonce`, `jti`, then replay.
    pub async fn validate(&self, token: &str) -> Result<LogoutClaims, LogoutError> {
        let inner = &*self.inner;
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(LogoutError::Malformed(format!(
                "longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() == 5 {
            return Err(LogoutError::Malformed(
                "encrypted (JWE) logout tokens are not supported".into(),
            ));
        }
        let [header_b64, claims_b64, signature] = parts[..] else {
            return Err(LogoutError::Malformed(
                "not a JWT (three dot-separated parts)".into(),
            ));
        };
        let header = json_part(header_b64, "header")?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|a| inner.algorithms.contains(a))
            .ok_or_else(|| LogoutError::UnsupportedAlgorithm {
                alg: alg_name.to_string(),
            })?;
        if let Some(typ) = header.get("typ") {
            let typ = typ.as_str().unwrap_or("");
            let bare = typ.strip_prefix("application/").unwrap_or(typ);
            if !bare.eq_ignore_ascii_case("logout+jwt") && !bare.eq_ignore_ascii_case("jwt") {
                return Err(LogoutError::WrongType {
                    typ: typ.to_string(),
                });
            }
        }
        if header.contains_key("crit") {
            return Err(LogoutError::Malformed(
                "critical header extensions are not supported".into(),
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(LogoutError::Malformed("`kid` is not a string".into())),
        };

        // signature
        let keys = inner.jwks.lookup(kid.as_deref(), alg).await?;
        if keys.is_empty() {
            return Err(LogoutError::UnknownKey { kid });
        }
        let message = &token[..header_b64.len() + 1 + claims_b64.len()];
        let verified = keys.iter().any(|k| {
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, alg)
                .unwrap_or(false)
        });
        if !verified {
            tracing::info!(
                kid = kid.as_deref().unwrap_or(""),
                "logout token refused: bad signature"
            );
            return Err(LogoutError::BadSignature { kid });
        }

        // claims
        let claims = json_part(claims_b64, "claims")?;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != inner.issuer {
            return Err(LogoutError::WrongIssuer {
                expected: inner.issuer.clone(),
                found: iss.to_string(),
            });
        }
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if !audiences.contains(&inner.client_id) {
            return Err(LogoutError::WrongAudience {
                expected: inner.client_id.clone(),
                found: audiences,
            });
        }
        // saturating arithmetic throughout: hostile dates are refused, never overflow
        let now = inner.clock.now_secs();
        let leeway = secs_i64(inner.leeway);
        let iat = numeric_date(&claims, "iat")?.ok_or(LogoutError::MissingClaim("iat"))?;
        if iat > now.saturating_add(leeway) {
            return Err(LogoutError::IssuedInFuture { iat, now });
        }
        let max_age = secs_i64(inner.max_age);
        if now.saturating_sub(iat) > max_age.saturating_add(leeway) {
            return Err(LogoutError::TooOld {
                iat,
                max_age_secs: inner.max_age.as_secs(),
                now,
            });
        }
        let exp = numeric_date(&claims, "exp")?;
        if let Some(exp) = exp {
            if exp.saturating_add(leeway) < now {
                return Err(LogoutError::Expired { exp, now });
            }
        }
        let is_logout = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
            .is_some_and(Value::is_object);
        if !is_logout {
            return Err(LogoutError::NotALogoutToken);
        }
        let sid = non_empty_str(&claims, "sid")?;
        let sub = non_empty_str(&claims, "sub")?;
        if sid.is_none() && sub.is_none() {
            return Err(LogoutError::MissingSidAndSub);
        }
        if claims.contains_key("nonce") {
            return Err(LogoutError::NonceNotAllowed);
        }
        let jti = non_empty_str(&claims, "jti")?.ok_or(LogoutError::MissingClaim("jti"))?;

        // replay: remembered as long as the token could pass the checks above (the
        // `iat` bound ends that within max age + leeway of now, whatever `exp` says)
        let by_age = iat.saturating_add(max_age).saturating_add(leeway);
        let until = exp.map_or(by_age, |e| by_age.min(e.saturating_add(leeway)));
        inner
            .replay
            .check_and_remember(&inner.issuer, &jti, now, until)
            .await?;
        tracing::debug!(jti = %jti, kid = kid.as_deref().unwrap_or(""), "logout token accepted");
        Ok(LogoutClaims {
            iss: iss.to_string(),
            sid,
            sub,
            jti,
            iat,
            exp,
            kid,
        })
    }
}

impl LogoutTokenValidator {
    /// Forgets an accepted token id, so that the provider may send the token again:
    /// for when the sign-out the token asked for could not be carried out.
    pub async fn release(&self, claims: &LogoutClaims) {
        self.inner.replay.forget(&claims.iss, &claims.jti).await;
    }
}

fn json_part(b64: &str, what: &str) -> Result<Map<String, Value>, LogoutError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| LogoutError::Malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(LogoutError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
    }
}

/// Whole seconds of a duration as an `i64` (saturating: a huge setting is "forever",
/// never a negative number).
fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The largest NumericDate accepted in absolute value: 9999-12-31T23:59:59Z. Beyond it a
/// date is refused as out of range rather than compared (or overflowing).
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// A NumericDate claim: absent → `None`; present but not a number → `MissingClaim`;
/// a number beyond ±[`MAX_NUMERIC_DATE`] (`1e300`, `u64::MAX`, `i64::MIN`) →
/// `DateOutOfRange`. Fractions are rounded down.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, LogoutError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let Value::Number(n) = v else {
        return Err(LogoutError::MissingClaim(name));
    };
    let out_of_range = || LogoutError::DateOutOfRange { claim: name };
    let secs = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.is_finite() && f.abs() <= MAX_NUMERIC_DATE as f64 => f.floor() as i64,
        // a u64 above i64::MAX, a huge or non-finite float
        _ => return Err(out_of_range()),
    };
    if secs.unsigned_abs() > MAX_NUMERIC_DATE.unsigned_abs() {
        return Err(out_of_range());
    }
    Ok(Some(secs))
}

/// A string claim: absent → `None`; present but not a non-empty string → an error.
fn non_empty_str(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, LogoutError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(LogoutError::MissingClaim(name)),
    }
}

/// Remembers accepted token ids: in process (exact), and in L2 when a cache is given
/// (other replicas), with one atomic [`set_if_absent`](crate::store::Store::set_if_absent)
/// (Redis `SET NX PX`), so of replicas receiving the same token at once exactly one
/// accepts it. An L2 failure leaves the in-process check in force (logged).
#[derive(Debug)]
struct ReplayGuard {
    /// jti key → remembered until (Unix seconds).
    seen: Mutex<HashMap<String, i64>>,
    cache: Option<TokenCache>,
}

/// Above this many remembered ids, expired ones are pruned at each insert.
const PRUNE_ABOVE: usize = 1024;

impl ReplayGuard {
    fn key(&self, iss: &str, jti: &str) -> String {
        match &self.cache {
            Some(c) => c.two_level().keys().logout_jti(iss, jti),
            None => KeySpace::default().logout_jti(iss, jti),
        }
    }

    async fn forget(&self, iss: &str, jti: &str) {
        let key = self.key(iss, jti);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if let Some(cache) = &self.cache {
            let two = cache.two_level();
            if let Err(e) = two.call("remove", two.store().remove(&key)).await {
                // the recovery queue removes it once L2 answers again
                tracing::warn!(jti = %jti, error = %e, "could not forget the logout token id in L2: queued");
                two.queue_removal(&key).await;
            }
        }
    }

    async fn check_and_remember(
        &self,
        iss: &str,
        jti: &str,
        now: i64,
        until: i64,
    ) -> Result<(), LogoutError> {
        let key = self.key(iss, jti);
        let replayed = || LogoutError::Replayed {
            jti: jti.to_string(),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(&key).is_some_and(|&t| t >= now) {
                tracing::info!(jti = %jti, "logout token refused: replayed");
                return Err(replayed());
            }
            if seen.len() >= PRUNE_ABOVE {
                seen.retain(|_, t| *t >= now);
            }
            seen.insert(key.clone(), until);
        }
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        let two = cache.two_level();
        let ttl = Duration::from_secs(u64::try_from(until.saturating_sub(now)).unwrap_or(0).max(1));
        match two
            .call(
                "set_if_absent",
                two.store().set_if_absent(&key, b"1", Some(ttl)),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(jti = %jti, "logout token refused: replayed (seen by another replica)");
                return Err(replayed());
            }
            Err(e) => {
                tracing::warn!(jti = %jti, error = %e, "replay check in L2 failed: checked in this process only")
            }
        }
        Ok(())
    }
}
