//! A master, its replica and one Sentinel watching them, on loopback: enough for
//! `SENTINEL FAILOVER` (quorum 1), which promotes the replica in a second or two.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_redis, run_cli, RedisServer};

/// The name the Sentinel knows the master by.
pub const MASTER_NAME: &str = "mymaster";

/// A master, a replica of it, and a Sentinel monitoring them. Killed when dropped.
#[derive(Debug)]
pub struct RedisSentinel {
    servers: Vec<RedisServer>,
    sentinel: Option<Child>,
    sentinel_port: u16,
    dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// Starts the master, the replica (waits until it is in sync) and the Sentinel
    /// (waits until it knows the replica).
    pub fn start() -> RedisSentinel {
        require_redis();
        let master = RedisServer::start();
        let master_port = master.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        wait_until("the replica is in sync", Duration::from_secs(15), || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let dir = tempfile::Builder::new()
            .prefix("testkit-sentinel-")
            .tempdir()
            .expect("create a temporary directory for the Sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 10000\n",
                dir = dir.path().display(),
                log = dir.path().join("sentinel.log").display(),
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server --sentinel");
        let s = RedisSentinel {
            servers: vec![master, replica],
            sentinel: Some(child),
            sentinel_port: port,
            dir,
        };
        // Known, connected and linked: a failover can pick it.
        let up = try_wait(Duration::from_secs(15), || {
            let out = run_cli(port, &[], &["SENTINEL", "REPLICAS", MASTER_NAME]);
            let fields: Vec<&str> = out.lines().map(str::trim).collect();
            let get = |k: &str| {
                fields
                    .iter()
                    .position(|f| *f == k)
                    .and_then(|i| fields.get(i + 1).copied())
                    .unwrap_or("")
            };
            out.contains(&s.servers[1].port().to_string())
                && get("flags") == "slave"
                && get("master-link-status") == "ok"
        });
        if !up {
            let log =
                std::fs::read_to_string(s.dir.path().join("sentinel.log")).unwrap_or_default();
            panic!(
                "the Sentinel on port {port} did not come up: {}",
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            );
        }
        s
    }

    /// `redis+sentinel://127.0.0.1:PORT/mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER_NAME}",
            self.sentinel_port
        )
    }

    /// The Sentinel's port.
    pub fn sentinel_port(&self) -> u16 {
        self.sentinel_port
    }

    /// The master's name.
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// The port of the current master, as the Sentinel names it.
    pub fn master_port(&self) -> u16 {
        let out = self.sentinel_cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
        out.lines()
            .last()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no master address in {out:?}"))
    }

    /// The two data servers (the first started as the master).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The data server on `port`.
    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers
            .iter()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// Runs `redis-cli` against the Sentinel.
    pub fn sentinel_cli(&self, args: &[&str]) -> String {
        run_cli(self.sentinel_port, &[], args)
    }

    /// `SENTINEL FAILOVER mymaster`, then waits until the Sentinel names the other
    /// server and that server says it is the master. Returns the new master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        wait_until(
            "the Sentinel accepts the failover",
            Duration::from_secs(15),
            || self.sentinel_cli(&["SENTINEL", "FAILOVER", MASTER_NAME]) == "OK",
        );
        wait_until(
            "the Sentinel names a new master",
            Duration::from_secs(20),
            || self.master_port() != old,
        );
        let new = self.master_port();
        wait_until("the new master says so", Duration::from_secs(10), || {
            self.server(new).cli(&["ROLE"]).starts_with("master")
        });
        new
    }

    fn kill_sentinel(&mut self) {
        if let Some(mut c) = self.sentinel.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.kill_sentinel();
    }
}

fn try_wait(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, within: Duration, ok: impl FnMut() -> bool) {
    assert!(try_wait(within, ok), "not within {within:?}: {what}");
}
