//! The `shutdown` section: what begins a shutdown, how kuma-dp is drained
//! (and when an idle inbound side may end the drain early), the platform's
//! budget and the exit-code map.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::parse;
use super::resolve::Resolver;
use crate::init::exit::ExitCodeMap;
use crate::lifecycle::{DrainMode, IdleDrain};

/// The shutdown section, typed.
pub(super) struct Shutdown {
    pub stop_signals: Vec<Signal>,
    pub drain_mode: DrainMode,
    pub drain_timeout: Duration,
    pub idle_drain: Option<IdleDrain>,
    pub budget: Option<Duration>,
    pub exit_code_map: ExitCodeMap,
}

/// `proxy_drain_time`: with a proxy, the drain time kuma-dp will use.
pub(super) fn section(r: &mut Resolver, proxy_drain_time: Option<Duration>) -> Shutdown {
    let stop_signals = r.list("stop-signals", parse::signal);
    for s in &stop_signals {
        if matches!(s, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGCHLD) {
            let o = r.origin("stop-signals");
            let message = format!("{} cannot be a stop signal", parse::signal_name(*s));
            r.problem("stop-signals", &o, message);
        }
    }
    if stop_signals.is_empty() {
        let o = r.origin("stop-signals");
        r.problem(
            "stop-signals",
            &o,
            "at least one stop signal is needed".into(),
        );
    }
    // `hold` is a SIGTERM drain too (the first of two SIGTERMs), so it is
    // carried as SIGTERM with a flag.
    let (drain_signal, hold) = r.value("drain-signal", |s| {
        if s.trim().eq_ignore_ascii_case("hold") {
            return Ok((Signal::SIGTERM, true));
        }
        parse::signal(s).and_then(|sig| match sig {
            Signal::SIGTERM | Signal::SIGUSR2 => Ok((sig, false)),
            _ => Err(format!("'{s}' is not TERM, USR2 or hold")),
        })
    });
    let until_idle = r.value("drain-until-idle", parse::boolean);
    let drain_min = r.value("drain-min", parse::duration);
    let drain_idle = r.value("drain-idle", parse::duration);
    // Only meaningful with a SIGTERM drain that Envoy's stats can follow.
    let idle_drain = (until_idle && proxy_drain_time.is_some() && drain_signal == Signal::SIGTERM)
        .then_some(IdleDrain {
            min: drain_min,
            idle: drain_idle,
        });
    let drain_mode = match drain_signal {
        _ if hold => DrainMode::Hold,
        Signal::SIGUSR2 => DrainMode::InboundUsr2 {
            // Without a proxy there is no drain; the value is never used.
            wait: proxy_drain_time.unwrap_or_default(),
        },
        _ => DrainMode::Term,
    };
    Shutdown {
        stop_signals,
        drain_mode,
        drain_timeout: r.value("drain-timeout", parse::duration),
        idle_drain,
        budget: r.typed("shutdown-budget", parse::duration),
        exit_code_map: exit_code_map(r),
    }
}

/// `--exit-code-map`, with one meaning per code: `143:0` and `143:1`
/// together would leave the exit code to the order of the flags, so they
/// are refused. The same mapping twice says one thing and is kept.
fn exit_code_map(r: &mut Resolver) -> ExitCodeMap {
    let map = r.list("exit-code-map", parse::exit_code_mapping);
    let mut seen: Vec<(i32, i32)> = Vec::new();
    for &(from, to) in &map {
        match seen.iter().find(|(f, _)| *f == from) {
            Some(&(_, first)) if first != to => {
                let o = r.origin("exit-code-map");
                let message = format!(
                    "exit code {from} is mapped twice, to {first} ('{from}:{first}') and to {to} ('{from}:{to}'); keep one"
                );
                r.problem("exit-code-map", &o, message);
            }
            Some(_) => {}
            None => seen.push((from, to)),
        }
    }
    ExitCodeMap(seen)
}
