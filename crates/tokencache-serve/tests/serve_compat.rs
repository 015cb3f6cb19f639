//! Microsoft's sidecar routes on `tokencache serve` (issue 23), with real processes: the
//! built binary, `redis-server`, `oidc-provider` and a recording downstream server. Every
//! answer is validated against Microsoft's OpenAPI document
//! (`tests/microsoft-sidecar/Microsoft.Identity.Web.Sidecar.json`) and against ours
//! (`docs/openapi.json`).

use std::path::{Path, PathBuf};

use serde_json::Value;
use testkit::{OidcProvider, RedisServer};

mod common;
mod support;

use common::*;
use support::*;

fn compat_config(dir: &Path, op: &OidcProvider, store: &str, down: &str, top: &str) -> PathBuf {
    let path = dir.join(format!("compat-{}.toml", rand_suffix()));
    let issuer = op.issuer();
    std::fs::write(
        &path,
        format!(
            r#"store = "{store}"
{top}

# the tokens callers forward are validated against the test provider (as user_token mints them)
[inbound]
issuer = "{issuer}"
audiences = ["app"]

[apis.orders]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
base_url = "{down}/base"
relative_path = "orders"
http_method = "POST"

[apis.orders-obo]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
allowed_scopes = ["api.write"]
on_behalf_of = true
allow_app_token = true
base_url = "{down}/base"
relative_path = "me"

[apis.users-only]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
on_behalf_of = true
"#
        ),
    )
    .unwrap();
    path
}

/// Checks `a` against Microsoft's document and ours.
fn both(ms: &Value, ours: &Value, method: &str, ms_route: &str, our_route: &str, a: &Answer) {
    conforms_ms(
        ms,
        method,
        ms_route,
        a.status,
        a.header("content-type").unwrap_or(""),
        &a.body,
    );
    conforms(ours, method, our_route, a);
    if a.status >= 400 {
        assert_eq!(
            a.header("content-type"),
            Some("application/problem+json"),
            "{}",
            a.body
        );
        validate(
            ours,
            &ours["components"]["schemas"]["Problem"],
            &a.json(),
            our_route,
        );
        let p = a.json();
        assert_eq!(p["status"], a.status);
        assert_eq!(
            p["type"],
            format!("urn:tokencache:problem:{}", p["error"].as_str().unwrap())
        );
    }
}

/// The body of an error answer, for an assertion's message (a success may hold a token).
fn safe(a: &Answer) -> &str {
    if a.status >= 400 {
        &a.body
    } else {
        "<a success answer: not shown>"
    }
}

fn problem_code(a: &Answer) -> String {
    a.json()["error"].as_str().unwrap_or_default().to_string()
}

const H: &str = "/AuthorizationHeader/{apiName}";
const HU: &str = "/AuthorizationHeaderUnauthenticated/{apiName}";
const D: &str = "/DownstreamApi/{apiName}";
const DU: &str = "/DownstreamApiUnauthenticated/{apiName}";

#[test]
fn every_compatible_route_answers_as_microsofts_document_says() {
    let ms = microsoft_spec();
    let ours = openapi();
    let redis = RedisServer::start();
    let op = OidcProvider::start();
    let elsewhere = Recorder::json(200, "{}");
    let location = format!("{}/moved", elsewhere.base());
    let loc = location.clone();
    let down = Recorder::start(move |_, r| match r.target.as_str() {
        "/base/moved" => response(302, &[("Location", loc.as_str())], ""),
        "/base/empty" => response(204, &[], ""),
        _ => response(
            201,
            &[
                ("Content-Type", "application/json"),
                ("X-Request-Id", "r1"),
                ("Set-Cookie", "s=downstream"),
            ],
            r#"{"ok":true}"#,
        ),
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = compat_config(dir.path(), &op, &redis.url(), &down.base(), "");
    let serve = Serve::start(&cfg, &[]);
    let user = user_token(&op, "user1");
    let bearer = format!("Bearer {user}");
    let auth = [("Authorization", bearer.as_str())];

    // app token, unauthenticated route: the same token /v1 serves (one cache)
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeaderUnauthenticated/orders",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    both(&ms, &ours, "get", HU, HU, &a);
    let v1 = request(
        &serve.addr,
        "GET",
        "/v1/authorization-header/orders",
        &[],
        None,
    );
    assert_eq!(v1.json()["source"], "cache");
    assert_eq!(
        a.json()["authorizationHeader"],
        v1.json()["authorization_header"]
    );
    assert_eq!(grants(&op, CC), 1);

    // on behalf of the caller: the user route; the OBO token is /v1's too
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeader/orders-obo",
        &auth,
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    both(&ms, &ours, "get", H, H, &a);
    let obo = a.json()["authorizationHeader"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!obo.contains(&user));
    let v1 = request(
        &serve.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &auth,
        None,
    );
    assert_eq!(header_of(&v1), obo);
    assert_eq!(grants(&op, OBO), 1);
    // ... and without the caller's token: 401
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeader/orders-obo",
        &[],
        None,
    );
    assert_eq!(a.status, 401, "{}", a.body);
    both(&ms, &ours, "get", H, H, &a);
    assert_eq!(problem_code(&a), "missing_token");
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeader/orders-obo",
        &[("Authorization", "Bearer not-a-jwt")],
        None,
    );
    assert_eq!(
        (a.status, problem_code(&a).as_str()),
        (401, "invalid_token")
    );
    both(&ms, &ours, "get", H, H, &a);

    // downstream with the app token: configured method, body and type forwarded
    let body = r#"{"item":"book"}"#;
    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApiUnauthenticated/orders",
        &[],
        Some(body),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    both(&ms, &ours, "post", DU, DU, &a);
    let env = a.json();
    assert_eq!(env["statusCode"], 201);
    assert_eq!(env["content"], r#"{"ok":true}"#);
    assert_eq!(env["headers"]["X-Request-Id"], serde_json::json!(["r1"]));
    assert!(
        env["headers"].get("Set-Cookie").is_none(),
        "Set-Cookie passed back"
    );
    let r = down.requests().last().unwrap().clone();
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/base/orders")
    );
    assert_eq!(r.body, body.as_bytes());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        Some(r.header("authorization").unwrap()),
        v1_app(&serve.addr).as_deref()
    );

    // on behalf of the caller, with overrides; BaseUrl ignored
    let q = format!(
        "optionsOverride.RelativePath=items/7&optionsOverride.HttpMethod=Put&optionsOverride.AcceptHeader=text/plain\
         &optionsOverride.ContentType=application/merge-patch%2Bjson&optionsOverride.BaseUrl={}&optionsOverride.AcquireTokenOptions.CorrelationId=6d1c2e4f-0000-4000-8000-000000000000",
        elsewhere.base()
    );
    let a = request(
        &serve.addr,
        "POST",
        &format!("/DownstreamApi/orders-obo?{q}"),
        &[("Authorization", &bearer), ("Cookie", "c=caller")],
        Some(body),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    both(&ms, &ours, "post", D, D, &a);
    let r = down.requests().last().unwrap().clone();
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("PUT", "/base/items/7")
    );
    assert_eq!(r.header("accept"), Some("text/plain"));
    assert_eq!(
        r.header("content-type"),
        Some("application/merge-patch+json")
    );
    assert_eq!(r.header("authorization"), Some(obo.as_str()));
    assert_eq!(r.header("cookie"), None);
    assert_eq!(elsewhere.count(), 0, "BaseUrl was used");

    // no Content-Type: no body sent; an empty answer is content null
    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApiUnauthenticated/orders?optionsOverride.RelativePath=empty",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    both(&ms, &ours, "post", DU, DU, &a);
    assert_eq!(a.json()["statusCode"], 204);
    assert_eq!(a.json()["content"], Value::Null);
    assert!(down.requests().last().unwrap().body.is_empty());

    // a redirect is the answer, never followed
    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApiUnauthenticated/orders?optionsOverride.RelativePath=moved",
        &[],
        None,
    );
    both(&ms, &ours, "post", DU, DU, &a);
    assert_eq!(a.json()["statusCode"], 302);
    assert_eq!(
        a.json()["headers"]["Location"],
        serde_json::json!([location])
    );
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");

    // a RelativePath that would leave the host: refused, nothing called
    let before = (down.count(), elsewhere.count());
    // (query-encoded: http://127.0.0.1:PORT/x, ../x, %2e%2e/x, a\b)
    for rel in [
        format!("http%3A%2F%2F127.0.0.1%3A{}%2Fx", elsewhere.port),
        "..%2Fx".to_string(),
        "%252e%252e%2Fx".to_string(),
        "a%5Cb".to_string(),
    ] {
        let q = format!("optionsOverride.RelativePath={rel}");
        let a = request(
            &serve.addr,
            "POST",
            &format!("/DownstreamApiUnauthenticated/orders?{q}"),
            &[],
            None,
        );
        assert_eq!(
            (a.status, problem_code(&a).as_str()),
            (400, "invalid_request"),
            "{rel}: {}",
            safe(&a)
        );
        both(&ms, &ours, "post", DU, DU, &a);
    }
    for rel in ["%2F%2F127.0.0.1%3A1%2Fx", "%40evil.example"] {
        let a = request(
            &serve.addr,
            "POST",
            &format!("/DownstreamApiUnauthenticated/orders?optionsOverride.RelativePath={rel}"),
            &[],
            None,
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    assert_eq!(down.count(), before.0 + 2);
    assert_eq!(elsewhere.count(), before.1);

    // /Validate: [inbound] validated the caller's token; the answer carries its claims
    let a = request(&serve.addr, "GET", "/Validate", &auth, None);
    assert_eq!(a.status, 200, "{}", safe(&a));
    both(&ms, &ours, "get", "/Validate", "/Validate", &a);
    let v = a.json();
    assert_eq!(v["protocol"], "Bearer");
    assert_eq!(v["claims"]["sub"], "user1");
    assert_eq!(v["claims"]["aud"], "app");
    // a forged token (its signature altered) is refused, as a problem
    let forged = {
        let (rest, sig) = user.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        format!("Bearer {rest}.{flipped}{}", &sig[1..])
    };
    let a = request(
        &serve.addr,
        "GET",
        "/Validate",
        &[("Authorization", &forged)],
        None,
    );
    assert_eq!(
        (a.status, problem_code(&a).as_str()),
        (401, "invalid_token"),
        "{}",
        safe(&a)
    );
    both(&ms, &ours, "get", "/Validate", "/Validate", &a);
    let a = request(&serve.addr, "GET", "/Validate", &[], None);
    assert_eq!(
        (a.status, problem_code(&a).as_str()),
        (401, "missing_token")
    );
    both(&ms, &ours, "get", "/Validate", "/Validate", &a);

    // the OpenAPI document, and health
    let a = request(&serve.addr, "GET", "/openapi/v1.json", &[], None);
    assert_eq!(a.status, 200);
    assert_eq!(a.json(), ours);
    assert_eq!(
        request(&serve.addr, "GET", "/healthz", &[], None).status,
        200
    );

    let logs = serve.logs();
    for s in [&obo[7..], &user, SECRET] {
        assert!(!logs.contains(s), "a secret reached the logs");
    }
}

fn v1_app(addr: &str) -> Option<String> {
    let a = request(addr, "GET", "/v1/authorization-header/orders", &[], None);
    a.json()["authorization_header"].as_str().map(str::to_owned)
}

/// method, documented route, path, headers, status, problem code.
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    &'a [(&'a str, &'a str)],
    u16,
    &'a str,
);

#[test]
fn refused_input_is_a_problem_and_never_reaches_the_provider() {
    let ms = microsoft_spec();
    let ours = openapi();
    let op = OidcProvider::start();
    let down = Recorder::json(200, "{}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = compat_config(dir.path(), &op, "memory://", &down.base(), "");
    let serve = Serve::start(&cfg, &[]);
    let user = user_token(&op, "user1");
    let bearer = format!("Bearer {user}");
    let auth = [("Authorization", bearer.as_str())];
    let cases: Vec<Case> = vec![
        // Microsoft's sidecar answers an unknown API 400 ("Not able to resolve")
        ("get", HU, "/AuthorizationHeaderUnauthenticated/nope".into(), &[], 400, "unknown_api"),
        ("post", D, "/DownstreamApi/nope".into(), &auth, 400, "unknown_api"),
        // agent identities: never ignored
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?AgentIdentity=agent-1".into(), &[], 400, "not_supported"),
        ("get", H, "/AuthorizationHeader/orders-obo?AgentIdentity=a&AgentUsername=u%40x.example".into(), &auth, 400, "not_supported"),
        ("post", D, "/DownstreamApi/orders-obo?AgentUserId=6d1c2e4f-0000-4000-8000-000000000000".into(), &auth, 400, "not_supported"),
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.AcquireTokenOptions.PopPublicKey=k".into(), &[], 400, "not_supported"),
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.AcquireTokenOptions.Tenant=another-tenant".into(), &[], 400, "not_supported"),
        // scopes outside the allow-list, and a scope of another API
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.Scopes=api.write".into(), &[], 400, "invalid_scope"),
        ("get", H, "/AuthorizationHeader/orders-obo?optionsOverride.Scopes=api.read&optionsOverride.Scopes=https%3A%2F%2Fgraph.microsoft.com%2F.default".into(), &auth, 400, "invalid_scope"),
        ("get", H, "/AuthorizationHeader/orders-obo?optionsOverride.Scopes=a%22b".into(), &auth, 400, "invalid_scope"),
        // an app token of a user-only API
        ("get", H, "/AuthorizationHeader/users-only?optionsOverride.RequestAppToken=true".into(), &auth, 400, "app_token_not_allowed"),
        ("get", HU, "/AuthorizationHeaderUnauthenticated/users-only".into(), &[], 401, "user_required"),
        ("post", DU, "/DownstreamApiUnauthenticated/users-only".into(), &[], 401, "user_required"),
        // bad values, unknown parameters
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.AcquireTokenOptions.Claims=not-json".into(), &[], 400, "invalid_request"),
        ("get", HU, format!("/AuthorizationHeaderUnauthenticated/orders?optionsOverride.AcquireTokenOptions.Claims=%7B%22a%22%3A%22{}%22%7D", "x".repeat(9000)), &[], 400, "invalid_request"),
        ("post", DU, format!("/DownstreamApiUnauthenticated/orders?optionsOverride.RelativePath={}", "a".repeat(5000)), &[], 400, "invalid_request"),
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.RequestAppToken=maybe".into(), &[], 400, "invalid_request"),
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.Nope=1".into(), &[], 400, "invalid_request"),
        ("post", DU, "/DownstreamApiUnauthenticated/orders?optionsOverride.HttpMethod=TRACE".into(), &[], 400, "invalid_request"),
        ("post", D, "/DownstreamApi/users-only".into(), &auth, 400, "no_downstream"),
    ];
    for (method, route, path, headers, status, code) in &cases {
        let m = method.to_ascii_uppercase();
        let a = request(&serve.addr, &m, path, headers, None);
        assert_eq!(
            (a.status, problem_code(&a).as_str()),
            (*status, *code),
            "{m} {path}: {}",
            safe(&a)
        );
        both(&ms, &ours, method, route, route, &a);
        assert!(
            !a.body.contains(&user),
            "{path}: the caller's token in an answer"
        );
    }
    assert_eq!(
        provider_stats(&op)["token_requests"],
        0,
        "a refused request reached the provider"
    );
    assert_eq!(down.count(), 0);

    // within the allow-list: served, one provider request each
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeader/orders-obo?optionsOverride.Scopes=api.write",
        &auth,
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    both(&ms, &ours, "get", H, H, &a);
    assert_eq!(grants(&op, OBO), 1);
    // an app token of an OBO API that allows it
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeader/orders-obo?optionsOverride.RequestAppToken=true",
        &auth,
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a2 = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeaderUnauthenticated/orders-obo",
        &[],
        None,
    );
    assert_eq!(
        a2.json()["authorizationHeader"],
        a.json()["authorizationHeader"]
    );
    assert_eq!(grants(&op, CC), 1);
    // a user token for another audience: refused by [inbound] before any provider
    // request (401 invalid_token, a problem)
    let obo_before_other = grants(&op, OBO);
    let v: Value =
        serde_json::from_str(&op.get("/__test/mint?sub=user2&aud=someone-else")).unwrap();
    let other = format!("Bearer {}", v["access_token"].as_str().unwrap());
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeader/orders-obo",
        &[("Authorization", &other)],
        None,
    );
    assert_eq!(
        (a.status, problem_code(&a).as_str()),
        (401, "invalid_token"),
        "{}",
        safe(&a)
    );
    both(&ms, &ours, "get", H, H, &a);
    assert_eq!(
        grants(&op, OBO),
        obo_before_other,
        "the foreign token reached the provider"
    );
    // a forced refresh goes to the provider again
    let a = request(&serve.addr, "GET", "/AuthorizationHeaderUnauthenticated/orders?optionsOverride.AcquireTokenOptions.ForceRefresh=true", &[], None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(grants(&op, CC), 2);
}

#[test]
fn the_caller_key_guards_the_compatible_routes() {
    let ms = microsoft_spec();
    let ours = openapi();
    let op = OidcProvider::start();
    let down = Recorder::json(200, "{}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = compat_config(
        dir.path(),
        &op,
        "memory://",
        &down.base(),
        "caller_key_env = \"CALLER_KEY\"",
    );
    let key = "a-caller-key-of-some-length";
    let serve = Serve::start(&cfg, &[("CALLER_KEY", key)]);
    for (method, route, path) in [
        ("get", HU, "/AuthorizationHeaderUnauthenticated/orders"),
        ("post", DU, "/DownstreamApiUnauthenticated/orders"),
        ("get", "/Validate", "/Validate"),
    ] {
        let m = method.to_ascii_uppercase();
        let a = request(&serve.addr, &m, path, &[], None);
        assert_eq!(
            (a.status, problem_code(&a).as_str()),
            (401, "invalid_caller_key"),
            "{path}"
        );
        both(&ms, &ours, method, route, route, &a);
        let a = request(
            &serve.addr,
            &m,
            path,
            &[("X-Tokencache-Key", "wrong-key-wrong-key")],
            None,
        );
        assert_eq!(a.status, 401);
    }
    let spec = openapi();
    let a = request(&serve.addr, "GET", "/v1/downstream/orders", &[], None);
    assert_error(
        &spec,
        "/v1/downstream/{api}",
        "get",
        &a,
        401,
        "invalid_caller_key",
    );
    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApiUnauthenticated/orders",
        &[("X-Tokencache-Key", key)],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(down.count(), 1);
}

#[test]
fn a_client_written_for_microsofts_sidecar_works_unchanged() {
    let op = OidcProvider::start();
    let down = Recorder::json(200, r#"{"displayName":"user9"}"#);
    let dir = tempfile::tempdir().unwrap();
    let cfg = compat_config(dir.path(), &op, "memory://", &down.base(), "");
    let s = Serve::start(&cfg, &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python/microsoft_sidecar.py"
    );
    let incoming = user_token(&op, "user9");
    let run = |api: &str, token: Option<&str>| {
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script)
            .arg(api)
            .env("SIDECAR_URL", format!("http://{}", s.addr))
            .env_remove("INCOMING_TOKEN");
        if let Some(t) = token {
            cmd.env("INCOMING_TOKEN", t);
        }
        let out = cmd.output().expect("python3");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // the app's own token (the Unauthenticated routes)
    let (ok, out, err) = run("orders", None);
    assert!(ok, "{out} {err}");
    assert!(out.contains("authorizationHeader: Bearer <"), "{out}");
    assert!(out.contains("statusCode: 200"), "{out}");
    assert!(out.contains(r#"content: {"displayName":"user9"}"#), "{out}");
    // on behalf of the caller
    let (ok, out, err) = run("orders-obo", Some(&incoming));
    assert!(ok, "{out} {err}");
    assert!(out.contains("statusCode: 200"), "{out}");
    assert!(!out.contains(&incoming));
    // a problem answer becomes the client's typed error
    let (ok, _, err) = run("nope", None);
    assert!(!ok);
    assert!(
        err.contains("error: 400 Bad Request: Not able to resolve 'nope'"),
        "{err}"
    );
    assert_eq!(grants(&op, OBO), 1);
    assert_eq!(down.count(), 2);
}
