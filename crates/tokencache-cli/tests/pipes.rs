//! Closed pipes: every command, run with a stdout whose reader is gone (`… | head -1`
//! after head exits) and again with such a stderr (with debug logs on, so that log
//! lines are written to it), ends as it would have otherwise: no panic (exit 101), no
//! abort (134), no death by a signal. With stdout gone, a command exits 0 without a
//! word; with stderr gone, its stdout is whole.
//!
//! The pipe is made reader-less before the command starts (the reading end belonged
//! to a process that has exited), so every write meets EPIPE: no timing involved.

mod common;

use common::{text, tokencache};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use testkit::{OidcProvider, RedisServer};

/// The write end of a pipe with no reader left.
fn broken_pipe() -> Stdio {
    let mut reader: Child = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run true");
    let write_end = reader.stdin.take().expect("its stdin");
    reader.wait().expect("true exits");
    Stdio::from(write_end)
}

/// Which stream has no reader.
#[derive(Clone, Copy, Debug)]
enum Gone {
    Stdout,
    Stderr,
}

/// Runs `cmd` with `gone` reader-less; returns the status and the other stream.
fn run(mut cmd: Command, gone: Gone) -> (ExitStatus, String) {
    cmd.env("TOKENCACHE_LOG", "debug");
    match gone {
        Gone::Stdout => cmd.stdout(broken_pipe()).stderr(Stdio::piped()),
        Gone::Stderr => cmd.stdout(Stdio::piped()).stderr(broken_pipe()),
    };
    let out: Output = cmd.output().expect("run tokencache");
    let (stdout, stderr) = text(&out);
    match gone {
        Gone::Stdout => (out.status, stderr),
        Gone::Stderr => (out.status, stdout),
    }
}

/// A command, how it ends normally, and a piece of its stdout.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    stdout_has: &'static str,
}

fn case(name: &'static str, args: &[&str], code: i32, stdout_has: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        code,
        stdout_has,
    }
}

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/user-partition.json"
);
const KEYS: &str = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

#[test]
fn every_command_ends_quietly_when_its_stdout_or_stderr_is_gone() {
    let server = RedisServer::start();
    let url = server.url();
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("c.svg").display().to_string();
    // A store with a user in it (purge, inspect, rekey, partition --key).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let home = rt.block_on(async {
        let cache = tokencache::TokenCache::builder()
            .store_url(&url)
            .build()
            .await
            .unwrap();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let scopes = ["https://graph.microsoft.com/User.Read"];
        let resp = tokencache::sample::user_response(
            "a11ce000-0000-0000-0000-000000000001",
            tokencache::sample::TENANT,
            &scopes,
            t,
            3600,
        )
        .unwrap();
        let req = tokencache::SaveRequest::new(
            tokencache::sample::CLIENT_ID,
            tokencache::SaveFor::User,
            tokencache::sample::ENVIRONMENT,
            tokencache::sample::TENANT,
            &scopes,
        );
        cache
            .save_token_response(&req, &resp)
            .await
            .unwrap()
            .partition
    });
    let find = [
        "partition",
        "find",
        SAMPLE,
        "--client-id",
        "6e2ab7a5-4c3b-4d0e-9a51-3b0b1c2d9f10",
        "--scopes",
        "api://orders-api/Orders.ReadWrite",
        "--now",
        "1800000100",
    ];
    let mut cases = vec![
        case("--help", &["--help"], 0, "Usage: tokencache"),
        case("bad usage", &["no-such-command"], 2, ""),
        case(
            "partition show",
            &["partition", "show", SAMPLE],
            0,
            "records",
        ),
        case("partition find", &find, 0, "AccessToken"),
        case(
            "partition show --key",
            &["partition", "show", "--store", &url, "--key", &home],
            0,
            "records",
        ),
        case("keys generate", &["keys", "generate"], 0, ":"),
        case("bench", &["bench", "--seconds", "1"], 0, "l1_ns="),
        case(
            "load",
            &[
                "load",
                "--store",
                &url,
                "--duration",
                "0.5",
                "--users",
                "3",
                "--settle",
                "1",
            ],
            0,
            "ops=",
        ),
        case(
            "simulate",
            &[
                "simulate", "--hours", "4", "--users", "20", "--chart", &chart,
            ],
            0,
            "orphaned: ",
        ),
        case(
            "inspect",
            &["inspect", "--store", &url],
            0,
            "inspect: keys=",
        ),
        case(
            "purge --prefix",
            &["purge", "--store", &url, "--prefix", "a11ce"],
            0,
            "purge: prefix=",
        ),
        case(
            "token",
            &[
                "token",
                "client-credentials",
                "--authority",
                &op.issuer(),
                "--client-id",
                "app",
                "--scope",
                "api.read",
                "--store",
                "memory://",
            ],
            0,
            "source: ",
        ),
    ];
    let mut rekey = case("rekey", &["rekey", "--store", &url], 0, "rekeyed=");
    rekey.env.push(("TOKENCACHE_KEYS", KEYS.to_string()));
    cases.push(rekey);
    for c in &mut cases {
        if c.name == "token" {
            c.env
                .push(("TOKENCACHE_CLIENT_SECRET", "app-secret".to_string()));
        }
    }
    // Every case is run; the failures are listed together.
    let mut failed = Vec::new();
    for c in &cases {
        for gone in [Gone::Stdout, Gone::Stderr] {
            let mut cmd = tokencache();
            cmd.args(&c.args).current_dir(dir.path());
            for (k, v) in &c.env {
                cmd.env(k, v);
            }
            let (status, other) = run(cmd, gone);
            let problem = if status.code().is_none() {
                Some(format!("killed by {status:?}"))
            } else if other.contains("panicked") {
                Some("panicked".to_string())
            } else if status.code() != Some(c.code) {
                Some(format!("exit {:?}, not {}", status.code(), c.code))
            } else {
                match gone {
                    // Quiet: nothing on stderr but the debug logs (and a usage error's
                    // own line).
                    Gone::Stdout
                        if other.lines().any(|l| l.starts_with("error:")) != (c.code == 2) =>
                    {
                        Some("an unexpected error line".to_string())
                    }
                    Gone::Stderr if !other.contains(c.stdout_has) => {
                        Some(format!("stdout without {:?}", c.stdout_has))
                    }
                    _ => None,
                }
            };
            if let Some(p) = problem {
                failed.push(format!(
                    "{} with {gone:?} gone: {p}: {}",
                    c.name,
                    other.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // The purge of the user (its output on a gone stdout; the user goes anyway).
    let mut cmd = tokencache();
    cmd.args(["purge", "--store", &url, "--user", &home]);
    let (status, _) = run(cmd, Gone::Stdout);
    assert_eq!(status.code(), Some(0));
    assert_eq!(server.cli(&["EXISTS", &home]), "0", "purged");
}

#[test]
fn serve_runs_on_with_a_gone_stdout_and_stderr() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstore = \"memory://\"\n[apis.a]\nauthority = \"{}\"\nclient_id = \"app\"\nclient_secret_env = \"APP_SECRET\"\nscopes = [\"api.read\"]\n",
            op.issuer()
        ),
    )
    .unwrap();
    let mut child = tokencache()
        .args(["serve", "--config"])
        .arg(&config)
        .env("APP_SECRET", "app-secret")
        .env("TOKENCACHE_LOG", "debug")
        .stdout(broken_pipe())
        .stderr(broken_pipe())
        .spawn()
        .unwrap();
    // It answers (its start and request logs went to the gone stderr).
    let answer = (0..300)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            use std::io::{Read, Write};
            s.write_all(b"GET /v1/authorization-header/a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .expect("serve answers");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
