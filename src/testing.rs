//! What the unit tests share: the one CI-aware skip, as `tests/common`
//! has it for the integration tests (the same rule: under CI a test that
//! cannot run fails with its reason; elsewhere it says so loudly).

use std::io::Write;

/// CI is set, and not empty, `false` or `0` (as `scripts/test` reads it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// For a test that cannot run here: fails under CI with `reason`; else
/// writes a SKIPPED line to stderr directly (the harness captures
/// `eprintln!`, not the raw descriptor), and the caller returns.
pub fn skip_or_fail(reason: &str) {
    assert!(!in_ci(), "cannot run under CI: {reason}");
    let _ = writeln!(std::io::stderr(), "SKIPPED (would fail under CI): {reason}");
}
