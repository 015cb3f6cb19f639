//! `tokencache serve` with the credentials of real deployments (issue 24): an API whose
//! client authenticates with `client_assertion_file` survives forced refreshes with the
//! file rewritten between them (the provider refuses a replayed assertion), and an API
//! whose tokens come from `credential = "managed_identity"` (App Service's
//! IDENTITY_ENDPOINT, testkit's loopback endpoint) is served from the cache the second
//! time. Real processes, real oidc-provider.

mod common;

use common::*;
use testkit::{ManagedIdentityEndpoint, OidcProvider};

/// A client assertion for app-jwt (a new jti), signed by the provider's test control.
fn assertion(op: &OidcProvider) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&op.get("/__test/client-assertion?exp=600")).unwrap();
    v["assertion"].as_str().unwrap().to_string()
}

fn rewrite(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn an_assertion_file_api_survives_forced_refreshes_with_a_rewritten_file() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            r#"store = "memory://"

[apis.fed]
authority = "{}"
client_id = "app-jwt"
client_assertion_file = "{}"
scopes = ["api.read"]
"#,
            op.issuer(),
            file.display()
        ),
    )
    .unwrap();
    let server = Serve::start(&config, &[]);
    let get = |path: &str| request(&server.addr, "GET", path, &[], None);
    // no file yet: the request fails without reaching the provider
    let a = get("/v1/authorization-header/fed");
    assert!(a.status >= 400, "{}", a.body);
    assert_eq!(provider_stats(&op)["arrived"]["token"], 0);
    rewrite(&file, &assertion(&op));
    let first = get("/v1/authorization-header/fed");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["source"], "provider");
    for round in 0..3 {
        rewrite(&file, &assertion(&op));
        let a = get("/v1/authorization-header/fed?force_refresh=true");
        assert_eq!(a.status, 200, "round {round}: {}", a.body);
        assert_eq!(a.json()["source"], "provider");
    }
    assert_eq!(grants(&op, CC), 4);
    let cached = get("/v1/authorization-header/fed");
    assert_eq!(cached.json()["source"], "cache");
    // the file not rewritten: a forced refresh would replay it, and the provider refuses
    let a = get("/v1/authorization-header/fed?force_refresh=true");
    assert!(a.status >= 400, "{}", a.body);
    let logs = server.logs();
    assert!(!logs.contains("eyJ"), "no assertion or token in the logs");
}

#[test]
fn a_managed_identity_api_is_served_from_the_cache_the_second_time() {
    let ep = ManagedIdentityEndpoint::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        r#"store = "memory://"

[apis.vault]
credential = "managed_identity"
scopes = ["https://vault.azure.net/.default"]
"#,
    )
    .unwrap();
    let (endpoint, header) = (ep.identity_endpoint(), ep.identity_header());
    let server = Serve::start(
        &config,
        &[
            ("IDENTITY_ENDPOINT", endpoint.as_str()),
            ("IDENTITY_HEADER", header.as_str()),
        ],
    );
    let get = |path: &str| request(&server.addr, "GET", path, &[], None);
    let a = get("/v1/authorization-header/vault");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["source"], "provider");
    assert!(a.json()["authorization_header"]
        .as_str()
        .unwrap()
        .starts_with("Bearer mi-token-system-"));
    let b = get("/v1/authorization-header/vault");
    assert_eq!(b.json()["source"], "cache");
    assert_eq!(ep.issued(), 1);
    assert_eq!(
        ep.requests()[0].param("resource"),
        Some("https://vault.azure.net")
    );
    assert!(
        !server.logs().contains(&header),
        "the identity header is never logged"
    );
}
