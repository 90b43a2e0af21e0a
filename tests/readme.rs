//! The documentation stays true: docs/reference.md has every option in its
//! table with the flag, env var, YAML key and default the code actually
//! uses, its YAML example passes `meshinit check`, the README's first screen
//! shows the command a user types, and every relative link in the Markdown
//! files reaches a file (and a heading, for `#anchor`s).

mod common;

use common::{in_ci, meshinit_bin, temp_dir};
use meshinit::config::{options, OPTIONS};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

// Blank lines around the table keep the markers their own HTML blocks.
const TABLE_BEGIN: &str = "<!-- options table: generated from src/config/options.rs -->\n\n";
const TABLE_END: &str = "\n<!-- end of options table -->\n";

/// The reference's table of options is the options table, rendered. Run
/// with MESHINIT_BLESS=1 to write it after changing an option.
#[test]
fn reference_table_is_the_options_table() {
    let path = repo().join("docs/reference.md");
    let reference = read("docs/reference.md");
    let start = reference.find(TABLE_BEGIN).expect("table begin marker") + TABLE_BEGIN.len();
    let end = reference.find(TABLE_END).expect("table end marker");
    let wanted = options::reference_table();
    if reference[start..end] == wanted {
        return;
    }
    // Rewriting is for a developer's tree: under CI the table must already match.
    if std::env::var_os("MESHINIT_BLESS").is_some() && !in_ci() {
        let fresh = format!("{}{wanted}{}", &reference[..start], &reference[end..]);
        std::fs::write(&path, fresh).unwrap();
        return;
    }
    panic!(
        "docs/reference.md's options table differs from src/config/options.rs; \
         run `MESHINIT_BLESS=1 cargo test --test readme` to rewrite it"
    );
}

#[test]
fn reference_yaml_example_shows_every_key() {
    let reference = read("docs/reference.md");
    let example = yaml_example(&reference);
    // Each key under its own section: `timeout` or `listen` elsewhere does not count.
    let mut section = "";
    let mut shown: Vec<(String, String)> = Vec::new();
    for line in example.lines() {
        if let Some(name) = line
            .strip_suffix(':')
            .filter(|n| !n.starts_with([' ', '#']))
        {
            section = name;
        } else if let Some(rest) = line.strip_prefix("  ") {
            let key = rest
                .trim_start_matches("# ")
                .split(':')
                .next()
                .unwrap_or("");
            shown.push((section.to_string(), key.to_string()));
        }
    }
    for def in OPTIONS {
        assert!(
            shown.contains(&(def.section.name().to_string(), def.key.to_string())),
            "the YAML example lacks {}",
            def.yaml()
        );
    }
}

/// The reference's full YAML example, from its first line to the closing fence.
fn yaml_example(reference: &str) -> &str {
    let start = reference
        .find("# meshinit.yaml: every section and key")
        .expect("YAML example");
    &reference[start..start + reference[start..].find("```").unwrap()]
}

#[test]
fn reference_yaml_example_is_a_valid_configuration_shape() {
    // The example names files and users of a real host; on this one only
    // those may be missing: no unknown key, no value of the wrong form.
    let reference = read("docs/reference.md");
    let dir = temp_dir("reference");
    let path = dir.join("meshinit.yaml");
    std::fs::write(&path, yaml_example(&reference)).unwrap();
    let out = std::process::Command::new(meshinit_bin())
        .arg("check")
        .arg(format!("--config={}", path.display()))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    for p in &problems {
        let environmental = [
            "does not exist",
            "is not a directory",
            "cannot read",
            "was not found on PATH",
        ]
        .iter()
        .any(|n| p.contains(n));
        assert!(
            environmental,
            "the YAML example of docs/reference.md has a real problem: {p}\n{text}"
        );
    }
    // A `check` that panicked (exit 101) or died prints no problem list either: only the
    // codes `check` itself uses count, and they must agree with what it printed.
    let code = out.status.code();
    assert!(!text.contains("panicked"), "check panicked:\n{text}");
    if problems.is_empty() {
        assert_eq!(code, Some(0), "check printed no problem:\n{text}");
    } else {
        // 64 for configuration problems; 127/126 when the only one is the app command.
        assert!(
            matches!(code, Some(64 | 126 | 127)),
            "check exited {code:?}:\n{text}"
        );
    }
}

#[test]
fn readme_first_screen_shows_what_and_the_command() {
    let readme = read("README.md");
    let screen: Vec<&str> = readme.lines().take(25).collect();
    let screen = screen.join("\n");
    assert!(
        screen.contains("init process"),
        "what meshinit is:\n{screen}"
    );
    assert!(
        screen.contains("\nmeshinit -- "),
        "the command a user types:\n{screen}"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-`
/// and `_` dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let h = line.trim_start_matches('#');
            if h.starts_with(' ') {
                out.push(anchor(h));
            }
        }
    }
    out
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "fuzz" {
                markdown_files(&p, out);
            }
        } else if name.ends_with(".md") {
            out.push(p);
        }
    }
}

#[test]
fn relative_links_in_markdown_resolve() {
    let mut files = Vec::new();
    markdown_files(&repo(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("README.md")));
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            if fenced {
                continue;
            }
            for (i, _) in line.match_indices("](") {
                let rest = &line[i + 2..];
                let Some(end) = rest.find(')') else { continue };
                let link = &rest[..end];
                if link.contains("://") || link.starts_with("mailto:") {
                    continue;
                }
                let (path, frag) = link.split_once('#').unwrap_or((link, ""));
                let target = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                let shown = format!(
                    "{}: ]({link})",
                    file.strip_prefix(repo()).unwrap().display()
                );
                if !target.exists() {
                    broken.push(format!("{shown}: no such file"));
                } else if !frag.is_empty() {
                    let t = std::fs::read_to_string(&target).unwrap_or_default();
                    if !anchors(&t).iter().any(|a| a == frag) {
                        broken.push(format!("{shown}: no heading #{frag}"));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
