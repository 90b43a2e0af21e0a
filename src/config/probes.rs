//! The `probes` section: the checks that gate kuma-dp and watch the app,
//! from flags, env vars and `probes.checks`, with their timing; without any,
//! the Dataplane's first inbound is probed.

use std::time::Duration;

use super::layers::scalars;
use super::parse;
use super::resolve::Resolver;
use super::yaml::{Item, Node};
use super::{Origin, ProbeKind, ProbeSpec, Problem};
use crate::lifecycle::OnUnhealthy;
use crate::mesh::dataplane::Dataplane;

/// The probes section, typed.
pub(super) struct Probes {
    pub probes: Vec<ProbeSpec>,
    /// The probe was derived from the Dataplane's first inbound.
    pub default_probe: bool,
    pub startup_timeout: Duration,
    pub on_unhealthy: OnUnhealthy,
}

pub(super) fn section(
    r: &mut Resolver,
    checks: &[(Item, Origin)],
    dataplane: Option<&Dataplane>,
    has_proxy: bool,
) -> Probes {
    let base = ProbeSpec {
        kind: ProbeKind::Shell(String::new()),
        startup_period: r.value("probe-startup-period", parse::positive_duration),
        period: r.value("probe-period", parse::positive_duration),
        timeout: r.value("probe-timeout", parse::positive_duration),
        success_threshold: r.value("probe-success-threshold", parse::positive),
        failure_threshold: r.value("probe-failure-threshold", parse::positive),
    };
    let with = |kind| ProbeSpec {
        kind,
        ..base.clone()
    };
    let mut probes: Vec<ProbeSpec> = Vec::new();
    for u in r.list("probe-http", |s| parse::url(s, &["http"])) {
        probes.push(with(ProbeKind::Http(u)));
    }
    for (host, port) in r.list("probe-tcp", parse::host_port) {
        probes.push(with(ProbeKind::Tcp { host, port }));
    }
    let command = |s: &str| {
        if s.trim().is_empty() {
            Err("empty command".to_string())
        } else {
            Ok(s.to_string())
        }
    };
    for cmd in r.list("probe-exec", command) {
        probes.push(with(ProbeKind::Shell(cmd)));
    }
    for (item, origin) in checks {
        if let Some(p) = file_check(item, origin, &base, &mut r.problems) {
            probes.push(p);
        }
    }
    // No probe given: the app is healthy once the port kuma-dp forwards
    // the first inbound to accepts connections.
    let first_inbound = dataplane.and_then(|dp| dp.inbounds.first());
    let default_probe = probes.is_empty() && first_inbound.is_some();
    if let Some(first) = first_inbound.filter(|_| default_probe) {
        probes.push(with(ProbeKind::Tcp {
            host: first.service_address.clone(),
            port: first.service_port,
        }));
    }
    Probes {
        probes,
        default_probe,
        startup_timeout: r.value("startup-timeout", parse::duration),
        // Not given: out of the mesh while unhealthy when there is a mesh
        // (kuma-dp managed), report only when there is none.
        on_unhealthy: match r
            .typed(
                "on-unhealthy",
                parse::choice(&["leave", "none", "shutdown"]),
            )
            .as_deref()
        {
            Some("shutdown") => OnUnhealthy::Shutdown,
            Some("none") => OnUnhealthy::None,
            Some(_) => OnUnhealthy::Leave,
            None if has_proxy => OnUnhealthy::Leave,
            None => OnUnhealthy::None,
        },
    }
}

/// One entry of `probes.checks` in the file.
fn file_check(
    item: &Item,
    origin: &Origin,
    base: &ProbeSpec,
    problems: &mut Vec<Problem>,
) -> Option<ProbeSpec> {
    let path = match origin {
        Origin::File { path, .. } => path.clone(),
        _ => String::new(),
    };
    let Node::Map(entries) = &item.node else {
        problems.push(Problem {
            message: format!(
                "probes.checks: each check must be a mapping, not {}",
                item.node.kind()
            ),
            origin: Some(origin.clone()),
        });
        return None;
    };
    let mut spec = base.clone();
    let mut kind = None;
    let mut ok = true;
    for e in entries {
        let text = e.value.node.as_scalar();
        let parsed: Result<(), String> = match (e.key.as_str(), text) {
            ("http", Some(t)) => parse::url(t, &["http"]).map(|u| kind = Some(ProbeKind::Http(u))),
            ("tcp", Some(t)) => parse::host_port(t).map(|(host, port)| kind = Some(ProbeKind::Tcp { host, port })),
            ("exec", Some(t)) => {
                kind = Some(ProbeKind::Shell(t.to_string()));
                Ok(())
            }
            ("exec", None) => match scalars(&e.value) {
                Ok(argv) if !argv.is_empty() => {
                    kind = Some(ProbeKind::Argv(argv));
                    Ok(())
                }
                _ => Err("exec must be a command string (run by /bin/sh) or a non-empty list (run directly)".into()),
            },
            ("period", Some(t)) => parse::positive_duration(t).map(|d| spec.period = d),
            ("startup-period", Some(t)) => parse::positive_duration(t).map(|d| spec.startup_period = d),
            ("timeout", Some(t)) => parse::positive_duration(t).map(|d| spec.timeout = d),
            ("success-threshold", Some(t)) => parse::positive(t).map(|n| spec.success_threshold = n),
            ("failure-threshold", Some(t)) => parse::positive(t).map(|n| spec.failure_threshold = n),
            (k, _) if !PROBE_CHECK_KEYS.contains(&k) => Err(format!("unknown key '{k}' (known keys: {})", PROBE_CHECK_KEYS.join(", "))),
            (k, _) => Err(format!("{k} must be a single value, not {}", e.value.node.kind())),
        };
        if let Err(m) = parsed {
            ok = false;
            problems.push(Problem {
                message: format!("probes.checks: {m}"),
                origin: Some(Origin::File {
                    path: path.clone(),
                    line: e.line,
                }),
            });
        }
    }
    match kind {
        Some(k) if ok => Some(ProbeSpec { kind: k, ..spec }),
        Some(_) => None,
        None => {
            problems.push(Problem {
                message: "probes.checks: each check needs one of http, tcp or exec".into(),
                origin: Some(origin.clone()),
            });
            None
        }
    }
}

/// Keys of one entry of `probes.checks`.
const PROBE_CHECK_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "period",
    "startup-period",
    "timeout",
    "success-threshold",
    "failure-threshold",
];
