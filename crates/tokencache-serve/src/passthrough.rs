//! `ANY /v1/downstream/{api}[/{path…}]`: the transparent pass-through (issue 23). The
//! caller's method, query, body and a short allow-list of its headers go to the API's
//! `base_url` with the API's token ([`crate::downstream::send`]); the downstream's status,
//! headers (no hop-by-hop ones, no `Set-Cookie`) and body come back, the body streamed
//! and cut at `max_response_bytes`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokencache::acquire::AcquireOptions;

use crate::downstream::{
    connection_named, passes_back, read_body, send, target, too_large, unknown_api, Call, Failure,
    FORWARDED,
};
use crate::routes::{AppState, Shared};

/// `ANY /v1/downstream/{api}[/{path…}]`: the pass-through.
pub(crate) async fn pass_through(State(st): State<Shared>, request: Request) -> Response {
    match pass(&st, request).await {
        Ok(r) => r,
        Err(f) => f.v1(),
    }
}

async fn pass(st: &AppState, request: Request) -> Result<Response, Failure> {
    let (parts, body) = request.into_parts();
    // the raw path: a percent-encoded `..` or `/` stays visible to target()
    let rest = parts
        .uri
        .path()
        .strip_prefix("/v1/downstream/")
        .unwrap_or_default();
    let (name, sub) = match rest.split_once('/') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let Some(api) = st.apis.get(name) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "unknown_api",
            unknown_api(name),
        ));
    };
    let Some(d) = api.downstream.as_deref() else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "no_downstream",
            "this API has no base_url: serve does not call it",
        ));
    };
    let relative = sub.unwrap_or(&d.config.relative_path);
    let url = target(&d.config.base_url, relative, parts.uri.query()).map_err(|p| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("path: {p}"),
        )
    })?;
    let assertion = if api.on_behalf_of {
        let token = crate::caller::caller_token(&parts.headers, api.obo_form)?;
        // [inbound] validates it before any cache lookup or token request
        crate::caller::validate(st, &token).await?;
        Some(token)
    } else {
        None
    };
    let body = read_body(body, d.config.max_request_bytes).await?;
    let mut headers = HeaderMap::new();
    for name in &FORWARDED {
        for v in parts.headers.get_all(name) {
            headers.append(name.clone(), v.clone());
        }
    }
    if !headers.contains_key(ACCEPT) {
        if let Some(a) = &d.config.accept_header {
            headers.insert(ACCEPT, a.clone());
        }
    }
    if !body.is_empty() && !headers.contains_key(CONTENT_TYPE) {
        if let Some(c) = &d.config.content_type {
            headers.insert(CONTENT_TYPE, c.clone());
        }
    }
    let answered = send(Call {
        st,
        name,
        api,
        downstream: d,
        assertion: assertion.as_deref(),
        scopes: api.scopes.clone(),
        options: AcquireOptions::default(),
        method: parts.method.clone(),
        url,
        headers,
        body,
    })
    .await?;
    let cap = d.config.max_response_bytes;
    let resp = answered.response;
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large(cap));
    }
    let status = resp.status();
    let named = connection_named(resp.headers());
    let mut out_headers = HeaderMap::new();
    for (n, v) in resp.headers() {
        if passes_back(n, &named) {
            out_headers.append(n.clone(), v.clone());
        }
    }
    let permit = answered.permit;
    let mut seen = 0usize;
    let stream = resp.bytes_stream().map(move |chunk| {
        let _slot = &permit;
        match chunk {
            Ok(b) => {
                seen += b.len();
                if seen > cap {
                    Err(std::io::Error::other(
                        "the downstream answer is over max_response_bytes",
                    ))
                } else {
                    Ok(b)
                }
            }
            Err(e) => Err(std::io::Error::other(e.without_url())),
        }
    });
    let mut r = (status, Body::from_stream(stream)).into_response();
    *r.headers_mut() = out_headers;
    Ok(r)
}
