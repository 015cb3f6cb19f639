//! Client authentication at the token endpoint: a secret (`client_secret_basic`,
//! `client_secret_post`) or a signed client assertion (`private_key_jwt`, RFC 7523),
//! signed by `jsonwebtoken` from a PEM key, optionally with its certificate (whose
//! SHA-256 thumbprint goes in the `x5t#S256` header, and SHA-1 in `x5t`, as Entra
//! requires for certificate credentials).
//!
//! `Debug` never shows a secret or a key.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::Digest;

use super::error::AcquireError;
use super::http::FormValue;
use crate::schema::Secret;

/// How the client proves who it is.
#[derive(Clone)]
pub enum ClientCredential {
    /// A secret in the `Authorization: Basic` header (`client_secret_basic`).
    SecretBasic(Secret),
    /// A secret in the form body (`client_secret_post`).
    SecretPost(Secret),
    /// A JWT signed with the client's private key (`private_key_jwt`).
    PrivateKeyJwt(Arc<AssertionKey>),
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::SecretBasic(_) => f.write_str("SecretBasic(<redacted>)"),
            ClientCredential::SecretPost(_) => f.write_str("SecretPost(<redacted>)"),
            ClientCredential::PrivateKeyJwt(k) => write!(f, "PrivateKeyJwt({k:?})"),
        }
    }
}

impl ClientCredential {
    /// The `token_endpoint_auth_method` name.
    pub fn method(&self) -> &'static str {
        match self {
            ClientCredential::SecretBasic(_) => "client_secret_basic",
            ClientCredential::SecretPost(_) => "client_secret_post",
            ClientCredential::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// A private key that signs client assertions.
pub struct AssertionKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
    x5t: Option<String>,
    x5t_s256: Option<String>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

/// How long a client assertion is valid.
const ASSERTION_LIFETIME_SECS: i64 = 300;

impl AssertionKey {
    /// A key from PEM: an RSA key (PKCS#1 or PKCS#8, signs RS256) or an EC P-256 key
    /// (PKCS#8, signs ES256), with the `kid` the provider knows it by.
    pub fn from_pem(pem: &[u8], kid: Option<&str>) -> Result<Self, AcquireError> {
        let blocks = pem::parse_many(pem)
            .map_err(|e| AcquireError::Config(format!("the key file is not PEM: {e}")))?;
        for b in &blocks {
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
            let mut k = Self {
                key,
                alg,
                kid: kid.map(str::to_owned),
                x5t: None,
                x5t_s256: None,
            };
            if let Some(cert) = blocks.iter().find(|b| b.tag() == "CERTIFICATE") {
                k.set_certificate_der(cert.contents());
            }
            return Ok(k);
        }
        Err(AcquireError::Config(
            "the PEM holds no private key (RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY)".into(),
        ))
    }

    /// A key and its certificate, both PEM (one file may hold both): the assertion names
    /// the certificate by thumbprint (`x5t#S256` and `x5t`), which is how Entra finds it.
    pub fn from_pem_with_certificate(
        key_pem: &[u8],
        certificate_pem: &[u8],
    ) -> Result<Self, AcquireError> {
        let mut k = Self::from_pem(key_pem, None)?;
        let cert = pem::parse_many(certificate_pem)
            .map_err(|e| AcquireError::Config(format!("the certificate is not PEM: {e}")))?
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| AcquireError::Config("no CERTIFICATE in the PEM".into()))?;
        k.set_certificate_der(cert.contents());
        Ok(k)
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

    /// A signed client assertion for `client_id` at `audience` (the token endpoint).
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

/// The form fields and Basic credentials that authenticate `client_id` at `token_endpoint`.
pub(crate) struct Authentication {
    pub(crate) form: Vec<(&'static str, FormValue)>,
    pub(crate) basic: Option<Secret>,
    /// The client id (the user name of Basic authentication).
    pub(crate) client_id: String,
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
        Ok(match self {
            ClientCredential::SecretBasic(s) => Authentication {
                form: Vec::new(),
                basic: Some(s.clone()),
                client_id: client_id_owned,
            },
            ClientCredential::SecretPost(s) => Authentication {
                form: vec![
                    ("client_id", FormValue::Plain(client_id.to_string())),
                    ("client_secret", FormValue::Secret(s.clone())),
                ],
                basic: None,
                client_id: client_id_owned,
            },
            ClientCredential::PrivateKeyJwt(k) => Authentication {
                form: vec![
                    ("client_id", FormValue::Plain(client_id.to_string())),
                    (
                        "client_assertion_type",
                        FormValue::Plain(
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                        ),
                    ),
                    (
                        "client_assertion",
                        FormValue::Secret(k.assertion(client_id, token_endpoint, now)?),
                    ),
                ],
                basic: None,
                client_id: client_id_owned,
            },
        })
    }
}

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
        let a = basic.authenticate("c", "https://op/token", 0).await.unwrap();
        assert!(a.form.is_empty());
        assert_eq!(a.basic.unwrap().expose(), "s3cret");
        let post = ClientCredential::SecretPost(Secret::new("s3cret"));
        let a = post.authenticate("c", "https://op/token", 0).await.unwrap();
        assert!(a.basic.is_none());
        assert_eq!(a.form.len(), 2);
        assert!(!format!("{basic:?}{post:?}").contains("s3cret"));
    }
}
