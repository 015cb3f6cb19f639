//! No password is ever printed: every command that takes a store runs with a
//! password-bearing Redis URL, given as the flag (or serve's `store =`) and as
//! `TOKENCACHE_STORE`, against a port that refuses connections, one that accepts and
//! never answers, and a real redis-server that rejects the password; the password
//! appears in no line of stdout or stderr (debug logs included), nor in any `--help`.

mod common;

use common::{text, tokencache, Silent};
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;
use testkit::RedisServer;

/// Distinctive enough that any occurrence is a leak.
const PASSWORD: &str = "Pw-Sekr1t-9274";

/// One way the store can fail.
struct Target {
    what: &'static str,
    url: String,
}

fn targets(refused: u16, silent: &Silent, redis: &RedisServer) -> Vec<Target> {
    // Short timeouts: the silent port costs each command ~a second, not minutes.
    let q = "?connect_timeout_ms=500&response_timeout_ms=500";
    vec![
        Target {
            what: "refused",
            url: format!("redis://:{PASSWORD}@127.0.0.1:{refused}{q}"),
        },
        Target {
            what: "timeout",
            url: format!("redis://user:{PASSWORD}@127.0.0.1:{}{q}", silent.port()),
        },
        Target {
            what: "wrong password",
            url: format!("redis://:{PASSWORD}@127.0.0.1:{}{q}", redis.port()),
        },
    ]
}

fn assert_clean(out: &Output, context: &str) {
    let (stdout, stderr) = text(out);
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "{context}: the password was printed:\n{stdout}\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{context}: a panic:\n{stderr}"
    );
}

/// Runs `tokencache serve` until it listens or exits, then stops it.
fn serve(config: &std::path::Path, env_store: Option<&str>) -> Output {
    let mut cmd = tokencache();
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("APP_SECRET", "s3cret-app-secret")
        .env("TOKENCACHE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = env_store {
        cmd.env("TOKENCACHE_STORE", url);
    }
    let mut child = cmd.spawn().expect("run tokencache serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Listening (or gone) within the wait; then SIGTERM.
    let _ = rx.recv_timeout(Duration::from_secs(30));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut out = child.wait_with_output().expect("wait for serve");
    out.stdout = reader.join().unwrap().into_bytes();
    out
}

#[test]
fn no_command_prints_the_password_of_a_store_url() {
    let redis = RedisServer::start_with(&["--requirepass", "the-right-one"]);
    let silent = Silent::start();
    let refused = testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.svg");
    let chart = chart.to_str().unwrap();
    let dead_authority = format!("http://127.0.0.1:{}/t", testkit::free_port());
    let commands: Vec<Vec<&str>> = vec![
        vec!["partition", "show", "--key", "a.b"],
        vec![
            "partition",
            "find",
            "--key",
            "a.b",
            "--client-id",
            "c",
            "--scopes",
            "s",
        ],
        vec!["bench", "--seconds", "1"],
        vec!["load", "--duration", "0.5", "--users", "2", "--settle", "0"],
        vec![
            "simulate", "--hours", "1", "--users", "5", "--pace", "100000", "--chart", chart,
        ],
        vec!["inspect"],
        vec!["purge", "--user", "a.b"],
        vec!["purge", "--prefix", "tcload:1:", "--force"],
        vec!["rekey"],
        vec![
            "token",
            "client-credentials",
            "--authority",
            &dead_authority,
            "--client-id",
            "c",
            "--scope",
            "s",
        ],
    ];
    let keys = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for target in targets(refused, &silent, &redis) {
        for command in &commands {
            for in_env in [false, true] {
                let mut cmd = tokencache();
                cmd.args(command)
                    .env("TOKENCACHE_LOG", "debug")
                    .env("TOKENCACHE_KEYS", keys)
                    .env("TOKENCACHE_CLIENT_SECRET", "s3cret-client-secret");
                if in_env {
                    cmd.env("TOKENCACHE_STORE", &target.url);
                } else {
                    cmd.args(["--store", &target.url]);
                }
                let out = cmd.output().expect("run tokencache");
                let context = format!(
                    "{command:?} ({}, store in the {})",
                    target.what,
                    if in_env { "environment" } else { "flag" }
                );
                assert_clean(&out, &context);
                assert_ne!(out.status.code(), Some(0), "{context}: a failing store");
            }
        }
        // serve: the store in the file, and in the environment.
        let with_store = dir.path().join("with-store.toml");
        let without = dir.path().join("without-store.toml");
        let api = format!(
            "[apis.a]\nauthority = \"{dead_authority}\"\nclient_id = \"c\"\nclient_secret_env = \"APP_SECRET\"\nscopes = [\"s\"]\n"
        );
        std::fs::write(
            &with_store,
            format!(
                "listen = \"127.0.0.1:0\"\nstore = \"{}\"\n{api}",
                target.url
            ),
        )
        .unwrap();
        std::fs::write(&without, format!("listen = \"127.0.0.1:0\"\n{api}")).unwrap();
        assert_clean(
            &serve(&with_store, None),
            &format!("serve ({}, store in the file)", target.what),
        );
        assert_clean(
            &serve(&without, Some(&target.url)),
            &format!("serve ({}, store in the environment)", target.what),
        );
    }
}

#[test]
fn help_never_shows_the_environment_s_values() {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:6390");
    let commands: [&[&str]; 14] = [
        &[],
        &["partition", "show"],
        &["partition", "find"],
        &["bench"],
        &["load"],
        &["simulate"],
        &["inspect"],
        &["purge"],
        &["keys", "generate"],
        &["rekey"],
        &["token", "client-credentials"],
        &["token", "obo"],
        &["serve"],
        &["partition"],
    ];
    for command in commands {
        let out = tokencache()
            .args(command)
            .arg("--help")
            .env("TOKENCACHE_STORE", &url)
            .env("TOKENCACHE_PREFIX", PASSWORD)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{command:?}");
        assert_clean(&out, &format!("{command:?} --help"));
    }
    // The variables are still named where they apply.
    let (stdout, _) = text(&tokencache().args(["rekey", "--help"]).output().unwrap());
    assert!(stdout.contains("TOKENCACHE_STORE"), "{stdout}");
}
