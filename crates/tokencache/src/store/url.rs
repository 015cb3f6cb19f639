//! Store selection by URL.
//!
//! | URL | store |
//! |---|---|
//! | `redb:///abs/path/file.redb` | [`EmbeddedStore`] in that file (the folder is created) |
//! | (none) | [`EmbeddedStore`] in [`default_embedded_path`] (one file per application) |
//! | `memory://` | [`MemoryStore`] |
//! | `redis://[user:pass@]host[:port][/db]`, `rediss://…` | [`RedisStore`] standalone |
//! | `redis+cluster://[user:pass@]h:p,h:p[,…]`, `rediss+cluster://…` | [`RedisStore`] Cluster |
//!
//! Redis URLs accept `?connect_timeout_ms=N&response_timeout_ms=N` (defaults 2000) and
//! `tls_ca_file=/path/ca.pem` (a private CA to trust for `rediss://`) and
//! `layout=string|dotnet` (how new keys are written: a Redis string, the default, or the
//! hash of .NET's `RedisCache`, see [`super::dotnet`]; existing keys keep theirs);
//! other query parameters are passed to redis-rs for standalone URLs (e.g.
//! `protocol=resp3`). The [`fmt::Display`] of a [`StoreUrl`] never shows a password (nor
//! the value of a secret-looking query parameter); [`redact_url`] does the same for any
//! URL string.

use super::dotnet::StoreLayout;
use super::embedded::EmbeddedStore;
use super::memory::MemoryStore;
use super::redis::{RedisOptions, RedisStore};
use super::{SharedStore, StoreError, StoreErrorKind, StoreResult};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The schemes [`StoreUrl::parse`] accepts, for error messages.
const ACCEPTED: &str =
    "redb:///path/file.redb, memory://, redis://, rediss://, redis+cluster://, rediss+cluster://";

/// A parsed store location.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An embedded redb file.
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// An in-process store.
    Memory,
    /// Redis, standalone or Cluster.
    Redis {
        /// `rediss://`: TLS.
        tls: bool,
        /// A Cluster (seed nodes in `hosts`).
        cluster: bool,
        /// `host:port` of each node (one for standalone).
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
        /// A PEM file of root certificates to trust (`tls_ca_file=`).
        tls_ca_file: Option<PathBuf>,
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

/// Our own query parameters: connect timeout, response timeout, CA file, layout.
type OwnParams = (
    Option<Duration>,
    Option<Duration>,
    Option<PathBuf>,
    StoreLayout,
);

/// Takes our own parameters out of a query string; returns the rest and them.
fn take_params(query: &str) -> StoreResult<(String, OwnParams)> {
    let mut keep = Vec::new();
    let (mut connect, mut response, mut ca) = (None, None, None);
    let mut layout = StoreLayout::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "tls_ca_file" {
            ca = Some(PathBuf::from(v));
            continue;
        }
        if k == "layout" {
            layout = StoreLayout::parse(v)?;
            continue;
        }
        let slot = match k {
            "connect_timeout_ms" => &mut connect,
            "response_timeout_ms" => &mut response,
            _ => {
                keep.push(pair);
                continue;
            }
        };
        let ms: u64 = v
            .parse()
            // the value is not repeated: a mistyped URL may have put a secret there
            .map_err(|_| config(format!("{k} must be a whole number of milliseconds")))?;
        *slot = Some(Duration::from_millis(ms));
    }
    Ok((keep.join("&"), (connect, response, ca, layout)))
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
            sch @ ("redis" | "rediss" | "redis+cluster" | "rediss+cluster") => {
                let tls = sch.starts_with("rediss");
                let cluster = sch.ends_with("+cluster");
                let end = rest.find(['/', '?']).unwrap_or(rest.len());
                let (authority, tail) = rest.split_at(end);
                let (userinfo, hostlist) = match authority.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, authority),
                };
                let (username, password) = match userinfo {
                    None => (None, None),
                    Some(u) => {
                        let (user, pass) = match u.split_once(':') {
                            Some((user, pass)) => (user, Some(pass)),
                            None => (u, None),
                        };
                        let decode = |v: &str| {
                            url::form_urlencoded::parse(
                                format!("x={}", v.replace('+', "%2B")).as_bytes(),
                            )
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                        };
                        (
                            Some(decode(user)).filter(|u| !u.is_empty()),
                            pass.map(decode).filter(|p| !p.is_empty()),
                        )
                    }
                };
                let mut hosts = Vec::new();
                for h in hostlist.split(',') {
                    let h = h.trim();
                    if h.is_empty() {
                        return Err(config(format!(
                            "a {sch}:// URL needs host[:port]{}",
                            if cluster {
                                " seeds separated by commas"
                            } else {
                                ""
                            }
                        )));
                    }
                    let with_port = if h.starts_with('[') {
                        if h.contains("]:") {
                            h.to_owned()
                        } else {
                            format!("{h}:6379")
                        }
                    } else if h.contains(':') {
                        h.to_owned()
                    } else {
                        format!("{h}:6379")
                    };
                    hosts.push(with_port);
                }
                if !cluster && hosts.len() != 1 {
                    return Err(config(format!(
                        "a {sch}:// URL names one host; for several use {sch}+cluster://"
                    )));
                }
                let (path, query) = match tail.split_once('?') {
                    Some((p, q)) => (p, q),
                    None => (tail, ""),
                };
                let (query, (connect_timeout, response_timeout, tls_ca_file, layout)) =
                    take_params(query)?;
                let rest = if query.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{query}")
                };
                Ok(StoreUrl::Redis {
                    tls,
                    cluster,
                    hosts,
                    username,
                    password,
                    rest,
                    connect_timeout,
                    response_timeout,
                    tls_ca_file,
                    layout,
                })
            }
            other => Err(config(format!(
                "unknown store URL scheme {other:?}; accepted: {ACCEPTED}"
            ))),
        }
    }

    /// The URL redis-rs gets for one node (with credentials; never log it).
    fn node_url(&self, host: &str) -> Option<String> {
        let StoreUrl::Redis {
            tls,
            username,
            password,
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

    /// Opens the store this URL names. Redis stores connect lazily (this returns at
    /// once even if Redis is down); the embedded store creates its folder and file.
    ///
    /// # Errors
    /// `Config` when the store cannot be set up (bad Redis URL, unopenable file).
    pub async fn open(&self) -> StoreResult<SharedStore> {
        match self {
            StoreUrl::Memory => Ok(Arc::new(MemoryStore::new())),
            StoreUrl::Embedded { path } => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::new(
                            StoreErrorKind::Config,
                            path.display().to_string(),
                            format!("cannot create the folder of the store file: {e}"),
                        )
                    })?;
                }
                Ok(open_embedded_shared(path).await?)
            }
            StoreUrl::Redis {
                cluster,
                hosts,
                connect_timeout,
                response_timeout,
                tls_ca_file,
                layout,
                ..
            } => {
                let tls_ca_pem = match tls_ca_file {
                    Some(f) => Some(std::fs::read(f).map_err(|e| {
                        StoreError::new(
                            StoreErrorKind::Config,
                            f.display().to_string(),
                            format!("cannot read tls_ca_file: {e}"),
                        )
                    })?),
                    None => None,
                };
                let defaults = RedisOptions::default();
                let options = RedisOptions {
                    connect_timeout: connect_timeout.unwrap_or(defaults.connect_timeout),
                    response_timeout: response_timeout.unwrap_or(defaults.response_timeout),
                    tls_ca_pem,
                    layout: *layout,
                    ..defaults
                };
                let urls: Vec<String> = hosts.iter().filter_map(|h| self.node_url(h)).collect();
                let store = if *cluster {
                    RedisStore::cluster(&urls, options)?
                } else {
                    RedisStore::standalone(&urls[0], options)?
                };
                Ok(Arc::new(store))
            }
        }
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
                hosts,
                username,
                password,
                rest,
                layout,
                ..
            } => {
                let scheme = match (tls, cluster) {
                    (false, false) => "redis",
                    (true, false) => "rediss",
                    (false, true) => "redis+cluster",
                    (true, true) => "rediss+cluster",
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
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
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
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("redb:///var/x/t.redb").unwrap(),
            StoreUrl::Embedded {
                path: PathBuf::from("/var/x/t.redb")
            }
        );
        assert!(StoreUrl::parse("redb://rel/t.redb").is_err());
        let u = StoreUrl::parse("redis://127.0.0.1:7000/2?connect_timeout_ms=150").unwrap();
        let StoreUrl::Redis {
            hosts,
            cluster,
            tls,
            rest,
            connect_timeout,
            ..
        } = &u
        else {
            panic!("{u}")
        };
        assert_eq!(hosts, &["127.0.0.1:7000"]);
        assert!(!cluster && !tls);
        assert_eq!(rest, "/2");
        assert_eq!(*connect_timeout, Some(Duration::from_millis(150)));
        assert_eq!(u.to_string(), "redis://127.0.0.1:7000/2");
        let c = StoreUrl::parse("rediss+cluster://a:1,b,c:3").unwrap();
        let StoreUrl::Redis {
            hosts,
            cluster,
            tls,
            ..
        } = &c
        else {
            panic!()
        };
        assert_eq!(hosts, &["a:1", "b:6379", "c:3"]);
        assert!(*cluster && *tls);
        assert!(StoreUrl::parse("redis://a:1,b:2").is_err());
        assert!(StoreUrl::parse("redis://").is_err());
        assert!(StoreUrl::parse("redis://h?connect_timeout_ms=x").is_err());
    }

    #[test]
    fn unknown_scheme_names_the_accepted_ones() {
        let e = StoreUrl::parse("postgres://x").unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config);
        assert!(e.message.contains("redis+cluster://"), "{e}");
        assert!(StoreUrl::parse("just-a-path").is_err());
    }

    #[test]
    fn passwords_are_hidden_and_round_trip() {
        let u = StoreUrl::parse("redis://alice:p%40ss+w0rd%20x@h:1/0").unwrap();
        let shown = format!("{u} {u:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("p@ss"),
            "{shown}"
        );
        assert!(shown.contains("redis://alice:***@h:1/0"), "{shown}");
        let StoreUrl::Redis { password, .. } = &u else {
            panic!()
        };
        assert_eq!(password.as_deref(), Some("p@ss+w0rd x"));
        let node = u.node_url("h:1").unwrap();
        let info = redis::IntoConnectionInfo::into_connection_info(node.as_str()).unwrap();
        assert_eq!(info.redis_settings().password(), Some("p@ss+w0rd x"));
        assert_eq!(info.redis_settings().username(), Some("alice"));
        let only_pass = StoreUrl::parse("redis://:secret@h").unwrap();
        assert_eq!(only_pass.to_string(), "redis://:***@h:6379");
    }

    #[test]
    fn redacted_urls_hide_passwords_and_secret_parameters() {
        let cases = [
            (
                "redis://alice:hunter2secret@h:1/0",
                "redis://alice:***@h:1/0",
            ),
            ("redis://:hunter2secret@h", "redis://:***@h:6379"),
            (
                "rediss+cluster://u:hunter2secret@a:1,b:2/?protocol=resp3&password=hunter2secret",
                "rediss+cluster://u:***@a:1,b:2/?protocol=resp3&password=***",
            ),
            ("redb:///var/t.redb", "redb:///var/t.redb"),
            ("memory://", "memory://"),
            // not store URLs: the whole user info goes
            (
                "postgres://alice:hunter2secret@db:5432/x",
                "postgres://***@db:5432/x",
            ),
            (
                "https://u:hunter2secret@idp.example/keys?api_key=hunter2secret&v=2#hunter2secret",
                "https://***@idp.example/keys?api_key=***&v=2",
            ),
            // a redis URL that does not parse (two hosts without +cluster)
            ("redis://u:hunter2secret@a:1,b:2/", "redis://***@a:1,b:2/"),
            ("user:hunter2secret@host", "<not a URL; not shown>"),
            ("just-a-path", "just-a-path"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
            let kept = ConfiguredUrl::new(url);
            assert_eq!(kept.expose(), url);
            let printed = format!("{kept} {kept:?}");
            assert!(!printed.contains("hunter2secret"), "{printed}");
        }
    }

    #[test]
    fn layout_is_taken_from_the_query() {
        let u = StoreUrl::parse("redis://:pw@h:1/0?layout=dotnet&protocol=resp3").unwrap();
        let StoreUrl::Redis { layout, rest, .. } = &u else {
            panic!("{u}");
        };
        assert_eq!(*layout, StoreLayout::DotNet);
        assert_eq!(rest, "/0?protocol=resp3", "not passed on to redis-rs");
        assert_eq!(
            u.to_string(),
            "redis://:***@h:1/0?protocol=resp3&layout=dotnet"
        );
        let c = StoreUrl::parse("redis+cluster://a:1,b:2?layout=string").unwrap();
        assert!(matches!(
            c,
            StoreUrl::Redis {
                layout: StoreLayout::String,
                ..
            }
        ));
        assert_eq!(c.to_string(), "redis+cluster://a:1,b:2");
        let d = StoreUrl::parse("redis://h").unwrap();
        assert!(matches!(
            d,
            StoreUrl::Redis {
                layout: StoreLayout::String,
                ..
            }
        ));
        let e = StoreUrl::parse("redis://h?layout=json").unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config);
        assert!(e.message.contains("string or dotnet"), "{e}");
    }

    #[test]
    fn default_path_is_per_application() {
        let p = default_embedded_path();
        let exe = std::env::current_exe().unwrap();
        let stem = exe.file_stem().unwrap().to_string_lossy();
        assert!(p.starts_with(default_embedded_dir()), "{}", p.display());
        assert_eq!(
            p.file_name().unwrap().to_string_lossy(),
            format!("{stem}.redb")
        );
        let named = default_embedded_path_for("orders-api");
        assert!(
            named.ends_with("tokencache/orders-api.redb"),
            "{}",
            named.display()
        );
        let odd = default_embedded_path_for("../a b/c");
        assert!(
            odd.ends_with("tokencache/.._a_b_c.redb"),
            "{}",
            odd.display()
        );
        assert!(default_embedded_path_for("").ends_with("tokencache/tokencache.redb"));
        assert!(default_embedded_path_for("..").ends_with("tokencache/tokencache.redb"));
    }

    #[tokio::test]
    async fn open_existing_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("typo").join("cache.redb");
        let url = format!("redb://{}", path.display());
        let e = open_existing(&url).await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Config);
        assert!(e.message.contains("no store exists"), "{e}");
        assert!(!path.parent().unwrap().exists(), "no folder was created");
        assert!(open_existing("memory://").await.is_err());
        drop(open(&url).await.unwrap());
        assert!(open_existing(&url).await.is_ok());
    }
}
