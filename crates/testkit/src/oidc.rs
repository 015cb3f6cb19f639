//! A throwaway OpenID provider: `interop/oidc/provider.mjs` (oidc-provider, pinned in
//! `interop/oidc/package-lock.json`) run by `node` on a free loopback port.
//!
//! The first start in a test process runs `interop/oidc/setup.sh`, which installs the
//! pinned package into `$TOKENCACHE_PEERS_DIR/oidc` (default `<repo>/.peers/oidc`) when
//! it is not there yet. A missing `node`/`npm` or a failed install is a panic with the
//! reason: tests fail, never skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use crate::free_port;

/// How long the provider gets to print its "ready" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the provider is configured (see the header of `interop/oidc/provider.mjs`).
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// Access-token lifetime. Default 1 hour.
    pub access_ttl: Duration,
    /// Refresh-token lifetime. Default 1 day.
    pub refresh_ttl: Duration,
    /// Rotate refresh tokens (a reused one revokes the grant). Default true.
    pub rotate_refresh_tokens: bool,
    /// Add `refresh_in` (Entra's proactive-refresh hint) to token responses. Default none.
    pub refresh_in: Option<Duration>,
    /// Serve the provider under this path (e.g. `/tenant1/v2.0`, as Entra's issuers
    /// are): the issuer is `http://127.0.0.1:PORT{path}`. Default none.
    pub issuer_path: Option<String>,
    /// Mount one provider per path on the one port (e.g. `["/realms/a", "/realms/b"]`,
    /// as Keycloak's realms): each its own issuer `http://127.0.0.1:PORT{path}`, keys,
    /// stats and faults, with the same clients and secrets; test controls under each path
    /// ([`OidcProvider::realm_issuer`]). Default none (one provider; `issuer_path` is
    /// ignored when set).
    pub realms: Vec<String>,
    /// The host the issuer names (default `127.0.0.1`): `localhost` serves a discovery
    /// document whose issuer is not the URL it was fetched from.
    pub issuer_host: Option<String>,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(86400),
            rotate_refresh_tokens: true,
            refresh_in: None,
            issuer_path: None,
            realms: Vec::new(),
            issuer_host: None,
        }
    }
}

/// One `oidc-provider` process on `http://127.0.0.1:PORT`. Killed when dropped.
#[derive(Debug)]
pub struct OidcProvider {
    port: u16,
    issuer_path: String,
    child: Option<Child>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The certificate (with its private key beside it, `client-key.pem`) client `app-cert`
/// authenticates with: `crates/tokencache/tests/fixtures/acquire/client-cert.pem`.
pub fn client_cert_pem() -> PathBuf {
    repo_root().join("crates/tokencache/tests/fixtures/acquire/client-cert.pem")
}

fn peers_dir() -> PathBuf {
    std::env::var_os("TOKENCACHE_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".peers"))
}

/// Runs `interop/oidc/setup.sh` once per process; the error says what failed.
fn ensure_installed() -> Result<PathBuf, String> {
    static DONE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = repo_root().join("interop/oidc/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .env("TOKENCACHE_PEERS_DIR", peers_dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e} (bash is needed)", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed (the OpenID provider peer is required; node >= 20 and npm must be on PATH): {}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(peers_dir().join("oidc/provider.mjs"))
    })
    .clone()
}

impl OidcProvider {
    /// Starts a provider with the default options.
    pub fn start() -> OidcProvider {
        Self::start_with(&OidcOptions::default())
    }

    /// Starts a provider and waits until it listens. Panics with the reason when the
    /// peer cannot be installed or does not start.
    pub fn start_with(options: &OidcOptions) -> OidcProvider {
        let script = ensure_installed().unwrap_or_else(|e| panic!("{e}"));
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::spawn(&script, free_port(), options) {
                Ok(p) => return p,
                Err(e) => last_err = e,
            }
        }
        panic!("oidc-provider did not start after 3 attempts: {last_err}");
    }

    fn spawn(script: &PathBuf, port: u16, o: &OidcOptions) -> Result<OidcProvider, String> {
        let mut cmd = Command::new("node");
        if let Some(r) = o.refresh_in {
            cmd.env("REFRESH_IN", r.as_secs().to_string());
        }
        if let Some(p) = &o.issuer_path {
            cmd.env("ISSUER_PATH", p);
        }
        if !o.realms.is_empty() {
            cmd.env("REALMS", o.realms.join(","));
        }
        if let Some(h) = &o.issuer_host {
            cmd.env("ISSUER_HOST", h);
        }
        // client app-cert authenticates with the key of this certificate
        cmd.env("CLIENT_CERT_PEM", client_cert_pem());
        let mut child = cmd
            .arg(script)
            .env("PORT", port.to_string())
            .env("ACCESS_TTL", o.access_ttl.as_secs().max(1).to_string())
            .env("REFRESH_TTL", o.refresh_ttl.as_secs().max(1).to_string())
            .env("ROTATE", if o.rotate_refresh_tokens { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run node: {e} (install node >= 20)"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("oidc-provider ready on ") {
                    let _ = tx.send(Ok(()));
                }
            }
        });
        std::thread::spawn(move || {
            let mut tail = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !line.contains("WARNING") {
                    tail.push(line);
                }
            }
            // stderr closed: the process ended
            let _ = tx2.send(Err(tail.join(" | ")));
        });
        let mut provider = OidcProvider {
            port,
            issuer_path: o
                .issuer_path
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            child: Some(child),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(provider),
            Ok(Err(tail)) => {
                provider.stop();
                Err(format!("oidc-provider on port {port} exited: {tail}"))
            }
            Err(_) => {
                provider.stop();
                Err(format!(
                    "oidc-provider on port {port} did not say it was ready"
                ))
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The issuer, `http://127.0.0.1:PORT` (with the issuer path when one was set; its
    /// discovery document is under `/.well-known/openid-configuration`).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.issuer_path)
    }

    /// The issuer of the realm mounted at `path` (one of [`OidcOptions::realms`]),
    /// `http://127.0.0.1:PORT{path}`; its test controls answer under the same path
    /// (`{path}/__test/stats`).
    pub fn realm_issuer(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{}",
            self.port,
            path.trim_end_matches('/')
        )
    }

    /// `http://127.0.0.1:PORT`: where the test controls (`/__test/...`) answer.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GETs `path` (e.g. `/__test/stats`) and returns the body (test controls answer
    /// JSON with a Content-Length). Panics when the provider does not answer 200.
    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("connect to oidc-provider: {e}"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("write the request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the answer");
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        body.to_string()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the provider (its state, tokens included, is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(port: u16, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn provider_serves_discovery_and_stops() {
        let mut p = OidcProvider::start();
        let doc = get(p.port(), "/.well-known/openid-configuration");
        assert!(doc.starts_with("HTTP/1.1 200"), "{doc}");
        assert!(
            doc.contains(&format!("\"issuer\":\"{}\"", p.issuer())),
            "{doc}"
        );
        assert!(doc.contains("urn:ietf:params:oauth:grant-type:token-exchange"));
        let port = p.port();
        p.stop();
        assert!(!p.is_running());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
