//! `meshinit check`: the effective configuration, what would be started,
//! and the shutdown timeline, printed without starting anything.

use std::fmt::Write;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::basics::parse::{fmt_duration, shell_words, signal_name};
use crate::config::{Config, Effective, ProbeKind};
use crate::lifecycle::simulate::{self, ShutdownRun};
use crate::lifecycle::{Action, DrainEnd, DrainMode, Event, Phase, Target};

/// The report, as printed to stdout.
pub fn render(cfg: &Config) -> String {
    let mut s = String::new();
    let s_ = &mut s;
    let _ = writeln!(s_, "meshinit check: the configuration is valid\n");
    let _ = writeln!(s_, "Effective configuration:");
    let width = cfg.effective.iter().map(|e| e.key.len()).max().unwrap_or(0);
    for Effective { key, value, origin } in &cfg.effective {
        let shown = if value.is_empty() {
            "-"
        } else {
            value.as_str()
        };
        let _ = writeln!(s_, "  {key:width$}  {shown}  ({origin})");
    }

    let _ = writeln!(s_, "\nApp:");
    if cfg.app.command.is_empty() {
        let _ = writeln!(s_, "  (no command given)");
    } else {
        let _ = writeln!(s_, "  command: {}", shell_words(&cfg.app.command));
    }
    if let Some(u) = &cfg.app.user {
        let _ = writeln!(
            s_,
            "  user: {} (uid {}, gid {}, groups {})",
            u.name,
            u.uid,
            u.gid,
            u.groups
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }

    let _ = writeln!(s_, "\nProbes (all must pass before kuma-dp starts):");
    if cfg.probes.is_empty() {
        let _ = writeln!(s_, "  none: the app counts as healthy once started");
    }
    for p in &cfg.probes {
        let shell = if matches!(p.kind, ProbeKind::Shell(_)) {
            " [runs a shell]"
        } else {
            ""
        };
        let _ = writeln!(
            s_,
            "  {}{}{shell}: every {} until healthy, then every {}; timeout {}; pass after {} success(es), fail after {} failure(s)",
            p.kind,
            if cfg.default_probe { " (default: the first inbound's servicePort)" } else { "" },
            fmt_duration(p.startup_period),
            fmt_duration(p.period),
            fmt_duration(p.timeout),
            p.success_threshold,
            p.failure_threshold
        );
    }
    let _ = writeln!(
        s_,
        "  startup timeout: {}",
        fmt_duration(cfg.settings.startup_timeout)
    );

    let _ = writeln!(s_, "\nProxy:");
    match &cfg.proxy {
        None => {
            let _ = writeln!(
                s_,
                "  none: plain init mode (no --dataplane-file or --dataplane-name)"
            );
        }
        Some(p) => {
            let mode = if p.dataplane.is_some() {
                "direct"
            } else {
                "indirect"
            };
            let _ = writeln!(
                s_,
                "  kuma-dp ({mode} mode): {} {}",
                p.kuma_dp.display(),
                shell_words(&crate::mesh::kuma_dp::shown_args(&p.args))
            );
            let _ = writeln!(
                s_,
                "  ready URL: {} (timeout {})",
                p.ready_url,
                fmt_duration(cfg.settings.proxy_ready_timeout)
            );
            let owned = if p.owns_work_dir {
                " (created and removed by meshinit)"
            } else {
                ""
            };
            let _ = writeln!(s_, "  work dir: {}{owned}", p.work_dir.display());
            if cfg.settings.start_order == crate::lifecycle::StartOrder::ProxyFirst {
                let _ = writeln!(
                    s_,
                    "  start order: proxy-first (the app starts once kuma-dp is ready)"
                );
            }
            if let Some(dp) = &p.dataplane {
                let _ = writeln!(s_, "  rendered Dataplane:");
                for line in dp.rendered.lines() {
                    let _ = writeln!(s_, "    {line}");
                }
            }
        }
    }

    render_shutdown(cfg, s_);
    if !cfg.warnings.is_empty() {
        let _ = writeln!(s_, "\nWarnings:");
        for w in &cfg.warnings {
            let _ = writeln!(s_, "  - {w}");
        }
    }
    s
}

/// The shutdown's timeline, found by running the lifecycle on a simulated
/// clock with nobody cooperating (`lifecycle::simulate`): each action at
/// the time the lifecycle takes it, so this is the worst case by
/// construction and cannot drift from what a run does.
fn render_shutdown(cfg: &Config, s_: &mut String) {
    let st = &cfg.settings;
    let stop = cfg.stop_signals.first().copied().unwrap_or(Signal::SIGTERM);
    let _ = writeln!(
        s_,
        "\nShutdown on {}, when serving, nobody exiting until killed (the lifecycle run on a simulated clock):",
        cfg.stop_signals
            .iter()
            .map(|s| signal_name(*s))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    let runs = simulate::shutdowns(st, stop);
    if let Some(serving) = runs.last() {
        render_run(cfg, serving, s_);
    }
    // A stop during the start can take longer than one while serving
    // (proxy-first, kuma-dp's fast stop beside the app's): say which.
    let longest = runs
        .iter()
        .max_by_key(|r| r.length.unwrap_or(Duration::MAX));
    if let (Some(longest), Some(serving)) = (longest, runs.last()) {
        if longest.length > serving.length {
            let _ = writeln!(
                s_,
                "  stopped while {}, it takes longer:",
                longest.from.as_str()
            );
            render_run(cfg, longest, s_);
        }
    }
    let worst = match st.worst_case_shutdown() {
        Duration::MAX => "unbounded".to_string(),
        worst => fmt_duration(worst),
    };
    if st.stop_waits_for_app() {
        // Plain init mode keeps tini's and dumb-init's stop semantics (see
        // `Lifecycle::shutdown_is_bounded`): the bound is meshinit's own
        // stop's (startup timeout, failed liveness).
        let _ = writeln!(
            s_,
            "  every further stop signal is passed to the app as it came; none cuts the stop short or escalates (plain init mode)"
        );
        let _ = writeln!(
            s_,
            "  worst case: {worst} when meshinit stops the app itself; after a stop signal, as long as the app takes"
        );
    } else {
        let _ = writeln!(s_, "  worst case: {worst}");
    }
    if let Some(verdict) = cfg.budget_verdict() {
        let fits = if verdict.fits() { "fits" } else { "EXCEEDED" };
        let _ = writeln!(
            s_,
            "  shutdown budget: {} ({fits})",
            fmt_duration(verdict.budget)
        );
    }
}

/// One simulated run, a line per action worth telling an operator.
fn render_run(cfg: &Config, run: &ShutdownRun, s_: &mut String) {
    let st = &cfg.settings;
    let mut proxy_terms = 0;
    let mut drained_inbound_only = false;
    let mut app_stopped = false;
    for timed in &run.actions {
        let line = match timed.action {
            Action::Signal(Target::Proxy, Signal::SIGTERM) => {
                proxy_terms += 1;
                let hold = st.drain_mode == DrainMode::Hold;
                match (proxy_terms, drained_inbound_only) {
                    (1, false) if run.from == Phase::Running && hold => format!(
                        "drain (hold): kuma-dp gets SIGTERM; the inbound is withdrawn and drains, at most {} (drain-timeout); kuma-dp keeps Envoy up for the app's outbound calls and DNS (its drain time {})",
                        fmt_duration(st.drain_timeout),
                        cfg.proxy
                            .as_ref()
                            .map_or_else(|| "-".to_string(), |p| fmt_duration(p.effective_drain_time()))
                    ),
                    (2, false) if hold && app_stopped => {
                        "kuma-dp gets its second SIGTERM now that the app is gone: it ends its drain and exits".into()
                    }
                    (1, false) if run.from == Phase::Running => format!(
                        "drain: kuma-dp gets SIGTERM and drains, at most {} (drain-timeout)",
                        fmt_duration(st.drain_timeout)
                    ),
                    (1, true) => {
                        "kuma-dp gets SIGTERM last (already drained, it exits at once)".into()
                    }
                    (1, false) => {
                        "kuma-dp gets SIGTERM (it never served: stopped, not drained)".into()
                    }
                    _ => "kuma-dp gets a second SIGTERM: stop now".into(),
                }
            }
            Action::Signal(Target::Proxy, Signal::SIGUSR2) => {
                drained_inbound_only = true;
                let wait = match st.drain_mode {
                    DrainMode::InboundUsr2 { wait } => wait.min(st.drain_timeout),
                    DrainMode::Term | DrainMode::Hold => st.drain_timeout,
                };
                format!(
                    "drain: kuma-dp gets SIGUSR2 (inbound listeners only; outbound keeps working); the app keeps it for {}",
                    fmt_duration(wait)
                )
            }
            Action::Signal(Target::App, _) if !app_stopped => {
                app_stopped = true;
                let kill = if run.length.is_none() {
                    format!(
                        "meshinit waits for it, as tini and dumb-init do (the platform's stop timeout does the killing); SIGKILL after {} (app-stop-timeout) only when meshinit stops the app itself (startup timeout, failed liveness)",
                        fmt_duration(st.app_stop_timeout)
                    )
                } else {
                    format!(
                        "SIGKILL after {} (app-stop-timeout)",
                        fmt_duration(st.app_stop_timeout)
                    )
                };
                format!("stop: the app gets {}, {kill}", stop_signal_text(cfg))
            }
            // Each stop signal is followed by SIGCONT (a stopped process
            // cannot act on it): part of the line above.
            Action::Signal(_, Signal::SIGCONT) => continue,
            Action::Signal(target, sig) => format!("{} gets SIG{}", who(target), signal_name(sig)),
            Action::WatchInbound(true) => idle_drain_line(cfg),
            Action::Event(Event::ProxyHeld { end }) => format!(
                "hold: the inbound drain ends ({}); kuma-dp is not told anything and keeps serving the app's outbound side",
                match end {
                    DrainEnd::Idle => "idle",
                    _ => "drain-timeout",
                }
            ),
            Action::Kill(target) => format!("{} gets SIGKILL", who(target)),
            Action::Enter(Phase::Grace) => format!(
                "grace: the app keeps running for {} (app-grace-delay)",
                fmt_duration(st.app_grace_delay)
            ),
            Action::TermDescendants => format!(
                "clean-up: leftover descendants get SIGTERM, SIGKILL after {}",
                fmt_duration(st.cleanup_timeout)
            ),
            Action::KillDescendants => "leftover descendants get SIGKILL".into(),
            Action::Exit { .. } => {
                "meshinit exits (descendants that survived SIGKILL are given up)".into()
            }
            _ => continue,
        };
        let _ = writeln!(s_, "  {:>7}  {line}", fmt_duration(timed.at));
    }
}

fn who(target: Target) -> &'static str {
    match target {
        Target::App => "the app",
        Target::Proxy => "kuma-dp",
    }
}

/// The idle drain's rule, where the drain begins.
fn idle_drain_line(cfg: &Config) -> String {
    let (Some(idle), Some(p)) = (cfg.settings.idle_drain, &cfg.proxy) else {
        return "the inbound is watched for idleness".into();
    };
    let admin = match p.admin.tcp_port {
        Some(port) => format!("{} or 127.0.0.1:{port}", p.admin.socket.display()),
        None => p.admin.socket.display().to_string(),
    };
    let what = if cfg.settings.drain_mode == DrainMode::Hold {
        "the app's stop begins, kuma-dp held"
    } else {
        "kuma-dp told to stop now"
    };
    format!(
        "  ends early ({what}) once the inbound has been idle for {} after at least {} (Envoy admin: {admin})",
        fmt_duration(idle.idle),
        fmt_duration(idle.min)
    )
}

/// The app's stop signal: the one meshinit received, as tini and dumb-init
/// pass Ctrl-C's INT through, unless `--app-stop-signal` was given.
fn stop_signal_text(cfg: &Config) -> String {
    let st = &cfg.settings;
    if st.pass_stop_signal {
        format!(
            "the stop signal meshinit received (SIG{} when the shutdown has another cause)",
            signal_name(st.app_stop_signal)
        )
    } else {
        format!("SIG{}", signal_name(st.app_stop_signal))
    }
}
