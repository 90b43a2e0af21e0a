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
