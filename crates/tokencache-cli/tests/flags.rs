//! Every subcommand's `--help`, and a table of bad flag values: each is refused by the
//! command line parser with exit code 2 and one line on stderr, before anything runs
//! (no panic, no silent clamp, no store touched).

use std::process::{Command, Output};

fn tokencache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(args)
        .env_remove("TOKENCACHE_STORE")
        .env_remove("TOKENCACHE_PREFIX")
        .output()
        .expect("run tokencache")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_subcommand_has_help() {
    let commands: [&[&str]; 9] = [
        &[],
        &["partition"],
        &["partition", "show"],
        &["partition", "find"],
        &["bench"],
        &["load"],
        &["simulate"],
        &["inspect"],
        &["purge"],
    ];
    for command in commands {
        let out = tokencache(&[command, &["--help"]].concat());
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {stderr}");
        assert!(
            stdout.contains("Usage: tokencache"),
            "{command:?}: {stdout}"
        );
        assert!(!stderr.contains("panicked"), "{command:?}: {stderr}");
    }
    // The environment defaults are shown where they apply.
    for command in ["bench", "load", "simulate", "inspect", "purge"] {
        let (stdout, _) = text(&tokencache(&[command, "--help"]));
        assert!(stdout.contains("TOKENCACHE_STORE"), "{command}: {stdout}");
    }
    for command in ["load", "inspect", "purge"] {
        let (stdout, _) = text(&tokencache(&[command, "--help"]));
        assert!(stdout.contains("TOKENCACHE_PREFIX"), "{command}: {stdout}");
    }
    let (stdout, _) = text(&tokencache(&["--help"]));
    assert!(stdout.contains("TOKENCACHE_LOG"), "{stdout}");
}

#[test]
fn bad_flag_values_exit_2_with_one_line() {
    let load = ["load", "--store", "memory://", "--users", "5"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&load[..], &["--duration", "inf"]].concat(), "--duration"),
        ([&load[..], &["--duration=-inf"]].concat(), "--duration"),
        ([&load[..], &["--duration", "nan"]].concat(), "--duration"),
        ([&load[..], &["--duration", "1e300"]].concat(), "--duration"),
        ([&load[..], &["--duration", "0"]].concat(), "--duration"),
        ([&load[..], &["--duration=-1"]].concat(), "--duration"),
        (
            [&load[..], &["--duration", "1", "--settle", "inf"]].concat(),
            "--settle",
        ),
        (
            [&load[..], &["--duration", "1", "--settle", "1e300"]].concat(),
            "--settle",
        ),
        (
            [&load[..], &["--duration", "1", "--settle", "nan"]].concat(),
            "--settle",
        ),
        (
            [&load[..], &["--duration", "1", "--settle=-1"]].concat(),
            "--settle",
        ),
        (
            [&load[..], &["--duration", "1", "--l2-timeout-ms", "0"]].concat(),
            "--l2-timeout-ms",
        ),
        (
            [&load[..], &["--duration", "1", "--tasks", "0"]].concat(),
            "--tasks",
        ),
        (
            [&load[..], &["--duration", "1", "--writers-share", "1.5"]].concat(),
            "--writers-share",
        ),
        (
            [&load[..], &["--duration", "1", "--signout-share=-0.1"]].concat(),
            "--signout-share",
        ),
        (
            [&load[..], &["--duration", "1", "--writers-share", "nan"]].concat(),
            "--writers-share",
        ),
        (
            vec![
                "load",
                "--store",
                "memory://",
                "--users",
                "0",
                "--duration",
                "1",
            ],
            "--users",
        ),
        (vec!["simulate", "--pace", "0"], "--pace"),
        (vec!["simulate", "--hours", "0"], "--hours"),
        (vec!["simulate", "--hours", "9000"], "--hours"),
        (vec!["simulate", "--users", "0"], "--users"),
        (vec!["simulate", "--token-minutes", "5"], "--token-minutes"),
        (
            vec!["simulate", "--sample-minutes", "0"],
            "--sample-minutes",
        ),
        (
            vec!["simulate", "--refresh-token-hours", "0"],
            "--refresh-token-hours",
        ),
        (
            vec!["simulate", "--sliding-minutes", "0"],
            "--sliding-minutes",
        ),
        (
            vec!["simulate", "--sign-out-share", "1.5"],
            "--sign-out-share",
        ),
        (vec!["simulate", "--return-share=-1"], "--return-share"),
        (
            vec!["simulate", "--session-share", "inf"],
            "--session-share",
        ),
        (vec!["simulate", "--seed=-3"], "--seed"),
        (vec!["bench", "--seconds", "0"], "--seconds"),
        (vec!["bench", "--seconds", "1000"], "--seconds"),
        (vec!["inspect", "--page", "0"], "--page"),
        (vec!["inspect", "--examples", "x"], "--examples"),
        (
            vec![
                "partition",
                "find",
                "-",
                "--client-id",
                "c",
                "--scopes",
                "s",
                "--skew=-5",
            ],
            "--skew",
        ),
        (
            vec![
                "partition",
                "find",
                "-",
                "--client-id",
                "c",
                "--scopes",
                "s",
                "--now",
                "soon",
            ],
            "--now",
        ),
        (vec!["purge"], "--user"),
        (vec!["nosuchcommand"], "nosuchcommand"),
    ];
    for (args, flag) in cases {
        let out = tokencache(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}{stdout}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line, got {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: names {flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing ran: {stdout}");
    }
}

/// Every numeric flag of every command, with values below, above and far out of its
/// range, negative ones given as a separate argument (which clap would take for a flag
/// and answer with its unusable "to pass '-5' as a value, use '-- -5'" tip): one line
/// naming the flag and its range, exit 2, nothing run.
#[test]
fn every_numeric_flag_has_a_range_and_a_one_line_error() {
    let find = [
        "partition",
        "find",
        "-",
        "--client-id",
        "c",
        "--scopes",
        "s",
    ];
    let load = ["load", "--store", "memory://", "--duration", "1"];
    let table: Vec<(Vec<&str>, &str, Vec<&str>)> = vec![
        (find.to_vec(), "--now", vec!["-5", "99999999999999", "x"]),
        (find.to_vec(), "--skew", vec!["-5", "86401"]),
        (vec!["bench"], "--seconds", vec!["-5", "0", "19"]),
        (load.to_vec(), "--users", vec!["-5", "0", "1000001"]),
        (
            vec!["load", "--store", "memory://"],
            "--duration",
            vec!["-5", "0", "inf", "604801"],
        ),
        (load.to_vec(), "--writers-share", vec!["-5", "1.5", "nan"]),
        (load.to_vec(), "--signout-share", vec!["-5", "2"]),
        (load.to_vec(), "--tasks", vec!["-5", "0", "257"]),
        (load.to_vec(), "--l2-timeout-ms", vec!["-5", "0", "60001"]),
        (load.to_vec(), "--settle", vec!["-5", "3601", "inf"]),
        (load.to_vec(), "--replicas", vec!["-5", "0", "65"]),
        (load.to_vec(), "--stale-bound-ms", vec!["-5", "60001"]),
        (vec!["simulate"], "--users", vec!["-5", "0", "1000001"]),
        (vec!["simulate"], "--hours", vec!["-5", "0", "8761"]),
        (
            vec!["simulate"],
            "--seed",
            vec!["-5", "18446744073709551616"],
        ),
        (
            vec!["simulate"],
            "--refresh-token-hours",
            vec!["-5", "0", "8761"],
        ),
        (
            vec!["simulate"],
            "--sliding-minutes",
            vec!["-5", "0", "525601"],
        ),
        (vec!["simulate"], "--token-minutes", vec!["-5", "9", "1441"]),
        (
            vec!["simulate"],
            "--sample-minutes",
            vec!["-5", "0", "10081"],
        ),
        (vec!["simulate"], "--sign-out-share", vec!["-5", "1.01"]),
        (vec!["simulate"], "--return-share", vec!["-5", "2"]),
        (vec!["simulate"], "--session-share", vec!["-5", "inf"]),
        (vec!["simulate"], "--pace", vec!["-5", "0", "100001"]),
        (vec!["inspect"], "--page", vec!["-5", "0", "100001"]),
        (vec!["inspect"], "--examples", vec!["-5", "10001"]),
        (vec!["rekey"], "--page", vec!["-5", "0", "100001"]),
        (
            vec!["rekey"],
            "--concurrency",
            vec!["-5", "0", "1025", "100000000"],
        ),
    ];
    let mut failed = Vec::new();
    for (base, flag, values) in &table {
        for value in values {
            let args = [&base[..], &[*flag, *value]].concat();
            let out = tokencache(&args);
            let (stdout, stderr) = text(&out);
            let ok = out.status.code() == Some(2)
                && stderr.trim().lines().count() == 1
                && stderr.starts_with("error: ")
                && stderr.contains(flag)
                && stderr.contains(" to ")
                && !stderr.contains("tip")
                && !stderr.contains("-- -")
                && stdout.is_empty();
            if !ok {
                failed.push(format!("{args:?}: exit {:?}: {stderr}", out.status.code()));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// `tokencache --help` opens with what the tool is for, not with the package's name.
#[test]
fn the_help_says_what_the_tool_does() {
    let (stdout, _) = text(&tokencache(&["--help"]));
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Look after a shared OAuth 2.0 / OpenID Connect token cache"),
        "{first}"
    );
    for what in [
        "sign users out",
        "rotate its encryption keys",
        "serve tokens",
    ] {
        assert!(first.contains(what), "{what}: {first}");
    }
    assert!(
        !stdout.contains("The tokencache command-line tool"),
        "{stdout}"
    );
}
