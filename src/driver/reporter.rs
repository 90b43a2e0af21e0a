//! What meshinit tells the outside: the status endpoint's snapshot and
//! metrics, sd_notify, and the log lines of the lifecycle's phases and
//! events down to the one-line summary at exit.
//!
//! It reports decisions; it makes none. The snapshot is published once per
//! turn of the event loop, after the lifecycle has taken every input, so
//! that a status request never sees a half-carried-out step.

use std::cell::RefCell;
use std::rc::Rc;

use nix::unistd::Pid;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::DriverError;
use crate::basics::escape::Escaped;
use crate::basics::parse::fmt_secs;
use crate::config::Config;
use crate::health::probe;
use crate::lifecycle::{Event, Lifecycle, Phase, Settings, Timeline};
use crate::mesh::envoy::Load;
use crate::report::notify::{self, Notifier};
use crate::report::snapshot::{self, Counters, PhaseEntered, ProbeStatus, Snapshot};
use crate::report::state_file::LastShutdown;

/// What the driver knows beyond the lifecycle that an event's log line
/// mentions.
pub(super) struct Context<'a> {
    pub settings: &'a Settings,
    /// Why the app could not be started, when it could not.
    pub spawn_error: Option<&'a DriverError>,
    pub idle: &'a super::idle::IdleWatch,
}

pub(super) struct Reporter {
    status: snapshot::Shared,
    notifier: Notifier,
    start: Instant,
    phase_since: Instant,
    healthy_at: Option<Instant>,
    /// STOPPING=1 was sent (once, when the first shutdown phase began).
    stopping_sent: bool,
    ready_notified: bool,
}

impl Reporter {
    /// The status snapshot before anything runs: the probes still unknown,
    /// the previous instance's shutdown from `--state-file`.
    pub fn new(cfg: &Config, env: &dyn Fn(&str) -> Option<String>, start: Instant) -> Reporter {
        let mut st = Snapshot::new();
        st.probes = cfg
            .probes
            .iter()
            .map(|p| ProbeStatus {
                name: p.kind.to_string(),
                ..ProbeStatus::default()
            })
            .collect();
        init_counters(&mut st.counters, cfg);
        st.counters.started = Some(start);
        Reporter {
            status: Rc::new(RefCell::new(st)),
            notifier: Notifier::from_env(env),
            start,
            phase_since: start,
            healthy_at: None,
            stopping_sent: false,
            ready_notified: false,
        }
    }

    /// The snapshot the status endpoint serves.
    pub fn shared(&self) -> snapshot::Shared {
        self.status.clone()
    }

    pub fn watchdog_interval(&self) -> Option<std::time::Duration> {
        self.notifier.watchdog_interval()
    }

    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// Sends to the service manager; a message it cannot take is dropped
    /// and counted, with a warning the first time.
    fn notify(&self, message: &str) {
        if self.notifier.send(message) {
            return;
        }
        let dropped = {
            let m = &mut self.status.borrow_mut().counters;
            m.notify_dropped += 1;
            m.notify_dropped
        };
        if dropped == 1 {
            warn!("the service manager does not take sd_notify messages (NOTIFY_SOCKET full or gone); dropping them (meshinit_notify_dropped_total)");
        }
    }

    fn now(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    /// Once per turn: what the lifecycle and the processes look like now.
    pub fn publish(&self, lc: &Lifecycle, app: Option<Pid>, proxy: Option<Pid>) {
        let mut st = self.status.borrow_mut();
        st.phase = lc.phase();
        st.ready = lc.is_ready();
        st.healthy = lc.is_healthy();
        st.ready_text = lc.ready_text();
        st.proxy_restarts = lc.proxy_restarts();
        st.app_pid = app.map(Pid::as_raw);
        st.proxy_pid = proxy.map(Pid::as_raw);
        st.counters.shutdown = lc.shutdown_spans();
        st.mesh_member = lc.settings().has_proxy.then(|| lc.in_mesh());
        st.out_reasons = lc.out_reasons();
        for (i, p) in st.probes.iter_mut().enumerate() {
            // Absent before a probe's first result, as `/status` says.
            if p.successes + p.failures > 0 {
                if let Some((passing, in_row)) = lc.probe_standing(i) {
                    p.passing = Some(passing);
                    p.failures_in_row = in_row;
                }
            }
        }
    }

    /// Time since the app first became healthy, for the proxy's log lines.
    pub fn since_healthy(&self) -> String {
        self.healthy_at
            .map(|t| fmt_secs(t.elapsed()))
            .unwrap_or_default()
    }

    /// A probe's run: what it said and the counts, for `/status` and
    /// `/metrics` (its standing comes from the lifecycle at `publish`).
    pub fn probe_result(&self, o: &probe::Outcome) {
        let mut st = self.status.borrow_mut();
        if let Some(p) = st.probes.get_mut(o.index) {
            p.record(o.ok, &o.detail);
        }
    }

    pub fn proxy_started(&self) {
        self.status.borrow_mut().counters.proxy_starts += 1;
    }

    /// One try of a call on Envoy's health checks: a failure is counted,
    /// and logged once per call (the retries follow every second).
    pub fn mesh_call(&self, o: &super::membership::Outcome) {
        let Some(path) = super::membership::admin_path(o.call) else {
            return;
        };
        match &o.result {
            Ok(()) if o.attempt > 1 => {
                info!(
                    call = path,
                    attempts = o.attempt,
                    "Envoy took the call after retries"
                )
            }
            Ok(()) => debug!(call = path, "Envoy took the call"),
            Err(e) => {
                self.status.borrow_mut().counters.mesh_call_failures += 1;
                if o.attempt == 1 {
                    warn!(call = path, error = %Escaped(e), "cannot call Envoy's admin API; retrying every second while the decision stands");
                } else {
                    debug!(call = path, attempt = o.attempt, error = %Escaped(e), "call on Envoy's admin API failed again");
                }
            }
        }
    }

    pub fn inbound_load(&self, load: Load) {
        self.status.borrow_mut().counters.inbound = Some(load);
    }

    pub fn enter(&mut self, phase: Phase, lc: &Lifecycle) {
        let now = Instant::now();
        let in_previous = now - self.phase_since;
        self.phase_since = now;
        {
            let mut st = self.status.borrow_mut();
            st.phases.push(PhaseEntered {
                phase,
                at_seconds: self.now().as_secs_f64(),
            });
        }
        info!(phase = phase.as_str(), elapsed = %fmt_secs(self.now()), previous_took = %fmt_secs(in_previous), "phase {}", phase.as_str());
        if phase.is_shutdown() && !self.stopping_sent {
            self.stopping_sent = true;
            self.notify("STOPPING=1");
        }
        let mut msg = format!("STATUS={}", phase.as_str());
        if phase.is_shutdown() && lc.shutdown_is_bounded() {
            // Keep systemd from cutting a long drain short: announce the
            // worst case that is still ahead. A plain init waiting for its
            // app after a stop signal announces nothing: systemd's own
            // TimeoutStopSec does the killing, as for tini.
            msg.push('\n');
            msg.push_str(&notify::extend_timeout(lc.shutdown_time_left(self.now())));
        }
        self.notify(&msg);
    }

    /// The service became ready, or stopped being ready.
    pub fn ready(&mut self, ready: bool) {
        if !ready {
            return;
        }
        self.status.borrow_mut().counters.ready(self.now());
        info!(elapsed = %fmt_secs(self.now()), "service running and ready");
        if !self.ready_notified {
            self.ready_notified = true;
            self.notify("READY=1\nSTATUS=running");
        }
    }

    pub fn event(&mut self, event: Event, cx: &Context) {
        self.record_event(event);
        match event {
            Event::ProbeChanged { probe, passing } => {
                let st = self.status.borrow();
                if let Some(p) = st.probes.get(probe) {
                    let result = Escaped(&p.detail);
                    if passing {
                        info!(probe = %p.name, result = %result, "probe passing");
                    } else {
                        warn!(probe = %p.name, result = %result, "probe failing");
                    }
                }
            }
            Event::AppHealthy => {
                self.healthy_at = Some(Instant::now());
                info!(elapsed = %fmt_secs(self.now()), "app healthy");
            }
            Event::AppUnhealthy => warn!("app unhealthy (liveness probes failing)"),
            Event::AppSpawnFailed { drains } => {
                let why = cx
                    .spawn_error
                    .map_or_else(|| "the app could not be started".to_string(), |e| e.to_string());
                if drains {
                    error!("{why}; draining and stopping kuma-dp")
                } else {
                    error!("{why}")
                }
            }
            Event::ProxyReady => {
                info!(since_app_healthy = %self.since_healthy(), "kuma-dp ready");
            }
            Event::ProxyRestarting { attempt, delay } => {
                warn!(attempt, max = cx.settings.proxy_max_restarts, delay = %fmt_secs(delay), "kuma-dp will be restarted");
            }
            Event::ProxyGaveUp { crashes } => error!(
                crashes,
                "kuma-dp keeps failing; giving up and shutting down"
            ),
            Event::ProxyReadyTimeout => {
                error!("kuma-dp did not become ready within --proxy-ready-timeout; shutting down")
            }
            Event::StartupTimeout => error!(
                "app not healthy within --startup-timeout; stopping it (kuma-dp is not started)"
            ),
            Event::DrainTimeout => warn!(
                "kuma-dp did not finish draining within --drain-timeout; telling it to stop now"
            ),
            Event::StopForwarded => info!(
                "plain init mode: stop signal passed to the app as it came (no escalation, as under tini and dumb-init)"
            ),
            Event::StopDuringShutdown => {
                info!("a shutdown is already under way; send the stop signal again to cut it short")
            }
            Event::DrainIdle { drained_for } => {
                let peak = cx.idle.peak();
                info!(
                    drained = %fmt_secs(drained_for),
                    peak_connections = peak.connections,
                    peak_requests = peak.requests,
                    "inbound idle after draining {} (at most {} connections, {} requests during the drain): {}",
                    fmt_secs(drained_for),
                    peak.connections,
                    peak.requests,
                    if cx.settings.drain_mode == crate::lifecycle::DrainMode::Hold {
                        "the app's stop begins (kuma-dp held)"
                    } else {
                        "telling kuma-dp to stop now"
                    }
                );
            }
            Event::IdleWatchUnavailable => {
                let error = cx.idle.last_error();
                warn!(error = %Escaped(error), "Envoy's inbound stats are unreadable");
                if cx.settings.drain_mode == crate::lifecycle::DrainMode::Hold {
                    warn!("cannot read Envoy's inbound stats; the inbound drain lasts --drain-timeout")
                } else {
                    warn!("cannot read Envoy's inbound stats; the drain lasts kuma-dp's drain time")
                }
            }
            Event::Escalated { stops } => {
                warn!(stops, "stop signal #{stops}: cutting the shutdown short")
            }
            Event::AppKilled { cut_short: false } => {
                warn!("app did not stop within --app-stop-timeout; sending SIGKILL")
            }
            Event::AppKilled { cut_short: true } => warn!(
                "app did not stop within {} of the second stop signal, which cut the stop short; sending SIGKILL",
                fmt_secs(cx.settings.kill_bound)
            ),
            Event::ProxyKilled => warn!("kuma-dp did not exit in time; sending SIGKILL"),
            Event::LeftMesh { reasons, again } => {
                if again {
                    info!(reason = reasons.as_str(), "left the mesh: {} (again, on the restarted kuma-dp)", reasons.as_str());
                } else {
                    info!(reason = reasons.as_str(), "left the mesh: {}", reasons.as_str());
                }
                self.notify(&format!(
                    "STATUS=running (out of the mesh: {})",
                    reasons.as_str()
                ));
            }
            Event::BackInMesh => {
                info!("back in the mesh");
                self.notify("STATUS=running");
            }
            Event::ProxySilent => warn!(
                hang_timeout = %cx.settings.proxy_hang_timeout.map(fmt_secs).unwrap_or_default(),
                "Envoy's admin API did not answer; kuma-dp is restarted if it stays silent for --proxy-hang-timeout"
            ),
            Event::ProxyAnswersAgain => info!("Envoy's admin API answers again"),
            Event::OperatorRefused(why) => {
                info!("operator's request not taken: {}", why.as_str())
            }
            Event::OutWaitEnded { end, waited } => info!(
                waited = %fmt_secs(waited),
                "operator's out: stopped waiting for the inbound side ({end:?})"
            ),
            Event::ProxyHung { silent_for } => error!(
                silent_for = %fmt_secs(silent_for),
                "Envoy's admin API has not answered for {}: kuma-dp hung; killing kuma-dp and Envoy (SIGKILL) to restart them",
                fmt_secs(silent_for)
            ),
            Event::DescendantsKilled => warn!("leftover descendants did not stop; sending SIGKILL"),
            Event::DescendantsLeft => error!("some descendants survived SIGKILL; exiting anyway"),
            Event::ProxyDnsWaiting => info!(
                dns = %cx.settings.proxy_dns.map(|a| a.to_string()).unwrap_or_default(),
                "kuma-dp ready; waiting for its DNS server to answer (--proxy-dns)"
            ),
            Event::ProxyDnsAnswers => info!(
                dns = %cx.settings.proxy_dns.map(|a| a.to_string()).unwrap_or_default(),
                "kuma-dp's DNS server answers"
            ),
            Event::ProxyDnsTimeout => error!(
                dns = %cx.settings.proxy_dns.map(|a| a.to_string()).unwrap_or_default(),
                "kuma-dp is ready but its DNS server did not answer within --proxy-ready-timeout; shutting down"
            ),
            Event::ProxyHeld { end } => info!(
                end = end.as_str(),
                "hold drain: the inbound drain is over ({}); kuma-dp stays up for the app's outbound calls and DNS until the app has exited",
                end.as_str()
            ),
            Event::HeldProxyExited { phase } => warn!(
                phase = phase.as_str(),
                "kuma-dp exited during the hold (its drain time ran out, or it crashed): the app's outbound calls and DNS no longer go through the mesh; the app's stop goes on"
            ),
        }
    }

    /// What an event changes in `/metrics`.
    fn record_event(&mut self, event: Event) {
        let m = &mut self.status.borrow_mut().counters;
        match event {
            Event::AppHealthy => m.healthy(self.start.elapsed()),
            Event::ProxyRestarting { .. } => m.proxy_restarts += 1,
            Event::ProxyHung { .. } => m.proxy_hangs += 1,
            Event::LeftMesh {
                reasons,
                again: false,
            } => {
                m.mesh_leaves_unhealthy += u64::from(reasons.unhealthy);
                m.mesh_leaves_operator += u64::from(reasons.operator);
            }
            _ => {}
        }
    }

    /// The last word: the shutdown's timeline kept for the next instance
    /// (`--state-file`) and the summary line.
    pub fn exit(
        &self,
        timeline: Option<Timeline>,
        code: i32,
        state_file: Option<&std::path::Path>,
    ) {
        if let (Some(t), Some(path)) = (&timeline, state_file) {
            if let Err(e) = LastShutdown::from_timeline(t).save(path) {
                warn!(file = %path.display(), error = %e, "cannot keep the shutdown timeline in --state-file");
            }
        }
        if let Some(t) = timeline {
            info!(
                "shutdown: drain {}, grace {}, app stop {}, total {}, exit {code}",
                fmt_secs(t.drain),
                fmt_secs(t.grace),
                fmt_secs(t.app_stop),
                fmt_secs(t.total)
            );
        } else {
            info!("exit {code}");
        }
    }
}

/// `/metrics`' starting point: the drain's kind and the previous
/// instance's shutdown from `--state-file`.
fn init_counters(m: &mut Counters, cfg: &Config) {
    if let Some(path) = &cfg.state_file {
        match LastShutdown::load(path) {
            Ok(last) => m.last = last,
            Err(e) => warn!(file = %path.display(), error = %Escaped(&e), "ignoring --state-file"),
        }
    }
}
