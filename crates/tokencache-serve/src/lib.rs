//! `tokencache serve`: the token service for every language. Authorization headers over
//! HTTP, from the two-level cache, acquired from the provider when missing; several
//! replicas share one Redis (docs/design.md §14).
//!
//! * `config`: the TOML file and its environment overrides, checked at start;
//! * `routes`: the HTTP API (`docs/openapi.json`); `guard`: who may call each route;
//! * `account`: the caller's user (its validated token), `/v1/validate`, sign-out;
//! * `inbound`: validation of the tokens callers forward (`[inbound]`);
//! * `server`: the connection loop (timeouts, `max_connections`, shutdown);
//! * `metrics`: `/metrics` in the Prometheus text format;
//! * `shutdown`: SIGTERM / Ctrl-C, in-flight requests, the recovery queue;
//! * [`logs`]: the log lines on stderr (shared with the `tokencache` binary).
//! * `downstream`, `passthrough`: calls to an API's `base_url` with its token
//!   (`/v1/downstream`, and Microsoft's `/DownstreamApi…`);
//! * `compat`: the routes of Microsoft's token sidecar; `appsettings`: its
//!   appsettings.json as configuration; `caller`: the caller's incoming token, one seam.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use tokencache::acquire::{Acquirer, HttpOptions};
use tokencache::signout::axum::SignOutState;
use tokencache::signout::{Jwks, LogoutTokenValidator};
use tokencache::TokenCache;
use tokio::sync::Semaphore;

mod account;
mod appsettings;
mod caller;
mod compat;
mod config;
mod downstream;
mod guard;
mod inbound;
pub mod logs;
mod metrics;
mod passthrough;
mod routes;
mod server;
mod shutdown;

use config::{Config, Listen};
use routes::{Access, Api, AppState, Shared};

/// The log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (`tracing-subscriber`'s JSON format).
    Json,
}

/// Arguments of `serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The configuration file: TOML (see the README's "tokencache serve" section), or
    /// Microsoft's token sidecar appsettings.json (detected by the `.json` extension).
    #[arg(long)]
    config: PathBuf,
    /// Listen here instead of the file's `listen` / TOKENCACHE_LISTEN: IP:PORT (port 0
    /// picks a free one; the address is printed on stdout) or a unix socket path.
    #[arg(long)]
    listen: Option<String>,
    /// The format of the logs on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The `tracing` filter serve's logs start from when `TOKENCACHE_LOG` is not set: warnings,
/// and the service's own start and stop lines; not redis-rs's own per-connection
/// warnings (the store logs each outage once, with what it means).
pub const DEFAULT_LOG_FILTER: &str = "warn,tokencache_serve=info,redis=off";

/// Loads the configuration (a bad one: one line, exit 2) and serves until a signal.
pub fn run(args: ServeArgs) -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    let config = match config::load(&args.config, args.listen.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Prints a one-line error (a multi-line cause joined) and returns exit code 2.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    logs::error_line(&format!("error: {}", one_line(&message.to_string())));
    ExitCode::from(2)
}

/// `text` with its lines joined by "; " (blank lines dropped).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Builds everything the configuration names, then serves until a signal.
async fn serve(config: Config) -> Result<(), String> {
    let file = config.file.display().to_string();
    if let Some(i) = &config.appsettings_inbound {
        // appsettings.json: AzureAd's settings are serve's [inbound] (src/appsettings.rs)
        tracing::info!(
            issuer = %i.issuer,
            audiences = ?i.audiences,
            scopes = ?i.scopes,
            "incoming tokens are validated as AzureAd says (issuer, audiences, scopes)"
        );
    }
    let mut builder = TokenCache::builder().key_prefix(&config.key_prefix);
    match &config.store {
        Some(url) => builder = builder.store_url(url.expose()),
        None => {
            // The embedded store holds tokens: never in a folder other users share (the
            // library falls back to the temporary folder when the user has no cache folder).
            let dir = tokencache::store::default_embedded_dir();
            if dir == std::env::temp_dir().join("tokencache") {
                return Err(format!(
                    "{file}: store: no private cache folder for the embedded store (is HOME set?): set store = \"redb:///a/private/path.redb\" or a Redis URL"
                ));
            }
        }
    }
    if let Some(ring) = config.keys.clone() {
        builder = builder.keys(ring);
    }
    let cache = builder
        .build()
        .await
        .map_err(|e| format!("{file}: store: {e}"))?;
    let http = HttpOptions {
        timeout: config.provider_timeout,
        connect_timeout: config
            .provider_timeout
            .min(HttpOptions::default().connect_timeout),
        ..HttpOptions::default()
    };
    let mut apis = HashMap::new();
    for (name, api) in config.apis {
        let acquirer = build_acquirer(&cache, api.authority, api.client_id, api.credential, http)
            .map_err(|e| format!("{file}: apis.{name}: {e}"))?;
        let downstream = match api.downstream {
            Some(d) => Some(Arc::new(
                downstream::Downstream::new(d).map_err(|e| format!("{file}: apis.{name}: {e}"))?,
            )),
            None => None,
        };
        apis.insert(
            name,
            Api {
                acquirer,
                scopes: api.scopes,
                allowed_scopes: api.allowed_scopes,
                on_behalf_of: api.on_behalf_of,
                obo_form: api.obo_form,
                allow_app_token: api.allow_app_token,
                downstream,
            },
        );
    }
    let backchannel = match &config.backchannel_logout {
        Some(b) => {
            let jwks = Jwks::remote(&b.jwks_uri)
                .map_err(|e| format!("{file}: backchannel_logout.jwks_uri: {e}"))?;
            let validator = LogoutTokenValidator::builder(&b.issuer, &b.client_id, jwks)
                .replay_cache(&cache)
                .build();
            Some(SignOutState::new(&cache, validator))
        }
        None => None,
    };
    let mut names: Vec<(&str, bool)> = apis
        .iter()
        .map(|(n, a)| (n.as_str(), a.on_behalf_of))
        .collect();
    names.sort();
    let metrics = metrics::ServeMetrics::new(names.into_iter());
    let inbound = match &config.inbound {
        Some(i) if i.validate => Some(Arc::new(
            inbound::Inbound::new(i, http).map_err(|e| format!("{file}: {e}"))?,
        )),
        Some(_) => {
            tracing::warn!("[inbound] validate = false: the tokens callers forward are sent to the provider unvalidated (anyone who reaches this service can have the app's credentials used with any token); configure [inbound] issuer and audiences");
            None
        }
        None => None,
    };
    if let Some(i) = &inbound {
        let i = i.clone();
        tokio::spawn(async move { i.warm_up().await });
    }
    let sec = &config.security;
    let access = Access {
        caller_key: config.caller_key.as_ref().map(AppState::digest),
        admin_key: sec.admin_key.as_ref().map(AppState::digest),
        allow_remote_callers: sec.allow_remote_callers,
        allowed_hosts: sec.allowed_hosts.clone(),
        allowed_origins: sec.allowed_origins.clone(),
    };
    let limits = server::Limits {
        header_read_timeout: sec.header_read_timeout,
        max_connections: sec.max_connections,
        request_timeout: config.request_timeout,
    };
    let state: Shared = Arc::new(AppState {
        apis,
        cache: cache.clone(),
        access,
        inbound,
        permits: Arc::new(Semaphore::new(config.max_provider_requests)),
        max_permits: config.max_provider_requests,
        metrics,
        draining: AtomicBool::new(false),
        request_timeout: config.request_timeout,
    });
    let app = routes::router(state.clone(), backchannel);
    let stop = shutdown::signal(state.clone());
    match &config.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let bound = listener
                .local_addr()
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            announce(&bound.to_string(), state.apis.len());
            server::serve(server::Listener::Tcp(listener), app, stop, limits).await;
        }
        Listen::Unix(path) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                remove_stale_socket(path)?;
                let listener = tokio::net::UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
                // Who may connect: the socket file's permissions (default 0600: this user).
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(sec.socket_mode))
                    .map_err(|e| {
                        format!("cannot set the permissions of {}: {e}", path.display())
                    })?;
                announce(&format!("unix:{}", path.display()), state.apis.len());
                server::serve(server::Listener::Unix(listener), app, stop, limits).await;
                let _ = std::fs::remove_file(path);
            }
            #[cfg(not(unix))]
            return Err(format!(
                "{}: unix sockets need a unix system",
                path.display()
            ));
        }
    }
    tracing::info!("requests in flight answered; draining the recovery queue");
    let drained = shutdown::drain(&cache, config.shutdown_drain).await;
    tracing::info!(drained, "stopped");
    Ok(())
}

/// The acquirer of one API: a client at a token endpoint, or a managed identity (whose
/// token may also be the client's assertion).
fn build_acquirer(
    cache: &TokenCache,
    authority: String,
    client_id: String,
    credential: config::CredentialConfig,
    http: HttpOptions,
) -> Result<Acquirer, tokencache::acquire::AcquireError> {
    use config::CredentialConfig;
    use tokencache::acquire::{ClientCredential, ManagedIdentity};
    let identity = |m: config::ManagedIdentityConfig| {
        ManagedIdentity::builder(cache.clone())
            .identity(m.id)
            .source(m.source)
            .http(http)
            .build()
    };
    let credential = match credential {
        CredentialConfig::Client(c) => c,
        CredentialConfig::ManagedIdentity(m) => return Acquirer::managed_identity(identity(m)?),
        CredentialConfig::ManagedIdentityAssertion(m) => {
            ClientCredential::ManagedIdentityAssertion(identity(m)?)
        }
    };
    Acquirer::builder(cache.clone(), &authority, &client_id, credential)
        .http(http)
        .build()
}

/// One line on stdout with the address (scripts and tests read it: the port may be 0).
fn announce(addr: &str, apis: usize) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "tokencache serve: listening on {addr}");
    let _ = out.flush();
    tracing::info!(%addr, apis, "listening");
}

/// A socket file left by a previous run is removed; any other file is an error.
#[cfg(unix)]
fn remove_stale_socket(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the old socket {}: {e}", path.display())),
        Ok(_) => Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => Ok(()),
    }
}
