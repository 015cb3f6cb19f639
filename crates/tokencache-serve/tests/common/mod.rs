//! The harness of the `tokencache serve` tests: the server process, plain HTTP/1.1
//! requests over a fresh TCP connection each (`Connection: close`, so that a test sees
//! exactly what the server wrote), the provider's test controls, and the OpenAPI checks
//! of every answer against `docs/openapi.json`. Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use testkit::OidcProvider;

pub const SECRET: &str = "app-secret";

// ---- the server under test ---------------------------------------------------------------

/// One `tokencache serve` process; killed when dropped. Its stderr (the logs) goes to a
/// file, read by [`Serve::logs`].
pub struct Serve {
    pub child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Serve {
        Self::start_on(config, env, "127.0.0.1:0")
    }

    /// As [`start`](Self::start), listening on `listen`.
    pub fn start_on(config: &Path, env: &[(&str, &str)], listen: &str) -> Serve {
        let log = config.with_extension(format!("{}.log", rand_suffix()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokencache-serve"));
        cmd.arg("--config")
            .arg(config)
            .args(["--listen", listen, "--log-format", "json"])
            .env("APP_SECRET", SECRET)
            .env("TOKENCACHE_LOG", "tokencache=debug")
            .env_remove("TOKENCACHE_KEYS")
            .env_remove("TOKENCACHE_KEYS_FILE")
            .env_remove("TOKENCACHE_STORE")
            .env_remove("TOKENCACHE_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("run tokencache serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("tokencache serve: listening on ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "tokencache serve did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Serve {
            child: Some(child),
            addr,
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait").code()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration with two APIs on `op`: `orders` (client credentials) and
/// `orders-obo` (on behalf of the caller's user), and `extra` top-level lines; the
/// incoming tokens are validated against `op` (`[inbound]`: its issuer, audience `app`,
/// as [`user_token`] mints them).
pub fn config(dir: &Path, op: &OidcProvider, store: &str, extra: &str) -> PathBuf {
    let inbound = format!(
        "[inbound]\nissuer = \"{}\"\naudiences = [\"app\"]\n",
        op.issuer()
    );
    config_with(dir, op, store, extra, &inbound)
}

/// As [`config`], with `inbound` (an `[inbound]` table, or nothing) instead.
pub fn config_with(
    dir: &Path,
    op: &OidcProvider,
    store: &str,
    extra: &str,
    inbound: &str,
) -> PathBuf {
    let path = dir.join(format!("serve-{}.toml", rand_suffix()));
    let issuer = op.issuer();
    std::fs::write(
        &path,
        format!(
            r#"store = "{store}"
{extra}
{inbound}

[apis.orders]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]

[apis.orders-obo]
authority = "{issuer}"
client_id = "app"
client_secret_env = "APP_SECRET"
scopes = ["api.read"]
on_behalf_of = true
"#
        ),
    )
    .expect("write the config");
    path
}

// ---- HTTP ---------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {}", self.status))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request; `Err` with what happened when no complete answer came.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    exchange(addr, &req)
}

/// Sends `req` (a whole HTTP/1.1 request) over a fresh connection and reads the answer.
pub fn exchange(addr: &str, req: &str) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read after {} bytes: {e}", raw.len()))?;
    if raw.is_empty() {
        return Err("closed without an answer".into());
    }
    let text = String::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("incomplete head ({} bytes)", text.len()))?;
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .ok_or("no Content-Length")?;
        if rest.len() != len {
            return Err(format!("body of {} bytes, {len} announced", rest.len()));
        }
        rest.to_string()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

pub fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("bad chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..n).ok_or("short chunk")?);
        rest = after.get(n + 2..).ok_or("short chunk")?;
    }
}

/// POSTs an `application/x-www-form-urlencoded` body.
pub fn form_post(addr: &str, path: &str, body: &str) -> Answer {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(addr, &req).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// The value of an unlabelled metric of the server at `addr`.
pub fn metric(addr: &str, name: &str) -> f64 {
    let m = request(addr, "GET", "/metrics", &[], None);
    m.body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

// ---- the provider's test controls ----------------------------------------------------------

pub fn provider_stats(op: &OidcProvider) -> Value {
    serde_json::from_str(&op.get("/__test/stats")).expect("stats JSON")
}

pub fn grants(op: &OidcProvider, grant: &str) -> u64 {
    provider_stats(op)["by_grant"][grant].as_u64().unwrap_or(0)
}

pub const CC: &str = "client_credentials";
pub const OBO: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub fn fault(op: &OidcProvider, query: &str) {
    let a = request(
        &format!("127.0.0.1:{}", op.port()),
        "POST",
        &format!("/__test/fault?{query}"),
        &[],
        Some(""),
    );
    assert_eq!(a.status, 200, "fault {query}");
}

/// A user access token for `sub` (audience `app`), as a web API receives it.
pub fn user_token(op: &OidcProvider, sub: &str) -> String {
    minted(op, &format!("sub={sub}&aud=app"))
}

/// A user access token minted by `op` with this query (`sub`, `aud`, `ttl` seconds).
pub fn minted(op: &OidcProvider, query: &str) -> String {
    let v: Value = serde_json::from_str(&op.get(&format!("/__test/mint?{query}"))).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

// ---- the OpenAPI document -------------------------------------------------------------------

pub fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json"))
        .expect("docs/openapi.json is JSON")
}

pub fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut at = spec;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            assert!(!at.is_null(), "dangling $ref {r}");
            resolve(spec, at)
        }
        None => v,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses.
pub fn validate(spec: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(spec, schema);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            other => panic!("schema type {other} not handled"),
        };
        assert!(ok, "{at}: expected {t}, got {value}");
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        assert!(e.contains(value), "{at}: {value} not in {e:?}");
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req {
            let k = k.as_str().unwrap();
            assert!(value.get(k).is_some(), "{at}: missing {k}");
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let obj = value.as_object().unwrap();
        for (k, v) in obj {
            match props.get(k) {
                Some(s) => validate(spec, s, v, &format!("{at}.{k}")),
                None => assert!(
                    schema.get("additionalProperties") != Some(&Value::Bool(false)),
                    "{at}: undocumented property {k}"
                ),
            }
        }
    }
}

/// Checks an answer against the documented responses of `method` `route`.
pub fn conforms(spec: &Value, method: &str, route: &str, a: &Answer) {
    let op = &spec["paths"][route][method];
    assert!(op.is_object(), "{method} {route} is not documented");
    let resp = op["responses"]
        .get(a.status.to_string())
        .unwrap_or_else(|| panic!("{method} {route}: status {} is not documented", a.status));
    let resp = resolve(spec, resp);
    let Some(content) = resp.get("content").and_then(Value::as_object) else {
        return;
    };
    let ctype = a.header("content-type").unwrap_or("");
    let (media, entry) = content
        .iter()
        .find(|(m, _)| ctype.starts_with(m.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "{method} {route} {}: content type {ctype:?} is not documented",
                a.status
            )
        });
    if media == "application/json" {
        validate(
            spec,
            &entry["schema"],
            &a.json(),
            &format!("{method} {route} {}", a.status),
        );
    }
    assert_eq!(
        a.header("cache-control"),
        if route == "/metrics" && a.status == 200 {
            None
        } else {
            Some("no-store")
        },
        "{method} {route}"
    );
}

/// An error answer: the status, the `error` code, the documented shape.
pub fn assert_error(spec: &Value, route: &str, method: &str, a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{method} {route}: {}", a.body);
    assert_eq!(a.json()["error"], code, "{method} {route}: {}", a.body);
    if spec["paths"][route].is_object() {
        conforms(spec, method, route, a);
    } else {
        validate(
            spec,
            &spec["components"]["schemas"]["Error"],
            &a.json(),
            route,
        );
    }
}

pub fn header_of(a: &Answer) -> String {
    a.json()["authorization_header"]
        .as_str()
        .unwrap()
        .to_string()
}

pub const HEADER_ROUTE: &str = "/v1/authorization-header/{api}";
