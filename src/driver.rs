//! The driver: owns the clock, the processes and the signals, and carries
//! out what the lifecycle decides.
//!
//! It sleeps until a signal arrives (SIGCHLD included), a probe or the
//! proxy-ready watcher reports, or the lifecycle's next deadline passes.
//! There is no polling loop: an idle supervisor without probes uses no CPU.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::parse::{fmt_secs, signal_name};
use crate::config::{Config, ForwardTo};
use crate::health::probe::{self, ExecWaiters, Tracker};
use crate::init::exit::{self, ExitStatus};
use crate::init::signals::{self, Signals};
use crate::init::spawn;
use crate::lifecycle::{
    Action, DrainMode, Event, ExitReason, Input, Lifecycle, Phase, ProbeMode, Target, Timeline,
};
use crate::mesh::envoy::Load;
use crate::report::metrics::{DrainEnd, LastShutdown};
use crate::report::notify::{self, Notifier};
use crate::report::status;

/// How often Envoy's stats are read during an idle-watched drain.
const INBOUND_POLL: Duration = Duration::from_millis(100);

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
            DriverError::Signals(_) => exit::EX_OSERR,
        }
    }
}

/// Everything the event loop works with.
struct Driver {
    cfg: Config,
    lc: Lifecycle,
    start: Instant,
    app_pid: Option<Pid>,
    proxy_pid: Option<Pid>,
    /// Increases with each kuma-dp spawn, so a stale readiness report from
    /// a previous kuma-dp is ignored.
    proxy_generation: u64,
    execs: ExecWaiters,
    trackers: Vec<Tracker>,
    healthy_reported: bool,
    probe_tx: mpsc::UnboundedSender<probe::Outcome>,
    probe_tasks: Vec<JoinHandle<()>>,
    ready_tx: mpsc::UnboundedSender<u64>,
    ready_task: Option<JoinHandle<()>>,
    inbound_tx: mpsc::UnboundedSender<Result<Load, String>>,
    inbound_task: Option<JoinHandle<()>>,
    /// The busiest inbound load read during this drain, for the decision's log.
    peak_load: Load,
    /// The last failed reading, for the log when the lifecycle gives up.
    inbound_error: Option<String>,
    healthy_at: Option<Instant>,
    phase_since: Instant,
    shutdown_since: Option<Instant>,
    status: status::Shared,
    notifier: Notifier,
    ready_notified: bool,
    queue: VecDeque<Input>,
    /// Orphans are re-parented to meshinit (PID 1 or child subreaper), so
    /// "no child left" means "no descendant left".
    reaps_orphans: bool,
    /// The app was handed the terminal meshinit runs in the foreground of:
    /// job control (Ctrl-Z, `fg`) applies to the pair as to one shell job.
    job_control: bool,
    /// Why the app could not be started; decides the exit code once the
    /// lifecycle has stopped whatever already ran.
    spawn_error: Option<DriverError>,
    /// meshinit created kuma-dp's work directory (removed at exit).
    work_dir_made: bool,
}

/// Runs the supervised pair to the end and returns meshinit's exit code.
/// Must run inside a `LocalSet` on a current-thread runtime.
pub async fn run(
    cfg: Config,
    listener: Option<tokio::net::TcpListener>,
    env: &dyn Fn(&str) -> Option<String>,
    reaps_orphans: bool,
) -> Result<i32, DriverError> {
    let signals = Signals::open().map_err(DriverError::Signals)?;
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (inbound_tx, mut inbound_rx) = mpsc::unbounded_channel();
    let status = Rc::new(RefCell::new(status::State::new()));
    status.borrow_mut().probes = cfg
        .probes
        .iter()
        .map(|p| (p.kind.to_string(), None, String::new()))
        .collect();
    init_metrics(&mut status.borrow_mut().metrics, &cfg);
    let _status_task = listener.map(|l| {
        info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "status endpoint listening");
        tokio::task::spawn_local(status::serve(
            l,
            status.clone(),
            cfg.status_request_timeout,
        ))
    });
    let notifier = Notifier::from_env(env);
    let watchdog = notifier.watchdog_interval();
    let now = Instant::now();
    let mut d = Driver {
        lc: Lifecycle::new(cfg.settings.clone()),
        trackers: cfg.probes.iter().map(Tracker::new).collect(),
        cfg,
        start: now,
        app_pid: None,
        proxy_pid: None,
        proxy_generation: 0,
        execs: Rc::new(RefCell::new(HashMap::new())),
        healthy_reported: false,
        probe_tx,
        probe_tasks: Vec::new(),
        ready_tx,
        ready_task: None,
        inbound_tx,
        inbound_task: None,
        peak_load: Load::default(),
        inbound_error: None,
        healthy_at: None,
        phase_since: now,
        shutdown_since: None,
        status,
        notifier,
        ready_notified: false,
        queue: VecDeque::new(),
        reaps_orphans,
        job_control: false,
        spawn_error: None,
        work_dir_made: false,
    };
    d.queue.push_back(Input::Start);
    if let Some(code) = d.pump()? {
        return Ok(code);
    }
    // Start-up is over (the configuration is read, the app spawned): what
    // it alone needed need not stay resident while meshinit supervises.
    crate::init::memory::release_startup_pages();
    let mut next_watchdog = watchdog.and_then(|w| Instant::now().checked_add(w));
    loop {
        // A deadline beyond what the clock can hold is never reached: no
        // timer (durations are capped at a day, so this is a safety net).
        let deadline = d.lc.next_deadline().and_then(|t| d.start.checked_add(t));
        tokio::select! {
            got = signals.recv() => {
                let got = got.map_err(DriverError::Signals)?;
                d.on_signals(&got);
            }
            Some(outcome) = probe_rx.recv() => d.on_probe(outcome),
            Some(generation) = ready_rx.recv() => {
                if generation == d.proxy_generation {
                    d.queue.push_back(Input::ProxyReady);
                }
            }
            Some(load) = inbound_rx.recv() => d.on_inbound_load(load),
            () = sleep_until_opt(deadline) => d.queue.push_back(Input::Tick),
            () = sleep_until_opt(next_watchdog) => {
                d.notifier.send("WATCHDOG=1");
                next_watchdog = watchdog.and_then(|w| Instant::now().checked_add(w));
            }
        }
        if let Some(code) = d.pump()? {
            return Ok(code);
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Driver {
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
        self.status.borrow_mut().ready_text = self.lc.ready_text();
        Ok(None)
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
        let reaped = crate::init::reaper::reap();
        for (pid, status) in reaped.exited {
            if Some(pid) == self.app_pid {
                info!(pid = pid.as_raw(), status = %status, "app exited");
                self.app_pid = None;
                self.status.borrow_mut().app_pid = None;
                self.queue.push_back(Input::AppExited(status));
            } else if Some(pid) == self.proxy_pid {
                let level_warn = !self.lc.phase().is_shutdown();
                if level_warn {
                    warn!(pid = pid.as_raw(), status = %status, "kuma-dp exited");
                } else {
                    info!(pid = pid.as_raw(), status = %status, "kuma-dp exited");
                }
                self.proxy_pid = None;
                self.status.borrow_mut().proxy_pid = None;
                if let Some(t) = self.ready_task.take() {
                    t.abort();
                }
                self.queue.push_back(Input::ProxyExited(status));
            } else if let Some(waiter) = self.execs.borrow_mut().remove(&pid.as_raw()) {
                let _ = waiter.send(status);
            } else {
                debug!(pid = pid.as_raw(), status = %status, "reaped orphan");
            }
        }
        if self.lc.phase() == Phase::Cleanup
            && ((reaped.no_children && self.reaps_orphans) || self.descendants().is_empty())
        {
            self.queue.push_back(Input::DescendantsGone);
        }
        let app_stopped = reaped
            .stopped
            .iter()
            .find(|(pid, _)| Some(*pid) == self.app_pid);
        if let Some((pid, sig)) = app_stopped.filter(|_| self.job_control) {
            // Ctrl-Z (or a background read or write) stopped the app: stop
            // meshinit too, as dumb-init does, so the shell sees its job
            // stopped and gives the prompt back. `fg` sends SIGCONT, which
            // meshinit passes on (see `give_terminal_back`).
            info!(pid = pid.as_raw(), signal = %signals::name(*sig), "app stopped; stopping meshinit too");
            let _ = kill(nix::unistd::getpid(), Signal::SIGSTOP);
        }
    }

    fn on_probe(&mut self, o: probe::Outcome) {
        let name = self.cfg.probes[o.index].kind.to_string();
        let tracker = &mut self.trackers[o.index];
        let changed = tracker.record(o.ok);
        {
            let mut st = self.status.borrow_mut();
            st.probes[o.index] = (name.clone(), Some(tracker.passing()), o.detail.clone());
            st.metrics
                .probe_result(o.index, o.ok, tracker.consecutive_failures());
        }
        if changed {
            if tracker.passing() {
                info!(probe = %name, result = %o.detail, "probe passing");
            } else {
                warn!(probe = %name, result = %o.detail, "probe failing");
            }
        } else {
            debug!(probe = %name, ok = o.ok, result = %o.detail, "probe result");
        }
        let healthy = self.trackers.iter().all(Tracker::passing);
        self.status.borrow_mut().healthy = healthy;
        if healthy != self.healthy_reported {
            self.healthy_reported = healthy;
            self.queue.push_back(if healthy {
                Input::Healthy
            } else {
                Input::Unhealthy
            });
        }
    }

    fn execute(&mut self, action: Action) -> Result<Option<i32>, DriverError> {
        match action {
            Action::SpawnApp => self.spawn_app(),
            Action::SpawnProxy => self.spawn_proxy(),
            Action::WatchProxyReady => self.watch_proxy_ready(),
            Action::Signal(target, sig) => self.signal(target, sig),
            Action::Kill(target) => self.kill(target),
            Action::TermDescendants => {
                let pids = if self.reaps_orphans && !crate::init::reaper::has_children() {
                    Vec::new()
                } else {
                    self.descendants()
                };
                if pids.is_empty() {
                    self.queue.push_back(Input::DescendantsGone);
                } else {
                    info!(
                        count = pids.len(),
                        "stopping leftover descendants with SIGTERM"
                    );
                    crate::init::descendants::signal_all(&pids, Signal::SIGTERM);
                }
            }
            Action::KillDescendants => {
                let pids = self.descendants();
                crate::init::descendants::signal_all(&pids, Signal::SIGKILL);
            }
            Action::Probes(mode) => self.set_probes(mode),
            Action::WatchInbound(on) => self.watch_inbound(on),
            Action::Ready(ready) => {
                let mut st = self.status.borrow_mut();
                st.ready = ready;
                if ready {
                    st.metrics.ready(self.now());
                    drop(st);
                    info!(elapsed = %fmt_secs(self.now()), "service running and ready");
                    if !self.ready_notified {
                        self.ready_notified = true;
                        self.notifier.send("READY=1\nSTATUS=running");
                    }
                }
            }
            Action::Enter(phase) => self.enter(phase),
            Action::Event(event) => self.log_event(event),
            Action::Exit { reason, timeline } => return Ok(Some(self.exit(reason, timeline))),
        }
        Ok(None)
    }

    /// Starts the app; a failure is handed to the lifecycle, which stops
    /// what already runs (kuma-dp with `--start-order proxy-first`) in order.
    fn spawn_app(&mut self) {
        self.job_control = spawn::owns_terminal();
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
        })
        .map_err(|source| DriverError::SpawnApp {
            program: app.command[0].clone(),
            source,
        });
        match pid {
            Ok(pid) => {
                info!(pid = pid.as_raw(), command = ?app.command, "app started");
                if let Err(e) = spawn::leave_start_dir() {
                    debug!(error = %e, "cannot move to /; staying where meshinit was started");
                }
                self.app_pid = Some(pid);
                self.status.borrow_mut().app_pid = Some(pid.as_raw());
            }
            Err(e) => {
                self.spawn_error = Some(e);
                self.queue.push_back(Input::AppSpawnFailed);
            }
        }
    }

    /// Makes kuma-dp's work directory (mkdtemp-like) before its first start,
    /// checks it is still meshinit's before a restart.
    fn prepare_work_dir(&mut self) -> Result<(), crate::mesh::workdir::WorkDirError> {
        let Some(proxy) = self.cfg.proxy.as_mut().filter(|p| p.owns_work_dir) else {
            return Ok(());
        };
        if self.work_dir_made {
            return crate::mesh::workdir::reuse(&proxy.work_dir, proxy.user.as_ref());
        }
        let dir = crate::mesh::workdir::create_fresh(&proxy.work_dir, proxy.user.as_ref())?;
        self.work_dir_made = true;
        if dir != proxy.work_dir {
            // The planned name was taken: kuma-dp and the admin socket
            // follow the fresh one.
            warn!(taken = %proxy.work_dir.display(), dir = %dir.display(), "kuma-dp's work dir name already existed; using a fresh one");
            let old = format!("--work-dir={}", proxy.work_dir.display());
            for a in proxy.args.iter_mut().filter(|a| **a == old) {
                *a = format!("--work-dir={}", dir.display());
            }
            proxy.admin.socket = dir.join(crate::mesh::envoy::ADMIN_SOCKET);
            proxy.work_dir = dir;
        }
        Ok(())
    }

    fn spawn_proxy(&mut self) {
        if let Err(e) = self.prepare_work_dir() {
            // Counted as a failed start: retried with backoff, then given up.
            error!(error = %e, "cannot start kuma-dp");
            self.queue
                .push_back(Input::ProxyExited(ExitStatus::Code(127)));
            return;
        }
        let Some(proxy) = &self.cfg.proxy else { return };
        self.proxy_generation += 1;
        match spawn::spawn(spawn::Spec {
            program: proxy.kuma_dp.as_os_str(),
            args: &proxy.args,
            user: proxy.user.as_ref(),
            workdir: None,
            no_new_privs: false,
            foreground: false,
            output: None,
            is_app: false,
        }) {
            Ok(pid) => {
                let since_healthy = self
                    .healthy_at
                    .map(|t| fmt_secs(t.elapsed()))
                    .unwrap_or_default();
                info!(pid = pid.as_raw(), since_app_healthy = %since_healthy, "kuma-dp started");
                self.proxy_pid = Some(pid);
                let mut st = self.status.borrow_mut();
                st.proxy_pid = Some(pid.as_raw());
                st.metrics.proxy_starts += 1;
            }
            Err(e) => {
                error!(program = %proxy.kuma_dp.display(), error = %e, "cannot start kuma-dp");
                self.queue
                    .push_back(Input::ProxyExited(ExitStatus::Code(127)));
            }
        }
    }

    fn watch_proxy_ready(&mut self) {
        let Some(proxy) = &self.cfg.proxy else { return };
        if let Some(t) = self.ready_task.take() {
            t.abort();
        }
        let url = proxy.ready_url.clone();
        let tx = self.ready_tx.clone();
        let generation = self.proxy_generation;
        self.ready_task = Some(tokio::task::spawn_local(async move {
            // kuma-dp answers 503 until Envoy is live; poll briskly so the
            // service is marked ready within ~100 ms of that.
            loop {
                if let Ok(200) = crate::health::http::get_status(&url, Duration::from_secs(1)).await
                {
                    let _ = tx.send(generation);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    fn signal(&self, target: Target, sig: Signal) {
        let pid = match target {
            Target::App => self.app_pid.map(|p| match self.cfg.app.forward_to {
                ForwardTo::Group => Pid::from_raw(-p.as_raw()),
                ForwardTo::Process => p,
            }),
            // kuma-dp itself, never its group: it stops Envoy on its own.
            Target::Proxy => self.proxy_pid,
        };
        let who = match target {
            Target::App => "app",
            Target::Proxy => "kuma-dp",
        };
        if let Some(pid) = pid {
            info!(target = who, signal = signal_name(sig), "sending signal");
            if let Err(e) = kill(pid, sig) {
                debug!(target = who, error = %e, "signal not delivered");
            }
        }
    }

    fn kill(&self, target: Target) {
        let pid = match target {
            Target::App => self.app_pid,
            Target::Proxy => self.proxy_pid,
        };
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    /// Polls Envoy's stats during a drain; `on_inbound_load` turns the
    /// results into `InboundIdle` changes for the lifecycle.
    fn watch_inbound(&mut self, on: bool) {
        if let Some(t) = self.inbound_task.take() {
            t.abort();
        }
        self.inbound_error = None;
        self.peak_load = Load::default();
        let Some(proxy) = self.cfg.proxy.as_ref().filter(|_| on) else {
            return;
        };
        let admin = proxy.admin.clone();
        let listeners = proxy.inbound_listeners.clone();
        let tx = self.inbound_tx.clone();
        self.inbound_task = Some(tokio::task::spawn_local(async move {
            loop {
                let load = admin.inbound_load(&listeners, Duration::from_secs(1)).await;
                if tx.send(load).is_err() {
                    return;
                }
                tokio::time::sleep(INBOUND_POLL).await;
            }
        }));
    }

    fn on_inbound_load(&mut self, load: Result<Load, String>) {
        if self.inbound_task.is_none() {
            return;
        }
        match load {
            Ok(load) => {
                self.status.borrow_mut().metrics.inbound = Some(load);
                self.peak_load.connections = self.peak_load.connections.max(load.connections);
                self.peak_load.requests = self.peak_load.requests.max(load.requests);
                let idle = load.is_idle();
                debug!(
                    connections = load.connections,
                    requests = load.requests,
                    "inbound load"
                );
                self.queue.push_back(Input::InboundIdle(idle));
            }
            Err(e) => {
                debug!(error = %e, "inbound stats not read");
                self.inbound_error = Some(e);
                self.queue.push_back(Input::InboundUnreadable);
            }
        }
    }

    fn set_probes(&mut self, mode: ProbeMode) {
        for t in self.probe_tasks.drain(..) {
            t.abort();
        }
        if mode == ProbeMode::Off {
            return;
        }
        for (i, spec) in self.cfg.probes.iter().enumerate() {
            self.probe_tasks.push(tokio::task::spawn_local(probe::run(
                i,
                spec.clone(),
                mode,
                self.probe_tx.clone(),
                self.execs.clone(),
            )));
        }
    }

    fn enter(&mut self, phase: Phase) {
        let now = Instant::now();
        let in_previous = now - self.phase_since;
        self.phase_since = now;
        {
            let mut st = self.status.borrow_mut();
            st.phase = phase;
            st.proxy_restarts = self.lc.proxy_restarts();
            st.phases.push((phase, self.now().as_secs_f64()));
            st.metrics.enter(phase);
        }
        info!(phase = phase.as_str(), elapsed = %fmt_secs(self.now()), previous_took = %fmt_secs(in_previous), "phase {}", phase.as_str());
        if phase.is_shutdown() && self.shutdown_since.is_none() {
            self.shutdown_since = Some(now);
            self.notifier.send("STOPPING=1");
        }
        let mut msg = format!("STATUS={}", phase.as_str());
        if phase.is_shutdown() {
            // Keep systemd from cutting a long drain short: announce the
            // worst case that is still ahead.
            msg.push('\n');
            msg.push_str(&notify::extend_timeout(
                self.lc.shutdown_time_left(self.now()),
            ));
        }
        self.notifier.send(&msg);
    }

    fn log_event(&mut self, event: Event) {
        self.record_event(event);
        match event {
            Event::AppHealthy => {
                self.healthy_at = Some(Instant::now());
                info!(elapsed = %fmt_secs(self.now()), "app healthy");
            }
            Event::AppUnhealthy => warn!("app unhealthy (liveness probes failing)"),
            Event::AppSpawnFailed => match &self.spawn_error {
                Some(e) if self.proxy_pid.is_some() => {
                    error!("{e}; draining and stopping kuma-dp")
                }
                Some(e) => error!("{e}"),
                None => error!("the app could not be started"),
            },
            Event::ProxyReady => {
                let since = self
                    .healthy_at
                    .map(|t| fmt_secs(t.elapsed()))
                    .unwrap_or_default();
                info!(since_app_healthy = %since, "kuma-dp ready");
            }
            Event::ProxyRestarting { attempt, delay } => {
                self.status.borrow_mut().proxy_restarts = attempt as usize;
                warn!(attempt, max = self.lc.settings().proxy_max_restarts, delay = %fmt_secs(delay), "kuma-dp will be restarted");
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
            Event::StopDuringShutdown => {
                info!("a shutdown is already under way; send the stop signal again to cut it short")
            }
            Event::DrainIdle { drained_for } => {
                let peak = self.peak_load;
                info!(
                    drained = %fmt_secs(drained_for),
                    peak_connections = peak.connections,
                    peak_requests = peak.requests,
                    "inbound idle after draining {} (at most {} connections, {} requests during the drain): telling kuma-dp to stop now",
                    fmt_secs(drained_for),
                    peak.connections,
                    peak.requests
                );
            }
            Event::IdleWatchUnavailable => {
                let error = self.inbound_error.as_deref().unwrap_or_default();
                warn!(error = %error, "Envoy's inbound stats are unreadable");
                warn!("cannot read Envoy's inbound stats; the drain lasts kuma-dp's drain time")
            }
            Event::Escalated { stops } => {
                warn!(stops, "stop signal #{stops}: cutting the shutdown short")
            }
            Event::AppKilled { cut_short: false } => {
                warn!("app did not stop within --app-stop-timeout; sending SIGKILL")
            }
            Event::AppKilled { cut_short: true } => warn!(
                "app did not stop within {} of the second stop signal, which cut the stop short; sending SIGKILL",
                fmt_secs(self.lc.settings().kill_bound)
            ),
            Event::ProxyKilled => warn!("kuma-dp did not exit in time; sending SIGKILL"),
            Event::DescendantsKilled => warn!("leftover descendants did not stop; sending SIGKILL"),
            Event::DescendantsLeft => error!("some descendants survived SIGKILL; exiting anyway"),
        }
    }

    /// What an event changes in `/metrics`.
    fn record_event(&mut self, event: Event) {
        let m = &mut self.status.borrow_mut().metrics;
        match event {
            Event::AppHealthy => m.healthy(self.start.elapsed()),
            Event::ProxyRestarting { .. } => m.proxy_restarts += 1,
            Event::DrainIdle { .. } => m.drain_ending(DrainEnd::Idle),
            Event::DrainTimeout => m.drain_ending(DrainEnd::Timeout),
            Event::Escalated { .. } => m.drain_ending(DrainEnd::CutShort),
            _ => {}
        }
    }

    fn exit(&mut self, reason: ExitReason, timeline: Option<Timeline>) -> i32 {
        // Only a directory meshinit created itself is removed.
        if let Some(proxy) = self.cfg.proxy.as_ref().filter(|_| self.work_dir_made) {
            let _ = std::fs::remove_dir_all(&proxy.work_dir);
        }
        let spawn_failed = self
            .spawn_error
            .as_ref()
            .map_or(exit::EX_OSERR, DriverError::exit_code);
        let code = reason.exit_code(&self.cfg.exit_code_map, spawn_failed);
        if let (Some(t), Some(path)) = (&timeline, &self.cfg.state_file) {
            let drain_end = self.status.borrow().metrics.drain_end();
            if let Err(e) = LastShutdown::from_timeline(t, drain_end).save(path) {
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
        code
    }
}

/// `/metrics`' starting point: the drain's kind and the previous
/// instance's shutdown from `--state-file`.
fn init_metrics(m: &mut crate::report::metrics::Metrics, cfg: &Config) {
    m.drain_is_wait = matches!(cfg.settings.drain_mode, DrainMode::InboundUsr2 { .. });
    if let Some(path) = &cfg.state_file {
        match LastShutdown::load(path) {
            Ok(last) => m.last = last,
            Err(e) => warn!(file = %path.display(), error = %e, "ignoring --state-file"),
        }
    }
}
