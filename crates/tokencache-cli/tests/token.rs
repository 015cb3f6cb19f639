//! `tokencache token client-credentials|obo` against a real OpenID provider
//! (oidc-provider on loopback, started by testkit): summaries without secrets, the
//! second run served from the cache (the store file), --raw, typed one-line errors.

use std::process::{Command, Output};

use testkit::OidcProvider;

fn run(args: &[&str], secret: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokencache"));
    cmd.args(args).env_remove("TOKENCACHE_CLIENT_SECRET");
    cmd.env_remove("TOKENCACHE_STORE")
        .env_remove("TOKENCACHE_PREFIX");
    if let Some(s) = secret {
        cmd.env("TOKENCACHE_CLIENT_SECRET", s);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn client_credentials_from_the_provider_then_from_the_cache_without_secrets() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("redb://{}", dir.path().join("c.redb").display());
    let issuer = op.issuer();
    let args = [
        "token",
        "client-credentials",
        "--authority",
        &issuer,
        "--client-id",
        "app",
        "--scope",
        "api.read",
        "--store",
        &store,
    ];
    let first = run(&args, Some("app-secret"));
    let (out, err) = text(&first);
    assert!(first.status.success(), "{out}{err}");
    let key = tokencache::issuer::issuer_key(&issuer);
    assert!(
        out.contains(&format!("partition: app_{key}_AppTokenCache")),
        "{out}"
    );
    assert!(out.contains("scopes: api.read"), "{out}");
    assert!(out.contains("expires_on: "), "{out}");
    assert!(out.contains("source: provider"), "{out}");
    assert!(
        !out.contains("eyJ") && !err.contains("eyJ"),
        "no token in a summary"
    );
    assert!(!out.contains("app-secret") && !err.contains("app-secret"));

    let second = run(&args, Some("app-secret"));
    let (out, err) = text(&second);
    assert!(second.status.success(), "{out}{err}");
    assert!(out.contains("source: cache"), "{out}");

    let mut raw = args.to_vec();
    raw.push("--raw");
    let r = run(&raw, Some("app-secret"));
    let (out, _) = text(&r);
    assert!(r.status.success());
    assert_eq!(out.trim().split('.').count(), 3, "a JWT: {out}");
    assert_eq!(out.trim().lines().count(), 1);
}

#[test]
fn provider_errors_exit_non_zero_with_the_oauth_code_in_one_line() {
    let op = OidcProvider::start();
    let issuer = op.issuer();
    let base = [
        "token",
        "client-credentials",
        "--authority",
        &issuer,
        "--client-id",
        "app",
        "--store",
        "memory://",
    ];
    let mut wrong = base.to_vec();
    wrong.extend(["--scope", "api.read"]);
    let o = run(&wrong, Some("not-the-secret"));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.starts_with("error: invalid_client: "), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("not-the-secret"));

    let mut scope = base.to_vec();
    scope.extend(["--scope", "api.admin"]);
    let o = run(&scope, Some("app-secret"));
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.starts_with("error: invalid_scope: "), "{err}");

    // no secret at all: told how to give one
    let o = run(&wrong, None);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("TOKENCACHE_CLIENT_SECRET"), "{err}");
}

#[test]
fn a_provider_whose_issuer_is_not_the_authority_exits_2_named_misconfigured() {
    // discovery at 127.0.0.1, the document's issuer localhost: not "unavailable"
    let op = OidcProvider::start_with(&testkit::OidcOptions {
        issuer_host: Some("localhost".into()),
        ..testkit::OidcOptions::default()
    });
    let issuer = op.issuer();
    let args = [
        "token",
        "client-credentials",
        "--authority",
        &issuer,
        "--client-id",
        "app",
        "--scope",
        "api.read",
        "--store",
        "memory://",
    ];
    let o = run(&args, Some("app-secret"));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.starts_with("error: provider_misconfigured: "), "{err}");
    assert!(err.contains("localhost"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn obo_with_an_assertion_file_and_a_key_file() {
    let op = OidcProvider::start();
    let issuer = op.issuer();
    let get = |path: &str| -> serde_json::Value { serde_json::from_str(&op.get(path)).unwrap() };
    let dir = tempfile::tempdir().unwrap();
    let assertion = dir.path().join("assertion.jwt");
    std::fs::write(
        &assertion,
        get("/__test/mint?sub=user1&aud=app-jwt")["access_token"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let key = get("/__test/client-key");
    let key_file = dir.path().join("client.pem");
    std::fs::write(&key_file, key["pem"].as_str().unwrap()).unwrap();
    let store = format!("redb://{}", dir.path().join("c.redb").display());
    let args = [
        "token",
        "obo",
        "--authority",
        &issuer,
        "--client-id",
        "app-jwt",
        "--scope",
        "api.read",
        "--assertion-file",
        assertion.to_str().unwrap(),
        "--client-cert-file",
        key_file.to_str().unwrap(),
        "--client-key-id",
        key["kid"].as_str().unwrap(),
        "--store",
        &store,
    ];
    let o = run(&args, None);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("source: provider"), "{out}");
    assert!(!out.contains("eyJ"));
    let o = run(&args, None);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("source: cache"), "{out}");
    // the partition is the assertion's hash
    let partition = out.lines().next().unwrap();
    assert!(partition.starts_with("partition: "), "{out}");
    assert!(!partition.contains("eyJ"));

    let mut exchange = args.to_vec();
    exchange.push("--token-exchange");
    let n = exchange.len();
    exchange[n - 2] = "memory://";
    let o = run(&exchange, None);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("source: provider"), "{out}");

    // an assertion the provider did not issue
    std::fs::write(&assertion, "not.a.token").unwrap();
    let o = run(&args, None);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.starts_with("error: invalid_grant: "), "{err}");
}
