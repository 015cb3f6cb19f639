//! A loopback stand-in for Azure's managed identity endpoints, which only exist inside
//! Azure. It follows Microsoft's documents of the two protocols exactly where a client
//! can tell:
//!
//! * App Service / Functions (`IDENTITY_ENDPOINT`, here `/msi/token`): `GET` with
//!   `api-version=2019-08-01`, `resource`, at most one of `client_id`, `principal_id`
//!   (alias `object_id`), `mi_res_id`, and the header `X-IDENTITY-HEADER` equal to
//!   `IDENTITY_HEADER`; answers `{"access_token", "expires_on" (a string of Unix
//!   seconds), "resource", "token_type": "Bearer", "client_id"}`; errors as
//!   `{"statusCode", "message"}`.
//! * IMDS (`/metadata/identity/oauth2/token`): `GET` with `api-version=2018-02-01`,
//!   `resource`, at most one of `client_id`, `object_id`, `msi_res_id`, the header
//!   `Metadata: true`, and no `X-Forwarded-For` (IMDS refuses proxied requests); answers
//!   also `expires_in`, `ext_expires_in`, `not_before` (strings) and an empty
//!   `refresh_token`; errors as `{"error", "error_description"}`.
//!
//! One system-assigned identity and one user-assigned identity ([`USER_ASSIGNED_CLIENT_ID`],
//! [`USER_ASSIGNED_OBJECT_ID`], [`USER_ASSIGNED_RESOURCE_ID`]). Faults can be queued
//! (a status with an optional `Retry-After`); every request is recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The user-assigned identity's client id.
pub const USER_ASSIGNED_CLIENT_ID: &str = "7d3c2b1a-0000-4000-8000-00000000c11e";
/// The user-assigned identity's object (principal) id.
pub const USER_ASSIGNED_OBJECT_ID: &str = "7d3c2b1a-0000-4000-8000-0000000000b1";
/// The user-assigned identity's Azure resource id.
pub const USER_ASSIGNED_RESOURCE_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uami";

/// Which protocol a request spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiProtocol {
    /// App Service / Functions.
    AppService,
    /// IMDS.
    Imds,
}

/// A request the endpoint received.
#[derive(Debug, Clone)]
pub struct MiRequest {
    /// Which protocol (by path).
    pub protocol: MiProtocol,
    /// The query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The status it was answered with.
    pub status: u16,
}

impl MiRequest {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a token is made for: the identity (`system` or `user`) and the resource.
pub type TokenMaker = dyn Fn(&str, &str) -> String + Send + Sync;

struct State {
    header: String,
    ttl: Duration,
    faults: Vec<(u16, Option<u64>)>,
    requests: Vec<MiRequest>,
    issued: u64,
    maker: Option<Arc<TokenMaker>>,
}

/// The endpoint, on `127.0.0.1:PORT` until dropped.
pub struct ManagedIdentityEndpoint {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for ManagedIdentityEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentityEndpoint")
            .field("port", &self.port)
            .finish()
    }
}

impl ManagedIdentityEndpoint {
    /// Starts it; tokens live 24 hours (as IMDS's do).
    pub fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            header: format!("identity-header-{port}"),
            ttl: Duration::from_secs(86_400),
            faults: Vec::new(),
            requests: Vec::new(),
            issued: 0,
            maker: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(c) = conn {
                    let s = s.clone();
                    std::thread::spawn(move || serve(c, &s));
                }
            }
        });
        Self { port, state, stop }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `IDENTITY_ENDPOINT` (App Service).
    pub fn identity_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/msi/token", self.port)
    }

    /// `IDENTITY_HEADER` (App Service).
    pub fn identity_header(&self) -> String {
        self.lock().header.clone()
    }

    /// The IMDS base URL (for `IMDS_ENDPOINT` / `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
    pub fn imds_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The lifetime of the tokens it issues from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.lock().ttl = ttl;
    }

    /// Makes the access tokens with `maker(identity, resource)` instead of opaque ones.
    pub fn set_token_maker(&self, maker: Arc<TokenMaker>) {
        self.lock().maker = Some(maker);
    }

    /// The next request is answered `status` (with `Retry-After: retry_after` seconds),
    /// after the ones already queued.
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>) {
        self.lock().faults.push((status, retry_after));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<MiRequest> {
        self.lock().requests.clone()
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.lock().issued
    }
}

impl Drop for ManagedIdentityEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // wake the accept loop
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone the stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    if length > 0 {
        let mut body = vec![0; length.min(1 << 16)];
        let _ = reader.read_exact(&mut body);
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let protocol = match path {
        "/msi/token" => MiProtocol::AppService,
        "/metadata/identity/oauth2/token" => MiProtocol::Imds,
        _ => {
            respond(&mut conn, 404, None, "{}");
            return;
        }
    };
    let (status, retry_after, body) = answer(state, protocol, method, &query, &headers);
    state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .push(MiRequest {
            protocol,
            query,
            headers,
            status,
        });
    respond(&mut conn, status, retry_after, &body);
}

fn respond(conn: &mut TcpStream, status: u16, retry_after: Option<u64>, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
}

fn answer(
    state: &Mutex<State>,
    protocol: MiProtocol,
    method: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
) -> (u16, Option<u64>, String) {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let app = protocol == MiProtocol::AppService;
    let error = |status: u16, code: &str, message: &str| {
        let body = if app {
            format!(
                "{{\"statusCode\":{status},\"message\":{}}}",
                json_str(message)
            )
        } else {
            format!(
                "{{\"error\":{},\"error_description\":{}}}",
                json_str(code),
                json_str(message)
            )
        };
        (status, None, body)
    };
    if method != "GET" {
        return error(405, "invalid_request", "only GET");
    }
    if app {
        if header("x-identity-header") != Some(s.header.as_str()) {
            return error(401, "unauthorized", "X-IDENTITY-HEADER is missing or wrong");
        }
        if param("api-version") != Some("2019-08-01") {
            return error(400, "invalid_request", "api-version must be 2019-08-01");
        }
    } else {
        if header("metadata") != Some("true") {
            return error(
                400,
                "invalid_request",
                "Required metadata header not specified",
            );
        }
        if header("x-forwarded-for").is_some() {
            return error(400, "invalid_request", "Proxied requests are refused");
        }
        if param("api-version") != Some("2018-02-01") {
            return error(400, "invalid_request", "Invalid API version");
        }
    }
    let Some(resource) = param("resource").filter(|r| !r.is_empty()) else {
        return error(
            400,
            "invalid_request",
            "Required audience parameter not specified",
        );
    };
    let names: &[&str] = if app {
        &["client_id", "principal_id", "object_id", "mi_res_id"]
    } else {
        &["client_id", "object_id", "msi_res_id"]
    };
    let given: Vec<(&str, &str)> = names
        .iter()
        .filter_map(|n| param(n).map(|v| (*n, v)))
        .collect();
    let who = match given.as_slice() {
        [] => "system",
        [(n, v)] => {
            let ok = match *n {
                "client_id" => *v == USER_ASSIGNED_CLIENT_ID,
                "principal_id" | "object_id" => *v == USER_ASSIGNED_OBJECT_ID,
                _ => v.eq_ignore_ascii_case(USER_ASSIGNED_RESOURCE_ID),
            };
            if !ok {
                return error(
                    400,
                    "invalid_request",
                    "Identity not found (no user-assigned managed identity with this id)",
                );
            }
            "user"
        }
        _ => {
            return error(
                400,
                "invalid_request",
                "only one of the identity parameters may be given",
            )
        }
    };
    if !s.faults.is_empty() {
        let (status, retry_after) = s.faults.remove(0);
        let (st, _, body) = error(status, "temporarily_unavailable", "injected fault");
        return (st, retry_after, body);
    }
    s.issued += 1;
    let token = match &s.maker {
        Some(m) => m(who, resource),
        None => format!("mi-token-{who}-{}", s.issued),
    };
    let ttl = s.ttl.as_secs();
    let now = now();
    let client_id = if who == "system" {
        "5e29463d-71da-4fe0-8e69-999b57db23b0"
    } else {
        USER_ASSIGNED_CLIENT_ID
    };
    let body = if app {
        format!(
            "{{\"access_token\":{},\"expires_on\":\"{}\",\"resource\":{},\"token_type\":\"Bearer\",\"client_id\":\"{client_id}\"}}",
            json_str(&token),
            now + ttl,
            json_str(resource)
        )
    } else {
        format!(
            "{{\"access_token\":{},\"refresh_token\":\"\",\"expires_in\":\"{ttl}\",\"expires_on\":\"{}\",\"ext_expires_in\":\"{ttl}\",\"not_before\":\"{now}\",\"resource\":{},\"token_type\":\"Bearer\",\"client_id\":\"{client_id}\"}}",
            json_str(&token),
            now + ttl,
            json_str(resource)
        )
    };
    (200, None, body)
}
