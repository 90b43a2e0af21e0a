//! What meshinit reports, in one place: the snapshot the status endpoint
//! (`/ready`, `/live`, `/status`) and `/metrics` both read. The driver's
//! reporter publishes it once per turn of the event loop; the two readers
//! only format it, and neither imports the other.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use crate::lifecycle::{OutReasons, Phase, ShutdownSpans};
use crate::mesh::envoy::Load;
use crate::report::state_file::LastShutdown;

/// What the outside is told; the driver keeps it current.
#[derive(Debug)]
pub struct Snapshot {
    pub phase: Phase,
    pub ready: bool,
    /// `/ready`'s body, as the lifecycle words it (`Lifecycle::ready_text`).
    pub ready_text: &'static str,
    pub healthy: bool,
    pub app_pid: Option<i32>,
    pub proxy_pid: Option<i32>,
    /// kuma-dp crashes that still count towards `--proxy-max-restarts`.
    pub proxy_restarts: usize,
    /// In the mesh (`Some(true)`) or out of it; `None` without kuma-dp.
    pub mesh_member: Option<bool>,
    /// Why the instance is out of the mesh.
    pub out_reasons: OutReasons,
    /// Every probe, in the order of the configuration.
    pub probes: Vec<ProbeStatus>,
    /// Every phase entered, in order.
    pub phases: Vec<PhaseEntered>,
    /// What `/metrics` reports beyond the fields above.
    pub counters: Counters,
}

/// One probe as `/status` and `/metrics` show it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeStatus {
    /// The probe as the configuration names it (`http://127.0.0.1:80/health`).
    pub name: String,
    /// Passing after its thresholds; `None` before its first result.
    pub passing: Option<bool>,
    /// What the last run said (`200`, `connection refused`, the output).
    pub detail: String,
    pub successes: u64,
    pub failures: u64,
    /// Failures in a row (0 after a success).
    pub failures_in_row: u32,
}

/// A phase entered, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhaseEntered {
    pub phase: Phase,
    /// Seconds since meshinit started.
    pub at_seconds: f64,
}

/// The counters and times behind `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// kuma-dp processes spawned.
    pub proxy_starts: u64,
    /// Restarts of kuma-dp after it exited unexpectedly (every one, not
    /// only those in the restart window).
    pub proxy_restarts: u64,
    /// Time from meshinit's start until the app was first healthy / ready.
    pub healthy_after: Option<Duration>,
    pub ready_after: Option<Duration>,
    /// This shutdown as the lifecycle times it, in its time (since start).
    pub shutdown: ShutdownSpans,
    /// meshinit's start, to take the lifecycle's time at a scrape.
    pub started: Option<Instant>,
    /// Envoy's inbound load as last read during the drain.
    pub inbound: Option<Load>,
    /// The previous instance's shutdown, from `--state-file`.
    pub last: Option<LastShutdown>,
    /// sd_notify messages that could not be sent (the service manager's
    /// socket full or gone): dropped, never waited for.
    pub notify_dropped: u64,
    /// kuma-dp SIGKILLed because Envoy's admin API stopped answering.
    pub proxy_hangs: u64,
    /// Times the instance left the mesh, by reason (a re-apply on a
    /// restarted kuma-dp is not a new leave).
    pub mesh_leaves_unhealthy: u64,
    pub mesh_leaves_operator: u64,
    /// Calls on Envoy's health checks that failed (each is retried).
    pub mesh_call_failures: u64,
}

impl Counters {
    /// The app became healthy (only the first time counts).
    pub fn healthy(&mut self, since_start: Duration) {
        self.healthy_after.get_or_insert(since_start);
    }

    /// The service became ready (only the first time counts).
    pub fn ready(&mut self, since_start: Duration) {
        self.ready_after.get_or_insert(since_start);
    }
}

impl ProbeStatus {
    /// One run of the probe: what it said, and the counts.
    pub fn record(&mut self, ok: bool, detail: &str) {
        self.detail = detail.to_string();
        if ok {
            self.successes += 1;
        } else {
            self.failures += 1;
        }
    }
}

/// The snapshot as the event loop and the endpoint share it (one thread).
pub type Shared = Rc<RefCell<Snapshot>>;

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot {
            phase: Phase::Starting,
            ready: false,
            ready_text: Phase::Starting.as_str(),
            healthy: false,
            app_pid: None,
            proxy_pid: None,
            proxy_restarts: 0,
            mesh_member: None,
            out_reasons: OutReasons::default(),
            probes: Vec::new(),
            phases: vec![PhaseEntered {
                phase: Phase::Starting,
                at_seconds: 0.0,
            }],
            counters: Counters::default(),
        }
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}
