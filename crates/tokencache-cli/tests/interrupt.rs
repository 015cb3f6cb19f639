//! Ctrl-C (and SIGTERM) on the commands that write to a store: `load`, `simulate` and
//! `bench` stop, remove what they wrote and exit 130 (143); a second Ctrl-C exits at
//! once and names the prefix left behind, whose keys all have a TTL of at most the
//! run's length plus a margin; `tokencache purge --prefix P --force` removes them.
//! Every wait is a poll of the store or of the process's own lines, with a generous
//! bound: nothing here measures time.

mod common;

use common::{last_line, tokencache};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testkit::RedisServer;

/// The margin the tool adds to a run's length for the TTL of what it writes.
const MARGIN_MS: i64 = 600_000;

/// Polls `what` every 50 ms until it holds (panics after a minute: the command did
/// not get that far).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < end, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn dbsize(server: &RedisServer) -> u64 {
    server.cli(&["DBSIZE"]).trim().parse().unwrap()
}

/// Every key with its remaining TTL in ms (-1: none); keys gone between the scan and
/// the look at their TTL are left out.
fn ttls(server: &RedisServer) -> Vec<(String, i64)> {
    server
        .cli(&["--scan"])
        .lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            (
                k.to_string(),
                server.cli(&["PTTL", k]).trim().parse().unwrap(),
            )
        })
        .filter(|(_, ttl)| *ttl != -2)
        .collect()
}

/// A running command, killed if the test ends before it does (a failed assertion
/// must not leave a 600-second load running).
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns `tokencache args` with stderr read line by line into a channel.
fn spawn(args: &[&str]) -> (Running, mpsc::Receiver<String>) {
    let mut child = tokencache()
        .args(args)
        .env("TOKENCACHE_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Running(child), rx)
}

/// The lines received so far (and until the process closed stderr).
fn drain(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(l);
    }
    lines
}

#[test]
fn ctrl_c_on_load_removes_what_it_wrote() {
    let server = RedisServer::start();
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let (mut child, rx) = spawn(&[
            "load",
            "--store",
            &server.url(),
            "--duration",
            "600",
            "--users",
            "20",
        ]);
        until("load writes", || dbsize(&server) > 5);
        // Nothing it writes outlives the run by more than the margin.
        let most = (600 + 15 + 60) * 1000 + MARGIN_MS;
        for (key, ttl) in ttls(&server) {
            assert!(ttl > 0 && ttl <= most, "{key}: {ttl} ms");
        }
        signal(&child, sig);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{:?}", drain(&rx));
        assert_eq!(dbsize(&server), 0, "the run's keys are gone");
        let lines = drain(&rx);
        assert!(
            lines.iter().any(|l| l.starts_with("interrupted:")),
            "{lines:?}"
        );
    }
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_names_what_it_leaves() {
    let server = RedisServer::start();
    let info = server.cli(&["INFO", "server"]);
    let redis_pid = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:"))
        .unwrap()
        .to_string();
    // A slow answer from L2 keeps the clean-up waiting: the second Ctrl-C comes first.
    let url = format!("{}?response_timeout_ms=60000", server.url());
    let (mut child, rx) = spawn(&[
        "load",
        "--store",
        &url,
        "--duration",
        "600",
        "--settle",
        "0",
        "--users",
        "20",
    ]);
    until("load writes", || dbsize(&server) > 5);
    let pause = |how: &str| {
        assert!(std::process::Command::new("kill")
            .args([how, &redis_pid])
            .status()
            .unwrap()
            .success())
    };
    pause("-STOP");
    signal(&child, "-INT");
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(first.starts_with("interrupted: stopping"), "{first}");
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    pause("-CONT");
    assert_eq!(status.code(), Some(130));
    let lines = drain(&rx);
    let left = lines
        .iter()
        .find(|l| l.contains("exiting at once"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let prefix = format!("tcload:{}:", child.id());
    assert!(
        left.contains(&format!("the run's keys under prefix {prefix:?}"))
            && left.contains(&format!("tokencache purge --prefix {prefix} --force")),
        "{left}"
    );
    // What is left ends within the run's length plus the margin.
    let keys = ttls(&server);
    assert!(!keys.is_empty());
    let most = (600 + 60) * 1000 + MARGIN_MS;
    for (key, ttl) in &keys {
        assert!(key.starts_with(&prefix), "{key}");
        assert!(*ttl > 0 && *ttl <= most, "{key}: {ttl} ms");
    }
    // purge --prefix counts them, then removes them with --force.
    let count = tokencache()
        .args(["purge", "--store", &server.url(), "--prefix", &prefix])
        .output()
        .unwrap();
    let m = last_line(&count, "purge");
    assert_eq!(m["keys"], keys.len().to_string());
    assert_eq!(m["removed"], "0");
    assert_eq!(dbsize(&server), keys.len() as u64);
    let purged = tokencache()
        .args([
            "purge",
            "--store",
            &server.url(),
            "--prefix",
            &prefix,
            "--force",
        ])
        .output()
        .unwrap();
    assert_eq!(
        last_line(&purged, "purge")["removed"],
        keys.len().to_string()
    );
    assert_eq!(dbsize(&server), 0);
    // Nothing left under the prefix: exit 1; an empty prefix is refused.
    let again = tokencache()
        .args([
            "purge",
            "--store",
            &server.url(),
            "--prefix",
            &prefix,
            "--force",
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let empty = tokencache()
        .args(["purge", "--store", &server.url(), "--prefix", "", "--force"])
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
}

#[test]
fn ctrl_c_on_simulate_against_redis_removes_its_keys_all_of_which_expire() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("c.svg");
    let (mut child, rx) = spawn(&[
        "simulate",
        "--store",
        &server.url(),
        "--hours",
        "2000",
        "--users",
        "300",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    until("simulate writes", || dbsize(&server) > 50);
    // Real time on Redis: 2000 virtual hours at 3600x last 2000 s.
    let most = 2000 * 1000 + MARGIN_MS;
    for (key, ttl) in ttls(&server) {
        assert!(ttl > 0 && ttl <= most, "{key}: {ttl} ms");
    }
    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(130), "{:?}", drain(&rx));
    assert_eq!(dbsize(&server), 0);
}

#[test]
fn bench_leaves_the_store_as_it_was_after_a_run_and_after_ctrl_c() {
    let server = RedisServer::start();
    let out = tokencache()
        .args(["bench", "--store", &server.url(), "--seconds", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.cli(&["--scan"]), "", "a finished run leaves nothing");
    let (mut child, rx) = spawn(&["bench", "--store", &server.url(), "--seconds", "18"]);
    until("bench writes", || dbsize(&server) > 0);
    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(130), "{:?}", drain(&rx));
    assert_eq!(dbsize(&server), 0);
}

/// The default store of `simulate`: a temporary folder named after the process, gone
/// after Ctrl-C; one left by a killed run is removed by the next run.
#[test]
fn simulate_s_temporary_store_goes_after_ctrl_c_and_after_a_kill() {
    let shm = std::path::Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("c.svg");
    let (mut child, rx) = spawn(&[
        "simulate",
        "--hours",
        "8000",
        "--users",
        "2000",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    let mine = format!("tokencache-simulate-{}-", child.id());
    let ours = || {
        std::fs::read_dir(&parent)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&mine))
            .count()
    };
    until("the temporary store", || ours() == 1);
    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(130), "{:?}", drain(&rx));
    assert_eq!(ours(), 0, "removed");

    // As if a run had been killed (its process is gone: no pid is that high).
    let stale = parent.join("tokencache-simulate-4294967295-left");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("simulate.redb"), b"x").unwrap();
    let out = tokencache()
        .args(["simulate", "--hours", "1", "--users", "5", "--chart"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!stale.exists(), "the next run removed it");
}
