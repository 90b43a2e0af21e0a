//! The flag / env / file merge: random flags (by option, with random values),
//! random `MESHINIT_*` variables and an optional random YAML file, through
//! `cli::command().try_get_matches_from` and `config::load`, as `main` does.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use meshinit::config::cli::{self, Mode};
use meshinit::config::{self, OPTIONS};

/// Options whose value is a path: fuzzed as an index into a few prepared files.
const PATH_OPTIONS: &[&str] = &[
    "config",
    "dataplane-file",
    "dataplane-token-file",
    "kuma-dp",
    "app-workdir",
];

#[derive(Arbitrary, Debug)]
enum Arg {
    /// `--<flag>=<value>` for option N of `config::OPTIONS`.
    Inline(u8, String),
    /// `--<flag> <value>`.
    Separate(u8, String),
    /// A path option, pointing at prepared file N.
    Path(u8, u8),
    /// A raw argument.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    check: bool,
    args: Vec<Arg>,
    /// `MESHINIT_<flag>` for option N.
    env: Vec<(u8, String)>,
    /// Environment seen through the lookup closure (KUMA_READINESS_PORT, ...).
    lookup: Vec<(String, String)>,
    file: Option<String>,
    command: Vec<String>,
}

fn flag(i: u8) -> &'static str {
    OPTIONS[i as usize % OPTIONS.len()].flag
}

fuzz_target!(|input: Input| {
    let f = common::fixture();
    let mut argv: Vec<String> = vec!["meshinit".into()];
    if input.check {
        argv.push("check".into());
    }
    if let Some(text) = &input.file {
        std::fs::write(&f.config, text).expect("write config");
        argv.push(format!("--config={}", f.config.display()));
    }
    for a in &input.args {
        match a {
            Arg::Inline(i, v) => argv.push(format!("--{}={v}", flag(*i))),
            Arg::Separate(i, v) => {
                argv.push(format!("--{}", flag(*i)));
                argv.push(v.clone());
            }
            Arg::Path(i, p) => argv.push(format!(
                "--{}={}",
                PATH_OPTIONS[*i as usize % PATH_OPTIONS.len()],
                common::path_for(*p)
            )),
            Arg::Raw(s) => argv.push(s.clone()),
        }
    }
    if !input.command.is_empty() {
        argv.push("--".into());
        argv.extend(input.command.iter().cloned());
    }

    let osargs: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    let (mode, osargs) = cli::split_mode(osargs);
    assert_eq!(mode == Mode::Check, input.check);
    let Ok(matches) = cli::command().try_get_matches_from(osargs) else {
        return;
    };
    // The options' env vars and everything else (PATH, KUMA_*) come from the
    // one injected environment, as in `main`.
    let env: Vec<(String, String)> = input
        .env
        .iter()
        .map(|(i, v)| (OPTIONS[*i as usize % OPTIONS.len()].env(), v.clone()))
        .chain(input.lookup.iter().cloned())
        .collect();
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match config::load(mode, &matches, &lookup) {
        Ok(cfg) => {
            let plan = meshinit::config::plan::render(&cfg);
            assert!(
                !plan.contains("fuzz-token-secret"),
                "token content in the plan"
            );
            // The settings are consistent with what was configured.
            assert_eq!(cfg.settings.has_proxy, cfg.proxy.is_some());
            assert_eq!(cfg.settings.has_probes(), !cfg.probes.is_empty());
            assert!(!cfg.stop_signals.is_empty());
            if mode == Mode::Run {
                assert!(!cfg.app.command.is_empty());
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without a problem");
            let _ = e.to_string();
        }
    }
});
