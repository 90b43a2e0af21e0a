//! `GET /metrics` on the status endpoint (issue 17), with the real binary and
//! the fake kuma-dp: the text is read by a real Prometheus parser (the
//! `prometheus_client` package from PyPI, which scripts/install-test-tools installs),
//! the series follow the lifecycle, the drain's series match the summary
//! line, and `--state-file` hands the shutdown on to the next instance.

mod common;
mod scenario;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use scenario::*;

const T: Duration = Duration::from_secs(20);

/// Reads exposition text on stdin with prometheus_client's text parser and
/// prints one JSON line per sample: [family type, sample name, labels, value].
const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        v = s.value
        print(json.dumps([fam.type, s.name, s.labels, None if math.isnan(v) else v]))
"#;

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    kind: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses exposition text with the real parser; panics on what it refuses.
fn parse(py: &PathBuf, text: &str) -> Vec<Sample> {
    let mut child = Command::new(py)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "prometheus_client refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Sample {
                kind: v[0].as_str().unwrap().into(),
                name: v[1].as_str().unwrap().into(),
                labels: v[2]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: v[3].as_f64().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of the one sample with this name and these labels (among others).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} is ambiguous: {found:?}"
    );
    found.first().map(|s| s.value)
}

/// GET /metrics with its raw response: (status, content type, body).
fn scrape(port: u16) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n")
        .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))?
        .to_string();
    Some((code, ctype, body.to_string()))
}

/// Scrapes and parses until `ok` accepts the samples.
fn scrape_until(
    py: &PathBuf,
    port: u16,
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> (String, Vec<Sample>) {
    poll(what, T, || {
        let (code, ctype, body) = scrape(port)?;
        assert_eq!(code, 200, "{body}");
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        let samples = parse(py, &body);
        ok(&samples).then_some((body, samples))
    })
}

#[test]
fn metrics_follow_the_lifecycle_and_hand_the_shutdown_to_the_next_instance() {
    let Some(py) = test_python("prometheus_client.parser") else {
        return;
    };
    let state = temp_dir("metrics-state");
    let state_file = state.join("last-shutdown");
    let (s, port) = Scenario::new("metrics").listening_app().with_status();
    let inbound = format!("127.0.0.1:21011:{}", s.app_port);
    // An exec probe whose name carries a double quote and a backslash: the
    // label value must come back through the parser as /status spells it.
    let probe = r#"test "$(printf '\\')" = '\'"#;
    let s = s
        .opt(&[
            "--probe-exec",
            probe,
            "--probe-startup-period",
            "50ms",
            "--kuma-dp-arg=--drain-time=20s",
            "--drain-min",
            "500ms",
            "--drain-idle",
            "200ms",
            "--app-grace-delay",
            "800ms",
            "--state-file",
            state_file.to_str().unwrap(),
        ])
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .env("FAKE_KUMA_DP_INBOUND", &inbound)
        .env("FAKE_KUMA_DP_DRAIN_BUSY_MS", "1000");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);

    let (text, m) = scrape_until(&py, port, "ready in /metrics", |m| {
        value(m, "meshinit_ready", &[]) == Some(1.0)
    });
    let phase = |m: &[Sample], ph: &str| value(m, "meshinit_phase", &[("phase", ph)]);
    assert_eq!(phase(&m, "running"), Some(1.0), "{text}");
    assert_eq!(
        m.iter()
            .filter(|s| s.name == "meshinit_phase")
            .map(|s| s.value)
            .sum::<f64>(),
        1.0,
        "one phase at a time: {text}"
    );
    assert_eq!(value(&m, "meshinit_app_up", &[]), Some(1.0));
    assert_eq!(value(&m, "meshinit_proxy_up", &[]), Some(1.0));
    assert_eq!(value(&m, "meshinit_proxy_starts_total", &[]), Some(1.0));
    assert_eq!(value(&m, "meshinit_proxy_restarts_total", &[]), Some(0.0));
    let starts = m
        .iter()
        .find(|s| s.name == "meshinit_proxy_starts_total")
        .unwrap();
    assert_eq!(starts.kind, "counter");
    let status = status_json(port);
    let name = status["probes"][0]["probe"].as_str().unwrap();
    assert!(name.contains('"') && name.contains('\\'), "{name}");
    let labels = [("probe", name), ("index", "0")];
    assert_eq!(
        value(&m, "meshinit_probe_passing", &labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&m, "meshinit_probe_consecutive_failures", &labels),
        Some(0.0)
    );
    let ok_runs = value(
        &m,
        "meshinit_probe_checks_total",
        &[("probe", name), ("result", "success")],
    );
    assert!(ok_runs >= Some(1.0), "{text}");
    let healthy = value(&m, "meshinit_startup_healthy_seconds", &[]).expect("healthy time");
    let ready = value(&m, "meshinit_startup_ready_seconds", &[]).expect("ready time");
    assert!(
        0.0 < healthy && healthy <= ready && ready < 10.0,
        "{healthy} {ready}"
    );
    let rss = value(&m, "meshinit_resident_memory_bytes", &[]).unwrap();
    assert!(rss > 100_000.0 && rss < 100e6, "{rss}");
    assert_eq!(
        value(
            &m,
            "meshinit_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(
        value(&m, "meshinit_shutdown_phase_seconds", &[("phase", "drain")]).is_none(),
        "no shutdown yet: {text}"
    );

    // The drain: its duration grows, Envoy's inbound load is reported.
    p.signal(Signal::SIGTERM);
    let (text, m) = scrape_until(&py, port, "a busy inbound during the drain", |m| {
        phase(m, "draining") == Some(1.0)
            && value(m, "meshinit_drain_inbound_connections", &[]) == Some(1.0)
    });
    assert_eq!(
        value(&m, "meshinit_drain_inbound_requests", &[]),
        Some(1.0),
        "{text}"
    );
    let early = value(&m, "meshinit_shutdown_phase_seconds", &[("phase", "drain")]).unwrap();
    assert!(
        value(&m, "meshinit_drain_end", &[("reason", "idle")]).is_none(),
        "not ended yet"
    );
    assert_eq!(value(&m, "meshinit_ready", &[]), Some(0.0));

    // The grace period: kuma-dp is gone, the drain's length is final.
    let (text, m) = scrape_until(&py, port, "the grace phase", |m| {
        phase(m, "grace") == Some(1.0)
    });
    let drain = value(&m, "meshinit_shutdown_phase_seconds", &[("phase", "drain")]).unwrap();
    assert!(
        drain > early && drain >= 0.5,
        "drain {drain}, earlier {early}: {text}"
    );
    assert_eq!(
        value(&m, "meshinit_drain_end", &[("reason", "idle")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&m, "meshinit_drain_end", &[("reason", "proxy_exit")]),
        Some(0.0)
    );
    assert_eq!(value(&m, "meshinit_proxy_up", &[]), Some(0.0));
    assert_eq!(
        value(&m, "meshinit_drain_inbound_connections", &[]),
        Some(0.0),
        "idle at the end"
    );
    let (_, m2) = scrape_until(&py, port, "the grace phase to grow", |m| {
        value(m, "meshinit_shutdown_phase_seconds", &[("phase", "grace")]).is_some_and(|g| g > 0.1)
    });
    assert_eq!(
        value(
            &m2,
            "meshinit_shutdown_phase_seconds",
            &[("phase", "drain")]
        ),
        Some(drain),
        "a finished phase no longer grows"
    );

    let (code, _) = wait_exit_at(&mut p, T);
    assert_eq!(code.code(), Some(143), "{}", p.output());
    let sum = summary(&p);
    assert!(
        (sum.drain - drain).abs() < 0.1,
        "summary line drain {} vs /metrics {drain}",
        sum.drain
    );

    // The next instance on this state file reports that shutdown.
    let next_port = free_port();
    let mut cmd = Command::new(meshinit_bin());
    cmd.env_remove("RUST_LOG")
        .args(["--status-listen", &format!("127.0.0.1:{next_port}")])
        .args(["--state-file", state_file.to_str().unwrap(), "--"])
        .arg(test_app_bin())
        .args(["--record", state.join("app2.log").to_str().unwrap()]);
    let mut q = Proc::start(cmd);
    let (text, m) = scrape_until(&py, next_port, "the last shutdown", |m| {
        value(
            m,
            "meshinit_last_shutdown_phase_seconds",
            &[("phase", "drain")],
        )
        .is_some()
    });
    for (phase, want) in [
        ("drain", sum.drain),
        ("grace", sum.grace),
        ("app_stop", sum.app_stop),
        ("total", sum.total),
    ] {
        let got = value(
            &m,
            "meshinit_last_shutdown_phase_seconds",
            &[("phase", phase)],
        )
        .unwrap();
        // The summary line rounds to 10 ms.
        assert!(
            (got - want).abs() <= 0.0051,
            "{phase}: {got} vs summary {want}: {text}"
        );
    }
    assert_eq!(
        value(
            &m,
            "meshinit_last_shutdown_drain_end",
            &[("reason", "idle")]
        ),
        Some(1.0)
    );
    let ended = value(&m, "meshinit_last_shutdown_end_time_seconds", &[]).unwrap();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(unix_now - 60.0 < ended && ended <= unix_now, "{ended}");
    // No proxy: its series say so rather than vanish.
    assert_eq!(value(&m, "meshinit_proxy_up", &[]), Some(0.0));
    assert_eq!(value(&m, "meshinit_proxy_starts_total", &[]), Some(0.0));
    q.signal(Signal::SIGTERM);
    q.wait_exit(T);
}

#[test]
fn metrics_without_probes_or_proxy_leave_their_families_out() {
    let (s, port) = Scenario::bare("metrics-plain").with_status();
    let mut p = s.start();
    wait_port(&format!("127.0.0.1:{port}"), T);
    let (code, ctype, body) = poll("/metrics", T, || scrape(port));
    assert_eq!(code, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    // Without probes or a proxy the probe families are left out, not empty.
    assert!(!body.contains("meshinit_probe_"), "{body}");
    assert!(body.contains("# TYPE meshinit_phase gauge\n"), "{body}");
    assert!(body.ends_with('\n'), "the format ends every line");
    assert_eq!(get(port, "/nope").map(|r| r.0), Some(404));
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}

#[test]
fn with_no_probe_a_running_app_is_healthy_as_ready_says() {
    // Issue 20, item 12: /ready was 200 while /status said "healthy": false and
    // meshinit_healthy 0. With no probe the running app counts as healthy (as Kubernetes
    // counts a container without a readiness probe as ready); once it exits, it is not.
    let (s, port) = Scenario::bare("healthy-no-probe").with_status();
    let mut p = s.start();
    poll("/ready 200", T, || {
        get(port, "/ready").filter(|r| r.0 == 200)
    });
    let status = status_json(port);
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["healthy"], true, "{status}");
    let (_, _, body) = scrape(port).expect("/metrics");
    assert!(body.contains("\nmeshinit_healthy 1\n"), "{body}");
    assert!(body.contains("\nmeshinit_ready 1\n"), "{body}");
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
}

#[test]
fn serving_metrics_adds_no_work_while_nobody_scrapes() {
    let (s, port) = Scenario::bare("metrics-idle").with_status();
    let mut p = s.start();
    // One scrape first: whatever it set up must not keep running after it.
    let (code, _, _) = poll("/metrics", T, || scrape(port));
    assert_eq!(code, 200);
    let used = idle_cpu_ticks(p.pid());
    assert!(
        used <= 1,
        "meshinit used {used} clock ticks while nobody scraped"
    );
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}
