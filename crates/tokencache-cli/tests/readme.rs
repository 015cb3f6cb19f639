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
    assert_eq!(sections, (1..=16).collect::<Vec<_>>(), "§1-§16, in order");
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

/// The fenced blocks of `text` whose info string starts with `lang`, as their lines.
fn blocks(text: &str, lang: &str) -> Vec<Vec<String>> {
    let (mut out, mut cur): (Vec<Vec<String>>, Option<Vec<String>>) = (Vec::new(), None);
    for line in text.lines() {
        match &mut cur {
            None if line.starts_with("```") && line[3..].starts_with(lang) => {
                cur = Some(Vec::new())
            }
            Some(_) if line.starts_with("```") => out.extend(cur.take()),
            Some(b) => b.push(line.to_string()),
            None => {}
        }
    }
    out
}

/// The section of the README under `heading` (to the next `## `).
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has {heading:?}"));
    let rest = &readme[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The commands `tokencache ARGS --help` lists (without `help`).
fn commands_in_help(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let list = text
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{args:?} --help lists commands: {text}"));
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The README's list of commands and `tokencache --help` name the same commands (and
/// `partition`, `keys` and `token` the same subcommands), both ways.
#[test]
fn readme_command_list_and_help_agree() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let list = section(&readme, "## The command-line tool");
    let block = blocks(list, "sh").into_iter().next().expect("the list");
    let mut listed: Vec<String> = Vec::new();
    for line in block.iter().filter_map(|l| l.strip_prefix("tokencache ")) {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap().to_string();
        if ["partition", "keys", "token"].contains(&command.as_str()) {
            for sub in words.next().unwrap().split('|') {
                listed.push(format!("{command} {sub}"));
            }
        } else {
            listed.push(command);
        }
    }
    let mut in_help: Vec<String> = Vec::new();
    for command in commands_in_help(&[]) {
        if ["partition", "keys", "token"].contains(&command.as_str()) {
            for sub in commands_in_help(&[&command]) {
                in_help.push(format!("{command} {sub}"));
            }
        } else {
            in_help.push(command);
        }
    }
    listed.sort();
    listed.dedup();
    in_help.sort();
    assert_eq!(listed, in_help, "README.md's list vs --help");
}

/// The README shows the library's examples without the hidden `# ` lines a doc test
/// needs (GitHub would show them): the compiled examples live in the crate doc
/// (`crates/tokencache/src/lib.rs`), and each README example is one of them, its
/// hidden lines left out.
#[test]
fn readme_rust_examples_are_the_crate_doc_s_without_hidden_lines() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lib = std::fs::read_to_string(root.join("crates/tokencache/src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! ").or((l == "//!").then_some("")))
        .collect::<Vec<_>>()
        .join("\n");
    let visible = |b: &Vec<String>| -> Vec<String> {
        b.iter()
            .filter(|l| !(l.starts_with("# ") || l.as_str() == "#"))
            .cloned()
            .collect()
    };
    let compiled: Vec<Vec<String>> = blocks(&doc, "rust").iter().map(visible).collect();
    let shown = blocks(&readme, "rust");
    assert!(shown.len() >= 2, "the README shows the library");
    for block in &shown {
        assert_eq!(
            block,
            &visible(block),
            "a hidden line in README.md: {block:?}"
        );
        assert!(
            compiled.contains(block),
            "README.md's example is not one of lib.rs's doc examples:\n{}",
            block.join("\n")
        );
    }
}

/// The README's serve configuration is a template: serve refuses to start on it, in one
/// line naming a placeholder, instead of starting with a client id of "...".
#[test]
fn the_readme_serve_example_stops_at_its_placeholders() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let serve = section(&readme, "## The token service");
    let toml = blocks(serve, "toml")
        .into_iter()
        .next()
        .expect("the example");
    assert!(
        !toml.iter().any(|l| l.starts_with("store =")),
        "the example uses the embedded default store"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokencache.toml");
    std::fs::write(&path, toml.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokencache"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("ORDERS_CLIENT_SECRET", "not-a-real-secret")
        .env_remove("TOKENCACHE_STORE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("still holds the placeholder"), "{err}");
}

/// The test scripts build inside the clone: neither `scripts/test.sh` nor `.ci/run` points
/// `CARGO_TARGET_DIR` anywhere (cargo's default is the clone's `target/`; a caller may
/// set it), and the scripts that need a default give one under the clone.
#[test]
fn build_output_stays_in_the_clone() {
    let root = repo_root();
    for script in ["scripts/test.sh", ".ci/run"] {
        let text = std::fs::read_to_string(root.join(script)).unwrap();
        let sets = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("CARGO_TARGET_DIR="));
        assert!(!sets, "{script} sets CARGO_TARGET_DIR");
    }
    for script in ["scripts/bench-serve.sh", "scripts/try-serve.sh"] {
        let text = std::fs::read_to_string(root.join(script)).unwrap();
        for line in text.lines().filter(|l| l.contains("CARGO_TARGET_DIR:-")) {
            let default = line.split("CARGO_TARGET_DIR:-").nth(1).unwrap();
            assert!(
                default.starts_with("$PWD/target") || default.starts_with("$repo/target"),
                "{script}: {line}"
            );
        }
    }
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let quick = section(&readme, "## Quick start");
    assert!(
        quick.contains("`target/`"),
        "the README says where builds go"
    );
    assert!(
        quick.contains(" GB"),
        "and how much disk the first run takes"
    );
}
