//! Helpers of the issue-23 tests (serve_compat.rs, serve_downstream.rs,
//! serve_appsettings.rs): a small downstream HTTP server that records every request it
//! receives and answers as the test says, and a check of answers against Microsoft's
//! sidecar OpenAPI document (`tests/microsoft-sidecar/`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// One request as the downstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target, as sent (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
}

/// How the downstream answers its n-th request (0-based): the whole HTTP response.
pub type Answerer = dyn Fn(usize, &Received) -> String + Send + Sync;

/// A downstream HTTP/1.1 server on a free loopback port; one thread per connection,
/// `Connection: close` answers. Stops with the test process.
pub struct Recorder {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    pub fn start(answer: impl Fn(usize, &Received) -> String + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the downstream");
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let answer: Arc<Answerer> = Arc::new(answer);
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, answer) = (s.clone(), answer.clone());
                std::thread::spawn(move || serve_one(conn, &s, &*answer));
            }
        });
        Recorder { port, seen }
    }

    /// Answers every request with `status` and `body` (JSON).
    pub fn json(status: u16, body: &'static str) -> Recorder {
        Recorder::start(move |_, _| response(status, &[("Content-Type", "application/json")], body))
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// An HTTP/1.1 response with a Content-Length and `Connection: close`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("HTTP/1.1 {status} X\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    r
}

fn serve_one(conn: TcpStream, seen: &Mutex<Vec<Received>>, answer: &Answerer) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        if reader.read_exact(&mut body).is_err() {
            return;
        }
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            if reader.read_exact(&mut chunk).is_err() {
                return;
            }
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let received = Received {
        method,
        target,
        headers,
        body,
    };
    let n = {
        let mut s = seen.lock().unwrap();
        s.push(received.clone());
        s.len() - 1
    };
    let out = answer(n, &received);
    let mut conn = conn;
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.flush();
}

// ---- Microsoft's sidecar OpenAPI document ---------------------------------------------------

pub fn microsoft_spec() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/microsoft-sidecar/Microsoft.Identity.Web.Sidecar.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("Microsoft's document"))
        .expect("Microsoft's document is JSON")
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
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

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("schema type {other} not handled"),
    }
}

/// Checks `value` against a JSON Schema of Microsoft's document (the keywords it uses:
/// type (one or a list), required, properties, additionalProperties, items, $ref).
pub fn validate_ms(spec: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(spec, schema);
    match schema.get("type") {
        Some(Value::String(t)) => assert!(type_ok(t, value), "{at}: expected {t}, got {value}"),
        Some(Value::Array(ts)) => assert!(
            ts.iter().any(|t| type_ok(t.as_str().unwrap(), value)),
            "{at}: expected one of {ts:?}, got {value}"
        ),
        _ => {}
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req {
            let k = k.as_str().unwrap();
            assert!(value.get(k).is_some(), "{at}: missing {k}");
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(obj) = value.as_object() {
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate_ms(spec, s, v, &format!("{at}.{k}")),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => panic!("{at}: undocumented property {k}"),
                    Some(s @ Value::Object(_)) => validate_ms(spec, s, v, &format!("{at}.{k}")),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate_ms(spec, items, v, &format!("{at}[{i}]"));
        }
    }
}

/// Checks an answer of `method` `route` against Microsoft's document: the status is one
/// it documents, the content type and the body its schema.
pub fn conforms_ms(spec: &Value, method: &str, route: &str, status: u16, ctype: &str, body: &str) {
    let op = &spec["paths"][route][method];
    assert!(
        op.is_object(),
        "{method} {route} is not in Microsoft's document"
    );
    let resp = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{method} {route}: Microsoft's document has no status {status}"));
    let content = resp["content"].as_object().expect("content");
    let (_, entry) = content
        .iter()
        .find(|(m, _)| ctype.starts_with(m.as_str()))
        .unwrap_or_else(|| {
            panic!("{method} {route} {status}: content type {ctype:?} is not Microsoft's")
        });
    let value: Value = serde_json::from_str(body).expect("a JSON answer");
    validate_ms(
        spec,
        &entry["schema"],
        &value,
        &format!("{method} {route} {status}"),
    );
}
