//! `scripts/try-serve.sh`, the README's "try it locally" path: it starts the pinned
//! OpenID provider and `tokencache serve` with a working configuration and prints curl
//! lines; each line is run here as a user would paste it (app token, OBO with a minted
//! user token, sign-out), then SIGTERM stops the script, which stops both processes
//! and removes its temporary folder.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The script, killed (with its group's processes stopped by its own trap) if the test
/// ends first.
struct Script(std::process::Child);

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_try_it_locally_script_serves_what_it_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut script = Script(
        Command::new("bash")
            .arg(root.join("scripts/try-serve.sh"))
            .env("TOKENCACHE_BIN", env!("CARGO_BIN_EXE_tokencache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run scripts/try-serve.sh"),
    );
    // Its lines up to "Press Ctrl-C to stop."
    let stdout = script.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
        let done = line.starts_with("Press Ctrl-C");
        lines.push(line);
        if done {
            break;
        }
    }
    let text = lines.join("\n");
    assert!(text.contains("Press Ctrl-C to stop."), "{text}");
    let work = text
        .split("(config: ")
        .nth(1)
        .and_then(|r| r.split("/tokencache.toml").next())
        .unwrap_or_else(|| panic!("the config's folder: {text}"))
        .to_string();
    assert!(Path::new(&work).is_dir());

    // The printed commands, as a user pastes them (comments and prose left out).
    let commands: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("curl ") || l.starts_with("user_token="))
        .collect();
    assert_eq!(commands.len(), 5, "{text}");
    let shell = |script: &str| {
        let out = Command::new("sh").args(["-c", script]).output().unwrap();
        assert!(out.status.success(), "{script}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let app = shell(commands[0]);
    assert!(app.contains("\"authorization_header\":\"Bearer "), "{app}");
    assert!(app.contains("\"source\":\"provider\""), "{app}");
    assert!(
        shell(commands[0]).contains("\"source\":\"cache\""),
        "run twice"
    );
    let obo = shell(&format!("{}\n{}", commands[1], commands[2]));
    assert!(obo.contains("\"authorization_header\":\"Bearer "), "{obo}");
    let validated = shell(&format!("{}\n{}", commands[1], commands[3]));
    assert!(validated.contains("\"protocol\":\"Bearer\""), "{validated}");
    assert!(validated.contains("\"sub\":\"alice\""), "{validated}");
    // alice signs out with her own token
    let signed_out = shell(&format!("{}\n{}", commands[1], commands[4]));
    assert_eq!(
        signed_out.trim(),
        r#"{"signed_out":true,"obo_partitions":1,"complete":true}"#,
        "alice's OBO partition went with her"
    );

    // SIGTERM: both processes stop, the folder goes.
    let _ = Command::new("kill")
        .args(["-TERM", &script.0.id().to_string()])
        .status();
    let status = script.0.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(!Path::new(&work).exists(), "{work} removed");
    let addr = text
        .split("listening on http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "serve at {addr} stopped"
    );
}
