//! The HTTP API of `tokencache serve` (documented in `docs/openapi.json`):
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/authorization-header/{api}` | `{"authorization_header", "expires_on", "source"}` |
//! | `POST /v1/sign-out` | `{"home_account_id"}`: the user and every linked OBO partition go |
//! | `POST /v1/backchannel-logout` | OpenID Connect Back-Channel Logout (when configured) |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | liveness, readiness (L2 state), Prometheus |
//! | `ANY /v1/downstream/{api}[/{path…}]` | the API's downstream, passed through (src/passthrough.rs) |
//! | Microsoft's sidecar routes, `GET /openapi/v1.json` | src/compat.rs (problem details) |
//!
//! Every error is `{"error", "error_description"}` with `Cache-Control: no-store`:
//! 400 bad request, 401 missing or malformed incoming token or wrong caller key, 404
//! unknown API or route, 405, 413 body too large, 431 headers too large, 502 the
//! provider's OAuth error (its code as `error`) or an answer that is not one, 503 the
//! provider unreachable or slow, or the request's own timeout. No answer carries a
//! token other than the one asked for, nor a secret; incoming tokens are never echoed
//! or logged.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokencache::acquire::{
    AcquireError, AcquireOptions, Acquirer, OAuthErrorCode, OboForm, OboRequest,
};
use tokencache::{Secret, TokenCache};
use tokio::sync::Semaphore;

use super::account;
use super::guard;
use super::inbound::Inbound;
use super::metrics::{Outcome, ServeMetrics};

/// Largest single header value accepted (an incoming token is far smaller).
pub(crate) const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest sum of header names and values accepted.
pub(crate) const MAX_HEADERS_BYTES: usize = 32 * 1024;
/// Largest request body (`/v1/sign-out`, `/v1/backchannel-logout`).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// One configured downstream API.
#[derive(Debug)]
pub(crate) struct Api {
    /// Its client at its authority, over the shared cache.
    pub(crate) acquirer: Acquirer,
    /// The scopes asked for unless the query names others.
    pub(crate) scopes: Vec<String>,
    /// The scopes the query may name: `scopes` and what `allowed_scopes` adds.
    pub(crate) allowed_scopes: Vec<String>,
    /// On behalf of the caller's user (the forwarded bearer token).
    pub(crate) on_behalf_of: bool,
    /// Entra's OBO form or RFC 8693.
    pub(crate) obo_form: OboForm,
    // ---- issue 23: src/compat.rs, src/downstream.rs ----
    /// An on-behalf-of API that may also serve app tokens.
    pub(crate) allow_app_token: bool,
    /// Its downstream (`base_url`, ...), when configured.
    pub(crate) downstream: Option<Arc<super::downstream::Downstream>>,
}

/// What the handlers share.
pub(crate) struct AppState {
    /// The configured APIs, by name.
    pub(crate) apis: HashMap<String, Api>,
    /// The cache every API's acquirer saves into.
    pub(crate) cache: TokenCache,
    /// Who may call: keys, hosts, origins.
    pub(crate) access: Access,
    /// `[inbound]` (with `validate = true`): validates the tokens callers forward.
    pub(crate) inbound: Option<Arc<Inbound>>,
    /// Permits for provider token requests (`max_provider_requests`).
    pub(crate) permits: Arc<Semaphore>,
    /// How many permits there are.
    pub(crate) max_permits: usize,
    /// The server's own counters.
    pub(crate) metrics: ServeMetrics,
    /// Shutdown has begun: `/readyz` answers 503.
    pub(crate) draining: AtomicBool,
    /// Bound of one request.
    pub(crate) request_timeout: Duration,
}

/// The shared state.
pub(crate) type Shared = Arc<AppState>;

/// Who may call (see [`guard`](super::guard)).
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// SHA-256 of the caller key (compared in constant time, whatever its length).
    pub(crate) caller_key: Option<[u8; 32]>,
    /// SHA-256 of the admin key (signs out any user).
    pub(crate) admin_key: Option<[u8; 32]>,
    /// Callers that are not on loopback or the unix socket are served.
    pub(crate) allow_remote_callers: bool,
    /// `Host` values accepted besides loopback ones (lower case).
    pub(crate) allowed_hosts: Vec<String>,
    /// `Origin` values accepted (lower case).
    pub(crate) allowed_origins: Vec<String>,
}

impl AppState {
    /// The SHA-256 digest a caller key is kept as.
    pub(crate) fn digest(key: &Secret) -> [u8; 32] {
        Sha256::digest(key.expose().as_bytes()).into()
    }

    /// Provider token requests per API, for `/metrics`.
    fn provider_requests(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .apis
            .iter()
            .map(|(n, a)| (n.as_str(), a.acquirer.token_requests()))
            .collect();
        v.sort();
        v
    }
}

/// The routes, with the guard (the route's policy: Host, Origin, local callers, JSON
/// bodies, caller key; then the timeout, the metrics) around every one of them. A route
/// added here gets [`Policy::CALLER`](super::guard::Policy::CALLER) unless
/// [`guard::policy`] names it.
pub(crate) fn router(
    state: Shared,
    backchannel: Option<tokencache::signout::axum::SignOutState>,
) -> Router {
    let mut router = Router::new()
        .route("/v1/authorization-header/{api}", get(authorization_header))
        // issue 23: downstream pass-through and Microsoft's sidecar routes
        .route(
            "/v1/downstream/{api}",
            any(super::passthrough::pass_through),
        )
        .route(
            "/v1/downstream/{api}/{*path}",
            any(super::passthrough::pass_through),
        )
        .merge(super::compat::router())
        .route("/v1/sign-out", post(account::sign_out))
        .route("/v1/validate", get(account::validate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if let Some(s) = backchannel {
        router = router.route(
            "/v1/backchannel-logout",
            post(tokencache::signout::axum::back_channel).with_state(s),
        );
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Every route, every unknown path and every route added above gets the guard:
        // its policy is looked up by path (guard::policy), the strictest by default.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// `{"error", "error_description"}`, no-store.
pub(crate) fn error(status: StatusCode, code: &str, description: &str) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        error_description: &'a str,
    }
    json(
        status,
        &Body {
            error: code,
            error_description: description,
        },
    )
}

pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "the route does not take this method",
    )
}

/// The query of `GET /v1/authorization-header/{api}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    /// Space- (or comma-) separated scopes instead of the configured ones.
    scopes: Option<String>,
    /// `true`: skip the cache (a token the resource refused).
    force_refresh: Option<String>,
    /// A claims challenge (JSON), sent to the provider; implies a forced refresh.
    claims: Option<String>,
}

#[derive(Serialize)]
struct HeaderAnswer<'a> {
    authorization_header: &'a str,
    expires_on: i64,
    source: &'static str,
}

/// A token served: from the cache, or just acquired.
pub(crate) struct Served {
    pub(crate) secret: Secret,
    pub(crate) token_type: Cow<'static, str>,
    pub(crate) expires_on: i64,
    pub(crate) source: &'static str,
}

impl Served {
    /// What the token metrics count it as.
    pub(crate) fn outcome(&self) -> Outcome {
        if self.source == "cache" {
            Outcome::Cache
        } else {
            Outcome::Provider
        }
    }

    /// The `Authorization` header value that carries it: `Bearer <token>` (the scheme
    /// spelled so whatever case the provider used), else `<token_type> <token>`.
    pub(crate) fn authorization(&self) -> String {
        let scheme = if self.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else {
            &self.token_type
        };
        format!("{scheme} {}", self.secret.expose())
    }
}

async fn authorization_header(
    State(st): State<Shared>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(name)) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the API name in the path is not valid",
        );
    };
    let Some(api) = st.apis.get(&name) else {
        let shown = if name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            format!("no API named {name:?} is configured")
        } else {
            "no such API is configured".to_string()
        };
        return error(StatusCode::NOT_FOUND, "unknown_api", &shown);
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the query takes only scopes, force_refresh and claims",
            )
        }
    };
    let asked: Vec<String>;
    let scopes: Vec<&str> = match &q.scopes {
        Some(s) => {
            asked = s
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Err(p) = super::config::check_scopes(&asked) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("scopes: {p}"),
                );
            }
            // the one allow-list check, shared with Microsoft's routes and /v1/downstream
            if let Err(p) = super::downstream::allowed_scopes(api, &asked) {
                st.metrics.token(&name, Outcome::Error("invalid_scope"));
                return error(StatusCode::BAD_REQUEST, "invalid_scope", &p);
            }
            asked.iter().map(String::as_str).collect()
        }
        None => api.scopes.iter().map(String::as_str).collect(),
    };
    let force = match q.force_refresh.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "force_refresh is true or false",
            )
        }
    };
    let options = match &q.claims {
        Some(c)
            if serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(c).is_err() =>
        {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "claims is not a JSON object",
            )
        }
        Some(c) => AcquireOptions::claims(c),
        None if force => AcquireOptions::force_refresh(),
        None => AcquireOptions::default(),
    };
    let mut validated = None;
    let assertion = if api.on_behalf_of {
        // With [inbound], the validator checks the whole JWT: the shape check is only
        // RFC 6750's (no second decoding of the claims on every cache hit).
        let form = if st.inbound.is_some() {
            OboForm::TokenExchange
        } else {
            api.obo_form
        };
        let token = match account::incoming_token(&headers, form) {
            Ok(t) => t,
            Err(r) => {
                st.metrics.token(&name, Outcome::Error("invalid_token"));
                return *r;
            }
        };
        // Validated before any cache lookup or provider request ([inbound]; the
        // configuration requires it unless the operator wrote validate = false).
        if let Some(inbound) = &st.inbound {
            match inbound.validate(token).await {
                Ok(v) => validated = Some(v),
                Err(r) => {
                    st.metrics.token(&name, Outcome::Error("invalid_token"));
                    return account::refused(r);
                }
            }
        }
        Some(token)
    } else {
        None
    };
    let checked = validated.as_deref().map(|v| &v.claims);
    match acquire_checked(&st, api, assertion, checked, &scopes, &options).await {
        Ok(t) => {
            st.metrics.token(&name, t.outcome());
            let header = t.authorization();
            json(
                StatusCode::OK,
                &HeaderAnswer {
                    authorization_header: &header,
                    expires_on: t.expires_on,
                    source: t.source,
                },
            )
        }
        Err(e) => {
            let (status, code) = classify(&e);
            st.metrics.token(&name, Outcome::Error(code.static_str()));
            if matches!(e, AcquireError::ProviderMisconfigured { .. }) {
                // an operator's to fix, the same on every request: said once
                if first_time_misconfigured(&name, &e) {
                    tracing::error!(api = %name, error = %e, "the provider is misconfigured: no token can be had from it until the configuration is fixed");
                }
            } else {
                tracing::info!(api = %name, error = %e, "token request failed");
            }
            let mut r = error(status, code.as_str(), &e.to_string());
            if status == StatusCode::SERVICE_UNAVAILABLE {
                // the provider's own Retry-After when it sent one, else a second
                let secs = e
                    .retry_after()
                    .map(|d| d.as_secs().clamp(1, MAX_RETRY_AFTER_SECS))
                    .unwrap_or(1);
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }
    }
}

/// The cache, else the acquirer (one of `max_provider_requests` permits held while it
/// goes to the provider).
pub(crate) async fn acquire(
    st: &AppState,
    api: &Api,
    assertion: Option<&str>,
    scopes: &[&str],
    options: &AcquireOptions,
) -> Result<Served, AcquireError> {
    acquire_checked(st, api, assertion, None, scopes, options).await
}

/// [`acquire`], with the claims `[inbound]` validated of the assertion, when it did: the
/// acquirer's issuer check then reads them instead of decoding the assertion again.
pub(crate) async fn acquire_checked(
    st: &AppState,
    api: &Api,
    assertion: Option<&str>,
    validated: Option<&serde_json::Map<String, serde_json::Value>>,
    scopes: &[&str],
    options: &AcquireOptions,
) -> Result<Served, AcquireError> {
    let a = &api.acquirer;
    if !options.force_refresh && options.claims.is_none() {
        // the acquirer's own lookups: another issuer's assertion is refused before any
        // cache read, and records are matched by this provider's realm
        // (no lookup: the assertion's tenant cannot be checked before discovery, which
        // the acquirer runs below)
        let lookup = match (assertion, validated) {
            (Some(x), Some(v)) => {
                let claim = |c: &str| v.get(c).and_then(serde_json::Value::as_str);
                a.obo_lookup_with_claims(x, claim("iss"), claim("tid"), scopes)?
            }
            (Some(x), None) => a.obo_lookup(x, scopes)?,
            (None, _) => Some(a.app_lookup(scopes)),
        };
        let hit = match &lookup {
            Some(l) => st.cache.find_access_token(l).await?,
            None => None,
        };
        if let Some(t) = hit {
            // Past refresh_on, the acquirer serves it and refreshes in the background.
            if !t.needs_refresh {
                return Ok(Served {
                    secret: t.secret,
                    token_type: t.token_type,
                    expires_on: t.expires_on,
                    source: "cache",
                });
            }
        }
    }
    let _permit = st
        .permits
        .acquire()
        .await
        .map_err(|_| AcquireError::Config("the server is shutting down".into()))?;
    let t = match assertion {
        Some(x) => {
            let mut r = OboRequest::new(x, scopes);
            r.form = api.obo_form;
            a.on_behalf_of_with(&r, options).await?
        }
        None => a.client_credentials_with(scopes, options).await?,
    };
    Ok(Served {
        secret: t.secret,
        token_type: t.token_type,
        expires_on: t.expires_on,
        source: t.source.as_str(),
    })
}

/// The longest `Retry-After` passed on (a provider's larger one is capped).
const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// Whether this is the first time `api` answers this misconfiguration (a changed
/// reason is said again). At most 1,000 remembered.
fn first_time_misconfigured(api: &str, e: &AcquireError) -> bool {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if seen.len() >= 1000 {
        seen.clear();
    }
    seen.insert(format!("{api}\n{e}"))
}

/// The code of an error answer: a fixed one, or the provider's OAuth code.
pub(crate) enum Code<'a> {
    Fixed(&'static str),
    OAuth(&'a OAuthErrorCode),
}

impl Code<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Code::Fixed(s) => s,
            Code::OAuth(c) => c.as_str(),
        }
    }

    /// A bounded label for the metrics (unknown provider codes count as `oauth_other`).
    pub(crate) fn static_str(&self) -> &'static str {
        match self {
            Code::Fixed(s) => s,
            Code::OAuth(c) => c.known_str().unwrap_or("oauth_other"),
        }
    }
}

/// The status and code of an acquisition error.
pub(crate) fn classify(e: &AcquireError) -> (StatusCode, Code<'_>) {
    match e {
        // temporarily_unavailable, server_error: the provider is there but cannot serve
        AcquireError::OAuth(o) if e.is_temporary() => {
            (StatusCode::SERVICE_UNAVAILABLE, Code::OAuth(&o.code))
        }
        AcquireError::OAuth(o) => (StatusCode::BAD_GATEWAY, Code::OAuth(&o.code)),
        AcquireError::Transport { .. }
        | AcquireError::Timeout { .. }
        | AcquireError::Discovery { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Fixed("provider_unavailable"),
        ),
        AcquireError::Status { status, .. } if *status >= 500 || *status == 429 => (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Fixed("provider_unavailable"),
        ),
        AcquireError::ProviderMisconfigured { .. } => (
            StatusCode::BAD_GATEWAY,
            Code::Fixed("provider_misconfigured"),
        ),
        AcquireError::Status { .. }
        | AcquireError::Malformed { .. }
        | AcquireError::IdToken(_)
        | AcquireError::AuthorizationResponse(_) => (
            StatusCode::BAD_GATEWAY,
            Code::Fixed("bad_provider_response"),
        ),
        AcquireError::SignedOut => (StatusCode::UNAUTHORIZED, Code::Fixed("signed_out")),
        AcquireError::InteractionRequired(_) => (
            StatusCode::UNAUTHORIZED,
            Code::Fixed("interaction_required"),
        ),
        AcquireError::Config(_) => (StatusCode::BAD_REQUEST, Code::Fixed("invalid_request")),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Fixed("server_error"),
        ),
    }
}

async fn healthz() -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        "{\"status\":\"ok\"}",
    )
        .into_response()
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    l2_breaker: &'static str,
    recovery_queue_depth: usize,
    /// `none`, `subscribed`, `down` or `refused` (an ACL user without the channel).
    backplane: &'static str,
    /// While the backplane is not subscribed, L1 is bypassed: every read goes to L2.
    l1_bypassed: bool,
    /// Why the backplane is down or refused (no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    backplane_reason: Option<String>,
}

async fn readyz(State(st): State<Shared>) -> Response {
    let two = st.cache.two_level();
    let breaker = match two.breaker_state() {
        tokencache::twolevel::BreakerState::Closed => "closed",
        tokencache::twolevel::BreakerState::Open => "open",
        tokencache::twolevel::BreakerState::HalfOpen => "half_open",
    };
    let ready = !st.draining.load(Ordering::Relaxed);
    let backplane = two.backplane_status();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &Readiness {
            ready,
            l2_breaker: breaker,
            recovery_queue_depth: two.queue_depth(),
            backplane: backplane.as_str(),
            l1_bypassed: two.l1_bypassed(),
            backplane_reason: backplane.reason().map(str::to_owned),
        },
    )
}

async fn metrics(State(st): State<Shared>) -> Response {
    let in_flight = st
        .max_permits
        .saturating_sub(st.permits.available_permits());
    let text = st
        .metrics
        .render(&st.cache, &st.provider_requests(), in_flight);
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_acquisition_error_has_a_documented_status() {
        let e = AcquireError::Transport {
            endpoint: "e".into(),
            message: "m".into(),
        };
        assert_eq!(classify(&e).0, StatusCode::SERVICE_UNAVAILABLE);
        let e = AcquireError::Malformed {
            endpoint: "e".into(),
            reason: "r".into(),
        };
        assert_eq!(classify(&e).0, StatusCode::BAD_GATEWAY);
        let e = AcquireError::Status {
            endpoint: "e".into(),
            status: 404,
            retry_after: None,
            excerpt: None,
        };
        assert_eq!(classify(&e).1.as_str(), "bad_provider_response");
        assert_eq!(
            classify(&AcquireError::Config("x".into())).0,
            StatusCode::BAD_REQUEST
        );
    }
}
