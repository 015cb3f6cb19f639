//! Client authentication at the token endpoint: a secret (`client_secret_basic`,
//! `client_secret_post`) or a signed client assertion (`private_key_jwt`, RFC 7523),
//! signed by `jsonwebtoken` from a PEM key, optionally with its certificate (whose
//! SHA-256 thumbprint goes in the `x5t#S256` header, and SHA-1 in `x5t`, as Entra
//! requires for certificate credentials).
//!
//! `Debug` never shows a secret or a key.

use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::Digest;

use super::certificate::ClientCertificate;
use super::error::AcquireError;
use super::files::SecretFile;
use super::http::FormValue;
use super::managed_identity::ManagedIdentity;
use crate::schema::Secret;

/// How the client proves who it is. Secrets are the last resort (docs/design.md §15):
/// prefer a certificate, a federated assertion (workload identity) or managed identity.
#[derive(Clone)]
pub enum ClientCredential {
    /// A secret in the `Authorization: Basic` header (`client_secret_basic`).
    SecretBasic(Secret),
    /// A secret in the form body (`client_secret_post`).
    SecretPost(Secret),
    /// A secret read from a file, re-read when it changes, sent as `client_secret_basic`.
    SecretFileBasic(Arc<SecretFile>),
    /// A secret read from a file, re-read when it changes, sent as `client_secret_post`.
    SecretFilePost(Arc<SecretFile>),
    /// A JWT signed with the client's private key (`private_key_jwt`), made anew for
    /// every attempt.
    PrivateKeyJwt(Arc<AssertionKey>),
    /// `private_key_jwt` with a certificate read from files (PEM or PKCS#12), checked at
    /// start and re-read when the files change.
    Certificate(Arc<ClientCertificate>),
    /// A signed client assertion read from this file for every token request (workload
    /// identity federation: the platform rewrites the file; it is never cached).
    AssertionFile(PathBuf),
    /// A managed identity's token for `api://AzureADTokenExchange` as the client
    /// assertion (Entra's "SignedAssertionFromManagedIdentity": an app registration
    /// that trusts the managed identity).
    ManagedIdentityAssertion(ManagedIdentity),
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::SecretBasic(_) => f.write_str("SecretBasic(<redacted>)"),
            ClientCredential::SecretPost(_) => f.write_str("SecretPost(<redacted>)"),
            ClientCredential::SecretFileBasic(s) => write!(f, "SecretFileBasic({s:?})"),
            ClientCredential::SecretFilePost(s) => write!(f, "SecretFilePost({s:?})"),
            ClientCredential::PrivateKeyJwt(k) => write!(f, "PrivateKeyJwt({k:?})"),
            ClientCredential::Certificate(c) => write!(f, "Certificate({c:?})"),
            ClientCredential::AssertionFile(p) => write!(f, "AssertionFile({})", p.display()),
            ClientCredential::ManagedIdentityAssertion(m) => {
                write!(f, "ManagedIdentityAssertion({m:?})")
            }
        }
    }
}

impl ClientCredential {
    /// The `token_endpoint_auth_method` name.
    pub fn method(&self) -> &'static str {
        match self {
            ClientCredential::SecretBasic(_) | ClientCredential::SecretFileBasic(_) => {
                "client_secret_basic"
            }
            ClientCredential::SecretPost(_) | ClientCredential::SecretFilePost(_) => {
                "client_secret_post"
            }
            ClientCredential::PrivateKeyJwt(_) | ClientCredential::Certificate(_) => {
                "private_key_jwt"
            }
            // a federated assertion, sent as RFC 7523 client authentication
            ClientCredential::AssertionFile(_) | ClientCredential::ManagedIdentityAssertion(_) => {
                "private_key_jwt"
            }
        }
    }
}

/// A private key that signs client assertions, with the certificate it goes with when
/// there is one (checked: valid now, and its public key is this key's).
pub struct AssertionKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
    x5t: Option<String>,
    x5t_s256: Option<String>,
    /// The chain (leaf first), base64 DER, for `x5c`.
    x5c: Option<Vec<String>>,
    send_x5c: bool,
    not_after: Option<i64>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("x5t#S256", &self.x5t_s256)
            .field("send_x5c", &self.send_x5c)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// How long a client assertion is valid.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// The private key of PEM blocks: an RSA key (PKCS#1 or PKCS#8, signs RS256) or an EC
/// P-256 key (signs ES256).
fn private_key(blocks: &[pem::Pem]) -> Result<(EncodingKey, Algorithm), AcquireError> {
    for b in blocks {
        let alg = match b.tag() {
            "RSA PRIVATE KEY" => Algorithm::RS256,
            "EC PRIVATE KEY" => Algorithm::ES256,
            "PRIVATE KEY" => {
                // PKCS#8: an RSA key unless it names the EC algorithm OID (1.2.840.10045.2.1)
                let ec_oid = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
                if b.contents().windows(ec_oid.len()).any(|w| w == ec_oid) {
                    Algorithm::ES256
                } else {
                    Algorithm::RS256
                }
            }
            _ => continue,
        };
        let one = pem::encode(b);
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(one.as_bytes()),
            _ => EncodingKey::from_rsa_pem(one.as_bytes()),
        }
        .map_err(|e| AcquireError::Config(format!("the private key is not usable: {e}")))?;
        return Ok((key, alg));
    }
    Err(AcquireError::Config(
        "the PEM holds no private key (RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)".into(),
    ))
}

fn parse_pem(pem: &[u8], what: &str) -> Result<Vec<pem::Pem>, AcquireError> {
    pem::parse_many(pem).map_err(|e| AcquireError::Config(format!("the {what} is not PEM: {e}")))
}

/// Whether the certificate whose SubjectPublicKeyInfo is `spki` holds the public key of
/// `key`: a probe signed by the key verifies with it.
fn key_matches(key: &EncodingKey, alg: Algorithm, spki: &[u8]) -> bool {
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.to_vec()));
    let decoding = match alg {
        Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(public.as_bytes()),
        _ => jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()),
    };
    let Ok(decoding) = decoding else {
        return false;
    };
    let probe = b"tokencache: does this certificate hold this key?";
    match jsonwebtoken::crypto::sign(probe, key, alg) {
        Ok(sig) => jsonwebtoken::crypto::verify(&sig, probe, &decoding, alg).unwrap_or(false),
        Err(_) => false,
    }
}

impl AssertionKey {
    /// A key from PEM: an RSA key (PKCS#1 or PKCS#8, signs RS256) or an EC P-256 key
    /// (PKCS#8, signs ES256), with the `kid` the provider knows it by. When the PEM also
    /// holds certificates, they are checked and used as in
    /// [`from_pem_chain`](Self::from_pem_chain).
    pub fn from_pem(pem: &[u8], kid: Option<&str>) -> Result<Self, AcquireError> {
        let blocks = parse_pem(pem, "key file")?;
        if blocks.iter().any(|b| b.tag() == "CERTIFICATE") {
            return Self::from_pem_chain(pem, pem, kid, unix_now());
        }
        let (key, alg) = private_key(&blocks)?;
        Ok(Self {
            key,
            alg,
            kid: kid.map(str::to_owned),
            x5t: None,
            x5t_s256: None,
            x5c: None,
            send_x5c: false,
            not_after: None,
        })
    }

    /// A key and its certificate, both PEM (one file may hold both): the assertion names
    /// the certificate by thumbprint (`x5t#S256` and `x5t`), which is how Entra finds it.
    /// Checked as [`from_pem_chain`](Self::from_pem_chain).
    pub fn from_pem_with_certificate(
        key_pem: &[u8],
        certificate_pem: &[u8],
    ) -> Result<Self, AcquireError> {
        Self::from_pem_chain(key_pem, certificate_pem, None, unix_now())
    }

    /// A PEM key and the PEM certificate chain it goes with, checked at `now` (Unix
    /// seconds): the leaf is the certificate whose public key is the key's (an error
    /// when none is), and it must be valid at `now` (not expired, not before its start).
    /// The chain (leaf first) goes in `x5c` when [`with_x5c`](Self::with_x5c) asks.
    pub fn from_pem_chain(
        key_pem: &[u8],
        chain_pem: &[u8],
        kid: Option<&str>,
        now: i64,
    ) -> Result<Self, AcquireError> {
        let (key, alg) = private_key(&parse_pem(key_pem, "key file")?)?;
        let chain: Vec<Vec<u8>> = parse_pem(chain_pem, "certificate file")?
            .into_iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.into_contents())
            .collect();
        Self::with_chain(key, alg, chain, kid, now)
    }

    /// A key and chain from a PKCS#12 file (`.pfx`/`.p12`) opened with `password`,
    /// checked as [`from_pem_chain`](Self::from_pem_chain).
    pub fn from_pkcs12(
        der: &[u8],
        password: &Secret,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Self, AcquireError> {
        let (pkcs8, chain) = super::certificate::open_pkcs12(der, password)?;
        let pem = zeroize::Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8)));
        let (key, alg) = private_key(&parse_pem(pem.as_bytes(), "PKCS#12 key")?)?;
        Self::with_chain(key, alg, chain, kid, now)
    }

    fn with_chain(
        key: EncodingKey,
        alg: Algorithm,
        chain: Vec<Vec<u8>>,
        kid: Option<&str>,
        now: i64,
    ) -> Result<Self, AcquireError> {
        if chain.is_empty() {
            return Err(AcquireError::Config("no CERTIFICATE in the PEM".into()));
        }
        let mut leaf = None;
        for (i, der) in chain.iter().enumerate() {
            let info = super::certificate::cert_info(der)?;
            if key_matches(&key, alg, &info.spki) {
                leaf = Some((i, info));
                break;
            }
        }
        let Some((i, info)) = leaf else {
            return Err(AcquireError::Config(
                "the certificate does not match the private key (no certificate holds its public key)".into(),
            ));
        };
        if info.not_after <= now {
            return Err(AcquireError::Config(format!(
                "the certificate expired (not after {}, now {now})",
                info.not_after
            )));
        }
        if info.not_before > now {
            return Err(AcquireError::Config(format!(
                "the certificate is not valid yet (not before {}, now {now})",
                info.not_before
            )));
        }
        let mut ordered = vec![chain[i].clone()];
        ordered.extend(
            chain
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, d)| d.clone()),
        );
        let mut k = Self {
            key,
            alg,
            kid: kid.map(str::to_owned),
            x5t: None,
            x5t_s256: None,
            x5c: Some(ordered.iter().map(|d| STANDARD.encode(d)).collect()),
            send_x5c: false,
            not_after: Some(info.not_after),
        };
        k.set_certificate_der(&ordered[0]);
        Ok(k)
    }

    /// Sends the certificate chain in the assertion's `x5c` header (Entra's subject
    /// name + issuer authentication); needs a certificate.
    pub fn with_x5c(mut self, send: bool) -> Self {
        self.send_x5c = send && self.x5c.is_some();
        self
    }

    /// When the certificate ends (Unix seconds), when there is one.
    pub fn not_after(&self) -> Option<i64> {
        self.not_after
    }

    fn set_certificate_der(&mut self, der: &[u8]) {
        self.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)));
        // SHA-1 thumbprint: Entra still reads x5t. ring provides SHA-1 for this legacy use.
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        self.x5t = Some(URL_SAFE_NO_PAD.encode(sha1.as_ref()));
        if self.kid.is_none() {
            self.kid = self.x5t.clone();
        }
    }

    /// The `x5t#S256` thumbprint of the certificate, when one was given.
    pub fn thumbprint_s256(&self) -> Option<&str> {
        self.x5t_s256.as_deref()
    }

    /// A signed client assertion for `client_id` at `audience` (the token endpoint): a
    /// new `jti` and `iat` every time.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<Secret, AcquireError> {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        header.x5t = self.x5t.clone();
        header.x5t_s256 = self.x5t_s256.clone();
        if self.send_x5c {
            header.x5c = self.x5c.clone();
        }
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": super::random::token(16),
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| AcquireError::Config(format!("signing the client assertion: {e}")))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The form fields and Basic credentials that authenticate `client_id` at `token_endpoint`.
pub(crate) struct Authentication {
    pub(crate) form: Vec<(&'static str, FormValue)>,
    pub(crate) basic: Option<Secret>,
    /// The client id (the user name of Basic authentication).
    pub(crate) client_id: String,
}

impl Authentication {
    /// The hash ([`crate::partition::assertion_hash`]) of its client assertion, when it
    /// authenticates with one.
    pub(crate) fn assertion_hash(&self) -> Option<String> {
        self.form.iter().find_map(|(k, v)| match (k, v) {
            (&"client_assertion", FormValue::Secret(s)) => {
                Some(crate::partition::assertion_hash(s.expose()))
            }
            _ => None,
        })
    }
}

impl ClientCredential {
    /// The authentication of one attempt of a token request: made anew each time (a new
    /// assertion, a file read again), never reused.
    pub(crate) async fn authenticate(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: i64,
    ) -> Result<Authentication, AcquireError> {
        let client_id_owned = client_id.to_string();
        let basic = |s: Secret| Authentication {
            form: Vec::new(),
            basic: Some(s),
            client_id: client_id.to_string(),
        };
        let post = |s: Secret| Authentication {
            form: vec![
                ("client_id", FormValue::Plain(client_id.to_string())),
                ("client_secret", FormValue::Secret(s)),
            ],
            basic: None,
            client_id: client_id.to_string(),
        };
        let assertion = |a: Secret| Authentication {
            form: vec![
                ("client_id", FormValue::Plain(client_id.to_string())),
                (
                    "client_assertion_type",
                    FormValue::Plain(JWT_BEARER_ASSERTION.into()),
                ),
                ("client_assertion", FormValue::Secret(a)),
            ],
            basic: None,
            client_id: client_id_owned.clone(),
        };
        Ok(match self {
            ClientCredential::SecretBasic(s) => basic(s.clone()),
            ClientCredential::SecretPost(s) => post(s.clone()),
            ClientCredential::SecretFileBasic(f) => basic(f.secret()),
            ClientCredential::SecretFilePost(f) => post(f.secret()),
            ClientCredential::PrivateKeyJwt(k) => {
                assertion(k.assertion(client_id, token_endpoint, now)?)
            }
            ClientCredential::Certificate(c) => {
                assertion(c.key().assertion(client_id, token_endpoint, now)?)
            }
            ClientCredential::AssertionFile(path) => {
                assertion(super::files::read_assertion_file(path, now)?)
            }
            ClientCredential::ManagedIdentityAssertion(mi) => {
                let t = mi
                    .acquire(super::managed_identity::TOKEN_EXCHANGE_AUDIENCE)
                    .await
                    .map_err(|e| AcquireError::Credential {
                        credential: "managed identity assertion".into(),
                        reason: format!(
                            "the managed identity's token for api://AzureADTokenExchange: {e}"
                        ),
                    })?;
                assertion(t.secret)
            }
        })
    }
}

/// RFC 7523's `client_assertion_type`.
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit RSA test key (PKCS#8), made for these tests only.
    const RSA_PKCS8: &str = include_str!("../../tests/fixtures/acquire/client-key.pem");
    const CERT: &str = include_str!("../../tests/fixtures/acquire/client-cert.pem");

    #[test]
    fn assertions_are_signed_jwts_with_the_rfc7523_claims() {
        let k = AssertionKey::from_pem(RSA_PKCS8.as_bytes(), Some("k1")).unwrap();
        let jwt = k
            .assertion("my-client", "https://op.example/token", 1_000)
            .unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let claims = crate::schema::decode_jwt_claims(jwt.expose()).unwrap();
        assert_eq!(claims.sub.as_deref(), Some("my-client"));
        assert_eq!(claims.exp, Some(1_300));
        let payload = jwt.expose().split('.').nth(1).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(v["iss"], "my-client");
        assert_eq!(v["aud"], "https://op.example/token");
        assert!(v["jti"].as_str().unwrap().len() >= 16);
        // two assertions never share a jti
        let again = k
            .assertion("my-client", "https://op.example/token", 1_000)
            .unwrap();
        assert_ne!(jwt.expose(), again.expose());
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_certificate_names_the_key_by_thumbprint() {
        let k =
            AssertionKey::from_pem_with_certificate(RSA_PKCS8.as_bytes(), CERT.as_bytes()).unwrap();
        let der = pem::parse(CERT).unwrap();
        let want = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der.contents()));
        assert_eq!(k.thumbprint_s256(), Some(want.as_str()));
        let jwt = k.assertion("c", "https://op.example/token", 0).unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.x5t_s256.as_deref(), Some(want.as_str()));
        assert!(header.x5t.is_some());
        // one file with both
        let both = format!("{RSA_PKCS8}\n{CERT}");
        let k2 = AssertionKey::from_pem(both.as_bytes(), None).unwrap();
        assert_eq!(k2.thumbprint_s256(), Some(want.as_str()));
    }

    #[test]
    fn bad_keys_are_config_errors() {
        for bad in [
            "",
            "hello",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(matches!(
                AssertionKey::from_pem(bad.as_bytes(), None),
                Err(AcquireError::Config(_))
            ));
        }
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            AssertionKey::from_pem(garbage.as_bytes(), None),
            Err(AcquireError::Config(_))
        ));
    }

    #[tokio::test]
    async fn secrets_go_where_the_method_says_and_debug_hides_them() {
        let basic = ClientCredential::SecretBasic(Secret::new("s3cret"));
        let a = basic
            .authenticate("c", "https://op/token", 0)
            .await
            .unwrap();
        assert!(a.form.is_empty());
        assert_eq!(a.basic.unwrap().expose(), "s3cret");
        let post = ClientCredential::SecretPost(Secret::new("s3cret"));
        let a = post.authenticate("c", "https://op/token", 0).await.unwrap();
        assert!(a.basic.is_none());
        assert_eq!(a.form.len(), 2);
        assert!(!format!("{basic:?}{post:?}").contains("s3cret"));
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/acquire/");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    fn header_of(k: &AssertionKey) -> serde_json::Value {
        let jwt = k.assertion("c", "https://op.example/token", 1_000).unwrap();
        let h = jwt.expose().split('.').next().unwrap().to_string();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    }

    #[test]
    fn the_header_names_the_certificate_by_its_sha256_and_sha1_thumbprints_and_x5c_on_demand() {
        let der = pem::parse(CERT).unwrap().into_contents();
        let k = AssertionKey::from_pem_chain(
            RSA_PKCS8.as_bytes(),
            &fixture("client-chain.pem"),
            None,
            unix_now(),
        )
        .unwrap();
        let h = header_of(&k);
        assert_eq!(
            h["x5t#S256"],
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der)).as_str()
        );
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        assert_eq!(h["x5t"], URL_SAFE_NO_PAD.encode(sha1.as_ref()).as_str());
        assert_eq!(h["kid"], h["x5t"], "kid defaults to x5t");
        assert!(h.get("x5c").is_none(), "x5c only when asked");
        let h = header_of(&k.with_x5c(true));
        let x5c: Vec<&str> = h["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(x5c.len(), 2, "leaf and CA");
        assert_eq!(
            STANDARD.decode(x5c[0]).unwrap(),
            der,
            "leaf first, standard base64"
        );
        // the chain in another order: the leaf is still the key's certificate
        let reversed = [fixture("ca-cert.pem"), CERT.as_bytes().to_vec()].concat();
        let k2 = AssertionKey::from_pem_chain(RSA_PKCS8.as_bytes(), &reversed, None, unix_now())
            .unwrap()
            .with_x5c(true);
        assert_eq!(header_of(&k2)["x5c"][0], x5c[0]);
    }

    #[test]
    fn pkcs12_files_modern_and_legacy_open_with_their_password() {
        let pw = Secret::new("p12-test-password");
        let pem_key =
            AssertionKey::from_pem_with_certificate(RSA_PKCS8.as_bytes(), CERT.as_bytes()).unwrap();
        for file in ["client.p12", "client-legacy.p12"] {
            let k = AssertionKey::from_pkcs12(&fixture(file), &pw, None, unix_now())
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(k.thumbprint_s256(), pem_key.thumbprint_s256(), "{file}");
            assert_eq!(k.alg, Algorithm::RS256);
            // it signs what the certificate verifies
            let info =
                crate::acquire::certificate::cert_info(&pem::parse(CERT).unwrap().into_contents())
                    .unwrap();
            assert!(key_matches(&k.key, k.alg, &info.spki));
            let e = AssertionKey::from_pkcs12(&fixture(file), &Secret::new("guess-xyz"), None, 0)
                .unwrap_err()
                .to_string();
            assert!(e.contains("PKCS#12") && !e.contains("guess-xyz"), "{e}");
        }
        let e = AssertionKey::from_pkcs12(b"not pkcs12", &pw, None, 0).unwrap_err();
        assert!(matches!(e, AcquireError::Config(_)), "{e:?}");
    }

    #[test]
    fn an_expired_certificate_a_mismatched_key_or_a_future_one_are_refused() {
        let now = unix_now();
        let e = AssertionKey::from_pem_chain(
            RSA_PKCS8.as_bytes(),
            &fixture("expired-cert.pem"),
            None,
            now,
        )
        .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        let e = AssertionKey::from_pem_chain(&fixture("other-key.pem"), CERT.as_bytes(), None, now)
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        // valid from 2026-12-01: before then it is not valid yet
        let e = AssertionKey::from_pem_chain(
            RSA_PKCS8.as_bytes(),
            CERT.as_bytes(),
            None,
            1_700_000_000,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not valid yet"), "{e}");
        // the one-file form checks too
        let both = [fixture("other-key.pem"), CERT.as_bytes().to_vec()].concat();
        assert!(AssertionKey::from_pem(&both, None).is_err());
    }

    #[test]
    fn an_ec_key_and_its_certificate_sign_es256() {
        let k = AssertionKey::from_pem_chain(
            &fixture("ec-key.pem"),
            &fixture("ec-cert.pem"),
            None,
            unix_now(),
        )
        .unwrap();
        assert_eq!(header_of(&k)["alg"], "ES256");
        // an RSA certificate does not match an EC key
        assert!(AssertionKey::from_pem_chain(
            &fixture("ec-key.pem"),
            CERT.as_bytes(),
            None,
            unix_now()
        )
        .is_err());
    }

    #[tokio::test]
    async fn every_attempt_gets_a_new_assertion_and_a_file_assertion_is_read_each_time() {
        let k = Arc::new(AssertionKey::from_pem(RSA_PKCS8.as_bytes(), Some("k")).unwrap());
        let c = ClientCredential::PrivateKeyJwt(k);
        let value = |a: &Authentication| match &a.form[2].1 {
            FormValue::Secret(s) => s.expose().to_string(),
            FormValue::Plain(p) => p.clone(),
        };
        let a1 = c.authenticate("c", "https://op/token", 10).await.unwrap();
        let a2 = c.authenticate("c", "https://op/token", 10).await.unwrap();
        assert_ne!(value(&a1), value(&a2), "a new jti each time");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        let file = ClientCredential::AssertionFile(f.clone());
        let Err(e) = file.authenticate("c", "https://op/token", 10).await else {
            panic!("a missing assertion file authenticated")
        };
        assert!(matches!(e, AcquireError::Credential { .. }), "{e:?}");
        let jwt = k_jwt(2_000);
        std::fs::write(&f, &jwt).unwrap();
        let a = file
            .authenticate("c", "https://op/token", 10)
            .await
            .unwrap();
        assert_eq!(value(&a), jwt);
        assert_eq!(a.form[1].0, "client_assertion_type");
        assert!(!format!("{file:?}").contains(&jwt));
    }

    fn k_jwt(exp: i64) -> String {
        let claims = serde_json::json!({"sub": "c", "exp": exp});
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }
}
