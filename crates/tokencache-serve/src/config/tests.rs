//! The configuration's own tests.

use super::*;
use tokencache::acquire::{ClientCredential, ManagedIdentityId, ManagedIdentitySource, OboForm};

const GOOD: &str = r#"
listen = "127.0.0.1:9000"
store = "redis://:pw@127.0.0.1:6390"
key_prefix = "p:"

[inbound]
issuer = "https://login.microsoftonline.com/t/v2.0"
audiences = ["api://mine"]

[apis.orders]
authority = "https://login.microsoftonline.com/t/v2.0"
client_id = "c1"
client_secret_env = "ORDERS_SECRET"
scopes = ["api://orders/.default"]

[apis.graph-obo]
authority = "https://op.example/t"
client_id = "c2"
client_secret_env = "ORDERS_SECRET"
scopes = ["a", "b"]
on_behalf_of = true
obo_form = "token_exchange"
"#;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn parse_with(text: &str, env: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
    let pairs: &'static [(&'static str, &'static str)] = Box::leak(env.to_vec().into_boxed_slice());
    let env = env_of(pairs);
    parse(Path::new("tc.toml"), text, None, &env)
}

#[test]
fn the_documented_shape_parses() {
    let c = parse_with(GOOD, &[("ORDERS_SECRET", "s3cret-value")]).unwrap();
    assert_eq!(c.listen, Listen::Tcp("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(c.key_prefix, "p:");
    assert_eq!(c.apis.len(), 2);
    let o = &c.apis["orders"];
    assert!(!o.on_behalf_of);
    assert_eq!(o.scopes, ["api://orders/.default"]);
    let g = &c.apis["graph-obo"];
    assert!(g.on_behalf_of);
    assert_eq!(g.obo_form, OboForm::TokenExchange);
    assert!(!format!("{c:?}").contains("s3cret-value"));
    assert!(!format!("{c:?}").contains(":pw@"));
}

#[test]
fn the_environment_overrides_every_level() {
    let c = parse_with(
        GOOD,
        &[
            ("ORDERS_SECRET", "x"),
            ("TOKENCACHE_LISTEN", "/tmp/tc.sock"),
            ("TOKENCACHE_STORE", "memory://"),
            ("TOKENCACHE_APIS__GRAPH_OBO__SCOPES", "x y,z"),
            ("TOKENCACHE_APIS__ORDERS__ON_BEHALF_OF", "true"),
            ("TOKENCACHE_MAX_PROVIDER_REQUESTS", "3"),
        ],
    )
    .unwrap();
    assert_eq!(c.listen, Listen::Unix("/tmp/tc.sock".into()));
    assert_eq!(c.store.unwrap().expose(), "memory://");
    assert_eq!(c.apis["graph-obo"].scopes, ["x", "y", "z"]);
    assert!(c.apis["orders"].on_behalf_of);
    assert_eq!(c.max_provider_requests, 3);
    let flag = parse(
        Path::new("f"),
        GOOD,
        Some("127.0.0.1:1"),
        &env_of(&[("ORDERS_SECRET", "x"), ("TOKENCACHE_LISTEN", "bad")]),
    )
    .unwrap();
    assert_eq!(flag.listen, Listen::Tcp("127.0.0.1:1".parse().unwrap()));
}

#[test]
fn a_key_prefix_may_hold_a_hash_tag_and_listen_takes_a_name() {
    let text = "key_prefix = '{app}:'\nlisten = 'localhost:8080'\n[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n";
    let c = parse_with(text, &[("E", "v")]).unwrap();
    assert_eq!(c.key_prefix, "{app}:");
    match c.listen {
        Listen::Tcp(a) => {
            assert!(a.ip().is_loopback(), "{a}");
            assert_eq!(a.port(), 8080);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn api_variables_must_name_a_configured_api_and_key() {
    let c = parse_with(GOOD, &[("ORDERS_SECRET", "x")]).unwrap();
    let check = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        check_variables("tc.toml", &c, &names)
    };
    assert!(check(&[
        "TOKENCACHE_APIS__ORDERS__SCOPES",
        "TOKENCACHE_APIS__GRAPH_OBO__ON_BEHALF_OF",
        "TOKENCACHE_LOG",
        "PATH"
    ])
    .is_ok());
    let e = check(&["TOKENCACHE_APIS__NOPE__SCOPES"])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "tc.toml: TOKENCACHE_APIS__NOPE__SCOPES: no API named \"nope\" in the file (its APIs: graph-obo, orders); the variable would be ignored");
    let e = check(&["TOKENCACHE_APIS__ORDERS__SCOPE"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("tc.toml: TOKENCACHE_APIS__ORDERS__SCOPE: \"scope\" is not a key of an API"),
        "{e}"
    );
}

#[test]
fn placeholders_are_found_and_named_alone() {
    assert_eq!(
        placeholder("https://login.microsoftonline.com/{tenant}/v2.0").as_deref(),
        Some("{tenant}")
    );
    assert_eq!(placeholder("...").as_deref(), Some("..."));
    assert_eq!(
        placeholder("<your client id>").as_deref(),
        Some("<your client id>")
    );
    for real in [
        "https://login.microsoftonline.com/72f988bf/v2.0",
        "api://orders/.default",
        "6e2ab7a5-4c3b",
        "a{b",
        "x>y<z",
        "{\"json\":1}",
    ] {
        assert_eq!(placeholder(real), None, "{real}");
    }
}

type Pairs = &'static [(&'static str, &'static str)];

#[test]
fn errors_are_one_line_with_file_and_key_and_no_secret() {
    let cases: &[(&str, Pairs, &str)] = &[
        ("listen = 5\n[apis.a]\n", &[], "tc.toml: listen: must be a string, not integer"),
        (GOOD, &[], "tc.toml: apis.graph-obo.client_secret_env: the environment variable ORDERS_SECRET is not set"),
        (GOOD, &[("ORDERS_SECRET", "x"), ("TOKENCACHE_LISTEN", "nowhere")], "tc.toml: listen (from TOKENCACHE_LISTEN): \"nowhere\" is not an address"),
        ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret='hunter2-secret'\nscopes=['s']\n", &[], "tc.toml: apis.a.client_secret: a secret is not accepted in the file"),
        ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\nscope='x'\n", &[("E", "v")], "tc.toml: apis.a.scope: unknown key"),
        ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=[]\n", &[("E", "v")], "tc.toml: apis.a.scopes: needs 1 to 50 scopes"),
        ("[apis.a]\nauthority='https://x/t'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v")], "tc.toml: apis.a.client_id: missing"),
        ("[apis.'a b']\n", &[], "tc.toml: apis.a b: an API name is"),
        ("", &[], "tc.toml: apis: no API configured"),
        ("x = \"hunter2-secret\n", &[], "tc.toml: line 1:"),
        ("request_timeout_ms = 5\n[apis.a]\n", &[], "tc.toml: request_timeout_ms: must be from 100 to 600000, got 5"),
        ("caller_key_env = 'K'\n[apis.a]\n", &[("K", "short")], "tc.toml: caller_key_env: the caller key is too short"),
        // A template's placeholders fail at start, in the file or the environment.
        ("[apis.a]\nauthority='https://login.microsoftonline.com/{tenant}/v2.0'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v")], "tc.toml: apis.a.authority: still holds the placeholder {tenant}: put the real value"),
        ("[apis.a]\nauthority='https://x/t'\nclient_id='...'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v")], "tc.toml: apis.a.client_id: still holds the placeholder ..."),
        ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['api://<app-id>/.default']\n", &[("E", "v")], "tc.toml: apis.a.scopes: still holds the placeholder <app-id>"),
        ("[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n", &[("E", "v"), ("TOKENCACHE_APIS__A__CLIENT_ID", "\u{2026}")], "tc.toml: apis.a.client_id (from TOKENCACHE_APIS__A__CLIENT_ID): still holds the placeholder \u{2026}"),
        // A port redis-rs would only call "did not parse".
        ("store = 'redis://:hunter2@127.0.0.1:99999'\n[apis.a]\n", &[], "tc.toml: store: the port \"99999\" of host 127.0.0.1 in the Redis URL is not a number from 1 to 65535"),
        ("listen = 'no-such-host.invalid:80'\n[apis.a]\n", &[], "tc.toml: listen: \"no-such-host.invalid:80\": cannot resolve"),
    ];
    for (text, env, want) in cases {
        let e = parse_with(text, env).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        assert!(!e.contains('\n'), "{e:?}");
        assert!(!e.contains("hunter2"), "{e:?}");
    }
}

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tokencache/tests/fixtures/acquire/"
);

fn api(body: &str) -> String {
    format!("[apis.a]\nscopes = ['s']\n{body}\n")
}

#[test]
fn deployment_credentials_parse_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-from-file\n").unwrap();
    let secret_path = Box::leak(secret.display().to_string().into_boxed_str());
    let cred = |text: &str, env: &[(&'static str, &'static str)]| {
        let c = parse_with(text, env).unwrap_or_else(|e| panic!("{text}: {e}"));
        let a = c.apis.into_values().next().unwrap();
        (a.authority, a.client_id, a.credential)
    };
    let base = "authority = 'https://op.example/t'\nclient_id = 'c'\n";
    let (_, _, c) = cred(
        &api(&format!("{base}client_assertion_file = '/var/run/token'")),
        &[],
    );
    assert!(
        matches!(c, CredentialConfig::Client(ClientCredential::AssertionFile(p)) if p == Path::new("/var/run/token"))
    );
    let (_, _, c) = cred(
        &api(&format!(
            "{base}client_secret_file = '{secret_path}'\nsecret_method = 'post'"
        )),
        &[],
    );
    assert!(matches!(
        c,
        CredentialConfig::Client(ClientCredential::SecretFilePost(_))
    ));
    assert!(!format!("{c:?}").contains("s3cret-from-file"));
    // certificates: PEM pair, key beside the certificate, PKCS#12 with its password
    let (_, _, c) = cred(
        &api(&format!("{base}client_cert_file = '{FIXTURES}client-chain.pem'\nclient_cert_key_file = '{FIXTURES}client-key.pem'\nsend_x5c = true")),
        &[],
    );
    assert!(matches!(
        c,
        CredentialConfig::Client(ClientCredential::Certificate(_))
    ));
    let (_, _, c) = cred(
        &api(&format!(
            "{base}client_cert_file = '{FIXTURES}client.p12'\nclient_cert_password_env = 'P12_PW'"
        )),
        &[("P12_PW", "p12-test-password")],
    );
    assert!(matches!(
        c,
        CredentialConfig::Client(ClientCredential::Certificate(_))
    ));
    assert!(!format!("{c:?}").contains("p12-test-password"));
    // workload identity: authority and client id from the AZURE_* variables
    let (authority, client_id, c) = cred(
        &api("credential = 'workload_identity'"),
        &[
            ("AZURE_CLIENT_ID", "wi-client"),
            ("AZURE_TENANT_ID", "t1"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
        ],
    );
    assert_eq!(
        (authority.as_str(), client_id.as_str()),
        ("https://login.microsoftonline.com/t1/v2.0", "wi-client")
    );
    assert!(matches!(
        c,
        CredentialConfig::Client(ClientCredential::AssertionFile(_))
    ));
    // managed identity, as the source and as the assertion
    let app_service = [
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"),
        ("IDENTITY_HEADER", "hdr-s3cret"),
    ];
    let (_, _, c) = cred(
        &api("credential = 'managed_identity'\nmanaged_identity_client_id = 'uami'"),
        &app_service,
    );
    match &c {
        CredentialConfig::ManagedIdentity(m) => {
            assert_eq!(m.id, ManagedIdentityId::ClientId("uami".into()));
            assert!(matches!(m.source, ManagedIdentitySource::AppService { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{c:?}").contains("hdr-s3cret"));
    let (_, _, c) = cred(
        &api(&format!("{base}credential = 'managed_identity_assertion'")),
        &[],
    );
    assert!(matches!(
        c,
        CredentialConfig::ManagedIdentityAssertion(ManagedIdentityConfig {
            source: ManagedIdentitySource::Imds { .. },
            ..
        })
    ));
}

#[test]
fn credential_errors_are_one_line_naming_the_key_and_file() {
    let base = "authority = 'https://op.example/t'\nclient_id = 'c'\n";
    let cases: Vec<(String, Pairs, String)> = vec![
        (api(&format!("{base}client_cert_file = '{FIXTURES}expired-cert.pem'\nclient_cert_key_file = '{FIXTURES}client-key.pem'")), &[], "tc.toml: apis.a.client_cert_file: client certificate ".into()),
        (api(&format!("{base}client_cert_file = '{FIXTURES}client.p12'\nclient_cert_password_env = 'P'")), &[("P", "hunter2-wrong")], "tc.toml: apis.a.client_cert_file: client certificate ".into()),
        (api(&format!("{base}client_cert_file = '{FIXTURES}client-cert.pem'\nclient_cert_key_file = '{FIXTURES}other-key.pem'")), &[], "tc.toml: apis.a.client_cert_file: ".into()),
        (api(&format!("{base}client_secret_file = '/nonexistent/secret'")), &[], "tc.toml: apis.a.client_secret_file: client secret file /nonexistent/secret: cannot be read".into()),
        (api(&format!("{base}client_secret_env = 'E'\nclient_assertion_file = '/f'")), &[("E", "v")], "tc.toml: apis.a.client_secret_env: give only one of".into()),
        (api(&format!("{base}credential = 'magic'")), &[], "tc.toml: apis.a.credential: must be".into()),
        (api("credential = 'workload_identity'"), &[("AZURE_CLIENT_ID", "c")], "tc.toml: apis.a.credential: invalid configuration or input: workload identity: AZURE_TENANT_ID is not set".into()),
        (api(&format!("{base}credential = 'managed_identity'")), &[], "tc.toml: apis.a.authority: not used with credential = \"managed_identity\"".into()),
        (api("credential = 'managed_identity'\non_behalf_of = true"), &[], "tc.toml: apis.a.on_behalf_of: a managed identity acquires app tokens only".into()),
        ("[apis.a]\nscopes = ['s', 't']\ncredential = 'managed_identity'\n".into(), &[], "tc.toml: apis.a.scopes: a managed identity token is for one resource".into()),
        (api("credential = 'managed_identity'\nmanaged_identity_client_id = 'x'\nmanaged_identity_object_id = 'y'"), &[], "tc.toml: apis.a.managed_identity_object_id: give one of".into()),
        (api("credential = 'managed_identity'"), &[("IDENTITY_ENDPOINT", "http://a")], "tc.toml: apis.a.credential: managed identity: invalid configuration or input: IDENTITY_ENDPOINT is set without IDENTITY_HEADER".into()),
        (api(&format!("{base}client_cert_file = '{FIXTURES}client-key.pem'\nclient_cert_password_env = 'P'")), &[("P", "x")], "tc.toml: apis.a.client_cert_password_env: a password is for a PKCS#12".into()),
    ];
    for (text, env, want) in cases {
        let e = parse_with(&text, env).unwrap_err().to_string();
        assert!(e.starts_with(&want), "{e:?} should start with {want:?}");
        assert!(!e.contains('\n'), "{e:?}");
        assert!(!e.contains("hunter2"), "{e:?}");
    }
}

#[test]
fn the_security_model_is_checked_at_start() {
    let api =
        "[apis.a]\nauthority='https://x/t'\nclient_id='c'\nclient_secret_env='E'\nscopes=['s']\n";
    let obo = format!("{api}on_behalf_of = true\n");
    let inbound = "[inbound]\nissuer = 'https://op.example/t'\naudiences = ['api://mine']\n";
    // defaults: local callers, RS256/PS256/ES256, 60 s skew, 10 s header timeout, 0600 socket
    let c = parse_with(&format!("{inbound}{obo}"), &[("E", "v")]).unwrap();
    let i = c.inbound.as_ref().unwrap();
    assert!(i.validate);
    assert_eq!(i.algorithms, DEFAULT_ALGORITHMS);
    assert_eq!(i.clock_skew, Duration::from_secs(60));
    assert_eq!(i.issuers, ["https://op.example/t"]);
    assert!(!c.security.allow_remote_callers);
    assert_eq!(c.security.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.security.socket_mode, 0o600);
    assert_eq!(c.apis["a"].allowed_scopes, ["s"]);
    // validate = false: accepted, nothing else needed
    let c = parse_with(
        &format!("{obo}[inbound]\nvalidate = false\n"),
        &[("E", "v")],
    )
    .unwrap();
    assert!(!c.inbound.unwrap().validate);
    // several issuers, explicit keys, scopes and roles
    let c = parse_with(
        &format!("{api}allowed_scopes = ['s', 't']\n[inbound]\nissuers = ['https://a.example/1', 'http://127.0.0.1:9/2']\njwks_uri = 'https://a.example/keys'\naudiences = ['x']\nalgorithms = ['ES384']\nrequired_scopes = ['r']\nrequired_roles = ['R']\nclock_skew_s = 5\n"),
        &[("E", "v")],
    )
    .unwrap();
    assert_eq!(c.apis["a"].allowed_scopes, ["s", "t"]);
    assert_eq!(c.inbound.unwrap().issuers.len(), 2);
    let cases: &[(String, Pairs, &str)] = &[
        (obo.clone(), &[("E", "v")], "tc.toml: apis.a.on_behalf_of: the incoming token must be validated before it is sent to the provider: add [inbound]"),
        (format!("allow_remote_callers = true\n{api}"), &[("E", "v")], "tc.toml: allow_remote_callers: remote callers must be authenticated"),
        (format!("allow_remote_callers = true\n{obo}[inbound]\nvalidate = false\n"), &[("E", "v")], "tc.toml: allow_remote_callers: remote callers must be authenticated"),
        (format!("{inbound}algorithms = ['HS256']\n{api}"), &[("E", "v")], "tc.toml: inbound.algorithms: \"HS256\" is not accepted"),
        (format!("{inbound}algorithms = ['none']\n{api}"), &[("E", "v")], "tc.toml: inbound.algorithms: \"none\" is not accepted"),
        (format!("[inbound]\naudiences = ['x']\n{api}"), &[("E", "v")], "tc.toml: inbound.issuer: missing"),
        (format!("[inbound]\nissuer = 'https://op.example/t'\n{api}"), &[("E", "v")], "tc.toml: inbound.audiences: missing"),
        (format!("[inbound]\nissuer = 'ftp://op.example/t'\naudiences = ['x']\n{api}"), &[("E", "v")], "tc.toml: inbound.issuer: an issuer is an https URL"),
        (format!("[inbound]\nissuer = 'http://op.example/t'\naudiences = ['x']\n{api}"), &[("E", "v")], "tc.toml: inbound.issuer: an issuer is an https URL"),
        (format!("{inbound}clock_skew_s = 99999\n{api}"), &[("E", "v")], "tc.toml: inbound.clock_skew_s: must be from 0 to 600"),
        (format!("{inbound}surprise = 1\n{api}"), &[("E", "v")], "tc.toml: inbound.surprise: unknown key"),
        (format!("caller_key_env = 'K'\nadmin_key_env = 'A'\n{api}"), &[("E", "v"), ("K", "same-key-0123456789"), ("A", "same-key-0123456789")], "tc.toml: admin_key_env: the admin key must differ from the caller key"),
        (format!("admin_key_env = 'A'\n{api}"), &[("E", "v"), ("A", "short")], "tc.toml: admin_key_env: the admin key is too short"),
        (format!("socket_mode = '0066'\n{api}"), &[("E", "v")], "tc.toml: socket_mode: an octal mode"),
        (format!("socket_mode = 'rw'\n{api}"), &[("E", "v")], "tc.toml: socket_mode: an octal mode"),
        (format!("header_read_timeout_ms = 0\n{api}"), &[("E", "v")], "tc.toml: header_read_timeout_ms: must be from 100"),
    ];
    for (text, env, want) in cases {
        let e = parse_with(text, env).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        assert!(!e.contains('\n'), "{e:?}");
        assert!(!e.contains("same-key"), "{e:?}");
    }
    // remote callers with a caller key, or with [inbound]
    assert!(parse_with(
        &format!("allow_remote_callers = true\ncaller_key_env = 'K'\n{api}"),
        &[("E", "v"), ("K", "k-0123456789abcdef")]
    )
    .is_ok());
    assert!(parse_with(
        &format!("allow_remote_callers = true\n{inbound}{api}"),
        &[("E", "v")]
    )
    .is_ok());
}
