//! meshinit: a PID-1-capable supervisor for one application and its
//! Kuma / Kong Mesh data plane proxy (kuma-dp) on Universal.
//!
//! Module map: `cli` and `config` read what to do (`yaml` keeps every
//! node's line); `lifecycle` decides (pure state machine); `driver` carries
//! it out with `spawn`, `reaper`, `signals`, `descendants`, `probe`, `http`,
//! `status` (and `metrics`, the Prometheus text it serves), `notify`,
//! `envoy` (Envoy's stats, for the idle drain), `memory` (start-up pages
//! released) and `workdir` (kuma-dp's work directory); `dataplane` renders
//! and checks the Dataplane template; `plan` prints `meshinit check`.

pub mod cli;
pub mod config;
pub mod dataplane;
pub mod descendants;
pub mod driver;
pub mod envoy;
pub mod exit;
pub mod fds;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod parse;
pub mod plan;
pub mod probe;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod user;
pub mod workdir;
pub mod yaml;

use tracing::{info, warn};

/// Runs meshinit with these arguments and environment; returns the exit code.
pub fn main_with(args: Vec<std::ffi::OsString>, env: &dyn Fn(&str) -> Option<String>) -> i32 {
    let (mode, args) = cli::split_mode(args);
    let matches = match cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::EX_USAGE,
            };
        }
    };
    let cfg = match config::load(mode, &matches, env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshinit: {e}");
            return e.exit_code;
        }
    };
    if mode == cli::Mode::Check {
        print!("{}", plan::render(&cfg));
        if let Some(budget) = cfg.shutdown_budget {
            let worst = cfg.settings.worst_case_shutdown();
            if worst > budget {
                eprintln!(
                    "meshinit: worst-case shutdown {} exceeds --shutdown-budget {}; lower drain-timeout, app-grace-delay or app-stop-timeout, or raise the platform's stop timeout",
                    parse::fmt_duration(worst),
                    parse::fmt_duration(budget)
                );
                return exit::EX_USAGE;
            }
        }
        return 0;
    }
    run(cfg, env)
}

fn run(cfg: config::Config, env: &dyn Fn(&str) -> Option<String>) -> i32 {
    spawn::record_start_dir();
    // Before anything is spawned: only the app gets them back.
    fds::adopt_inherited();
    // Before any thread or child exists, so that no signal is lost.
    if let Err(e) = signals::block() {
        eprintln!("meshinit: cannot block signals: {e}");
        return exit::EX_OSERR;
    }
    logging::init(cfg.log_json, cfg.log_level);
    let pid = std::process::id();
    let mut reaps_orphans = true;
    if pid != 1 {
        if let Err(e) = reaper::become_subreaper() {
            reaps_orphans = false;
            warn!(error = %e, "cannot become a child subreaper; orphans of the app will not be reaped by meshinit");
        }
    }
    for w in &cfg.warnings {
        warn!("{w}");
    }
    if cfg.proxy.is_none() {
        info!("no Dataplane given: plain init mode, kuma-dp will not be started");
    }
    if cfg.default_probe {
        if let Some(p) = cfg.probes.first() {
            info!(probe = %p.kind, "no probe given: probing the first inbound's servicePort");
        }
    }
    let listener = match cfg.status_listen.map(status::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = ?cfg.status_listen, error = %e, "cannot listen for the status endpoint");
            return exit::EX_OSERR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the event loop");
            return exit::EX_OSERR;
        }
    };
    let local = tokio::task::LocalSet::new();
    info!(
        pid,
        version = env!("CARGO_PKG_VERSION"),
        "meshinit starting"
    );
    let listener = listener.map(|l| {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(l)
    });
    let listener = match listener.transpose() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot use the status listener");
            return exit::EX_OSERR;
        }
    };
    match local.block_on(&runtime, driver::run(cfg, listener, env, reaps_orphans)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}
