//! The routes of Microsoft's token sidecar (Microsoft.Identity.Web.Sidecar, its contract
//! in `tests/microsoft-sidecar/Microsoft.Identity.Web.Sidecar.json`), over the same cache and acquisition as `/v1`:
//!
//! | route | answer |
//! |---|---|
//! | `GET /Validate` | `{"protocol": "Bearer", "token", "claims"}` |
//! | `GET /AuthorizationHeader/{apiName}` | `{"authorizationHeader": "Bearer …"}`, on behalf of the caller |
//! | `GET /AuthorizationHeaderUnauthenticated/{apiName}` | the same, an app token |
//! | `POST /DownstreamApi/{apiName}` | `{"statusCode", "headers": {name: [values]}, "content"}` |
//! | `POST /DownstreamApiUnauthenticated/{apiName}` | the same, with an app token |
//! | `GET /openapi/v1.json` | serve's OpenAPI document (both route families) |
//!
//! Per-call overrides are Microsoft's dotted query parameters (`optionsOverride.Scopes`,
//! repeatable, `…RequestAppToken`, `…RelativePath`, `…HttpMethod`, `…AcceptHeader`,
//! `…ContentType`, `…AcquireTokenOptions.Tenant|ForceRefresh|Claims|CorrelationId`), names
//! in any case. `optionsOverride.BaseUrl` is ignored, as Microsoft's is. Scopes go through
//! the API's allow-list ([`crate::downstream::allowed_scopes`]); `RequestAppToken` needs
//! `allow_app_token` on an on-behalf-of API. What serve cannot do is refused with 400
//! `not_supported`, never ignored: agent identities (`AgentIdentity`, `AgentUsername`,
//! `AgentUserId`), another tenant, proof-of-possession, FMI paths, long-running OBO
//! sessions, managed identity overrides, extra header or query parameters.
//!
//! Errors are RFC 9457 problem details (`application/problem+json`: `type`, `title`,
//! `status`, `detail`, and our `error` code): 400 bad input or an API not configured (as
//! Microsoft's answers "Not able to resolve"), 401 no or bad incoming token, or the
//! provider refusing (as Microsoft's), 413, 502/504 the downstream API failing, 503 the
//! provider unreachable.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use tokencache::acquire::{AcquireOptions, OboForm};

use crate::caller;
use crate::downstream::{self, allowed_scopes, Call, Failure};
use crate::routes::{json, Api, AppState, Shared};

/// Our OpenAPI document, served at `GET /openapi/v1.json`.
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Microsoft's routes (and `/openapi/v1.json`), to merge into the router.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/Validate", get(validate))
        .route("/AuthorizationHeader/{apiName}", get(header_user))
        .route(
            "/AuthorizationHeaderUnauthenticated/{apiName}",
            get(header_app),
        )
        .route("/DownstreamApi/{apiName}", post(downstream_user))
        .route(
            "/DownstreamApiUnauthenticated/{apiName}",
            post(downstream_app),
        )
        .route("/openapi/v1.json", get(openapi))
}

/// An RFC 9457 problem: `type` (`urn:tokencache:problem:<code>`), `title` (the status's
/// reason), `status`, `detail`, and `error` (the code, as `/v1`'s answers carry it).
/// A `/v1`-shaped error answer (`{"error", "error_description"}`, as the guard answers)
/// as problem details, with its status, challenge and `Retry-After`.
pub(crate) async fn problem_of(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct V1 {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let (code, detail) = match serde_json::from_slice::<V1>(&bytes) {
        Ok(v) => (v.error, v.error_description),
        Err(_) => ("error".to_string(), String::new()),
    };
    let mut r = problem(Failure::new(parts.status, &code, detail));
    for name in [
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::header::RETRY_AFTER,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            r.headers_mut().insert(name, v.clone());
        }
    }
    r
}

pub(crate) fn problem(f: Failure) -> Response {
    #[derive(Serialize)]
    struct Problem<'a> {
        #[serde(rename = "type")]
        kind: String,
        title: &'a str,
        status: u16,
        detail: &'a str,
        error: &'a str,
    }
    let body = Problem {
        kind: format!("urn:tokencache:problem:{}", f.code_for_type()),
        title: f.status.canonical_reason().unwrap_or("Error"),
        status: f.status.as_u16(),
        detail: &f.detail,
        error: &f.code,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = (
        f.status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response();
    f.decorate(r.headers_mut());
    r
}

impl Failure {
    /// The code as a URN segment (a provider's OAuth code may hold anything).
    fn code_for_type(&self) -> String {
        self.code
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect()
    }

    /// For Microsoft's routes: a provider refusing the request is a 401, as Microsoft's
    /// sidecar answers its MSAL errors.
    fn compat(mut self) -> Self {
        if self.status == StatusCode::BAD_GATEWAY && self.challenge.is_none() && self.is_oauth {
            self.status = StatusCode::UNAUTHORIZED;
        }
        self
    }
}

fn bad(code: &str, detail: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, code, detail)
}

fn not_supported(detail: impl Into<String>) -> Failure {
    bad("not_supported", detail)
}

/// The `optionsOverride.*` parameters of one request.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Overrides {
    scopes: Vec<String>,
    request_app_token: bool,
    relative_path: Option<String>,
    http_method: Option<String>,
    accept_header: Option<String>,
    content_type: Option<String>,
    tenant: Option<String>,
    force_refresh: bool,
    claims: Option<String>,
}

/// At most this many query parameters.
const MAX_PARAMETERS: usize = 64;

/// Parses the query: `optionsOverride.*` (any case) and the refused agent parameters.
pub(crate) fn overrides(query: Option<&str>) -> Result<Overrides, Failure> {
    let mut o = Overrides::default();
    let Some(q) = query else { return Ok(o) };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.len() > MAX_PARAMETERS {
        return Err(bad(
            "invalid_request",
            format!("more than {MAX_PARAMETERS} query parameters"),
        ));
    }
    let boolean = |k: &str, v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad("invalid_request", format!("{k} is true or false"))),
    };
    for (key, value) in pairs {
        let shown_key = if downstream::shown(&key) {
            key.clone()
        } else {
            "a query parameter".to_string()
        };
        let lower = key.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "agentidentity" | "agentusername" | "agentuserid"
        ) {
            return Err(not_supported(format!(
                "{shown_key}: agent identities are not supported by tokencache serve"
            )));
        }
        let Some(path) = lower.strip_prefix("optionsoverride.") else {
            return Err(bad(
                "invalid_request",
                format!("{shown_key} is not a parameter of this route (optionsOverride.* and nothing else)"),
            ));
        };
        let last = |slot: &mut Option<String>| {
            *slot = Some(value.clone()).filter(|v| !v.is_empty());
        };
        match path {
            "scopes" => {
                if !value.trim().is_empty() {
                    o.scopes.push(value.trim().to_string());
                }
            }
            "requestapptoken" => o.request_app_token = boolean(&key, &value)?,
            // Fixed by configuration, as Microsoft's sidecar does: never a caller's.
            "baseurl" => tracing::debug!("optionsOverride.BaseUrl ignored"),
            "relativepath" => last(&mut o.relative_path),
            "httpmethod" => last(&mut o.http_method),
            "acceptheader" => last(&mut o.accept_header),
            "contenttype" => last(&mut o.content_type),
            "acquiretokenoptions.tenant" => last(&mut o.tenant),
            "acquiretokenoptions.forcerefresh" => o.force_refresh = boolean(&key, &value)?,
            "acquiretokenoptions.claims" => last(&mut o.claims),
            // Only ever part of Microsoft's logs.
            "acquiretokenoptions.correlationid" => {}
            "acquiretokenoptions.longrunningwebapisessionkey"
            | "acquiretokenoptions.fmipath"
            | "acquiretokenoptions.poppublickey"
            | "acquiretokenoptions.popclaim"
            | "acquiretokenoptions.managedidentity.userassignedclientid" => {
                return Err(not_supported(format!(
                    "{shown_key} is not supported by tokencache serve"
                )))
            }
            p if p.starts_with("extraheaderparameters.")
                || p.starts_with("extraqueryparameters.")
                || p.starts_with("acquiretokenoptions.extraparameters") =>
            {
                return Err(not_supported(
                    "extra header, query or token parameters are not supported by tokencache serve (configure headers per API)",
                ))
            }
            _ => {
                return Err(bad(
                    "invalid_request",
                    format!("{shown_key} is not an override tokencache serve knows"),
                ))
            }
        }
    }
    Ok(o)
}

/// What one request resolves to: the API, the flow, the scopes, the options.
struct Resolved<'a> {
    name: &'a str,
    api: &'a Api,
    assertion: Option<String>,
    scopes: Vec<String>,
    options: AcquireOptions,
    overrides: Overrides,
}

/// The API by name, the overrides checked, the caller's token when the flow is OBO.
async fn resolve<'a>(
    st: &'a AppState,
    name: &'a str,
    user_route: bool,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Resolved<'a>, Failure> {
    let Some(api) = st.apis.get(name) else {
        // Microsoft's sidecar answers an unknown name with 400 "Not able to resolve".
        let detail = if downstream::shown(name) {
            format!("Not able to resolve '{name}': no API of that name is configured.")
        } else {
            "Not able to resolve the API: no API of that name is configured.".to_string()
        };
        return Err(bad("unknown_api", detail));
    };
    let o = overrides(query)?;
    if let Some(t) = &o.tenant {
        if !t.eq_ignore_ascii_case(&api.acquirer.authority().tenant) {
            return Err(not_supported(
                "optionsOverride.AcquireTokenOptions.Tenant: tokens for another tenant than the API's configured authority are not supported",
            ));
        }
    }
    let scopes = if o.scopes.is_empty() {
        api.scopes.clone()
    } else {
        allowed_scopes(api, &o.scopes).map_err(|p| bad("invalid_scope", p))?;
        o.scopes.clone()
    };
    // The flow: on behalf of the caller on the user routes of an OBO API, unless the app's
    // own token is asked for (and allowed).
    let app = !api.on_behalf_of || !user_route || o.request_app_token;
    if api.on_behalf_of && app && !api.allow_app_token {
        return Err(if user_route {
            bad(
                "app_token_not_allowed",
                "optionsOverride.RequestAppToken: this API acts on behalf of the user only (allow_app_token is not set)",
            )
        } else {
            Failure {
                challenge: Some("Bearer"),
                ..Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "user_required",
                    "this API acts on behalf of the user only: call /AuthorizationHeader or /DownstreamApi with the user's token",
                )
            }
        });
    }
    // Microsoft's user routes need an authenticated caller, whichever token they get.
    let assertion = if user_route {
        let form = if app {
            OboForm::TokenExchange
        } else {
            api.obo_form
        };
        let token = caller::caller_token(headers, form)?;
        // [inbound] validates it before any cache lookup or token request
        caller::validate(st, &token).await?;
        (!app).then_some(token)
    } else {
        None
    };
    let options = match &o.claims {
        Some(c) => {
            if c.len() > 8192
                || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(c).is_err()
            {
                return Err(bad(
                    "invalid_request",
                    "optionsOverride.AcquireTokenOptions.Claims is not a JSON object of at most 8 KiB",
                ));
            }
            AcquireOptions::claims(c)
        }
        None if o.force_refresh => AcquireOptions::force_refresh(),
        None => AcquireOptions::default(),
    };
    Ok(Resolved {
        name,
        api,
        assertion,
        scopes,
        options,
        overrides: o,
    })
}

/// The path's `apiName` (raw: API names are plain characters).
fn api_name(request: &Request, prefix: &str) -> String {
    request
        .uri()
        .path()
        .strip_prefix(prefix)
        .unwrap_or_default()
        .to_string()
}

async fn header_user(State(st): State<Shared>, request: Request) -> Response {
    let name = api_name(&request, "/AuthorizationHeader/");
    header(&st, &name, true, request.into_parts().0).await
}

async fn header_app(State(st): State<Shared>, request: Request) -> Response {
    let name = api_name(&request, "/AuthorizationHeaderUnauthenticated/");
    header(&st, &name, false, request.into_parts().0).await
}

async fn header(st: &AppState, name: &str, user_route: bool, parts: Parts) -> Response {
    let result = async {
        let r = resolve(st, name, user_route, &parts.headers, parts.uri.query()).await?;
        let value = downstream::token(
            st,
            r.name,
            r.api,
            r.assertion.as_deref(),
            &r.scopes,
            &r.options,
        )
        .await?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer<'a> {
            authorization_header: &'a str,
        }
        let text = value.to_str().map_err(|_| {
            Failure::new(
                StatusCode::BAD_GATEWAY,
                "bad_provider_response",
                "the provider's token is not a valid header value",
            )
        })?;
        Ok::<_, Failure>(json(
            StatusCode::OK,
            &Answer {
                authorization_header: text,
            },
        ))
    }
    .await;
    result.unwrap_or_else(|f| problem(f.compat()))
}

async fn downstream_user(State(st): State<Shared>, request: Request) -> Response {
    let name = api_name(&request, "/DownstreamApi/");
    call(&st, &name, true, request).await
}

async fn downstream_app(State(st): State<Shared>, request: Request) -> Response {
    let name = api_name(&request, "/DownstreamApiUnauthenticated/");
    call(&st, &name, false, request).await
}

/// A header name as .NET shows it (`content-type` → `Content-Type`), as clients of
/// Microsoft's sidecar read the envelope's headers.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Microsoft's envelope of a downstream answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status_code: u16,
    headers: serde_json::Map<String, serde_json::Value>,
    content: Option<String>,
}

async fn call(st: &AppState, name: &str, user_route: bool, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        let r = resolve(st, name, user_route, &parts.headers, parts.uri.query()).await?;
        let Some(d) = r.api.downstream.as_deref() else {
            return Err(bad(
                "no_downstream",
                format!(
                    "the API {} has no base_url: serve does not call it",
                    if downstream::shown(name) {
                        name
                    } else {
                        "named"
                    }
                ),
            ));
        };
        let o = &r.overrides;
        let relative = o
            .relative_path
            .as_deref()
            .unwrap_or(&d.config.relative_path);
        let url = downstream::target(&d.config.base_url, relative, None).map_err(|p| {
            bad(
                "invalid_request",
                format!("optionsOverride.RelativePath: {p}"),
            )
        })?;
        let method = match &o.http_method {
            Some(m) => downstream::parse_method(m).map_err(|p| {
                bad(
                    "invalid_request",
                    format!("optionsOverride.HttpMethod: {p}"),
                )
            })?,
            None => d.config.http_method.clone(),
        };
        let mut headers = HeaderMap::new();
        let value = |what: &str, v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                bad(
                    "invalid_request",
                    format!("{what} is not a valid header value"),
                )
            })
        };
        match &o.accept_header {
            Some(a) => {
                headers.insert(ACCEPT, value("optionsOverride.AcceptHeader", a)?);
            }
            None => {
                if let Some(a) = &d.config.accept_header {
                    headers.insert(ACCEPT, a.clone());
                }
            }
        }
        // As Microsoft's: the body is read (and sent on) when the request names its type.
        let sent_type = parts.headers.get(CONTENT_TYPE).cloned();
        let body = match &sent_type {
            Some(_) => downstream::read_body(body, d.config.max_request_bytes).await?,
            None => {
                drop(body);
                Default::default()
            }
        };
        if let Some(sent) = sent_type {
            let ctype = match &o.content_type {
                Some(c) => value("optionsOverride.ContentType", c)?,
                None => sent,
            };
            headers.insert(CONTENT_TYPE, ctype);
        }
        let answered = downstream::send(Call {
            st,
            name: r.name,
            api: r.api,
            downstream: d,
            assertion: r.assertion.as_deref(),
            scopes: r.scopes.clone(),
            options: r.options.clone(),
            method,
            url,
            headers,
            body,
        })
        .await?;
        let status = answered.response.status().as_u16();
        let named = downstream::connection_named(answered.response.headers());
        let mut out = serde_json::Map::new();
        for (n, v) in answered.response.headers() {
            if !downstream::passes_back(n, &named) {
                continue;
            }
            let v = serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned());
            match out
                .entry(title_case(n.as_str()))
                .or_insert_with(|| serde_json::Value::Array(Vec::new()))
            {
                serde_json::Value::Array(a) => a.push(v),
                _ => unreachable!("only arrays are inserted"),
            }
        }
        let bytes = downstream::read_answer(answered.response, d.config.max_response_bytes).await?;
        drop(answered.permit);
        let content = (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned());
        Ok(json(
            StatusCode::OK,
            &Envelope {
                status_code: status,
                headers: out,
                content,
            },
        ))
    }
    .await;
    result.unwrap_or_else(|f| problem(f.compat()))
}

async fn validate(State(st): State<Shared>, request: Request) -> Response {
    match caller::validated(&st, request.headers()).await {
        Ok(v) => validate_answer(&v),
        Err(f) => problem(f),
    }
}

/// `{"protocol": "Bearer", "token", "claims"}`.
pub(crate) fn validate_answer(v: &caller::Validated) -> Response {
    #[derive(Serialize)]
    struct Answer<'a> {
        protocol: &'static str,
        token: &'a str,
        claims: &'a serde_json::Value,
    }
    json(
        StatusCode::OK,
        &Answer {
            protocol: "Bearer",
            token: &v.token,
            claims: &v.claims,
        },
    )
}

async fn openapi() -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from(OPENAPI),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_read_in_any_case_and_refused_when_unsupported() {
        let o = overrides(Some(
            "optionsOverride.Scopes=a&OPTIONSOVERRIDE.scopes=b&optionsOverride.RequestAppToken=True\
             &optionsOverride.BaseUrl=https%3A%2F%2Fevil.example&optionsOverride.RelativePath=me%2Fx\
             &optionsOverride.AcquireTokenOptions.ForceRefresh=true&optionsOverride.HttpMethod=post",
        ))
        .unwrap();
        assert_eq!(o.scopes, ["a", "b"]);
        assert!(o.request_app_token && o.force_refresh);
        assert_eq!(o.relative_path.as_deref(), Some("me/x"));
        assert_eq!(o.http_method.as_deref(), Some("post"));
        for (q, code) in [
            ("AgentIdentity=x", "not_supported"),
            ("agentusername=u%40x", "not_supported"),
            ("AgentUserId=6d1c", "not_supported"),
            (
                "optionsOverride.AcquireTokenOptions.PopPublicKey=k",
                "not_supported",
            ),
            (
                "optionsOverride.ExtraHeaderParameters.X-A=1",
                "not_supported",
            ),
            ("optionsOverride.Nope=1", "invalid_request"),
            ("scopes=a", "invalid_request"),
            ("optionsOverride.RequestAppToken=yes", "invalid_request"),
        ] {
            let f = overrides(Some(q)).unwrap_err();
            assert_eq!(
                (f.status, f.code.as_str()),
                (StatusCode::BAD_REQUEST, code),
                "{q}"
            );
        }
        let many = vec!["optionsOverride.Scopes=a"; MAX_PARAMETERS + 1].join("&");
        assert!(overrides(Some(&many)).is_err());
        // a hostile parameter name is not repeated
        let f = overrides(Some("%3Cscript%3E=1")).unwrap_err();
        assert!(!f.detail.contains("<script>"), "{}", f.detail);
    }

    #[test]
    fn envelope_header_names_are_title_case() {
        assert_eq!(title_case("content-type"), "Content-Type");
        assert_eq!(title_case("x-request-id"), "X-Request-Id");
        assert_eq!(title_case("etag"), "Etag");
        assert_eq!(title_case("www-authenticate"), "Www-Authenticate");
    }

    #[test]
    fn problems_are_rfc_9457() {
        let r = problem(Failure::new(StatusCode::BAD_REQUEST, "not_supported", "no"));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }
}
