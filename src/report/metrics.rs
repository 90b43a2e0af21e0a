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
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use crate::lifecycle::{Phase, Timeline};
use crate::mesh::envoy::Load;
use crate::report::status::State;

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// The inbound side was idle after `--drain-min` (`--drain-until-idle`).
    Idle,
    /// kuma-dp exited on its own after its drain time.
    ProxyExit,
    /// `--drain-timeout` passed first.
    Timeout,
    /// `--drain-signal USR2`: the fixed inbound drain wait passed.
    Wait,
    /// A second stop signal cut the shutdown short.
    CutShort,
}

impl DrainEnd {
    const ALL: [DrainEnd; 5] = [
        DrainEnd::Idle,
        DrainEnd::ProxyExit,
        DrainEnd::Timeout,
        DrainEnd::Wait,
        DrainEnd::CutShort,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainEnd::Idle => "idle",
            DrainEnd::ProxyExit => "proxy_exit",
            DrainEnd::Timeout => "timeout",
            DrainEnd::Wait => "wait",
            DrainEnd::CutShort => "cut_short",
        }
    }

    fn parse(s: &str) -> Option<DrainEnd> {
        DrainEnd::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The shutdown phases that have a duration of their own, as in the
/// summary line (`shutdown: drain …, grace …, app stop …`).
const SHUTDOWN_PHASES: [(Phase, &str); 3] = [
    (Phase::Draining, "drain"),
    (Phase::Grace, "grace"),
    (Phase::Stopping, "app_stop"),
];

/// A shutdown phase's start and end.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: Option<Instant>,
    end: Option<Instant>,
}

/// The previous meshinit's shutdown, kept in `--state-file` across a
/// restart: a dying instance's kuma-dp is gone before a scrape could read
/// how long its drain took, so the next instance reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct LastShutdown {
    pub drain: f64,
    pub grace: f64,
    pub app_stop: f64,
    pub total: f64,
    pub drain_end: Option<DrainEnd>,
    /// When it ended, in seconds since the Unix epoch.
    pub ended_at: f64,
}

impl LastShutdown {
    /// The record of a shutdown that ends now.
    pub fn from_timeline(t: &Timeline, drain_end: Option<DrainEnd>) -> LastShutdown {
        let ended_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        LastShutdown {
            drain: t.drain.as_secs_f64(),
            grace: t.grace.as_secs_f64(),
            app_stop: t.app_stop.as_secs_f64(),
            total: t.total.as_secs_f64(),
            drain_end,
            ended_at,
        }
    }

    fn to_text(&self) -> String {
        let mut s =
            String::from("# meshinit's last shutdown (--state-file); rewritten at each exit\n");
        let _ = writeln!(s, "drain_seconds {}", self.drain);
        let _ = writeln!(s, "grace_seconds {}", self.grace);
        let _ = writeln!(s, "app_stop_seconds {}", self.app_stop);
        let _ = writeln!(s, "total_seconds {}", self.total);
        if let Some(r) = self.drain_end {
            let _ = writeln!(s, "drain_end {}", r.as_str());
        }
        let _ = writeln!(s, "end_time_seconds {}", self.ended_at);
        s
    }

    fn from_text(text: &str) -> Result<LastShutdown, String> {
        let mut last = LastShutdown {
            drain: f64::NAN,
            grace: f64::NAN,
            app_stop: f64::NAN,
            total: f64::NAN,
            drain_end: None,
            ended_at: f64::NAN,
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {}: expected 'key value'", n + 1))?;
            if key == "drain_end" {
                last.drain_end = Some(
                    DrainEnd::parse(value)
                        .ok_or_else(|| format!("line {}: unknown drain end '{value}'", n + 1))?,
                );
                continue;
            }
            let v: f64 = value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("line {}: '{value}' is not a duration", n + 1))?;
            match key {
                "drain_seconds" => last.drain = v,
                "grace_seconds" => last.grace = v,
                "app_stop_seconds" => last.app_stop = v,
                "total_seconds" => last.total = v,
                "end_time_seconds" => last.ended_at = v,
                _ => return Err(format!("line {}: unknown key '{key}'", n + 1)),
            }
        }
        let all = [
            last.drain,
            last.grace,
            last.app_stop,
            last.total,
            last.ended_at,
        ];
        if all.iter().any(|v| v.is_nan()) {
            return Err("incomplete record".into());
        }
        Ok(last)
    }

    /// Reads the record; `Ok(None)` when there is none yet. Only a regular
    /// file is read (a symbolic link is not followed), and at most
    /// `MAX_FILE_BYTES` of it: a `/dev/zero` put there cannot grow meshinit.
    pub fn load(path: &Path) -> Result<Option<LastShutdown>, String> {
        match crate::config::read_regular(path, crate::config::Follow::No) {
            Ok(text) => LastShutdown::from_text(&text).map(Some),
            Err(crate::config::ReadError::Missing(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the record through a temporary file and a rename, so a crash
    /// mid-write leaves the previous record rather than half of one.
    ///
    /// Only a regular file (or nothing) at `path` is replaced: what is
    /// there is looked at with `lstat` just before the rename, and a device
    /// node, FIFO, socket, directory or symbolic link put there since the
    /// start is left alone and reported. The temporary file is created new
    /// (`O_CREAT|O_EXCL`, which follows no link) under a name of this
    /// process's own, so nothing already in the directory is written
    /// through. What remains is the moment between that `lstat` and the
    /// rename, which no system call closes; keep the state file in a
    /// directory only meshinit's user can write.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        refuse_non_regular(path)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        // Left by an earlier meshinit with the same pid (a container's pid 1
        // is always 1): it is ours to remove, and only a regular file is.
        if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
            let _ = std::fs::remove_file(&tmp);
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        let renamed = file
            .write_all(self.to_text().as_bytes())
            .and_then(|()| refuse_non_regular(path))
            .and_then(|()| std::fs::rename(&tmp, path));
        if renamed.is_err() {
            // Created above by this process: it is ours to remove.
            let _ = std::fs::remove_file(&tmp);
        }
        renamed
    }
}

/// An error unless `path` is a regular file or nothing.
fn refuse_non_regular(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(std::io::Error::other(format!(
            "'{}' is {}, not a regular file; it is left as it is",
            path.display(),
            crate::config::FileKind::of(m.file_type()).described()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The values behind `/metrics`, kept current by the driver.
#[derive(Debug, Default)]
pub struct Metrics {
    /// kuma-dp processes spawned.
    pub proxy_starts: u64,
    /// Restarts of kuma-dp after it exited unexpectedly.
    pub proxy_restarts: u64,
    /// Per probe: (successes, failures, failures in a row).
    probes: Vec<(u64, u64, u32)>,
    /// Time from meshinit's start until the app was first healthy / ready.
    healthy_after: Option<Duration>,
    ready_after: Option<Duration>,
    spans: [Span; 3],
    /// Set by the decision that ends the drain; when the drain ends with
    /// none set, kuma-dp exited on its own (or the USR2 wait passed).
    drain_end: Option<DrainEnd>,
    /// `--drain-signal USR2`: the drain is a fixed wait.
    pub drain_is_wait: bool,
    /// Envoy's inbound load as last read during the drain.
    pub inbound: Option<Load>,
    /// The previous instance's shutdown, from `--state-file`.
    pub last: Option<LastShutdown>,
    /// sd_notify messages that could not be sent (the service manager's
    /// socket full or gone): dropped, never waited for.
    pub notify_dropped: u64,
}

impl Metrics {
    /// A probe's result; `in_row` is its current run of failures.
    pub fn probe_result(&mut self, index: usize, ok: bool, in_row: u32) {
        if self.probes.len() <= index {
            self.probes.resize(index + 1, (0, 0, 0));
        }
        let p = &mut self.probes[index];
        if ok {
            p.0 += 1;
        } else {
            p.1 += 1;
        }
        p.2 = in_row;
    }

    /// The app became healthy (only the first time counts).
    pub fn healthy(&mut self, since_start: Duration) {
        self.healthy_after.get_or_insert(since_start);
    }

    /// The service became ready (only the first time counts).
    pub fn ready(&mut self, since_start: Duration) {
        self.ready_after.get_or_insert(since_start);
    }

    /// A phase began: the shutdown phase left ends, the one entered starts.
    pub fn enter(&mut self, phase: Phase) {
        let now = Instant::now();
        for (i, (p, _)) in SHUTDOWN_PHASES.iter().enumerate() {
            let span = &mut self.spans[i];
            if *p == phase {
                span.start.get_or_insert(now);
            } else if span.start.is_some() && span.end.is_none() {
                span.end = Some(now);
                if *p == Phase::Draining && self.drain_end.is_none() {
                    self.drain_end = Some(if self.drain_is_wait {
                        DrainEnd::Wait
                    } else {
                        DrainEnd::ProxyExit
                    });
                }
            }
        }
    }

    /// The decision that ends a running drain (the first one counts).
    pub fn drain_ending(&mut self, reason: DrainEnd) {
        let drain = &self.spans[0];
        if drain.start.is_some() && drain.end.is_none() && self.drain_end.is_none() {
            self.drain_end = Some(reason);
        }
    }

    /// Why the drain ended, once it has.
    pub fn drain_end(&self) -> Option<DrainEnd> {
        self.spans[0].end.and(self.drain_end)
    }
}

/// The exposition text for the endpoint's current state.
pub fn render(st: &State) -> String {
    let m = &st.metrics;
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
            ("probe", st.probes[i].0.as_str()),
        ]
    };
    let counts = |i: usize| m.probes.get(i).copied().unwrap_or_default();
    let passing: Vec<_> = st
        .probes
        .iter()
        .enumerate()
        .filter_map(|(i, (_, ok, _))| ok.map(|ok| (probe_labels(i), bool01(ok))))
        .collect();
    out.family(
        "meshinit_probe_passing",
        "gauge",
        "1 while the probe passes (after its success threshold), 0 while it fails; absent before its first result.",
        &passing,
    );
    let in_row: Vec<_> = (0..st.probes.len())
        .map(|i| (probe_labels(i), f64::from(counts(i).2)))
        .collect();
    out.family(
        "meshinit_probe_consecutive_failures",
        "gauge",
        "Failures of the probe in a row (0 after a success).",
        &in_row,
    );
    let mut checks = Vec::new();
    for i in 0..st.probes.len() {
        let (ok, failed, _) = counts(i);
        let mut l = probe_labels(i);
        l.push(("result", "success"));
        checks.push((l, ok as f64));
        let mut l = probe_labels(i);
        l.push(("result", "failure"));
        checks.push((l, failed as f64));
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

    let spans: Vec<_> = SHUTDOWN_PHASES
        .iter()
        .zip(&m.spans)
        .filter_map(|((_, name), span)| {
            let start = span.start?;
            let end = span.end.unwrap_or(now);
            Some((vec![("phase", *name)], (end - start).as_secs_f64()))
        })
        .collect();
    out.family(
        "meshinit_shutdown_phase_seconds",
        "gauge",
        "This shutdown's phases (drain, grace, app_stop): growing while the phase runs, final once it ended.",
        &spans,
    );
    if let Some(end) = m.drain_end() {
        out.family(
            "meshinit_drain_end",
            "gauge",
            "Why this shutdown's drain ended: 1 for the reason (idle, proxy_exit, timeout, wait, cut_short).",
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

    #[test]
    fn last_shutdown_record_survives_a_round_trip_and_bad_ones_are_refused() {
        let last = LastShutdown {
            drain: 4.0125,
            grace: 1.0,
            app_stop: 0.003,
            total: 5.0155,
            drain_end: Some(DrainEnd::Idle),
            ended_at: 1_764_500_000.5,
        };
        assert_eq!(LastShutdown::from_text(&last.to_text()), Ok(last));
        assert!(LastShutdown::from_text("drain_seconds 1\n").is_err());
        assert!(LastShutdown::from_text("drain_seconds -1\n").is_err());
        assert!(LastShutdown::from_text("bogus 1\n").is_err());
    }

    #[test]
    fn drain_end_is_the_first_decision_or_the_proxy_exit() {
        let mut m = Metrics::default();
        m.drain_ending(DrainEnd::Idle); // no drain yet: ignored
        m.enter(Phase::Running);
        m.enter(Phase::Draining);
        assert_eq!(m.drain_end(), None, "still draining");
        m.drain_ending(DrainEnd::Timeout);
        m.drain_ending(DrainEnd::CutShort);
        m.enter(Phase::Grace);
        assert_eq!(m.drain_end(), Some(DrainEnd::Timeout));

        let mut m = Metrics::default();
        m.enter(Phase::Draining);
        m.enter(Phase::Stopping);
        assert_eq!(m.drain_end(), Some(DrainEnd::ProxyExit));
        let mut m = Metrics {
            drain_is_wait: true,
            ..Metrics::default()
        };
        m.enter(Phase::Draining);
        m.enter(Phase::Grace);
        assert_eq!(m.drain_end(), Some(DrainEnd::Wait));
    }
}
