//! `tokencache serve --config appsettings.json` (issue 23): Microsoft's sidecar
//! configuration, from the file and from `AzureAd__*` / `DownstreamApis__*` variables,
//! with real processes (the binary, `oidc-provider` under an Entra-shaped issuer path
//! `/tenant1/v2.0`, a recording downstream server).

use std::process::{Command, Stdio};

use testkit::{OidcOptions, OidcProvider};

mod common;
mod support;

use common::*;
use support::*;

fn provider() -> OidcProvider {
    OidcProvider::start_with(&OidcOptions {
        issuer_path: Some("/tenant1/v2.0".into()),
        ..OidcOptions::default()
    })
}

const SECRET_VAR: &str = "AzureAd__ClientCredentials__0__ClientSecret";

#[test]
fn an_appsettings_file_of_microsofts_sidecar_configures_serve() {
    let ms = microsoft_spec();
    let op = provider();
    let down = Recorder::json(200, r#"{"displayName":"user1"}"#);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    std::fs::write(
        &file,
        format!(
            r#"{{
  "$schema": "https://raw.githubusercontent.com/AzureAD/microsoft-identity-web/refs/heads/master/JsonSchemas/microsoft-identity-web.json",
  "AzureAd": {{
    "Instance": "http://127.0.0.1:{port}/",
    "TenantId": "tenant1",
    "ClientId": "app",
    // the secret comes from {SECRET_VAR}
    "ClientCredentials": [ {{ "SourceType": "ClientSecret" }} ],
  }},
  "DownstreamApis": {{
    "me": {{
      "BaseUrl": "{down}/v1.0/",
      "RelativePath": "me",
      "Scopes": [ "api.read" ]
    }},
    "app-api": {{ "BaseUrl": "{down}/", "RelativePath": "items", "Scopes": "api.read", "RequestAppToken": true, "HttpMethod": "Post" }}
  }},
  "Logging": {{ "LogLevel": {{ "Default": "Information" }} }},
  "AllowedHosts": "*"
}}"#,
            port = op.port(),
            down = down.base(),
        ),
    )
    .unwrap();
    // the store comes from TOKENCACHE_STORE, as every top-level setting of serve
    let serve = Serve::start(
        &file,
        &[(SECRET_VAR, SECRET), ("TOKENCACHE_STORE", "memory://")],
    );

    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeaderUnauthenticated/app-api",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    conforms_ms(
        &ms,
        "get",
        "/AuthorizationHeaderUnauthenticated/{apiName}",
        a.status,
        a.header("content-type").unwrap(),
        &a.body,
    );
    let app = a.json()["authorizationHeader"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(grants(&op, CC), 1);

    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApiUnauthenticated/app-api",
        &[],
        Some("{}"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let r = down.requests().last().unwrap().clone();
    assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/items"));
    assert_eq!(r.header("authorization"), Some(app.as_str()));

    // an API without RequestAppToken acts on behalf of the caller, as Microsoft's does
    let user = format!("Bearer {}", user_token(&op, "user1"));
    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApi/me",
        &[("Authorization", &user)],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    conforms_ms(
        &ms,
        "post",
        "/DownstreamApi/{apiName}",
        a.status,
        a.header("content-type").unwrap(),
        &a.body,
    );
    assert_eq!(a.json()["content"], r#"{"displayName":"user1"}"#);
    assert_eq!(down.requests().last().unwrap().target, "/v1.0/me");
    assert_eq!(grants(&op, OBO), 1);
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeaderUnauthenticated/me",
        &[],
        None,
    );
    assert_eq!(a.status, 401, "{}", a.body);

    let logs = serve.logs();
    assert!(
        logs.contains("incoming tokens are validated as AzureAd says"),
        "{logs}"
    );
    assert!(!logs.contains(SECRET));
}

#[test]
fn azuread_variables_alone_configure_serve() {
    let op = provider();
    let down = Recorder::json(200, "{}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    std::fs::write(&file, "{}").unwrap();
    let instance = format!("http://127.0.0.1:{}/", op.port());
    let base = down.base();
    let serve = Serve::start(
        &file,
        &[
            ("TOKENCACHE_STORE", "memory://"),
            ("AzureAd__Instance", &instance),
            ("AzureAd__TenantId", "tenant1"),
            ("AzureAd__ClientId", "app"),
            ("AzureAd__ClientCredentials__0__SourceType", "ClientSecret"),
            (SECRET_VAR, SECRET),
            ("DownstreamApis__graph__BaseUrl", &base),
            ("DownstreamApis__graph__RelativePath", "me"),
            ("DownstreamApis__graph__Scopes__0", "api.read"),
            ("DownstreamApis__graph__RequestAppToken", "true"),
        ],
    );
    let a = request(
        &serve.addr,
        "POST",
        "/DownstreamApiUnauthenticated/graph",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["statusCode"], 200);
    assert_eq!(down.requests()[0].target, "/me");
    assert_eq!(grants(&op, CC), 1);
}

/// Runs the binary with `file` and `env`; its exit code and stderr.
fn fails(file: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokencache-serve"));
    cmd.arg("--config")
        .arg(file)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Environment variables of a case.
type Env<'a> = Vec<(&'a str, &'a str)>;

#[test]
fn settings_that_do_not_map_stop_serve_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("appsettings.json");
    let shown = file.display().to_string();
    let ok_ad =
        r#""TenantId":"t1","ClientId":"app","ClientCredentials":[{"SourceType":"ClientSecret"}]"#;
    let cases: Vec<(String, Env, String)> = vec![
        (
            r#"{"AzureAd":{"TenantId":"t1","ClientId":"app","ClientCredentials":[{"SourceType":"ClientSecret","ClientSecret":"hunter2-in-file"}]},"DownstreamApis":{"g":{"Scopes":["s"]}}}"#.into(),
            vec![],
            format!("error: {shown}: AzureAd:ClientCredentials:0:ClientSecret: a secret is not accepted in the file"),
        ),
        (
            format!(r#"{{"AzureAd":{{{ok_ad}}},"DownstreamApis":{{"g":{{"Scopes":["s"],"BaseUrl":"http://graph.example/"}}}}}}"#),
            vec![(SECRET_VAR, "hunter2-env")],
            format!("error: {shown}: DownstreamApis:g:BaseUrl: must be https"),
        ),
        (
            format!(r#"{{"AzureAd":{{{ok_ad}}},"DownstreamApis":{{"g":{{"Scopes":["s"]}}}}}}"#),
            vec![(SECRET_VAR, "hunter2-env"), ("AzureAd__ClientCredentials__0__KeyVaultUrl", "https://v")],
            format!("error: {shown}: AzureAd:ClientCredentials:0:KeyVaultUrl: not supported by tokencache serve"),
        ),
        (
            r#"{"AzureAd":{"TenantId":"<tenant-guid>","ClientId":"app","ClientCredentials":[{"SourceType":"ClientSecret"}]},"DownstreamApis":{"g":{"Scopes":["s"]}}}"#.into(),
            vec![(SECRET_VAR, "hunter2-env")],
            format!("error: {shown}: AzureAd:TenantId: still holds the placeholder <tenant-guid>"),
        ),
    ];
    for (text, env, want) in cases {
        std::fs::write(&file, &text).unwrap();
        let (code, err) = fails(&file, &env);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.starts_with(&want), "{err:?} should start with {want:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn certificate_and_assertion_file_credentials_of_an_appsettings_file_authenticate() {
    let op = provider();
    let dir = tempfile::tempdir().unwrap();
    let instance = format!("http://127.0.0.1:{}/", op.port());
    // a PKCS#12 certificate (client app-cert), its password from the environment
    let p12 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tokencache/tests/fixtures/acquire/client.p12"
    );
    let file = dir.path().join("cert.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"AzureAd": {{"Instance": "{instance}", "TenantId": "tenant1", "ClientId": "app-cert",
                "ClientCredentials": [{{"SourceType": "Path", "CertificateDiskPath": "{p12}"}}]}},
              "DownstreamApis": {{"api": {{"Scopes": ["api.read"], "RequestAppToken": true}}}}}}"#
        ),
    )
    .unwrap();
    let serve = Serve::start(
        &file,
        &[
            ("TOKENCACHE_STORE", "memory://"),
            (
                "AzureAd__ClientCredentials__0__CertificatePassword",
                "p12-test-password",
            ),
        ],
    );
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeaderUnauthenticated/api",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!serve.logs().contains("p12-test-password"));
    drop(serve);

    // a signed assertion file (client app-jwt), as workload identity writes it
    let v: serde_json::Value = serde_json::from_str(&op.get("/__test/client-assertion")).unwrap();
    let assertion = dir.path().join("token");
    std::fs::write(&assertion, v["assertion"].as_str().unwrap()).unwrap();
    let file = dir.path().join("wi.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"AzureAd": {{"Instance": "{instance}", "TenantId": "tenant1", "ClientId": "app-jwt",
                "ClientCredentials": [{{"SourceType": "SignedAssertionFilePath", "SignedAssertionFileDiskPath": "{}"}}]}},
              "DownstreamApis": {{"api": {{"Scopes": ["api.read"], "RequestAppToken": true}}}}}}"#,
            assertion.display()
        ),
    )
    .unwrap();
    let serve = Serve::start(&file, &[("TOKENCACHE_STORE", "memory://")]);
    let a = request(
        &serve.addr,
        "GET",
        "/AuthorizationHeaderUnauthenticated/api",
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(grants(&op, CC), 2);
}
