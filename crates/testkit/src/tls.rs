//! Throwaway certificates for TLS tests, made with the `openssl` command: a private CA,
//! a server certificate it signed (valid for `DNS:localhost` only, so that reaching the
//! server at 127.0.0.1 is a name mismatch unless `tls_server_name=localhost`), a client
//! certificate it signed, and a second, unrelated CA (the "wrong CA").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of a [`TestCerts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFile {
    /// The private CA's certificate (PEM).
    Ca,
    /// The server's certificate, signed by the CA, valid for `localhost` only.
    ServerCert,
    /// The server's private key.
    ServerKey,
    /// A client certificate signed by the CA.
    ClientCert,
    /// The client certificate's private key.
    ClientKey,
    /// Another CA's certificate, which signed nothing here.
    OtherCa,
}

impl CertFile {
    fn name(self) -> &'static str {
        match self {
            CertFile::Ca => "ca.pem",
            CertFile::ServerCert => "server.pem",
            CertFile::ServerKey => "server.key",
            CertFile::ClientCert => "client.pem",
            CertFile::ClientKey => "client.key",
            CertFile::OtherCa => "other-ca.pem",
        }
    }
}

/// A private CA and the certificates of one test, in a temporary folder.
#[derive(Debug)]
pub struct TestCerts {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e} (install the Debian package openssl)"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA: `{name}.pem` and `{name}.key` (EC P-256: quick to make).
fn make_ca(dir: &Path, name: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A certificate `{name}.pem` / `{name}.key` signed by `ca`, with the extensions in
/// `ext` (an `openssl x509 -extfile` text).
fn make_signed(dir: &Path, name: &str, subject: &str, ca: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).expect("write the extensions file");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

impl TestCerts {
    /// Makes the CA, the server and client certificates, and the other CA.
    pub fn new() -> TestCerts {
        let dir = tempfile::Builder::new()
            .prefix("testkit-certs-")
            .tempdir()
            .expect("create a temporary directory for certificates");
        let d = dir.path();
        make_ca(d, "ca", "/CN=tokencache test CA");
        make_ca(d, "other-ca", "/CN=another CA");
        make_signed(
            d,
            "server",
            "/CN=localhost",
            "ca",
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        make_signed(
            d,
            "client",
            "/CN=tokencache client",
            "ca",
            "extendedKeyUsage=clientAuth\n",
        );
        TestCerts { dir }
    }

    /// The path of one of the files.
    pub fn path(&self, file: CertFile) -> PathBuf {
        self.dir.path().join(file.name())
    }

    /// The path of one of the files, as a string (for URLs and command lines).
    pub fn file(&self, file: CertFile) -> String {
        self.path(file).display().to_string()
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}
