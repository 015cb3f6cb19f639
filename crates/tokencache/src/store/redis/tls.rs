//! TLS of Redis connections (docs/design.md §16): which roots are trusted, the client
//! certificate, the name the server's certificate must carry, and the one-line errors
//! of a handshake that failed.
//!
//! * **Roots**: the system store as `rustls-native-certs` reads it (on Linux the
//!   distribution's bundle; `SSL_CERT_FILE` / `SSL_CERT_DIR`, when set, are read instead,
//!   as OpenSSL does), **plus** the PEM certificates of `tls_ca_file`.
//! * **Client certificate**: `tls_cert_file` + `tls_key_file` (PEM), for servers run with
//!   `--tls-auth-clients yes`.
//! * **Server name**: the certificate must be valid for the host of the URL, or for
//!   `tls_server_name` when given (an endpoint reached by IP whose certificate names a
//!   host).
//!
//! Standalone, Sentinel and pub/sub connections are made here (`tokio-rustls`, one
//! `ClientConfig` per store); a Cluster's node connections are made by redis-rs from
//! the same roots and client certificate ([`TlsSetup::certificates`]).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};

use crate::store::{StoreError, StoreErrorKind, StoreResult};

/// A client certificate and its private key (PEM), for servers that demand one
/// (`--tls-auth-clients yes`). The key is never shown (`Debug` prints sizes only).
#[derive(Clone)]
pub struct TlsClientCert {
    /// The certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// The private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key_pem: zeroize::Zeroizing<Vec<u8>>,
}

impl fmt::Debug for TlsClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientCert")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where the trusted roots came from, for `tokencache check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roots {
    /// Certificates from the system store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub(crate) system: usize,
    /// Certificates from `tls_ca_file`.
    pub(crate) extra: usize,
}

/// The TLS settings of one store, built once.
pub(crate) struct TlsSetup {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
    roots_pem: Vec<u8>,
    client: Option<TlsClientCert>,
    pub(crate) roots: Roots,
}

impl fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSetup")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots)
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

fn config_err(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Config, "redis tls", message)
}

/// The system's roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`), as DER.
fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "a system trust store location could not be read");
    }
    found.certs
}

impl TlsSetup {
    /// Builds the TLS settings: system roots plus `ca_pem`, the client certificate, the
    /// server name. Installs rustls' *ring* provider unless one is installed.
    ///
    /// # Errors
    /// `Config`: a PEM that holds no certificate or no key, a key that does not match
    /// the certificate, an invalid server name, no trusted root at all.
    pub(crate) fn new(
        ca_pem: Option<&[u8]>,
        client: Option<&TlsClientCert>,
        server_name: Option<&str>,
    ) -> StoreResult<Self> {
        super::connection::ensure_tls_provider();
        let system = system_roots();
        let mut extra = Vec::new();
        if let Some(pem) = ca_pem {
            for c in CertificateDer::pem_slice_iter(pem) {
                extra.push(c.map_err(|e| {
                    config_err(format!("tls_ca_file is not a PEM certificate file: {e}"))
                })?);
            }
            if extra.is_empty() {
                return Err(config_err(
                    "tls_ca_file holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        let mut store = RootCertStore::empty();
        let (system_ok, _) = store.add_parsable_certificates(system.iter().cloned());
        for c in &extra {
            store.add(c.clone()).map_err(|e| {
                config_err(format!(
                    "tls_ca_file: a certificate cannot be a trust root: {e}"
                ))
            })?;
        }
        if store.is_empty() {
            return Err(config_err(
                "no trusted root certificate: the system store is empty and no tls_ca_file is given (install ca-certificates, set SSL_CERT_FILE, or add ?tls_ca_file=/path/ca.pem)",
            ));
        }
        let roots = Roots {
            system: system_ok,
            extra: extra.len(),
        };
        let builder = ClientConfig::builder().with_root_certificates(store);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain = CertificateDer::pem_slice_iter(&c.cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        config_err(format!("tls_cert_file is not a PEM certificate file: {e}"))
                    })?;
                if chain.is_empty() {
                    return Err(config_err("tls_cert_file holds no certificate"));
                }
                // The key's parse error says nothing of its content.
                let key = PrivateKeyDer::from_pem_slice(&c.key_pem).map_err(|_| {
                    config_err(
                        "tls_key_file holds no private key (expected PEM: PKCS#8, RSA or EC)",
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    config_err(format!(
                        "tls_cert_file and tls_key_file do not go together: {e}"
                    ))
                })?
            }
        };
        if let Some(name) = server_name {
            ServerName::try_from(name.to_string()).map_err(|_| {
                config_err(format!(
                    "tls_server_name {name:?} is not a host name or IP address"
                ))
            })?;
        }
        let mut roots_pem = Vec::new();
        for c in system.iter().chain(extra.iter()) {
            roots_pem.extend_from_slice(pem_of(c).as_bytes());
        }
        Ok(Self {
            config: Arc::new(config),
            server_name: server_name.map(str::to_string),
            roots_pem,
            client: client.cloned(),
            roots,
        })
    }

    /// The name the server's certificate must be valid for when it is reached at `host`.
    pub(crate) fn name_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(host)
    }

    /// Whether a client certificate is presented.
    pub(crate) fn has_client_cert(&self) -> bool {
        self.client.is_some()
    }

    /// The same roots and client certificate for redis-rs (Cluster node connections).
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|c| redis::ClientTlsConfig {
                client_cert: c.cert_pem.clone(),
                client_key: c.key_pem.to_vec(),
            }),
            root_cert: Some(self.roots_pem.clone()),
        }
    }

    /// The TLS handshake over `tcp` with a server reached at `host`.
    pub(crate) async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
        host: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = ServerName::try_from(self.name_for(host).to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}

/// A DER certificate as PEM.
fn pem_of(der: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The rustls error somewhere in `e`'s chain (an `io::Error` wraps it), or, when the
/// chain hides it (redis-rs keeps its I/O errors behind an `Arc`), recognised in the
/// error's text.
pub(crate) fn rustls_error(e: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(r.clone());
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                    return Some(r.clone());
                }
            }
        }
        cur = err.source();
    }
    from_text(&e.to_string())
}

/// A rustls error recognised by how it displays.
fn from_text(text: &str) -> Option<rustls::Error> {
    use rustls::Error as E;
    if let Some(alert) = text.split("received fatal alert: ").nth(1) {
        let name: String = alert
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        let a = match name.as_str() {
            "CertificateRequired" => AlertDescription::CertificateRequired,
            "BadCertificate" => AlertDescription::BadCertificate,
            "UnknownCA" => AlertDescription::UnknownCA,
            "CertificateUnknown" => AlertDescription::CertificateUnknown,
            "HandshakeFailure" => AlertDescription::HandshakeFailure,
            "AccessDenied" => AlertDescription::AccessDenied,
            "CertificateExpired" => AlertDescription::CertificateExpired,
            _ => return Some(E::General(format!("received fatal alert: {name}"))),
        };
        return Some(E::AlertReceived(a));
    }
    if text.contains("invalid peer certificate: ") {
        let c = if text.contains("not valid for name") || text.contains("NotValidForName") {
            CertificateError::NotValidForName
        } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            CertificateError::UnknownIssuer
        } else if text.contains("expired") || text.contains("Expired") {
            CertificateError::Expired
        } else if text.contains("not valid yet") || text.contains("NotValidYet") {
            CertificateError::NotValidYet
        } else {
            CertificateError::BadEncoding
        };
        return Some(E::InvalidCertificate(c));
    }
    if text.contains("received corrupt message") || text.contains("received unexpected message") {
        return Some(E::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
    }
    None
}

/// What a failed handshake means, in one line that says which problem it is: an
/// untrusted certificate, a name mismatch, a server that does not speak TLS, a
/// client certificate wanted or refused. `name` is the name the certificate was checked
/// against.
pub(crate) fn describe(e: &rustls::Error, name: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. } => {
                "TLS: untrusted certificate: the server's certificate is not signed by a trusted CA (trusted: the system store, or SSL_CERT_FILE / SSL_CERT_DIR, plus ?tls_ca_file=; add the server's CA with ?tls_ca_file=/path/ca.pem)".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "TLS: certificate name mismatch: the server's certificate is not valid for {name} (connect by a name it carries, or set ?tls_server_name= to one)"
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "TLS: the server's certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "TLS: the server's certificate is not valid yet (check the clocks)".to_string()
            }
            other => format!("TLS: the server's certificate was refused ({other:?})"),
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "TLS/plain mismatch: the server did not answer the TLS handshake in TLS (a plain port? use redis:// there, or the server's TLS port)".to_string()
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "TLS: the server requires a client certificate (set ?tls_cert_file= and ?tls_key_file=)".to_string()
        }
        rustls::Error::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied),
        ) => format!("TLS: the server refused the client certificate ({a:?})"),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => {
            "TLS: the server ended the handshake (a client certificate required? set ?tls_cert_file= and ?tls_key_file=)".to_string()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// Whether the server at `addr` answers a TLS handshake (any certificate): used to tell
/// a plain connection to a TLS port from other failures.
pub(crate) async fn speaks_tls(addr: (&str, u16), timeout: std::time::Duration) -> bool {
    super::connection::ensure_tls_provider();
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        // No roots: a TLS server gets as far as its certificate, which is then refused.
        let config = ClientConfig::builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from("probe.invalid").ok()?;
        let r = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await;
        Some(match r {
            Ok(_) => true,
            Err(e) => matches!(
                rustls_error(&e),
                Some(rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_))
            ),
        })
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// Whether the server at `addr` answers a plain `PING` in the Redis protocol: used to
/// tell a TLS connection to a plain port from other failures.
pub(crate) async fn speaks_plain_redis(addr: (&str, u16), timeout: std::time::Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        tcp.read_exact(&mut first).await.ok()?;
        Some(matches!(first[0], b'+' | b'-'))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_says_which_it_is() {
        let untrusted = describe(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "h",
        );
        assert!(untrusted.contains("untrusted certificate"), "{untrusted}");
        assert!(untrusted.contains("tls_ca_file"), "{untrusted}");
        let name = describe(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            "10.0.0.5",
        );
        assert!(
            name.contains("name mismatch") && name.contains("10.0.0.5"),
            "{name}"
        );
        assert!(name.contains("tls_server_name"), "{name}");
        let plain = describe(
            &rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            "h",
        );
        assert!(plain.contains("TLS/plain mismatch"), "{plain}");
        let client = describe(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            "h",
        );
        assert!(client.contains("client certificate"), "{client}");
        for line in [untrusted, name, plain, client] {
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn rustls_errors_are_found_inside_io_and_redis_errors() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(rustls_error(&io).is_some());
        let redis = redis::RedisError::from(io);
        assert!(matches!(
            rustls_error(&redis),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
        for (e, want) in [
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                "client certificate",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "name mismatch",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "TLS/plain mismatch",
            ),
        ] {
            let redis = redis::RedisError::from(io::Error::new(io::ErrorKind::InvalidData, e));
            let found = rustls_error(&redis).expect("found in the text");
            assert!(describe(&found, "h").contains(want), "{found}");
        }
        let other = io::Error::other("x");
        assert!(rustls_error(&other).is_none());
    }

    #[test]
    fn bad_pem_is_a_config_error_and_keys_are_not_shown() {
        let e = TlsSetup::new(Some(b"not a pem"), None, None).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config);
        assert!(e.message.contains("tls_ca_file"), "{e}");
        let client = TlsClientCert {
            cert_pem: b"nothing".to_vec(),
            key_pem: zeroize::Zeroizing::new(
                b"-----BEGIN PRIVATE KEY-----\nsecretkeymaterial\n".to_vec(),
            ),
        };
        let shown = format!("{client:?}");
        assert!(!shown.contains("secretkeymaterial"), "{shown}");
        let e = TlsSetup::new(None, Some(&client), None).unwrap_err();
        assert!(!e.to_string().contains("secretkeymaterial"), "{e}");
        let e = TlsSetup::new(None, None, Some("bad name!")).unwrap_err();
        assert!(e.message.contains("tls_server_name"), "{e}");
    }

    #[test]
    fn roots_come_from_the_system_and_the_ca_file() {
        // The machine's store (or SSL_CERT_FILE) is not empty here.
        let t = TlsSetup::new(None, None, None).unwrap();
        assert!(t.roots.system > 0);
        assert_eq!(t.roots.extra, 0);
        let pem = String::from_utf8(t.certificates().root_cert.unwrap()).unwrap();
        assert!(pem.matches("BEGIN CERTIFICATE").count() >= t.roots.system);
        assert_eq!(t.name_for("10.0.0.1"), "10.0.0.1");
        let named = TlsSetup::new(None, None, Some("redis.internal")).unwrap();
        assert_eq!(named.name_for("10.0.0.1"), "redis.internal");
    }
}
