//! `tokencache token` with the credentials of real deployments: a client assertion file
//! (then `source: cache`), Azure workload identity variables, a PKCS#12 certificate,
//! and `token managed-identity` over App Service's IDENTITY_ENDPOINT (cached per resource
//! and per identity) — against the real oidc-provider and testkit's loopback managed
//! identity endpoint.

use std::process::{Command, Output};

use testkit::{ManagedIdentityEndpoint, OidcOptions, OidcProvider, USER_ASSIGNED_CLIENT_ID};

const VARS: &[&str] = &[
    "TOKENCACHE_CLIENT_SECRET",
    "TOKENCACHE_CLIENT_CERT_PASSWORD",
    "TOKENCACHE_STORE",
    "TOKENCACHE_PREFIX",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "MSI_ENDPOINT",
];

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokencache"));
    cmd.args(args);
    for v in VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        !out.contains("eyJ") && !err.contains("eyJ"),
        "no token in a summary"
    );
    out
}

/// A client assertion for app-jwt, signed by the provider's test control.
fn assertion(op: &OidcProvider, exp: i64) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&op.get(&format!("/__test/client-assertion?exp={exp}"))).unwrap();
    v["assertion"].as_str().unwrap().to_string()
}

fn token_requests(op: &OidcProvider) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&op.get("/__test/stats")).unwrap();
    v["arrived"]["token"].as_u64().unwrap()
}

#[test]
fn client_credentials_with_an_assertion_file_then_from_the_cache() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let store = format!("redb://{}", dir.path().join("c.redb").display());
    let issuer = op.issuer();
    let args = [
        "token",
        "client-credentials",
        "--authority",
        &issuer,
        "--client-id",
        "app-jwt",
        "--scope",
        "api.read",
        "--client-assertion-file",
        file.to_str().unwrap(),
        "--store",
        &store,
    ];
    // missing, then expired: one line naming the file, exit 2, nothing sent
    for content in [None, Some(assertion(&op, -60))] {
        if let Some(c) = &content {
            std::fs::write(&file, c).unwrap();
        }
        let o = run(&args, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("error: credential: client assertion file "),
            "{err}"
        );
        assert!(err.contains(file.to_str().unwrap()), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(token_requests(&op), 0);
    std::fs::write(&file, assertion(&op, 600)).unwrap();
    let out = ok(&run(&args, &[]));
    assert!(out.contains("source: provider"), "{out}");
    // keyed by the provider's issuer (docs/design.md §4)
    let key = tokencache::issuer::issuer_key(&op.issuer());
    assert!(
        out.contains(&format!("partition: app-jwt_{key}_AppTokenCache")),
        "{out}"
    );
    let out = ok(&run(&args, &[]));
    assert!(out.contains("source: cache"), "{out}");
    assert_eq!(token_requests(&op), 1);
}

#[test]
fn workload_identity_reads_the_azure_variables() {
    let op = OidcProvider::start_with(&OidcOptions {
        issuer_path: Some("/tenant1/v2.0".into()),
        ..OidcOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, assertion(&op, 600)).unwrap();
    let host = format!("{}/", op.base());
    let env = [
        ("AZURE_CLIENT_ID", "app-jwt"),
        ("AZURE_TENANT_ID", "tenant1"),
        ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ("AZURE_AUTHORITY_HOST", host.as_str()),
    ];
    let args = [
        "token",
        "client-credentials",
        "--workload-identity",
        "--scope",
        "api.read",
        "--store",
        "memory://",
    ];
    let out = ok(&run(&args, &env));
    assert!(out.contains("source: provider"), "{out}");
    // not an Entra host: keyed by the issuer the variables name
    let key = tokencache::issuer::issuer_key(&op.issuer());
    assert!(
        out.contains(&format!("partition: app-jwt_{key}_AppTokenCache")),
        "{out}"
    );
    // without the variables: told which one is missing
    let o = run(&args, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("AZURE_CLIENT_ID"), "{err}");
}

#[test]
fn a_pkcs12_certificate_with_its_password_from_the_environment() {
    let op = OidcProvider::start();
    let p12 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tokencache/tests/fixtures/acquire/client.p12"
    );
    let issuer = op.issuer();
    let args = [
        "token",
        "client-credentials",
        "--authority",
        &issuer,
        "--client-id",
        "app-cert",
        "--scope",
        "api.read",
        "--client-cert-file",
        p12,
        "--send-x5c",
        "--store",
        "memory://",
    ];
    let out = ok(&run(
        &args,
        &[("TOKENCACHE_CLIENT_CERT_PASSWORD", "p12-test-password")],
    ));
    assert!(out.contains("source: provider"), "{out}");
    let o = run(&args, &[("TOKENCACHE_CLIENT_CERT_PASSWORD", "not-it-123")]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("PKCS#12") && !err.contains("not-it-123"),
        "{err}"
    );
}

#[test]
fn managed_identity_over_identity_endpoint_caches_per_resource_and_identity() {
    let ep = ManagedIdentityEndpoint::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("redb://{}", dir.path().join("c.redb").display());
    let (endpoint, header) = (ep.identity_endpoint(), ep.identity_header());
    let env = [
        ("IDENTITY_ENDPOINT", endpoint.as_str()),
        ("IDENTITY_HEADER", header.as_str()),
    ];
    let mi = |extra: &[&str]| {
        let mut args = vec!["token", "managed-identity", "--store", &store];
        args.extend_from_slice(extra);
        run(&args, &env)
    };
    let vault = ["--resource", "https://vault.azure.net"];
    let out = ok(&mi(&vault));
    assert!(out.contains("source: provider"), "{out}");
    assert!(
        out.contains("partition: system_assigned_managed_identity_managed_identity_AppTokenCache"),
        "{out}"
    );
    assert!(ok(&mi(&vault)).contains("source: cache"));
    assert_eq!(ep.issued(), 1);
    // another resource: asked
    let storage = ["--resource", "https://storage.azure.com/.default"];
    assert!(ok(&mi(&storage)).contains("source: provider"));
    assert!(ok(&mi(&storage)).contains("source: cache"));
    assert_eq!(ep.issued(), 2);
    // a user-assigned identity: its own partition, its own token
    let user = [
        "--resource",
        "https://vault.azure.net",
        "--client-id",
        USER_ASSIGNED_CLIENT_ID,
    ];
    let out = ok(&mi(&user));
    assert!(out.contains("source: provider"), "{out}");
    assert!(
        out.contains(&format!(
            "partition: {USER_ASSIGNED_CLIENT_ID}_managed_identity_AppTokenCache"
        )),
        "{out}"
    );
    assert!(ok(&mi(&user)).contains("source: cache"));
    assert_eq!(ep.issued(), 3);
    // --raw: the token alone
    let mut raw = vault.to_vec();
    raw.push("--raw");
    let o = mi(&raw);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.trim().starts_with("mi-token-system-"), "{out}");
    // an unknown identity: the endpoint's error, one line, exit 2
    let o = mi(&[
        "--resource",
        "https://vault.azure.net",
        "--object-id",
        "nobody",
    ]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains(&header), "{err}");
}
