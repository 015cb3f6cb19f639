//! The guard in front of every route: who may call, from where, with what.
//!
//! Every request passes [`guard`]; what it checks is the route's [`Policy`], looked up
//! by path in [`policy`]. A route not named there — any route added later, and unknown
//! paths — gets [`Policy::CALLER`], the strictest: protection is the default, an
//! exemption is written down. In order (docs/design.md §14 has the table):
//!
//! | check | answer |
//! |---|---|
//! | a header over 16 KiB, all over 32 KiB | 431 |
//! | `Host` neither a loopback name or address nor in `allowed_hosts` (TCP callers) | 421 |
//! | an `Origin` header not in `allowed_origins` | 403 |
//! | a caller that is not on loopback or the unix socket, unless `allow_remote_callers` | 403 |
//! | a `POST` whose body is not `application/json` | 415 |
//! | the caller key (`X-Tokencache-Key`), when one is configured | 401 |
//! | a remote caller without a caller key configured: a valid `[inbound]` bearer | 401 |
//!
//! then the request's timeout, the metrics and the access log.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, ORIGIN, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::account::{bearer, refused};
use super::metrics::Route;
use super::routes::{error, Shared, MAX_HEADERS_BYTES, MAX_HEADER_BYTES};

/// The header callers authenticate with, when a caller key is configured.
pub(crate) const CALLER_KEY_HEADER: &str = "x-tokencache-key";

/// How the caller reached the server: set on every request by the server loop. A
/// request without it (none in practice) is taken as remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP caller on a loopback address.
    Loopback,
    /// A caller on the unix socket (the socket's permissions say who).
    Unix,
    /// A TCP caller on another address.
    Remote,
}

impl Peer {
    /// The peer of a TCP connection from `ip`.
    pub(crate) fn of_ip(ip: IpAddr) -> Peer {
        let loopback = match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        if loopback {
            Peer::Loopback
        } else {
            Peer::Remote
        }
    }
}

/// What a route asks of its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// `Host` and `Origin` are checked (DNS rebinding, cross-site requests).
    pub(crate) browser_checks: bool,
    /// Only loopback and unix-socket callers, unless `allow_remote_callers`.
    pub(crate) local_only: bool,
    /// `POST` bodies are `application/json`.
    pub(crate) json_body: bool,
    /// The caller key, when configured; a valid bearer from remote callers otherwise.
    pub(crate) authenticated: bool,
}

impl Policy {
    /// Every check: the default of every route.
    pub(crate) const CALLER: Policy = Policy {
        browser_checks: true,
        local_only: true,
        json_body: true,
        authenticated: true,
    };
    /// Downstream calls (`/v1/downstream/…`, Microsoft's `/DownstreamApi…`): every check
    /// but the JSON body, since the caller's body is forwarded as it is.
    pub(crate) const FORWARDED_BODY: Policy = Policy {
        browser_checks: true,
        local_only: true,
        json_body: false,
        authenticated: true,
    };
    /// Probes (`/healthz`, `/readyz`): answered to anyone (the kubelet probes from the
    /// node's address with the pod's IP as `Host`); they carry no token and no secret.
    pub(crate) const PROBE: Policy = Policy {
        browser_checks: false,
        local_only: false,
        json_body: false,
        authenticated: false,
    };
    /// `/v1/backchannel-logout`: posted by the provider (remote, form-encoded) with its
    /// own proof, a logout token signed by the provider and validated by the route.
    pub(crate) const SIGNED_BY_PROVIDER: Policy = Policy {
        browser_checks: true,
        local_only: false,
        json_body: false,
        authenticated: false,
    };
}

/// The policy of a request path. Every path not named here gets [`Policy::CALLER`].
pub(crate) fn policy(path: &str) -> Policy {
    match path {
        "/healthz" | "/readyz" => Policy::PROBE,
        "/v1/backchannel-logout" => Policy::SIGNED_BY_PROVIDER,
        // Downstream calls forward the caller's body, of any content type.
        p if p.starts_with("/v1/downstream/")
            || p.starts_with("/DownstreamApi/")
            || p.starts_with("/DownstreamApiUnauthenticated/") =>
        {
            Policy::FORWARDED_BODY
        }
        _ => Policy::CALLER,
    }
}

/// Around every request: the route's policy, then the request timeout, the metrics
/// and the access log (debug level: method, route, status, time; never a header).
pub(crate) async fn guard(State(st): State<Shared>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = Route::of(request.uri().path());
    let method = request.method().clone();
    let peer = request
        .extensions()
        .get::<Peer>()
        .copied()
        .unwrap_or(Peer::Remote);
    let is_post = request.method() == Method::POST;
    let path = request.uri().path().to_owned();
    let (response, refused_here) = match check(&st, &path, is_post, request.headers(), peer).await {
        Err(r) => (r, true),
        Ok(()) => match tokio::time::timeout(st.request_timeout, next.run(request)).await {
            Ok(r) => (r, false),
            Err(_) => {
                let mut r = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    &format!(
                        "no answer within the request timeout ({:?})",
                        st.request_timeout
                    ),
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                (r, true)
            }
        },
    };
    // Microsoft's routes answer their errors as problem details, the guard's included.
    let response = if refused_here && route.is_compat() {
        crate::compat::problem_of(response).await
    } else {
        response
    };
    let took = started.elapsed();
    st.metrics.request(route, response.status().as_u16(), took);
    tracing::debug!(%method, route = ?route, status = response.status().as_u16(), micros = took.as_micros() as u64, "request");
    response
}

/// The checks of the request's policy, in the documented order.
async fn check(
    st: &Shared,
    path: &str,
    is_post: bool,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<(), Response> {
    if headers_too_large(headers) {
        return Err(error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_too_large",
            &format!("a header is over {MAX_HEADER_BYTES} bytes, or all of them over {MAX_HEADERS_BYTES}"),
        ));
    }
    let p = policy(path);
    if p.browser_checks {
        if peer != Peer::Unix && !host_allowed(headers, &st.access.allowed_hosts) {
            return Err(error(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "the Host header is not a loopback name or address, nor in allowed_hosts",
            ));
        }
        if !origin_allowed(headers, &st.access.allowed_origins) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "requests from web pages are refused (the Origin is not in allowed_origins)",
            ));
        }
    }
    if p.local_only && peer == Peer::Remote && !st.access.allow_remote_callers {
        return Err(error(
            StatusCode::FORBIDDEN,
            "remote_caller",
            "only callers on this machine (loopback, unix socket) are served; see allow_remote_callers",
        ));
    }
    if p.json_body && is_post && !is_json(headers) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        ));
    }
    if p.authenticated {
        match &st.access.caller_key {
            Some(want) if !key_ok(headers, CALLER_KEY_HEADER, want) => {
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_caller_key",
                    "send the configured caller key in X-Tokencache-Key",
                ));
            }
            Some(_) => {}
            None if peer == Peer::Remote => {
                // allow_remote_callers without a caller key: the configuration
                // guarantees [inbound]; the caller proves itself with its token.
                let Some(inbound) = &st.inbound else {
                    return Err(error(
                        StatusCode::FORBIDDEN,
                        "remote_caller",
                        "remote callers need a caller key or [inbound]",
                    ));
                };
                let token = bearer(headers).map_err(|r| *r)?;
                inbound.validate(token).await.map_err(refused)?;
            }
            None => {}
        }
    }
    Ok(())
}

/// Whether the single `header` holds the key whose SHA-256 is `want` (compared in
/// constant time, whatever its length).
pub(crate) fn key_ok(headers: &HeaderMap, header: &str, want: &[u8; 32]) -> bool {
    let mut sent = headers.get_all(header).iter();
    match (sent.next(), sent.next()) {
        (Some(v), None) => {
            let got: [u8; 32] = Sha256::digest(v.as_bytes()).into();
            bool::from(got.ct_eq(want))
        }
        _ => false,
    }
}

pub(crate) fn headers_too_large(headers: &HeaderMap) -> bool {
    let mut total = 0;
    for (name, value) in headers {
        let len = value.len();
        if len > MAX_HEADER_BYTES {
            return true;
        }
        total += name.as_str().len() + len;
    }
    total > MAX_HEADERS_BYTES
}

/// `Content-Type: application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// One `Host` header naming a loopback host (`localhost`, `*.localhost`, a loopback
/// address; any port) or one of `allowed` (with or without the port).
pub(crate) fn host_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let mut all = headers.get_all(HOST).iter();
    let value = match (all.next(), all.next()) {
        (Some(v), None) => v,
        _ => return false,
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim().to_ascii_lowercase();
    let host = host_part(&value);
    if allowed.iter().any(|a| *a == value || a == host) {
        return true;
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| Peer::of_ip(ip) == Peer::Loopback)
}

/// The host of a `Host` value, without its port (`[::1]:80` → `[::1]`).
fn host_part(value: &str) -> &str {
    if value.starts_with('[') {
        return match value.find(']') {
            Some(i) => &value[..=i],
            None => value,
        };
    }
    match value.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => value,
    }
}

/// No `Origin` header, or one whose value is in `allowed`.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let mut all = headers.get_all(ORIGIN).iter();
    match (all.next(), all.next()) {
        (None, _) => true,
        (Some(v), None) => v.to_str().is_ok_and(|o| {
            let o = o.trim().to_ascii_lowercase();
            allowed.contains(&o)
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: axum::http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_are_loopback_or_listed() {
        let allowed = vec!["tc.internal".to_string(), "api.example:8443".to_string()];
        for ok in [
            "localhost",
            "LOCALHOST:8707",
            "app.localhost:1",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8707",
            "[::1]",
            "tc.internal:9",
            "api.example:8443",
        ] {
            assert!(host_allowed(&with(HOST, &[ok]), &allowed), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8707",
            "localhost.attacker.example",
            "10.0.0.1:8707",
            "[::2]",
            "api.example:80",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!host_allowed(&with(HOST, &[bad]), &allowed), "{bad}");
        }
        assert!(!host_allowed(&HeaderMap::new(), &allowed));
        assert!(!host_allowed(
            &with(HOST, &["localhost", "localhost"]),
            &allowed
        ));
    }

    #[test]
    fn origins_are_refused_unless_listed() {
        let allowed = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&HeaderMap::new(), &allowed));
        assert!(origin_allowed(
            &with(ORIGIN, &["https://APP.example"]),
            &allowed
        ));
        for bad in ["null", "https://evil.example", "http://localhost:3000"] {
            assert!(!origin_allowed(&with(ORIGIN, &[bad]), &allowed), "{bad}");
        }
    }

    #[test]
    fn json_bodies_only_and_new_routes_get_every_check() {
        assert!(is_json(&with(CONTENT_TYPE, &["application/json"])));
        assert!(is_json(&with(
            CONTENT_TYPE,
            &["Application/JSON; charset=utf-8"]
        )));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
        ] {
            assert!(!is_json(&with(CONTENT_TYPE, &[bad])), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
        assert_eq!(policy("/v1/some-new-route"), Policy::CALLER);
        assert_eq!(policy("/metrics"), Policy::CALLER);
        assert_eq!(policy("/v1/authorization-header/x"), Policy::CALLER);
        assert_eq!(policy("/healthz"), Policy::PROBE);
    }

    #[test]
    fn peers_of_ips() {
        assert_eq!(Peer::of_ip("127.0.0.1".parse().unwrap()), Peer::Loopback);
        assert_eq!(Peer::of_ip("::1".parse().unwrap()), Peer::Loopback);
        assert_eq!(
            Peer::of_ip("::ffff:127.0.0.1".parse().unwrap()),
            Peer::Loopback
        );
        assert_eq!(Peer::of_ip("10.1.2.3".parse().unwrap()), Peer::Remote);
        assert_eq!(Peer::of_ip("0.0.0.0".parse().unwrap()), Peer::Remote);
    }
}
