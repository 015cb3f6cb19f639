//! Downstream calls: serve acquires the API's token (app, or on behalf of the caller's
//! user) and calls the API's configured `base_url` itself.
//!
//! * `ANY /v1/downstream/{api}[/{path…}]` (src/passthrough.rs): a transparent pass-through
//!   (the downstream's status, headers minus hop-by-hop ones and `Set-Cookie`, its body
//!   streamed and capped);
//! * `POST /DownstreamApi…/{apiName}` (src/compat.rs): Microsoft's JSON envelope, built
//!   from [`send`]'s answer.
//!
//! What a caller cannot do: choose the host (the URL is `base_url` joined with a path that
//! may hold no `..`, no scheme, no backslash, and the result is checked to stay under
//! `base_url`: [`target`]); make serve follow a redirect (returned as it is); send its own
//! `Authorization`, cookies or any header but a short allow-list ([`FORWARDED`]) to the
//! downstream. Each API has its own client (a bounded pool: at most `max_connections`
//! calls at once), timeout and size caps. A downstream claims challenge (`401` with
//! `WWW-Authenticate: Bearer error="insufficient_claims", claims="…"`) makes serve acquire
//! one new token with those claims and send the request once more.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use futures_util::StreamExt;
use tokencache::acquire::AcquireOptions;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use crate::config::{check_scopes, ConfigError, Reader};
use crate::metrics::Outcome;
use crate::routes::{self, Api, AppState};

/// The request headers a caller's request passes on to the downstream (pass-through);
/// every other one (its `Authorization`, cookies, `X-Tokencache-Key`, forwarding headers)
/// stays with serve.
pub(crate) const FORWARDED: [HeaderName; 10] = [
    ACCEPT,
    CONTENT_TYPE,
    axum::http::header::ACCEPT_LANGUAGE,
    axum::http::header::CONTENT_LANGUAGE,
    axum::http::header::IF_MATCH,
    axum::http::header::IF_NONE_MATCH,
    axum::http::header::IF_MODIFIED_SINCE,
    axum::http::header::IF_UNMODIFIED_SINCE,
    axum::http::header::RANGE,
    HeaderName::from_static("prefer"),
];

/// Response headers that are the connection's, not the answer's (RFC 9110 §7.6.1), and
/// the downstream's cookies: never passed back.
const DROPPED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "set-cookie2",
];

/// Request headers the configuration may not set (serve sets them, or they are the
/// connection's).
const NOT_CONFIGURABLE: [&str; 8] = [
    "authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// One API's downstream, as configured.
#[derive(Clone)]
pub(crate) struct DownstreamConfig {
    /// `base_url`: scheme, host, port and path prefix every call stays under.
    pub(crate) base_url: Url,
    /// `relative_path`: the path (and query) under `base_url` by default.
    pub(crate) relative_path: String,
    /// `http_method` of Microsoft's `POST /DownstreamApi…` (default GET).
    pub(crate) http_method: Method,
    /// `accept_header` sent when the caller names none.
    pub(crate) accept_header: Option<HeaderValue>,
    /// `content_type` of a body when the caller names none.
    pub(crate) content_type: Option<HeaderValue>,
    /// `[apis.NAME.headers]`: sent with every call (values never shown).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// `downstream_timeout_ms`: one call, answer body included.
    pub(crate) timeout: Duration,
    /// `max_request_bytes`: the largest body a caller may send on.
    pub(crate) max_request_bytes: usize,
    /// `max_response_bytes`: the largest answer body passed back.
    pub(crate) max_response_bytes: usize,
    /// `max_connections`: calls in flight to this API at once (and idle connections kept).
    pub(crate) max_connections: usize,
}

impl std::fmt::Debug for DownstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // header values may be keys: names only
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("DownstreamConfig")
            .field("base_url", &self.base_url.as_str())
            .field("relative_path", &self.relative_path)
            .field("http_method", &self.http_method)
            .field("headers", &names)
            .field("timeout", &self.timeout)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// `allow_app_token` of an `[apis.NAME]` table (`allowed_scopes` is read with the
/// API's scopes, in config/apis.rs).
pub(crate) fn read_allow_app_token(
    r: &mut Reader<'_>,
    on_behalf_of: bool,
) -> Result<bool, ConfigError> {
    let allow_app_token = r.bool("allow_app_token")?.unwrap_or(false);
    if allow_app_token && !on_behalf_of {
        return Err(r.error_at(
            &r.here("allow_app_token"),
            "is for an on_behalf_of API (this API serves app tokens already)",
        ));
    }
    Ok(allow_app_token)
}

/// The downstream keys of an `[apis.NAME]` table (`None` without `base_url`).
pub(crate) fn read_config(r: &mut Reader<'_>) -> Result<Option<DownstreamConfig>, ConfigError> {
    let base = r.string("base_url")?;
    let relative = r.string("relative_path")?;
    let method = r.string("http_method")?;
    let accept = r.string("accept_header")?;
    let ctype = r.string("content_type")?;
    let timeout = r.int("downstream_timeout_ms", 100, 600_000)?;
    let max_request = r.int("max_request_bytes", 1, 1 << 30)?;
    let max_response = r.int("max_response_bytes", 1, 1 << 30)?;
    let connections = r.int("max_connections", 1, 10_000)?;
    let headers = r.table("headers")?;
    let Some((base, base_at)) = base else {
        let given = [
            ("relative_path", relative.is_some()),
            ("http_method", method.is_some()),
            ("accept_header", accept.is_some()),
            ("content_type", ctype.is_some()),
            ("downstream_timeout_ms", timeout.is_some()),
            ("max_request_bytes", max_request.is_some()),
            ("max_response_bytes", max_response.is_some()),
            ("max_connections", connections.is_some()),
            ("headers", headers.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, g)| *g) {
            return Err(r.error_at(&r.here(key), "needs base_url (where the API is)"));
        }
        return Ok(None);
    };
    let base_url = parse_base_url(&base).map_err(|p| r.error_at(&base_at, &p))?;
    let relative_path = match relative {
        Some((v, at)) => {
            target(&base_url, &v, None).map_err(|p| r.error_at(&at, &p))?;
            v
        }
        None => String::new(),
    };
    let http_method = match method {
        Some((v, at)) => parse_method(&v).map_err(|p| r.error_at(&at, &p))?,
        None => Method::GET,
    };
    let header_value = |v: Option<(String, crate::config::At)>| match v {
        Some((v, at)) => HeaderValue::from_str(v.trim())
            .map(Some)
            .map_err(|_| r.error_at(&at, "is not a valid header value")),
        None => Ok(None),
    };
    let accept_header = header_value(accept)?;
    let content_type = header_value(ctype)?;
    let mut extra = Vec::new();
    if let Some(t) = headers {
        for (name, value) in t {
            let at = r.here(&format!("headers.{name}"));
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| r.error_at(&at, "is not a valid header name"))?;
            if NOT_CONFIGURABLE.contains(&n.as_str()) {
                return Err(r.error_at(&at, "is set by serve itself (or is the connection's)"));
            }
            let Some(v) = value.as_str() else {
                return Err(r.error_at(&at, "must be a string"));
            };
            let mut v =
                HeaderValue::from_str(v).map_err(|_| r.error_at(&at, "is not a valid value"))?;
            v.set_sensitive(true);
            extra.push((n, v));
        }
    }
    Ok(Some(DownstreamConfig {
        base_url,
        relative_path,
        http_method,
        accept_header,
        content_type,
        headers: extra,
        timeout: Duration::from_millis(timeout.unwrap_or(30_000)),
        max_request_bytes: max_request.unwrap_or(1 << 20) as usize,
        max_response_bytes: max_response.unwrap_or(10 << 20) as usize,
        max_connections: connections.unwrap_or(64) as usize,
    }))
}

/// An `https` URL (plain `http` to a loopback host only: tokens are not sent in clear over
/// a network), without user, query or fragment.
pub(crate) fn parse_base_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err("has no host".into()),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "must be https (plain http only to a loopback host: the token would cross the network in clear)"
                    .into(),
            )
        }
        other => return Err(format!("must be https, not {other}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user or password".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not hold a query or fragment (put them in relative_path)".into());
    }
    Ok(url)
}

/// GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS, in any case.
pub(crate) fn parse_method(v: &str) -> Result<Method, String> {
    let upper = v.trim().to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
            Method::from_bytes(upper.as_bytes()).map_err(|_| "is not a method".to_string())
        }
        _ => Err("must be GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS".into()),
    }
}

/// The allow-list check of caller-chosen scopes: each one is the API's `scopes` or one
/// its `allowed_scopes` adds (`Api::allowed_scopes` holds both). The one place every
/// route checks them (`/v1/authorization-header`, Microsoft's routes, `/v1/downstream`).
pub(crate) fn allowed_scopes(api: &Api, asked: &[String]) -> Result<(), String> {
    check_scopes(asked)?;
    match asked.iter().find(|s| !api.allowed_scopes.contains(s)) {
        Some(s) => Err(format!(
            "scope {s:?} is not allowed for this API (its scopes and allowed_scopes)"
        )),
        None => Ok(()),
    }
}

/// `base` joined with `relative` (a path, maybe with a query) and `query`: a URL on
/// `base`'s scheme, host and port, under its path, or why not. `relative` may start with
/// `/` (or `//`: still a path), may hold `@` (a path character here); it may not hold a
/// scheme, `.`/`..` segments (also percent-encoded), an encoded `/` or `\`, a backslash,
/// `#`, spaces or control characters.
pub(crate) fn target(base: &Url, relative: &str, query: Option<&str>) -> Result<Url, String> {
    if relative.len() > 4096 || query.is_some_and(|q| q.len() > 8192) {
        return Err("the path or query is too long".into());
    }
    let (path, rel_query) = match relative.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (relative, None),
    };
    if path.contains("://") {
        return Err("a path, not a URL: the host is the configured base_url's".into());
    }
    for part in [Some(path), rel_query, query].into_iter().flatten() {
        if part
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'\\' || b == b'#')
        {
            return Err("holds a space, control character, backslash or #".into());
        }
    }
    for seg in path.split('/') {
        let lower = seg.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err("holds a . or .. segment".into());
        }
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err("holds an encoded / or \\".into());
        }
    }
    let prefix = base.path().trim_end_matches('/');
    let mut url = base.clone();
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    let q = match (rel_query, query) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => Some(format!("{a}&{b}")),
        (Some(a), _) if !a.is_empty() => Some(a.to_string()),
        (_, Some(b)) if !b.is_empty() => Some(b.to_string()),
        _ => None,
    };
    url.set_query(q.as_deref());
    let stays = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none()
        && url.path().starts_with(prefix)
        && (url.path().len() == prefix.len() || url.path()[prefix.len()..].starts_with('/'));
    if !stays {
        return Err("leaves the configured base_url".into());
    }
    Ok(url)
}

/// One API's downstream at run time: its client and its bound on calls in flight.
pub(crate) struct Downstream {
    /// As configured.
    pub(crate) config: DownstreamConfig,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Downstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl Downstream {
    /// The client of `config`: no redirects followed, no proxy from the environment, the
    /// configured timeout, at most `max_connections` idle connections kept.
    pub(crate) fn new(config: DownstreamConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(config.max_connections)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            config,
            client,
        })
    }
}

/// Why a call failed, rendered by each route family in its own error shape.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The answer's status.
    pub(crate) status: StatusCode,
    /// A short code (`invalid_request`, `unknown_api`, the provider's OAuth code, ...).
    pub(crate) code: String,
    /// What happened (never a token, never a secret).
    pub(crate) detail: String,
    /// A `WWW-Authenticate` challenge to send (401 answers about the incoming token).
    pub(crate) challenge: Option<&'static str>,
    /// The provider answered with an OAuth error (Microsoft's routes answer those 401).
    pub(crate) is_oauth: bool,
}

impl Failure {
    /// A failure without a challenge.
    pub(crate) fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            detail: detail.into(),
            challenge: None,
            is_oauth: false,
        }
    }

    /// The `/v1` shape: `{"error", "error_description"}`.
    pub(crate) fn v1(self) -> Response {
        let mut r = routes::error(self.status, &self.code, &self.detail);
        self.decorate(r.headers_mut());
        r
    }

    /// `Retry-After` on 503, the challenge on 401.
    pub(crate) fn decorate(&self, headers: &mut HeaderMap) {
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(c) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
    }
}

/// `no API named "x" is configured` when the name is safe to show, else without it.
pub(crate) fn unknown_api(name: &str) -> String {
    if shown(name) {
        format!("no API named {name:?} is configured")
    } else {
        "no such API is configured".to_string()
    }
}

/// A caller's name that may be repeated in an answer: short, plain characters.
pub(crate) fn shown(name: &str) -> bool {
    name.len() <= 64
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A token for `api` (the cache, else the provider), as an `Authorization` value, counted
/// in the metrics under `name`.
pub(crate) async fn token(
    st: &AppState,
    name: &str,
    api: &Api,
    assertion: Option<&str>,
    scopes: &[String],
    options: &AcquireOptions,
) -> Result<HeaderValue, Failure> {
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    match routes::acquire(st, api, assertion, &scopes, options).await {
        Ok(t) => {
            st.metrics.token(name, t.outcome());
            let mut v = HeaderValue::from_str(&t.authorization()).map_err(|_| {
                Failure::new(
                    StatusCode::BAD_GATEWAY,
                    "bad_provider_response",
                    "the provider's token is not a valid header value",
                )
            })?;
            v.set_sensitive(true);
            Ok(v)
        }
        Err(e) => {
            let (status, code) = routes::classify(&e);
            st.metrics.token(name, Outcome::Error(code.static_str()));
            tracing::info!(api = %name, error = %e, "token request failed");
            Err(Failure {
                is_oauth: matches!(e, tokencache::acquire::AcquireError::OAuth(_)),
                ..Failure::new(status, code.as_str(), e.to_string())
            })
        }
    }
}

/// One call to an API's downstream.
pub(crate) struct Call<'a> {
    /// The shared state.
    pub(crate) st: &'a AppState,
    /// The API's name (metrics, logs).
    pub(crate) name: &'a str,
    /// The API.
    pub(crate) api: &'a Api,
    /// Its downstream.
    pub(crate) downstream: &'a Downstream,
    /// The caller's token for OBO; `None`: an app token.
    pub(crate) assertion: Option<&'a str>,
    /// The scopes of the token.
    pub(crate) scopes: Vec<String>,
    /// Forced refresh, claims.
    pub(crate) options: AcquireOptions,
    /// The method.
    pub(crate) method: Method,
    /// Where to ([`target`]).
    pub(crate) url: Url,
    /// The headers to send besides `Authorization` and the configured ones.
    pub(crate) headers: HeaderMap,
    /// The body (kept to send again after a claims challenge).
    pub(crate) body: Bytes,
}

/// The downstream's answer, and the slot it holds until its body is read.
pub(crate) struct Answered {
    /// The answer (head read, body not yet).
    pub(crate) response: reqwest::Response,
    /// The call's slot among `max_connections`.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// Sends `call` with a token; after a claims challenge, once more with a new token that
/// carries the claims.
pub(crate) async fn send(call: Call<'_>) -> Result<Answered, Failure> {
    let d = call.downstream;
    let permit = match tokio::time::timeout(d.config.timeout, d.slots.clone().acquire_owned()).await
    {
        Ok(Ok(p)) => p,
        _ => {
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "downstream_busy",
                format!(
                    "all {} connections to the downstream API are busy",
                    d.config.max_connections
                ),
            ))
        }
    };
    let header = token(
        call.st,
        call.name,
        call.api,
        call.assertion,
        &call.scopes,
        &call.options,
    )
    .await?;
    let first = request(&call, header).await?;
    let Some(claims) = claims_challenge(&first) else {
        return Ok(Answered {
            response: first,
            permit,
        });
    };
    drop(first);
    tracing::info!(api = %call.name, "the downstream API asked for claims: one new token, one retry");
    let header = token(
        call.st,
        call.name,
        call.api,
        call.assertion,
        &call.scopes,
        &AcquireOptions::claims(&claims),
    )
    .await?;
    let second = request(&call, header).await?;
    Ok(Answered {
        response: second,
        permit,
    })
}

async fn request(
    call: &Call<'_>,
    authorization: HeaderValue,
) -> Result<reqwest::Response, Failure> {
    let d = call.downstream;
    let mut headers = call.headers.clone();
    for (n, v) in &d.config.headers {
        headers.insert(n.clone(), v.clone());
    }
    headers.insert(AUTHORIZATION, authorization);
    let mut rb = d
        .client
        .request(call.method.clone(), call.url.clone())
        .headers(headers);
    if !call.body.is_empty() {
        rb = rb.body(call.body.clone());
    }
    rb.send().await.map_err(|e| transport(&e))
}

/// A transport error as a failure: 504 on a timeout, else 502 (the URL is not repeated:
/// its query may be the caller's).
fn transport(e: &reqwest::Error) -> Failure {
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        Failure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "downstream_timeout",
            "the downstream API did not answer within downstream_timeout_ms",
        )
    } else {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            "downstream_unavailable",
            if cause.is_empty() {
                "the downstream API could not be reached".to_string()
            } else {
                format!("the downstream API could not be reached: {cause}")
            },
        )
    }
}

/// The claims of a claims challenge (`401` with `error="insufficient_claims"`), as JSON.
pub(crate) fn claims_challenge(r: &reqwest::Response) -> Option<String> {
    if r.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    r.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            (auth_param(v, "error")?.eq_ignore_ascii_case("insufficient_claims"))
                .then(|| auth_param(v, "claims"))
                .flatten()
                .and_then(|c| decode_claims(&c))
        })
}

/// The value of auth-param `name` in a `WWW-Authenticate` value (quoted or a token).
pub(crate) fn auth_param(header: &str, name: &str) -> Option<String> {
    let bytes = header.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // a parameter name starts the value or follows a space or a comma
        let starts = i == 0 || matches!(bytes[i - 1], b' ' | b',' | b'\t');
        if starts
            && header.len() > i + name.len()
            && header
                .get(i..i + name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && bytes[i + name.len()] == b'='
        {
            let rest = &header[i + name.len() + 1..];
            if let Some(q) = rest.strip_prefix('"') {
                let mut out = String::new();
                let mut chars = q.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => return Some(out),
                        '\\' => out.push(chars.next()?),
                        c => out.push(c),
                    }
                }
                return None;
            }
            let end = rest.find([',', ' ', '\t']).unwrap_or(rest.len());
            return Some(rest[..end].to_string());
        }
        i += header[i..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// Entra sends the claims base64-encoded; others may send the JSON itself. A JSON object
/// of at most 8 KiB, or nothing.
pub(crate) fn decode_claims(v: &str) -> Option<String> {
    if v.len() > 8192 {
        return None;
    }
    let is_object =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).is_ok_and(|j| j.is_object());
    if is_object(v) {
        return Some(v.to_string());
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines.iter().find_map(|e| {
        let bytes = e.decode(v.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        is_object(&text).then_some(text)
    })
}

/// Whether a response header goes back to the caller.
pub(crate) fn passes_back(name: &HeaderName, connection_named: &[String]) -> bool {
    !DROPPED.contains(&name.as_str()) && !connection_named.iter().any(|n| n == name.as_str())
}

/// The header names a `Connection` header lists (hop-by-hop too).
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(axum::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Reads a request body up to `max` bytes: `Err` with a 413 or 400 failure.
pub(crate) async fn read_body(body: Body, max: usize) -> Result<Bytes, Failure> {
    axum::body::to_bytes(body, max).await.map_err(|e| {
        // axum's error wraps http-body-util's LengthLimitError ("length limit exceeded")
        let mut too_large = e.to_string().contains("length limit");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            too_large |= s.to_string().contains("length limit");
            source = s.source();
        }
        if too_large {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is over this API's max_request_bytes ({max})"),
            )
        } else {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body could not be read",
            )
        }
    })
}

/// The answer is larger than `max_response_bytes`.
pub(crate) fn too_large(cap: usize) -> Failure {
    Failure::new(
        StatusCode::BAD_GATEWAY,
        "response_too_large",
        format!("the downstream answer is over this API's max_response_bytes ({cap})"),
    )
}

/// Reads a downstream answer's body whole, up to `cap` bytes.
pub(crate) async fn read_answer(resp: reqwest::Response, cap: usize) -> Result<Bytes, Failure> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large(cap));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(&e))?;
        if out.len() + chunk.len() > cap {
            return Err(too_large(cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        parse_base_url("https://api.example/v1.0/").unwrap()
    }

    #[test]
    fn a_path_never_leaves_the_base_url() {
        let b = base();
        for (rel, want) in [
            ("me", "https://api.example/v1.0/me"),
            (
                "/me/messages?$top=1",
                "https://api.example/v1.0/me/messages?$top=1",
            ),
            ("", "https://api.example/v1.0/"),
            (
                "//evil.example/x",
                "https://api.example/v1.0/evil.example/x",
            ),
            (
                "@evil.example/x",
                "https://api.example/v1.0/@evil.example/x",
            ),
            (
                "users/a@b.example",
                "https://api.example/v1.0/users/a@b.example",
            ),
        ] {
            assert_eq!(target(&b, rel, None).unwrap().as_str(), want, "{rel}");
        }
        for bad in [
            "http://evil/",
            "https://evil.example/x",
            "../x",
            "a/../../x",
            "%2e%2e/x",
            "a/%2E%2e",
            ".",
            "a%2fb",
            "a%5Cb",
            "\\\\evil\\x",
            "a b",
            "a\r\nHost: evil",
            "x#frag",
        ] {
            assert!(target(&b, bad, None).is_err(), "{bad:?}");
        }
        // the host of a base without a path stays too (`@` never becomes userinfo)
        let root = parse_base_url("http://127.0.0.1:8080").unwrap();
        let u = target(&root, "@evil.example", None).unwrap();
        assert_eq!(u.host_str(), Some("127.0.0.1"));
        assert_eq!(u.port(), Some(8080));
        let u = target(&root, "x", Some("a=1&b=%2F")).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/x?a=1&b=%2F");
        assert!(target(&root, "x", Some("a=1#f")).is_err());
    }

    #[test]
    fn base_urls_are_https_or_loopback_http() {
        assert!(parse_base_url("https://graph.microsoft.com/v1.0/").is_ok());
        assert!(parse_base_url("http://localhost:9000").is_ok());
        assert!(parse_base_url("http://[::1]:9000/").is_ok());
        for bad in [
            "http://graph.microsoft.com/",
            "ftp://x/",
            "https://u:p@x/",
            "https://x/?q=1",
            "https://x/#f",
            "not a url",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_challenges_are_parsed_and_decoded() {
        let claims = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(claims);
        let h = format!(
            "Bearer realm=\"\", authorization_uri=\"https://login/x\", error=\"insufficient_claims\", claims=\"{b64}\""
        );
        assert_eq!(
            auth_param(&h, "error").as_deref(),
            Some("insufficient_claims")
        );
        assert_eq!(
            decode_claims(&auth_param(&h, "claims").unwrap()).as_deref(),
            Some(claims)
        );
        assert_eq!(decode_claims(claims).as_deref(), Some(claims));
        assert_eq!(
            auth_param("Bearer error=invalid_token, x=1", "error").as_deref(),
            Some("invalid_token")
        );
        assert_eq!(auth_param("Bearer xerror=\"a\"", "error"), None);
        // multi-byte characters anywhere: no panic
        assert_eq!(
            auth_param("Bearer é=1, error=\"é\", €rror=x", "error").as_deref(),
            Some("é")
        );
        assert_eq!(auth_param("€€€", "error"), None);
        assert_eq!(auth_param("Bearer error=\"unterminated", "error"), None);
        assert_eq!(decode_claims("bm90IGpzb24="), None); // "not json"
        assert_eq!(decode_claims(&"A".repeat(9000)), None);
        assert_eq!(decode_claims("[1]"), None);
    }

    #[test]
    fn hop_by_hop_headers_and_cookies_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        let named = connection_named(&h);
        for n in [
            "set-cookie",
            "transfer-encoding",
            "keep-alive",
            "x-private",
            "connection",
        ] {
            assert!(!passes_back(&HeaderName::from_static(n), &named), "{n}");
        }
        for n in [
            "content-type",
            "etag",
            "location",
            "www-authenticate",
            "x-request-id",
        ] {
            assert!(passes_back(&HeaderName::from_static(n), &named), "{n}");
        }
    }

    #[test]
    fn downstream_keys_are_checked_at_start() {
        let api = |extra: &str| {
            format!("[apis.a]\nauthority='https://op.example/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n{extra}\n")
        };
        let env = |k: &str| (k == "E").then(|| "v".to_string());
        let parse =
            |text: &str| crate::config::parse(std::path::Path::new("tc.toml"), text, None, &env);
        let c = parse(&api("base_url='https://api.example/v1/'\nrelative_path='me?x=1'\nhttp_method='post'\nmax_connections=3\nallowed_scopes=['t']\n[apis.a.headers]\nx-api-key='k3y-value'")).unwrap();
        let a = &c.apis["a"];
        let d = a.downstream.as_ref().unwrap();
        assert_eq!(d.http_method, Method::POST);
        assert_eq!(d.max_connections, 3);
        assert_eq!(a.allowed_scopes, ["s", "t"]);
        assert!(
            !format!("{c:?}").contains("k3y-value"),
            "a header value in Debug"
        );
        assert!(parse(&api("")).unwrap().apis["a"].downstream.is_none());
        for (extra, want) in [
            (
                "relative_path='me'",
                "tc.toml: apis.a.relative_path: needs base_url",
            ),
            (
                "base_url='http://api.example/'",
                "tc.toml: apis.a.base_url: must be https",
            ),
            (
                "base_url='https://api.example/'\nrelative_path='../x'",
                "tc.toml: apis.a.relative_path: holds a . or .. segment",
            ),
            (
                "base_url='https://api.example/'\nmax_connections=0",
                "tc.toml: apis.a.max_connections: must be from 1 to 10000",
            ),
            (
                "base_url='https://api.example/'\nmax_response_bytes=99999999999",
                "tc.toml: apis.a.max_response_bytes: must be from 1 to",
            ),
            (
                "base_url='https://api.example/'\nhttp_method='TRACE'",
                "tc.toml: apis.a.http_method: must be GET",
            ),
            (
                "base_url='https://api.example/'\n[apis.a.headers]\nAuthorization='Bearer x'",
                "tc.toml: apis.a.headers.Authorization: is set by serve itself",
            ),
            (
                "allow_app_token=true",
                "tc.toml: apis.a.allow_app_token: is for an on_behalf_of API",
            ),
            (
                "allowed_scopes=['a b']",
                "tc.toml: apis.a.allowed_scopes: a scope is",
            ),
        ] {
            let e = parse(&api(extra)).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
    }

    #[test]
    fn methods_are_named_in_any_case() {
        assert_eq!(parse_method("post").unwrap(), Method::POST);
        assert_eq!(parse_method("Patch").unwrap(), Method::PATCH);
        assert!(parse_method("TRACE").is_err());
        assert!(parse_method("CONNECT").is_err());
        assert!(parse_method("GE T").is_err());
    }
}
