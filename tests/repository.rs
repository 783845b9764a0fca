//! A newcomer's check: the repository stands on its own.
//!
//! - The README's two commands are the ones that work: its test command is exactly what `.ci/run`
//!   runs, and its demo command runs the binary's `demo` subcommand (which `fleet_ops.rs` runs
//!   end to end).
//! - Every path the README and ARCHITECTURE.md name exists, and no document in the repository
//!   points outside it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The shell lines of the README's first fenced block after the heading "The two commands".
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let section = readme
        .split("## The two commands")
        .nth(1)
        .expect("README has a section 'The two commands'");
    let block = section
        .split("```")
        .nth(1)
        .expect("that section has a fenced block");
    block
        .lines()
        .skip(1) // the ```sh line's language tag
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn readme_names_two_commands_and_ci_runs_the_test_command() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "README's two commands: {commands:?}");
    assert_eq!(commands[0], "cargo run --release -- demo");
    let test_command = &commands[1];
    assert!(test_command.starts_with("cargo test"), "{test_command}");

    let ci = read(".ci/run");
    let ci_lines: Vec<&str> = ci.lines().map(str::trim).collect();
    assert!(
        ci_lines.contains(&test_command.as_str()),
        ".ci/run does not run the README's test command `{test_command}`"
    );
}

#[test]
fn the_demo_command_runs_a_subcommand_the_binary_has() {
    // `cargo run --release -- demo` runs the root package's binary: this one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionfleet"))
        .args(["demo", "--help"])
        .output()
        .expect("run sessionfleet demo --help");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // And the end-to-end test of the demo really runs it.
    assert!(read("tests/fleet_ops.rs").contains(r#".args(["demo", "--topology"])"#));
}

#[test]
fn the_specified_layout_is_at_the_root() {
    for entry in [
        "Cargo.toml",
        "hub",
        "spoke",
        "edge-client",
        "proto",
        "topology",
        "topology/examples",
        "ansible",
        "tests",
        "README.md",
        "store",
        "server",
        "replicator",
    ] {
        assert!(root().join(entry).exists(), "{entry} is missing at the root");
    }
    assert!(
        !root().join("crates").exists(),
        "crates/ is gone: crates sit at the root"
    );
}

/// Backticked spans and markdown link targets of a document.
fn named_paths(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, span) in text.split('`').enumerate() {
        if i % 2 == 1 {
            names.push(span.to_owned());
        }
    }
    for part in text.split("](").skip(1) {
        if let Some(end) = part.find(')') {
            names.push(part[..end].to_owned());
        }
    }
    names
}

/// Whether a span is meant as a repository path: its first segment is an entry at the root, or
/// it ends in a file extension the repository uses. Endpoints (`/_fleet`), placeholders and
/// URLs are not paths.
fn is_repo_path(span: &str) -> bool {
    const EXTENSIONS: [&str; 7] = [".md", ".rs", ".toml", ".sh", ".js", ".yml", ".json"];
    if span.is_empty()
        || span.contains(char::is_whitespace)
        || span.starts_with('/')
        || span.starts_with('_')
        || span.contains("://")
        || span.contains(['<', '{', '$', ':', '='])
    {
        return false;
    }
    let first = span.split('/').next().unwrap_or_default();
    let at_root = span.contains('/') && root().join(first).exists();
    at_root || EXTENSIONS.iter().any(|ext| span.ends_with(ext))
}

fn exists(span: &str) -> bool {
    let span = span.split('#').next().unwrap_or_default();
    match span.split_once('*') {
        // A glob like `tests/*.rs`: its folder holds at least one match.
        Some((dir, suffix)) => std::fs::read_dir(root().join(dir))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(suffix))
            })
            .unwrap_or(false),
        None => root().join(span).exists(),
    }
}

#[test]
fn every_path_the_readme_and_architecture_name_exists() {
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in ["README.md", "ARCHITECTURE.md"] {
        for span in named_paths(&read(doc)) {
            if is_repo_path(&span) {
                checked += 1;
                if !exists(&span) {
                    missing.push(format!("{doc}: {span}"));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} paths recognised: the check is not looking"
    );
    assert!(missing.is_empty(), "named but missing:\n{}", missing.join("\n"));
}

fn documents(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "node_modules" || name == ".git" || name == "target" {
            continue;
        }
        if path.is_dir() {
            documents(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

#[test]
fn no_document_points_outside_the_repository() {
    let mut docs = Vec::new();
    documents(&root(), &mut docs);
    assert!(docs.len() >= 3, "{docs:?}");
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("read a document");
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains("../") && !line.contains("shared/") && !line.contains("DESIGN.md"),
                "{}:{}: points outside the repository: {line}",
                doc.display(),
                n + 1
            );
        }
    }
}
