//! `meshinit check`: the effective configuration, what would be started,
//! and the shutdown timeline, printed without starting anything.

use std::fmt::Write;

use crate::config::parse::{fmt_duration, signal_name};
use crate::config::{Config, ProbeKind};
use crate::lifecycle::DrainMode;

/// The report, as printed to stdout.
pub fn render(cfg: &Config) -> String {
    let mut s = String::new();
    let s_ = &mut s;
    let _ = writeln!(s_, "meshinit check: the configuration is valid\n");
    let _ = writeln!(s_, "Effective configuration:");
    let width = cfg
        .effective
        .iter()
        .map(|(k, _, _)| k.len())
        .max()
        .unwrap_or(0);
    for (key, value, origin) in &cfg.effective {
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

    let st = &cfg.settings;
    let _ = writeln!(
        s_,
        "\nShutdown on {} (worst case):",
        cfg.stop_signals
            .iter()
            .map(|s| signal_name(*s))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    let mut n = 1;
    if cfg.proxy.is_some() {
        match st.drain_mode {
            DrainMode::Term => {
                let _ = writeln!(s_, "  {n}. drain: kuma-dp gets SIGTERM and drains; wait for it to exit, at most {} (drain-timeout), then a second SIGTERM and SIGKILL {} later", fmt_duration(st.drain_timeout), fmt_duration(st.kill_bound));
                if let (Some(idle), Some(p)) = (st.idle_drain, &cfg.proxy) {
                    let admin = match p.admin.tcp_port {
                        Some(port) => format!("{} or 127.0.0.1:{port}", p.admin.socket.display()),
                        None => p.admin.socket.display().to_string(),
                    };
                    let _ = writeln!(
                        s_,
                        "     ends early (kuma-dp told to stop now) once the inbound has been idle for {} after at least {} (Envoy admin: {admin})",
                        fmt_duration(idle.idle),
                        fmt_duration(idle.min)
                    );
                }
            }
            DrainMode::InboundUsr2 { wait } => {
                let _ = writeln!(
                    s_,
                    "  {n}. drain: kuma-dp gets SIGUSR2 (inbound listeners only); wait {}",
                    fmt_duration(wait.min(st.drain_timeout))
                );
            }
        }
        n += 1;
    }
    let _ = writeln!(
        s_,
        "  {n}. grace: the app keeps running for {} (app-grace-delay)",
        fmt_duration(st.app_grace_delay)
    );
    n += 1;
    let stop_signal = if st.pass_stop_signal {
        // As tini and dumb-init: Ctrl-C's INT reaches the app as INT.
        format!(
            "the stop signal meshinit received (SIG{} when the shutdown has another cause)",
            signal_name(st.app_stop_signal)
        )
    } else {
        format!("SIG{}", signal_name(st.app_stop_signal))
    };
    // Plain init mode keeps tini's and dumb-init's stop semantics (see
    // `Lifecycle::shutdown_is_bounded`).
    let plain = !st.has_proxy;
    let kill = if plain && !st.app_stop_timeout_given {
        format!(
            "meshinit waits for it, as tini and dumb-init do (the platform's stop timeout does the killing); SIGKILL after {} (app-stop-timeout) only when meshinit stops the app itself (startup timeout, failed liveness) or --app-stop-timeout is given",
            fmt_duration(st.app_stop_timeout)
        )
    } else {
        format!(
            "SIGKILL after {} (app-stop-timeout)",
            fmt_duration(st.app_stop_timeout)
        )
    };
    let _ = writeln!(s_, "  {n}. stop: the app gets {stop_signal}, {kill}");
    if plain {
        let _ = writeln!(
            s_,
            "     every further stop signal is passed to the app as it came; none cuts the stop short or escalates (plain init mode)"
        );
    }
    n += 1;
    if matches!(st.drain_mode, DrainMode::InboundUsr2 { .. }) && cfg.proxy.is_some() {
        let _ = writeln!(
            s_,
            "  {n}. kuma-dp gets SIGTERM last (already drained, it exits at once; a second SIGTERM after {}, SIGKILL after {})",
            fmt_duration(st.kill_bound),
            fmt_duration(st.kill_bound.saturating_mul(2))
        );
        n += 1;
    }
    let _ = writeln!(
        s_,
        "  {n}. clean-up: leftover descendants get SIGTERM, SIGKILL after {}; survivors are given up {} later",
        fmt_duration(st.cleanup_timeout),
        fmt_duration(st.kill_bound)
    );
    let worst = st.worst_case_shutdown();
    if plain && !st.app_stop_timeout_given {
        let _ = writeln!(
            s_,
            "  worst case: {} when meshinit stops the app itself; after a stop signal, as long as the app takes",
            fmt_duration(worst)
        );
    } else {
        let _ = writeln!(s_, "  worst case: {}", fmt_duration(worst));
    }
    if let Some(budget) = cfg.shutdown_budget {
        let verdict = if worst > budget { "EXCEEDED" } else { "fits" };
        let _ = writeln!(
            s_,
            "  shutdown budget: {} ({verdict})",
            fmt_duration(budget)
        );
    }
    if !cfg.warnings.is_empty() {
        let _ = writeln!(s_, "\nWarnings:");
        for w in &cfg.warnings {
            let _ = writeln!(s_, "  - {w}");
        }
    }
    s
}

/// Joins argv for display, quoting what a shell would split.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else if a.chars().any(char::is_control) {
                // $'...' as bash writes it, so a newline or an escape sequence
                // in an argument cannot forge a line of the log or the plan.
                let mut q = String::from("$'");
                for c in a.chars() {
                    match c {
                        '\\' | '\'' => {
                            q.push('\\');
                            q.push(c);
                        }
                        '\n' => q.push_str("\\n"),
                        '\t' => q.push_str("\\t"),
                        c if c.is_control() => q.push_str(&format!("\\x{:02x}", u32::from(c))),
                        c => q.push(c),
                    }
                }
                q.push('\'');
                q
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
