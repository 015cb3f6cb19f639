//! The provider's signing keys (JWKS): parsed once, looked up by `kid` and algorithm.
//!
//! A [`Jwks`] is either given (a static key set) or fetched from the provider's
//! `jwks_uri` (feature `jwks-fetch`) and kept for a while; a token signed with a key the
//! cached set does not have makes it fetch the set again (key rotation), at most once
//! per `min_refetch_interval` so that tokens with made-up `kid`s cannot make the cache
//! hammer the provider.

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
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider could not be reached or did not answer in time.
    #[error("fetching the JWKS from {uri} failed: {message}")]
    Fetch {
        /// Where from.
        uri: String,
        /// What happened.
        message: String,
    },
    /// The provider answered with an error status.
    #[error("fetching the JWKS from {uri} failed: HTTP status {status}")]
    Status {
        /// Where from.
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
    /// 30 s). The URI must be `https`, or `http` on a loopback host.
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

/// Cache times of a fetched JWKS.
#[cfg(feature = "jwks-fetch")]
#[derive(Debug, Clone, Copy)]
pub struct RemoteOptions {
    /// The set is fetched again after this long. Default 1 hour.
    pub max_age: Duration,
    /// An unknown `kid` makes the set be fetched again, but not sooner than this after
    /// the last fetch. Default 30 s.
    pub min_refetch_interval: Duration,
    /// Bound of one fetch. Default 10 s.
    pub timeout: Duration,
}

#[cfg(feature = "jwks-fetch")]
impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Largest JWKS document accepted.
#[cfg(feature = "jwks-fetch")]
const MAX_JWKS_BYTES: usize = 1 << 20;

#[cfg(feature = "jwks-fetch")]
#[derive(Debug)]
struct Remote {
    uri: url::Url,
    client: reqwest::Client,
    options: RemoteOptions,
    current: std::sync::RwLock<Option<(Arc<KeySet>, Instant)>>,
    /// One fetch at a time; waiters use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[cfg(feature = "jwks-fetch")]
impl Remote {
    fn new(uri: &str, options: RemoteOptions) -> Result<Self, JwksError> {
        let bad = |reason: &str| JwksError::BadUri {
            uri: uri.to_string(),
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
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            uri: parsed,
            client,
            options,
            current: std::sync::RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn snapshot(&self) -> Option<(Arc<KeySet>, Instant)> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<VerifyingKey>, JwksError> {
        let (set, fetched_at) = match self.snapshot() {
            Some((set, at)) if at.elapsed() < self.options.max_age => (set, at),
            stale => self.refresh(stale).await?,
        };
        let found = set.candidates(kid, alg);
        if !found.is_empty() || fetched_at.elapsed() < self.options.min_refetch_interval {
            return Ok(found);
        }
        // an unknown key: the provider may have rotated its keys
        tracing::info!(kid = kid.unwrap_or(""), uri = %self.uri, "unknown signing key: fetching the JWKS again");
        let (set, _) = self.refresh(Some((set, fetched_at))).await?;
        Ok(set.candidates(kid, alg))
    }

    /// Fetches the set unless another task did since `seen` was read. When the fetch
    /// fails and a set was had before, that set is kept (and the failure logged).
    async fn refresh(
        &self,
        seen: Option<(Arc<KeySet>, Instant)>,
    ) -> Result<(Arc<KeySet>, Instant), JwksError> {
        let _one = self.fetching.lock().await;
        if let Some((set, at)) = self.snapshot() {
            if seen.as_ref().is_none_or(|(_, s)| at > *s) {
                return Ok((set, at)); // fetched meanwhile
            }
        }
        match self.fetch().await {
            Ok(set) => {
                let fresh = (Arc::new(set), Instant::now());
                tracing::debug!(uri = %self.uri, keys = fresh.0.len(), "JWKS fetched");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match seen {
                Some(old) => {
                    tracing::warn!(error = %e, "JWKS refetch failed: keeping the keys fetched before");
                    // try again at the next lookup, not before min_refetch_interval
                    let kept = (old.0, Instant::now());
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(kept.clone());
                    Ok(kept)
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let uri = self.uri.to_string();
        let fetch_err = |e: reqwest::Error| JwksError::Fetch {
            uri: uri.clone(),
            message: e.to_string(),
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
                uri,
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::Invalid(format!(
                    "larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        KeySet::from_json(&body)
    }
}
