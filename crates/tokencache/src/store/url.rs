//! Store selection by URL.
//!
//! | URL | store |
//! |---|---|
//! | `redb:///abs/path/file.redb` | [`EmbeddedStore`] in that file (the folder is created) |
//! | (none) | [`EmbeddedStore`] in [`default_embedded_path`] (one file per application) |
//! | `memory://` | [`MemoryStore`] |
//! | `redis://[user:pass@]host[:port][/db]`, `rediss://…` | [`RedisStore`] standalone |
//! | `redis+cluster://[user:pass@]h:p,h:p[,…]`, `rediss+cluster://…` | [`RedisStore`] Cluster |
//! | `redis+sentinel://[user:pass@]h:p[,h:p…]/MASTER_NAME[/db]`, `rediss+sentinel://…` | [`RedisStore`] behind Sentinels |
//!
//! Redis URLs accept `?connect_timeout_ms=N&response_timeout_ms=N` (defaults 2000),
//! `node_timeout_ms=N` (Cluster: one master's answer, default 200), the TLS options
//! `tls_ca_file=/path/ca.pem` (a private CA, trusted besides the system store),
//! `tls_cert_file=…&tls_key_file=…` (a client certificate, PEM) and `tls_server_name=NAME`
//! (the name the server's certificate must carry, when not the URL's host), and
//! `layout=string|dotnet` (how new keys are written: a Redis string, the default, or the
//! hash of .NET's `RedisCache`, see [`super::dotnet`]; existing keys keep theirs);
//! other query parameters are passed to redis-rs for standalone URLs (e.g.
//! `protocol=resp3`).
//!
//! **Passwords.** A password in a URL must be percent-encoded where URLs say so (`/` as
//! `%2F`, `@` as `%40`, `#` as `%23`, `?` as `%3F`, `%` as `%25`, a space as `%20`); one
//! that is not is refused with an error saying so, which never repeats it. A URL without
//! a password takes it from `TOKENCACHE_REDIS_PASSWORD`, or from the file named by
//! `TOKENCACHE_REDIS_PASSWORD_FILE` (its first line), so it need not be in a URL at all.
//! The [`fmt::Display`] of a [`StoreUrl`] never shows a password (nor the value of a
//! secret-looking query parameter); [`redact_url`] does the same for any URL string.

use super::dotnet::StoreLayout;
use super::embedded::EmbeddedStore;
use super::memory::MemoryStore;
use super::redis::{RedisOptions, RedisStore, TlsClientCert};
use super::{SharedStore, StoreError, StoreErrorKind, StoreResult};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The schemes [`StoreUrl::parse`] accepts, for error messages.
const ACCEPTED: &str =
    "redb:///path/file.redb, memory://, redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel://, rediss+sentinel://";

/// The environment variable holding the Redis password, for URLs without one.
pub const PASSWORD_ENV: &str = "TOKENCACHE_REDIS_PASSWORD";
/// The environment variable naming a file that holds the Redis password.
pub const PASSWORD_FILE_ENV: &str = "TOKENCACHE_REDIS_PASSWORD_FILE";

/// What to do about a password that is not valid in a URL (never the password).
const PERCENT_ENCODE: &str = "the password (or user name) in the Redis URL has a character that must be percent-encoded (/ as %2F, @ as %40, # as %23, ? as %3F, % as %25, a space as %20); or leave it out of the URL and set TOKENCACHE_REDIS_PASSWORD or TOKENCACHE_REDIS_PASSWORD_FILE";

/// A parsed store location.
// Parsed once per store, never in a hot path: the Redis variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An embedded redb file.
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// An in-process store.
    Memory,
    /// Redis, standalone, Cluster or behind Sentinels.
    Redis {
        /// `rediss://`: TLS.
        tls: bool,
        /// A Cluster (seed nodes in `hosts`).
        cluster: bool,
        /// Behind Sentinels: the master's name (the Sentinels in `hosts`).
        sentinel: Option<String>,
        /// `host:port` of each node (one for standalone; the Sentinels for Sentinel).
        hosts: Vec<String>,
        /// The ACL user name, if any.
        username: Option<String>,
        /// The password, if any (never displayed).
        password: Option<String>,
        /// The path and query after the hosts (`/db?…`), as written.
        rest: String,
        /// Connection timeouts taken from the query.
        connect_timeout: Option<Duration>,
        /// Response timeout taken from the query.
        response_timeout: Option<Duration>,
        /// Cluster: one master's answer (`node_timeout_ms=`).
        node_timeout: Option<Duration>,
        /// A PEM file of root certificates to trust (`tls_ca_file=`).
        tls_ca_file: Option<PathBuf>,
        /// A PEM client certificate (`tls_cert_file=`).
        tls_cert_file: Option<PathBuf>,
        /// Its PEM private key (`tls_key_file=`).
        tls_key_file: Option<PathBuf>,
        /// The name the server's certificate must carry (`tls_server_name=`).
        tls_server_name: Option<String>,
        /// The layout of new keys (`layout=`; default a string).
        layout: StoreLayout,
    },
}

fn config(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Config, "store url", message)
}

/// The folder of the default embedded store files: `tokencache` in the user's cache
/// folder (`dirs::cache_dir()`, e.g. `~/.cache` on Linux), or in the temporary folder
/// when there is none.
pub fn default_embedded_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("tokencache")
}

/// The default embedded store file of this application: `{app}.redb` in
/// [`default_embedded_dir`], where `app` is the name of the running executable. Per
/// application because redb lets one process at a time open a file: two applications
/// (or an application and the `tokencache` tool) must not share one default file.
pub fn default_embedded_path() -> PathBuf {
    let app = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    default_embedded_path_for(&app)
}

/// The default embedded store file of the application named `app` (an app name or a
/// client id): `{app}.redb` in [`default_embedded_dir`], with every character other than
/// ASCII letters, digits, `-`, `_` and `.` replaced by `_` (empty: `tokencache`).
pub fn default_embedded_path_for(app: &str) -> PathBuf {
    let mut name: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.trim_matches('.').is_empty() {
        name = "tokencache".into();
    }
    default_embedded_dir().join(format!("{name}.redb"))
}

/// Our own query parameters.
#[derive(Default)]
struct OwnParams {
    connect: Option<Duration>,
    response: Option<Duration>,
    node: Option<Duration>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    layout: StoreLayout,
}

/// Percent-decodes a query value (a file path may be encoded).
fn query_value(v: &str) -> String {
    percent_decode(v)
}

/// Decodes `%HH` escapes (nothing else: a '+' stays a '+').
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Ok(n) = u8::from_str_radix(v.get(i + 1..i + 3).unwrap_or(""), 16) {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Takes our own parameters out of a query string; returns the rest and them.
fn take_params(query: &str) -> StoreResult<(String, OwnParams)> {
    let mut keep = Vec::new();
    let mut own = OwnParams::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "tls_ca_file" => own.ca = Some(PathBuf::from(query_value(v))),
            "tls_cert_file" => own.cert = Some(PathBuf::from(query_value(v))),
            "tls_key_file" => own.key = Some(PathBuf::from(query_value(v))),
            "tls_server_name" => {
                let name = query_value(v);
                if name.is_empty() {
                    return Err(config("tls_server_name needs a host name"));
                }
                own.server_name = Some(name);
            }
            "layout" => own.layout = StoreLayout::parse(v)?,
            "connect_timeout_ms" | "response_timeout_ms" | "node_timeout_ms" => {
                let ms: u64 = v
                    .parse()
                    // the value is not repeated: a mistyped URL may have put a secret there
                    .map_err(|_| config(format!("{k} must be a whole number of milliseconds")))?;
                let d = Some(Duration::from_millis(ms));
                match k {
                    "connect_timeout_ms" => own.connect = d,
                    "response_timeout_ms" => own.response = d,
                    _ => own.node = d,
                }
            }
            _ => keep.push(pair),
        }
    }
    if own.cert.is_some() != own.key.is_some() {
        return Err(config(
            "a client certificate needs both tls_cert_file and tls_key_file",
        ));
    }
    Ok((keep.join("&"), own))
}

/// Whether `s` is valid user information in a URL: unreserved characters,
/// sub-delimiters, `:` and `%HH` escapes only.
fn valid_userinfo(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' => {}
            b'%' => {
                if !(i + 2 < b.len()
                    && b[i + 1].is_ascii_hexdigit()
                    && b[i + 2].is_ascii_hexdigit())
                {
                    return false;
                }
                i += 2;
            }
            _ => return false,
        }
        i += 1;
    }
    true
}

/// Checks one `host:port` of a Redis URL (and adds the default port); the error names
/// the host or the port, never anything else of the URL.
fn host_port(h: &str, default_port: u16) -> StoreResult<String> {
    let (host, port) = if let Some(inner) = h.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(config(format!("the host {h:?} in the Redis URL is not a host name or IP address (an IPv6 address goes in brackets: [::1]:6379)")));
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(config(format!(
                "the host {h:?} in the Redis URL is not a host name or IP address"
            )));
        }
        match after.strip_prefix(':') {
            Some(p) => (format!("[{addr}]"), Some(p)),
            None if after.is_empty() => (format!("[{addr}]"), None),
            None => {
                return Err(config(format!(
                    "the host {h:?} in the Redis URL is not a host name or IP address"
                )))
            }
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, p)) => (host.to_string(), Some(p)),
            None => (h.to_string(), None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_')));
    if !host_ok {
        return Err(config(format!(
            "the host {host:?} in the Redis URL is not a host name or IP address"
        )));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(config(format!(
                    "the port {p:?} of host {host} in the Redis URL is not a number from 1 to 65535"
                )))
            }
        },
    };
    Ok(format!("{host}:{port}"))
}

/// The password from `TOKENCACHE_REDIS_PASSWORD` or the file `TOKENCACHE_REDIS_PASSWORD_FILE`
/// names (its first line), read through `var`; `None` when neither is set.
fn password_from_env(var: impl Fn(&str) -> Option<String>) -> StoreResult<Option<String>> {
    let direct = var(PASSWORD_ENV).filter(|v| !v.is_empty());
    let file = var(PASSWORD_FILE_ENV).filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(config(format!(
            "both {PASSWORD_ENV} and {PASSWORD_FILE_ENV} are set: set one"
        ))),
        (Some(p), None) => Ok(Some(p)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Config,
                    path.as_str(),
                    format!("cannot read {PASSWORD_FILE_ENV}: {e}"),
                )
            })?;
            let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
            if first.is_empty() {
                return Err(StoreError::new(
                    StoreErrorKind::Config,
                    path.as_str(),
                    format!("the file named by {PASSWORD_FILE_ENV} is empty"),
                ));
            }
            Ok(Some(first.to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// Reads a PEM file named in a URL; the error names the option and the file.
fn read_pem(what: &str, path: &std::path::Path) -> StoreResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Config,
            path.display().to_string(),
            format!("cannot read {what}: {e}"),
        )
    })
}

impl StoreUrl {
    /// Parses a store URL (see the module docs for the forms).
    ///
    /// # Errors
    /// `Config` for an unknown scheme (naming the accepted ones), a relative or empty
    /// redb path, a Redis URL without host, or bad timeout values. The message never
    /// repeats a password.
    pub fn parse(s: &str) -> StoreResult<StoreUrl> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(config(format!(
                "not a store URL (no scheme); accepted: {ACCEPTED}"
            )));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => Ok(StoreUrl::Memory),
            "redb" => {
                let path = PathBuf::from(rest);
                if rest.is_empty() || !path.is_absolute() {
                    return Err(config(format!(
                        "a redb URL needs an absolute path, as in redb:///var/cache/tokencache.redb (got {rest:?})"
                    )));
                }
                Ok(StoreUrl::Embedded { path })
            }
            sch @ ("redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "redis+sentinel"
            | "rediss+sentinel") => {
                let tls = sch.starts_with("rediss");
                let cluster = sch.ends_with("+cluster");
                let is_sentinel = sch.ends_with("+sentinel");
                // The user information ends at the last '@' before the query; a '?'
                // in an unencoded password leaves an '@' after it.
                let pre_query = rest.find('?').unwrap_or(rest.len());
                let at = match rest[..pre_query].rfind('@') {
                    Some(i) => Some(i),
                    None => {
                        let after = &rest[pre_query..];
                        if after.rfind('@').is_some_and(|i| !after[i..].contains('=')) {
                            return Err(config(PERCENT_ENCODE));
                        }
                        None
                    }
                };
                let (userinfo, after_user) = match at {
                    Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
                    None => (None, rest),
                };
                let (username, password) = match userinfo {
                    None => (None, None),
                    Some(u) => {
                        let (user, pass) = match u.split_once(':') {
                            Some((user, pass)) => (user, Some(pass)),
                            None => (u, None),
                        };
                        if !valid_userinfo(user) || pass.is_some_and(|p| !valid_userinfo(p)) {
                            return Err(config(PERCENT_ENCODE));
                        }
                        let decode = percent_decode;
                        (
                            Some(decode(user)).filter(|u| !u.is_empty()),
                            pass.map(decode).filter(|p| !p.is_empty()),
                        )
                    }
                };
                let end = after_user.find(['/', '?']).unwrap_or(after_user.len());
                let (hostlist, tail) = after_user.split_at(end);
                let default_port = if is_sentinel { 26379 } else { 6379 };
                let mut hosts = Vec::new();
                for h in hostlist.split(',') {
                    let h = h.trim();
                    if h.is_empty() {
                        return Err(config(format!(
                            "a {sch}:// URL needs host[:port]{}",
                            if cluster || is_sentinel {
                                " (several separated by commas)"
                            } else {
                                ""
                            }
                        )));
                    }
                    hosts.push(host_port(h, default_port)?);
                }
                if !cluster && !is_sentinel && hosts.len() != 1 {
                    return Err(config(format!(
                        "a {sch}:// URL names one host; for several use {sch}+cluster:// (a Cluster) or {sch}+sentinel:// (Sentinels)"
                    )));
                }
                let (path, query) = match tail.split_once('?') {
                    Some((p, q)) => (p, q),
                    None => (tail, ""),
                };
                let (path, sentinel) = if is_sentinel {
                    let mut segments = path.trim_start_matches('/').splitn(2, '/');
                    let master = segments.next().unwrap_or("");
                    if master.is_empty() {
                        return Err(config(format!(
                            "a {sch}:// URL names the master after the Sentinels: {sch}://HOST:PORT[,HOST:PORT…]/MASTER_NAME"
                        )));
                    }
                    let db = segments.next().unwrap_or("");
                    let path = if db.is_empty() {
                        String::new()
                    } else {
                        format!("/{db}")
                    };
                    (path, Some(query_value(master)))
                } else {
                    (path.to_string(), None)
                };
                if let Some(db) = path
                    .trim_start_matches('/')
                    .split('/')
                    .next()
                    .filter(|d| !d.is_empty())
                {
                    if db.parse::<u16>().is_err() {
                        return Err(config(format!(
                            "the database {db:?} in the Redis URL is not a number"
                        )));
                    }
                }
                let (query, own) = take_params(query)?;
                let rest = if query.is_empty() {
                    path
                } else {
                    format!("{path}?{query}")
                };
                Ok(StoreUrl::Redis {
                    tls,
                    cluster,
                    sentinel,
                    hosts,
                    username,
                    password,
                    rest,
                    connect_timeout: own.connect,
                    response_timeout: own.response,
                    node_timeout: own.node,
                    tls_ca_file: own.ca,
                    tls_cert_file: own.cert,
                    tls_key_file: own.key,
                    tls_server_name: own.server_name,
                    layout: own.layout,
                })
            }
            other => Err(config(format!(
                "unknown store URL scheme {other:?}; accepted: {ACCEPTED}"
            ))),
        }
    }

    /// The URL redis-rs gets for one node (with credentials; never log it).
    fn node_url(&self, host: &str, password: Option<&str>) -> Option<String> {
        let StoreUrl::Redis {
            tls,
            username,
            rest,
            ..
        } = self
        else {
            return None;
        };
        let enc = |v: &str| {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let auth = match (username, password) {
            (None, None) => String::new(),
            (Some(u), None) => format!("{}@", enc(u)),
            (u, Some(p)) => format!("{}:{}@", enc(u.as_deref().unwrap_or("")), enc(p)),
        };
        let scheme = if *tls { "rediss" } else { "redis" };
        Some(format!("{scheme}://{auth}{host}{rest}"))
    }

    /// The Redis settings of this URL (timeouts, TLS files read, layout), with the
    /// password from the URL or else from the environment.
    fn redis_options(&self) -> StoreResult<(RedisOptions, Option<String>)> {
        self.redis_options_with(|k| std::env::var(k).ok())
    }

    fn redis_options_with(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> StoreResult<(RedisOptions, Option<String>)> {
        let StoreUrl::Redis {
            password,
            connect_timeout,
            response_timeout,
            node_timeout,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            tls_server_name,
            layout,
            ..
        } = self
        else {
            return Err(config("not a Redis URL"));
        };
        let tls_ca_pem = match tls_ca_file {
            Some(f) => Some(read_pem("tls_ca_file", f)?),
            None => None,
        };
        let tls_client = match (tls_cert_file, tls_key_file) {
            (Some(c), Some(k)) => Some(TlsClientCert {
                cert_pem: read_pem("tls_cert_file", c)?,
                key_pem: zeroize::Zeroizing::new(read_pem("tls_key_file", k)?),
            }),
            _ => None,
        };
        let defaults = RedisOptions::default();
        let options = RedisOptions {
            connect_timeout: connect_timeout.unwrap_or(defaults.connect_timeout),
            response_timeout: response_timeout.unwrap_or(defaults.response_timeout),
            node_timeout: node_timeout.unwrap_or(defaults.node_timeout),
            tls_ca_pem,
            tls_client,
            tls_server_name: tls_server_name.clone(),
            layout: *layout,
            ..defaults
        };
        let password = match password {
            Some(p) => Some(p.clone()),
            None => password_from_env(var)?,
        };
        Ok((options, password))
    }

    /// The Redis store this URL names, not connected yet (see [`RedisStore`]).
    ///
    /// # Errors
    /// `Config` when this is not a Redis URL, or its settings are unusable (a TLS file
    /// that cannot be read, a bad certificate, both password variables set...).
    pub fn open_redis(&self) -> StoreResult<RedisStore> {
        let StoreUrl::Redis {
            tls,
            cluster,
            sentinel,
            hosts,
            username,
            rest,
            ..
        } = self
        else {
            return Err(config(format!("{self} is not a Redis URL")));
        };
        let (options, password) = self.redis_options()?;
        if let Some(master) = sentinel {
            let mut node = redis::RedisConnectionInfo::default();
            if let Some(u) = username {
                node = node.set_username(u);
            }
            if let Some(p) = &password {
                node = node.set_password(p);
            }
            let db = rest.split('?').next().unwrap_or("").trim_start_matches('/');
            if !db.is_empty() {
                node = node.set_db(
                    db.parse::<i64>()
                        .map_err(|_| config("the database in the Redis URL is not a number"))?,
                );
            }
            return RedisStore::sentinel(hosts, master, node, *tls, options);
        }
        let urls: Vec<String> = hosts
            .iter()
            .filter_map(|h| self.node_url(h, password.as_deref()))
            .collect();
        if *cluster {
            RedisStore::cluster(&urls, options)
        } else {
            RedisStore::standalone(&urls[0], options)
        }
    }

    /// Opens the store this URL names. Redis stores connect lazily (this returns at
    /// once even if Redis is down); the embedded store creates its folder and file.
    ///
    /// # Errors
    /// `Config` when the store cannot be set up (bad Redis URL, unopenable file).
    pub async fn open(&self) -> StoreResult<SharedStore> {
        match self {
            StoreUrl::Memory => Ok(Arc::new(MemoryStore::new())),
            StoreUrl::Embedded { path } => {
                private_file(path).map_err(|e| {
                    StoreError::new(StoreErrorKind::Config, path.display().to_string(), e)
                })?;
                Ok(open_embedded_shared(path).await?)
            }
            StoreUrl::Redis { .. } => Ok(Arc::new(self.open_redis()?)),
        }
    }
}

/// Makes the store file private before it is first opened: missing folders are created
/// `0700`, a missing file `0600` (it holds tokens; on unix). Existing folders and files
/// keep their permissions (the operator's choice).
fn private_file(path: &Path) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(dir) = dir {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the folder of the store file: {e}"))?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(format!("cannot create the store file: {e}")),
        }
    }
    #[cfg(not(unix))]
    {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the folder of the store file: {e}"))?;
        }
        Ok(())
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Memory => f.write_str("memory://"),
            StoreUrl::Embedded { path } => write!(f, "redb://{}", path.display()),
            StoreUrl::Redis {
                tls,
                cluster,
                sentinel,
                hosts,
                username,
                password,
                rest,
                layout,
                ..
            } => {
                let scheme = match (tls, cluster, sentinel.is_some()) {
                    (false, _, true) => "redis+sentinel",
                    (true, _, true) => "rediss+sentinel",
                    (false, false, _) => "redis",
                    (true, false, _) => "rediss",
                    (false, true, _) => "redis+cluster",
                    (true, true, _) => "rediss+cluster",
                };
                write!(f, "{scheme}://")?;
                match (username, password) {
                    (None, None) => {}
                    (Some(u), None) => write!(f, "{u}@")?,
                    (u, Some(_)) => write!(f, "{}:***@", u.as_deref().unwrap_or(""))?,
                }
                let mut rest = match rest.split_once('?') {
                    Some((path, query)) => format!("{path}?{}", redact_query(query)),
                    None => rest.clone(),
                };
                if *layout != StoreLayout::String {
                    rest.push(if rest.contains('?') { '&' } else { '?' });
                    rest.push_str("layout=");
                    rest.push_str(layout.as_str());
                }
                if let Some(master) = sentinel {
                    rest = format!("/{master}{rest}");
                }
                write!(f, "{}{}", hosts.join(","), rest)
            }
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same as Display: never the password.
        write!(f, "StoreUrl({self})")
    }
}

/// Query parameter names whose values are hidden by [`redact_url`] (matched
/// case-insensitively as parts of the name: `password`, `api_key`, `access_token`...).
const SECRET_PARAMS: &[&str] = &[
    "pass", "pwd", "secret", "token", "key", "auth", "cred", "sig",
];

/// A query string with the values of secret-looking parameters replaced by `***`.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => {
                let lower = k.to_ascii_lowercase();
                if SECRET_PARAMS.iter().any(|s| lower.contains(s)) {
                    format!("{k}=***")
                } else {
                    pair.to_string()
                }
            }
            None => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A URL fit for logs and error messages: scheme, user name (store URLs), hosts, ports
/// and path as written, any password replaced by `***`, and the values of
/// secret-looking query parameters (`password=`, `token=`, `key=`...) too.
///
/// A store URL ([`StoreUrl::parse`]) is shown as its [`Display`](fmt::Display) (with the
/// redis-rs query parameters it keeps). Any other URL (`https://…`, a mistyped scheme)
/// loses its whole user-info part (`***@`), since a user name cannot be told from a
/// password there. A string that is not a URL but has an `@` is not shown at all.
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    if let Ok(parsed) = StoreUrl::parse(url) {
        return parsed.to_string();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "<not a URL; not shown>".to_string()
        } else {
            url.to_string()
        };
    };
    // User information ends at the last '@' (before the query, or anywhere): a
    // password with an unencoded '/', '?' or '#' must not leak its tail.
    let pre_query = rest.find('?').unwrap_or(rest.len());
    let (hidden, rest) = match rest[..pre_query].rfind('@').or_else(|| rest.rfind('@')) {
        Some(i) => (true, &rest[i + 1..]),
        None => (false, rest),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = if hidden {
        format!("***@{authority}")
    } else {
        authority.to_string()
    };
    // a fragment is not sent anywhere; it is dropped rather than inspected
    let tail = tail.split('#').next().unwrap_or("");
    let tail = match tail.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_query(query)),
        None => tail.to_string(),
    };
    format!("{scheme}://{host}{tail}")
}

/// A store URL as configured: kept verbatim for opening the store, shown (`Debug`,
/// `Display`) only through [`redact_url`], so that a builder or an options value that
/// holds one can derive `Debug` without printing a password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ConfiguredUrl(String);

impl ConfiguredUrl {
    /// Keeps `url` as given.
    pub(crate) fn new(url: &str) -> Self {
        Self(url.to_string())
    }

    /// The URL with its credentials, for opening the store only: never log it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConfiguredUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for ConfiguredUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// Opens the store named by `url`; an empty string opens the embedded store at
/// [`default_embedded_path`]. See [`StoreUrl`] for the forms.
///
/// # Errors
/// As [`StoreUrl::parse`] and [`StoreUrl::open`].
pub async fn open(url: &str) -> StoreResult<SharedStore> {
    parse_or_default(url)?.open().await
}

/// Opens the store named by `url` as [`open`] does, with `layout` (when given) as the
/// layout of new keys of a Redis store, in place of the URL's `?layout=`.
///
/// # Errors
/// As [`open`].
pub(crate) async fn open_with_layout(
    url: &str,
    layout: Option<StoreLayout>,
) -> StoreResult<SharedStore> {
    let mut parsed = parse_or_default(url)?;
    if let (
        Some(want),
        StoreUrl::Redis {
            layout: configured, ..
        },
    ) = (layout, &mut parsed)
    {
        *configured = want;
    }
    parsed.open().await
}

/// Opens the store named by `url` only if it exists: for tools that read or remove
/// (an inspection, an administrative sign-out), which must never create a store. An
/// embedded store file that is not there is a `Config` error saying so (no folder or
/// file is created); `memory://` is refused (a new in-process store is always empty);
/// Redis opens as with [`open`] (a server either answers or not).
///
/// # Errors
/// As [`open`], plus `Config` for a missing embedded file and for `memory://`.
pub async fn open_existing(url: &str) -> StoreResult<SharedStore> {
    let parsed = parse_or_default(url)?;
    match &parsed {
        StoreUrl::Embedded { path } if !path.is_file() => {
            return Err(StoreError::new(
                StoreErrorKind::Config,
                path.display().to_string(),
                "no store exists there (nothing was created); name an existing store file or a Redis URL",
            ))
        }
        StoreUrl::Memory => {
            return Err(config(
                "memory:// is a new, empty store in this process; name an existing store",
            ))
        }
        _ => {}
    }
    parsed.open().await
}

fn parse_or_default(url: &str) -> StoreResult<StoreUrl> {
    if url.trim().is_empty() {
        Ok(StoreUrl::Embedded {
            path: default_embedded_path(),
        })
    } else {
        StoreUrl::parse(url)
    }
}

/// Open embedded stores (weak handles) by canonical file path.
type OpenEmbedded = tokio::sync::Mutex<Vec<(std::path::PathBuf, std::sync::Weak<EmbeddedStore>)>>;

/// Embedded stores this process has open, by file. redb locks its file exclusively, so
/// a second `open` of the same file (a second `TokenCache`, or one built while a dropped
/// one's background task still holds the store) shares the open store instead of failing
/// with "already open".
fn open_embedded() -> &'static OpenEmbedded {
    static OPEN: std::sync::OnceLock<OpenEmbedded> = std::sync::OnceLock::new();
    OPEN.get_or_init(|| tokio::sync::Mutex::new(Vec::new()))
}

async fn open_embedded_shared(path: &std::path::Path) -> StoreResult<Arc<EmbeddedStore>> {
    // The file may not exist yet: identify it by its canonical folder and its name.
    let key = match (path.parent().map(std::fs::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    };
    // Held across the open so that two concurrent opens of one file share one store.
    let mut open = open_embedded().lock().await;
    open.retain(|(_, store)| store.strong_count() > 0);
    if let Some(store) = open
        .iter()
        .find(|(p, _)| *p == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(store);
    }
    let store = Arc::new(EmbeddedStore::open(path).await?);
    open.push((key, Arc::downgrade(&store)));
    Ok(store)
}

#[cfg(test)]
mod tests;
