//! `tokencache check` against real servers: ACL users missing the channel, a key pattern,
//! scripting (each named, exit 1; exit 0 once granted), TLS trusted through
//! `SSL_CERT_FILE` and through `?tls_ca_file=` (a wrong CA and a wrong name refused with
//! their one-line errors), the password from `TOKENCACHE_REDIS_PASSWORD(_FILE)`, a
//! Cluster's slots and a Sentinel's master; and never a password on any output, `--help`
//! included.

use std::process::{Command, Output};
use testkit::{CertFile, RedisCluster, RedisSentinel, RedisServer, TestCerts};

const SECRET: &str = "acl-pw-7f3c9e";

fn tokencache() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokencache"));
    // The machine's own trust settings must not decide the TLS tests.
    c.env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("TOKENCACHE_STORE")
        .env_remove("TOKENCACHE_PREFIX")
        .env_remove("TOKENCACHE_REDIS_PASSWORD")
        .env_remove("TOKENCACHE_REDIS_PASSWORD_FILE")
        .env("TOKENCACHE_LOG", "off");
    c
}

/// Runs `check`; returns (exit code, stdout), after checking that no output holds the
/// secret.
fn check(cmd: &mut Command) -> (i32, String) {
    let out: Output = cmd.output().expect("run tokencache");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "a password was printed:\n{stdout}\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"))
}

/// The rule the README gives, for prefix P.
const GRANTED: &[&str] = &[
    "~P*",
    "&P*",
    "+@read",
    "+@write",
    "+@scripting",
    "+@pubsub",
    "-@dangerous",
    "+ping",
    "+time",
];

#[test]
fn acl_users_missing_a_channel_a_key_pattern_or_scripting_are_named_and_pass_once_granted() {
    let server = RedisServer::start();
    let without = |missing: &str| -> Vec<&str> {
        GRANTED.iter().copied().filter(|r| *r != missing).collect()
    };
    server.acl_user("nochan", SECRET, &without("&P*"));
    server.acl_user("nokeys", SECRET, &without("~P*"));
    server.acl_user("noscript", SECRET, &without("+@scripting"));
    let run = |user: &str| {
        check(tokencache().args([
            "check",
            "--store",
            &format!("redis://{user}:{SECRET}@127.0.0.1:{}", server.port()),
            "--prefix",
            "P",
        ]))
    };
    for (user, name, says) in [
        ("nochan", "pubsub", "&P*"),
        ("nokeys", "keys", "~P*"),
        ("noscript", "scripts", "+@scripting"),
    ] {
        let (code, out) = run(user);
        assert_eq!(code, 1, "{user}:\n{out}");
        let l = line(&out, name);
        assert!(l.contains("MISSING") && l.contains(says), "{user}: {l}");
        assert!(l.contains(&format!("ACL SETUSER {user} ")), "{user}: {l}");
        // the other requirements still say ok (scripts need the keys too)
        assert!(line(&out, "connect").contains(" ok: "), "{out}");
        assert!(line(&out, "server").contains("Redis 7."), "{out}");
    }
    // Granted as the README says: every requirement holds.
    for user in ["nochan", "nokeys", "noscript"] {
        server.acl_user(user, SECRET, GRANTED);
        let (code, out) = run(user);
        assert_eq!(code, 0, "{user}:\n{out}");
        assert_eq!(out.matches(" ok: ").count(), 8, "{out}");
        assert!(out.contains("all requirements hold"), "{out}");
    }
    // The check leaves nothing behind.
    assert_eq!(server.cli(&["DBSIZE"]), "0");
}

#[test]
fn tls_is_trusted_through_ssl_cert_file_or_the_url_and_refusals_say_why() {
    let certs = TestCerts::new();
    let server = RedisServer::start_tls(&certs, true, &[]);
    let port = server.tls_port().unwrap();
    let client = format!(
        "tls_cert_file={}&tls_key_file={}",
        certs.file(CertFile::ClientCert),
        certs.file(CertFile::ClientKey)
    );
    let at = |host: &str, query: &str| format!("rediss://{host}:{port}/0?{client}{query}");
    // SSL_CERT_FILE: the roots of this process are the private CA.
    let (code, out) = check(
        tokencache()
            .args(["check", "--store", &at("localhost", "")])
            .env("SSL_CERT_FILE", certs.path(CertFile::Ca)),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "tls").contains("certificate verified for localhost"),
        "{out}"
    );
    assert!(
        line(&out, "tls").contains("client certificate presented"),
        "{out}"
    );
    // The URL option, on top of the system store.
    let ca = format!("&tls_ca_file={}", certs.file(CertFile::Ca));
    let (code, out) = check(tokencache().args(["check", "--store", &at("localhost", &ca)]));
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "tls").contains("1 from tls_ca_file"), "{out}");
    // Neither: untrusted. Another CA: untrusted.
    for roots in [
        String::new(),
        format!("&tls_ca_file={}", certs.file(CertFile::OtherCa)),
    ] {
        let (code, out) = check(tokencache().args(["check", "--store", &at("localhost", &roots)]));
        assert_eq!(code, 1, "{out}");
        assert!(
            line(&out, "tls").contains("MISSING: TLS: untrusted certificate"),
            "{out}"
        );
        assert!(line(&out, "keys").contains("skipped"), "{out}");
    }
    // By IP address: the certificate names localhost only.
    let (code, out) = check(tokencache().args(["check", "--store", &at("127.0.0.1", &ca)]));
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "tls").contains("certificate name mismatch"),
        "{out}"
    );
    let named = format!("{ca}&tls_server_name=localhost");
    let (code, out) = check(tokencache().args(["check", "--store", &at("127.0.0.1", &named)]));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn bench_measures_its_raw_baseline_over_tls_too() {
    let certs = TestCerts::new();
    let server = RedisServer::start_tls(&certs, true, &[]);
    let url = format!(
        "rediss://localhost:{}/0?tls_ca_file={}&tls_cert_file={}&tls_key_file={}",
        server.tls_port().unwrap(),
        certs.file(CertFile::Ca),
        certs.file(CertFile::ClientCert),
        certs.file(CertFile::ClientKey)
    );
    let out = tokencache()
        .args(["bench", "--store", &url, "--seconds", "1"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("raw Redis GET"), "{text}");
}

#[test]
fn the_password_comes_from_the_environment_and_is_never_printed() {
    let server = RedisServer::start_with(&["--requirepass", SECRET]);
    let url = format!("redis://127.0.0.1:{}", server.port());
    let (code, out) = check(
        tokencache()
            .args(["check", "--store", &url])
            .env("TOKENCACHE_REDIS_PASSWORD", SECRET),
    );
    assert_eq!(code, 0, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis-password");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let (code, out) = check(
        tokencache()
            .args(["check", "--store", &url])
            .env("TOKENCACHE_REDIS_PASSWORD_FILE", &file),
    );
    assert_eq!(code, 0, "{out}");
    // None: the server asks for one.
    let (code, out) = check(tokencache().args(["check", "--store", &url]));
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "auth").contains("requires a password"), "{out}");
    // A wrong one.
    let (code, out) = check(tokencache().args([
        "check",
        "--store",
        &format!("redis://:{SECRET}x@127.0.0.1:{}", server.port()),
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "auth").contains("MISSING"), "{out}");
    // A password not valid in a URL: bad input, and it is not repeated.
    let (code, out) = check(tokencache().args([
        "check",
        "--store",
        &format!("redis://:{SECRET}/x@127.0.0.1:{}", server.port()),
    ]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("percent-encoded"), "{out}");
    // Neither --help nor a bad command line shows TOKENCACHE_STORE's password.
    for args in [
        &["check", "--help"][..],
        &["bench", "--help"],
        &["load", "--help"],
        &["inspect", "--help"],
        &["check", "--bogus"],
    ] {
        let (_, out) = check(
            tokencache()
                .args(args)
                .env("TOKENCACHE_STORE", format!("redis://:{SECRET}@h:1")),
        );
        assert!(!out.is_empty());
    }
}

#[test]
fn a_cluster_and_a_sentinel_pass_and_a_file_store_is_not_checked() {
    let cluster = RedisCluster::start();
    let (code, out) =
        check(tokencache().args(["check", "--store", &cluster.url(), "--prefix", "c:"]));
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "cluster").contains("all 16384 slots served by 3 masters"),
        "{out}"
    );
    // The wrong scheme for a cluster node says which to use.
    let (code, out) = check(tokencache().args([
        "check",
        "--store",
        &format!("redis://{}", cluster.seeds()[0]),
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "server").contains("use redis+cluster://"),
        "{out}"
    );
    drop(cluster);

    let sentinel = RedisSentinel::start();
    let (code, out) = check(tokencache().args(["check", "--store", &sentinel.url()]));
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "connect").contains("master \"mymaster\""),
        "{out}"
    );
    // Behind Sentinels a write waits for a replica: a user without WAIT is told so.
    for server in sentinel.servers() {
        server.acl_user("app", SECRET, GRANTED);
    }
    let url = sentinel.url().replace(
        "redis+sentinel://",
        &format!("redis+sentinel://app:{SECRET}@"),
    );
    let (code, out) = check(tokencache().args(["check", "--store", &url, "--prefix", "P"]));
    assert_eq!(code, 1, "{out}");
    assert!(line(&out, "keys").contains("+wait"), "{out}");
    for server in sentinel.servers() {
        let mut with_wait = GRANTED.to_vec();
        with_wait.push("+wait");
        server.acl_user("app", SECRET, &with_wait);
    }
    let (code, out) = check(tokencache().args(["check", "--store", &url, "--prefix", "P"]));
    assert_eq!(code, 0, "{out}");
    // A redis:// URL at the Sentinel itself says which to use.
    let (code, out) = check(tokencache().args([
        "check",
        "--store",
        &format!("redis://127.0.0.1:{}", sentinel.sentinel_port()),
    ]));
    assert_eq!(code, 1, "{out}");
    assert!(
        line(&out, "server").contains("use redis+sentinel://"),
        "{out}"
    );

    let (code, out) = check(tokencache().args(["check", "--store", "memory://"]));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("check is for Redis stores"), "{out}");
}
