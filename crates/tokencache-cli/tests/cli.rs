//! The `tokencache` binary: exit codes, secret-free output, typed one-line errors.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/user-partition.json"
);
const CLIENT: &str = "6e2ab7a5-4c3b-4d0e-9a51-3b0b1c2d9f10";
const HOME: &str = "9f4880d8-80ba-4c40-97bc-f7a23c703084.72f988bf-86f1-41af-91ab-2d7cd011db47";

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            // A broken pipe is fine: the tool may stop reading at its size limit.
            let _ = input.write_all(bytes);
        }
    }
    child.wait_with_output().unwrap()
}

fn secrets() -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SAMPLE).unwrap()).unwrap();
    let mut out = Vec::new();
    for section in ["AccessToken", "RefreshToken", "IdToken"] {
        for rec in v[section].as_object().unwrap().values() {
            out.push(rec["secret"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(out.len(), 5);
    out
}

fn assert_no_secret(out: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for s in secrets() {
        // any 40-character piece of a secret would be a leak
        assert!(
            !text.contains(&s[..40.min(s.len())]),
            "a secret reached the output"
        );
    }
}

#[test]
fn show_summarises_every_record_without_secrets() {
    let out = run(&["partition", "show", SAMPLE], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 7, "3 AT, RT, IdT, Account, AppMetadata");
    assert!(records.iter().all(|r| r
        .get("secret")
        .is_none_or(|s| s.as_str().unwrap().starts_with("sha256:"))));
    // the same from standard input
    let blob = std::fs::read(SAMPLE).unwrap();
    let out2 = run(&["partition", "show", "-"], Some(&blob));
    assert_eq!(out.stdout, out2.stdout);
}

#[test]
fn find_exits_0_with_the_token_and_1_without() {
    let base = [
        "partition",
        "find",
        SAMPLE,
        "--client-id",
        CLIENT,
        "--now",
        "1800000100",
    ];
    let ok = run(
        &[
            &base[..],
            &[
                "--scopes",
                "api://orders-api/orders.readwrite",
                "--account",
                HOME,
            ],
        ]
        .concat(),
        None,
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_no_secret(&ok);
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["target"], "api://orders-api/Orders.ReadWrite");
    assert_eq!(v["home_account_id"], HOME);
    // any account when --account is omitted
    let any = run(
        &[
            &base[..],
            &["--scopes", "https://graph.microsoft.com/Mail.Read"],
        ]
        .concat(),
        None,
    );
    assert_eq!(any.status.code(), Some(0));

    let cases: [&[&str]; 4] = [
        &["--scopes", "https://graph.microsoft.com/Mail.Send"], // not in any target
        &[
            "--scopes",
            "api://orders-api/Orders.ReadWrite",
            "--tenant",
            "other",
        ], // other tenant
        &[
            "--scopes",
            "api://orders-api/Orders.ReadWrite",
            "--account",
            "x.y",
        ], // other user
        &[
            "--scopes",
            "api://orders-api/Orders.ReadWrite",
            "--skew",
            "3500",
        ], // expires within the skew
    ];
    for extra in cases {
        let out = run(&[&base[..], extra].concat(), None);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "no valid access token"
        );
    }
}

#[test]
fn bad_input_exits_2_with_one_typed_line() {
    let blob = std::fs::read(SAMPLE).unwrap();
    let huge = vec![b' '; 17 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not json", b"hello".to_vec(), "not JSON"),
        (
            "wrong types",
            br#"{"AccessToken":{"k":{"secret":5}}}"#.to_vec(),
            "AccessToken",
        ),
        ("truncated", blob[..blob.len() / 2].to_vec(), "truncated"),
        ("not utf-8", vec![0xff, 0xfe, 0x00], "UTF-8"),
        ("huge", huge, "larger than"),
        ("empty", Vec::new(), "empty input"),
        ("blank", b" \n\t\n".to_vec(), "empty input"),
    ];
    for (name, input, word) in cases {
        let out = run(&["partition", "show", "-"], Some(&input));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line, got {err}");
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(
            err.to_lowercase().contains(&word.to_lowercase()),
            "{name}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{name}"
        );
    }
    let missing = run(&["partition", "show", "/nonexistent/blob.json"], None);
    assert_eq!(missing.status.code(), Some(2));
    // An empty file is refused like empty stdin; an empty JSON object is an empty cache.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, b"").unwrap();
    let out = run(&["partition", "show", empty.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty input"));
    let out = run(&["partition", "show", "-"], Some(b"{}"));
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 0);
}

#[test]
fn find_raw_prints_the_token_itself_and_only_then() {
    let args = [
        "partition",
        "find",
        SAMPLE,
        "--client-id",
        CLIENT,
        "--now",
        "1800000100",
        "--scopes",
        "api://orders-api/orders.readwrite",
        "--account",
        HOME,
    ];
    let raw = run(&[&args[..], &["--raw"]].concat(), None);
    assert_eq!(raw.status.code(), Some(0));
    let token = String::from_utf8(raw.stdout).unwrap();
    assert_eq!(token.lines().count(), 1);
    let token = token.trim_end();
    assert!(
        secrets().iter().any(|s| s == token),
        "the access token itself"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(SAMPLE).unwrap()).unwrap();
    let expected = v["AccessToken"]
        .as_object()
        .unwrap()
        .values()
        .find(|r| r["target"] == "api://orders-api/Orders.ReadWrite")
        .unwrap()["secret"]
        .clone();
    assert_eq!(token, expected.as_str().unwrap());
    // Without --raw: no secret, the same lookup.
    let summary = run(&args, None);
    assert_eq!(summary.status.code(), Some(0));
    assert_no_secret(&summary);
    // --raw with no match: exit 1, nothing on stdout.
    let none = run(
        &[
            &args[..7],
            &["--scopes", "https://graph.microsoft.com/Mail.Send", "--raw"],
        ]
        .concat(),
        None,
    );
    assert_eq!(none.status.code(), Some(1));
    assert!(none.stdout.is_empty());
}
