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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokencache::{KeyRing, Secret};

mod apis;
mod env;
mod inbound;
#[cfg(test)]
mod tests;

pub(crate) use apis::{
    check_scopes, check_variables, ApiConfig, CredentialConfig, ManagedIdentityConfig,
};
use env::one_line;
#[cfg(test)]
use env::placeholder;
pub(crate) use env::Env;
pub(crate) use env::{At, Reader};
#[cfg(test)]
pub(crate) use inbound::DEFAULT_ALGORITHMS;
pub(crate) use inbound::{InboundConfig, Security};

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
    /// `AzureAd`'s incoming-token settings, when the file is an appsettings.json.
    pub(crate) appsettings_inbound: Option<crate::appsettings::Inbound>,
    /// `[inbound]`, when configured.
    pub(crate) inbound: Option<InboundConfig>,
    /// Who may call, from where; connection bounds.
    pub(crate) security: Security,
}

/// A configuration error: one line, naming the file, the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

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
    // Microsoft's appsettings.json, mapped onto this configuration (src/appsettings.rs)
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
    let caller_key = inbound::key_pair(
        &mut top,
        "caller_key_env",
        "caller_key_file",
        "the caller key",
    )?;
    let security = inbound::security(&mut top)?;
    let inbound = match top.table("inbound")? {
        Some(t) => {
            let mut r = Reader::new(&shown, t, "inbound.", "TOKENCACHE_INBOUND__".into(), env);
            let c = inbound::inbound(&mut r)?;
            r.finish()?;
            Some(c)
        }
        None => None,
    };
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
                apis.insert(name.clone(), apis::api_config(&mut r)?);
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
    check_security(&shown, &caller_key, &security, inbound.as_ref(), &apis)?;
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
        inbound,
        security,
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

/// The rules that tie keys together: a service that acts on behalf of its callers'
/// users validates their tokens; remote callers are authenticated; the admin key is not
/// the caller key.
fn check_security(
    shown: &str,
    caller_key: &Option<Secret>,
    security: &Security,
    inbound: Option<&InboundConfig>,
    apis: &BTreeMap<String, ApiConfig>,
) -> Result<(), ConfigError> {
    if inbound.is_none() {
        if let Some((name, _)) = apis.iter().find(|(_, a)| a.on_behalf_of) {
            return Err(ConfigError(format!(
                "{shown}: apis.{name}.on_behalf_of: the incoming token must be validated before it is sent to the provider: add [inbound] with the issuer and audiences of the tokens your callers forward (or, not recommended, [inbound] validate = false)"
            )));
        }
    }
    let validating = inbound.is_some_and(|i| i.validate);
    if security.allow_remote_callers && caller_key.is_none() && !validating {
        return Err(ConfigError(format!(
            "{shown}: allow_remote_callers: remote callers must be authenticated: set caller_key_env (or caller_key_file), or [inbound] to validate their tokens"
        )));
    }
    if let (Some(a), Some(c)) = (&security.admin_key, caller_key) {
        if a.expose() == c.expose() {
            return Err(ConfigError(format!(
                "{shown}: admin_key_env: the admin key must differ from the caller key (every caller knows that one)"
            )));
        }
    }
    Ok(())
}
