//! Who may call the service: `[inbound]` (the tokens callers forward, validated against
//! their issuer's keys) and the top-level keys of the security model
//! (`allow_remote_callers`, `allowed_hosts`, `allowed_origins`, the admin key, the
//! connection bounds, `socket_mode`). docs/design.md §14 has the table of what is refused.
//!
//! ```toml
//! [inbound]
//! issuer = "https://login.microsoftonline.com/<tenant-id>/v2.0"  # discovery → jwks_uri
//! audiences = ["api://my-api"]
//! # issuers = [...]            several issuers (e.g. the tenants a multi-tenant API accepts)
//! # jwks_uri = "..."           instead of discovery (every issuer's keys are there)
//! # algorithms = ["RS256", "PS256", "ES256"]   (never none or HS*)
//! # required_scopes = [...]    the token has one of these in `scp` ...
//! # required_roles = [...]     ... or one of these in `roles`
//! # clock_skew_s = 60
//! # validate = false           forward unvalidated tokens (a warning at every start)
//! ```

use std::time::Duration;

use jsonwebtoken::Algorithm;
use tokencache::Secret;

use super::env::{At, Reader};
use super::ConfigError;

/// The algorithms accepted unless `algorithms` says otherwise.
pub(crate) const DEFAULT_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// `[inbound]`: how the tokens callers forward are validated.
#[derive(Debug, Clone)]
pub(crate) struct InboundConfig {
    /// `false`: tokens are forwarded unvalidated (`validate = false`; warned at start).
    pub(crate) validate: bool,
    /// The accepted issuers (`iss`), each exactly as its discovery document says.
    pub(crate) issuers: Vec<String>,
    /// The key set of every issuer, instead of discovery.
    pub(crate) jwks_uri: Option<String>,
    /// The accepted audiences (`aud`).
    pub(crate) audiences: Vec<String>,
    /// The accepted signature algorithms.
    pub(crate) algorithms: Vec<Algorithm>,
    /// One of these in `scp` (or one of the roles) is required, when either is given.
    pub(crate) required_scopes: Vec<String>,
    /// One of these in `roles` (or one of the scopes) is required, when either is given.
    pub(crate) required_roles: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub(crate) clock_skew: Duration,
}

/// Reads `[inbound]` (its reader `r`).
pub(crate) fn inbound(r: &mut Reader<'_>) -> Result<InboundConfig, ConfigError> {
    let validate = r.bool("validate")?.unwrap_or(true);
    let issuer = r.string("issuer")?;
    let issuers = r.strings("issuers")?;
    let jwks_uri = r.string("jwks_uri")?;
    let audiences = r.strings("audiences")?;
    let algorithms = r.strings("algorithms")?;
    let required_scopes = r.strings("required_scopes")?;
    let required_roles = r.strings("required_roles")?;
    let skew = r.int("clock_skew_s", 0, 600)?.unwrap_or(60);
    if !validate {
        // Nothing else is used; the keys are still read (and type-checked) above.
        return Ok(InboundConfig {
            validate,
            issuers: Vec::new(),
            jwks_uri: None,
            audiences: Vec::new(),
            algorithms: Vec::new(),
            required_scopes: Vec::new(),
            required_roles: Vec::new(),
            clock_skew: Duration::from_secs(skew),
        });
    }
    let mut all = Vec::new();
    match (issuer, issuers) {
        (Some(_), Some((_, at))) => {
            return Err(r.error_at(&at, "give issuer or issuers, not both"));
        }
        (Some((v, at)), None) => all.push((v, at)),
        (None, Some((list, at))) => {
            if list.is_empty() || list.len() > 100 {
                return Err(r.error_at(&at, "needs 1 to 100 issuers"));
            }
            for v in list {
                all.push((v, r.here("issuers")));
            }
            let _ = at;
        }
        (None, None) => {
            return Err(r.error_at(
                &r.here("issuer"),
                "missing: the issuer of the tokens callers forward (its discovery document names its keys)",
            ))
        }
    }
    for (v, at) in &all {
        check_url(r, v, at, "an issuer")?;
    }
    let issuers: Vec<String> = all.into_iter().map(|(v, _)| v).collect();
    if let Some((u, at)) = &jwks_uri {
        check_url(r, u, at, "a jwks_uri")?;
    }
    let audiences = match audiences {
        Some((a, at)) if a.is_empty() || a.iter().any(|x| x.trim().is_empty()) => {
            return Err(r.error_at(&at, "needs at least one non-empty audience"))
        }
        Some((a, _)) => a,
        None => {
            return Err(r.error_at(
                &r.here("audiences"),
                "missing: the `aud` values of the tokens meant for this service (e.g. [\"api://my-api\"])",
            ))
        }
    };
    let algorithms = match algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some((names, at)) => algorithms_of(r, &names, &at)?,
    };
    Ok(InboundConfig {
        validate,
        issuers,
        jwks_uri: jwks_uri.map(|(v, _)| v),
        audiences,
        algorithms,
        required_scopes: required_scopes.map(|(v, _)| v).unwrap_or_default(),
        required_roles: required_roles.map(|(v, _)| v).unwrap_or_default(),
        clock_skew: Duration::from_secs(skew),
    })
}

/// An `https` URL (or `http` on a loopback host), without credentials, query or fragment.
fn check_url(r: &Reader<'_>, v: &str, at: &At, what: &str) -> Result<(), ConfigError> {
    tokencache::acquire::Authority::parse(v)
        .map(|_| ())
        .map_err(|_| {
            r.error_at(
                at,
                &format!("{what} is an https URL (http on a loopback host only), without query or credentials"),
            )
        })
}

/// The algorithms named, each one tokencache verifies; `none` and HMAC are refused.
fn algorithms_of(r: &Reader<'_>, names: &[String], at: &At) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(r.error_at(at, "needs at least one algorithm"));
    }
    let mut out = Vec::new();
    for n in names {
        let alg = n
            .parse::<Algorithm>()
            .ok()
            .filter(|a| tokencache::signout::SUPPORTED_ALGORITHMS.contains(a));
        match alg {
            Some(a) => out.push(a),
            None => {
                return Err(r.error_at(
                    at,
                    &format!("{n:?} is not accepted: one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 (never none or HS*: a shared secret is no proof of the issuer)"),
                ))
            }
        }
    }
    Ok(out)
}

/// The top-level keys of the security model.
#[derive(Debug)]
pub(crate) struct Security {
    /// Serve callers that are not on loopback or the unix socket.
    pub(crate) allow_remote_callers: bool,
    /// `Host` values accepted besides loopback names and addresses (lower case; with
    /// or without a port).
    pub(crate) allowed_hosts: Vec<String>,
    /// `Origin` values accepted (a request with another `Origin` is refused).
    pub(crate) allowed_origins: Vec<String>,
    /// The key of `X-Tokencache-Admin-Key`: signs out any user.
    pub(crate) admin_key: Option<Secret>,
    /// Bound of reading a request's headers (also of an idle kept-alive connection
    /// waiting for its next request).
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once (more wait to be accepted).
    pub(crate) max_connections: usize,
    /// The unix socket's permissions (default 0600).
    pub(crate) socket_mode: u32,
}

/// Reads the security keys of the top-level table.
pub(crate) fn security(r: &mut Reader<'_>) -> Result<Security, ConfigError> {
    let allow_remote_callers = r.bool("allow_remote_callers")?.unwrap_or(false);
    let lower = |v: Option<(Vec<String>, At)>| {
        v.map(|(l, _)| l.into_iter().map(|s| s.to_ascii_lowercase()).collect())
            .unwrap_or_default()
    };
    let allowed_hosts = lower(r.strings("allowed_hosts")?);
    let allowed_origins = lower(r.strings("allowed_origins")?);
    let admin_key = key_pair(r, "admin_key_env", "admin_key_file", "the admin key")?;
    let header_read_timeout = Duration::from_millis(
        r.int("header_read_timeout_ms", 100, 600_000)?
            .unwrap_or(10_000),
    );
    let max_connections = r.int("max_connections", 1, 1_000_000)?.unwrap_or(1024) as usize;
    let socket_mode = match r.string("socket_mode")? {
        None => 0o600,
        Some((v, at)) => match u32::from_str_radix(v.trim().trim_start_matches("0o"), 8) {
            Ok(m) if m <= 0o777 && m & 0o600 == 0o600 => m,
            _ => {
                return Err(r.error_at(
                    &at,
                    "an octal mode such as \"0660\" (the owner must keep read and write)",
                ))
            }
        },
    };
    Ok(Security {
        allow_remote_callers,
        allowed_hosts,
        allowed_origins,
        admin_key,
        header_read_timeout,
        max_connections,
        socket_mode,
    })
}

/// A key from `{env_key}` (an environment variable's name) or `{file_key}` (a file's
/// path), at least 16 characters.
pub(crate) fn key_pair(
    r: &mut Reader<'_>,
    env_key: &str,
    file_key: &str,
    what: &str,
) -> Result<Option<Secret>, ConfigError> {
    let from_env = r.string(env_key)?;
    let from_file = r.string(file_key)?;
    let (value, at) = match (from_env, from_file) {
        (Some(_), Some((_, at))) => {
            return Err(r.error_at(&at, &format!("give {env_key} or {file_key}, not both")))
        }
        (Some((var, at)), None) => (r.secret_from_env(&var, &at)?, at),
        (None, Some((path, at))) => (r.secret_from_file(&path, &at)?, at),
        (None, None) => return Ok(None),
    };
    if value.expose().len() < 16 {
        return Err(r.error_at(
            &at,
            &format!("{what} is too short (at least 16 characters)"),
        ));
    }
    Ok(Some(value))
}
