//! The lifecycle state machine: every decision meshinit makes, and nothing else.
//!
//! It performs no I/O and never reads the clock. The driver feeds it
//! `step(now, input)` with `now` measured from meshinit's start, carries out
//! the returned [`Action`]s, and calls `step(now, Input::Tick)` once
//! `next_deadline()` has passed. That keeps every transition testable in
//! microseconds with plain tables.
//!
//! ```text
//! starting → probing → proxy-starting → running → draining → grace → stopping → cleanup → done
//! ```
//!
//! Without a proxy, `proxy-starting` and `draining` are skipped; without
//! probes, `probing` is.

use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::init::exit::{self, ExitCodeMap, ExitStatus};
pub use health::Thresholds;

/// Where the supervised pair is in its life. The names are part of the
/// interface: logs, `/status`, `/ready` bodies and sd_notify STATUS= use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Nothing runs yet.
    Starting,
    /// The app runs; the startup probes have not passed yet.
    Probing,
    /// The app is healthy; kuma-dp was spawned and is not ready yet (or is
    /// waiting for its restart after a crash).
    ProxyStarting,
    /// The app is up (and kuma-dp ready): the service can take traffic.
    Running,
    /// kuma-dp got the drain signal; waiting for it to exit (or for the
    /// inbound drain wait to pass with `--drain-signal USR2`, or for the
    /// inbound side to go idle with `--drain-signal hold`).
    Draining,
    /// The proxy is gone; the app keeps running for `--app-grace-delay`.
    Grace,
    /// The app got its stop signal; SIGKILL follows after `--app-stop-timeout`.
    Stopping,
    /// The app is gone; stopping what is left (kuma-dp, descendants).
    Cleanup,
    /// Everything is gone; meshinit exits.
    Done,
}

impl Phase {
    /// Every phase, in lifecycle order (used by tests and documentation).
    pub const ALL: [Phase; 9] = [
        Phase::Starting,
        Phase::Probing,
        Phase::ProxyStarting,
        Phase::Running,
        Phase::Draining,
        Phase::Grace,
        Phase::Stopping,
        Phase::Cleanup,
        Phase::Done,
    ];

    /// The kebab-case name used in logs, `/status` and sd_notify.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Probing => "probing",
            Phase::ProxyStarting => "proxy-starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Grace => "grace",
            Phase::Stopping => "stopping",
            Phase::Cleanup => "cleanup",
            Phase::Done => "done",
        }
    }

    /// Phases in which a shutdown is under way.
    pub fn is_shutdown(self) -> bool {
        matches!(
            self,
            Phase::Draining | Phase::Grace | Phase::Stopping | Phase::Cleanup | Phase::Done
        )
    }
}

/// How kuma-dp is asked to drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainMode {
    /// SIGTERM: kuma-dp fails Envoy's health checks, drains every listener
    /// for its drain time and exits. The app is stopped after it has gone.
    Term,
    /// SIGUSR2: kuma-dp drains only the inbound listeners and keeps serving
    /// the app's outbound traffic. meshinit waits `wait`, stops the app, and
    /// sends kuma-dp SIGTERM last (it then exits at once).
    InboundUsr2 {
        /// How long the inbound drain is given before the app is stopped.
        wait: Duration,
    },
    /// SIGTERM, then hold: kuma-dp fails Envoy's health checks (the control
    /// plane withdraws the inbound, as in every drain) and waits out its
    /// `--drain-time`, which meshinit sets longer than its own worst case,
    /// so Envoy keeps carrying the app's outbound calls and DNS. The inbound
    /// phase ends by the idle rule (or `--drain-timeout`) without kuma-dp
    /// exiting; the grace and the app's stop follow; only once the app has
    /// exited does kuma-dp get its second SIGTERM, which ends its drain at
    /// once. For transparent proxying, where every outbound call of the
    /// app goes through Envoy. Never SIGUSR2: kuma-dp exits at once on a
    /// SIGTERM after a SIGUSR2.
    Hold,
}

/// Which of the pair starts first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOrder {
    /// The app, then kuma-dp once the app is healthy (the default): the
    /// proxy never advertises a service that cannot serve.
    AppFirst,
    /// kuma-dp, then the app once kuma-dp is ready: for apps that call other
    /// mesh services while they boot. The inbound should carry a
    /// `serviceProbe` so the control plane withholds traffic until the app
    /// answers.
    ProxyFirst,
}

/// Ending the drain once the inbound side is idle instead of waiting out
/// kuma-dp's whole drain time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleDrain {
    /// The drain lasts at least this long: the time the control plane needs
    /// to withdraw this endpoint from every client.
    pub min: Duration,
    /// The inbound side must be idle (no connection, no request) this long.
    pub idle: Duration,
}

/// What to do when liveness probes fail past their threshold while running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnhealthy {
    /// Log it and report it (status endpoint, `/ready` 503); keep running.
    None,
    /// Take the instance out of the mesh (Envoy fails its health checks,
    /// which kuma-cp's HDS turns into "inbounds not ready"), without
    /// stopping anything; put it back once the probes pass again. The
    /// default with kuma-dp; without it, the same as `None`.
    Leave,
    /// Begin the graceful shutdown; exit with `EX_UNAVAILABLE` (69).
    Shutdown,
}

/// Why the instance is out of the mesh; both may hold at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutReasons {
    /// The app's liveness probes fail (`--on-unhealthy leave`).
    pub unhealthy: bool,
    /// An operator took it out (`meshinit ctl out`), until `ctl in`.
    pub operator: bool,
}

impl OutReasons {
    pub fn any(self) -> bool {
        self.unhealthy || self.operator
    }

    /// The reason as logs, `/ready`, `/status` and sd_notify word it; empty
    /// when in the mesh.
    pub fn as_str(self) -> &'static str {
        match (self.operator, self.unhealthy) {
            (true, true) => "operator, app unhealthy",
            (true, false) => "operator",
            (false, true) => "app unhealthy",
            (false, false) => "",
        }
    }
}

/// An operator's request (`meshinit ctl out|in`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Take the instance out of the mesh and keep it out until `In`; with
    /// `wait`, also watch the inbound side until it is idle by the shutdown
    /// drain's rule (`--drain-min`, `--drain-idle`), bounded by
    /// `--drain-timeout`, and say when ([`Event::OutWaitEnded`]).
    Out { wait: bool },
    /// Lift the operator's hold (the instance stays out while the app is
    /// unhealthy under `--on-unhealthy leave`).
    In,
}

/// How an operator's `out` that waits for the inbound side ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutWaitEnd {
    /// Idle by the drain's rule: nothing flows any more.
    Idle,
    /// `--drain-timeout` passed with traffic still flowing (long-lived
    /// connections of a TCP inbound, which Envoy does not drain-close).
    Timeout,
    /// Envoy's stats could not be read.
    Unreadable,
    /// kuma-dp is not serving (not ready, gone, or hung): nothing flows
    /// through it.
    NotServing,
    /// The drain watch is off (`--drain-until-idle false`): no idle rule.
    NoIdleRule,
    /// `in` came first.
    Cancelled,
    /// A shutdown began; its drain takes over.
    ShuttingDown,
}

/// Why an operator's request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorRefused {
    /// No kuma-dp is managed: there is no mesh to leave.
    NoProxy,
    /// A shutdown is under way: the instance is leaving anyway.
    ShuttingDown,
}

impl OperatorRefused {
    /// Why, in words, for the operator and the log alike.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRefused::NoProxy => {
                "no kuma-dp is managed (no Dataplane given): there is no mesh to leave or join"
            }
            OperatorRefused::ShuttingDown => {
                "a shutdown is under way: the instance is leaving the mesh for good"
            }
        }
    }
}

/// A call on Envoy's admin API that takes the instance out of the mesh or
/// puts it back. Both calls are idempotent; the driver retries the last one
/// until it succeeds or another replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeshCall {
    /// `POST /healthcheck/fail`.
    Leave,
    /// `POST /healthcheck/ok`.
    Rejoin,
    /// Stop calling (and retrying): kuma-dp is gone or hung, or a shutdown
    /// began (kuma-dp fails the health checks itself on SIGTERM; an `ok`
    /// sent now would undo its drain).
    Stop,
}

/// Crashes older than this no longer count towards `--proxy-max-restarts`.
pub const PROXY_RESTART_WINDOW: Duration = Duration::from_secs(600);
/// The longest wait between kuma-dp restarts (the backoff doubles up to it).
pub const PROXY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The short bound between "stop now" and SIGKILL.
pub const KILL_BOUND: Duration = Duration::from_secs(1);
/// How long leftover descendants get between SIGTERM and SIGKILL.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The timing and policy knobs the state machine needs, already validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// kuma-dp is supervised.
    pub has_proxy: bool,
    /// Every probe's thresholds (`--probe-*-threshold`, `probes.checks`);
    /// all must pass. None: the app counts as healthy as soon as it is
    /// spawned.
    pub probes: Vec<Thresholds>,
    pub startup_timeout: Duration,
    pub proxy_ready_timeout: Duration,
    pub proxy_max_restarts: u32,
    /// Crashes older than this no longer count towards the restart limit.
    pub proxy_restart_window: Duration,
    pub proxy_backoff_initial: Duration,
    pub proxy_backoff_max: Duration,
    /// The app's stop signal when `pass_stop_signal` is off, or when the
    /// shutdown did not come from a signal (failed probes, kuma-dp gave up).
    pub app_stop_signal: Signal,
    /// Stop the app with the stop signal meshinit received (Ctrl-C's INT
    /// stays INT), as tini and dumb-init pass it through; off when
    /// `--app-stop-signal` was given explicitly.
    pub pass_stop_signal: bool,
    pub app_stop_timeout: Duration,
    /// `--app-stop-timeout` was given explicitly. Without a proxy (plain
    /// init mode) meshinit then SIGKILLs an app that outlives it after a
    /// stop signal; by default it waits for the app, as tini and dumb-init
    /// do, and the platform's own stop timeout does the killing.
    pub app_stop_timeout_given: bool,
    pub app_grace_delay: Duration,
    pub drain_mode: DrainMode,
    pub drain_timeout: Duration,
    pub on_unhealthy: OnUnhealthy,
    /// The short bound between "stop now" and SIGKILL, used for escalations
    /// and for a proxy that is stopped before it ever became ready.
    pub kill_bound: Duration,
    /// How long leftover descendants get between SIGTERM and SIGKILL.
    pub cleanup_timeout: Duration,
    pub start_order: StartOrder,
    /// `None`: the drain waits for kuma-dp to exit on its own.
    pub idle_drain: Option<IdleDrain>,
    /// `--proxy-hang-timeout`: Envoy's admin API silent this long (once it
    /// has answered, or kuma-dp was ready) means a hung proxy, which is
    /// SIGKILLed and restarted. `None`: not watched.
    pub proxy_hang_timeout: Option<Duration>,
    /// kuma-dp's DNS server (its embedded proxy or CoreDNS, by default
    /// `127.0.0.1:15053`) must answer before kuma-dp counts as usable: with
    /// transparent proxying the app's lookups are redirected there, so an
    /// app started before it answers loses them. Set by the configuration
    /// when redirection and kuma-dp's DNS are on. The wait is bounded by
    /// `--proxy-ready-timeout`, counted from kuma-dp's spawn as its
    /// readiness is. `None`: no DNS gate.
    pub proxy_dns: Option<SocketAddr>,
}

impl Settings {
    /// At least one probe gates the start.
    pub fn has_probes(&self) -> bool {
        !self.probes.is_empty()
    }

    /// The options' defaults (see `config::options`) with a proxy and one
    /// probe that flips with each result, and without the idle drain (which
    /// a proxied run with the default options has): where the tests start
    /// from. Written out here, since the configuration is above the
    /// lifecycle; a configuration test keeps it equal to the options'
    /// defaults.
    #[cfg(test)]
    pub fn defaults() -> Settings {
        Settings {
            has_proxy: true,
            probes: vec![Thresholds {
                success: 1,
                failure: 1,
            }],
            startup_timeout: Duration::from_secs(60),
            proxy_ready_timeout: Duration::from_secs(60),
            proxy_max_restarts: 5,
            proxy_restart_window: PROXY_RESTART_WINDOW,
            proxy_backoff_initial: Duration::from_secs(1),
            proxy_backoff_max: PROXY_BACKOFF_MAX,
            app_stop_signal: Signal::SIGTERM,
            pass_stop_signal: true,
            app_stop_timeout: Duration::from_secs(10),
            app_stop_timeout_given: false,
            app_grace_delay: Duration::ZERO,
            drain_mode: DrainMode::Term,
            drain_timeout: Duration::from_secs(40),
            on_unhealthy: OnUnhealthy::Leave,
            kill_bound: KILL_BOUND,
            cleanup_timeout: CLEANUP_TIMEOUT,
            start_order: StartOrder::AppFirst,
            idle_drain: None,
            proxy_hang_timeout: Some(Duration::from_secs(15)),
            proxy_dns: None,
        }
    }

    /// The longest a shutdown can take, from the stop signal to meshinit's
    /// exit, counting every wait the state machine may schedule: this is
    /// what a platform's stop budget (docker stop -t, Nomad kill_timeout,
    /// systemd TimeoutStopSec) must cover. `meshinit check`,
    /// `--shutdown-budget`, EXTEND_TIMEOUT_USEC and the README all use it,
    /// and the property tests check that no run takes longer.
    ///
    /// It is found by running the lifecycle itself on a simulated clock
    /// with nobody cooperating ([`simulate`]), from every state of a normal
    /// start, so it is the wait the lifecycle really takes, by construction.
    /// A shutdown that nothing bounds reads as `Duration::MAX`.
    pub fn worst_case_shutdown(&self) -> Duration {
        simulate::worst_case(self).unwrap_or(Duration::MAX)
    }

    /// Plain init mode without `--app-stop-timeout`: after a stop signal
    /// meshinit waits for the app as long as it takes, as tini and
    /// dumb-init do (see [`Lifecycle::shutdown_is_bounded`]).
    pub fn stop_waits_for_app(&self) -> bool {
        !self.has_proxy && !self.app_stop_timeout_given
    }
}

/// Something that happened, fed to [`Lifecycle::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Begin: spawn the app.
    Start,
    /// One run of probe number `probe` (in the order of the configuration)
    /// passed or failed. Its thresholds and "every probe passes" make the
    /// app healthy or unhealthy (`lifecycle::health`).
    Probe { probe: usize, ok: bool },
    /// kuma-dp's ready URL answered 200.
    ProxyReady,
    /// The app's main process was reaped.
    AppExited(ExitStatus),
    /// The app could not be started (`SpawnApp` failed: no such program,
    /// an `--app-user` that cannot be switched to, ...). It never ran.
    AppSpawnFailed,
    /// kuma-dp was reaped.
    ProxyExited(ExitStatus),
    /// kuma-dp could not be spawned (`SpawnProxy` failed: its work
    /// directory, the binary, the user): a failed start, restarted with
    /// backoff and given up on like a crash.
    ProxySpawnFailed,
    /// One of the stop signals (`--stop-signals`) arrived: this one.
    Stop(Signal),
    /// A deadline from `next_deadline()` has passed.
    Tick,
    /// No descendant of meshinit is left.
    DescendantsGone,
    /// During an idle-watched drain, one reading of Envoy's stats: the
    /// inbound side has no connection and no request in flight.
    InboundIdle,
    /// During an idle-watched drain, one reading of Envoy's stats: the
    /// inbound side still has a connection or a request in flight.
    InboundBusy,
    /// During an idle-watched drain, one reading of Envoy's stats failed.
    /// After [`INBOUND_UNREADABLE_TOLERATED`] in a row the drain falls back
    /// to kuma-dp's fixed drain time.
    InboundUnreadable,
    /// An operator's request (the control socket).
    Operator(Operator),
    /// While kuma-dp runs and is watched ([`Action::WatchProxy`]): Envoy's
    /// admin API gave a complete HTTP answer (any status: `503 DRAINING`
    /// while out of the mesh is an answer).
    ProxyAnswered,
    /// The same check got no answer within its deadline (or no connection).
    ProxyUnanswered,
    /// While kuma-dp's DNS is checked ([`Action::WatchProxyDns`]): one
    /// query to it got an answer (any rcode: the listener is there).
    ProxyDnsAnswered,
}

/// Failed readings of Envoy's stats in a row before an idle-watched drain
/// falls back to kuma-dp's drain time: a few misses are tolerated (Envoy
/// busy), a steady failure means the stats are not there to be read.
pub const INBOUND_UNREADABLE_TOLERATED: u32 = 5;

/// Who a signal is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The app (its process group, or the process alone with `--forward-to process`).
    App,
    /// kuma-dp itself (never Envoy: kuma-dp owns Envoy's shutdown).
    Proxy,
}

/// How often probes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// Fast, until the app is healthy for the first time.
    Startup,
    /// At the (slower) liveness period, for as long as the app runs.
    Liveness,
    /// Stopped (a shutdown is under way).
    Off,
}

/// Why meshinit exits, decided by the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The app's own status decides (mapped by `--exit-code-map`).
    App(ExitStatus),
    /// The app was not healthy within `--startup-timeout`.
    StartupTimeout,
    /// Liveness failed with `--on-unhealthy shutdown`.
    Unhealthy,
    /// kuma-dp crashed too often or never became ready.
    ProxyFailed,
    /// The app could not be started; the driver knows why (and the code).
    AppSpawnFailed,
}

impl ExitReason {
    /// meshinit's exit code: the app's own status (128+N for a signal
    /// death) through `--exit-code-map`, or a sysexits code for what
    /// meshinit gave up on. `spawn_failed` is the code for an app that could
    /// not be started, which only the driver can tell (127 and 126 as a
    /// shell's, else `EX_OSERR`); the map never applies to it, since the
    /// app never ran to produce it.
    pub fn exit_code(self, map: &ExitCodeMap, spawn_failed: i32) -> i32 {
        match self {
            ExitReason::App(status) => map.apply(status.code()),
            ExitReason::StartupTimeout | ExitReason::Unhealthy => exit::EX_UNAVAILABLE,
            ExitReason::ProxyFailed => exit::EX_TEMPFAIL,
            ExitReason::AppSpawnFailed => spawn_failed,
        }
    }
}

/// Why a drain ended: decided here, where the drain is ended, and only
/// reported by `/metrics` and the state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// The inbound side was idle after `--drain-min` (the idle drain).
    Idle,
    /// kuma-dp exited on its own after its drain time.
    ProxyExit,
    /// `--drain-timeout` passed first.
    Timeout,
    /// `--drain-signal USR2`: the fixed inbound drain wait passed.
    Wait,
    /// `--drain-signal USR2`: the app exited during the inbound drain, so
    /// kuma-dp was no longer needed for its outbound side.
    AppExit,
    /// A second stop signal cut the shutdown short.
    CutShort,
}

impl DrainEnd {
    pub const ALL: [DrainEnd; 6] = [
        DrainEnd::Idle,
        DrainEnd::ProxyExit,
        DrainEnd::Timeout,
        DrainEnd::Wait,
        DrainEnd::AppExit,
        DrainEnd::CutShort,
    ];

    /// The name in `/metrics`' `reason` label and in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainEnd::Idle => "idle",
            DrainEnd::ProxyExit => "proxy_exit",
            DrainEnd::Timeout => "timeout",
            DrainEnd::Wait => "wait",
            DrainEnd::AppExit => "app_exit",
            DrainEnd::CutShort => "cut_short",
        }
    }
}

/// Durations of the shutdown's phases, for the one-line summary at exit,
/// `/metrics` and the state file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub drain: Duration,
    pub grace: Duration,
    pub app_stop: Duration,
    pub total: Duration,
    /// Why the drain ended, once it has (`None` without a drain).
    pub drain_end: Option<DrainEnd>,
}

/// A phase's start and end, in the lifecycle's time (since meshinit started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: Option<Duration>,
    pub end: Option<Duration>,
}

impl Span {
    fn open(&mut self, now: Duration) {
        if self.start.is_none() {
            self.start = Some(now);
        }
    }
    fn close(&mut self, now: Duration) {
        if self.is_open() {
            self.end = Some(now);
        }
    }
    fn is_open(&self) -> bool {
        self.start.is_some() && self.end.is_none()
    }
    /// How long the phase lasted, or has lasted by `now` while it runs.
    pub fn length(&self, now: Duration) -> Duration {
        match self.start {
            Some(start) => self.end.unwrap_or(now).saturating_sub(start),
            None => Duration::ZERO,
        }
    }
}

/// The shutdown as the lifecycle times it: when it began, its phases and
/// why the drain ended. Lengths are taken at a given `now`, so that
/// `/metrics` shows a phase growing while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownSpans {
    pub began: Option<Duration>,
    pub drain: Span,
    pub grace: Span,
    pub app_stop: Span,
    drain_end: Option<DrainEnd>,
}

impl ShutdownSpans {
    /// Why the drain ended, once it has.
    pub fn drain_end(&self) -> Option<DrainEnd> {
        self.drain.end.and(self.drain_end)
    }

    /// The timeline as of `now`; `None` before any shutdown began.
    pub fn timeline(&self, now: Duration) -> Option<Timeline> {
        self.began.map(|began| Timeline {
            drain: self.drain.length(now),
            grace: self.grace.length(now),
            app_stop: self.app_stop.length(now),
            total: now.saturating_sub(began),
            drain_end: self.drain_end(),
        })
    }
}

/// A decision worth a log line, with the numbers behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A probe passed its success threshold (`passing`) or its failure
    /// threshold.
    ProbeChanged {
        probe: usize,
        passing: bool,
    },
    AppHealthy,
    AppUnhealthy,
    /// The app could not be started; whatever already runs is stopped in
    /// order: `drains` when a kuma-dp that may be serving is drained first.
    AppSpawnFailed {
        drains: bool,
    },
    ProxyReady,
    /// kuma-dp exited unexpectedly; restart number `attempt` follows after `delay`.
    ProxyRestarting {
        attempt: u32,
        delay: Duration,
    },
    /// kuma-dp crashed more than the restart limit within the window.
    ProxyGaveUp {
        crashes: u32,
    },
    ProxyReadyTimeout,
    StartupTimeout,
    /// kuma-dp did not finish draining in time: it is told to stop now.
    DrainTimeout,
    /// A stop signal arrived while a shutdown was already under way without
    /// the operator having asked for one; it starts nothing new.
    StopDuringShutdown,
    /// Plain init mode: a further stop signal went to the app as it came,
    /// as tini and dumb-init pass it; nothing is cut short or escalated.
    StopForwarded,
    /// The operator's second (or third) stop signal: everything is cut short.
    Escalated {
        stops: u32,
    },
    /// The inbound side stayed idle past `--drain-idle` after `--drain-min`:
    /// kuma-dp is told to stop now instead of waiting out its drain time.
    DrainIdle {
        drained_for: Duration,
    },
    /// Envoy's stats could not be read: the drain lasts kuma-dp's drain time.
    IdleWatchUnavailable,
    /// The app outlived its stop bound and gets SIGKILL: `--app-stop-timeout`,
    /// or (`cut_short`) the short bound after the operator's second stop signal.
    AppKilled {
        cut_short: bool,
    },
    ProxyKilled,
    /// Envoy's health checks are failed: the instance is out of the mesh.
    /// `again`: re-applied on a new kuma-dp (after a restart while out).
    LeftMesh {
        reasons: OutReasons,
        again: bool,
    },
    /// Envoy's health checks pass again: back in the mesh.
    BackInMesh,
    /// Envoy's admin API stopped answering (the first missed check).
    ProxySilent,
    /// Envoy's admin API answered again after missed checks.
    ProxyAnswersAgain,
    /// Envoy's admin API has not answered for `--proxy-hang-timeout`:
    /// kuma-dp and Envoy are SIGKILLed and restarted.
    ProxyHung {
        silent_for: Duration,
    },
    /// An operator's request was not taken.
    OperatorRefused(OperatorRefused),
    /// An operator's `out` that waits for the inbound side ended, after
    /// `waited`.
    OutWaitEnded {
        end: OutWaitEnd,
        waited: Duration,
    },
    DescendantsKilled,
    /// Descendants survived SIGKILL past the last bound; meshinit exits anyway.
    DescendantsLeft,
    /// kuma-dp is ready; its DNS server is queried until it answers before
    /// the app is started (or the instance counts as ready again).
    ProxyDnsWaiting,
    /// kuma-dp's DNS server answered a query.
    ProxyDnsAnswers,
    /// kuma-dp was ready but its DNS never answered within
    /// `--proxy-ready-timeout`.
    ProxyDnsTimeout,
    /// `--drain-signal hold`: the inbound drain ended (`end`: idle or
    /// `--drain-timeout`); kuma-dp stays up, serving the app's outbound
    /// calls and DNS, until the app has exited.
    ProxyHeld {
        end: DrainEnd,
    },
    /// `--drain-signal hold`: kuma-dp exited before the app did (its drain
    /// time ran out, or it crashed): the app's outbound calls and DNS are
    /// gone; the app's stop goes on as planned.
    HeldProxyExited {
        phase: Phase,
    },
}

/// What the driver must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    SpawnApp,
    /// Spawn kuma-dp and poll its ready URL until it answers 200, then feed
    /// `ProxyReady`; feed `ProxySpawnFailed` when it cannot be spawned.
    SpawnProxy,
    Signal(Target, Signal),
    /// SIGKILL the target's whole process group; for kuma-dp also its
    /// descendants (Envoy runs in a process group of its own).
    Kill(Target),
    /// SIGTERM every remaining descendant of meshinit.
    TermDescendants,
    /// SIGKILL every remaining descendant of meshinit.
    KillDescendants,
    Probes(ProbeMode),
    /// The service's readiness changed (status `/ready`, sd_notify READY=1).
    Ready(bool),
    /// A new phase began.
    Enter(Phase),
    Event(Event),
    /// Start (`true`) or stop watching the inbound side's load in Envoy's
    /// stats; readings come back as `InboundIdle` / `InboundUnreadable`.
    WatchInbound(bool),
    /// Take the instance out of the mesh or put it back (Envoy's admin API).
    Membership(MeshCall),
    /// Start (`true`) or stop checking that Envoy's admin API answers;
    /// results come back as `ProxyAnswered` / `ProxyUnanswered`.
    WatchProxy(bool),
    /// Start (`true`) or stop querying kuma-dp's DNS server
    /// ([`Settings::proxy_dns`]), retried with a short per-query timeout;
    /// the first answer comes back as `ProxyDnsAnswered`.
    WatchProxyDns(bool),
    /// Exit now. `timeline` is set when a shutdown took place.
    Exit {
        reason: ExitReason,
        timeline: Option<Timeline>,
    },
}

/// The state machine. See the module documentation.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    s: Settings,
    phase: Phase,
    app: App,
    proxy: Proxy,
    /// Each probe's standing; `healthy` is "all pass" as last acted on.
    probes: Vec<health::Probe>,
    healthy: bool,
    ready: bool,
    stops: u32,
    /// The first stop signal received: the app's stop signal with
    /// `pass_stop_signal`.
    stop_received: Option<Signal>,
    escalated: bool,
    reason: Option<ExitReason>,
    proxy_crashes: Vec<Duration>,
    descendants_termed: bool,
    idle_watch: InboundWatch,
    timers: Timers,
    spans: ShutdownSpans,
    /// Why the instance should be out of the mesh.
    out: OutReasons,
    /// What meshinit last asked of the current kuma-dp's Envoy.
    envoy_hc: EnvoyHc,
    /// The instance was taken out (a `Leave` call went out) and not yet
    /// put back: a new kuma-dp gets the call again.
    left: bool,
    /// The current kuma-dp is watched for a hang ([`Action::WatchProxy`]).
    hang_watch: bool,
    /// Its admin API missed checks since its last answer.
    silent: bool,
    /// The last answer of its admin API (or its readiness): the hang
    /// clock's start; `None` until either.
    hang_from: Option<Duration>,
    /// An operator's `out` waits for the inbound side to go idle, since then.
    out_wait: Option<Duration>,
    /// The current kuma-dp was found hung and SIGKILLed; it is not ready.
    hung: bool,
    /// The current kuma-dp is ready and its DNS is being queried
    /// ([`Action::WatchProxyDns`]): the start waits for an answer.
    dns_wait: bool,
}

/// What meshinit asked of the current Envoy's health checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EnvoyHc {
    /// Nothing: a new Envoy passes them.
    Untouched,
    Failed,
    Passed,
}

/// Whether the drain watches the inbound side for idleness (`--drain-idle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InboundWatch {
    Off,
    /// Watching; `unreadable` failed readings of Envoy's stats in a row.
    On {
        unreadable: u32,
    },
}

/// The app's main process, as far as the lifecycle knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    /// Not spawned yet: with `--start-order proxy-first` it waits for kuma-dp.
    NotStarted,
    /// Spawned, and not sent its stop signal.
    Running,
    /// Sent its stop signal (once: a second one could make it skip its own
    /// clean shutdown); SIGKILL follows when it outlives the bound.
    Stopping,
    /// Reaped with this status; `None` when it could not be started.
    Gone(Option<ExitStatus>),
}

impl App {
    fn alive(self) -> bool {
        matches!(self, App::Running | App::Stopping)
    }
}

/// The current kuma-dp process. `terms` counts the SIGTERMs sent to it:
/// kuma-dp drains on the first and stops at once on the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxy {
    /// Not running: not spawned yet, exited (a restart may be timed), or
    /// given up on.
    Down,
    /// Spawned; its ready URL has not answered 200 yet.
    Starting { terms: u32 },
    /// Its ready URL answered 200: Envoy is live.
    Ready { terms: u32 },
}

impl Proxy {
    fn alive(self) -> bool {
        self != Proxy::Down
    }

    fn terms(self) -> u32 {
        match self {
            Proxy::Down => 0,
            Proxy::Starting { terms } | Proxy::Ready { terms } => terms,
        }
    }
}

impl Lifecycle {
    /// A state machine in [`Phase::Starting`]; feed it `Input::Start`.
    pub fn new(settings: Settings) -> Lifecycle {
        Lifecycle {
            probes: settings
                .probes
                .iter()
                .map(|t| health::Probe::new(*t))
                .collect(),
            s: settings,
            phase: Phase::Starting,
            app: App::NotStarted,
            proxy: Proxy::Down,
            healthy: false,
            ready: false,
            stops: 0,
            stop_received: None,
            escalated: false,
            reason: None,
            proxy_crashes: Vec::new(),
            descendants_termed: false,
            idle_watch: InboundWatch::Off,
            timers: Timers::default(),
            spans: ShutdownSpans::default(),
            out: OutReasons::default(),
            envoy_hc: EnvoyHc::Untouched,
            left: false,
            hang_watch: false,
            silent: false,
            hang_from: None,
            out_wait: None,
            hung: false,
            dns_wait: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// The signal the app is (or will be) stopped with: the first stop
    /// signal received when it is passed through, else `--app-stop-signal`.
    pub fn app_stop_signal(&self) -> Signal {
        match self.stop_received {
            Some(received) if self.s.pass_stop_signal => received,
            _ => self.s.app_stop_signal,
        }
    }

    /// The service can take traffic: running, the app healthy, kuma-dp
    /// ready (`Action::Ready` reports each change).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The app counts as healthy (`/status`' `healthy`, `meshinit_healthy`):
    /// it runs and its probes pass; with no probe at all, it runs. That is
    /// how Kubernetes treats a container without a readiness probe (ready
    /// once started), and what `/ready` already said of such an app. An app
    /// that has exited is not healthy, whatever its probes said last.
    pub fn is_healthy(&self) -> bool {
        self.healthy && matches!(self.app, App::Running | App::Stopping)
    }

    /// What `/ready` says: `ready`, or why not (the phase; a running app
    /// failing its liveness probes is named as such, since the phase alone
    /// would read as ready).
    pub fn ready_text(&self) -> &'static str {
        if self.ready {
            return "ready";
        }
        if self.phase != Phase::Running {
            return self.phase.as_str();
        }
        if self.hung {
            return "running (kuma-dp hung)";
        }
        match (self.out.operator, self.out.unhealthy, self.healthy) {
            (true, true, _) => "running (out of the mesh: operator, app unhealthy)",
            (true, false, false) => "running (out of the mesh: operator; app unhealthy)",
            (true, false, true) => "running (out of the mesh: operator)",
            (false, true, _) => "running (out of the mesh: app unhealthy)",
            (false, false, false) => "running (app unhealthy)",
            (false, false, true) => self.phase.as_str(),
        }
    }

    /// Why the instance is (or is to be) out of the mesh; none: in.
    pub fn out_reasons(&self) -> OutReasons {
        self.out
    }

    /// Whether the instance is a member of the mesh as far as meshinit
    /// acts on it: kuma-dp is managed and no reason holds it out.
    pub fn in_mesh(&self) -> bool {
        self.s.has_proxy && !self.out.any()
    }

    /// The shutdown as timed so far (phases, why the drain ended), for
    /// `/metrics`, which takes the lengths at scrape time.
    pub fn shutdown_spans(&self) -> ShutdownSpans {
        self.spans
    }

    /// The longest the shutdown under way can still take: the worst case
    /// less the time since it began (the whole worst case before one has
    /// begun). systemd is told this (EXTEND_TIMEOUT_USEC) so that it does
    /// not cut a long drain short.
    pub fn shutdown_time_left(&self, now: Duration) -> Duration {
        let spent = self
            .spans
            .began
            .map_or(Duration::ZERO, |start| now.saturating_sub(start));
        self.s.worst_case_shutdown().saturating_sub(spent)
    }

    /// Whether `DescendantsGone` would move the machine on: the clean-up
    /// has signalled the descendants and waits for them to go. The driver
    /// looks for them only then (a walk of /proc per reaped orphan would
    /// cost every busy app).
    pub fn awaits_descendants(&self) -> bool {
        self.phase == Phase::Cleanup && self.descendants_termed && !self.proxy.alive()
    }

    /// Crashes of kuma-dp that still count towards the restart limit.
    pub fn proxy_restarts(&self) -> usize {
        self.proxy_crashes.len()
    }

    /// The earliest pending deadline; the driver sleeps until then (or until
    /// something else happens). `None`: nothing is timed, sleep until an event.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.next()
    }

    /// Advance the machine. `now` is the time since meshinit started and must
    /// not go backwards.
    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Done {
            return out;
        }
        match input {
            Input::Start => self.on_start(now, &mut out),
            Input::Probe { probe, ok } => self.on_probe(now, probe, ok, &mut out),
            Input::ProxyReady => self.on_proxy_ready(now, &mut out),
            Input::AppExited(status) => self.on_app_exited(now, status, &mut out),
            Input::AppSpawnFailed => self.on_app_spawn_failed(now, &mut out),
            Input::ProxyExited(status) => self.on_proxy_exited(now, status, &mut out),
            Input::ProxySpawnFailed => self.on_proxy_spawn_failed(now, &mut out),
            Input::Stop(signal) => self.on_stop(now, signal, &mut out),
            Input::Tick => self.on_tick(now, &mut out),
            Input::DescendantsGone => self.on_descendants_gone(now, &mut out),
            Input::InboundIdle => self.on_inbound_load(now, true),
            Input::InboundBusy => self.on_inbound_load(now, false),
            Input::InboundUnreadable => self.on_inbound_unreadable(now, &mut out),
            Input::Operator(op) => self.on_operator(now, op, &mut out),
            Input::ProxyAnswered => self.on_proxy_answer(now, true, &mut out),
            Input::ProxyUnanswered => self.on_proxy_answer(now, false, &mut out),
            Input::ProxyDnsAnswered => self.on_proxy_dns_answered(now, &mut out),
        }
        self.sync_membership(&mut out);
        self.sync_ready(&mut out);
        out
    }

    fn enter(&mut self, phase: Phase, out: &mut Vec<Action>) {
        if self.phase != phase {
            self.phase = phase;
            out.push(Action::Enter(phase));
        }
    }

    fn sync_ready(&mut self, out: &mut Vec<Action>) {
        let ready = self.phase == Phase::Running
            && self.healthy
            && !self.out.operator
            && !self.hung
            && !self.dns_wait
            && (!self.s.has_proxy || matches!(self.proxy, Proxy::Ready { .. }));
        if ready != self.ready {
            self.ready = ready;
            out.push(Action::Ready(ready));
        }
    }

    fn on_start(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.phase != Phase::Starting {
            return;
        }
        if self.s.has_proxy && self.s.start_order == StartOrder::ProxyFirst {
            self.spawn_proxy(now, out);
        } else {
            self.start_app(now, out);
        }
    }

    fn start_app(&mut self, now: Duration, out: &mut Vec<Action>) {
        out.push(Action::SpawnApp);
        self.app = App::Running;
        if self.s.has_probes() {
            self.enter(Phase::Probing, out);
            out.push(Action::Probes(ProbeMode::Startup));
            self.timers
                .set(Timer::Startup, now.saturating_add(self.s.startup_timeout));
        } else {
            self.healthy = true;
            self.after_healthy(now, out);
        }
    }

    /// The app is healthy for the first time: start the proxy, or run.
    fn after_healthy(&mut self, now: Duration, out: &mut Vec<Action>) {
        if !self.s.has_proxy || (matches!(self.proxy, Proxy::Ready { .. }) && !self.dns_wait) {
            self.enter(Phase::Running, out);
        } else if self.proxy.alive() || self.timers.get(Timer::ProxyRestart).is_some() {
            // Proxy first: it is (re)starting; its readiness completes the start.
            self.enter(Phase::ProxyStarting, out);
        } else {
            self.spawn_proxy(now, out);
        }
    }

    fn spawn_proxy(&mut self, now: Duration, out: &mut Vec<Action>) {
        // A proxy-first restart while the app is still being probed stays
        // in `probing`: the app's health is what is awaited there.
        let app_still_probed = self.phase == Phase::Probing && !self.healthy;
        if !app_still_probed {
            self.enter(Phase::ProxyStarting, out);
        }
        out.push(Action::SpawnProxy);
        self.proxy = Proxy::Starting { terms: 0 };
        self.hung = false;
        self.stop_dns_watch(out);
        self.timers.clear(Timer::ProxyRestart);
        // Envoy's admin API is checked from the spawn on, but a starting
        // proxy is only judged once it has answered or is ready: until
        // then `--proxy-ready-timeout` is what bounds its start.
        if self.s.proxy_hang_timeout.is_some() {
            self.stop_hang_watch(out);
            self.hang_watch = true;
            out.push(Action::WatchProxy(true));
        }
        self.timers.set(
            Timer::ProxyReady,
            now.saturating_add(self.s.proxy_ready_timeout),
        );
    }

    /// A probe's result: the probe's standing, then the app's health when
    /// "every probe passes" changed.
    fn on_probe(&mut self, now: Duration, probe: usize, ok: bool, out: &mut Vec<Action>) {
        let Some(p) = self.probes.get_mut(probe) else {
            return;
        };
        if p.record(ok) {
            let passing = p.passing();
            out.push(Action::Event(Event::ProbeChanged { probe, passing }));
        }
        let all_pass = self.probes.iter().all(health::Probe::passing);
        if all_pass && !self.healthy {
            self.on_healthy(now, out);
        } else if !all_pass && self.healthy {
            self.on_unhealthy(now, out);
        }
    }

    /// Probe number `probe` passes (after its thresholds), and its
    /// failures in a row; `None` for a probe that is not configured.
    pub fn probe_standing(&self, probe: usize) -> Option<(bool, u32)> {
        self.probes
            .get(probe)
            .map(|p| (p.passing(), p.failures_in_row()))
    }

    fn on_healthy(&mut self, now: Duration, out: &mut Vec<Action>) {
        let was = self.healthy;
        self.healthy = true;
        self.out.unhealthy = false;
        if self.phase == Phase::Probing {
            self.timers.clear(Timer::Startup);
            out.push(Action::Event(Event::AppHealthy));
            out.push(Action::Probes(ProbeMode::Liveness));
            self.after_healthy(now, out);
        } else if !was && !self.phase.is_shutdown() {
            out.push(Action::Event(Event::AppHealthy));
        }
    }

    fn on_unhealthy(&mut self, now: Duration, out: &mut Vec<Action>) {
        // During startup a failing probe is expected: only the startup
        // timeout ends that phase.
        if !matches!(self.phase, Phase::Running | Phase::ProxyStarting) || !self.healthy {
            return;
        }
        self.healthy = false;
        out.push(Action::Event(Event::AppUnhealthy));
        if self.s.on_unhealthy == OnUnhealthy::Leave && self.s.has_proxy {
            // Carried out by `sync_membership` once kuma-dp is ready.
            self.out.unhealthy = true;
        }
        if self.s.on_unhealthy == OnUnhealthy::Shutdown {
            self.reason.get_or_insert(ExitReason::Unhealthy);
            self.begin_shutdown(now, out);
        }
    }

    fn on_proxy_ready(&mut self, now: Duration, out: &mut Vec<Action>) {
        let waiting = matches!(self.phase, Phase::ProxyStarting | Phase::Probing);
        let Proxy::Starting { terms } = self.proxy else {
            return;
        };
        if !waiting {
            return;
        }
        self.proxy = Proxy::Ready { terms };
        out.push(Action::Event(Event::ProxyReady));
        if let (true, Some(timeout)) = (self.hang_watch, self.s.proxy_hang_timeout) {
            if self.hang_from.is_none() {
                self.hang_from = Some(now);
                self.timers
                    .set(Timer::ProxyHang, now.saturating_add(timeout));
            }
        }
        if self.s.proxy_dns.is_some() {
            // Ready is not enough with redirection: the app's lookups go to
            // kuma-dp's DNS, which kuma-dp's readiness does not wait for
            // (CoreDNS never; the embedded proxy's first map at most 15 s).
            // `--proxy-ready-timeout` keeps bounding the start.
            self.dns_wait = true;
            out.push(Action::WatchProxyDns(true));
            out.push(Action::Event(Event::ProxyDnsWaiting));
            return;
        }
        self.proxy_usable(now, out);
    }

    /// kuma-dp's DNS answered: the start goes on as on its readiness.
    fn on_proxy_dns_answered(&mut self, now: Duration, out: &mut Vec<Action>) {
        if !self.dns_wait {
            return;
        }
        self.stop_dns_watch(out);
        out.push(Action::Event(Event::ProxyDnsAnswers));
        self.proxy_usable(now, out);
    }

    fn stop_dns_watch(&mut self, out: &mut Vec<Action>) {
        if self.dns_wait {
            self.dns_wait = false;
            out.push(Action::WatchProxyDns(false));
        }
    }

    /// kuma-dp is ready (and its DNS answers, when that is asked for): the
    /// app starts (proxy first), or the service runs.
    fn proxy_usable(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.timers.clear(Timer::ProxyReady);
        if self.app == App::NotStarted {
            self.start_app(now, out);
        } else if self.phase == Phase::ProxyStarting {
            // A restarted kuma-dp: the app was healthy before it (the app
            // first starts kuma-dp once healthy), and may have turned
            // unhealthy during the restart; running either way (`/ready`
            // says whether it serves). Waiting for its health here left the
            // phase at proxy-starting for good, since a probe recovery only
            // moves `probing` on.
            self.enter(Phase::Running, out);
        }
    }

    fn on_app_exited(&mut self, now: Duration, status: ExitStatus, out: &mut Vec<Action>) {
        if !self.app.alive() {
            return;
        }
        self.app = App::Gone(Some(status));
        self.timers.clear(Timer::AppKill);
        match self.phase {
            Phase::Starting | Phase::Probing | Phase::ProxyStarting => {
                // Nothing was serving: no drain is owed to anyone.
                self.mark_shutdown(now, out);
                self.cleanup(now, out);
            }
            Phase::Running => {
                self.mark_shutdown(now, out);
                if self.s.has_proxy && self.proxy.alive() {
                    // Clients must stop sending before the proxy goes, even
                    // though the app is already gone: drain with SIGTERM.
                    self.start_drain(now, Signal::SIGTERM, self.s.drain_timeout, out);
                } else {
                    self.cleanup(now, out);
                }
            }
            // An inbound-only drain exists to keep the app's outbound side
            // up while it finishes; with the app gone, kuma-dp may go now.
            Phase::Draining if matches!(self.s.drain_mode, DrainMode::InboundUsr2 { .. }) => {
                self.drain_ends(DrainEnd::AppExit);
                self.after_drain(now, out)
            }
            // Still draining: the proxy's exit decides what comes next, and
            // then no grace is owed to an app that is gone. In hold mode the
            // idle rule (or `--drain-timeout`) still ends the inbound drain
            // (clients must stop sending first, as with TERM); kuma-dp then
            // gets its second SIGTERM in the clean-up.
            Phase::Draining => {}
            Phase::Grace | Phase::Stopping => self.cleanup(now, out),
            Phase::Cleanup | Phase::Done => {}
        }
    }

    /// Every failure goes through the lifecycle: a kuma-dp already started
    /// (with `--start-order proxy-first` it is ready, so registered) is
    /// drained and stopped as if the app had exited while serving, and the
    /// descendants are cleaned up, before meshinit exits.
    fn on_app_spawn_failed(&mut self, now: Duration, out: &mut Vec<Action>) {
        if !self.app.alive() {
            return;
        }
        let drains = self.proxy.alive() && !self.phase.is_shutdown();
        out.push(Action::Event(Event::AppSpawnFailed { drains }));
        self.reason.get_or_insert(ExitReason::AppSpawnFailed);
        if drains {
            self.app = App::Gone(None);
            self.timers.clear(Timer::AppKill);
            self.mark_shutdown(now, out);
            self.start_drain(now, Signal::SIGTERM, self.s.drain_timeout, out);
        } else {
            // Nothing was serving, or a shutdown is already under way: as
            // for an app that exited (its status is never reported: the
            // reason above decides the exit code).
            self.on_app_exited(now, ExitStatus::Code(0), out);
        }
    }

    fn on_proxy_exited(&mut self, now: Duration, _status: ExitStatus, out: &mut Vec<Action>) {
        if self.proxy.alive() {
            self.proxy_gone(now, out);
        }
    }

    /// kuma-dp is gone (exited, killed, or never spawned): a crash while
    /// starting or serving, the end of a drain, or one less thing to wait
    /// for in the clean-up.
    fn proxy_gone(&mut self, now: Duration, out: &mut Vec<Action>) {
        // Held (one SIGTERM, the drain not cut short) and gone before the
        // app: its drain time ran out or it crashed. Nothing can bring the
        // outbound side back; the app's stop goes on as planned.
        if self.s.drain_mode == DrainMode::Hold
            && self.proxy.terms() == 1
            && matches!(self.phase, Phase::Draining | Phase::Grace | Phase::Stopping)
            && self.app.alive()
            && !self.escalated
        {
            out.push(Action::Event(Event::HeldProxyExited { phase: self.phase }));
        }
        self.proxy = Proxy::Down;
        self.hung = false;
        self.stop_dns_watch(out);
        self.stop_hang_watch(out);
        self.end_out_wait(now, OutWaitEnd::NotServing, out);
        self.timers.clear(Timer::ProxyReady);
        self.timers.clear(Timer::ProxyTerm2);
        self.timers.clear(Timer::ProxyKill);
        match self.phase {
            Phase::ProxyStarting | Phase::Running | Phase::Probing => self.proxy_crashed(now, out),
            // Whether it finished its drain or was killed in the middle of
            // it, nothing is left to wait for.
            Phase::Draining => {
                self.drain_ends(DrainEnd::ProxyExit);
                self.after_drain(now, out)
            }
            Phase::Cleanup => self.maybe_term_descendants(now, out),
            _ => {}
        }
    }

    /// Only the start just asked for can fail to spawn (a kuma-dp already
    /// ready is not this report's); it is gone as if it had exited at once.
    fn on_proxy_spawn_failed(&mut self, now: Duration, out: &mut Vec<Action>) {
        if matches!(self.proxy, Proxy::Starting { .. }) {
            self.proxy_gone(now, out);
        }
    }

    fn proxy_crashed(&mut self, now: Duration, out: &mut Vec<Action>) {
        let window = self.s.proxy_restart_window;
        self.proxy_crashes
            .retain(|t| now.saturating_sub(*t) < window);
        self.proxy_crashes.push(now);
        let crashes = self.proxy_crashes.len() as u32;
        if crashes > self.s.proxy_max_restarts {
            out.push(Action::Event(Event::ProxyGaveUp { crashes }));
            self.reason.get_or_insert(ExitReason::ProxyFailed);
            self.begin_shutdown(now, out);
            return;
        }
        let exp = crashes.saturating_sub(1).min(16);
        let delay = self
            .s
            .proxy_backoff_initial
            .saturating_mul(1 << exp)
            .min(self.s.proxy_backoff_max);
        out.push(Action::Event(Event::ProxyRestarting {
            attempt: crashes,
            delay,
        }));
        self.timers
            .set(Timer::ProxyRestart, now.saturating_add(delay));
        if self.phase != Phase::Probing {
            self.enter(Phase::ProxyStarting, out);
        }
    }

    /// Whether stop signals keep tini's and dumb-init's meaning: plain init
    /// mode (no proxy). Each one reaches the app and the app decides; a
    /// second Ctrl-C is not an escalation (an interactive REPL, or any app
    /// that handles INT and carries on, must not be SIGKILLed for it), and
    /// the app is SIGKILLed after `--app-stop-timeout` only when that was
    /// given explicitly. With a proxy the ordered, budgeted stop stays: a
    /// second stop signal cuts it short, a third kills everything.
    fn forwards_stop_signals(&self) -> bool {
        !self.s.has_proxy
    }

    /// Whether the stop under way is bounded by meshinit's own SIGKILL:
    /// always with a proxy or for a shutdown meshinit began itself (failed
    /// probes, an app that could not start: no platform is counting then);
    /// in plain init mode after a stop signal only with an explicit
    /// `--app-stop-timeout`. Unbounded, the platform's stop timeout (docker
    /// stop -t, TimeoutStopSec, kill_timeout) ends it, and systemd is not
    /// asked to extend that (no EXTEND_TIMEOUT_USEC).
    pub fn shutdown_is_bounded(&self) -> bool {
        !self.forwards_stop_signals() || self.s.app_stop_timeout_given || self.reason.is_some()
    }

    fn on_stop(&mut self, now: Duration, signal: Signal, out: &mut Vec<Action>) {
        self.stops += 1;
        self.stop_received.get_or_insert(signal);
        if self.forwards_stop_signals() {
            return self.forward_stop(now, signal, out);
        }
        match self.stops {
            1 if !self.phase.is_shutdown() => self.begin_shutdown(now, out),
            1 => out.push(Action::Event(Event::StopDuringShutdown)),
            2 => self.escalate(now, out),
            _ => self.kill_everything(now, out),
        }
    }

    /// A stop signal in plain init mode: the first (or the first while the
    /// app still runs unsignalled, e.g. during `--app-grace-delay`) stops
    /// the app as usual; every later one reaches the app as it came.
    fn forward_stop(&mut self, now: Duration, signal: Signal, out: &mut Vec<Action>) {
        match self.app {
            App::NotStarted | App::Running if !self.phase.is_shutdown() => {
                self.begin_shutdown(now, out)
            }
            App::Running => self.stop_app(now, out),
            App::Stopping => {
                out.push(Action::Event(Event::StopForwarded));
                signal_and_continue(Target::App, signal, out);
            }
            // The app is gone: the clean-up under way goes on as it is.
            App::NotStarted | App::Gone(_) => {}
        }
    }

    /// Record the start of a shutdown for the timeline and stop probing.
    fn mark_shutdown(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.spans.began.is_none() {
            self.spans.began = Some(now);
            if self.s.has_probes() {
                out.push(Action::Probes(ProbeMode::Off));
            }
        }
        for timer in [Timer::Startup, Timer::ProxyReady, Timer::ProxyRestart] {
            self.timers.clear(timer);
        }
        // A proxy that hangs now is bounded by the shutdown's own waits
        // (drain timeout, SIGKILL).
        self.stop_hang_watch(out);
        self.stop_dns_watch(out);
        self.end_out_wait(now, OutWaitEnd::ShuttingDown, out);
    }

    /// The operator's hold, taken or lifted. Without kuma-dp there is no
    /// mesh to leave; during a shutdown the instance is leaving anyway.
    fn on_operator(&mut self, now: Duration, op: Operator, out: &mut Vec<Action>) {
        if !self.s.has_proxy {
            out.push(Action::Event(Event::OperatorRefused(
                OperatorRefused::NoProxy,
            )));
            return;
        }
        if self.phase.is_shutdown() {
            out.push(Action::Event(Event::OperatorRefused(
                OperatorRefused::ShuttingDown,
            )));
            return;
        }
        match op {
            Operator::In => {
                self.out.operator = false;
                self.end_out_wait(now, OutWaitEnd::Cancelled, out);
            }
            Operator::Out { wait } => {
                self.out.operator = true;
                if wait && self.out_wait.is_none() {
                    self.begin_out_wait(now, out);
                }
            }
        }
    }

    /// `ctl out` waits for the inbound side to be idle by the drain's rule:
    /// at least `--drain-min` (the time clients need to drop the endpoint)
    /// and `--drain-idle` without a connection or request, at most
    /// `--drain-timeout`. Envoy's stats are read as for the drain.
    fn begin_out_wait(&mut self, now: Duration, out: &mut Vec<Action>) {
        let serving = matches!(self.proxy, Proxy::Ready { .. }) && !self.hung;
        let end = match (self.s.idle_drain, serving) {
            (_, false) => OutWaitEnd::NotServing,
            (None, true) => OutWaitEnd::NoIdleRule,
            (Some(_), true) => {
                self.out_wait = Some(now);
                self.timers.set(
                    Timer::OutWaitTimeout,
                    now.saturating_add(self.s.drain_timeout),
                );
                if self.idle_watch == InboundWatch::Off {
                    self.idle_watch = InboundWatch::On { unreadable: 0 };
                    out.push(Action::WatchInbound(true));
                }
                return;
            }
        };
        out.push(Action::Event(Event::OutWaitEnded {
            end,
            waited: Duration::ZERO,
        }));
    }

    fn end_out_wait(&mut self, now: Duration, end: OutWaitEnd, out: &mut Vec<Action>) {
        let Some(since) = self.out_wait.take() else {
            return;
        };
        self.timers.clear(Timer::OutIdle);
        self.timers.clear(Timer::OutWaitTimeout);
        if self.phase != Phase::Draining {
            self.stop_idle_watch(out);
        }
        out.push(Action::Event(Event::OutWaitEnded {
            end,
            waited: now.saturating_sub(since),
        }));
    }

    /// kuma-dp is ready (and not hung): Envoy takes calls, and serves.
    pub fn is_proxy_serving(&self) -> bool {
        matches!(self.proxy, Proxy::Ready { .. }) && !self.hung
    }

    /// An operator's `out` is waiting for the inbound side to go idle.
    pub fn waits_for_idle_out(&self) -> bool {
        self.out_wait.is_some()
    }

    /// Takes the instance out of the mesh or puts it back when what is
    /// wanted and what the current Envoy was told differ. Only a ready
    /// kuma-dp is called (its Envoy must be up to take it); a new kuma-dp
    /// gets `Leave` again once ready; a shutdown stops every call (kuma-dp
    /// fails the health checks itself on SIGTERM).
    fn sync_membership(&mut self, out: &mut Vec<Action>) {
        let callable = matches!(self.proxy, Proxy::Ready { .. })
            && !self.hung
            && !self.phase.is_shutdown()
            && self.phase != Phase::Done;
        if !callable {
            if self.envoy_hc != EnvoyHc::Untouched {
                self.envoy_hc = EnvoyHc::Untouched;
                out.push(Action::Membership(MeshCall::Stop));
            }
            return;
        }
        match (self.out.any(), self.envoy_hc) {
            (true, EnvoyHc::Untouched | EnvoyHc::Passed) => {
                self.envoy_hc = EnvoyHc::Failed;
                out.push(Action::Membership(MeshCall::Leave));
                out.push(Action::Event(Event::LeftMesh {
                    reasons: self.out,
                    again: self.left,
                }));
                self.left = true;
            }
            (false, EnvoyHc::Failed) => {
                self.envoy_hc = EnvoyHc::Passed;
                self.left = false;
                out.push(Action::Membership(MeshCall::Rejoin));
                out.push(Action::Event(Event::BackInMesh));
            }
            // A new Envoy passes its health checks: nothing to call.
            (false, EnvoyHc::Untouched) if self.left => {
                self.left = false;
                out.push(Action::Event(Event::BackInMesh));
            }
            _ => {}
        }
    }

    /// One check of Envoy's admin API: an answer restarts the hang clock
    /// (which runs once kuma-dp has answered or is ready). A hang is
    /// silence on checks that were made: at least one missed check, and
    /// `--proxy-hang-timeout` since the last answer; whichever of the two
    /// comes last decides (so a timeout shorter than the checks' period
    /// cannot call a proxy hung that was simply not asked yet).
    fn on_proxy_answer(&mut self, now: Duration, answered: bool, out: &mut Vec<Action>) {
        let Some(timeout) = self.s.proxy_hang_timeout else {
            return;
        };
        if !self.hang_watch || !self.proxy.alive() || self.hung {
            return;
        }
        if answered {
            if self.silent {
                self.silent = false;
                out.push(Action::Event(Event::ProxyAnswersAgain));
            }
            self.hang_from = Some(now);
            self.timers
                .set(Timer::ProxyHang, now.saturating_add(timeout));
        } else if let Some(from) = self.hang_from {
            if !self.silent {
                self.silent = true;
                out.push(Action::Event(Event::ProxySilent));
            }
            if now >= from.saturating_add(timeout) {
                self.proxy_hung(now, from, out);
            }
        }
    }

    /// A hung Envoy cannot drain: SIGKILL (kuma-dp and Envoy), and the
    /// restart follows from kuma-dp's exit (backoff, restart budget).
    fn proxy_hung(&mut self, now: Duration, since: Duration, out: &mut Vec<Action>) {
        let silent_for = now.saturating_sub(since);
        out.push(Action::Event(Event::ProxyHung { silent_for }));
        self.hung = true;
        self.stop_hang_watch(out);
        self.end_out_wait(now, OutWaitEnd::NotServing, out);
        out.push(Action::Kill(Target::Proxy));
    }

    fn stop_hang_watch(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(Timer::ProxyHang);
        self.silent = false;
        self.hang_from = None;
        if self.hang_watch {
            self.hang_watch = false;
            out.push(Action::WatchProxy(false));
        }
    }

    /// The orderly shutdown, from wherever the service is.
    fn begin_shutdown(&mut self, now: Duration, out: &mut Vec<Action>) {
        let phase = self.phase;
        self.mark_shutdown(now, out);
        match phase {
            Phase::Starting | Phase::Probing => {
                // With --start-order proxy-first kuma-dp already runs; the
                // app never served, so it is stopped, not drained.
                self.stop_proxy_fast(now, out);
                self.stop_app(now, out);
            }
            // Once spawned, kuma-dp may already be registered and receiving
            // traffic (kuma-cp counts an inbound without a serviceProbe
            // healthy as soon as kuma-dp connects): it is drained first, as
            // while running (the idle drain ends it quickly when nothing
            // flows). One that never became ready in time is not serving:
            // it is stopped promptly.
            Phase::ProxyStarting | Phase::Running
                if self.proxy.alive() && self.reason != Some(ExitReason::ProxyFailed) =>
            {
                let (signal, wait) = match self.s.drain_mode {
                    DrainMode::Term => (Signal::SIGTERM, self.s.drain_timeout),
                    DrainMode::InboundUsr2 { wait } => {
                        (Signal::SIGUSR2, wait.min(self.s.drain_timeout))
                    }
                    DrainMode::Hold => (Signal::SIGTERM, self.s.drain_timeout),
                };
                self.start_drain(now, signal, wait, out);
            }
            Phase::ProxyStarting => {
                // Waiting to restart a crashed kuma-dp, or giving up on one
                // that never became ready: nothing to drain.
                self.stop_proxy_fast(now, out);
                self.stop_app(now, out);
            }
            Phase::Running => self.start_grace(now, out),
            _ => {}
        }
    }

    fn start_drain(
        &mut self,
        now: Duration,
        signal: Signal,
        wait: Duration,
        out: &mut Vec<Action>,
    ) {
        self.enter(Phase::Draining, out);
        self.spans.drain.open(now);
        self.send_proxy(signal, out);
        self.timers.set(Timer::Drain, now.saturating_add(wait));
        if signal == Signal::SIGTERM && self.s.idle_drain.is_some() && !self.escalated {
            self.idle_watch = InboundWatch::On { unreadable: 0 };
            out.push(Action::WatchInbound(true));
        }
    }

    fn stop_idle_watch(&mut self, out: &mut Vec<Action>) {
        self.timers.clear(Timer::DrainIdle);
        if self.idle_watch != InboundWatch::Off {
            self.idle_watch = InboundWatch::Off;
            out.push(Action::WatchInbound(false));
        }
    }

    /// Idle now: the drain may end once it has lasted `--drain-min` and the
    /// idleness `--drain-idle`; busy again: the drain goes on.
    fn on_inbound_load(&mut self, now: Duration, idle: bool) {
        let Some(cfg) = self.s.idle_drain else { return };
        if self.idle_watch == InboundWatch::Off {
            return;
        }
        // The drain's, or an operator's `out` waiting (the same rule).
        let (timer, start) = match (self.phase, self.out_wait) {
            (Phase::Draining, _) => (Timer::DrainIdle, self.spans.drain.start),
            (_, Some(since)) => (Timer::OutIdle, Some(since)),
            _ => return,
        };
        self.idle_watch = InboundWatch::On { unreadable: 0 };
        if !idle {
            self.timers.clear(timer);
        } else if self.timers.get(timer).is_none() {
            let start = start.unwrap_or(now);
            self.timers.set(
                timer,
                start
                    .saturating_add(cfg.min)
                    .max(now.saturating_add(cfg.idle)),
            );
        }
    }

    fn on_inbound_unreadable(&mut self, now: Duration, out: &mut Vec<Action>) {
        let InboundWatch::On { unreadable } = &mut self.idle_watch else {
            return;
        };
        *unreadable += 1;
        if *unreadable < INBOUND_UNREADABLE_TOLERATED {
            return;
        }
        if self.phase == Phase::Draining {
            out.push(Action::Event(Event::IdleWatchUnavailable));
            self.stop_idle_watch(out);
        } else {
            self.end_out_wait(now, OutWaitEnd::Unreadable, out);
        }
    }

    fn send_proxy(&mut self, signal: Signal, out: &mut Vec<Action>) {
        if signal == Signal::SIGTERM {
            if let Proxy::Starting { terms } | Proxy::Ready { terms } = &mut self.proxy {
                *terms += 1;
            }
        }
        signal_and_continue(Target::Proxy, signal, out);
    }

    /// SIGTERM now, a second SIGTERM ("stop now") and SIGKILL after short bounds.
    fn stop_proxy_fast(&mut self, now: Duration, out: &mut Vec<Action>) {
        if !self.proxy.alive() {
            return;
        }
        if self.proxy.terms() == 0 {
            self.send_proxy(Signal::SIGTERM, out);
            self.timers
                .set(Timer::ProxyTerm2, now.saturating_add(self.s.kill_bound));
            self.timers.set(
                Timer::ProxyKill,
                now.saturating_add(self.s.kill_bound.saturating_mul(2)),
            );
        } else if self.proxy.terms() == 1 && self.timers.get(Timer::ProxyTerm2).is_none() {
            self.send_proxy(Signal::SIGTERM, out);
            self.timers
                .set(Timer::ProxyKill, now.saturating_add(self.s.kill_bound));
        }
    }

    /// The drain's end is decided (the first reason counts: a drain timed
    /// out still ends when kuma-dp exits).
    fn drain_ends(&mut self, reason: DrainEnd) {
        if self.spans.drain.is_open() {
            self.spans.drain_end.get_or_insert(reason);
        }
    }

    fn after_drain(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.timers.clear(Timer::Drain);
        self.stop_idle_watch(out);
        self.spans.drain.close(now);
        if self.app.alive() {
            self.start_grace(now, out);
        } else {
            self.cleanup(now, out);
        }
    }

    /// `--drain-signal hold`: the inbound drain is over, kuma-dp is not
    /// told anything: it keeps waiting out its (long) drain time, Envoy
    /// serving the app's outbound calls and DNS through the grace and the
    /// app's stop. Its second SIGTERM comes in the clean-up, once the app
    /// has exited (`cleanup` → `stop_proxy_fast`).
    fn hold_proxy(&mut self, now: Duration, end: DrainEnd, out: &mut Vec<Action>) {
        if self.proxy.alive() {
            out.push(Action::Event(Event::ProxyHeld { end }));
        }
        self.after_drain(now, out);
    }

    fn start_grace(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.s.app_grace_delay.is_zero() || self.escalated {
            self.stop_app(now, out);
            return;
        }
        self.enter(Phase::Grace, out);
        self.spans.grace.open(now);
        self.timers
            .set(Timer::Grace, now.saturating_add(self.s.app_grace_delay));
    }

    fn stop_app(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.timers.clear(Timer::Grace);
        self.spans.grace.close(now);
        if !self.app.alive() {
            self.cleanup(now, out);
            return;
        }
        self.enter(Phase::Stopping, out);
        self.spans.app_stop.open(now);
        if self.app == App::Running {
            self.app = App::Stopping;
            signal_and_continue(Target::App, self.app_stop_signal(), out);
            let timeout = if self.escalated {
                self.escalated_bound(self.s.app_stop_timeout)
            } else {
                self.s.app_stop_timeout
            };
            if self.shutdown_is_bounded() {
                self.timers.set(Timer::AppKill, now.saturating_add(timeout));
            }
        }
    }

    /// The app is gone: stop the proxy if it still runs, then the descendants.
    fn cleanup(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.timers.clear(Timer::Grace);
        self.timers.clear(Timer::Drain);
        self.spans.grace.close(now);
        self.spans.app_stop.close(now);
        self.spans.drain.close(now);
        self.enter(Phase::Cleanup, out);
        // With --drain-signal USR2 kuma-dp is still up (already drained, it
        // exits at once on SIGTERM); with hold it is still up after its
        // first SIGTERM, and this is its second, which ends its drain at
        // once (never a third: kuma-dp exits 1 on it; SIGKILL follows
        // instead); a proxy stopped during startup already has its
        // escalation scheduled.
        self.stop_proxy_fast(now, out);
        self.maybe_term_descendants(now, out);
    }

    /// Descendants are signalled only once kuma-dp is gone: Envoy is a
    /// descendant too, and only kuma-dp may stop it.
    fn maybe_term_descendants(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.phase != Phase::Cleanup || self.proxy.alive() || self.descendants_termed {
            return;
        }
        self.descendants_termed = true;
        out.push(Action::TermDescendants);
        let bound = if self.escalated {
            self.escalated_bound(self.s.cleanup_timeout)
        } else {
            self.s.cleanup_timeout
        };
        self.timers
            .set(Timer::DescendantsKill, now.saturating_add(bound));
    }

    fn on_descendants_gone(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.awaits_descendants() {
            self.finish(now, out);
        }
    }

    fn finish(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.timers = Timers::default();
        self.enter(Phase::Done, out);
        // An app killed by the third stop signal is not waited for (137);
        // one that never started (proxy-first, stopped while kuma-dp was
        // starting) reports the stop it was spared (143).
        let status = match self.app {
            App::Gone(Some(status)) => status,
            App::NotStarted => ExitStatus::Signaled(Signal::SIGTERM as i32),
            _ => ExitStatus::Signaled(Signal::SIGKILL as i32),
        };
        let reason = self.reason.unwrap_or(ExitReason::App(status));
        // The third stop signal exits in the middle of a phase: it ends here.
        for span in [
            &mut self.spans.drain,
            &mut self.spans.grace,
            &mut self.spans.app_stop,
        ] {
            span.close(now);
        }
        let timeline = self.spans.timeline(now);
        out.push(Action::Exit { reason, timeline });
    }

    /// A wait after the operator's second stop signal: the kill bound, or
    /// the usual wait when that is shorter (cutting short never lengthens,
    /// so the worst case stays the worst case).
    fn escalated_bound(&self, usual: Duration) -> Duration {
        self.s.kill_bound.min(usual)
    }

    /// The second stop signal: every wait left is cut short.
    fn escalate(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.escalated = true;
        self.drain_ends(DrainEnd::CutShort);
        out.push(Action::Event(Event::Escalated { stops: self.stops }));
        self.stop_idle_watch(out);
        self.mark_shutdown(now, out);
        self.timers.clear(Timer::Drain);
        self.spans.drain.close(now);
        self.timers.clear(Timer::Grace);
        self.spans.grace.close(now);
        let bound = now.saturating_add(self.s.kill_bound);
        if self.proxy.alive() {
            if self.proxy.terms() < 2 {
                self.send_proxy(Signal::SIGTERM, out);
            }
            self.timers.clear(Timer::ProxyTerm2);
            self.timers.cap(Timer::ProxyKill, bound);
        }
        if self.app.alive() {
            self.enter(Phase::Stopping, out);
            self.spans.app_stop.open(now);
            if self.app == App::Running {
                self.app = App::Stopping;
                signal_and_continue(Target::App, self.app_stop_signal(), out);
            }
            let app_bound = now.saturating_add(self.escalated_bound(self.s.app_stop_timeout));
            self.timers.cap(Timer::AppKill, app_bound);
        } else if self.phase != Phase::Cleanup {
            self.cleanup(now, out);
        } else if self.timers.get(Timer::DescendantsKill).is_some() {
            // Only a SIGKILL still to come is brought forward: one already
            // sent has its give-up bound running, which a second timer
            // would push later (found by the property tests).
            let bound = now.saturating_add(self.escalated_bound(self.s.cleanup_timeout));
            self.timers.cap(Timer::DescendantsKill, bound);
        }
    }

    /// The third stop signal: SIGKILL everything and exit at once.
    fn kill_everything(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.drain_ends(DrainEnd::CutShort);
        out.push(Action::Event(Event::Escalated { stops: self.stops }));
        if self.app.alive() {
            out.push(Action::Kill(Target::App));
        }
        if self.proxy.alive() {
            out.push(Action::Kill(Target::Proxy));
        }
        out.push(Action::KillDescendants);
        self.mark_shutdown(now, out);
        self.finish(now, out);
    }

    fn on_tick(&mut self, now: Duration, out: &mut Vec<Action>) {
        let mut descendants_killed = false;
        for timer in Timer::ALL {
            // Descendants just sent SIGKILL get one more tick before
            // meshinit gives up on them, however short the kill bound.
            if timer == Timer::GiveUp && descendants_killed {
                continue;
            }
            if self.timers.take_due(timer, now) {
                descendants_killed |= timer == Timer::DescendantsKill;
                self.on_timer(timer, now, out);
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Duration, out: &mut Vec<Action>) {
        match timer {
            Timer::Startup => {
                out.push(Action::Event(Event::StartupTimeout));
                self.reason.get_or_insert(ExitReason::StartupTimeout);
                self.begin_shutdown(now, out);
            }
            Timer::ProxyReady => {
                out.push(Action::Event(if self.dns_wait {
                    Event::ProxyDnsTimeout
                } else {
                    Event::ProxyReadyTimeout
                }));
                self.reason.get_or_insert(ExitReason::ProxyFailed);
                self.begin_shutdown(now, out);
            }
            Timer::ProxyRestart => {
                let app_waits = self.app == App::NotStarted || self.app.alive();
                if matches!(self.phase, Phase::ProxyStarting | Phase::Probing) && app_waits {
                    self.spawn_proxy(now, out);
                }
            }
            Timer::OutIdle => self.end_out_wait(now, OutWaitEnd::Idle, out),
            Timer::OutWaitTimeout => self.end_out_wait(now, OutWaitEnd::Timeout, out),
            // Without a missed check yet, the next miss decides.
            Timer::ProxyHang => {
                if let (true, Some(from)) = (self.silent, self.hang_from) {
                    if self.proxy.alive() && !self.phase.is_shutdown() {
                        self.proxy_hung(now, from, out);
                    }
                }
            }
            Timer::DrainIdle => {
                if self.phase == Phase::Draining && self.proxy.alive() {
                    let drained_for = now.saturating_sub(self.spans.drain.start.unwrap_or(now));
                    out.push(Action::Event(Event::DrainIdle { drained_for }));
                    self.drain_ends(DrainEnd::Idle);
                    self.stop_idle_watch(out);
                    if self.s.drain_mode == DrainMode::Hold {
                        self.hold_proxy(now, DrainEnd::Idle, out);
                    } else {
                        self.stop_proxy_fast(now, out);
                    }
                }
            }
            Timer::Drain => match self.s.drain_mode {
                DrainMode::Term => {
                    out.push(Action::Event(Event::DrainTimeout));
                    self.drain_ends(DrainEnd::Timeout);
                    self.stop_proxy_fast(now, out);
                }
                DrainMode::InboundUsr2 { .. } => {
                    self.drain_ends(DrainEnd::Wait);
                    self.after_drain(now, out)
                }
                DrainMode::Hold => {
                    self.drain_ends(DrainEnd::Timeout);
                    self.hold_proxy(now, DrainEnd::Timeout, out);
                }
            },
            Timer::ProxyTerm2 => {
                if self.proxy.alive() && self.proxy.terms() < 2 {
                    self.send_proxy(Signal::SIGTERM, out);
                }
            }
            Timer::ProxyKill => {
                if self.proxy.alive() {
                    out.push(Action::Event(Event::ProxyKilled));
                    out.push(Action::Kill(Target::Proxy));
                }
            }
            Timer::Grace => self.stop_app(now, out),
            Timer::AppKill => {
                if self.app.alive() {
                    out.push(Action::Event(Event::AppKilled {
                        cut_short: self.escalated,
                    }));
                    out.push(Action::Kill(Target::App));
                }
            }
            Timer::DescendantsKill => {
                out.push(Action::Event(Event::DescendantsKilled));
                out.push(Action::KillDescendants);
                self.timers
                    .set(Timer::GiveUp, now.saturating_add(self.s.kill_bound));
            }
            Timer::GiveUp => {
                out.push(Action::Event(Event::DescendantsLeft));
                self.finish(now, out);
            }
        }
    }
}

/// A stop signal, then SIGCONT, as systemd sends them: a process that job
/// control stopped (a forwarded SIGTSTP or SIGTTIN, a Ctrl-Z) does not act
/// on SIGTERM until it is continued, and would otherwise sit out the whole
/// stop timeout to die of SIGKILL (137) instead of its own clean exit. A
/// running process ignores SIGCONT (its default action is to continue).
fn signal_and_continue(target: Target, signal: Signal, out: &mut Vec<Action>) {
    out.push(Action::Signal(target, signal));
    out.push(Action::Signal(target, Signal::SIGCONT));
}

/// Every wait the lifecycle can schedule; each has one slot in [`Timers`].
/// Declared in the order a tick handles them when several are due at once
/// (a startup timeout acts before a restart that would follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// `--startup-timeout`: the app was not healthy in time.
    Startup,
    /// `--proxy-ready-timeout`: kuma-dp did not become ready in time.
    ProxyReady,
    /// The backoff before kuma-dp's restart has passed.
    ProxyRestart,
    /// `--proxy-hang-timeout`: Envoy's admin API has not answered.
    ProxyHang,
    /// An operator's `out`: the inbound side has been idle long enough.
    OutIdle,
    /// An operator's `out`: `--drain-timeout` passed while waiting.
    OutWaitTimeout,
    /// The inbound side has been idle long enough to end the drain.
    DrainIdle,
    /// `--drain-timeout` (or the inbound-only drain's wait).
    Drain,
    /// kuma-dp's second SIGTERM ("stop now").
    ProxyTerm2,
    /// kuma-dp's SIGKILL.
    ProxyKill,
    /// `--app-grace-delay` has passed: stop the app.
    Grace,
    /// The app's SIGKILL.
    AppKill,
    /// The leftover descendants' SIGKILL.
    DescendantsKill,
    /// Descendants survived SIGKILL: exit anyway.
    GiveUp,
}

impl Timer {
    /// Every timer, in declaration order (which is also its slot).
    const ALL: [Timer; 14] = [
        Timer::Startup,
        Timer::ProxyReady,
        Timer::ProxyRestart,
        Timer::ProxyHang,
        Timer::OutIdle,
        Timer::OutWaitTimeout,
        Timer::DrainIdle,
        Timer::Drain,
        Timer::ProxyTerm2,
        Timer::ProxyKill,
        Timer::Grace,
        Timer::AppKill,
        Timer::DescendantsKill,
        Timer::GiveUp,
    ];
}

/// When each [`Timer`] is due, if it is set.
#[derive(Clone, Debug, Default)]
struct Timers([Option<Duration>; Timer::ALL.len()]);

impl Timers {
    fn get(&self, timer: Timer) -> Option<Duration> {
        self.0[timer as usize]
    }

    fn set(&mut self, timer: Timer, at: Duration) {
        self.0[timer as usize] = Some(at);
    }

    /// Sets the timer to `at` unless it is already due sooner: cutting a
    /// wait short never lengthens it.
    fn cap(&mut self, timer: Timer, at: Duration) {
        let slot = &mut self.0[timer as usize];
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    fn next(&self) -> Option<Duration> {
        self.0.iter().flatten().min().copied()
    }

    /// Clears the timer and says so when it is due at `now`.
    fn take_due(&mut self, timer: Timer, now: Duration) -> bool {
        let due = self.get(timer).is_some_and(|t| t <= now);
        if due {
            self.clear(timer);
        }
        due
    }
}

pub mod health;
pub mod simulate;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
