//! The README is the reference: every option must be in its table with the
//! flag, env var, YAML key and default the code actually uses.

use meshinit::config::OPTIONS;

#[test]
fn readme_reference_matches_the_options_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for def in OPTIONS {
        let start = format!("| `--{}", def.flag);
        let row = readme
            .lines()
            .find(|l| {
                l.strip_prefix(&start)
                    .is_some_and(|rest| rest.starts_with([' ', '`', '[']))
            })
            .unwrap_or_else(|| panic!("README has no reference row for --{}", def.flag));
        assert!(
            row.contains(&format!("`{}`", def.env())),
            "env var of --{} in: {row}",
            def.flag
        );
        assert!(
            row.contains(&format!("`{}.{}`", def.section, def.key)),
            "YAML key of --{} in: {row}",
            def.flag
        );
        if let Some(default) = def.default {
            assert!(
                row.contains(&format!("`{default}`")),
                "default {default} of --{} in: {row}",
                def.flag
            );
        }
        // The YAML example shows every key too.
        let shown = readme.contains(&format!("  {}:", def.key))
            || readme.contains(&format!("# {}:", def.key));
        assert!(shown, "YAML example lacks {}.{}", def.section, def.key);
    }
}

#[test]
fn readme_yaml_example_is_a_valid_configuration_shape() {
    // The example names files and users of a real host; on this one only
    // those may be missing: no unknown key, no value of the wrong form.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("# meshinit.yaml: every section and key")
        .expect("YAML example");
    let end = start + readme[start..].find("```").unwrap();
    let dir = std::env::temp_dir().join(format!("meshinit-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("meshinit.yaml");
    std::fs::write(&path, &readme[start..end]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshinit"))
        .arg("check")
        .arg(format!("--config={}", path.display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
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
            "the README example has a real problem: {p}\n{text}"
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
