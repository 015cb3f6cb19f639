//! `tokencache serve` end to end, with real processes: the built binary, a real
//! `redis-server` (testkit, on a free loopback port), the real `oidc-provider`
//! (testkit::OidcProvider, with its test controls: token-request counts, faults, minted
//! user tokens). Every answer is checked against `docs/openapi.json`, and no answer nor
//! log line may hold a token other than the one asked for, nor a secret.
//!
//! Requests are plain HTTP/1.1 over a fresh TCP connection each (`Connection: close`),
//! so that a test sees exactly what the server wrote, byte for byte.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use testkit::{OidcProvider, RedisServer};

mod common;

use common::*;

// ---- the tests ------------------------------------------------------------------------------

#[test]
fn two_replicas_share_one_redis_app_obo_and_sign_out() {
    let spec = openapi();
    let redis = RedisServer::start();
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &op, &redis.url(), "");
    let a = Serve::start(&cfg, &[]);
    let b = Serve::start(&cfg, &[]);

    // an app token through A, then B serves it from the shared cache
    let first = request(&a.addr, "GET", "/v1/authorization-header/orders", &[], None);
    assert_eq!(first.status, 200, "{}", first.body);
    conforms(&spec, "get", HEADER_ROUTE, &first);
    assert_eq!(first.json()["source"], "provider");
    let app_header = header_of(&first);
    assert!(app_header.starts_with("Bearer ey"));
    let from_b = request(&b.addr, "GET", "/v1/authorization-header/orders", &[], None);
    assert_eq!(from_b.status, 200, "{}", from_b.body);
    conforms(&spec, "get", HEADER_ROUTE, &from_b);
    assert_eq!(from_b.json()["source"], "cache");
    assert_eq!(header_of(&from_b), app_header);
    assert_eq!(from_b.json()["expires_on"], first.json()["expires_on"]);
    assert_eq!(grants(&op, CC), 1);

    // OBO through A, then the same incoming token through B: from the cache
    let incoming = user_token(&op, "user1");
    let bearer = format!("Bearer {incoming}");
    let auth = [("Authorization", bearer.as_str())];
    let obo_a = request(
        &a.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &auth,
        None,
    );
    assert_eq!(obo_a.status, 200, "{}", obo_a.body);
    conforms(&spec, "get", HEADER_ROUTE, &obo_a);
    assert_eq!(obo_a.json()["source"], "provider");
    let obo_header = header_of(&obo_a);
    assert_ne!(obo_header, app_header);
    let obo_b = request(
        &b.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &auth,
        None,
    );
    assert_eq!(obo_b.json()["source"], "cache", "{}", obo_b.body);
    assert_eq!(header_of(&obo_b), obo_header);
    assert_eq!(grants(&op, OBO), 1);

    // another user's incoming token gets its own token, never user1's
    let other = format!("Bearer {}", user_token(&op, "user2"));
    let obo_2 = request(
        &b.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &[("Authorization", &other)],
        None,
    );
    assert_eq!(obo_2.json()["source"], "provider");
    assert_ne!(header_of(&obo_2), obo_header);

    // sign-out through A: B no longer serves user1's OBO token. B hears of it on the
    // backplane (Redis pub/sub, well under a millisecond on loopback); the test waits
    // for B to count the message rather than guessing a delay on a loaded machine.
    let heard_before = metric(&b.addr, "tokencache_backplane_invalidations_total");
    // user1 signs out with its own token (the app forwards it, body {})
    let out = request(&a.addr, "POST", "/v1/sign-out", &auth, Some("{}"));
    assert_eq!(out.status, 200, "{}", out.body);
    conforms(&spec, "post", "/v1/sign-out", &out);
    assert!(
        out.json()["obo_partitions"].as_u64().unwrap() >= 1,
        "{}",
        out.body
    );
    assert_eq!(out.json()["complete"], true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&b.addr, "tokencache_backplane_invalidations_total") <= heard_before {
        assert!(Instant::now() < deadline, "B never heard of the sign-out");
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = request(
        &b.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &auth,
        None,
    );
    conforms(&spec, "get", HEADER_ROUTE, &after);
    assert!(
        !after.body.contains(&obo_header[7..]),
        "B served a signed-out user's token"
    );
    // B went to the provider: within the second of the sign-out the library refuses what
    // comes back for that user (signed_out); later the still-valid incoming token gets a
    // new token
    let after_ok = after.status == 200;
    match after.status {
        200 => assert_eq!(after.json()["source"], "provider", "{}", after.body),
        401 => assert_eq!(after.json()["error"], "signed_out", "{}", after.body),
        other => panic!("{other}: {}", after.body),
    }
    assert_eq!(grants(&op, OBO), 3);
    // user2 was not signed out
    let still = request(
        &b.addr,
        "GET",
        "/v1/authorization-header/orders-obo",
        &[("Authorization", &other)],
        None,
    );
    assert_eq!(still.json()["source"], "cache");

    // health, readiness, metrics
    let h = request(&a.addr, "GET", "/healthz", &[], None);
    assert_eq!(h.status, 200);
    conforms(&spec, "get", "/healthz", &h);
    let r = request(&b.addr, "GET", "/readyz", &[], None);
    assert_eq!(r.status, 200);
    conforms(&spec, "get", "/readyz", &r);
    assert_eq!(r.json()["l2_breaker"], "closed");
    let m = request(&b.addr, "GET", "/metrics", &[], None);
    assert_eq!(m.status, 200);
    conforms(&spec, "get", "/metrics", &m);
    let (obo_provider, ok_answers) = if after_ok { (2, 5) } else { (1, 4) };
    let mut expected = vec![
        "tokencache_tokens_total{api=\"orders\",flow=\"app\",outcome=\"cache\"} 1".to_string(),
        "tokencache_tokens_total{api=\"orders-obo\",flow=\"obo\",outcome=\"cache\"} 2".into(),
        format!("tokencache_tokens_total{{api=\"orders-obo\",flow=\"obo\",outcome=\"provider\"}} {obo_provider}"),
        "tokencache_provider_requests_total{api=\"orders\"} 0".into(),
        "tokencache_provider_requests_total{api=\"orders-obo\"} 2".into(),
        "tokencache_l2_breaker_state 0".into(),
        "tokencache_recovery_queue_depth 0".into(),
        format!("tokencache_http_requests_total{{route=\"/v1/authorization-header/{{api}}\",status=\"200\"}} {ok_answers}"),
        "tokencache_http_request_duration_seconds_count{route=\"/v1/authorization-header/{api}\"} 5".into(),
    ];
    if !after_ok {
        expected.push(
            "tokencache_tokens_total{api=\"orders-obo\",flow=\"obo\",outcome=\"signed_out\"} 1"
                .into(),
        );
    }
    for line in &expected {
        assert!(
            m.body.lines().any(|l| l == line.as_str()),
            "metrics lack {line:?}:\n{}",
            m.body
        );
    }
    let l2_hits: u64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("tokencache_hits_total{level=\"l2\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(l2_hits >= 2, "{l2_hits}");

    // no token, assertion or secret in any log line
    for s in [&a, &b] {
        let logs = s.logs();
        assert!(logs.contains("\"listening\""), "JSON logs: {logs}");
        for secret in [&app_header[7..], &obo_header[7..], &incoming, SECRET] {
            assert!(!logs.contains(secret), "a secret reached the logs");
        }
    }
}

#[test]
fn bad_input_gets_its_documented_error_and_never_a_token() {
    let spec = openapi();
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "provider_timeout_ms = 2000\n[backchannel_logout]\nissuer = \"{0}\"\nclient_id = \"app\"\njwks_uri = \"{0}/jwks\"",
        op.issuer()
    );
    let cfg = config(dir.path(), &op, "memory://", &extra);
    let s = Serve::start(&cfg, &[]);
    let get = |path: &str, headers: &[(&str, &str)]| request(&s.addr, "GET", path, headers, None);

    // what a caller may get: user1's OBO token and the app token
    let incoming = user_token(&op, "user1");
    let bearer = format!("Bearer {incoming}");
    let user1 = get(
        "/v1/authorization-header/orders-obo",
        &[("Authorization", &bearer)],
    );
    assert_eq!(user1.status, 200, "{}", user1.body);
    let app = get("/v1/authorization-header/orders", &[]);
    assert_eq!(app.status, 200, "{}", app.body);
    let tokens = [
        header_of(&user1)[7..].to_string(),
        header_of(&app)[7..].to_string(),
        incoming.clone(),
    ];
    let obo_before = grants(&op, OBO);
    let mut errors = Vec::new();

    let a = get("/v1/authorization-header/nope", &[]);
    assert_error(&spec, HEADER_ROUTE, "get", &a, 404, "unknown_api");
    errors.push(a);
    let a = get("/v1/authorization-header/orders-obo", &[]);
    assert_error(&spec, HEADER_ROUTE, "get", &a, 401, "missing_token");
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    errors.push(a);
    for garbage in [
        "Bearer !!!",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Basic dXNlcjE6cHc=",
        "Bearer",
    ] {
        let a = get(
            "/v1/authorization-header/orders-obo",
            &[("Authorization", garbage)],
        );
        assert_error(&spec, HEADER_ROUTE, "get", &a, 401, "invalid_token");
        errors.push(a);
    }
    assert_eq!(
        grants(&op, OBO),
        obo_before,
        "malformed tokens reached the provider"
    );
    // a JWT that claims to be user1 but that the provider did not sign: refused there,
    // and user1's cached token is not handed out; one that names no issuer (or another
    // one) is refused before any cache read or token request
    let forged = |claims: &str| {
        let part = |v: &str| {
            use std::fmt::Write;
            // base64url without padding, by hand (no dependency for one line)
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let b = v.as_bytes();
            let mut o = String::new();
            for c in b.chunks(3) {
                let n = (c[0] as u32) << 16
                    | (*c.get(1).unwrap_or(&0) as u32) << 8
                    | *c.get(2).unwrap_or(&0) as u32;
                for i in 0..=c.len() {
                    let _ = write!(o, "{}", A[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            o
        };
        format!(
            "Bearer {}.{}.{}",
            part(r#"{"alg":"RS256","typ":"at+jwt"}"#),
            part(claims),
            part("not a signature")
        )
    };
    let signed_by_nobody = forged(&format!(
        r#"{{"iss":"{}","oid":"user1","tid":"tenant1","sub":"user1","aud":"app"}}"#,
        op.issuer()
    ));
    let a = get(
        "/v1/authorization-header/orders-obo",
        &[("Authorization", &signed_by_nobody)],
    );
    assert_error(&spec, HEADER_ROUTE, "get", &a, 401, "invalid_token");
    assert!(a
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\""));
    errors.push(a);
    assert_eq!(
        grants(&op, OBO),
        obo_before,
        "a forged token reached the provider"
    );

    // oversized header
    let big = "x".repeat(20 * 1024);
    let a = get("/v1/authorization-header/orders", &[("X-Big", &big)]);
    assert_error(
        &spec,
        HEADER_ROUTE,
        "get",
        &a,
        431,
        "request_header_too_large",
    );
    errors.push(a);
    let a = get(
        "/v1/authorization-header/orders-obo",
        &[("Authorization", &format!("Bearer {big}"))],
    );
    assert_error(
        &spec,
        HEADER_ROUTE,
        "get",
        &a,
        431,
        "request_header_too_large",
    );
    errors.push(a);

    // bad query
    for q in [
        "?scopes=%22",
        "?scopes=",
        "?force_refresh=maybe",
        "?claims=nope",
        "?colour=red",
    ] {
        let a = get(&format!("/v1/authorization-header/orders{q}"), &[]);
        assert_error(&spec, HEADER_ROUTE, "get", &a, 400, "invalid_request");
        errors.push(a);
    }
    // a scope outside the API's allowed_scopes: refused here, nothing sent
    let cc_before = grants(&op, CC);
    for q in [
        "api.admin",
        "api.read%20https://graph.microsoft.com/.default",
    ] {
        let a = get(&format!("/v1/authorization-header/orders?scopes={q}"), &[]);
        assert_error(&spec, HEADER_ROUTE, "get", &a, 400, "invalid_scope");
        errors.push(a);
    }
    assert_eq!(
        grants(&op, CC),
        cc_before,
        "an unlisted scope reached the provider"
    );

    // the provider answers garbage, then fails, then is gone
    fault(&op, "kind=malformed");
    let a = get("/v1/authorization-header/orders?force_refresh=true", &[]);
    assert_error(&spec, HEADER_ROUTE, "get", &a, 502, "bad_provider_response");
    errors.push(a);
    fault(&op, "kind=500&times=3");
    let a = get("/v1/authorization-header/orders?force_refresh=true", &[]);
    assert_eq!(a.status, 503, "{}", a.body);
    conforms(&spec, "get", HEADER_ROUTE, &a);
    assert!(a.header("retry-after").is_some());
    errors.push(a);
    // the failed forced refreshes left the cached app token in place
    let cached = get("/v1/authorization-header/orders", &[]);
    assert_eq!(cached.json()["source"], "cache");

    // sign-out input
    let post = |body: &str| request(&s.addr, "POST", "/v1/sign-out", &[], Some(body));
    let a = post("{}");
    assert_error(&spec, "/v1/sign-out", "post", &a, 401, "missing_token");
    errors.push(a);
    for body in [
        "",
        "{",
        r#"{"home_account_id":""}"#,
        r#"{"home_account_id":5}"#,
        r#"{"home_account_id":"a","x":1}"#,
    ] {
        let a = post(body);
        assert_error(&spec, "/v1/sign-out", "post", &a, 400, "invalid_request");
        errors.push(a);
    }
    let a = post(&format!(
        r#"{{"home_account_id":"{}"}}"#,
        "a".repeat(70 * 1024)
    ));
    assert_error(&spec, "/v1/sign-out", "post", &a, 413, "payload_too_large");
    errors.push(a);

    // back-channel logout (the library's handler, mounted): refusals are documented 400s
    for body in ["logout_token=not-a-jwt", "other=1"] {
        let a = form_post(&s.addr, "/v1/backchannel-logout", body);
        assert_eq!(a.status, 400, "{}", a.body);
        conforms(&spec, "post", "/v1/backchannel-logout", &a);
        errors.push(a);
    }

    // routes and methods
    let a = get("/v2/whatever", &[]);
    assert_error(&spec, "/v2/whatever", "get", &a, 404, "not_found");
    errors.push(a);
    let a = request(&s.addr, "POST", "/healthz", &[], Some(""));
    assert_error(
        &spec,
        "/healthz-post",
        "post",
        &a,
        405,
        "method_not_allowed",
    );
    errors.push(a);

    for e in &errors {
        for t in &tokens {
            assert!(
                !e.body.contains(t.as_str()),
                "an error answer carried a token: {}",
                e.status
            );
        }
        assert!(!e.body.contains(SECRET));
        assert_eq!(e.header("cache-control"), Some("no-store"));
    }
    // it still serves, and nothing secret reached its logs
    assert_eq!(get("/healthz", &[]).status, 200);
    let logs = s.logs();
    for t in tokens
        .iter()
        .map(String::as_str)
        .chain([SECRET, &signed_by_nobody[7..]])
    {
        assert!(!logs.contains(t), "a token or secret reached the logs");
    }
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn a_caller_key_guards_every_route_but_the_probes() {
    let spec = openapi();
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let key = "a-shared-key-of-some-length";
    let cfg = config(
        dir.path(),
        &op,
        "memory://",
        "caller_key_env = \"CALLER_KEY\"\nrequest_timeout_ms = 500",
    );
    let s = Serve::start(&cfg, &[("CALLER_KEY", key)]);
    let path = "/v1/authorization-header/orders";
    for headers in [
        vec![],
        vec![("X-Tokencache-Key", "wrong")],
        vec![("X-Tokencache-Key", &key[..key.len() - 1])],
        vec![("X-Tokencache-Key", key), ("X-Tokencache-Key", key)],
    ] {
        let a = request(&s.addr, "GET", path, &headers, None);
        assert_error(&spec, HEADER_ROUTE, "get", &a, 401, "invalid_caller_key");
        assert!(!a.body.contains(key));
    }
    let a = request(
        &s.addr,
        "POST",
        "/v1/sign-out",
        &[],
        Some(r#"{"home_account_id":"u.t"}"#),
    );
    assert_error(&spec, "/v1/sign-out", "post", &a, 401, "invalid_caller_key");
    assert_eq!(grants(&op, CC), 0);
    let a = request(&s.addr, "GET", path, &[("X-Tokencache-Key", key)], None);
    assert_eq!(a.status, 200, "{}", a.body);
    conforms(&spec, "get", HEADER_ROUTE, &a);
    for open in ["/healthz", "/readyz"] {
        assert_eq!(
            request(&s.addr, "GET", open, &[], None).status,
            200,
            "{open}"
        );
    }
    // every other route, /metrics and unknown paths included, wants the key
    for guarded in ["/metrics", "/v1/validate", "/v1/some-route-added-later"] {
        let a = request(&s.addr, "GET", guarded, &[], None);
        assert_error(&spec, guarded, "get", &a, 401, "invalid_caller_key");
    }
    let m = request(
        &s.addr,
        "GET",
        "/metrics",
        &[("X-Tokencache-Key", key)],
        None,
    );
    assert_eq!(m.status, 200);
    // a provider slower than the request timeout: 503 timeout, and the server goes on
    fault(&op, "kind=slow&ms=3000");
    let a = request(
        &s.addr,
        "GET",
        &format!("{path}?force_refresh=true"),
        &[("X-Tokencache-Key", key)],
        None,
    );
    assert_error(&spec, HEADER_ROUTE, "get", &a, 503, "timeout");
    assert_eq!(request(&s.addr, "GET", "/healthz", &[], None).status, 200);
    assert!(!s.logs().contains(key));
}

#[cfg(unix)]
#[test]
fn listens_on_a_unix_socket() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("unix.toml");
    let sock = dir.path().join("tc.sock");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{}\"\nstore = \"memory://\"\n[apis.a]\nauthority = \"http://127.0.0.1:9/t\"\nclient_id = \"c\"\nclient_secret_env = \"APP_SECRET\"\nscopes = [\"s\"]\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokencache-serve"))
        .arg("--config")
        .arg(&cfg)
        .env("APP_SECRET", SECRET)
        .env_remove("TOKENCACHE_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim_end(),
        format!("tokencache serve: listening on unix:{}", sock.display())
    );
    // only this user may connect (socket_mode, default 0600)
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let mut s = UnixStream::connect(&sock).expect("connect to the socket");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("{\"status\":\"ok\"}"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn python_and_node_examples_get_a_header() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &op, "memory://", "");
    let s = Serve::start(&cfg, &[]);
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let url = format!("http://{}", s.addr);
    let incoming = user_token(&op, "user7");
    let run = |program: &str, script: &str, api: &str| {
        let out = Command::new(program)
            .arg(format!("{examples}/{script}"))
            .arg(api)
            .env("TOKENCACHE_URL", &url)
            .env("INCOMING_TOKEN", &incoming)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{script} {api}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("header: Bearer <"), "{stdout}");
        assert!(!stdout.contains(&incoming));
        stdout
    };
    assert!(run("python3", "python/authorization_header.py", "orders").contains("source: provider"));
    assert!(run("node", "node/authorization_header.mjs", "orders").contains("source: cache"));
    assert!(run("node", "node/authorization_header.mjs", "orders-obo").contains("source: provider"));
    assert!(
        run("python3", "python/authorization_header.py", "orders-obo").contains("source: cache")
    );
    // an error answer becomes the examples' typed error
    for (program, script) in [
        ("python3", "python/authorization_header.py"),
        ("node", "node/authorization_header.mjs"),
    ] {
        let out = Command::new(program)
            .arg(format!("{examples}/{script}"))
            .arg("nope")
            .env("TOKENCACHE_URL", &url)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error: 404 unknown_api"),
            "{script}"
        );
    }
    assert_eq!(grants(&op, CC), 1);
    assert_eq!(grants(&op, OBO), 1);
}

#[test]
fn sigterm_during_a_burst_answers_every_accepted_request_and_exits_0() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &op, "memory://", "");
    let mut s = Serve::start(&cfg, &[]);
    const BURST: usize = 12;
    let incoming: Vec<String> = (0..BURST)
        .map(|i| user_token(&op, &format!("burst{i}")))
        .collect();
    // every token request of the burst is held by the provider, so that all of them are
    // in flight in the server when the signal comes
    fault(&op, &format!("kind=slow&ms=1500&times={BURST}"));
    let faults_before = provider_stats(&op)["faults"].as_u64().unwrap();
    let (tx, rx) = mpsc::channel();
    for token in incoming {
        let addr = s.addr.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let bearer = format!("Bearer {token}");
            let r = try_request(
                &addr,
                "GET",
                "/v1/authorization-header/orders-obo",
                &[("Authorization", &bearer)],
                None,
            );
            let _ = tx.send(r);
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while provider_stats(&op)["faults"].as_u64().unwrap() < faults_before + BURST as u64 {
        assert!(
            Instant::now() < deadline,
            "the burst never reached the provider"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // requests sent after the signal: refused, or answered in full (never cut off)
    let late: Vec<Result<Answer, String>> = (0..3)
        .map(|_| try_request(&s.addr, "GET", "/healthz", &[], None))
        .collect();
    for r in &late {
        match r {
            Ok(a) => assert_eq!(a.status, 200),
            Err(e) => assert!(
                e.starts_with("connect")
                    || e == "closed without an answer"
                    || e.starts_with("write")
                    || e.starts_with("read after 0 bytes"),
                "a late request was cut off: {e}"
            ),
        }
    }
    drop(tx);
    let answers: Vec<Result<Answer, String>> = rx.iter().collect();
    assert_eq!(answers.len(), BURST);
    for r in answers {
        let a = r.unwrap_or_else(|e| panic!("an accepted request was not answered: {e}"));
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json()["source"], "provider");
    }
    assert_eq!(s.wait(), Some(0), "exit code; logs: {}", s.logs());
    let logs = s.logs();
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("\"stopped\""), "{logs}");
}

/// Environment variables of one run.
type Env = Vec<(&'static str, &'static str)>;

#[test]
fn a_bad_configuration_is_one_line_naming_file_and_key_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let api = |extra: &str| {
        format!("[apis.orders]\nauthority = \"http://127.0.0.1:9/t\"\nclient_id = \"app\"\nscopes = [\"api.read\"]\n{extra}\n")
    };
    let cases: Vec<(String, Env, &str)> = vec![
        (format!("listen = 8707\n{}", api("client_secret_env = \"S\"")), vec![("S", "hunter2-hunter2")], "listen: must be a string"),
        (api("client_secret = \"hunter2-hunter2\""), vec![], "apis.orders.client_secret: a secret is not accepted in the file"),
        (api("client_secret_env = \"MISSING_VAR\""), vec![], "apis.orders.client_secret_env: the environment variable MISSING_VAR is not set"),
        (api("client_secret_env = \"S\"\nscopez = []"), vec![("S", "hunter2-hunter2")], "apis.orders.scopez: unknown key"),
        (api("client_secret_env = \"S\""), vec![("S", "hunter2-hunter2"), ("TOKENCACHE_LISTEN", "nowhere")], "listen (from TOKENCACHE_LISTEN): \"nowhere\" is not an address"),
        (api("client_secret_env = \"S\""), vec![("S", "hunter2-hunter2"), ("TOKENCACHE_APIS__ORDERS__ON_BEHALF_OF", "yes")], "apis.orders.on_behalf_of (from TOKENCACHE_APIS__ORDERS__ON_BEHALF_OF): must be true or false"),
        (api("client_secret_env = \"S\""), vec![("S", "hunter2-hunter2"), ("TOKENCACHE_KEYS", "k1:hunter2")], "TOKENCACHE_KEYS:"),
        ("listen = \"hunter2\n".to_string(), vec![], "line 1:"),
        (api("client_secret_env = \"S\"\non_behalf_of = true"), vec![("S", "hunter2-hunter2")], "apis.orders.on_behalf_of: the incoming token must be validated before it is sent to the provider: add [inbound]"),
        (format!("allow_remote_callers = true\n{}", api("client_secret_env = \"S\"")), vec![("S", "hunter2-hunter2")], "allow_remote_callers: remote callers must be authenticated"),
    ];
    for (i, (text, env, want)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, &text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokencache-serve"));
        cmd.arg("--config").arg(&path);
        for k in [
            "TOKENCACHE_KEYS",
            "TOKENCACHE_KEYS_FILE",
            "TOKENCACHE_LISTEN",
            "TOKENCACHE_STORE",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "case {i}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "case {i}: {err}");
        let line = err.trim_end();
        let expected = format!("error: {}: {want}", path.display());
        assert!(
            line.starts_with(&expected),
            "case {i}: {line:?} should start with {expected:?}"
        );
        assert!(!line.contains("hunter2"), "case {i}: a secret in {line:?}");
    }
}
