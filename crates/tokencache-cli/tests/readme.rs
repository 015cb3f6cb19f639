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

/// Every file under `dir` whose name ends with one of `exts` (skipping build output).
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | ".peers" | "node_modules") {
                files(&path, exts, out);
            }
        } else if exts.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

/// The design lives in the repository: nothing points at a design document outside it,
/// and every design citation (`docs/design.md`, a space, `§N`) in code or docs names a
/// section that exists.
#[test]
fn design_citations_point_at_sections_of_docs_design_md() {
    let root = repo_root();
    let design = std::fs::read_to_string(root.join("docs/design.md")).unwrap();
    let sections: Vec<u32> = design
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter_map(|l| l.split('.').next()?.parse().ok())
        .collect();
    assert_eq!(sections, (1..=14).collect::<Vec<_>>(), "§1-§14, in order");
    let mut all = Vec::new();
    for dir in ["crates", "docs", "fuzz", "interop", "scripts"] {
        files(
            &root.join(dir),
            &[".rs", ".md", ".py", ".mjs", ".sh"],
            &mut all,
        );
    }
    all.push(root.join("README.md"));
    all.push(root.join("ARCHITECTURE.md"));
    let mut cited = 0;
    for path in &all {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let shown = path.strip_prefix(&root).unwrap().display().to_string();
        // Spelled in pieces, so that this file does not match itself.
        for outside in [["DESIGN", ".md"], ["DESIGN", " §"], ["../", "shared/"]] {
            let outside = outside.concat();
            assert!(!text.contains(&outside), "{shown} cites {outside:?}");
        }
        let cite = ["design.md", " §"].concat();
        for (at, _) in text.match_indices(&cite) {
            let n: String = text[at + cite.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let n: u32 = n
                .parse()
                .unwrap_or_else(|_| panic!("{shown}: § without a number"));
            assert!(
                sections.contains(&n),
                "{shown} cites §{n}, which does not exist"
            );
            cited += 1;
        }
    }
    assert!(
        cited >= 10,
        "the code cites the design ({cited} citations found)"
    );
}
