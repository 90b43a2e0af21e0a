//! The folders of `src/` form a strict descent: a folder may import from the
//! folders below it, never from one above (no import cycles, and a reader of
//! a lower folder needs nothing above it). Read from the source itself: every
//! `crate::<folder>` path outside comments, tests included.

use std::fs;
use std::path::Path;

/// Top to bottom. `lib.rs` and `main.rs` sit above all of them; `testing`
/// (the unit tests' skip helper) is a leaf like `basics`.
const DESCENT: &[&str] = &[
    "driver",
    "config",
    "report",
    "lifecycle",
    "mesh",
    "health",
    "init",
    "basics",
    "testing",
];

fn rank(folder: &str) -> Option<usize> {
    DESCENT.iter().position(|f| *f == folder)
}

/// Every `crate::<name>` a line mentions.
fn crate_paths(line: &str) -> Vec<&str> {
    line.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &line[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_folder_imports_from_a_folder_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut seen_folders = std::collections::BTreeSet::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let folder = top.trim_end_matches(".rs").to_string();
        if folder == "lib" || folder == "main" {
            continue;
        }
        let Some(own) = rank(&folder) else {
            panic!("src/{folder} is not placed in DESCENT (tests/architecture.rs): add it where it belongs");
        };
        seen_folders.insert(folder.clone());
        let text = fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for target in crate_paths(line) {
                match rank(target) {
                    Some(r) if r < own => upward.push(format!(
                        "{}:{}: {folder} imports {target}, which is above it: {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a folder above:\n{}",
        upward.join("\n")
    );
    assert!(
        seen_folders.len() >= DESCENT.len() - 1,
        "the walk found only {seen_folders:?}"
    );
}

/// The check itself: a made-up upward import is caught, a downward one and a
/// comment are not.
#[test]
fn the_check_sees_an_upward_import() {
    assert_eq!(crate_paths("use crate::config::parse::fmt;"), ["config"]);
    assert_eq!(
        crate_paths("let x = crate::lifecycle::Phase::Running; crate::init::exit::X"),
        ["lifecycle", "init"]
    );
    assert!(rank("config") < rank("init"));
    assert!(rank("basics") > rank("health"));
}
