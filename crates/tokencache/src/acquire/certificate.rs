//! Certificate credentials (`private_key_jwt` with a certificate, as Entra's certificate
//! credentials are): a private key and its certificate chain from PEM files or a PKCS#12
//! file, checked when loaded — the certificate must be valid now and its public key must
//! be the private key's — and re-read when the files change (`files::Watched`).
//!
//! The assertion names the certificate by thumbprint: `x5t#S256` (SHA-256 of the DER) and
//! `x5t` (SHA-1, which Entra's v1 endpoints read), and carries the chain in `x5c` when
//! asked (subject name + issuer authentication).
//!
//! Libraries: `x509-parser` reads the certificate (validity, public key); `p12-keystore`
//! opens PKCS#12 (OpenSSL 3's AES/PBES2, and the legacy 3DES/RC2 of older Windows
//! exports); the key match is a signature by the private key verified with the
//! certificate's public key (`jsonwebtoken`, as the assertions themselves).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::client_auth::AssertionKey;
use super::error::AcquireError;
use super::files::{Watched, DEFAULT_CHECK_EVERY};
use crate::schema::Secret;

/// A certificate that expires sooner than this is warned about at load.
const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

/// Where a certificate credential's PKCS#12 password comes from.
#[derive(Clone)]
pub enum CertificatePassword {
    /// No password (an unencrypted PKCS#12, or PEM files).
    None,
    /// This value (read from an environment variable by the caller).
    Value(Secret),
    /// This file (trimmed), read again with the certificate when it changes.
    File(PathBuf),
}

impl std::fmt::Debug for CertificatePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertificatePassword::None => f.write_str("None"),
            CertificatePassword::Value(_) => f.write_str("Value(<redacted>)"),
            CertificatePassword::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// How a certificate credential is used.
#[derive(Debug, Clone)]
pub struct CertificateOptions {
    /// Send the certificate chain in the assertion's `x5c` header (Entra's subject name +
    /// issuer authentication). Default off.
    pub send_x5c: bool,
    /// The `kid` of the assertion (default: the certificate's `x5t`).
    pub key_id: Option<String>,
    /// How often the files are looked at for a change, at most. Default
    /// [`DEFAULT_CHECK_EVERY`].
    pub check_every: Duration,
}

impl Default for CertificateOptions {
    fn default() -> Self {
        Self {
            send_x5c: false,
            key_id: None,
            check_every: DEFAULT_CHECK_EVERY,
        }
    }
}

/// A private key and its certificate read from files, checked, re-read when the files
/// change: the client credential of [`ClientCredential::Certificate`](super::ClientCredential::Certificate).
pub struct ClientCertificate {
    watched: Watched<AssertionKey>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("files", &self.watched)
            .field("key", &*self.watched.loaded())
            .finish()
    }
}

const WHAT: &str = "client certificate";

impl ClientCertificate {
    /// A PEM private key (RSA PKCS#1/PKCS#8, or EC P-256 PKCS#8) and its certificate
    /// chain (leaf first, or in any order: the leaf is the one that matches the key), in
    /// one file (`certificate_file` `None`) or two. The certificate must be valid now
    /// and match the key: otherwise an error naming the file, at start. A key file
    /// without a certificate is a bare key, named by `options.key_id`.
    pub fn from_pem_files(
        key_file: impl Into<PathBuf>,
        certificate_file: Option<PathBuf>,
        options: CertificateOptions,
    ) -> Result<Self, AcquireError> {
        let key_file = key_file.into();
        let mut paths = vec![key_file.clone()];
        paths.extend(certificate_file.iter().cloned());
        let shown = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let o = options.clone();
        let load = move |contents: &[Vec<u8>]| {
            let key = &contents[0];
            let chain = contents.get(1).unwrap_or(key);
            if contents.len() == 1 && !String::from_utf8_lossy(key).contains("CERTIFICATE") {
                // a key alone (the provider knows it by `key_id`, not by a certificate)
                return AssertionKey::from_pem(key, o.key_id.as_deref())
                    .map_err(|e| named(&shown, e));
            }
            AssertionKey::from_pem_chain(key, chain, o.key_id.as_deref(), now())
                .map(|k| k.with_x5c(o.send_x5c))
                .map_err(|e| named(&shown, e))
        };
        let watched = Watched::open(WHAT, paths, options.check_every, Box::new(load))?;
        warn_if_expiring(&watched);
        Ok(Self { watched })
    }

    /// A PKCS#12 (`.pfx`, `.p12`) file holding the private key and its certificate
    /// chain, opened with `password`. Checked as [`from_pem_files`](Self::from_pem_files).
    pub fn from_pkcs12_file(
        file: impl Into<PathBuf>,
        password: CertificatePassword,
        options: CertificateOptions,
    ) -> Result<Self, AcquireError> {
        let file = file.into();
        let mut paths = vec![file.clone()];
        if let CertificatePassword::File(p) = &password {
            paths.push(p.clone());
        }
        let shown = file.display().to_string();
        let o = options.clone();
        let load = move |contents: &[Vec<u8>]| {
            let pw = match &password {
                CertificatePassword::None => Secret::new(""),
                CertificatePassword::Value(s) => s.clone(),
                CertificatePassword::File(_) => {
                    let text = std::str::from_utf8(&contents[1]).map_err(|_| {
                        named(
                            &shown,
                            AcquireError::Config("the password file is not UTF-8".into()),
                        )
                    })?;
                    Secret::new(text.trim_end_matches(['\r', '\n']))
                }
            };
            AssertionKey::from_pkcs12(&contents[0], &pw, o.key_id.as_deref(), now())
                .map(|k| k.with_x5c(o.send_x5c))
                .map_err(|e| named(&shown, e))
        };
        let watched = Watched::open(WHAT, paths, options.check_every, Box::new(load))?;
        warn_if_expiring(&watched);
        Ok(Self { watched })
    }

    /// The key in use now (read again when the files changed).
    pub(crate) fn key(&self) -> Arc<AssertionKey> {
        self.watched.current(WHAT)
    }

    /// The `x5t#S256` thumbprint of the certificate in use.
    pub fn thumbprint_s256(&self) -> Option<String> {
        self.key().thumbprint_s256().map(str::to_owned)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A load error, as a credential error naming the files.
fn named(files: &str, e: AcquireError) -> AcquireError {
    let reason = match e {
        AcquireError::Config(r) => r,
        AcquireError::Credential { reason, .. } => reason,
        other => other.to_string(),
    };
    AcquireError::Credential {
        credential: format!("{WHAT} {files}"),
        reason,
    }
}

fn warn_if_expiring(w: &Watched<AssertionKey>) {
    if let Some(end) = w.current(WHAT).not_after() {
        if end - now() < EXPIRY_WARNING_SECS {
            tracing::warn!(
                not_after = end,
                "client certificate: expires within 14 days"
            );
        }
    }
}

/// What the credential checks need of a certificate.
pub(crate) struct CertInfo {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    /// The SubjectPublicKeyInfo, DER.
    pub(crate) spki: Vec<u8>,
}

/// Reads a DER certificate.
pub(crate) fn cert_info(der: &[u8]) -> Result<CertInfo, AcquireError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| AcquireError::Config(format!("the certificate is not valid X.509: {e}")))?;
    let v = cert.validity();
    Ok(CertInfo {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// The private key (PKCS#8 DER) and certificate chain (DER) of a PKCS#12 file.
pub(crate) fn open_pkcs12(
    der: &[u8],
    password: &Secret,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), AcquireError> {
    let store = p12_keystore::KeyStore::from_pkcs12(der, password.expose()).map_err(|e| {
        AcquireError::Config(format!(
            "cannot open the PKCS#12 file (a wrong password, or not PKCS#12): {e}"
        ))
    })?;
    let (_, chain) = store.private_key_chain().ok_or_else(|| {
        AcquireError::Config("the PKCS#12 file holds no private key with its certificate".into())
    })?;
    Ok((
        chain.key().to_vec(),
        chain.chain().iter().map(|c| c.as_der().to_vec()).collect(),
    ))
}
