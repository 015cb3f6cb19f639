//! The README's command-line examples are run as written: every ```console block is a
//! list of `$ command` lines, each followed by the exact stdout it prints. Commands run
//! in the repository root through `sh`, with the built `tokencache` first on PATH, so a
//! README that drifts from the tool fails here (the library's examples are doc tests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// One example: the command line and the stdout it shows.
struct Example {
    line: usize,
    command: String,
    stdout: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `$ ` commands of every ```console block, with the lines after each.
fn examples(readme: &str) -> Vec<Example> {
    let (mut out, mut in_block) = (Vec::<Example>::new(), false);
    for (i, line) in readme.lines().enumerate() {
        if !in_block {
            in_block = line.trim_end() == "```console";
            continue;
        }
        if line.trim_end() == "```" {
            in_block = false;
        } else if let Some(command) = line.strip_prefix("$ ") {
            out.push(Example {
                line: i + 1,
                command: command.to_string(),
                stdout: String::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.stdout.push_str(line);
            last.stdout.push('\n');
        } else {
            panic!("README.md:{}: output before any `$ ` command", i + 1);
        }
    }
    assert!(!in_block, "README.md: a console block is not closed");
    out
}

#[test]
fn readme_console_examples_print_what_they_show() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let examples = examples(&readme);
    assert!(examples.len() >= 3, "the README's examples were found");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tokencache"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    for ex in &examples {
        let out = Command::new("sh")
            .args(["-c", &ex.command])
            .current_dir(&root)
            .env("PATH", &path)
            .env_remove("TOKENCACHE_STORE")
            .env_remove("TOKENCACHE_PREFIX")
            .env("TOKENCACHE_LOG", "off")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            ex.stdout,
            "README.md:{}: `{}` printed something else (stderr: {})",
            ex.line,
            ex.command,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_parser_reads_commands_and_their_output() {
    let text = "x\n```console\n$ a\n1\n2\n$ b\n```\n```sh\n$ not run\n```\n";
    let found = examples(text);
    assert_eq!(found.len(), 2);
    assert_eq!(
        (found[0].command.as_str(), found[0].stdout.as_str()),
        ("a", "1\n2\n")
    );
    assert_eq!(
        (found[1].command.as_str(), found[1].stdout.as_str()),
        ("b", "")
    );
    assert_eq!(found[1].line, 6);
}
