//! Test support for tokencache: throwaway `redis-server` processes (plain, TLS with a
//! private CA: [`RedisServer::start_tls`] and [`TestCerts`]), a 3-master Redis Cluster,
//! a master with a replica behind a Sentinel ([`RedisSentinel`]), a fake server that
//! answers what a test scripts ([`FakeRedis`]), and an OpenID provider
//! ([`OidcProvider`], the `oidc-provider` npm package) on loopback, started by the
//! tests themselves and killed on drop.
//!
//! Tests never skip silently: when `redis-server` is not on `PATH`, [`RedisServer::start`]
//! and [`RedisCluster::start`] panic with a message that says how to install it.
//! [`redis_available`] tells beforehand.

#![warn(missing_docs)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The message given when `redis-server` cannot be found.
const NOT_FOUND: &str =
    "redis-server not found on PATH; install the Debian package redis-server (.ci/run does this)";

/// How long a server gets to answer `PING` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `redis-server` and `redis-cli` can be run from `PATH`.
pub fn redis_available() -> bool {
    ["redis-server", "redis-cli"].iter().all(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Panics (with the install hint) when Redis is missing. Whether or not `CI` is set,
/// a test that needs Redis fails rather than skips.
fn require_redis() {
    if !redis_available() {
        let ci = std::env::var("CI")
            .map(|v| !v.is_empty() && v != "false")
            .unwrap_or(false);
        if ci {
            panic!("{NOT_FOUND} [CI]");
        }
        panic!("{NOT_FOUND}");
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; the caller races for it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
        .expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local addr").port()
}

/// Runs `redis-cli -p port args...` and returns its standard output, trimmed.
fn run_cli(port: u16, extra: &[&str], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(extra)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}; {NOT_FOUND}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One `redis-server` process on loopback, with its own temporary directory.
/// Killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
    args: Vec<String>,
    password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a plain server (no password, no persistence) on a free loopback port and
    /// waits until it answers `PING`.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments (for instance
    /// `["--requirepass", "secret"]`; a `--requirepass` is then used by [`Self::cli`]).
    pub fn start_with(args: &[&str]) -> RedisServer {
        require_redis();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let password = args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| args.get(i + 1).cloned());
        let mut last_err = String::new();
        // The free port may be taken between probing and binding: retry with another.
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("testkit-redis-")
                .tempdir()
                .expect("create a temporary directory for redis-server");
            let tls_port = args
                .iter()
                .position(|a| a == "--tls-port")
                .and_then(|i| args.get(i + 1))
                .and_then(|p| p.parse().ok());
            let mut server = RedisServer {
                port: free_port(),
                tls_port,
                dir,
                args: args.clone(),
                password: password.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start after 5 attempts: {last_err}");
    }

    /// Spawns the process on `self.port` and waits for `PING`.
    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}; {NOT_FOUND}"))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the server answers PING (or a NOAUTH error, which also means it is up).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log = std::fs::read_to_string(self.dir.path().join("redis.log"))
                        .unwrap_or_default();
                    let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                    return Err(format!(
                        "redis-server on port {} exited with {status}: {tail}",
                        self.port
                    ));
                }
            }
            if TcpStream::connect_timeout(
                &SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                let pong = self.cli(&["PING"]);
                if pong == "PONG" || pong.contains("NOAUTH") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer PING",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a server that serves TLS on [`Self::tls_port`] (and plain Redis on
    /// [`Self::port`], for `redis-cli` and for TLS/plain mismatch tests), with the
    /// server certificate of `certs`; with `auth_clients`, clients must present a
    /// certificate signed by its CA (`--tls-auth-clients yes`). `extra`: more arguments.
    pub fn start_tls(certs: &TestCerts, auth_clients: bool, extra: &[&str]) -> RedisServer {
        let tls_port = free_port().to_string();
        let (cert, key, ca) = (
            certs.file(CertFile::ServerCert),
            certs.file(CertFile::ServerKey),
            certs.file(CertFile::Ca),
        );
        let mut args = vec![
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            if auth_clients { "yes" } else { "no" },
        ];
        args.extend_from_slice(extra);
        Self::start_with(&args)
    }

    /// The port it listens on (kept across [`Self::stop`] and [`Self::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, when started with `--tls-port`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the process (`kill -STOP`): connections stay open, nothing answers. A
    /// hung server, as `DEBUG SLEEP` would make one (disabled in Redis 7).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (`kill -CONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let ok = Command::new("kill")
                .arg(sig)
                .arg(pid.to_string())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "kill {sig} {pid} failed");
        }
    }

    /// Creates (or changes) an ACL user: `ACL SETUSER name on >password rules...`, e.g.
    /// `acl_user("app", "pw", &["~p*", "&p*", "+@all"])`. New users have no keys, no
    /// channels and no commands until the rules give them some.
    pub fn acl_user(&self, name: &str, password: &str, rules: &[&str]) {
        let pass = format!(">{password}");
        let mut args = vec!["ACL", "SETUSER", name, "reset", "on", pass.as_str()];
        args.extend_from_slice(rules);
        let out = self.cli(&args);
        assert_eq!(out, "OK", "ACL SETUSER {name}: {out}");
    }

    /// `redis://127.0.0.1:PORT` (no credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server; the port number is kept for [`Self::restart`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port (after [`Self::stop`]), empty.
    /// Retries for a while in case the port is still held by the old socket.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("redis-server could not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Runs `redis-cli` against this server (with its password, if any) and returns
    /// the trimmed standard output, e.g. `cli(&["PTTL", "k"])`.
    pub fn cli(&self, args: &[&str]) -> String {
        match &self.password {
            Some(p) => run_cli(self.port, &["-a", p.as_str(), "--no-auth-warning"], args),
            None => run_cli(self.port, &[], args),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // a paused process must run to die of SIGKILL's reaping cleanly
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-master Redis Cluster (no replicas) on loopback. Killed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with
    /// `redis-cli --cluster create`, and waits until every node says `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with extra arguments for every node (for instance
    /// `["--cluster-require-full-coverage", "no"]`, so that the other masters serve
    /// their keys while one is down).
    pub fn start_with(extra: &[&str]) -> RedisCluster {
        require_redis();
        let mut last_err = String::new();
        for _ in 0..3 {
            let nodes: Vec<RedisServer> = (0..3)
                .map(|_| {
                    // Each server has its own --dir, where nodes.conf is written.
                    let mut args = vec![
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ];
                    args.extend_from_slice(extra);
                    RedisServer::start_with(&args)
                })
                .collect();
            let cluster = RedisCluster { nodes };
            match cluster.create() {
                Ok(()) => return cluster,
                Err(e) => last_err = e,
            }
        }
        panic!("Redis Cluster did not form: {last_err}");
    }

    fn create(&self) -> Result<(), String> {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && n.cli(&["CLUSTER", "SLOTS"]).lines().count() > 0
                    && Self::knows_all(n, self.nodes.len())
            });
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("cluster_state did not become ok on every node".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a node sees `count` connected masters.
    fn knows_all(node: &RedisServer, count: usize) -> bool {
        let nodes = node.cli(&["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter(|l| l.contains("master") && l.contains("connected"))
            .count()
            == count
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.seeds().join(","))
    }

    /// The `127.0.0.1:PORT` of each node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// The nodes, for per-node checks.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to stop or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// The node serving hash slot `slot` (from `CLUSTER SLOTS`), by index.
    pub fn node_of_slot(&self, slot: u16) -> usize {
        let out = self.nodes[0].cli(&["CLUSTER", "SLOTS"]);
        // redis-cli prints each range as: start, end, host, port, id, [replicas...]
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(start), Ok(end)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if let Ok(port) = lines[i + 3].parse::<u16>() {
                    if start <= slot && slot <= end {
                        return self
                            .nodes
                            .iter()
                            .position(|n| n.port() == port)
                            .unwrap_or_else(|| panic!("no node on port {port}"));
                    }
                    i += 4;
                    continue;
                }
            }
            i += 1;
        }
        panic!("no node serves slot {slot}: {out}");
    }

    /// Runs `redis-cli` with `args` on every node; one output per node.
    pub fn cli_all(&self, args: &[&str]) -> Vec<String> {
        self.nodes.iter().map(|n| n.cli(args)).collect()
    }

    /// Runs `redis-cli -c` (follows redirections) with `args` against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        run_cli(self.nodes[0].port(), &["-c"], args)
    }
}

pub mod fake;
mod managed_identity;
mod oidc;
mod sentinel;
mod tls;
pub use fake::FakeRedis;
pub use managed_identity::{
    ManagedIdentityEndpoint, MiProtocol, MiRequest, TokenMaker, USER_ASSIGNED_CLIENT_ID,
    USER_ASSIGNED_OBJECT_ID, USER_ASSIGNED_RESOURCE_ID,
};
pub use oidc::{client_cert_pem, OidcOptions, OidcProvider};
pub use sentinel::RedisSentinel;
pub use tls::{CertFile, TestCerts};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port(), 0);
    }

    #[test]
    fn server_starts_stops_and_restarts_on_the_same_port() {
        let mut s = RedisServer::start();
        assert_eq!(s.cli(&["PING"]), "PONG");
        s.cli(&["SET", "k", "v"]);
        assert_eq!(s.cli(&["GET", "k"]), "v");
        let port = s.port();
        s.stop();
        assert!(!s.is_running());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        s.restart();
        assert_eq!(s.port(), port);
        assert_eq!(s.cli(&["PING"]), "PONG");
        // Not persisted: the restarted server is empty.
        assert_eq!(s.cli(&["GET", "k"]), "");
    }

    #[test]
    fn password_is_required_and_used_by_cli() {
        let s = RedisServer::start_with(&["--requirepass", "s3cret"]);
        assert_eq!(s.cli(&["PING"]), "PONG");
        let raw = run_cli(s.port(), &[], &["PING"]);
        assert!(raw.contains("NOAUTH"), "{raw}");
    }

    #[test]
    fn cluster_forms_with_three_masters() {
        let c = RedisCluster::start();
        assert!(c.url().starts_with("redis+cluster://127.0.0.1:"));
        assert_eq!(c.url().matches(',').count(), 2);
        for info in c.cli_all(&["CLUSTER", "INFO"]) {
            assert!(info.contains("cluster_state:ok"), "{info}");
        }
        c.cli(&["SET", "a", "1"]);
        c.cli(&["SET", "b", "2"]);
        assert_eq!(c.cli(&["GET", "b"]), "2");
    }
}
