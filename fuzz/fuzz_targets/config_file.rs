//! The YAML configuration file, through the same path as `--config`: the
//! text is written to a file and `config::load` reads, merges, types and
//! validates it. A valid result is also rendered as `meshinit check` would.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use meshinit::config::cli::Mode;

fuzz_target!(|data: &[u8]| {
    let f = common::fixture();
    std::fs::write(&f.config, data).expect("write config");
    let argv = [
        "meshinit".to_string(),
        format!("--config={}", f.config.display()),
    ];
    let matches = meshinit::config::cli::command()
        .try_get_matches_from(&argv)
        .expect("fixed argv parses");
    let env = |_: &str| None;
    for mode in [Mode::Check, Mode::Run] {
        match meshinit::config::load(mode, &matches, &env) {
            Ok(cfg) => {
                let plan = meshinit::config::plan::render(&cfg);
                assert!(
                    !plan.contains("fuzz-token-secret"),
                    "token content in the plan"
                );
            }
            Err(e) => {
                assert!(!e.problems.is_empty(), "an error without a problem");
                let _ = e.to_string();
            }
        }
    }
});
