//! The configuration of `tokencache serve`: one TOML file, every value overridable by
//! the environment, checked completely at start.
//!
//! ```toml
//! listen = "127.0.0.1:8707"          # or a unix socket path ("/run/tc.sock", "unix:rel.sock")
//! store = "redis://127.0.0.1:6379"   # default: the embedded store
//! key_prefix = ""
//!
//! [apis.orders]
//! authority = "https://login.microsoftonline.com/{tenant}/v2.0"
//! client_id = "..."
//! client_secret_env = "ORDERS_CLIENT_SECRET"   # or client_secret_file, client_cert_file,
//!                                              # client_assertion_file, or credential = ...
//! scopes = ["api://orders/.default"]
//! on_behalf_of = false
//! ```
//!
//! The credential of an API is one of: `client_secret_env` / `client_secret_file` (a
//! file re-read when it changes) with `secret_method`; `client_cert_file` (PEM key and
//! certificate, or `client_cert_key_file` beside it; or PKCS#12 `.pfx`/`.p12` with
//! `client_cert_password_env` / `client_cert_password_file`; `send_x5c`, `client_key_id`;
//! re-read when it changes); `client_assertion_file` (a signed assertion read for every
//! request); or `credential = "workload_identity"` (the `AZURE_*` variables: authority
//! and client id may then be left out), `"managed_identity"` (the API's tokens come from
//! Azure managed identity: no authority, no client id, one scope) or
//! `"managed_identity_assertion"` (the app registration's client assertion is the managed
//! identity's token for `api://AzureADTokenExchange`); a user-assigned identity by
//! `managed_identity_client_id`, `managed_identity_object_id` or
//! `managed_identity_resource_id`.
//!
//! Environment: a top-level key `k` is overridden by `TOKENCACHE_K` (upper case:
//! `TOKENCACHE_LISTEN`, `TOKENCACHE_STORE`, `TOKENCACHE_KEY_PREFIX` — or the CLI's
//! `TOKENCACHE_PREFIX` — ...), a key of `[apis.NAME]` by `TOKENCACHE_APIS__NAME__KEY`
//! (`-` in a name becomes `_`), a list by a space- or comma-separated value. The
//! encryption keys come from `TOKENCACHE_KEYS` / `TOKENCACHE_KEYS_FILE`, as for every
//! command. `--listen` beats them all.
//!
//! Every error is one line, `FILE: KEY: problem` (`KEY (from VAR)` when the value came
//! from the environment). Secret values are never part of an error: only names of
//! keys, variables and files. A client secret written into the file itself is refused.
//!
//! Mistakes are caught at start, not at the first request: a value left as a
//! placeholder (`"..."`, `{tenant}`, `<client-id>`, as in an example), an
//! `TOKENCACHE_APIS__NAME__KEY` variable whose NAME is no configured API (or whose KEY
//! is no key of an API), a store URL with a port outside 1–65535. `listen` takes
//! `host:port` with a name (`localhost:8080`), resolved at start.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokencache::acquire::{
    CertificateOptions, CertificatePassword, ClientCertificate, ClientCredential,
    ManagedIdentityId, ManagedIdentitySource, OboForm, SecretFile, WorkloadIdentity,
};
use tokencache::{KeyRing, Secret};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where an API's tokens come from.
#[derive(Debug)]
pub(crate) enum CredentialConfig {
    /// A token endpoint, where the client authenticates with this (secrets redacted in
    /// `Debug`).
    Client(ClientCredential),
    /// Azure managed identity (the API's app tokens come from it).
    ManagedIdentity(ManagedIdentityConfig),
    /// A token endpoint, where the client assertion is the managed identity's token for
    /// `api://AzureADTokenExchange`.
    ManagedIdentityAssertion(ManagedIdentityConfig),
}

/// Which managed identity, where (the cache is made later: the identity is built then).
#[derive(Debug, Clone)]
pub(crate) struct ManagedIdentityConfig {
    /// System- or user-assigned.
    pub(crate) id: ManagedIdentityId,
    /// App Service or IMDS, from the environment.
    pub(crate) source: ManagedIdentitySource,
}

/// One downstream API.
#[derive(Debug)]
pub(crate) struct ApiConfig {
    /// The issuer URL (empty for `credential = "managed_identity"`).
    pub(crate) authority: String,
    /// The client id (empty for `credential = "managed_identity"`).
    pub(crate) client_id: String,
    /// Where the tokens come from.
    pub(crate) credential: CredentialConfig,
    /// The default scopes.
    pub(crate) scopes: Vec<String>,
    /// On behalf of the caller's user (the incoming bearer token) instead of the app.
    pub(crate) on_behalf_of: bool,
    /// The OBO form (Entra's jwt-bearer, or RFC 8693 token exchange).
    pub(crate) obo_form: OboForm,
    // ---- issue 23 (compatible routes, downstream calls): src/downstream.rs ----
    /// Scopes a caller may ask for besides `scopes` (`allowed_scopes`; none by default).
    pub(crate) allowed_scopes: Vec<String>,
    /// An on-behalf-of API may also serve app tokens (`allow_app_token`: Microsoft's
    /// `optionsOverride.RequestAppToken`, the `...Unauthenticated` routes).
    pub(crate) allow_app_token: bool,
    /// Where calls through serve go (`base_url`, `relative_path`, ...), when configured.
    pub(crate) downstream: Option<crate::downstream::DownstreamConfig>,
}

/// OpenID Connect Back-Channel Logout at `/v1/backchannel-logout`.
#[derive(Debug, Clone)]
pub(crate) struct BackchannelConfig {
    /// The provider's issuer.
    pub(crate) issuer: String,
    /// The client id the logout tokens are for.
    pub(crate) client_id: String,
    /// Where the provider's signing keys are.
    pub(crate) jwks_uri: String,
}

/// The whole configuration, checked.
#[derive(Debug)]
pub(crate) struct Config {
    /// The file it came from.
    pub(crate) file: PathBuf,
    /// Where to listen (`--listen` > `TOKENCACHE_LISTEN` > `listen` > 127.0.0.1:8707).
    pub(crate) listen: Listen,
    /// The store URL (`None`: the embedded store). May hold a password: never logged
    /// but redacted.
    pub(crate) store: Option<Secret>,
    /// The L2 key prefix (Redis "instance name").
    pub(crate) key_prefix: String,
    /// Bound of one HTTP request, provider calls included.
    pub(crate) request_timeout: Duration,
    /// Bound of one provider call (each attempt).
    pub(crate) provider_timeout: Duration,
    /// Token requests in flight to providers at once, all APIs together.
    pub(crate) max_provider_requests: usize,
    /// At shutdown, how long the recovery queue may take to drain into L2.
    pub(crate) shutdown_drain: Duration,
    /// The shared key callers send in `X-Tokencache-Key`.
    pub(crate) caller_key: Option<Secret>,
    /// `[backchannel_logout]`, when configured.
    pub(crate) backchannel_logout: Option<BackchannelConfig>,
    /// The downstream APIs, by name.
    pub(crate) apis: BTreeMap<String, ApiConfig>,
    /// The encryption key ring (`TOKENCACHE_KEYS`), when configured.
    pub(crate) keys: Option<KeyRing>,
    /// issue 23: `AzureAd`'s incoming-token settings, when the file is an appsettings.json.
    pub(crate) appsettings_inbound: Option<crate::appsettings::Inbound>,
}

/// A configuration error: one line, naming the file, the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads the environment (a function, so that tests need not change the process's).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Loads and checks `file`, with `listen` (the `--listen` flag) on top.
pub(crate) fn load(file: &Path, listen: Option<&str>, env: Env<'_>) -> Result<Config, ConfigError> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError(format!("{shown}: cannot read the file: {e}")))?;
    let keys =
        KeyRing::from_env().map_err(|e| ConfigError(format!("{shown}: TOKENCACHE_KEYS: {e}")))?;
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    // issue 23: Microsoft's appsettings.json, mapped onto this configuration
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let (mut config, inbound) = if is_json {
        let m = crate::appsettings::map(&text, &names, env)
            .map_err(|e| ConfigError(format!("{shown}: {}", one_line(&e))))?;
        let c = parse(file, &m.toml, listen, env).map_err(|e| ConfigError(m.rename(&e.0)))?;
        (c, Some(m.inbound))
    } else {
        (parse(file, &text, listen, env)?, None)
    };
    check_variables(&shown, &config, &names)?;
    config.keys = keys;
    config.appsettings_inbound = inbound;
    Ok(config)
}

/// The keys of an `[apis.NAME]` table.
const API_KEYS: [&str; 22] = [
    "authority",
    "client_id",
    "client_secret",
    "client_secret_env",
    "client_secret_file",
    "client_cert_file",
    "client_key_id",
    "secret_method",
    "scopes",
    "on_behalf_of",
    "obo_form",
    // issue 23: src/downstream.rs
    "allowed_scopes",
    "allow_app_token",
    "base_url",
    "relative_path",
    "http_method",
    "accept_header",
    "content_type",
    "downstream_timeout_ms",
    "max_request_bytes",
    "max_response_bytes",
    "max_connections",
];

/// Fails on a `TOKENCACHE_APIS__NAME__KEY` variable (of `names`, the environment's)
/// that names no configured API, or no key of one: it would be ignored silently.
pub(crate) fn check_variables(
    shown: &str,
    config: &Config,
    names: &[String],
) -> Result<(), ConfigError> {
    const PREFIX: &str = "TOKENCACHE_APIS__";
    let env_name = |api: &str| api.to_ascii_uppercase().replace('-', "_");
    for var in names.iter().filter(|n| n.starts_with(PREFIX)) {
        let rest = &var[PREFIX.len()..];
        let (api, key) = rest.split_once("__").unwrap_or((rest, ""));
        let known: Vec<&str> = config.apis.keys().map(String::as_str).collect();
        if !known.iter().any(|a| env_name(a) == api) {
            return Err(ConfigError(format!(
                "{shown}: {var}: no API named {:?} in the file (its APIs: {}); the variable would be ignored",
                api.to_ascii_lowercase(),
                known.join(", ")
            )));
        }
        if !API_KEYS.iter().any(|k| k.to_ascii_uppercase() == key) {
            return Err(ConfigError(format!(
                "{shown}: {var}: {:?} is not a key of an API (keys: {}); the variable would be ignored",
                key.to_ascii_lowercase(),
                API_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

/// The placeholder in `value`, if it looks like a template's: `...`, `…`, `{name}` or
/// `<name>` (a name: letters, digits, `_`, `-`, `.`, spaces). Only the placeholder is
/// returned, never the rest of the value.
pub(crate) fn placeholder(value: &str) -> Option<String> {
    for dots in ["...", "\u{2026}"] {
        if value.contains(dots) {
            return Some(dots.to_string());
        }
    }
    for (open, close) in [('{', '}'), ('<', '>')] {
        let mut rest = value;
        while let Some(i) = rest.find(open) {
            let after = &rest[i + open.len_utf8()..];
            let Some(j) = after.find(close) else { break };
            let name = &after[..j];
            let is_name = !name.is_empty()
                && name.len() <= 40
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
            if is_name {
                return Some(format!("{open}{name}{close}"));
            }
            rest = after;
        }
    }
    None
}

/// What is wrong with a store URL, if anything, as the library says it (host, port,
/// scheme, options; the URL is not repeated: it may hold a password).
fn store_problem(url: &str) -> Option<String> {
    tokencache::store::StoreUrl::parse(url)
        .err()
        .map(|e| e.message)
}

/// Parses and checks a configuration text (`file` names it in errors).
pub(crate) fn parse(
    file: &Path,
    text: &str,
    listen_flag: Option<&str>,
    env: Env<'_>,
) -> Result<Config, ConfigError> {
    let shown = file.display().to_string();
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // The message only, with the line: toml's own rendering quotes the source line,
        // which could hold a secret.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = one_line(e.message());
        match line {
            Some(l) => ConfigError(format!("{shown}: line {l}: {msg}")),
            None => ConfigError(format!("{shown}: {msg}")),
        }
    })?;
    let mut top = Reader::new(&shown, &table, "", "TOKENCACHE_".into(), env);
    // read (and type-checked) even when the flag wins
    let from_file = top.string("listen")?;
    let listen = match listen_flag {
        Some(v) => parse_listen(v).map_err(|p| ConfigError(format!("{shown}: --listen: {p}")))?,
        None => from_file
            .map(|(v, at)| parse_listen(&v).map_err(|p| top.error_at(&at, &p)))
            .transpose()?
            .unwrap_or_else(|| Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 8707)))),
    };
    let store = top.string("store")?.map(|(v, at)| {
        if v.trim().is_empty() {
            Err(top.error_at(&at, "is empty (leave it out for the embedded store)"))
        } else if let Some(problem) = store_problem(&v) {
            Err(top.error_at(&at, &problem))
        } else {
            Ok(Secret::new(v))
        }
    });
    let store = store.transpose()?;
    let key_prefix = match top.string("key_prefix")? {
        Some((v, _)) => v,
        // the prefix every other command takes from TOKENCACHE_PREFIX
        None => env("TOKENCACHE_PREFIX").unwrap_or_default(),
    };
    let ms = |r: &mut Reader<'_>, key: &str, default: u64, lo: u64, hi: u64| {
        r.int(key, lo, hi)
            .map(|v| Duration::from_millis(v.unwrap_or(default)))
    };
    let request_timeout = ms(&mut top, "request_timeout_ms", 30_000, 100, 600_000)?;
    let provider_timeout = ms(&mut top, "provider_timeout_ms", 10_000, 100, 300_000)?;
    let shutdown_drain = ms(&mut top, "shutdown_drain_ms", 5_000, 0, 600_000)?;
    let max_provider_requests = top.int("max_provider_requests", 1, 10_000)?.unwrap_or(32) as usize;
    let caller_key = caller_key(&mut top)?;
    let backchannel_logout = match top.table("backchannel_logout")? {
        Some(t) => {
            let mut r = Reader::new(
                &shown,
                t,
                "backchannel_logout.",
                "TOKENCACHE_BACKCHANNEL_LOGOUT__".into(),
                env,
            );
            let issuer = r.required_string("issuer")?;
            let client_id = r.required_string("client_id")?;
            let jwks_uri = r.required_string("jwks_uri")?;
            r.finish()?;
            Some(BackchannelConfig {
                issuer,
                client_id,
                jwks_uri,
            })
        }
        None => None,
    };
    let mut apis = BTreeMap::new();
    if let Some(t) = top.table("apis")? {
        {
            for (name, value) in t {
                let key = format!("apis.{name}");
                if !valid_api_name(name) {
                    return Err(ConfigError(format!(
                        "{shown}: {key}: an API name is 1 to 64 of a-z A-Z 0-9 _ - (it is a URL path segment)"
                    )));
                }
                let Some(api) = value.as_table() else {
                    return Err(ConfigError(format!(
                        "{shown}: {key}: must be a table ([apis.{name}])"
                    )));
                };
                let env_prefix = format!(
                    "TOKENCACHE_APIS__{}__",
                    name.to_ascii_uppercase().replace('-', "_")
                );
                let mut r = Reader::new(&shown, api, &format!("{key}."), env_prefix, env);
                apis.insert(name.clone(), api_config(&mut r)?);
                r.finish()?;
            }
        }
    }
    if apis.is_empty() {
        return Err(ConfigError(format!(
            "{shown}: apis: no API configured (add an [apis.NAME] table)"
        )));
    }
    top.finish()?;
    Ok(Config {
        file: file.to_path_buf(),
        listen,
        store,
        key_prefix,
        request_timeout,
        provider_timeout,
        max_provider_requests,
        shutdown_drain,
        caller_key,
        backchannel_logout,
        apis,
        keys: None,
        appsettings_inbound: None,
    })
}

fn valid_api_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_listen(v: &str) -> Result<Listen, String> {
    let v = v.trim();
    if let Some(path) = v.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("unix: needs a socket path".into());
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if v.starts_with('/') || v.starts_with("./") {
        return Ok(Listen::Unix(PathBuf::from(v)));
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(Listen::Tcp(addr));
    }
    // host:port with a name: resolved now (an IPv4 address first: `localhost` is
    // 127.0.0.1 to most clients).
    let not_an_address = || {
        format!("{v:?} is not an address (IP:PORT or HOST:PORT, e.g. 127.0.0.1:8707) nor a unix socket path")
    };
    let (host, port) = v.rsplit_once(':').ok_or_else(not_an_address)?;
    let port: u16 = port.parse().map_err(|_| not_an_address())?;
    if host.is_empty() {
        return Err(not_an_address());
    }
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("{v:?}: cannot resolve {host:?}: {e}"))?
        .collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .map(Listen::Tcp)
        .ok_or_else(|| format!("{v:?}: {host:?} resolves to no address"))
}

/// `caller_key_env` / `caller_key_file`: the shared key of `X-Tokencache-Key`.
fn caller_key(r: &mut Reader<'_>) -> Result<Option<Secret>, ConfigError> {
    let from_env = r.string("caller_key_env")?;
    let from_file = r.string("caller_key_file")?;
    let (value, at) = match (from_env, from_file) {
        (Some(_), Some((_, at))) => {
            return Err(r.error_at(&at, "give caller_key_env or caller_key_file, not both"))
        }
        (Some((var, at)), None) => (r.secret_from_env(&var, &at)?, at),
        (None, Some((path, at))) => (r.secret_from_file(&path, &at)?, at),
        (None, None) => return Ok(None),
    };
    if value.expose().len() < 16 {
        return Err(r.error_at(&at, "the caller key is too short (at least 16 characters)"));
    }
    Ok(Some(value))
}

fn api_config(r: &mut Reader<'_>) -> Result<ApiConfig, ConfigError> {
    let kind = r.string("credential")?;
    let authority = r.string("authority")?;
    let client_id = r.string("client_id")?;
    if let Some(at) = r.present("client_secret") {
        return Err(r.error_at(
            &at,
            "a secret is not accepted in the file: use client_secret_env or client_secret_file",
        ));
    }
    let secret_env = r.string("client_secret_env")?;
    let secret_file = r.string("client_secret_file")?;
    let cert_file = r.string("client_cert_file")?;
    let assertion_file = r.string("client_assertion_file")?;
    let cert = CertificateKeys::read(r)?;
    let method = r.string("secret_method")?;
    let mi = managed_identity_id(r)?;
    let given = [&secret_env, &secret_file, &cert_file, &assertion_file]
        .iter()
        .filter(|v| v.is_some())
        .count();
    const ONE_OF: &str = "client_secret_env, client_secret_file, client_cert_file, client_assertion_file or credential";
    let non_empty = |r: &Reader<'_>, v: Option<(String, At)>, key: &str| match v {
        Some((v, at)) if v.trim().is_empty() => Err(r.error_at(&at, "is empty")),
        Some((v, _)) => Ok(v),
        None => Err(r.error_at(&r.here(key), "missing")),
    };
    let (authority, client_id, credential) = match kind {
        Some((k, at)) => {
            if given != 0 {
                return Err(r.error_at(&at, &format!("give only one of {ONE_OF}")));
            }
            let source = |r: &Reader<'_>| {
                ManagedIdentitySource::from_lookup(r.env)
                    .map_err(|e| r.error_at(&at, &format!("managed identity: {e}")))
            };
            match k.as_str() {
                "workload_identity" => {
                    let w = WorkloadIdentity::from_lookup(r.env)
                        .map_err(|e| r.error_at(&at, &e.to_string()))?;
                    let authority = authority.map(|(v, _)| v).unwrap_or(w.authority.clone());
                    let client_id = client_id.map(|(v, _)| v).unwrap_or(w.client_id.clone());
                    (authority, client_id, CredentialConfig::Client(w.credential()))
                }
                "managed_identity" => {
                    if let Some((_, at)) = authority.as_ref().or(client_id.as_ref()) {
                        return Err(r.error_at(
                            at,
                            "not used with credential = \"managed_identity\" (the tokens come from the managed identity)",
                        ));
                    }
                    let m = ManagedIdentityConfig {
                        id: mi.unwrap_or_default(),
                        source: source(r)?,
                    };
                    (String::new(), String::new(), CredentialConfig::ManagedIdentity(m))
                }
                "managed_identity_assertion" => {
                    let m = ManagedIdentityConfig {
                        id: mi.unwrap_or_default(),
                        source: source(r)?,
                    };
                    (
                        non_empty(r, authority, "authority")?,
                        non_empty(r, client_id, "client_id")?,
                        CredentialConfig::ManagedIdentityAssertion(m),
                    )
                }
                _ => {
                    return Err(r.error_at(
                        &at,
                        "must be \"workload_identity\", \"managed_identity\" or \"managed_identity_assertion\"",
                    ))
                }
            }
        }
        None => {
            if given != 1 {
                let at = r.here("client_secret_env");
                return Err(r.error_at(
                    &at,
                    &if given == 0 {
                        format!("missing: give one of {ONE_OF}")
                    } else {
                        format!("give only one of {ONE_OF}")
                    },
                ));
            }
            let authority = non_empty(r, authority, "authority")?;
            let client_id = non_empty(r, client_id, "client_id")?;
            let post = match &method {
                None => false,
                Some((m, _)) if m == "basic" => false,
                Some((m, _)) if m == "post" => true,
                Some((_, at)) => return Err(r.error_at(at, "must be \"basic\" or \"post\"")),
            };
            let secret = |s: Secret| {
                if post {
                    ClientCredential::SecretPost(s)
                } else {
                    ClientCredential::SecretBasic(s)
                }
            };
            let credential = match (secret_env, secret_file, cert_file, assertion_file) {
                (Some((var, at)), ..) => secret(r.secret_from_env(&var, &at)?),
                (None, Some((path, at)), ..) => {
                    let f = SecretFile::open(&path).map_err(|e| r.error_at(&at, &e.to_string()))?;
                    let f = Arc::new(f);
                    if post {
                        ClientCredential::SecretFilePost(f)
                    } else {
                        ClientCredential::SecretFileBasic(f)
                    }
                }
                (None, None, Some((path, at)), _) => cert.credential(r, &path, &at)?,
                (None, None, None, Some((path, at))) => {
                    if path.trim().is_empty() {
                        return Err(r.error_at(&at, "is empty (a file path)"));
                    }
                    ClientCredential::AssertionFile(PathBuf::from(path))
                }
                (None, None, None, None) => unreachable!("one is given"),
            };
            (authority, client_id, CredentialConfig::Client(credential))
        }
    };
    let (scopes, at) = r
        .strings("scopes")?
        .ok_or_else(|| r.error_at(&r.here("scopes"), "missing (a list of scopes)"))?;
    if let Err(p) = check_scopes(&scopes) {
        return Err(r.error_at(&at, &p));
    }
    let on_behalf_of = r.bool("on_behalf_of")?.unwrap_or(false);
    if let CredentialConfig::ManagedIdentity(_) = &credential {
        if on_behalf_of {
            return Err(r.error_at(
                &r.here("on_behalf_of"),
                "a managed identity acquires app tokens only",
            ));
        }
        if scopes.len() != 1 {
            return Err(r.error_at(
                &at,
                "a managed identity token is for one resource: give one scope",
            ));
        }
    }
    let obo_form = match r.string("obo_form")? {
        None => OboForm::Entra,
        Some((f, _)) if f == "entra" => OboForm::Entra,
        Some((f, _)) if f == "token_exchange" => OboForm::TokenExchange,
        Some((_, at)) => return Err(r.error_at(&at, "must be \"entra\" or \"token_exchange\"")),
    };
    let (allowed_scopes, allow_app_token) = crate::downstream::read_allow_lists(r, on_behalf_of)?;
    let downstream = crate::downstream::read_config(r)?;
    Ok(ApiConfig {
        authority,
        client_id,
        credential,
        scopes,
        on_behalf_of,
        obo_form,
        allowed_scopes,
        allow_app_token,
        downstream,
    })
}

/// `managed_identity_client_id` / `_object_id` / `_resource_id`: at most one.
fn managed_identity_id(r: &mut Reader<'_>) -> Result<Option<ManagedIdentityId>, ConfigError> {
    let c = r.string("managed_identity_client_id")?;
    let o = r.string("managed_identity_object_id")?;
    let i = r.string("managed_identity_resource_id")?;
    let ids: Vec<(ManagedIdentityId, At)> = [
        c.map(|(v, at)| (ManagedIdentityId::ClientId(v), at)),
        o.map(|(v, at)| (ManagedIdentityId::ObjectId(v), at)),
        i.map(|(v, at)| (ManagedIdentityId::ResourceId(v), at)),
    ]
    .into_iter()
    .flatten()
    .collect();
    match ids.len() {
        0 => Ok(None),
        1 => {
            let (id, at) = ids.into_iter().next().expect("one");
            match &id {
                ManagedIdentityId::ClientId(v)
                | ManagedIdentityId::ObjectId(v)
                | ManagedIdentityId::ResourceId(v)
                    if v.trim().is_empty() =>
                {
                    Err(r.error_at(&at, "is empty"))
                }
                _ => Ok(Some(id)),
            }
        }
        _ => Err(r.error_at(
            &ids[1].1,
            "give one of managed_identity_client_id, managed_identity_object_id, managed_identity_resource_id",
        )),
    }
}

/// The certificate keys of an API besides `client_cert_file`.
struct CertificateKeys {
    key_file: Option<(String, At)>,
    key_id: Option<(String, At)>,
    password_env: Option<(String, At)>,
    password_file: Option<(String, At)>,
    send_x5c: bool,
}

impl CertificateKeys {
    fn read(r: &mut Reader<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            key_file: r.string("client_cert_key_file")?,
            key_id: r.string("client_key_id")?,
            password_env: r.string("client_cert_password_env")?,
            password_file: r.string("client_cert_password_file")?,
            send_x5c: r.bool("send_x5c")?.unwrap_or(false),
        })
    }

    /// The certificate credential of `client_cert_file` = `path` (checked now: an
    /// expired certificate or a key that does not match is a start-up error).
    fn credential(
        self,
        r: &Reader<'_>,
        path: &str,
        at: &At,
    ) -> Result<ClientCredential, ConfigError> {
        let options = CertificateOptions {
            send_x5c: self.send_x5c,
            key_id: self.key_id.map(|(k, _)| k),
            ..CertificateOptions::default()
        };
        let pkcs12 = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("pfx") || e.eq_ignore_ascii_case("p12"));
        let cert = if pkcs12 {
            if let Some((_, kat)) = &self.key_file {
                return Err(r.error_at(
                    kat,
                    "a PKCS#12 file holds its key: leave client_cert_key_file out",
                ));
            }
            let password = match (self.password_env, self.password_file) {
                (Some(_), Some((_, pat))) => {
                    return Err(r.error_at(
                        &pat,
                        "give client_cert_password_env or client_cert_password_file, not both",
                    ))
                }
                (Some((var, pat)), None) => {
                    CertificatePassword::Value(r.secret_from_env(&var, &pat)?)
                }
                (None, Some((f, _))) => CertificatePassword::File(PathBuf::from(f)),
                (None, None) => CertificatePassword::None,
            };
            ClientCertificate::from_pkcs12_file(path, password, options)
        } else {
            if let Some((_, pat)) = self.password_env.as_ref().or(self.password_file.as_ref()) {
                return Err(r.error_at(
                    pat,
                    "a password is for a PKCS#12 (.pfx, .p12) client_cert_file",
                ));
            }
            match self.key_file {
                // the key beside the certificate
                Some((key, _)) => {
                    ClientCertificate::from_pem_files(key, Some(PathBuf::from(path)), options)
                }
                None => ClientCertificate::from_pem_files(path, None, options),
            }
        };
        let cert = cert.map_err(|e| r.error_at(at, &e.to_string()))?;
        Ok(ClientCredential::Certificate(Arc::new(cert)))
    }
}

/// At least one scope, each 1 to 256 visible ASCII characters (no spaces, no quotes).
pub(crate) fn check_scopes(scopes: &[String]) -> Result<(), String> {
    if scopes.is_empty() || scopes.len() > 50 {
        return Err("needs 1 to 50 scopes".into());
    }
    for s in scopes {
        let ok = (1..=256).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !ok {
            return Err(
                "a scope is 1 to 256 visible ASCII characters, without quotes or backslashes"
                    .into(),
            );
        }
    }
    Ok(())
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    crate::one_line(text)
}

/// Where a value came from, for its error.
pub(crate) struct At {
    key: String,
    env: Option<String>,
}

/// Reads the keys of one table, each overridable by its environment variable, and
/// remembers which it read (the others are unknown keys).
pub(crate) struct Reader<'a> {
    file: &'a str,
    table: &'a toml::Table,
    path: String,
    env_prefix: String,
    env: Env<'a>,
    seen: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    fn new(
        file: &'a str,
        table: &'a toml::Table,
        path: &str,
        env_prefix: String,
        env: Env<'a>,
    ) -> Self {
        Self {
            file,
            table,
            path: path.to_string(),
            env_prefix,
            env,
            seen: BTreeSet::new(),
        }
    }

    fn var(&self, key: &str) -> String {
        format!("{}{}", self.env_prefix, key.to_ascii_uppercase())
    }

    pub(crate) fn here(&self, key: &str) -> At {
        At {
            key: format!("{}{key}", self.path),
            env: None,
        }
    }

    pub(crate) fn error_at(&self, at: &At, problem: &str) -> ConfigError {
        let key = match &at.env {
            Some(v) => format!("{} (from {v})", at.key),
            None => at.key.clone(),
        };
        ConfigError(format!("{}: {key}: {}", self.file, one_line(problem)))
    }

    /// Marks `key` read; whether it is in the file (its place, if so).
    fn present(&mut self, key: &str) -> Option<At> {
        self.seen.insert(key.to_string());
        self.table.get(key).map(|_| self.here(key))
    }

    /// The raw value: the environment's (a string) or the file's.
    fn raw(&mut self, key: &str) -> Option<(Raw<'a>, At)> {
        self.seen.insert(key.to_string());
        let var = self.var(key);
        if let Some(v) = (self.env)(&var) {
            let at = At {
                key: format!("{}{key}", self.path),
                env: Some(var),
            };
            return Some((Raw::Env(v), at));
        }
        self.table.get(key).map(|v| (Raw::File(v), self.here(key)))
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<Option<(String, At)>, ConfigError> {
        let found = match self.raw(key) {
            None => return Ok(None),
            Some((Raw::Env(v), at)) => (v, at),
            Some((Raw::File(toml::Value::String(s)), at)) => (s.clone(), at),
            Some((Raw::File(other), at)) => {
                return Err(
                    self.error_at(&at, &format!("must be a string, not {}", other.type_str()))
                )
            }
        };
        // A key prefix may hold a Redis hash tag (`{app}:`): not a placeholder.
        if key != "key_prefix" {
            self.refuse_placeholder(&found.0, &found.1)?;
        }
        Ok(Some(found))
    }

    /// Fails when `value` (read at `at`) is still a template's placeholder.
    fn refuse_placeholder(&self, value: &str, at: &At) -> Result<(), ConfigError> {
        match placeholder(value) {
            Some(p) => Err(self.error_at(
                at,
                &format!("still holds the placeholder {p}: put the real value"),
            )),
            None => Ok(()),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, ConfigError> {
        match self.string(key)? {
            Some((v, at)) if v.trim().is_empty() => Err(self.error_at(&at, "is empty")),
            Some((v, _)) => Ok(v),
            None => Err(self.error_at(&self.here(key), "missing")),
        }
    }

    pub(crate) fn int(&mut self, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, ConfigError> {
        let (v, at) = match self.raw(key) {
            None => return Ok(None),
            Some((Raw::Env(v), at)) => match v.trim().parse::<i64>() {
                Ok(n) => (n, at),
                Err(_) => return Err(self.error_at(&at, "must be a whole number")),
            },
            Some((Raw::File(toml::Value::Integer(n)), at)) => (*n, at),
            Some((Raw::File(other), at)) => {
                return Err(self.error_at(
                    &at,
                    &format!("must be a whole number, not {}", other.type_str()),
                ))
            }
        };
        match u64::try_from(v) {
            Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(self.error_at(&at, &format!("must be from {lo} to {hi}, got {v}"))),
        }
    }

    pub(crate) fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some((Raw::Env(v), at)) => match v.trim() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(self.error_at(&at, "must be true or false")),
            },
            Some((Raw::File(toml::Value::Boolean(b)), _)) => Ok(Some(*b)),
            Some((Raw::File(other), at)) => Err(self.error_at(
                &at,
                &format!("must be true or false, not {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn strings(&mut self, key: &str) -> Result<Option<(Vec<String>, At)>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some((Raw::Env(v), at)) => {
                let out: Vec<String> = v
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                for s in &out {
                    self.refuse_placeholder(s, &at)?;
                }
                Ok(Some((out, at)))
            }
            Some((Raw::File(toml::Value::Array(items)), at)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => return Err(self.error_at(&at, "must be a list of strings")),
                    }
                }
                for s in &out {
                    self.refuse_placeholder(s, &at)?;
                }
                Ok(Some((out, at)))
            }
            Some((Raw::File(other), at)) => Err(self.error_at(
                &at,
                &format!("must be a list of strings, not {}", other.type_str()),
            )),
        }
    }

    pub(crate) fn table(&mut self, key: &str) -> Result<Option<&'a toml::Table>, ConfigError> {
        self.seen.insert(key.to_string());
        match self.table.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(self.error_at(
                &self.here(key),
                &format!("must be a table, not {}", other.type_str()),
            )),
        }
    }

    /// The secret in environment variable `var` (named by the key at `at`).
    fn secret_from_env(&self, var: &str, at: &At) -> Result<Secret, ConfigError> {
        if var.trim().is_empty() {
            return Err(self.error_at(at, "is empty (the name of an environment variable)"));
        }
        match (self.env)(var) {
            Some(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim().to_string())),
            Some(_) => Err(self.error_at(at, &format!("the environment variable {var} is empty"))),
            None => Err(self.error_at(at, &format!("the environment variable {var} is not set"))),
        }
    }

    /// The secret in file `path` (trimmed).
    fn secret_from_file(&self, path: &str, at: &At) -> Result<Secret, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.error_at(at, &format!("cannot read {path}: {e}")))?;
        let v = text.trim();
        if v.is_empty() {
            return Err(self.error_at(at, &format!("{path} is empty")));
        }
        Ok(Secret::new(v.to_string()))
    }

    /// Fails on the first key of the table that was not read.
    fn finish(self) -> Result<(), ConfigError> {
        match self.table.keys().find(|k| !self.seen.contains(k.as_str())) {
            Some(k) => Err(self.error_at(&self.here(k), "unknown key")),
            None => Ok(()),
        }
    }
}

/// A value from the environment (always a string) or from the file.
enum Raw<'a> {
    Env(String),
    File(&'a toml::Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:9000"
store = "redis://:pw@127.0.0.1:6390"
key_prefix = "p:"

[apis.orders]
authority = "https://login.microsoftonline.com/t/v2.0"
client_id = "c1"
client_secret_env = "ORDERS_SECRET"
scopes = ["api://orders/.default"]

[apis.graph-obo]
authority = "https://op.example/t"
client_id = "c2"
client_secret_env = "ORDERS_SECRET"
scopes = ["a", "b"]
on_behalf_of = true
obo_form = "token_exchange"
"#;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn parse_with(text: &str, env: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(env.to_vec().into_boxed_slice());
        let env = env_of(pairs);
        parse(Path::new("tc.toml"), text, None, &env)
    }

    #[test]
    fn the_documented_shape_parses() {
        let c = parse_with(GOOD, &[("ORDERS_SECRET", "s3cret-value")]).unwrap();
        assert_eq!(c.listen, Listen::Tcp("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(c.key_prefix, "p:");
        assert_eq!(c.apis.len(), 2);
        let o = &c.apis["orders"];
        assert!(!o.on_behalf_of);
        assert_eq!(o.scopes, ["api://orders/.default"]);
        let g = &c.apis["graph-obo"];
        assert!(g.on_behalf_of);
        assert_eq!(g.obo_form, OboForm::TokenExchange);
        assert!(!format!("{c:?}").contains("s3cret-value"));
        assert!(!format!("{c:?}").contains(":pw@"));
    }

    #[test]
    fn the_environment_overrides_every_level() {
        let c = parse_with(
            GOOD,
            &[
                ("ORDERS_SECRET", "x"),
                ("TOKENCACHE_LISTEN", "/tmp/tc.sock"),
                ("TOKENCACHE_STORE", "memory://"),
                ("TOKENCACHE_APIS__GRAPH_OBO__SCOPES", "x y,z"),
                ("TOKENCACHE_APIS__ORDERS__ON_BEHALF_OF", "true"),
                ("TOKENCACHE_MAX_PROVIDER_REQUESTS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, Listen::Unix("/tmp/tc.sock".into()));
        assert_eq!(c.store.unwrap().expose(), "memory://");
        assert_eq!(c.apis["graph-obo"].scopes, ["x", "y", "z"]);
        assert!(c.apis["orders"].on_behalf_of);
        assert_eq!(c.max_provider_requests, 3);
        let flag = parse(
            Path::new("f"),
            GOOD,
            Some("127.0.0.1:1"),
            &env_of(&[("ORDERS_SECRET", "x"), ("TOKENCACHE_LISTEN", "bad")]),
        )
        .unwrap();
        assert_eq!(flag.listen, Listen::Tcp("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn a_key_prefix_may_hold_a_hash_tag_and_listen_takes_a_name() {
        let text = "key_prefix = '{app}:'\nlisten = 'localhost:8080'\n[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n";
        let c = parse_with(text, &[("E", "v")]).unwrap();
        assert_eq!(c.key_prefix, "{app}:");
        match c.listen {
            Listen::Tcp(a) => {
                assert!(a.ip().is_loopback(), "{a}");
                assert_eq!(a.port(), 8080);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn api_variables_must_name_a_configured_api_and_key() {
        let c = parse_with(GOOD, &[("ORDERS_SECRET", "x")]).unwrap();
        let check = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            check_variables("tc.toml", &c, &names)
        };
        assert!(check(&[
            "TOKENCACHE_APIS__ORDERS__SCOPES",
            "TOKENCACHE_APIS__GRAPH_OBO__ON_BEHALF_OF",
            "TOKENCACHE_LOG",
            "PATH"
        ])
        .is_ok());
        let e = check(&["TOKENCACHE_APIS__NOPE__SCOPES"])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "tc.toml: TOKENCACHE_APIS__NOPE__SCOPES: no API named \"nope\" in the file (its APIs: graph-obo, orders); the variable would be ignored");
        let e = check(&["TOKENCACHE_APIS__ORDERS__SCOPE"])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "tc.toml: TOKENCACHE_APIS__ORDERS__SCOPE: \"scope\" is not a key of an API"
            ),
            "{e}"
        );
    }

    #[test]
    fn placeholders_are_found_and_named_alone() {
        assert_eq!(
            placeholder("https://login.microsoftonline.com/{tenant}/v2.0").as_deref(),
            Some("{tenant}")
        );
        assert_eq!(placeholder("...").as_deref(), Some("..."));
        assert_eq!(
            placeholder("<your client id>").as_deref(),
            Some("<your client id>")
        );
        for real in [
            "https://login.microsoftonline.com/72f988bf/v2.0",
            "api://orders/.default",
            "6e2ab7a5-4c3b",
            "a{b",
            "x>y<z",
            "{\"json\":1}",
        ] {
            assert_eq!(placeholder(real), None, "{real}");
        }
    }

    type Pairs = &'static [(&'static str, &'static str)];

    #[test]
    fn errors_are_one_line_with_file_and_key_and_no_secret() {
        let cases: &[(&str, Pairs, &str)] = &[
            ("listen = 5\n[apis.a]\n", &[], "tc.toml: listen: must be a string, not integer"),
            (GOOD, &[], "tc.toml: apis.graph-obo.client_secret_env: the environment variable ORDERS_SECRET is not set"),
            (GOOD, &[("ORDERS_SECRET", "x"), ("TOKENCACHE_LISTEN", "nowhere")], "tc.toml: listen (from TOKENCACHE_LISTEN): \"nowhere\" is not an address"),
            ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret='hunter2-secret'\nscopes=['s']\n", &[], "tc.toml: apis.a.client_secret: a secret is not accepted in the file"),
            ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\nscope='x'\n", &[("E", "v")], "tc.toml: apis.a.scope: unknown key"),
            ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=[]\n", &[("E", "v")], "tc.toml: apis.a.scopes: needs 1 to 50 scopes"),
            ("[apis.a]\nauthority='https://x/t'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v")], "tc.toml: apis.a.client_id: missing"),
            ("[apis.'a b']\n", &[], "tc.toml: apis.a b: an API name is"),
            ("", &[], "tc.toml: apis: no API configured"),
            ("x = \"hunter2-secret\n", &[], "tc.toml: line 1:"),
            ("request_timeout_ms = 5\n[apis.a]\n", &[], "tc.toml: request_timeout_ms: must be from 100 to 600000, got 5"),
            ("caller_key_env = 'K'\n[apis.a]\n", &[("K", "short")], "tc.toml: caller_key_env: the caller key is too short"),
            // A template's placeholders fail at start, in the file or the environment.
            ("[apis.a]\nauthority='https://login.microsoftonline.com/{tenant}/v2.0'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v")], "tc.toml: apis.a.authority: still holds the placeholder {tenant}: put the real value"),
            ("[apis.a]\nauthority='https://x/t'\nclient_id='...'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v")], "tc.toml: apis.a.client_id: still holds the placeholder ..."),
            ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['api://<app-id>/.default']\n", &[("E", "v")], "tc.toml: apis.a.scopes: still holds the placeholder <app-id>"),
            ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v"), ("TOKENCACHE_APIS__A__CLIENT_ID", "\u{2026}")], "tc.toml: apis.a.client_id (from TOKENCACHE_APIS__A__CLIENT_ID): still holds the placeholder \u{2026}"),
            // A port redis-rs would only call "did not parse".
            ("store = 'redis://:hunter2@127.0.0.1:99999'\n[apis.a]\n", &[], "tc.toml: store: the port \"99999\" of host 127.0.0.1 in the Redis URL is not a number from 1 to 65535"),
            ("listen = 'no-such-host.invalid:80'\n[apis.a]\n", &[], "tc.toml: listen: \"no-such-host.invalid:80\": cannot resolve"),
        ];
        for (text, env, want) in cases {
            let e = parse_with(text, env).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
            assert!(!e.contains("hunter2"), "{e:?}");
        }
    }

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tokencache/tests/fixtures/acquire/"
    );

    fn api(body: &str) -> String {
        format!("[apis.a]\nscopes = ['s']\n{body}\n")
    }

    #[test]
    fn deployment_credentials_parse_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret-from-file\n").unwrap();
        let secret_path = Box::leak(secret.display().to_string().into_boxed_str());
        let cred = |text: &str, env: &[(&'static str, &'static str)]| {
            let c = parse_with(text, env).unwrap_or_else(|e| panic!("{text}: {e}"));
            let a = c.apis.into_values().next().unwrap();
            (a.authority, a.client_id, a.credential)
        };
        let base = "authority = 'https://op.example/t'\nclient_id = 'c'\n";
        let (_, _, c) = cred(
            &api(&format!("{base}client_assertion_file = '/var/run/token'")),
            &[],
        );
        assert!(
            matches!(c, CredentialConfig::Client(ClientCredential::AssertionFile(p)) if p == Path::new("/var/run/token"))
        );
        let (_, _, c) = cred(
            &api(&format!(
                "{base}client_secret_file = '{secret_path}'\nsecret_method = 'post'"
            )),
            &[],
        );
        assert!(matches!(
            c,
            CredentialConfig::Client(ClientCredential::SecretFilePost(_))
        ));
        assert!(!format!("{c:?}").contains("s3cret-from-file"));
        // certificates: PEM pair, key beside the certificate, PKCS#12 with its password
        let (_, _, c) = cred(
            &api(&format!("{base}client_cert_file = '{FIXTURES}client-chain.pem'\nclient_cert_key_file = '{FIXTURES}client-key.pem'\nsend_x5c = true")),
            &[],
        );
        assert!(matches!(
            c,
            CredentialConfig::Client(ClientCredential::Certificate(_))
        ));
        let (_, _, c) = cred(
            &api(&format!("{base}client_cert_file = '{FIXTURES}client.p12'\nclient_cert_password_env = 'P12_PW'")),
            &[("P12_PW", "p12-test-password")],
        );
        assert!(matches!(
            c,
            CredentialConfig::Client(ClientCredential::Certificate(_))
        ));
        assert!(!format!("{c:?}").contains("p12-test-password"));
        // workload identity: authority and client id from the AZURE_* variables
        let (authority, client_id, c) = cred(
            &api("credential = 'workload_identity'"),
            &[
                ("AZURE_CLIENT_ID", "wi-client"),
                ("AZURE_TENANT_ID", "t1"),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    "/var/run/secrets/azure/tokens/azure-identity-token",
                ),
            ],
        );
        assert_eq!(
            (authority.as_str(), client_id.as_str()),
            ("https://login.microsoftonline.com/t1/v2.0", "wi-client")
        );
        assert!(matches!(
            c,
            CredentialConfig::Client(ClientCredential::AssertionFile(_))
        ));
        // managed identity, as the source and as the assertion
        let app_service = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
            ("IDENTITY_HEADER", "hdr-s3cret"),
        ];
        let (_, _, c) = cred(
            &api("credential = 'managed_identity'\nmanaged_identity_client_id = 'uami'"),
            &app_service,
        );
        match &c {
            CredentialConfig::ManagedIdentity(m) => {
                assert_eq!(m.id, ManagedIdentityId::ClientId("uami".into()));
                assert!(matches!(m.source, ManagedIdentitySource::AppService { .. }));
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("hdr-s3cret"));
        let (_, _, c) = cred(
            &api(&format!("{base}credential = 'managed_identity_assertion'")),
            &[],
        );
        assert!(matches!(
            c,
            CredentialConfig::ManagedIdentityAssertion(ManagedIdentityConfig {
                source: ManagedIdentitySource::Imds { .. },
                ..
            })
        ));
    }

    #[test]
    fn credential_errors_are_one_line_naming_the_key_and_file() {
        let base = "authority = 'https://op.example/t'\nclient_id = 'c'\n";
        let cases: Vec<(String, Pairs, String)> = vec![
            (api(&format!("{base}client_cert_file = '{FIXTURES}expired-cert.pem'\nclient_cert_key_file = '{FIXTURES}client-key.pem'")), &[], "tc.toml: apis.a.client_cert_file: client certificate ".into()),
            (api(&format!("{base}client_cert_file = '{FIXTURES}client.p12'\nclient_cert_password_env = 'P'")), &[("P", "hunter2-wrong")], "tc.toml: apis.a.client_cert_file: client certificate ".into()),
            (api(&format!("{base}client_cert_file = '{FIXTURES}client-cert.pem'\nclient_cert_key_file = '{FIXTURES}other-key.pem'")), &[], "tc.toml: apis.a.client_cert_file: ".into()),
            (api(&format!("{base}client_secret_file = '/nonexistent/secret'")), &[], "tc.toml: apis.a.client_secret_file: client secret file /nonexistent/secret: cannot be read".into()),
            (api(&format!("{base}client_secret_env = 'E'\nclient_assertion_file = '/f'")), &[("E", "v")], "tc.toml: apis.a.client_secret_env: give only one of".into()),
            (api(&format!("{base}credential = 'magic'")), &[], "tc.toml: apis.a.credential: must be".into()),
            (api("credential = 'workload_identity'"), &[("AZURE_CLIENT_ID", "c")], "tc.toml: apis.a.credential: invalid configuration or input: workload identity: AZURE_TENANT_ID is not set".into()),
            (api(&format!("{base}credential = 'managed_identity'")), &[], "tc.toml: apis.a.authority: not used with credential = \"managed_identity\"".into()),
            (api("credential = 'managed_identity'\non_behalf_of = true"), &[], "tc.toml: apis.a.on_behalf_of: a managed identity acquires app tokens only".into()),
            ("[apis.a]\nscopes = ['s', 't']\ncredential = 'managed_identity'\n".into(), &[], "tc.toml: apis.a.scopes: a managed identity token is for one resource".into()),
            (api("credential = 'managed_identity'\nmanaged_identity_client_id = 'x'\nmanaged_identity_object_id = 'y'"), &[], "tc.toml: apis.a.managed_identity_object_id: give one of".into()),
            (api("credential = 'managed_identity'"), &[("IDENTITY_ENDPOINT", "http://a")], "tc.toml: apis.a.credential: managed identity: invalid configuration or input: IDENTITY_ENDPOINT is set without IDENTITY_HEADER".into()),
            (api(&format!("{base}client_cert_file = '{FIXTURES}client-key.pem'\nclient_cert_password_env = 'P'")), &[("P", "x")], "tc.toml: apis.a.client_cert_password_env: a password is for a PKCS#12".into()),
        ];
        for (text, env, want) in cases {
            let e = parse_with(&text, env).unwrap_err().to_string();
            assert!(e.starts_with(&want), "{e:?} should start with {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
            assert!(!e.contains("hunter2"), "{e:?}");
        }
    }
}
