//! Downstream calls through `tokencache serve` (issue 23), with real processes: the
//! built binary, `redis-server`, `oidc-provider`, and a downstream HTTP server in the test
//! that records every request it receives (tests/support).
//!
//! What is proven: the method, path, query, body and content type reach the downstream;
//! the downstream gets the app or OBO token and nothing else of the caller's (no caller
//! `Authorization`, no cookies, no forwarding headers); the answer comes back with its
//! status and headers, without hop-by-hop ones and `Set-Cookie`; a claims challenge gets
//! exactly one new token request carrying the claims, then one retry; a redirect is
//! returned, not followed; no path a caller sends makes serve call another host; caps and
//! timeouts answer their documented errors.

use std::path::{Path, PathBuf};

use testkit::{OidcProvider, RedisServer};

mod common;
mod support;

use common::*;
use support::*;

/// `orders` (app tokens) and `orders-obo` (on behalf of the caller), both calling
/// `downstream` under `/base/`, plus `extra` lines in each API.
fn downstream_config(
    dir: &Path,
    op: &OidcProvider,
    store: &str,
    downstream: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("downstream-{}.toml", rand_suffix()));
    let issuer = op.issuer();
    std::fs::write(
        &path,
        format!(
            r#"store = "{store}"

# the tokens callers forward are validated against the test provider (as user_token mints them)
[inbound]
issuer = "{issuer}"
audiences = ["app"]

[apis.orders]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
base_url = "{downstream}/base/"
relative_path = "orders?top=1"
{extra}

[apis.orders-obo]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
on_behalf_of = true
base_url = "{downstream}/base/"
relative_path = "me"
{extra}

[apis.no-downstream]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
"#
        ),
    )
    .unwrap();
    path
}

fn app_header(addr: &str) -> String {
    let a = request(addr, "GET", "/v1/authorization-header/orders", &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    header_of(&a)
}

#[test]
fn pass_through_forwards_the_call_with_only_the_token_and_answers_as_the_downstream() {
    let spec = openapi();
    let redis = RedisServer::start();
    let op = OidcProvider::start();
    let down = Recorder::start(|_, r| {
        response(
            201,
            &[
                ("Content-Type", "application/json"),
                ("X-Custom", "kept"),
                ("Set-Cookie", "session=downstream-secret"),
                ("Keep-Alive", "timeout=5"),
                ("ETag", "\"v1\""),
            ],
            if r.method == "POST" {
                r#"{"created":true}"#
            } else {
                r#"{"me":"user1"}"#
            },
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(dir.path(), &op, &redis.url(), &down.base(), "");
    let serve = Serve::start(&cfg, &[]);

    // app token: POST with a body, a query, and the caller's own credentials
    let body = r#"{"item":"book","qty":2}"#;
    let req = format!(
        "POST /v1/downstream/orders/items/42?x=1&y=a%2Fb HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: Bearer caller-own-token\r\nCookie: sid=caller-cookie\r\nX-Forwarded-For: 10.0.0.1\r\n\
         X-Secret-Header: caller-secret\r\nAccept: application/json\r\nIf-Match: \"v0\"\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        serve.addr,
        body.len()
    );
    let a = exchange(&serve.addr, &req).unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body, r#"{"created":true}"#);
    assert_eq!(a.header("x-custom"), Some("kept"));
    assert_eq!(a.header("etag"), Some("\"v1\""));
    assert_eq!(a.header("set-cookie"), None, "Set-Cookie passed back");
    assert_eq!(
        a.header("keep-alive"),
        None,
        "a hop-by-hop header passed back"
    );
    let got = down.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/base/items/42?x=1&y=a%2Fb");
    assert_eq!(r.body, body.as_bytes());
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("if-match"), Some("\"v0\""));
    assert_eq!(r.headers_named("authorization"), 1);
    let app = app_header(&serve.addr);
    assert_eq!(
        r.header("authorization"),
        Some(app.as_str()),
        "not the app token"
    );
    for (k, v) in &r.headers {
        for theirs in [
            "caller-own-token",
            "caller-cookie",
            "10.0.0.1",
            "caller-secret",
        ] {
            assert!(
                !v.contains(theirs),
                "the caller's {k} reached the downstream"
            );
        }
    }
    assert_eq!(r.header("cookie"), None);
    assert_eq!(r.header("x-forwarded-for"), None);

    // without a path: the configured relative_path; the caller's query is added
    let a = request(&serve.addr, "GET", "/v1/downstream/orders?z=9", &[], None);
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(down.requests()[1].target, "/base/orders?top=1&z=9");
    assert_eq!(down.requests()[1].method, "GET");

    // OBO: the user's token is exchanged; the downstream gets the OBO token, never the user's
    let user = user_token(&op, "user1");
    let bearer = format!("Bearer {user}");
    let a = request(
        &serve.addr,
        "GET",
        "/v1/downstream/orders-obo",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body, r#"{"me":"user1"}"#);
    let r = &down.requests()[2];
    assert_eq!(r.target, "/base/me");
    let sent = r.header("authorization").unwrap().to_string();
    assert!(sent.starts_with("Bearer ey"), "not a token");
    assert!(
        !sent.contains(&user),
        "the caller's token reached the downstream"
    );
    let obo = request(
        &serve.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(header_of(&obo), sent, "not the cached OBO token");
    assert_eq!(grants(&op, OBO), 1);
    for (_, v) in &r.headers {
        assert!(!v.contains(&user));
    }

    // an OBO API without the caller's token: 401, the downstream not called
    let before = down.count();
    let a = request(&serve.addr, "GET", "/v1/downstream/orders-obo", &[], None);
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "get",
        &a,
        401,
        "missing_token",
    );
    assert_eq!(down.count(), before);

    // unknown API, an API without base_url: 404 in /v1's shape
    let a = request(&serve.addr, "GET", "/v1/downstream/nope/x", &[], None);
    assert_error(&spec, "/v1/downstream/{api}", "get", &a, 404, "unknown_api");
    let a = request(
        &serve.addr,
        "DELETE",
        "/v1/downstream/no-downstream",
        &[],
        None,
    );
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "delete",
        &a,
        404,
        "no_downstream",
    );

    // no token nor secret in the logs
    let logs = serve.logs();
    for s in [&app[7..], &sent[7..], &user, SECRET] {
        assert!(!logs.contains(s), "a secret reached the logs");
    }
}

#[test]
fn a_claims_challenge_gets_one_new_token_with_the_claims_then_one_retry() {
    let op = OidcProvider::start();
    let claims = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
    let b64 = "eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19";
    let challenge = format!(
        "Bearer realm=\"\", error=\"insufficient_claims\", error_description=\"more claims\", claims=\"{b64}\""
    );
    // the first request of each token is challenged; the retry with a new token passes
    let seen_tokens = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let st = seen_tokens.clone();
    let down = Recorder::start(move |_, r| {
        let token = r.header("authorization").unwrap_or_default().to_string();
        let mut seen = st.lock().unwrap();
        let first_time = !seen.contains(&token);
        seen.push(token);
        if first_time && seen.len() == 1 {
            response(401, &[("WWW-Authenticate", challenge.as_str())], "")
        } else {
            response(200, &[("Content-Type", "text/plain")], "ok")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(dir.path(), &op, "memory://", &down.base(), "");
    let serve = Serve::start(&cfg, &[]);
    let a = request(&serve.addr, "GET", "/v1/downstream/orders", &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "ok");
    let got = down.requests();
    assert_eq!(got.len(), 2, "one request, one retry");
    assert_ne!(
        got[0].header("authorization"),
        got[1].header("authorization")
    );
    // exactly two token requests: the first, and the one with the claims
    assert_eq!(grants(&op, CC), 2);
    let stats = provider_stats(&op);
    let sent: Vec<&str> = stats["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(sent, [claims], "the claims did not reach the provider");

    // a downstream that keeps challenging: one retry, then its 401 is the answer
    let always = Recorder::start(move |_, _| {
        response(
            401,
            &[(
                "WWW-Authenticate",
                "Bearer error=\"insufficient_claims\", claims=\"eyJhIjoxfQ==\"",
            )],
            "",
        )
    });
    let cfg = downstream_config(dir.path(), &op, "memory://", &always.base(), "");
    let serve = Serve::start(&cfg, &[]);
    let before = grants(&op, CC);
    let a = request(&serve.addr, "GET", "/v1/downstream/orders", &[], None);
    assert_eq!(a.status, 401);
    assert!(a
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_claims"));
    assert_eq!(always.count(), 2);
    assert_eq!(
        grants(&op, CC),
        before + 2,
        "the first token and one with the claims"
    );
}

#[test]
fn a_redirect_is_returned_not_followed() {
    let op = OidcProvider::start();
    let elsewhere = Recorder::json(200, "{}");
    let location = format!("{}/next", elsewhere.base());
    let loc = location.clone();
    let down = Recorder::start(move |_, _| response(302, &[("Location", loc.as_str())], ""));
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(dir.path(), &op, "memory://", &down.base(), "");
    let serve = Serve::start(&cfg, &[]);
    let a = request(&serve.addr, "GET", "/v1/downstream/orders", &[], None);
    assert_eq!(a.status, 302);
    assert_eq!(a.header("location"), Some(location.as_str()));
    assert_eq!(down.count(), 1);
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");
}

#[test]
fn no_path_a_caller_sends_makes_serve_call_another_host() {
    let spec = openapi();
    let op = OidcProvider::start();
    let evil = Recorder::json(200, "{}");
    let down = Recorder::json(200, "{}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(dir.path(), &op, "memory://", &down.base(), "");
    let serve = Serve::start(&cfg, &[]);
    let evil_host = format!("127.0.0.1:{}", evil.port);
    let raw = |target: &str| {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            serve.addr
        );
        exchange(&serve.addr, &req).unwrap()
    };
    // paths that stay on the configured host
    for (path, want) in [
        (format!("//{evil_host}/x"), format!("/base/{evil_host}/x")),
        (format!("@{evil_host}/x"), format!("/base/@{evil_host}/x")),
        ("a@b/c".to_string(), "/base/a@b/c".to_string()),
    ] {
        let before = down.count();
        let a = raw(&format!("/v1/downstream/orders/{path}"));
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert_eq!(down.count(), before + 1);
        assert_eq!(down.requests().last().unwrap().target, want);
    }
    // paths refused before any call
    for path in [
        format!("http://{evil_host}/"),
        format!("https:%2F%2F{evil_host}"),
        "../../x".to_string(),
        "a/..".to_string(),
        "%2e%2e/x".to_string(),
        "a/%2E%2E/b".to_string(),
        "a%2fb".to_string(),
        "a%5cb".to_string(),
    ] {
        let before = down.count();
        let a = raw(&format!("/v1/downstream/orders/{path}"));
        assert_error(
            &spec,
            "/v1/downstream/{api}",
            "get",
            &a,
            400,
            "invalid_request",
        );
        assert_eq!(down.count(), before, "{path} was called");
    }
    // a spoofed Host header changes nothing either
    let req = format!(
        "GET /v1/downstream/orders HTTP/1.1\r\nHost: {evil_host}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(exchange(&serve.addr, &req).unwrap().status, 200);
    assert_eq!(evil.count(), 0, "serve called another host");
}

#[test]
fn caps_and_timeouts_answer_their_errors() {
    let spec = openapi();
    let op = OidcProvider::start();
    let big = "x".repeat(5000);
    let down = Recorder::start(move |_, r| {
        if r.target.ends_with("/slow") {
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        response(200, &[("Content-Type", "text/plain")], &big)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(
        dir.path(),
        &op,
        "memory://",
        &down.base(),
        "max_request_bytes = 100\nmax_response_bytes = 1000\ndownstream_timeout_ms = 300",
    );
    let serve = Serve::start(&cfg, &[]);
    let a = request(&serve.addr, "GET", "/v1/downstream/orders/big", &[], None);
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "get",
        &a,
        502,
        "response_too_large",
    );
    let body = format!("{{\"a\":\"{}\"}}", "y".repeat(200));
    let before = down.count();
    let a = request(
        &serve.addr,
        "POST",
        "/v1/downstream/orders/x",
        &[],
        Some(&body),
    );
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "post",
        &a,
        413,
        "payload_too_large",
    );
    assert_eq!(down.count(), before, "an oversized body was sent on");
    let a = request(&serve.addr, "GET", "/v1/downstream/orders/slow", &[], None);
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "get",
        &a,
        504,
        "downstream_timeout",
    );

    // a downstream that is not there: 502
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let cfg = downstream_config(
        dir.path(),
        &op,
        "memory://",
        &format!("http://127.0.0.1:{port}"),
        "",
    );
    let serve = Serve::start(&cfg, &[]);
    let a = request(&serve.addr, "GET", "/v1/downstream/orders", &[], None);
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "get",
        &a,
        502,
        "downstream_unavailable",
    );
}

#[test]
fn python_and_node_examples_call_an_api_through_serve() {
    let op = OidcProvider::start();
    let down = Recorder::start(|_, r| {
        let body = format!(
            "{{\"method\":\"{}\",\"target\":\"{}\",\"body\":{}}}",
            r.method,
            r.target,
            if r.body.is_empty() {
                "null".to_string()
            } else {
                String::from_utf8_lossy(&r.body).into_owned()
            }
        );
        response(200, &[("Content-Type", "application/json")], &body)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(dir.path(), &op, "memory://", &down.base(), "");
    let s = Serve::start(&cfg, &[]);
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let url = format!("http://{}", s.addr);
    let incoming = user_token(&op, "user7");
    let run = |program: &str, script: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .arg(format!("{examples}/{script}"))
            .args(args)
            .env("TOKENCACHE_URL", &url)
            .env("INCOMING_TOKEN", &incoming)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{script} {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!stdout.contains(&incoming));
        stdout
    };
    let out = run("python3", "python/downstream.py", &["orders", "items/7"]);
    assert!(out.contains("status: 200"), "{out}");
    assert!(out.contains(r#""target":"/base/items/7""#), "{out}");
    let out = run(
        "node",
        "node/downstream.mjs",
        &["orders", "items", r#"{"item":"book"}"#],
    );
    assert!(out.contains(r#""method":"POST""#), "{out}");
    assert!(out.contains(r#""body":{"item":"book"}"#), "{out}");
    let out = run("node", "node/downstream.mjs", &["orders-obo", "me"]);
    assert!(out.contains(r#""target":"/base/me""#), "{out}");
    let out = run("python3", "python/downstream.py", &["orders-obo"]);
    assert!(out.contains(r#""target":"/base/me""#), "{out}");
    // every call carried a token, never the caller's own
    let got = down.requests();
    assert_eq!(got.len(), 4);
    for r in &got {
        let sent = r.header("authorization").unwrap();
        assert!(sent.starts_with("Bearer ey") && !sent.contains(&incoming));
    }
    assert_eq!(grants(&op, CC), 1);
    assert_eq!(grants(&op, OBO), 1);
}

#[test]
fn a_caller_that_goes_away_mid_answer_frees_its_connection_slot() {
    use std::io::{Read, Write};
    let op = OidcProvider::start();
    // /stream: a 13 MB chunked answer (far more than the socket buffers hold: the
    // recorder's write blocks until serve reads it); anything else: 200 at once
    let down = Recorder::start(|_, r| {
        if r.target.ends_with("/stream") {
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "z".repeat(65536));
            let mut r = String::from(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            for _ in 0..200 {
                r.push_str(&chunk);
            }
            r.push_str("0\r\n\r\n");
            r
        } else {
            response(200, &[], "ok")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = downstream_config(
        dir.path(),
        &op,
        "memory://",
        &down.base(),
        "max_connections = 1\ndownstream_timeout_ms = 20000\nmax_response_bytes = 104857600",
    );
    let serve = Serve::start(&cfg, &[]);
    // the first caller reads the head and a little of the body, then goes away
    let mut s = std::net::TcpStream::connect(&serve.addr).unwrap();
    write!(
        s,
        "GET /v1/downstream/orders/stream HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        serve.addr
    )
    .unwrap();
    let mut first = [0u8; 4096];
    let n = s.read(&mut first).unwrap();
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    drop(s);
    // its slot comes back: the only connection slot serves the next caller (a leaked
    // slot would answer 503 downstream_busy after the 20 s timeout)
    let a = request(&serve.addr, "GET", "/v1/downstream/orders/next", &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, "ok");
}
