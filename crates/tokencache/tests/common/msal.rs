//! The MSAL peers of the interop tests (`interop_fixtures.rs`, `interop_python.rs`,
//! `interop_node.rs`): the fixtures, the drivers of the real MSAL Python and msal-node
//! (`interop/msal_py.py`, `interop/msal_node.mjs`, installed by `interop/setup.sh`), and
//! tokencache's own writes and lookups of the same cases.
#![allow(dead_code, unused_imports)]

pub use serde_json::{json, Value};
pub use sha2::{Digest, Sha256};
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Stdio};
pub use std::sync::OnceLock;
pub use tokencache::schema::{
    AccessTokenQuery, AppAccountForm, Partition, RefreshTokenQuery, TokenRequest, TokenResponse,
};

// ---------------------------------------------------------------------------------------------
// helpers

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn peers_dir() -> PathBuf {
    std::env::var_os("TOKENCACHE_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".peers"))
}

/// Fingerprint used by both drivers: first 16 hex digits of SHA-256 of the secret.
pub fn fp(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures_dir().join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// `tests/fixtures/interop_cases.json`: ids, clock, fake token responses, expectations.
pub fn cases() -> &'static Value {
    static CASES: OnceLock<Value> = OnceLock::new();
    CASES.get_or_init(|| {
        serde_json::from_str(&fixture("interop_cases.json")).expect("interop_cases.json")
    })
}

pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string {k}"))
}

pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("string").to_owned())
        .collect()
}

pub fn now() -> i64 {
    cases()["now"].as_i64().expect("now")
}

/// The authority's host: what a Rust service configured with this authority uses as environment.
pub fn environment() -> String {
    let a = s(cases(), "authority");
    a.trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_lowercase()
}

/// base64url (no padding) of SHA-256 of the assertion: msal-node's `userAssertionHash`,
/// MSAL.NET's `user_assertion_hash`.
pub fn assertion_hash(assertion: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(assertion.as_bytes()))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Peer {
    Python,
    Node,
}

pub fn require_tool(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "interop tests need `{tool}` on PATH (python3 with venv, node >= 20, npm); install it \
         (Debian: apt-get install python3-venv nodejs npm) — these tests never skip"
    );
}

/// Runs `interop/setup.sh` once per test process (it is a no-op when the pins are installed).
pub fn ensure_peers() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        for t in ["python3", "node", "npm"] {
            require_tool(t);
        }
        let out = Command::new("bash")
            .arg(repo_root().join("interop/setup.sh"))
            .env("TOKENCACHE_PEERS_DIR", peers_dir())
            .output()
            .expect("run interop/setup.sh");
        assert!(
            out.status.success(),
            "interop/setup.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
    });
}

/// Runs one driver subcommand with a JSON request on stdin; returns its JSON answer.
pub fn drive(peer: Peer, cmd: &str, req: &Value) -> Value {
    ensure_peers();
    let root = repo_root();
    let mut c = match peer {
        Peer::Python => {
            let mut c = Command::new(peers_dir().join("venv/bin/python"));
            c.arg(root.join("interop/msal_py.py"));
            c
        }
        Peer::Node => {
            let mut c = Command::new("node");
            c.arg(root.join("interop/msal_node.mjs"));
            c
        }
    };
    c.arg(cmd)
        .env("TOKENCACHE_PEERS_DIR", peers_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {peer:?} driver: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(req.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{peer:?} driver `{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{peer:?} driver `{cmd}` printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    User,
    App,
    Obo,
}

impl Kind {
    pub fn case(self) -> &'static Value {
        &cases()[match self {
            Kind::User => "user",
            Kind::App => "app",
            Kind::Obo => "obo",
        }]
    }
    pub fn grant(self) -> &'static str {
        match self {
            Kind::User => "authorization_code",
            Kind::App => "client_credentials",
            Kind::Obo => "on_behalf_of",
        }
    }
    pub fn scopes(self) -> Vec<String> {
        strs(&self.case()["scope"])
    }
    pub fn access_token_fp(self) -> String {
        fp(s(&self.case()["response"], "access_token"))
    }
    pub fn assertion(self) -> Option<&'static str> {
        (self == Kind::Obo).then(|| s(self.case(), "assertion"))
    }
}

/// A peer builds a cache from the case's token response through its public API.
pub fn peer_write(peer: Peer, kind: Kind) -> String {
    let c = cases();
    let mut ev = json!({
        "client_id": c["client_id"], "authority": c["authority"], "scope": kind.case()["scope"],
        "response": kind.case()["response"], "now": c["now"], "grant": kind.grant(),
    });
    if let Some(a) = kind.assertion() {
        ev["assertion"] = json!(a);
    }
    let out = drive(peer, "write", &ev);
    assert_eq!(
        out["results"][0]["fingerprint"].as_str(),
        Some(kind.access_token_fp().as_str())
    );
    out["blob"].as_str().expect("blob").to_owned()
}

/// What the peer's public API returns from this blob (cache only: its token endpoint fails).
/// Returns (fingerprint via the app API, fingerprint via the cache search where the peer has one).
pub fn peer_find(
    peer: Peer,
    blob: &str,
    client_id: &str,
    scopes: &[String],
    home_account_id: Option<&str>,
    assertion: Option<&str>,
) -> (Option<String>, Option<String>) {
    let c = cases();
    let mut req = json!({
        "blob": blob, "client_id": client_id, "authority": c["authority"], "scope": scopes,
        "home_account_id": home_account_id, "now": now() + 60,
    });
    if let Some(a) = assertion {
        req["assertion"] = json!(a);
    }
    let out = drive(peer, "find", &req);
    let app = out["app"].as_str().map(str::to_owned);
    if app.is_some() {
        // a hit must come from the cache, never from the (failing) token endpoint
        assert_eq!(
            out["token_requests"],
            json!(0),
            "{peer:?}: hit without a cache read: {out}"
        );
    }
    let search = match peer {
        Peer::Python => out["search"].as_str().map(str::to_owned),
        Peer::Node => app.clone(),
    };
    (app, search)
}

pub fn peer_find_rt(peer: Peer, blob: &str, home_account_id: &str) -> Option<String> {
    let c = cases();
    let req = json!({"blob": blob, "client_id": c["client_id"], "authority": c["authority"],
                     "home_account_id": home_account_id});
    drive(peer, "find_rt", &req)["search"]
        .as_str()
        .map(str::to_owned)
}

/// tokencache's lookup in a blob, the way a Rust service configured with the case's authority
/// asks: client id, scopes, tenant, environment = authority host, home account (user) or
/// assertion hash (OBO).
pub fn tc_find(
    blob: &str,
    client_id: &str,
    scopes: &[String],
    home_account_id: Option<&str>,
    assertion: Option<&str>,
    environment: Option<&str>,
) -> Option<String> {
    let p = Partition::parse(blob.as_bytes()).expect("tokencache parses the blob");
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let tenant = s(cases(), "tenant");
    let hash = assertion.map(assertion_hash);
    let mut q = AccessTokenQuery::new(client_id, &scopes);
    q.realm = Some(tenant);
    q.home_account_id = home_account_id;
    q.environment = environment;
    q.user_assertion_hash = hash.as_deref();
    p.find_access_token(&q, now() + 60)
        .map(|at| fp(at.secret.expose()))
}

/// tokencache writes a new partition from the case's token response (the default form of an
/// empty `home_account_id`, as `TokenCache` does).
pub fn tc_write(kind: Kind) -> String {
    tc_write_with(kind, AppAccountForm::default())
}

/// tokencache writes a new partition from the case's token response, with `form` for an empty
/// `home_account_id`.
pub fn tc_write_with(kind: Kind, form: AppAccountForm) -> String {
    let scopes = kind.scopes();
    tc_add(
        &Partition::new(),
        kind,
        &scopes,
        &kind.case()["response"],
        form,
    )
}

/// tokencache saves `response` (for `scopes`, of `kind`'s flow) into the partition `blob`, as
/// `TokenCache` does when it updates a partition (default form for partitions without one).
pub fn tc_update(blob: &str, kind: Kind, scopes: &[String], response: &Value) -> String {
    let p = Partition::parse(blob.as_bytes()).expect("tokencache parses the blob");
    tc_add(&p, kind, scopes, response, AppAccountForm::default())
}

pub fn tc_add(
    p: &Partition,
    kind: Kind,
    scopes: &[String],
    response: &Value,
    form: AppAccountForm,
) -> String {
    let c = cases();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let env = environment();
    let req = TokenRequest {
        client_id: s(c, "client_id"),
        environment: &env,
        realm: s(c, "tenant"),
        scopes: &scopes,
        user_assertion: kind.assertion(),
    };
    let body = serde_json::to_vec(response).unwrap();
    let resp = TokenResponse::from_json(&body).expect("TokenResponse::from_json");
    let mut p = p.clone();
    // As a `TokenCache` save: the millisecond too (`tc_written_at_ms`, unknown to the SDKs).
    p.add_token_response_written_at(&req, &resp, now() * 1000 + 123, form)
        .expect("add_token_response");
    String::from_utf8(p.to_vec()).expect("utf-8 blob")
}

/// A second token of `kind`'s flow, for other scopes than the case's: (scopes, token response).
/// Its access token (and, for users, refresh token) differs from the case's.
pub fn second_token(kind: Kind) -> (Vec<String>, Value) {
    let mut resp = kind.case()["response"].clone();
    let at = s(&resp, "access_token").to_owned();
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 3, "the case's access token is a JWT");
    let (scopes, echo, what) = match kind {
        Kind::App => (
            v(&["api://contoso-inventory/.default"]),
            None,
            "second app access token",
        ),
        Kind::User => (
            v(&["Files.Read"]),
            Some("Files.Read openid profile offline_access"),
            "second user access token",
        ),
        Kind::Obo => (
            v(&["https://graph.microsoft.com/Files.Read"]),
            Some("https://graph.microsoft.com/Files.Read"),
            "second obo access token",
        ),
    };
    {
        use base64::Engine;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({ "fake": what, "iat": now(), "exp": now() + 3599 }).to_string());
    }
    resp["access_token"] = json!(parts.join("."));
    match echo {
        Some(e) => resp["scope"] = json!(e),
        None => {
            if let Some(m) = resp.as_object_mut() {
                m.remove("scope");
            }
        }
    }
    if resp.get("refresh_token").is_some() {
        resp["refresh_token"] = json!("fake-refresh-token.1.BBBB-user-second-yyyyyyyyyyyyyyyyyyyy");
    }
    (scopes, resp)
}

/// The JSON `home_account_id` of every access token in `blob` (`None`: no field), by target.
pub fn at_home_account_ids(blob: &str) -> std::collections::BTreeMap<String, Option<Value>> {
    serde_json::from_str::<Value>(blob).unwrap()["AccessToken"]
        .as_object()
        .unwrap()
        .values()
        .map(|at| {
            (
                s(at, "target").to_owned(),
                at.get("home_account_id").cloned(),
            )
        })
        .collect()
}

/// msal-node (like MSAL.NET) stores the public cloud's *preferred_cache* alias
/// (`login.windows.net`) as the environment of tokens got from `login.microsoftonline.com`,
/// and matches environments through the alias list; MSAL Python stores the authority host.
pub fn env_alias_msg(blob: &str) -> String {
    let envs: std::collections::BTreeSet<String> = serde_json::from_str::<Value>(blob)
        .unwrap()
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_object)
        .flat_map(|m| m.values())
        .filter_map(|e| e["environment"].as_str().map(str::to_owned))
        .collect();
    format!(
        "miss with environment = {:?} while the blob's entries have environment {envs:?}: \
         tokencache must match the cloud's aliases (login.microsoftonline.com, login.windows.net, \
         login.microsoft.com, sts.windows.net) as msal-node and MSAL.NET do",
        environment()
    )
}

pub fn home() -> &'static str {
    s(cases(), "home_account_id")
}

pub fn client_id() -> &'static str {
    s(cases(), "client_id")
}

pub const OTHER_CLIENT: &str = "99999999-8888-7777-6666-555555555555";

pub fn v(x: &[&str]) -> Vec<String> {
    x.iter().map(|s| s.to_string()).collect()
}

/// Every field of every entry of `before` is in `after` with the same value, under the same
/// entry key (unknown fields and sections survive), and no entry was lost.
pub fn assert_preserved(name: &str, before: &Value, after: &Value) {
    let b = before.as_object().unwrap();
    for (section, entries) in b {
        let Some(entries) = entries.as_object() else {
            continue;
        };
        for (key, entry) in entries {
            let got = after
                .get(section)
                .and_then(|s| s.get(key))
                .unwrap_or_else(|| {
                    panic!("{name}: entry {section}/{key} lost on re-serialization")
                });
            for (field, val) in entry.as_object().unwrap() {
                if let Some(why) = documented_normalization(section, field, val, got) {
                    eprintln!("{name}: {section} `{field}`: {why}");
                    continue;
                }
                let redacted = |v: &Value| {
                    if field == "secret" {
                        json!("<secret>")
                    } else {
                        v.clone()
                    }
                };
                assert_eq!(
                    got.get(field).map(redacted),
                    Some(redacted(val)),
                    "{name}: {section}/{key} field `{field}` changed on re-serialization"
                );
                if field == "secret" {
                    assert_eq!(
                        got.get(field),
                        Some(val),
                        "{name}: {section}/{key} secret changed"
                    );
                }
            }
        }
    }
}

/// The rewrites tokencache's writer does on purpose ("written the MSAL.NET way", schema/mod.rs).
/// Each is checked to be exactly that rewrite; anything else must survive unchanged.
///
/// `home_account_id` is not among them: `null`, `""` and a missing field are each written back
/// as read (MSAL Python finds its app tokens only with `null`, msal-node only with `""`).
///
/// The OBO hash of a refresh token msal-node wrote (`userAssertionHash`) is written back as
/// MSAL.NET's `user_assertion_hash` only; access tokens carry both spellings, so msal-node still
/// finds its OBO access tokens after tokencache updated its blob
/// (`live_node_obo_cache_updated_by_tokencache_still_read_by_node`).
pub fn documented_normalization(
    section: &str,
    field: &str,
    before: &Value,
    after: &Value,
) -> Option<&'static str> {
    match (section, field) {
        ("AccessToken", "token_type")
            if before == "Bearer" && after.get("token_type").is_none() =>
        {
            Some("Bearer token_type omitted (MSAL.NET way; every SDK defaults to Bearer)")
        }
        (_, "userAssertionHash")
            if after.get("userAssertionHash").is_none()
                && after["user_assertion_hash"] == *before =>
        {
            Some("msal-node's userAssertionHash written as user_assertion_hash (MSAL.NET way)")
        }
        _ => None,
    }
}
