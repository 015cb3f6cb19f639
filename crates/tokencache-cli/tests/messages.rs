//! Errors that point at the cause: `rediss://` aimed at a plain Redis port, a port out
//! of range, one of tokencache's own keys given to `partition show`, an
//! `TOKENCACHE_APIS__NAME__…` variable for an API the file does not have; and
//! `serve --listen` with a host name, which is resolved.

mod common;

use common::{one_line_error, run, tokencache};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testkit::RedisServer;

#[test]
fn rediss_aimed_at_a_plain_port_says_to_use_redis() {
    let server = RedisServer::start();
    let url = format!(
        "rediss://127.0.0.1:{}?connect_timeout_ms=1000&response_timeout_ms=1000",
        server.port()
    );
    for command in [
        &["inspect"][..],
        &["load", "--duration", "1"],
        &["purge", "--user", "a.b"],
    ] {
        let out = tokencache()
            .args(command)
            .args(["--store", &url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        let e = one_line_error(&out);
        assert!(
            e.contains(&format!(
                "127.0.0.1:{} serves plain Redis, not TLS: use redis://",
                server.port()
            )),
            "{command:?}: {e}"
        );
    }
}

#[test]
fn a_port_out_of_range_is_named() {
    for command in [
        &["inspect"][..],
        &["load", "--duration", "1"],
        &["bench"],
        &["rekey"],
        &["partition", "show", "--key", "a.b"],
    ] {
        let out = tokencache()
            .args(command)
            .args(["--store", "redis://:pw@127.0.0.1:99999"])
            .env(
                "TOKENCACHE_KEYS",
                "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        let e = one_line_error(&out);
        assert!(
            e.contains("port \"99999\"") && e.contains("1 to 65535"),
            "{command:?}: {e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
    }
}

#[test]
fn partition_show_names_tokencache_s_own_keys() {
    let server = RedisServer::start();
    let stamp = "tc:revoked:{a.b}";
    assert_eq!(server.cli(&["SET", stamp, "1700000000000"]), "OK");
    assert_eq!(
        server.cli(&["SET", "app1:tc:revoked:{c.d}", "1700000000000"]),
        "OK"
    );
    let cases = [
        (vec!["--key", stamp], "is a revocation stamp", "--key a.b"),
        (
            vec!["--key", "app1:tc:revoked:{c.d}"],
            "is a revocation stamp",
            "--key c.d",
        ),
        (
            vec!["--prefix", "app1:", "--key", "tc:links:{c.d}"],
            "is a link set",
            "--key c.d",
        ),
    ];
    for (args, what, hint) in cases {
        let out = tokencache()
            .args(["partition", "show", "--store", &server.url()])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = one_line_error(&out);
        assert!(e.contains(what) && e.contains("not a partition"), "{e}");
        assert!(e.contains(hint), "{e}");
    }
}

/// A serve process, killed if the test ends first.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("serve.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[apis.orders]\nauthority = \"http://127.0.0.1:9/t\"\nclient_id = \"c\"\nclient_secret_env = \"APP_SECRET\"\nscopes = [\"s\"]\n"
        ),
    )
    .unwrap();
    path
}

/// Waits for `child` to exit (a bound, not a measure: a serve that does not stop on
/// a bad configuration is killed and the test fails).
fn exit_code(child: &mut Child) -> Option<i32> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn serve_refuses_a_variable_for_an_api_it_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "listen = \"127.0.0.1:0\"\nstore = \"memory://\"",
    );
    let mut serve = Serve(
        tokencache()
            .args(["serve", "--config"])
            .arg(&path)
            .env("APP_SECRET", "x")
            .env("TOKENCACHE_APIS__NOPE__SCOPES", "a b")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(exit_code(&mut serve.0), Some(2), "serve refused to start");
    let mut err = String::new();
    std::io::Read::read_to_string(serve.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "TOKENCACHE_APIS__NOPE__SCOPES: no API named \"nope\" in the file (its APIs: orders)"
        ),
        "{err}"
    );
}

#[test]
fn serve_listens_on_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "store = \"memory://\"");
    let mut serve = Serve(
        tokencache()
            .args(["serve", "--listen", "localhost:0", "--config"])
            .arg(&path)
            .env("APP_SECRET", "x")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = serve.0.stdout.take().unwrap();
    let first = BufReader::new(stdout).lines().next();
    let line = first.and_then(Result::ok).unwrap_or_default();
    assert!(
        line.starts_with("tokencache serve: listening on 127.0.0.1:")
            || line.starts_with("tokencache serve: listening on [::1]:"),
        "{line:?} (exit {:?})",
        serve.0.try_wait()
    );
}

#[test]
fn placeholder_values_stop_serve_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serve.toml");
    std::fs::write(
        &path,
        "store = \"memory://\"\n[apis.orders]\nauthority = \"https://login.microsoftonline.com/{tenant}/v2.0\"\nclient_id = \"...\"\nclient_secret_env = \"APP_SECRET\"\nscopes = [\"s\"]\n",
    )
    .unwrap();
    let out = run(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = one_line_error(&out);
    assert!(
        e.contains("apis.orders.authority: still holds the placeholder {tenant}"),
        "{e}"
    );
}
