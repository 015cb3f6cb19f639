//! The provider's signing keys (JWKS): parsed once, looked up by `kid` and algorithm.
//!
//! A [`Jwks`] is either given (a static key set) or fetched from the provider's
//! `jwks_uri` (feature `jwks-fetch`) and kept for a while; a token signed with a key the
//! cached set does not have makes it fetch the set again (key rotation), at most once
//! per `min_refetch_interval` so that tokens with made-up `kid`s cannot make the cache
//! hammer the provider; while the provider fails, such a token gets the fetch error (a
//! temporary failure) rather than "unknown key". A failed fetch is remembered for a few seconds (doubling while
//! the provider keeps failing), and only one fetch runs at a time per key set: tasks that
//! arrive meanwhile share its result. So a flood of unauthenticated logout requests
//! costs the provider at most one request per backoff period.

use std::sync::Arc;
#[cfg(feature = "jwks-fetch")]
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why the provider's key set could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The JWKS document is not a JSON object with a `keys` array.
    #[error("the JWKS document is not valid: {0}")]
    Invalid(String),
    /// The document has no key that can verify signatures (RSA or EC P-256/P-384).
    #[error("the JWKS document has no usable signing key")]
    NoUsableKeys,
    /// The `jwks_uri` is not an `https` URL (plain `http` is accepted on loopback only).
    #[error("the JWKS URI {uri} is not usable: {reason}")]
    BadUri {
        /// The URI as given, password and secret query values hidden.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider could not be reached or did not answer in time.
    #[error("fetching the JWKS from {uri} failed: {message}")]
    Fetch {
        /// Where from (password and secret query values hidden).
        uri: String,
        /// What happened.
        message: String,
    },
    /// The provider answered with an error status.
    #[error("fetching the JWKS from {uri} failed: HTTP status {status}")]
    Status {
        /// Where from (password and secret query values hidden).
        uri: String,
        /// The HTTP status code.
        status: u16,
    },
}

/// One usable verification key.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<String>,
    kind: KeyKind,
    /// The `alg` the JWK pins the key to, when it says.
    alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`. Matching kinds before verifying is
    /// what keeps an RSA key from being used as an EC key (and never HMAC: `oct` keys
    /// are not kept).
    fn fits(self, alg: Algorithm) -> bool {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self == KeyKind::Rsa,
            Algorithm::ES256 => self == KeyKind::EcP256,
            Algorithm::ES384 => self == KeyKind::EcP384,
            _ => false,
        }
    }
}

/// The signature algorithms tokencache verifies logout tokens with. HMAC and `none`
/// are never accepted; EdDSA and P-521 are not supported.
pub const SUPPORTED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A parsed key set: the keys of a JWKS document that can verify signatures.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("<no kid>"))
            .collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// Parses a JWKS document (`{"keys":[...]}`). Keys that cannot verify signatures
    /// (encryption keys, symmetric `oct` keys, unsupported curves, unknown `kty`) are
    /// skipped; a document with no usable key is an error.
    pub fn from_json(document: &[u8]) -> Result<Self, JwksError> {
        let value: serde_json::Value =
            serde_json::from_slice(document).map_err(|e| JwksError::Invalid(e.to_string()))?;
        let keys = value
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| JwksError::Invalid("no `keys` array".into()))?;
        let mut usable = Vec::with_capacity(keys.len());
        for raw in keys {
            // One key at a time: a key this crate cannot read must not hide the others.
            match serde_json::from_value::<Jwk>(raw.clone()) {
                Ok(jwk) => {
                    if let Some(k) = Self::usable(&jwk) {
                        usable.push(k);
                    }
                }
                Err(e) => tracing::debug!(
                    kid = raw.get("kid").and_then(|k| k.as_str()).unwrap_or(""),
                    error = %e,
                    "JWKS key skipped: not readable"
                ),
            }
        }
        if usable.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self { keys: usable })
    }

    /// A key set of already parsed JWKs (those that cannot verify signatures are skipped).
    pub fn from_jwks(jwks: &[Jwk]) -> Result<Self, JwksError> {
        let keys: Vec<VerifyingKey> = jwks.iter().filter_map(Self::usable).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self { keys })
    }

    fn usable(jwk: &Jwk) -> Option<VerifyingKey> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => KeyKind::EcP256,
                EllipticCurve::P384 => KeyKind::EcP384,
                _ => return None,
            },
            // symmetric keys never verify a provider's tokens; Ed25519 is not supported
            AlgorithmParameters::OctetKey(_) | AlgorithmParameters::OctetKeyPair(_) => return None,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match key_algorithm(a) {
                Some(alg) if kind.fits(alg) => Some(alg),
                // an encryption algorithm, or one that does not fit the key
                _ => return None,
            },
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(VerifyingKey {
            kid: jwk.common.key_id.clone(),
            kind,
            alg,
            key,
        })
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may have signed a token with this `kid` (none: every key) and `alg`.
    pub(crate) fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<VerifyingKey> {
        self.keys
            .iter()
            .filter(|k| match kid {
                Some(kid) => k.kid.as_deref() == Some(kid),
                None => true,
            })
            .filter(|k| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg))
            .cloned()
            .collect()
    }
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// What [`Jwks::verify_signature`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// A key of the set with this `kid` and algorithm verifies the signature.
    Verified,
    /// Keys with this `kid` and algorithm exist; none verifies the signature.
    BadSignature,
    /// No key of the set has this `kid` and fits the algorithm (even after fetching the
    /// set again, when that was allowed).
    UnknownKey,
}

/// Where the provider's keys come from.
#[derive(Debug, Clone)]
pub struct Jwks {
    source: Arc<Source>,
}

#[derive(Debug)]
enum Source {
    Static(Arc<KeySet>),
    #[cfg(feature = "jwks-fetch")]
    Remote(Box<Remote>),
}

impl Jwks {
    /// A fixed key set (no fetching; rotation means building a new validator).
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            source: Arc::new(Source::Static(Arc::new(keys))),
        }
    }

    /// The key set at the provider's `jwks_uri` (from its discovery document), fetched
    /// on first use, kept for an hour, fetched again on an unknown `kid` (at most every
    /// 30 s); a failed fetch is not repeated for 5 s (doubling while it keeps failing,
    /// up to 2 minutes). The URI must be `https`, or `http` on a loopback host.
    #[cfg(feature = "jwks-fetch")]
    pub fn remote(jwks_uri: &str) -> Result<Self, JwksError> {
        Self::remote_with(jwks_uri, RemoteOptions::default())
    }

    /// As [`remote`](Self::remote), with explicit cache times.
    #[cfg(feature = "jwks-fetch")]
    pub fn remote_with(jwks_uri: &str, options: RemoteOptions) -> Result<Self, JwksError> {
        Ok(Self {
            source: Arc::new(Source::Remote(Box::new(Remote::new(jwks_uri, options)?))),
        })
    }

    /// Checks the signature of a compact JWS: `signing_input` is `header.payload` as
    /// sent, `signature` its third part (base64url). The keys are looked up by `kid` and
    /// `alg` as for logout tokens: an unknown `kid` makes a fetched set be fetched again,
    /// at most once per `min_refetch_interval`. `alg` must be one of
    /// [`SUPPORTED_ALGORITHMS`] (others never verify: HMAC and `none` are refused).
    /// An error is the key set that could not be had (a temporary failure).
    pub async fn verify_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &str,
    ) -> Result<SignatureCheck, JwksError> {
        if !SUPPORTED_ALGORITHMS.contains(&alg) {
            return Ok(SignatureCheck::UnknownKey);
        }
        let keys = self.lookup(kid, alg).await?;
        if keys.is_empty() {
            return Ok(SignatureCheck::UnknownKey);
        }
        let verified = keys.iter().any(|k| {
            jsonwebtoken::crypto::verify(signature, signing_input, &k.key, alg).unwrap_or(false)
        });
        Ok(if verified {
            SignatureCheck::Verified
        } else {
            SignatureCheck::BadSignature
        })
    }

    /// The keys that may verify a token with this `kid` and `alg` (empty: none, even
    /// after fetching the set again when that was allowed).
    pub(crate) async fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<VerifyingKey>, JwksError> {
        match &*self.source {
            Source::Static(set) => Ok(set.candidates(kid, alg)),
            #[cfg(feature = "jwks-fetch")]
            Source::Remote(remote) => remote.lookup(kid, alg).await,
        }
    }
}

/// Cache times of a fetched JWKS, and how hard a failing provider is asked again.
#[cfg(feature = "jwks-fetch")]
#[derive(Debug, Clone, Copy)]
pub struct RemoteOptions {
    /// The set is fetched again after this long. Default 1 hour.
    pub max_age: Duration,
    /// An unknown `kid` makes the set be fetched again, but not sooner than this after
    /// the last fetch attempt (successful or not). Default 30 s.
    pub min_refetch_interval: Duration,
    /// Bound of one fetch. Default 10 s.
    pub timeout: Duration,
    /// A failed fetch is remembered this long: meanwhile lookups answer with its error
    /// (or with the keys fetched before, when there are some) instead of fetching
    /// again, so that unauthenticated requests cannot queue fetch after fetch. Each
    /// further failure in a row doubles it, up to
    /// [`max_failure_backoff`](Self::max_failure_backoff). Default 5 s.
    pub failure_backoff: Duration,
    /// The longest a failure is remembered. Default 2 minutes.
    pub max_failure_backoff: Duration,
}

#[cfg(feature = "jwks-fetch")]
impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            failure_backoff: Duration::from_secs(5),
            max_failure_backoff: Duration::from_secs(120),
        }
    }
}

#[cfg(feature = "jwks-fetch")]
impl RemoteOptions {
    /// How long the `failures`-th failure in a row (1, 2, …) is remembered.
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.failure_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_failure_backoff.max(self.failure_backoff))
    }
}

/// Largest JWKS document accepted.
#[cfg(feature = "jwks-fetch")]
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The last failed fetch (while no fetch has succeeded since).
#[cfg(feature = "jwks-fetch")]
#[derive(Debug, Clone)]
struct Failure {
    error: JwksError,
    at: Instant,
    /// Failures in a row.
    count: u32,
    /// How long this one is remembered.
    backoff: Duration,
}

#[cfg(feature = "jwks-fetch")]
impl Failure {
    fn is_remembered(&self) -> bool {
        self.at.elapsed() < self.backoff
    }
}

/// What a [`Remote`] knows: the last good key set, the last failure, and how many
/// fetch attempts have ended (so that a task waiting for a fetch sees that one ended
/// while it waited, and takes its result instead of fetching again).
#[cfg(feature = "jwks-fetch")]
#[derive(Debug, Clone, Default)]
struct State {
    keys: Option<(Arc<KeySet>, Instant)>,
    last_attempt: Option<Instant>,
    failure: Option<Failure>,
    attempts: u64,
}

#[cfg(feature = "jwks-fetch")]
struct Remote {
    uri: url::Url,
    /// The URI for logs and errors (no password, no secret query values).
    shown: String,
    client: reqwest::Client,
    options: RemoteOptions,
    state: std::sync::RwLock<State>,
    /// One fetch at a time (single flight); waiters use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[cfg(feature = "jwks-fetch")]
impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.snapshot();
        f.debug_struct("Remote")
            .field("uri", &self.shown)
            .field("options", &self.options)
            .field("keys", &state.keys.as_ref().map(|(k, _)| k.len()))
            .field("failures_in_a_row", &state.failure.map_or(0, |f| f.count))
            .finish()
    }
}

#[cfg(feature = "jwks-fetch")]
impl Remote {
    fn new(uri: &str, options: RemoteOptions) -> Result<Self, JwksError> {
        let shown = crate::store::redact_url(uri);
        let bad = |reason: &str| JwksError::BadUri {
            uri: shown.clone(),
            reason: reason.to_string(),
        };
        let parsed = url::Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        let loopback = match parsed.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(bad("no host")),
        };
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(bad("only https (or http on a loopback host) is accepted")),
        }
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(&e.without_url().to_string()))?;
        Ok(Self {
            uri: parsed,
            shown,
            client,
            options,
            state: std::sync::RwLock::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn snapshot(&self) -> State {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<VerifyingKey>, JwksError> {
        let state = self.snapshot();
        let remembered = state.failure.as_ref().filter(|f| f.is_remembered());
        match &state.keys {
            Some((set, at)) if at.elapsed() < self.options.max_age => {
                let found = set.candidates(kid, alg);
                if !found.is_empty() {
                    return Ok(found);
                }
                // An unknown key: the provider may have rotated its keys. While it is
                // failing, say so (a temporary error: the sender may retry) rather
                // than calling the key unknown.
                if let Some(f) = remembered {
                    return Err(f.error.clone());
                }
                let too_soon = state
                    .last_attempt
                    .is_some_and(|t| t.elapsed() < self.options.min_refetch_interval);
                if too_soon {
                    return Ok(found);
                }
                tracing::info!(kid = kid.unwrap_or(""), uri = %self.shown, "unknown signing key: fetching the JWKS again");
                Ok(self.refresh(state.attempts).await?.candidates(kid, alg))
            }
            stale => {
                let result = match remembered {
                    Some(f) => Err(f.error.clone()),
                    None => self.refresh(state.attempts).await,
                };
                match (result, stale) {
                    (Ok(set), _) => Ok(set.candidates(kid, alg)),
                    // the provider is failing: the keys fetched before are better than none
                    (Err(_), Some((old, _))) => Ok(old.candidates(kid, alg)),
                    (Err(e), None) => Err(e),
                }
            }
        }
    }

    /// Fetches the set, one fetch at a time. When a fetch attempt ended since the
    /// caller read the state (`attempts_seen`), its result is shared instead: waiters
    /// behind a fetch never fetch again themselves.
    async fn refresh(&self, attempts_seen: u64) -> Result<Arc<KeySet>, JwksError> {
        let _one = self.fetching.lock().await;
        let state = self.snapshot();
        if state.attempts != attempts_seen {
            return match (state.failure, state.keys) {
                (Some(f), _) => Err(f.error),
                (None, Some((set, _))) => Ok(set),
                // not reachable: an attempt ends with keys or a failure
                (None, None) => Err(JwksError::Fetch {
                    uri: self.shown.clone(),
                    message: "no key set after a fetch".into(),
                }),
            };
        }
        let result = self.fetch().await;
        let now = Instant::now();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.attempts = state.attempts.wrapping_add(1);
        state.last_attempt = Some(now);
        match result {
            Ok(set) => {
                let set = Arc::new(set);
                tracing::debug!(uri = %self.shown, keys = set.len(), "JWKS fetched");
                state.keys = Some((set.clone(), now));
                state.failure = None;
                Ok(set)
            }
            Err(error) => {
                let count = state
                    .failure
                    .as_ref()
                    .map_or(1, |f| f.count.saturating_add(1));
                let backoff = self.options.backoff(count);
                tracing::warn!(
                    error = %error,
                    failures_in_a_row = count,
                    retry_after = ?backoff,
                    kept_keys = state.keys.is_some(),
                    "JWKS fetch failed"
                );
                state.failure = Some(Failure {
                    error: error.clone(),
                    at: now,
                    count,
                    backoff,
                });
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let fetch_err = |e: reqwest::Error| JwksError::Fetch {
            uri: self.shown.clone(),
            message: describe(e),
        };
        let mut response = self
            .client
            .get(self.uri.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(fetch_err)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                uri: self.shown.clone(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
            if body.len().saturating_add(chunk.len()) > MAX_JWKS_BYTES {
                return Err(JwksError::Invalid(format!(
                    "larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::from_json(&body)
    }
}

/// A reqwest error and its causes, without its URL (which may hold credentials; the
/// redacted URI is shown beside it instead).
#[cfg(feature = "jwks-fetch")]
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

#[cfg(all(test, feature = "jwks-fetch"))]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_doubles_up_to_its_bound_without_overflow() {
        let o = RemoteOptions {
            failure_backoff: Duration::from_secs(5),
            max_failure_backoff: Duration::from_secs(120),
            ..RemoteOptions::default()
        };
        let got: Vec<u64> = [1, 2, 3, 4, 5, 6, 7, 100, u32::MAX]
            .iter()
            .map(|&n| o.backoff(n).as_secs())
            .collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 120, 120, 120, 120]);
        // huge settings saturate; a bound below the start is the start
        let huge = RemoteOptions {
            failure_backoff: Duration::MAX,
            max_failure_backoff: Duration::MAX,
            ..RemoteOptions::default()
        };
        assert_eq!(huge.backoff(u32::MAX), Duration::MAX);
        let odd = RemoteOptions {
            failure_backoff: Duration::from_secs(5),
            max_failure_backoff: Duration::from_secs(1),
            ..RemoteOptions::default()
        };
        assert_eq!(odd.backoff(3), Duration::from_secs(5));
        let off = RemoteOptions {
            failure_backoff: Duration::ZERO,
            ..RemoteOptions::default()
        };
        assert_eq!(off.backoff(9), Duration::ZERO);
    }
}
