//! meshinit's own Prometheus metrics, served as `GET /metrics` on the
//! status endpoint and scraped through the mesh by kuma-dp (MeshMetric).
//!
//! The driver records plain values here as the lifecycle runs; the text is
//! rendered only when someone asks for it, so an idle meshinit does no work
//! for its metrics. The exposition format (text 0.0.4) is written by hand:
//! meshinit's handful of gauges and counters live in one thread's state,
//! which a registry of atomics would only duplicate (see BENCHMARKS.md).
//!
//! Every family carries a `# TYPE`: kuma-dp's MeshMetric path parses the
//! text with Prometheus' own parser and drops samples of untyped families.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use crate::lifecycle::{DrainEnd, Phase, ShutdownSpans, Span};
use crate::report::snapshot::Snapshot;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The shutdown phases that have a duration of their own, by their label
/// (as in the summary line: `shutdown: drain …, grace …, app stop …`).
fn shutdown_phases(spans: &ShutdownSpans) -> [(&'static str, Span); 3] {
    [
        ("drain", spans.drain),
        ("grace", spans.grace),
        ("app_stop", spans.app_stop),
    ]
}

/// The exposition text for the endpoint's current state.
pub fn render(st: &Snapshot) -> String {
    let m = &st.counters;
    let now = Instant::now();
    let mut out = Out::default();

    out.family(
        "meshinit_build_info",
        "gauge",
        "meshinit's version; always 1.",
        &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    let phases: Vec<_> = Phase::ALL
        .iter()
        .map(|p| (vec![("phase", p.as_str())], bool01(*p == st.phase)))
        .collect();
    out.family(
        "meshinit_phase",
        "gauge",
        "1 for the lifecycle phase meshinit is in, 0 for the others.",
        &phases,
    );
    out.gauge(
        "meshinit_app_up",
        "1 while the app's main process runs.",
        bool01(st.app_pid.is_some()),
    );
    out.gauge(
        "meshinit_proxy_up",
        "1 while kuma-dp runs.",
        bool01(st.proxy_pid.is_some()),
    );
    out.gauge(
        "meshinit_healthy",
        "1 while the app runs and every probe passes (with no probe: while the app runs).",
        bool01(st.healthy),
    );
    out.gauge(
        "meshinit_ready",
        "1 while the service may take traffic (running, app healthy, kuma-dp ready); as /ready.",
        bool01(st.ready),
    );

    // Probes: the label is the probe as /status names it, plus its index
    // so that two identical probes stay two series.
    let indexes: Vec<String> = (0..st.probes.len()).map(|i| i.to_string()).collect();
    let probe_labels = |i: usize| {
        vec![
            ("index", indexes[i].as_str()),
            ("probe", st.probes[i].name.as_str()),
        ]
    };
    let passing: Vec<_> = st
        .probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.passing.map(|ok| (probe_labels(i), bool01(ok))))
        .collect();
    out.family(
        "meshinit_probe_passing",
        "gauge",
        "1 while the probe passes (after its success threshold), 0 while it fails; absent before its first result.",
        &passing,
    );
    let in_row: Vec<_> = (0..st.probes.len())
        .map(|i| (probe_labels(i), f64::from(st.probes[i].failures_in_row)))
        .collect();
    out.family(
        "meshinit_probe_consecutive_failures",
        "gauge",
        "Failures of the probe in a row (0 after a success).",
        &in_row,
    );
    let mut checks = Vec::new();
    for (i, p) in st.probes.iter().enumerate() {
        let mut l = probe_labels(i);
        l.push(("result", "success"));
        checks.push((l, p.successes as f64));
        let mut l = probe_labels(i);
        l.push(("result", "failure"));
        checks.push((l, p.failures as f64));
    }
    out.family(
        "meshinit_probe_checks_total",
        "counter",
        "Probe runs by result.",
        &checks,
    );

    out.counter(
        "meshinit_proxy_starts_total",
        "kuma-dp processes started.",
        m.proxy_starts as f64,
    );
    out.counter(
        "meshinit_proxy_restarts_total",
        "Restarts of kuma-dp after it exited unexpectedly.",
        m.proxy_restarts as f64,
    );
    out.counter(
        "meshinit_proxy_hangs_total",
        "kuma-dp and Envoy SIGKILLed (and restarted) because Envoy's admin API did not answer for --proxy-hang-timeout.",
        m.proxy_hangs as f64,
    );
    if let Some(member) = st.mesh_member {
        out.gauge(
            "meshinit_mesh_member",
            "1 while the instance is in the mesh, 0 while it is out (app unhealthy with --on-unhealthy leave, or an operator's `ctl out`); absent without kuma-dp.",
            bool01(member),
        );
        out.family(
            "meshinit_mesh_leaves_total",
            "counter",
            "Times the instance left the mesh (Envoy's health checks failed), by reason.",
            &[
                (
                    vec![("reason", "unhealthy")],
                    m.mesh_leaves_unhealthy as f64,
                ),
                (vec![("reason", "operator")], m.mesh_leaves_operator as f64),
            ],
        );
        out.counter(
            "meshinit_mesh_call_failures_total",
            "Calls on Envoy's admin API (/healthcheck/fail, /healthcheck/ok) that failed; each is retried while the decision stands.",
            m.mesh_call_failures as f64,
        );
    }
    out.counter(
        "meshinit_log_lines_dropped_total",
        "Log lines meshinit could not write to stderr (a log reader gone, a full disk or pipe): dropped, never waited for.",
        crate::report::logging::dropped_lines() as f64,
    );
    out.counter(
        "meshinit_notify_dropped_total",
        "sd_notify messages that could not be sent (the service manager's socket full or gone): dropped, never waited for.",
        m.notify_dropped as f64,
    );
    if let Some(d) = m.healthy_after {
        out.gauge(
            "meshinit_startup_healthy_seconds",
            "Time from meshinit's start until the app was first healthy.",
            d.as_secs_f64(),
        );
    }
    if let Some(d) = m.ready_after {
        out.gauge(
            "meshinit_startup_ready_seconds",
            "Time from meshinit's start until the service was first ready.",
            d.as_secs_f64(),
        );
    }

    let since_start = m.started.map_or(Duration::ZERO, |t| now - t);
    let spans: Vec<_> = shutdown_phases(&m.shutdown)
        .iter()
        .filter(|(_, span)| span.start.is_some())
        .map(|(name, span)| {
            (
                vec![("phase", *name)],
                span.length(since_start).as_secs_f64(),
            )
        })
        .collect();
    out.family(
        "meshinit_shutdown_phase_seconds",
        "gauge",
        "This shutdown's phases (drain, grace, app_stop): growing while the phase runs, final once it ended.",
        &spans,
    );
    if let Some(end) = m.shutdown.drain_end() {
        out.family(
            "meshinit_drain_end",
            "gauge",
            "Why this shutdown's drain ended: 1 for the reason (idle, proxy_exit, timeout, wait, app_exit, cut_short).",
            &reasons(end),
        );
    }
    if let Some(load) = m.inbound {
        out.gauge(
            "meshinit_drain_inbound_connections",
            "Inbound connections Envoy held at the last read during the drain.",
            load.connections as f64,
        );
        out.gauge(
            "meshinit_drain_inbound_requests",
            "Inbound requests in flight at the last read during the drain.",
            load.requests as f64,
        );
    }

    if let Some(last) = &m.last {
        out.family(
            "meshinit_last_shutdown_phase_seconds",
            "gauge",
            "The previous instance's shutdown (--state-file), as its summary line: drain, grace, app_stop, total.",
            &[
                (vec![("phase", "drain")], last.drain),
                (vec![("phase", "grace")], last.grace),
                (vec![("phase", "app_stop")], last.app_stop),
                (vec![("phase", "total")], last.total),
            ],
        );
        if let Some(end) = last.drain_end {
            out.family(
                "meshinit_last_shutdown_drain_end",
                "gauge",
                "Why the previous instance's drain ended: 1 for the reason.",
                &reasons(end),
            );
        }
        out.gauge(
            "meshinit_last_shutdown_end_time_seconds",
            "When the previous instance's shutdown ended, in seconds since the Unix epoch.",
            last.ended_at,
        );
    }

    if let Some(rss) = resident_bytes() {
        out.gauge(
            "meshinit_resident_memory_bytes",
            "meshinit's own resident memory (VmRSS), read at the scrape.",
            rss as f64,
        );
    }
    out.0
}

fn reasons(end: DrainEnd) -> Vec<(Vec<(&'static str, &'static str)>, f64)> {
    DrainEnd::ALL
        .iter()
        .map(|r| (vec![("reason", r.as_str())], bool01(*r == end)))
        .collect()
}

fn bool01(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// VmRSS from /proc/self/statm (resident pages times the page size).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().map(|p| pages * p)
}

/// The text being written.
#[derive(Default)]
struct Out(String);

type Sample<'a> = (Vec<(&'a str, &'a str)>, f64);

impl Out {
    /// A family with its HELP and TYPE lines; nothing at all when it has no
    /// sample (a family without samples tells a reader nothing).
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[Sample<'_>]) {
        if samples.is_empty() {
            return;
        }
        let s = &mut self.0;
        let _ = writeln!(s, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(s, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            s.push_str(name);
            if !labels.is_empty() {
                s.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let _ = write!(s, "{k}=\"{}\"", escape_label(v));
                }
                s.push('}');
            }
            let _ = writeln!(s, " {}", fmt_value(*value));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help, &[(Vec::new(), value)]);
    }

    fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "counter", help, &[(Vec::new(), value)]);
    }
}

/// HELP text: backslash and line feed are escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and line feed are escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Go's ParseFloat spelling: `+Inf`, `-Inf`, `NaN`; Rust's Display writes
/// `inf`, which the format does not accept.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped_as_the_format_says() {
        assert_eq!(escape_label(r#"sh -c "a\b""#), r#"sh -c \"a\\b\""#);
        assert_eq!(escape_label("a\nb"), "a\\nb");
        // In HELP a double quote stays as it is.
        assert_eq!(escape_help("say \"x\"\\\n"), "say \"x\"\\\\\\n");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(f64::NAN), "NaN");
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(0.25), "0.25");
    }

    #[test]
    fn a_family_without_samples_is_left_out() {
        let mut out = Out::default();
        out.family("x", "gauge", "h", &[]);
        assert_eq!(out.0, "");
    }
}
