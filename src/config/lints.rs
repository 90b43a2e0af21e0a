//! Warnings: configurations that are valid but likely not what was meant.
//! Each lint is a pure pass over the built configuration, so it can be
//! tested without a machine and `check` shows the same ones a run logs.

use super::{parse, Config, ProbeKind};
use crate::lifecycle::{DrainMode, OnUnhealthy, StartOrder};

/// Every lint's warnings, in a stable order.
pub(super) fn all(config: &Config) -> Vec<String> {
    [
        unused_dataplane_vars,
        unprobed_service_ports,
        drain_timeout_below_kuma_drain,
        inbounds_without_service_probe,
        drain_min_not_below_kuma_drain,
        worst_case_over_budget,
        leave_without_a_mesh,
    ]
    .iter()
    .flat_map(|lint| lint(config))
    .collect()
}

/// The drain time kuma-dp will use, with a proxy.
fn kuma_drain_time(config: &Config) -> Option<std::time::Duration> {
    config.proxy.as_ref().map(|p| p.effective_drain_time())
}

fn unused_dataplane_vars(config: &Config) -> Vec<String> {
    let Some(proxy) = &config.proxy else {
        return Vec::new();
    };
    let (Some(dp), Some(path)) = (&proxy.dataplane, &proxy.dataplane_file) else {
        return Vec::new();
    };
    if dp.unused_vars.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "dataplane variables given but not used by {path}: {}",
        dp.unused_vars.join(", ")
    )]
}

/// An inbound whose servicePort no probe checks: kuma-dp may start while
/// that port cannot serve. An exec probe may check anything, so it counts.
fn unprobed_service_ports(config: &Config) -> Vec<String> {
    let Some(dp) = config.proxy.as_ref().and_then(|p| p.dataplane.as_ref()) else {
        return Vec::new();
    };
    let probes = &config.probes;
    if probes
        .iter()
        .any(|p| matches!(p.kind, ProbeKind::Shell(_) | ProbeKind::Argv(_)))
    {
        return Vec::new();
    }
    dp.inbounds
        .iter()
        .filter(|inbound| {
            !probes.iter().any(|p| match &p.kind {
                ProbeKind::Http(u) => u.port == inbound.service_port,
                ProbeKind::Tcp { port, .. } => *port == inbound.service_port,
                _ => false,
            })
        })
        .map(|inbound| format!(
            "inbound port {} (service '{}') forwards to servicePort {} which no probe checks; add --probe-tcp {}:{} or an HTTP probe on that port",
            inbound.port, inbound.service, inbound.service_port, inbound.service_address, inbound.service_port
        ))
        .collect()
}

fn drain_timeout_below_kuma_drain(config: &Config) -> Vec<String> {
    let s = &config.settings;
    match kuma_drain_time(config) {
        Some(kuma) if s.drain_mode == DrainMode::Term && s.drain_timeout <= kuma => vec![format!(
            "drain-timeout {} is not larger than kuma-dp's drain time {}: kuma-dp will be told to stop before its drain ends; raise --drain-timeout",
            parse::fmt_duration(s.drain_timeout),
            parse::fmt_duration(kuma)
        )],
        _ => Vec::new(),
    }
}

/// Direct mode registers the Dataplane when kuma-dp connects, and kuma-cp
/// counts an inbound without a serviceProbe as healthy at once: measured,
/// about a second before Envoy listens on it.
fn inbounds_without_service_probe(config: &Config) -> Vec<String> {
    // With redirection it is an error (`tproxy::unprobed_inbounds`).
    if config.redirection().is_some() {
        return Vec::new();
    }
    let unprobed: Vec<String> = config
        .proxy
        .iter()
        .flat_map(|p| p.dataplane.iter())
        .flat_map(|dp| dp.inbounds.iter())
        .filter(|i| !i.has_service_probe)
        .map(|i| i.port.to_string())
        .collect();
    if unprobed.is_empty() {
        return Vec::new();
    }
    let why = match config.settings.start_order {
        StartOrder::ProxyFirst => "with --start-order proxy-first kuma-dp registers the Dataplane before the app is ready, so clients may be sent to an app that cannot serve yet",
        StartOrder::AppFirst => "kuma-cp counts such an inbound healthy as soon as kuma-dp connects, about a second before Envoy listens on it, so a new instance can fail requests while it joins",
    };
    vec![format!(
        "no serviceProbe on inbound port(s) {}: {why}; add `serviceProbe: {{tcp: {{}}}}` to each inbound",
        unprobed.join(", ")
    )]
}

fn drain_min_not_below_kuma_drain(config: &Config) -> Vec<String> {
    match (config.settings.idle_drain, kuma_drain_time(config)) {
        (Some(idle), Some(kuma)) if idle.min >= kuma => vec![format!(
            "--drain-min {} is not shorter than kuma-dp's drain time {}: the drain cannot end early once the traffic has gone",
            parse::fmt_duration(idle.min),
            parse::fmt_duration(kuma)
        )],
        _ => Vec::new(),
    }
}

fn worst_case_over_budget(config: &Config) -> Vec<String> {
    match config.budget_verdict() {
        Some(verdict) if !verdict.fits() => vec![verdict.to_string()],
        _ => Vec::new(),
    }
}

/// `--on-unhealthy leave` without kuma-dp: there is no mesh to leave, so
/// failing probes are only reported (as with `none`).
fn leave_without_a_mesh(config: &Config) -> Vec<String> {
    if config.proxy.is_some() || config.settings.on_unhealthy != OnUnhealthy::Leave {
        return Vec::new();
    }
    vec!["--on-unhealthy leave without a Dataplane: there is no mesh to leave, so failing probes are only reported (as with none)".to_string()]
}
