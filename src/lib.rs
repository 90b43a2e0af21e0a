//! meshinit: a PID-1-capable supervisor for one application and its
//! Kuma / Kong Mesh data plane proxy (kuma-dp) on Universal.
//!
//! Module map, one folder per concern, top to bottom: a folder imports only
//! from the folders below it (`tests/architecture.rs` checks it).
//!
//! - `driver/`: carries the lifecycle's actions out; the one module that
//!   owns the clock, the processes and the sockets, using all the folders.
//!   `mod.rs` (the event loop, signals, the one reaper), `proxy` (kuma-dp's
//!   process, readiness poll and work dir), `idle` (Envoy's stats during a
//!   drain or a waiting `ctl out`), `install` (the opt-in
//!   `kumactl install transparent-proxy` first step), `membership` (Envoy's
//!   `/healthcheck/fail|ok` calls), `hang` (whether Envoy's admin API
//!   answers), `reporter` (the snapshot, sd_notify, log lines, summary),
//!   `control` (the `--control-socket` server) and `ctl` (its client,
//!   `meshinit ctl`).
//! - `config/`: what to do. `options` (the one table of options, also
//!   read by build.rs), `cli` (the clap command built from it), `layers`
//!   (flags, env, file, merged with origins), `resolve` (typing one value),
//!   one module per YAML section (`app`, `probes`, `proxy`, `shutdown`,
//!   `status`), `tproxy` (transparent proxying: detection and refusals), `host` (what is asked of the machine, behind a trait),
//!   `lints` (warnings as pure passes) and `plan` (what `meshinit check`
//!   prints, the shutdown timeline from `lifecycle::simulate`); `mod.rs`
//!   runs them in order.
//! - `report/`: `snapshot` (what is reported, published once per turn),
//!   `status` (the endpoint), `admission` (connection slots shared by the
//!   endpoint and the control socket), `metrics`, `state_file` (the last shutdown,
//!   kept across restarts), `notify` (sd_notify), `logging`.
//! - `lifecycle/`: every decision, as a pure state machine
//!   (`step(now, input) -> actions`), with `health` (probe thresholds, all
//!   must pass), `simulate` (the machine on a simulated clock: the worst
//!   case and check's timeline), its table tests and properties.
//! - `mesh/`: the proxy: `dataplane` (the template), `tproxy` (Kuma's
//!   iptables rules as `iptables-save` shows them, kumactl's and kuma-dp's
//!   transparent-proxy arguments), `envoy` (admin API:
//!   stats for the idle drain, health-check calls, `/ready`), `kuma_dp` (what meshinit reads from
//!   kuma-dp's arguments: drain time, work dir; the token hidden when shown),
//!   `workdir` (kuma-dp's work directory).
//! - `health/`: `spec` (what a probe is), `probe` (HTTP, TCP, commands) and
//!   its `http` client.
//! - `init/`: the duties of an init process: `signals`, `reaper`, `spawn`,
//!   `path` (finding the program on PATH), `user`, `fds`, `descendants`,
//!   `exit` (statuses and codes), `memory`.
//! - `basics/`: what several folders need and that depends on nothing
//!   else: `parse` (durations, signals, URLs, users, and their formatting),
//!   `yaml` (a tree that keeps each node's line), `files` (bounded reading
//!   of regular files), `escape` (child text made safe for a log line).
//!
//! Modules are `pub(crate)` unless the fuzz targets (fuzz/) or the
//! integration tests use them, so that the dead-code lint sees the rest.

pub mod basics;
pub mod config;
pub(crate) mod driver;
pub mod health;
pub mod init;
pub mod lifecycle;
pub mod mesh;
pub mod report;
#[cfg(test)]
mod testing;

/// For main.rs, which must read the inherited signal state before Rust's
/// runtime changes it.
pub use init::signals::record_inherited as record_inherited_signals;

use tracing::{info, warn};

/// Runs meshinit with these arguments and environment; returns the exit code.
pub fn main_with(args: Vec<std::ffi::OsString>, env: &dyn Fn(&str) -> Option<String>) -> i32 {
    // `meshinit ctl ...` talks to a running meshinit; it supervises nothing.
    if args.get(1).is_some_and(|a| a == "ctl") {
        return driver::ctl::main(args, env);
    }
    let (mode, args) = config::cli::split_mode(args);
    let matches = match config::cli::parse(args) {
        Ok(m) => m,
        Err(e) => {
            // clap writes the help to stdout and errors to stderr, and
            // reports a failed write rather than panicking on it.
            let printed = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    match printed {
                        Ok(()) => 0,
                        Err(err) => {
                            report::logging::say(&format!(
                                "meshinit: cannot write to stdout: {err}"
                            ));
                            init::exit::EX_IOERR
                        }
                    }
                }
                _ => init::exit::EX_USAGE,
            };
        }
    };
    let cfg = match config::load(mode, &matches, env) {
        Ok(c) => c,
        Err(e) => {
            report::logging::say(&format!("meshinit: {e}"));
            return e.exit_code;
        }
    };
    if mode == config::cli::Mode::Check {
        // `check` exists to print the plan: one it could not write is a
        // failure, reported as such (EX_IOERR), not a panic.
        if let Err(e) = print_stdout(&config::plan::render(&cfg)) {
            report::logging::say(&format!("meshinit: cannot write the plan to stdout: {e}"));
            return init::exit::EX_IOERR;
        }
        if let Some(verdict) = cfg.budget_verdict().filter(|v| !v.fits()) {
            report::logging::say(&format!("meshinit: {verdict}"));
            return init::exit::EX_USAGE;
        }
        return 0;
    }
    run(cfg, env)
}

/// Writes all of `text` to stdout and flushes it; `print!` would panic on
/// a full disk or a closed pipe.
fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn run(cfg: config::Config, env: &dyn Fn(&str) -> Option<String>) -> i32 {
    init::spawn::record_start_dir();
    // Before anything is spawned: only the app gets them back.
    init::fds::adopt_inherited();
    // Before any thread or child exists, so that no signal is lost.
    if let Err(e) = init::signals::block() {
        report::logging::say(&format!("meshinit: cannot block signals: {e}"));
        return init::exit::EX_OSERR;
    }
    report::logging::init(cfg.log_json, cfg.log_level);
    let pid = std::process::id();
    let mut reaps_orphans = true;
    if pid != 1 {
        if let Err(e) = init::reaper::become_subreaper() {
            reaps_orphans = false;
            warn!(error = %e, "cannot become a child subreaper; orphans of the app will not be reaped by meshinit");
        }
    }
    for w in &cfg.warnings {
        warn!("{w}");
    }
    match &cfg.proxy {
        None => info!("no Dataplane given: plain init mode, kuma-dp will not be started"),
        // A meshinit killed outright (SIGKILL, the OOM killer) could not
        // remove the work directory it made for kuma-dp: the next one does.
        Some(p) if p.owns_work_dir => {
            if let Some(parent) = p.work_dir.parent() {
                for (dir, pid) in mesh::workdir::remove_stale(parent) {
                    info!(dir = %dir.display(), pid, "removed kuma-dp's work directory left by a meshinit that is gone");
                }
            }
        }
        Some(_) => {}
    }
    if cfg.default_probe {
        if let Some(p) = cfg.probes.first() {
            info!(probe = %p.kind, "no probe given: probing the first inbound's servicePort");
        }
    }
    let listener = match cfg.status_listen.map(report::status::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            let addr = cfg.status_listen.map(|a| a.to_string()).unwrap_or_default();
            tracing::error!(%addr, error = %e, "cannot listen for the status endpoint");
            return init::exit::EX_OSERR;
        }
    };
    // Bound before anything is started, so that a path in use is a
    // start-up error with nothing to stop; removed when it is dropped.
    let control = match cfg
        .control_socket
        .as_deref()
        .map(driver::control::ControlServer::bind)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return e.exit_code();
        }
    };
    // The opt-in first step, before anything is started (see
    // `driver::install`) but after every start-up check that can still
    // fail (the status port, the control socket): rules written and then a
    // refusal would leave the namespace redirected to an Envoy that never
    // comes; rules kumactl could not write leave nothing to run.
    if let Some(install) = cfg.redirection().and_then(|t| t.install.as_ref()) {
        info!(
            command = %format!("{} {}", install.kumactl.display(), basics::parse::shell_words(&install.argv())),
            "installing the transparent-proxy rules"
        );
        match driver::install::run(install) {
            Ok(took) => info!(
                elapsed_ms = took.as_millis() as u64,
                "transparent-proxy rules installed"
            ),
            Err(e) => {
                tracing::error!("{e}; nothing was started");
                return init::exit::EX_CONFIG;
            }
        }
    }
    if driver::is_plain(&cfg, listener.is_some()) {
        // Signals and timers only: no async runtime is built (see
        // `driver::run_plain`).
        info!(
            pid,
            version = env!("CARGO_PKG_VERSION"),
            "meshinit starting"
        );
        return match driver::run_plain(cfg, env, reaps_orphans) {
            Ok(code) => code,
            Err(e) => {
                tracing::error!("{e}");
                e.exit_code()
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the event loop");
            return init::exit::EX_OSERR;
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
            return init::exit::EX_OSERR;
        }
    };
    match local.block_on(
        &runtime,
        driver::run(cfg, listener, control, env, reaps_orphans),
    ) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}
