//! The driver: owns the clock, the processes and the signals, and carries
//! out what the lifecycle decides.
//!
//! It sleeps until a signal arrives (SIGCHLD included), a probe or the
//! proxy-ready watcher reports, or the lifecycle's next deadline passes.
//! There is no polling loop: an idle supervisor without probes uses no CPU.
//!
//! This module is the event loop and the one place that waits on children
//! (`reap`); kuma-dp's process (`proxy`), the drain's idle watch (`idle`)
//! and everything reported outside (`reporter`) have their own.

pub mod control;
pub mod ctl;
mod dns;
mod hang;
mod idle;
pub mod install;
mod membership;
mod proxy;
mod reporter;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::basics::escape::Escaped;
use crate::basics::parse::signal_name;
use crate::config::{Config, ForwardTo};
use crate::health::probe::{self, ExecWaiters};
use crate::init::exit;
use crate::init::signals::{self, Signals};
use crate::init::spawn;
use crate::lifecycle::{
    Action, Event, ExitReason, Input, Lifecycle, Operator, OutWaitEnd, ProbeMode, Target, Timeline,
};
use crate::report::status;
use dns::DnsWatch;
use hang::HangWatch;
use idle::IdleWatch;
use membership::MeshCalls;
use proxy::ProxyRunner;
use reporter::Reporter;

/// Failures of the driver itself (not of the app).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot start the app '{program}': {source}")]
    SpawnApp {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot read signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen on the control socket: {0}")]
    Control(std::io::Error),
}

impl DriverError {
    pub fn exit_code(&self) -> i32 {
        match self {
            // The command vanished or lost its execute bit since the
            // configuration was checked, or --app-user cannot execute it:
            // a shell's 127/126.
            DriverError::SpawnApp { source, .. } => {
                exit::for_exec_error(source).unwrap_or(exit::EX_OSERR)
            }
            DriverError::Signals(_) | DriverError::Control(_) => exit::EX_OSERR,
        }
    }
}

/// Everything the event loop works with.
struct Driver {
    cfg: Config,
    lc: Lifecycle,
    start: Instant,
    app_pid: Option<Pid>,
    /// `None` in plain init mode (no Dataplane given).
    proxy: Option<ProxyRunner>,
    idle: IdleWatch,
    /// The calls that take the instance out of the mesh and back.
    mesh_calls: MeshCalls,
    /// The check that Envoy's admin API answers.
    hang: HangWatch,
    /// The check that kuma-dp's DNS server answers (`--proxy-dns`).
    dns: DnsWatch,
    /// `meshinit ctl` requests being answered.
    ctl: CtlRequests,
    reporter: Reporter,
    execs: ExecWaiters,
    probe_tx: mpsc::UnboundedSender<probe::Outcome>,
    probe_tasks: Vec<JoinHandle<()>>,
    queue: VecDeque<Input>,
    /// Orphans are re-parented to meshinit (PID 1 or child subreaper), so
    /// "no child left" means "no descendant left".
    reaps_orphans: bool,
    /// The app was handed the terminal meshinit runs in the foreground of:
    /// job control (Ctrl-Z, `fg`) applies to the pair as to one shell job.
    job_control: bool,
    /// meshinit stopped itself after passing a job-control signal on (see
    /// `stop_with_the_app`): the app's stop that follows is not a new one.
    stopped_with_app: bool,
    /// Why the app could not be started; decides the exit code once the
    /// lifecycle has stopped whatever already ran.
    spawn_error: Option<DriverError>,
    /// The reaper's buffers, reused by every pass.
    reaped: crate::init::reaper::Reaped,
}

/// Whether this configuration needs nothing but signals and timers: no
/// probe, no kuma-dp, no status endpoint, no control socket. meshinit
/// then runs without an async runtime ([`run_plain`]), as catatonit and
/// tini do.
pub fn is_plain(cfg: &Config, listener: bool) -> bool {
    cfg.proxy.is_none() && cfg.probes.is_empty() && !listener && cfg.control_socket.is_none()
}

/// Runs the supervised pair to the end and returns meshinit's exit code.
/// Must run inside a `LocalSet` on a current-thread runtime.
pub async fn run(
    mut cfg: Config,
    listener: Option<tokio::net::TcpListener>,
    control: Option<control::ControlServer>,
    env: &dyn Fn(&str) -> Option<String>,
    reaps_orphans: bool,
) -> Result<i32, DriverError> {
    let signals = Signals::open()
        .and_then(Signals::into_async)
        .map_err(DriverError::Signals)?;
    // Started before the app: the socket was bound at start-up, and
    // registering it with the runtime fails only for want of resources.
    // Dropped when `run` returns, which removes the socket file.
    let mut control = control
        .map(control::ControlServer::start)
        .transpose()
        .map_err(DriverError::Control)?;
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (inbound_tx, mut inbound_rx) = mpsc::unbounded_channel();
    let (mesh_tx, mut mesh_rx) = mpsc::unbounded_channel();
    let (hang_tx, mut hang_rx) = mpsc::unbounded_channel();
    let (dns_tx, mut dns_rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let reporter = Reporter::new(&cfg, env, now);
    let _status_task = listener.map(|l| {
        info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "status endpoint listening");
        tokio::task::spawn_local(status::serve(
            l,
            reporter.shared(),
            cfg.status_request_timeout,
        ))
    });
    let watchdog = reporter.watchdog_interval();
    // The runner owns kuma-dp's configuration from here on: its work dir
    // may still move to a fresh name. `ready_tx` itself stays open without
    // a proxy, so the loop never sees the channel close.
    let proxy = cfg
        .proxy
        .take()
        .map(|p| ProxyRunner::new(p, ready_tx.clone()));
    let mut d = Driver::new(
        cfg,
        now,
        reporter,
        proxy,
        Channels {
            inbound: inbound_tx,
            probe: probe_tx,
            mesh: mesh_tx,
            hang: hang_tx,
            dns: dns_tx,
        },
        reaps_orphans,
    );
    if let Some(code) = d.begin()? {
        return Ok(code);
    }
    let mut next_watchdog = watchdog.and_then(|w| Instant::now().checked_add(w));
    loop {
        // A deadline beyond what the clock can hold is never reached: no
        // timer (durations are capped at a day, so this is a safety net).
        let deadline = d.lc.next_deadline().and_then(|t| d.start.checked_add(t));
        tokio::select! {
            got = signals.recv() => d.on_signals(&got),
            Some(outcome) = probe_rx.recv() => d.on_probe(outcome),
            Some(generation) = ready_rx.recv() => {
                if d.proxy.as_ref().is_some_and(|p| p.is_current(generation)) {
                    d.queue.push_back(Input::ProxyReady);
                }
            }
            Some(reading) = inbound_rx.recv() => d.on_inbound_reading(reading),
            Some(outcome) = mesh_rx.recv() => d.reporter.mesh_call(&outcome),
            Some((generation, answered)) = hang_rx.recv() => {
                if d.proxy.as_ref().is_some_and(|p| p.is_current(generation)) {
                    d.queue.push_back(if answered { Input::ProxyAnswered } else { Input::ProxyUnanswered });
                }
            }
            Some(generation) = dns_rx.recv() => {
                if d.proxy.as_ref().is_some_and(|p| p.is_current(generation)) {
                    d.queue.push_back(Input::ProxyDnsAnswered);
                }
            }
            Some((request, responder)) = recv_control(control.as_mut()) => d.control(request, responder),
            () = sleep_until_opt(deadline) => d.queue.push_back(Input::Tick),
            () = sleep_until_opt(next_watchdog) => {
                d.reporter.watchdog();
                next_watchdog = watchdog.and_then(|w| Instant::now().checked_add(w));
            }
        }
        if let Some(code) = d.pump()? {
            return Ok(code);
        }
        d.settle_control();
    }
}

/// [`run`] for a configuration that [`is_plain`]: the same driver and
/// lifecycle, waiting in poll(2) on the signalfd with the lifecycle's next
/// deadline (or the watchdog's) as the timeout, and no async runtime. A
/// forwarded signal or a reaped orphan then costs a poll, a read and the
/// lifecycle's bookkeeping, not a turn of tokio's scheduler and reactor
/// (2.9 k instructions each against tini's 110; see BENCHMARKS.md).
pub fn run_plain(
    cfg: Config,
    env: &dyn Fn(&str) -> Option<String>,
    reaps_orphans: bool,
) -> Result<i32, DriverError> {
    let signals = Signals::open().map_err(DriverError::Signals)?;
    // Nothing sends on these without probes or kuma-dp (the driver only
    // needs a sender to hand out).
    let (probe, _) = mpsc::unbounded_channel();
    let (inbound, _) = mpsc::unbounded_channel();
    let (mesh, _) = mpsc::unbounded_channel();
    let (hang, _) = mpsc::unbounded_channel();
    let (dns, _) = mpsc::unbounded_channel();
    let now = Instant::now();
    let reporter = Reporter::new(&cfg, env, now);
    let watchdog = reporter.watchdog_interval();
    let mut d = Driver::new(
        cfg,
        now,
        reporter,
        None,
        Channels {
            inbound,
            probe,
            mesh,
            hang,
            dns,
        },
        reaps_orphans,
    );
    if let Some(code) = d.begin()? {
        return Ok(code);
    }
    let mut next_watchdog = watchdog.and_then(|w| Instant::now().checked_add(w));
    let mut got = Vec::new();
    loop {
        let deadline = d.lc.next_deadline().and_then(|t| d.start.checked_add(t));
        let wake = match (deadline, next_watchdog) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The clock is read only when there is a deadline: an idle
        // supervisor without one sleeps in poll(2) until a signal comes.
        let timeout = wake.map(|t| t.saturating_duration_since(Instant::now()));
        let pending = match signals.wait(timeout) {
            Ok(pending) => pending,
            Err(e) => {
                // As `AsyncSignals::recv`: never fail once the app runs;
                // reap (a child's exit may hide behind the error) after a
                // pause, so that an error that persists cannot spin.
                warn!(error = %e, "cannot read signals; reaping, and trying again shortly");
                std::thread::sleep(signals::READ_ERROR_PAUSE);
                got.push(Signal::SIGCHLD as i32);
                false
            }
        };
        if pending {
            if let Err(e) = signals.read_pending(&mut got) {
                warn!(error = %e, "cannot read signals; reaping, and trying again shortly");
                std::thread::sleep(signals::READ_ERROR_PAUSE);
                got.push(Signal::SIGCHLD as i32);
            }
        }
        if !got.is_empty() {
            d.on_signals(&got);
            got.clear();
        }
        if wake.is_some() {
            let now = Instant::now();
            if deadline.is_some_and(|t| t <= now) {
                d.queue.push_back(Input::Tick);
            }
            if next_watchdog.is_some_and(|t| t <= now) {
                d.reporter.watchdog();
                next_watchdog = watchdog.and_then(|w| now.checked_add(w));
            }
        }
        if let Some(code) = d.pump()? {
            return Ok(code);
        }
    }
}

/// The next control request; never, without a control socket.
async fn recv_control(
    control: Option<&mut control::Control>,
) -> Option<(control::Request, control::Responder)> {
    match control {
        Some(c) => c.requests.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The operator's requests (`meshinit ctl out|in`) in the middle of being
/// answered.
#[derive(Default)]
struct CtlRequests {
    /// The request the current turn took, and when it came.
    current: Option<(Operator, control::Responder, Instant)>,
    /// `out` requests waiting for the inbound side to go idle.
    waiting: Vec<(control::Responder, Instant)>,
}

/// `ctl out`'s line once the instance is out (or is to be, once kuma-dp is
/// ready).
fn out_line(lc: &Lifecycle) -> String {
    let reasons = lc.out_reasons().as_str();
    if lc.is_proxy_serving() {
        format!("out of the mesh: {reasons}")
    } else {
        format!("out of the mesh: {reasons} (applied once kuma-dp is ready)")
    }
}

/// What a waiting `ctl out` is told when its wait ends: the exit status
/// and the line (an error line unless 0).
fn out_wait_answer(
    end: OutWaitEnd,
    waited: Duration,
    load: Option<crate::mesh::envoy::Load>,
    lc: &Lifecycle,
) -> (i32, String) {
    let took = crate::basics::parse::fmt_secs(waited);
    match end {
        OutWaitEnd::Idle => (
            0,
            format!("out of the mesh; inbound idle after {took}"),
        ),
        OutWaitEnd::NotServing => (
            0,
            format!("{}; kuma-dp is not serving, so nothing flows in", out_line(lc)),
        ),
        OutWaitEnd::NoIdleRule => (
            0,
            "out of the mesh; not waiting: --drain-until-idle is off, so there is no idle rule"
                .to_string(),
        ),
        OutWaitEnd::Timeout => {
            let still = load.map_or_else(
                || "still busy".to_string(),
                |l| {
                    format!(
                        "still {} connections, {} requests",
                        l.connections, l.requests
                    )
                },
            );
            (
                exit::EX_TEMPFAIL,
                format!("out of the mesh, but the inbound side is not idle after {took} (--drain-timeout): {still}"),
            )
        }
        OutWaitEnd::Unreadable => (
            exit::EX_TEMPFAIL,
            format!("out of the mesh, but Envoy's inbound stats cannot be read (after {took}): whether it is idle is unknown"),
        ),
        OutWaitEnd::Cancelled => (
            exit::EX_UNAVAILABLE,
            format!("an `in` came after {took}: the wait ended"),
        ),
        OutWaitEnd::ShuttingDown => (
            exit::EX_UNAVAILABLE,
            format!("a shutdown began after {took}: its drain takes over"),
        ),
    }
}

/// Where the driver's tasks send what they find.
struct Channels {
    inbound: mpsc::UnboundedSender<idle::Reading>,
    probe: mpsc::UnboundedSender<probe::Outcome>,
    mesh: mpsc::UnboundedSender<membership::Outcome>,
    hang: mpsc::UnboundedSender<hang::Reading>,
    dns: mpsc::UnboundedSender<dns::Reading>,
}

impl Driver {
    fn new(
        cfg: Config,
        start: Instant,
        reporter: Reporter,
        proxy: Option<ProxyRunner>,
        channels: Channels,
        reaps_orphans: bool,
    ) -> Driver {
        let probe_tx = channels.probe;
        Driver {
            lc: Lifecycle::new(cfg.settings.clone()),
            proxy,
            idle: IdleWatch::new(channels.inbound),
            mesh_calls: MeshCalls::new(channels.mesh),
            hang: HangWatch::new(channels.hang),
            dns: DnsWatch::new(channels.dns),
            ctl: CtlRequests::default(),
            reporter,
            cfg,
            start,
            app_pid: None,
            execs: Rc::new(RefCell::new(HashMap::new())),
            probe_tx,
            probe_tasks: Vec::new(),
            queue: VecDeque::new(),
            reaps_orphans,
            job_control: false,
            stopped_with_app: false,
            spawn_error: None,
            reaped: crate::init::reaper::Reaped::default(),
        }
    }

    /// Starts the lifecycle (which spawns the app); the exit code if it
    /// ended at once.
    fn begin(&mut self) -> Result<Option<i32>, DriverError> {
        self.queue.push_back(Input::Start);
        if let Some(code) = self.pump()? {
            return Ok(Some(code));
        }
        // Start-up is over (the configuration is read, the app spawned):
        // what it alone needed need not stay resident while meshinit
        // supervises.
        crate::init::memory::release_startup_pages();
        Ok(None)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Feeds every queued input, and everything they lead to, to the
    /// lifecycle in order; returns the exit code once it says to exit.
    fn pump(&mut self) -> Result<Option<i32>, DriverError> {
        while let Some(input) = self.queue.pop_front() {
            let actions = self.lc.step(self.now(), input);
            for action in actions {
                if let Some(code) = self.execute(action)? {
                    return Ok(Some(code));
                }
            }
        }
        self.reporter
            .publish(&self.lc, self.app_pid, self.proxy_pid());
        Ok(None)
    }

    /// A request from `meshinit ctl` (`--control-socket`). `status` is
    /// answered from the snapshot the last turn published; `out` and `in`
    /// go to the lifecycle as the operator's input, and are answered from
    /// what it decides: a refusal, or (for an `out` that waits) the end of
    /// the wait, both as events, else the membership after the step
    /// ([`Driver::settle_control`]).
    fn control(&mut self, request: control::Request, responder: control::Responder) {
        let op = match request {
            control::Request::Status => {
                let lines = status::text(&self.reporter.shared().borrow(), self.proxy.is_some());
                for line in lines {
                    responder.line(line);
                }
                responder.finish(0);
                return;
            }
            control::Request::Out { wait } => Operator::Out { wait },
            control::Request::In => Operator::In,
        };
        // Answered (or dropped, which tells the client) before the next one.
        self.settle_control();
        self.ctl.current = Some((op, responder, Instant::now()));
        self.queue.push_back(Input::Operator(op));
    }

    /// After the turn that took an operator's request: the answer, unless
    /// an event already gave it; an `out` still waiting for the inbound
    /// side joins those waiting.
    fn settle_control(&mut self) {
        let Some((op, responder, asked)) = self.ctl.current.take() else {
            return;
        };
        let reasons = self.lc.out_reasons();
        match op {
            Operator::In if reasons.any() => {
                responder.line(format!(
                    "still out of the mesh: {} (the operator's hold is lifted)",
                    reasons.as_str()
                ));
                responder.finish(0);
            }
            Operator::In => {
                responder.line("in the mesh");
                responder.finish(0);
            }
            Operator::Out { wait: true } if self.lc.waits_for_idle_out() => {
                responder.line(format!(
                    "out of the mesh; waiting for the inbound side to go idle (at most {})",
                    crate::basics::parse::fmt_duration(self.lc.settings().drain_timeout)
                ));
                self.ctl.waiting.push((responder, asked));
            }
            Operator::Out { .. } => {
                responder.line(out_line(&self.lc));
                responder.finish(0);
            }
        }
    }

    /// A decision about an operator's request, as the lifecycle took it.
    fn control_event(&mut self, event: &Event) {
        match *event {
            Event::OperatorRefused(why) => {
                if let Some((_, responder, _)) = self.ctl.current.take() {
                    responder.fail(exit::EX_UNAVAILABLE, why.as_str());
                }
            }
            Event::OutWaitEnded { end, waited } => {
                // The request of this very turn (ended at once), or those waiting.
                let mut answer: Vec<control::Responder> = Vec::new();
                if let Some((Operator::Out { wait: true }, responder, _)) = self
                    .ctl
                    .current
                    .take_if(|(op, _, _)| *op == Operator::Out { wait: true })
                {
                    answer.push(responder);
                }
                answer.extend(self.ctl.waiting.drain(..).map(|(r, _)| r));
                let load = self.idle.last();
                for responder in answer {
                    let (code, text) = out_wait_answer(end, waited, load, &self.lc);
                    if code == 0 {
                        responder.line(text);
                        responder.finish(0);
                    } else {
                        responder.fail(code, &text);
                    }
                }
            }
            _ => {}
        }
    }

    fn proxy_pid(&self) -> Option<Pid> {
        self.proxy.as_ref().and_then(ProxyRunner::pid)
    }

    fn on_signals(&mut self, got: &[i32]) {
        let mut reaped = false;
        for &signo in got {
            if signo == Signal::SIGCHLD as i32 {
                reaped = true;
                continue;
            }
            if signals::inherited().is_ignored(signo) {
                // Ignored when meshinit started (nohup's HUP, a background
                // job's INT and QUIT): ignored still, as the app ignores it.
                debug!(signal = %signals::name(signo), "signal ignored, as it was when meshinit started");
                continue;
            }
            if self.cfg.stop_signals.iter().any(|s| *s as i32 == signo) {
                info!(signal = %signals::name(signo), phase = self.lc.phase().as_str(), "stop signal received");
                if let Ok(signal) = Signal::try_from(signo) {
                    self.queue.push_back(Input::Stop(signal));
                }
            } else if signals::is_forwarded(signo) {
                if signo == Signal::SIGCONT as i32 {
                    self.give_terminal_back();
                }
                self.forward(signo);
                if signals::is_job_control_stop(signo) {
                    self.stop_with_the_app(signo);
                }
            } else {
                debug!(signal = %signals::name(signo), "signal ignored");
            }
        }
        if reaped {
            self.reap();
        }
    }

    fn descendants(&self) -> Vec<i32> {
        crate::init::descendants::of(std::process::id() as i32)
    }

    /// meshinit's descendants still alive (zombies not yet reaped count).
    /// As PID 1 or a child subreaper every live descendant has a living
    /// ancestor among meshinit's children, so "no child at all" answers
    /// without walking /proc.
    fn descendants_left(&self) -> Vec<i32> {
        if self.reaps_orphans && !crate::init::reaper::has_children() {
            Vec::new()
        } else {
            self.descendants()
        }
    }

    /// `fg` resumed meshinit (SIGCONT) in the foreground of its terminal:
    /// the app's group gets the terminal again before it is resumed, as a
    /// shell does for a job. After `bg` meshinit is not in the foreground
    /// and takes nothing (its blocked SIGTTOU would let it steal the
    /// terminal from the shell).
    fn give_terminal_back(&self) {
        let Some(app) = self.app_pid.filter(|_| self.job_control) else {
            return;
        };
        let stdin = std::io::stdin();
        let ours = nix::unistd::tcgetpgrp(&stdin).is_ok_and(|pg| pg == nix::unistd::getpgrp());
        if ours {
            let r = nix::unistd::tcsetpgrp(&stdin, app);
            debug!(ok = r.is_ok(), "terminal handed back to the app");
        }
    }

    /// After passing SIGTSTP, SIGTTIN or SIGTTOU on to the app, meshinit
    /// stops itself, as dumb-init does whether or not there is a terminal:
    /// a shell (or a script with `set -m`) that suspends meshinit's job sees
    /// it stopped, and its SIGCONT resumes both (SIGCONT is forwarded). As
    /// PID 1 the kernel ignores a stop meshinit sends itself, so it does not
    /// try. Execution resumes right here on SIGCONT; the app's stop report
    /// is collected then, so that the terminal path (`reap`) does not take
    /// it for a new Ctrl-Z and stop meshinit a second time.
    fn stop_with_the_app(&mut self, signo: i32) {
        if self.app_pid.is_none() || std::process::id() == 1 {
            return;
        }
        info!(signal = %signals::name(signo), "job control: signal passed to the app; stopping meshinit too until SIGCONT");
        self.stopped_with_app = true;
        let _ = kill(nix::unistd::getpid(), Signal::SIGSTOP);
        self.reap();
        self.stopped_with_app = false;
    }

    /// Passes a signal on to the app; never to kuma-dp.
    fn forward(&self, signo: i32) {
        let Some(pid) = self.app_pid else {
            debug!(signal = %signals::name(signo), "no app to forward to");
            return;
        };
        let target = match self.cfg.app.forward_to {
            ForwardTo::Group => -pid.as_raw(),
            ForwardTo::Process => pid.as_raw(),
        };
        // SAFETY: kill(2) with a plain pid and signal number; real-time
        // signals have no nix::Signal variant, hence the raw call.
        let rc = unsafe { nix::libc::kill(target, signo) };
        debug!(signal = %signals::name(signo), pid = target, ok = rc == 0, "forwarded");
    }

    /// Collects every exited child and turns it into lifecycle inputs.
    fn reap(&mut self) {
        // The buffers are kept from one pass to the next (a reaped orphan
        // then allocates nothing).
        let mut reaped = std::mem::take(&mut self.reaped);
        crate::init::reaper::reap(&mut reaped);
        for &(pid, status) in &reaped.exited {
            if Some(pid) == self.app_pid {
                info!(pid = pid.as_raw(), status = %status, "app exited");
                self.app_pid = None;
                self.queue.push_back(Input::AppExited(status));
            } else if self.proxy.as_mut().is_some_and(|p| p.reaped(pid)) {
                let level_warn = !self.lc.phase().is_shutdown();
                if level_warn {
                    warn!(pid = pid.as_raw(), status = %status, "kuma-dp exited");
                } else {
                    info!(pid = pid.as_raw(), status = %status, "kuma-dp exited");
                }
                self.queue.push_back(Input::ProxyExited(status));
            } else if let Some(waiter) = self.exec_waiter(pid) {
                let _ = waiter.send(status);
            } else {
                debug!(pid = pid.as_raw(), status = %status, "reaped orphan");
            }
        }
        if self.lc.awaits_descendants() && self.descendants_left().is_empty() {
            self.queue.push_back(Input::DescendantsGone);
        }
        let app_stopped = reaped
            .stopped
            .iter()
            .find(|(pid, _)| Some(*pid) == self.app_pid);
        let already_stopped = self.stopped_with_app && app_stopped.is_some();
        if let Some((pid, sig)) = app_stopped.filter(|_| self.job_control && !already_stopped) {
            // Ctrl-Z (or a background read or write) stopped the app: stop
            // meshinit too, as dumb-init does, so the shell sees its job
            // stopped and gives the prompt back. `fg` sends SIGCONT, which
            // meshinit passes on (see `give_terminal_back`).
            info!(pid = pid.as_raw(), signal = %signals::name(*sig), "app stopped; stopping meshinit too");
            let _ = kill(nix::unistd::getpid(), Signal::SIGSTOP);
        }
        self.reaped = reaped;
    }

    /// The exec probe waiting for `pid`, if any. Without exec probes the
    /// map is empty and the pid is not even hashed: SipHash cost 240 of the
    /// 670 instructions of a reaped orphan.
    fn exec_waiter(&self, pid: Pid) -> Option<tokio::sync::oneshot::Sender<exit::ExitStatus>> {
        let mut execs = self.execs.borrow_mut();
        if execs.is_empty() {
            return None;
        }
        execs.remove(&pid.as_raw())
    }

    /// A probe's result goes to the lifecycle, which keeps each probe's
    /// thresholds and decides the app's health; the reporter keeps what it
    /// said for `/status` and the log line of a change.
    fn on_probe(&mut self, o: probe::Outcome) {
        debug!(probe = %self.cfg.probes[o.index].kind, ok = o.ok, result = %Escaped(&o.detail), "probe result");
        self.reporter.probe_result(&o);
        self.queue.push_back(Input::Probe {
            probe: o.index,
            ok: o.ok,
        });
    }

    fn execute(&mut self, action: Action) -> Result<Option<i32>, DriverError> {
        match action {
            Action::SpawnApp => self.spawn_app(),
            Action::SpawnProxy => self.spawn_proxy(),
            Action::Signal(target, sig) => self.signal(target, sig),
            Action::Kill(target) => self.kill(target),
            Action::TermDescendants => {
                let pids = self.descendants_left();
                if pids.is_empty() {
                    self.queue.push_back(Input::DescendantsGone);
                } else {
                    info!(
                        count = pids.len(),
                        "stopping leftover descendants with SIGTERM"
                    );
                    crate::init::descendants::signal_all(&pids, Signal::SIGTERM);
                    // As for the app: a descendant stopped by job control
                    // acts on SIGTERM only once continued.
                    crate::init::descendants::signal_all(&pids, Signal::SIGCONT);
                }
            }
            Action::KillDescendants => {
                let pids = self.descendants();
                crate::init::descendants::signal_all(&pids, Signal::SIGKILL);
            }
            Action::Probes(mode) => self.set_probes(mode),
            Action::WatchInbound(on) => {
                let proxy = self.proxy.as_ref().filter(|_| on);
                self.idle.set(proxy.map(ProxyRunner::config));
            }
            Action::Membership(call) => {
                let admin = self.proxy.as_ref().map(|p| &p.config().admin);
                self.mesh_calls.set(call, admin);
            }
            Action::WatchProxy(on) => {
                let watch = self
                    .proxy
                    .as_ref()
                    .filter(|_| on)
                    .map(|p| (&p.config().admin, p.generation()));
                self.hang.set(watch);
            }
            Action::WatchProxyDns(on) => {
                let watch = self
                    .lc
                    .settings()
                    .proxy_dns
                    .zip(self.proxy.as_ref().map(ProxyRunner::generation))
                    .filter(|_| on);
                self.dns.set(watch);
            }
            Action::Ready(ready) => self.reporter.ready(ready),
            Action::Enter(phase) => self.reporter.enter(phase, &self.lc),
            Action::Event(event) => {
                self.control_event(&event);
                let cx = reporter::Context {
                    settings: self.lc.settings(),
                    spawn_error: self.spawn_error.as_ref(),
                    idle: &self.idle,
                };
                self.reporter.event(event, &cx);
            }
            Action::Exit { reason, timeline } => return Ok(Some(self.exit(reason, timeline))),
        }
        Ok(None)
    }

    /// Starts the app; a failure is handed to the lifecycle, which stops
    /// what already runs (kuma-dp with `--start-order proxy-first`) in order.
    fn spawn_app(&mut self) {
        self.job_control = spawn::owns_terminal();
        let stop_signal = self.lc.settings().app_stop_signal;
        let app = &self.cfg.app;
        let pid = spawn::spawn(spawn::Spec {
            program: app.command[0].as_ref(),
            args: &app.command[1..],
            user: app.user.as_ref(),
            workdir: app.workdir.as_deref(),
            no_new_privs: app.no_new_privs,
            foreground: self.job_control,
            output: None,
            is_app: true,
            // meshinit killed outright (SIGKILL, the OOM killer): the app
            // gets its stop signal from the kernel, as it would have from
            // meshinit, and shuts down on its own.
            parent_death_signal: spawn::parent_death_signal(stop_signal),
        })
        .map_err(|source| DriverError::SpawnApp {
            program: app.command[0].clone(),
            source,
        });
        match pid {
            Ok(pid) => {
                info!(pid = pid.as_raw(), command = %crate::basics::parse::shell_words(&app.command), "app started");
                if let Err(e) = spawn::leave_start_dir() {
                    debug!(error = %e, "cannot move to /; staying where meshinit was started");
                }
                self.app_pid = Some(pid);
            }
            Err(e) => {
                self.spawn_error = Some(e);
                self.queue.push_back(Input::AppSpawnFailed);
            }
        }
    }

    fn spawn_proxy(&mut self) {
        let since_healthy = self.reporter.since_healthy();
        let Some(proxy) = &mut self.proxy else { return };
        match proxy.spawn(&since_healthy) {
            Some(_) => self.reporter.proxy_started(),
            None => self.queue.push_back(Input::ProxySpawnFailed),
        }
    }

    fn signal(&self, target: Target, sig: Signal) {
        let pid = match target {
            Target::App => self.app_pid.map(|p| match self.cfg.app.forward_to {
                ForwardTo::Group => Pid::from_raw(-p.as_raw()),
                ForwardTo::Process => p,
            }),
            // kuma-dp itself, never its group: it stops Envoy on its own.
            Target::Proxy => self.proxy_pid(),
        };
        let who = match target {
            Target::App => "app",
            Target::Proxy => "kuma-dp",
        };
        if let Some(pid) = pid {
            if sig == Signal::SIGCONT {
                debug!(target = who, "sending SIGCONT after the stop signal");
            } else {
                info!(target = who, signal = signal_name(sig), "sending signal");
            }
            if let Err(e) = kill(pid, sig) {
                debug!(target = who, error = %e, "signal not delivered");
            }
        }
    }

    fn kill(&self, target: Target) {
        let pid = match target {
            Target::App => self.app_pid,
            Target::Proxy => self.proxy_pid(),
        };
        let Some(pid) = pid else { return };
        // kuma-dp starts Envoy in a process group of its own (Setpgid), so
        // the group kill misses it: it is found below kuma-dp first (once
        // kuma-dp is dead Envoy is re-parented and no longer below it) and
        // killed with it. A hung Envoy cannot drain, and one left running
        // would hold the admin socket and the listeners the restarted
        // kuma-dp needs. meshinit's reaper collects it when meshinit is
        // PID 1 or a subreaper; else its new parent does.
        let below = match target {
            Target::Proxy => crate::init::descendants::of(pid.as_raw()),
            Target::App => Vec::new(),
        };
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
        if !below.is_empty() {
            info!(kuma_dp = pid.as_raw(), pids = ?below, "SIGKILL for kuma-dp's descendants (Envoy)");
            crate::init::descendants::signal_all(&below, Signal::SIGKILL);
        }
    }

    fn on_inbound_reading(&mut self, reading: idle::Reading) {
        let Some(input) = self.idle.reading(&reading) else {
            return;
        };
        // `/metrics`' drain load: readings for a waiting `ctl out` are not
        // the drain's.
        if let (Ok(load), true) = (
            reading,
            self.lc.phase() == crate::lifecycle::Phase::Draining,
        ) {
            self.reporter.inbound_load(load);
        }
        self.queue.push_back(input);
    }

    fn set_probes(&mut self, mode: ProbeMode) {
        for t in self.probe_tasks.drain(..) {
            t.abort();
        }
        if mode == ProbeMode::Off {
            return;
        }
        for (i, spec) in self.cfg.probes.iter().enumerate() {
            let period = match mode {
                ProbeMode::Startup => spec.startup_period,
                _ => spec.period,
            };
            self.probe_tasks.push(tokio::task::spawn_local(probe::run(
                i,
                spec.clone(),
                period,
                self.probe_tx.clone(),
                self.execs.clone(),
            )));
        }
    }

    fn exit(&mut self, reason: ExitReason, timeline: Option<Timeline>) -> i32 {
        if let Some(p) = &self.proxy {
            p.remove_work_dir();
        }
        let spawn_failed = self
            .spawn_error
            .as_ref()
            .map_or(exit::EX_OSERR, DriverError::exit_code);
        let code = reason.exit_code(&self.cfg.exit_code_map, spawn_failed);
        self.reporter
            .exit(timeline, code, self.cfg.state_file.as_deref());
        code
    }
}
