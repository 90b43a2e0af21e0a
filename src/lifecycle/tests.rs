//! Table tests of the lifecycle: every (phase, input) pair, plus whole runs.
//! Time is injected: nothing here sleeps.

use super::*;

const T: fn(u64) -> Duration = Duration::from_millis;
const TERM: Signal = Signal::SIGTERM;
const OK: ExitStatus = ExitStatus::Code(0);
const ONE_SECOND: Duration = Duration::from_secs(1);
/// The one probe of the test settings (thresholds 1 and 1) passes or fails:
/// the app is healthy or unhealthy at once.
const HEALTHY: Input = Input::Probe { probe: 0, ok: true };
const UNHEALTHY: Input = Input::Probe {
    probe: 0,
    ok: false,
};

fn settings() -> Settings {
    Settings {
        app_grace_delay: T(5000),
        ..Settings::defaults()
    }
}

/// A machine brought to `phase` along the usual path (proxy and probes on,
/// grace 5 s), the time reached, and the actions of the last step.
fn at_phase(phase: Phase) -> (Lifecycle, Duration) {
    let mut lc = Lifecycle::new(settings());
    let path: &[(u64, Input)] = match phase {
        Phase::Starting => &[],
        Phase::Probing => &[(0, Input::Start)],
        Phase::ProxyStarting => &[(0, Input::Start), (300, HEALTHY)],
        Phase::Running => &[(0, Input::Start), (300, HEALTHY), (800, Input::ProxyReady)],
        Phase::Draining => &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
        ],
        Phase::Grace => &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::ProxyExited(OK)),
        ],
        Phase::Stopping => &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::ProxyExited(OK)),
            (17_000, Input::Tick),
        ],
        Phase::Cleanup => &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::ProxyExited(OK)),
            (17_000, Input::Tick),
            (17_100, Input::AppExited(ExitStatus::Signaled(15))),
        ],
        Phase::Done => &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::ProxyExited(OK)),
            (17_000, Input::Tick),
            (17_100, Input::AppExited(ExitStatus::Signaled(15))),
            (17_150, Input::DescendantsGone),
        ],
    };
    let mut now = T(0);
    for (t, input) in path {
        now = T(*t);
        lc.step(now, *input);
    }
    assert_eq!(lc.phase(), phase, "setup reached {:?}", lc.phase());
    (lc, now)
}

fn exit_of(actions: &[Action]) -> Option<(ExitReason, Option<Timeline>)> {
    actions.iter().find_map(|a| match a {
        Action::Exit { reason, timeline } => Some((*reason, *timeline)),
        _ => None,
    })
}

/// What a (phase, input) pair must do: the phase after, and actions that
/// must (and must not) be among those returned.
struct Row {
    phase: Phase,
    input: Input,
    /// Time of the input, relative to reaching the phase.
    after_ms: u64,
    next: Phase,
    must: &'static [Action],
    must_not: &'static [Action],
}

const STOP_APP: Action = Action::Signal(Target::App, TERM);
const LEAVE: Action = Action::Membership(MeshCall::Leave);
const REJOIN: Action = Action::Membership(MeshCall::Rejoin);
const HUNG_15S: Action = Action::Event(Event::ProxyHung {
    silent_for: Duration::from_secs(15),
});
const OUT: Input = Input::Operator(Operator::Out { wait: false });
const NOT_SERVING: Action = Action::Event(Event::OutWaitEnded {
    end: OutWaitEnd::NotServing,
    waited: Duration::ZERO,
});
const NO_IDLE_RULE: Action = Action::Event(Event::OutWaitEnded {
    end: OutWaitEnd::NoIdleRule,
    waited: Duration::ZERO,
});
const OUT_WAIT: Input = Input::Operator(Operator::Out { wait: true });
const IN: Input = Input::Operator(Operator::In);
const TERM_PROXY: Action = Action::Signal(Target::Proxy, TERM);

#[rustfmt::skip]
fn table() -> Vec<Row> {
    use Input::*;
    use Phase::*;
    let app_exit = AppExited(ExitStatus::Code(3));
    let proxy_exit = ProxyExited(ExitStatus::Code(1));
    vec![
        // Starting
        Row { phase: Starting, input: Start, after_ms: 0, next: Probing, must: &[Action::SpawnApp, Action::Probes(ProbeMode::Startup)], must_not: &[Action::SpawnProxy] },
        Row { phase: Starting, input: HEALTHY, after_ms: 0, next: Starting, must: &[], must_not: &[Action::SpawnProxy] },
        Row { phase: Starting, input: UNHEALTHY, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Starting, input: ProxyReady, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Starting, input: app_exit, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Starting, input: proxy_exit, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Starting, input: ProxySpawnFailed, after_ms: 0, next: Starting, must: &[], must_not: &[Action::SpawnProxy] },
        Row { phase: Starting, input: Stop(TERM), after_ms: 0, next: Cleanup, must: &[Action::TermDescendants], must_not: &[Action::SpawnApp] },
        Row { phase: Starting, input: Tick, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Starting, input: DescendantsGone, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        // Probing
        Row { phase: Probing, input: Start, after_ms: 0, next: Probing, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: Probing, input: HEALTHY, after_ms: 0, next: ProxyStarting, must: &[Action::SpawnProxy, Action::Probes(ProbeMode::Liveness), Action::Event(Event::AppHealthy)], must_not: &[] },
        Row { phase: Probing, input: UNHEALTHY, after_ms: 0, next: Probing, must: &[], must_not: &[Action::SpawnProxy] },
        Row { phase: Probing, input: ProxyReady, after_ms: 0, next: Probing, must: &[], must_not: &[] },
        Row { phase: Probing, input: app_exit, after_ms: 0, next: Cleanup, must: &[Action::TermDescendants], must_not: &[Action::SpawnProxy] },
        Row { phase: Probing, input: proxy_exit, after_ms: 0, next: Probing, must: &[], must_not: &[] },
        Row { phase: Probing, input: ProxySpawnFailed, after_ms: 0, next: Probing, must: &[], must_not: &[Action::SpawnProxy] },
        Row { phase: Probing, input: Stop(TERM), after_ms: 0, next: Stopping, must: &[STOP_APP, Action::Probes(ProbeMode::Off)], must_not: &[Action::SpawnProxy] },
        Row { phase: Probing, input: Tick, after_ms: 59_000, next: Probing, must: &[], must_not: &[] },
        Row { phase: Probing, input: Tick, after_ms: 60_000, next: Stopping, must: &[Action::Event(Event::StartupTimeout), STOP_APP], must_not: &[Action::SpawnProxy] },
        Row { phase: Probing, input: DescendantsGone, after_ms: 0, next: Probing, must: &[], must_not: &[] },
        // ProxyStarting
        Row { phase: ProxyStarting, input: Start, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[] },
        Row { phase: ProxyStarting, input: HEALTHY, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[Action::SpawnProxy] },
        Row { phase: ProxyStarting, input: UNHEALTHY, after_ms: 0, next: ProxyStarting, must: &[Action::Event(Event::AppUnhealthy)], must_not: &[] },
        Row { phase: ProxyStarting, input: ProxyReady, after_ms: 0, next: Running, must: &[Action::Ready(true), Action::Event(Event::ProxyReady)], must_not: &[] },
        Row { phase: ProxyStarting, input: app_exit, after_ms: 0, next: Cleanup, must: &[TERM_PROXY], must_not: &[Action::TermDescendants] },
        Row { phase: ProxyStarting, input: proxy_exit, after_ms: 0, next: ProxyStarting, must: &[Action::Event(Event::ProxyRestarting { attempt: 1, delay: ONE_SECOND })], must_not: &[Action::SpawnProxy] },
        Row { phase: ProxyStarting, input: ProxySpawnFailed, after_ms: 0, next: ProxyStarting, must: &[Action::Event(Event::ProxyRestarting { attempt: 1, delay: ONE_SECOND })], must_not: &[Action::SpawnProxy] },
        // kuma-dp was spawned: it may already receive traffic, so it drains first (issue 13).
        Row { phase: ProxyStarting, input: Stop(TERM), after_ms: 0, next: Draining, must: &[TERM_PROXY, Action::Probes(ProbeMode::Off)], must_not: &[STOP_APP] },
        Row { phase: ProxyStarting, input: Tick, after_ms: 60_000, next: Stopping, must: &[Action::Event(Event::ProxyReadyTimeout), TERM_PROXY, STOP_APP], must_not: &[] },
        Row { phase: ProxyStarting, input: DescendantsGone, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[] },
        // Running
        Row { phase: Running, input: Start, after_ms: 0, next: Running, must: &[], must_not: &[] },
        Row { phase: Running, input: HEALTHY, after_ms: 0, next: Running, must: &[], must_not: &[] },
        // Issue 23: --on-unhealthy leave (the default with kuma-dp) takes the instance out of the mesh; nothing is stopped.
        Row { phase: Running, input: UNHEALTHY, after_ms: 0, next: Running, must: &[Action::Ready(false), Action::Event(Event::AppUnhealthy), LEAVE], must_not: &[TERM_PROXY, STOP_APP] },
        Row { phase: Running, input: ProxyReady, after_ms: 0, next: Running, must: &[], must_not: &[] },
        Row { phase: Running, input: app_exit, after_ms: 0, next: Draining, must: &[TERM_PROXY, Action::Ready(false)], must_not: &[STOP_APP] },
        Row { phase: Running, input: proxy_exit, after_ms: 0, next: ProxyStarting, must: &[Action::Ready(false)], must_not: &[STOP_APP] },
        Row { phase: Running, input: ProxySpawnFailed, after_ms: 0, next: Running, must: &[], must_not: &[Action::Ready(false)] },
        Row { phase: Running, input: Stop(TERM), after_ms: 0, next: Draining, must: &[TERM_PROXY, Action::Ready(false), Action::Probes(ProbeMode::Off)], must_not: &[STOP_APP] },
        Row { phase: Running, input: Tick, after_ms: 14_999, next: Running, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        // Issue 23: --proxy-hang-timeout since kuma-dp's readiness, but no check missed yet: not a hang (the next miss decides).
        Row { phase: Running, input: Tick, after_ms: 15_000, next: Running, must: &[], must_not: &[Action::Kill(Target::Proxy), Action::Ready(false)] },
        Row { phase: Running, input: DescendantsGone, after_ms: 0, next: Running, must: &[], must_not: &[] },
        // Draining
        Row { phase: Draining, input: Start, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Draining, input: HEALTHY, after_ms: 0, next: Draining, must: &[], must_not: &[Action::Ready(true)] },
        Row { phase: Draining, input: UNHEALTHY, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Draining, input: ProxyReady, after_ms: 0, next: Draining, must: &[], must_not: &[Action::Ready(true)] },
        Row { phase: Draining, input: app_exit, after_ms: 0, next: Draining, must: &[], must_not: &[STOP_APP] },
        Row { phase: Draining, input: proxy_exit, after_ms: 0, next: Grace, must: &[], must_not: &[STOP_APP] },
        Row { phase: Draining, input: ProxySpawnFailed, after_ms: 0, next: Draining, must: &[], must_not: &[STOP_APP] },
        Row { phase: Draining, input: Stop(TERM), after_ms: 0, next: Stopping, must: &[TERM_PROXY, STOP_APP, Action::Event(Event::Escalated { stops: 2 })], must_not: &[] },
        Row { phase: Draining, input: Tick, after_ms: 39_999, next: Draining, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Draining, input: Tick, after_ms: 40_000, next: Draining, must: &[Action::Event(Event::DrainTimeout), TERM_PROXY], must_not: &[STOP_APP] },
        Row { phase: Draining, input: DescendantsGone, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        // Grace
        Row { phase: Grace, input: Start, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: HEALTHY, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: UNHEALTHY, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: ProxyReady, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: app_exit, after_ms: 1000, next: Cleanup, must: &[Action::TermDescendants], must_not: &[STOP_APP] },
        Row { phase: Grace, input: proxy_exit, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: ProxySpawnFailed, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: Stop(TERM), after_ms: 100, next: Stopping, must: &[STOP_APP, Action::Event(Event::Escalated { stops: 2 })], must_not: &[TERM_PROXY] },
        Row { phase: Grace, input: Tick, after_ms: 4_999, next: Grace, must: &[], must_not: &[STOP_APP] },
        Row { phase: Grace, input: Tick, after_ms: 5_000, next: Stopping, must: &[STOP_APP], must_not: &[] },
        Row { phase: Grace, input: DescendantsGone, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        // Stopping
        Row { phase: Stopping, input: Start, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: HEALTHY, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: UNHEALTHY, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: ProxyReady, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: app_exit, after_ms: 100, next: Cleanup, must: &[Action::TermDescendants], must_not: &[] },
        Row { phase: Stopping, input: proxy_exit, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: ProxySpawnFailed, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: Stop(TERM), after_ms: 100, next: Stopping, must: &[Action::Event(Event::Escalated { stops: 2 })], must_not: &[STOP_APP] },
        Row { phase: Stopping, input: Tick, after_ms: 9_999, next: Stopping, must: &[], must_not: &[Action::Kill(Target::App)] },
        Row { phase: Stopping, input: Tick, after_ms: 10_000, next: Stopping, must: &[Action::Kill(Target::App), Action::Event(Event::AppKilled { cut_short: false })], must_not: &[] },
        Row { phase: Stopping, input: DescendantsGone, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        // Cleanup
        Row { phase: Cleanup, input: Start, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: HEALTHY, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: UNHEALTHY, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: ProxyReady, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: app_exit, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: proxy_exit, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: ProxySpawnFailed, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: Stop(TERM), after_ms: 0, next: Cleanup, must: &[Action::Event(Event::Escalated { stops: 2 })], must_not: &[] },
        Row { phase: Cleanup, input: Tick, after_ms: 2_000, next: Cleanup, must: &[Action::KillDescendants], must_not: &[] },
        Row { phase: Cleanup, input: DescendantsGone, after_ms: 0, next: Done, must: &[], must_not: &[] },
        // Inbound reports matter only to an idle-watched drain (off here).
        Row { phase: Starting, input: InboundIdle, after_ms: 0, next: Starting, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Starting, input: InboundBusy, after_ms: 0, next: Starting, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Starting, input: InboundUnreadable, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Probing, input: InboundIdle, after_ms: 0, next: Probing, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Probing, input: InboundBusy, after_ms: 0, next: Probing, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Probing, input: InboundUnreadable, after_ms: 0, next: Probing, must: &[], must_not: &[] },
        Row { phase: ProxyStarting, input: InboundIdle, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: ProxyStarting, input: InboundBusy, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: ProxyStarting, input: InboundUnreadable, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[] },
        Row { phase: Running, input: InboundIdle, after_ms: 0, next: Running, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Running, input: InboundBusy, after_ms: 0, next: Running, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Running, input: InboundUnreadable, after_ms: 0, next: Running, must: &[], must_not: &[] },
        Row { phase: Draining, input: InboundIdle, after_ms: 0, next: Draining, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Draining, input: InboundBusy, after_ms: 0, next: Draining, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Draining, input: InboundUnreadable, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Grace, input: InboundIdle, after_ms: 0, next: Grace, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Grace, input: InboundBusy, after_ms: 0, next: Grace, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Grace, input: InboundUnreadable, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Stopping, input: InboundIdle, after_ms: 0, next: Stopping, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Stopping, input: InboundBusy, after_ms: 0, next: Stopping, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Stopping, input: InboundUnreadable, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: InboundIdle, after_ms: 0, next: Cleanup, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Cleanup, input: InboundBusy, after_ms: 0, next: Cleanup, must: &[], must_not: &[TERM_PROXY] },
        Row { phase: Cleanup, input: InboundUnreadable, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        // The app could not be started (issue 13): a live kuma-dp is drained
        // first, as for an app that exits while serving; nothing is skipped.
        Row { phase: Starting, input: AppSpawnFailed, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Probing, input: AppSpawnFailed, after_ms: 0, next: Cleanup, must: &[Action::Event(Event::AppSpawnFailed { drains: false }), Action::TermDescendants, Action::Probes(ProbeMode::Off)], must_not: &[STOP_APP, Action::SpawnProxy] },
        Row { phase: ProxyStarting, input: AppSpawnFailed, after_ms: 0, next: Draining, must: &[Action::Event(Event::AppSpawnFailed { drains: true }), TERM_PROXY], must_not: &[STOP_APP] },
        Row { phase: Running, input: AppSpawnFailed, after_ms: 0, next: Draining, must: &[Action::Event(Event::AppSpawnFailed { drains: true }), TERM_PROXY, Action::Ready(false)], must_not: &[STOP_APP] },
        Row { phase: Draining, input: AppSpawnFailed, after_ms: 0, next: Draining, must: &[Action::Event(Event::AppSpawnFailed { drains: false })], must_not: &[STOP_APP] },
        Row { phase: Grace, input: AppSpawnFailed, after_ms: 0, next: Cleanup, must: &[Action::TermDescendants], must_not: &[STOP_APP] },
        Row { phase: Stopping, input: AppSpawnFailed, after_ms: 0, next: Cleanup, must: &[Action::TermDescendants], must_not: &[] },
        Row { phase: Cleanup, input: AppSpawnFailed, after_ms: 0, next: Cleanup, must: &[], must_not: &[Action::Event(Event::AppSpawnFailed { drains: false }), Action::Event(Event::AppSpawnFailed { drains: true })] },
        // Issue 23: an operator's out/in. Only a ready kuma-dp is called; it is
        // remembered before that (applied once ready) and ignored in a shutdown.
        Row { phase: Starting, input: OUT, after_ms: 0, next: Starting, must: &[], must_not: &[LEAVE] },
        Row { phase: Starting, input: IN, after_ms: 0, next: Starting, must: &[], must_not: &[REJOIN] },
        Row { phase: Probing, input: OUT, after_ms: 0, next: Probing, must: &[], must_not: &[LEAVE, Action::SpawnProxy] },
        Row { phase: Probing, input: IN, after_ms: 0, next: Probing, must: &[], must_not: &[REJOIN] },
        Row { phase: ProxyStarting, input: OUT, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[LEAVE, TERM_PROXY] },
        Row { phase: ProxyStarting, input: IN, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[REJOIN] },
        Row { phase: Running, input: OUT, after_ms: 0, next: Running, must: &[LEAVE, Action::Ready(false), Action::Event(Event::LeftMesh { reasons: OutReasons { unhealthy: false, operator: true }, again: false })], must_not: &[TERM_PROXY, STOP_APP, Action::Signal(Target::Proxy, Signal::SIGUSR2)] },
        Row { phase: Running, input: IN, after_ms: 0, next: Running, must: &[], must_not: &[REJOIN, Action::Ready(false)] },
        Row { phase: Draining, input: OUT, after_ms: 0, next: Draining, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE, REJOIN] },
        Row { phase: Draining, input: IN, after_ms: 0, next: Draining, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE, REJOIN, Action::Ready(true)] },
        Row { phase: Grace, input: OUT, after_ms: 0, next: Grace, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Grace, input: IN, after_ms: 0, next: Grace, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[REJOIN] },
        Row { phase: Stopping, input: OUT, after_ms: 0, next: Stopping, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Stopping, input: IN, after_ms: 0, next: Stopping, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[REJOIN] },
        Row { phase: Cleanup, input: OUT, after_ms: 0, next: Cleanup, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Cleanup, input: IN, after_ms: 0, next: Cleanup, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[REJOIN] },
        Row { phase: Done, input: OUT, after_ms: 0, next: Done, must: &[], must_not: &[LEAVE] },
        Row { phase: Done, input: IN, after_ms: 0, next: Done, must: &[], must_not: &[REJOIN] },
        // `out` waiting for the inbound side: only a serving kuma-dp is waited for (no idle
        // rule in these settings: the answer comes at once), none in a shutdown.
        Row { phase: Starting, input: OUT_WAIT, after_ms: 0, next: Starting, must: &[NOT_SERVING], must_not: &[LEAVE, Action::WatchInbound(true)] },
        Row { phase: Probing, input: OUT_WAIT, after_ms: 0, next: Probing, must: &[NOT_SERVING], must_not: &[LEAVE, Action::WatchInbound(true)] },
        Row { phase: ProxyStarting, input: OUT_WAIT, after_ms: 0, next: ProxyStarting, must: &[NOT_SERVING], must_not: &[LEAVE, Action::WatchInbound(true)] },
        Row { phase: Running, input: OUT_WAIT, after_ms: 0, next: Running, must: &[LEAVE, NO_IDLE_RULE], must_not: &[Action::WatchInbound(true), TERM_PROXY] },
        Row { phase: Draining, input: OUT_WAIT, after_ms: 0, next: Draining, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Grace, input: OUT_WAIT, after_ms: 0, next: Grace, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Stopping, input: OUT_WAIT, after_ms: 0, next: Stopping, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Cleanup, input: OUT_WAIT, after_ms: 0, next: Cleanup, must: &[Action::Event(Event::OperatorRefused(OperatorRefused::ShuttingDown))], must_not: &[LEAVE] },
        Row { phase: Done, input: OUT_WAIT, after_ms: 0, next: Done, must: &[], must_not: &[LEAVE] },
        // Issue 23: readings of Envoy's admin API. An answer restarts the hang
        // clock; a miss is only reported (the clock decides); outside a
        // watched kuma-dp they mean nothing.
        Row { phase: Starting, input: ProxyAnswered, after_ms: 0, next: Starting, must: &[], must_not: &[] },
        Row { phase: Starting, input: ProxyUnanswered, after_ms: 0, next: Starting, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        Row { phase: Probing, input: ProxyAnswered, after_ms: 0, next: Probing, must: &[], must_not: &[] },
        Row { phase: Probing, input: ProxyUnanswered, after_ms: 0, next: Probing, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        // A starting kuma-dp that never answered is not judged: no event, no kill.
        Row { phase: ProxyStarting, input: ProxyAnswered, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        Row { phase: ProxyStarting, input: ProxyUnanswered, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[Action::Kill(Target::Proxy), Action::Event(Event::ProxySilent)] },
        Row { phase: Running, input: ProxyAnswered, after_ms: 0, next: Running, must: &[], must_not: &[Action::Kill(Target::Proxy), Action::Ready(false)] },
        Row { phase: Running, input: ProxyUnanswered, after_ms: 0, next: Running, must: &[Action::Event(Event::ProxySilent)], must_not: &[Action::Kill(Target::Proxy), Action::Ready(false)] },
        // Issue 23: a missed check --proxy-hang-timeout after kuma-dp's readiness: hung. SIGKILL, not ready, nothing else stopped.
        Row { phase: Running, input: ProxyUnanswered, after_ms: 15_000, next: Running, must: &[HUNG_15S, Action::Kill(Target::Proxy), Action::WatchProxy(false), Action::Ready(false)], must_not: &[TERM_PROXY, STOP_APP] },
        Row { phase: Draining, input: ProxyAnswered, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Draining, input: ProxyUnanswered, after_ms: 0, next: Draining, must: &[], must_not: &[Action::Kill(Target::Proxy), Action::Event(Event::ProxySilent)] },
        Row { phase: Grace, input: ProxyAnswered, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Grace, input: ProxyUnanswered, after_ms: 0, next: Grace, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        Row { phase: Stopping, input: ProxyAnswered, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Stopping, input: ProxyUnanswered, after_ms: 0, next: Stopping, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        Row { phase: Cleanup, input: ProxyAnswered, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: ProxyUnanswered, after_ms: 0, next: Cleanup, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        Row { phase: Done, input: ProxyAnswered, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: ProxyUnanswered, after_ms: 0, next: Done, must: &[], must_not: &[] },
        // Done: nothing moves any more.
        Row { phase: Done, input: Start, after_ms: 0, next: Done, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: Done, input: HEALTHY, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: UNHEALTHY, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: ProxyReady, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: app_exit, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: proxy_exit, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: ProxySpawnFailed, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: Stop(TERM), after_ms: 0, next: Done, must: &[], must_not: &[Action::KillDescendants] },
        Row { phase: Done, input: Tick, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: InboundIdle, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: InboundBusy, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: InboundUnreadable, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: DescendantsGone, after_ms: 0, next: Done, must: &[], must_not: &[] },
        Row { phase: Done, input: AppSpawnFailed, after_ms: 0, next: Done, must: &[], must_not: &[] },
        // Issue 26: a DNS answer without the DNS gate (no `proxy_dns`) is no one's: nothing moves.
        Row { phase: Starting, input: ProxyDnsAnswered, after_ms: 0, next: Starting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: Probing, input: ProxyDnsAnswered, after_ms: 0, next: Probing, must: &[], must_not: &[Action::SpawnProxy] },
        Row { phase: ProxyStarting, input: ProxyDnsAnswered, after_ms: 0, next: ProxyStarting, must: &[], must_not: &[Action::Ready(true), Action::Event(Event::ProxyDnsAnswers)] },
        Row { phase: Running, input: ProxyDnsAnswered, after_ms: 0, next: Running, must: &[], must_not: &[Action::Event(Event::ProxyDnsAnswers)] },
        Row { phase: Draining, input: ProxyDnsAnswered, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Grace, input: ProxyDnsAnswered, after_ms: 0, next: Grace, must: &[], must_not: &[] },
        Row { phase: Stopping, input: ProxyDnsAnswered, after_ms: 0, next: Stopping, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: ProxyDnsAnswered, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Done, input: ProxyDnsAnswered, after_ms: 0, next: Done, must: &[], must_not: &[] },
    ]
}

/// Every input kind, for the tables' coverage checks.
const ALL_INPUTS: [Input; 20] = [
    Input::Start,
    HEALTHY,
    UNHEALTHY,
    Input::ProxyReady,
    Input::AppExited(OK),
    Input::AppSpawnFailed,
    Input::ProxyExited(OK),
    Input::ProxySpawnFailed,
    Input::Stop(TERM),
    Input::Tick,
    Input::DescendantsGone,
    Input::InboundIdle,
    Input::InboundBusy,
    Input::InboundUnreadable,
    OUT,
    OUT_WAIT,
    IN,
    Input::ProxyAnswered,
    Input::ProxyUnanswered,
    Input::ProxyDnsAnswered,
];

/// Each row must have its phase's (or phases') every input covered, and
/// each row is run from `at_phase` and checked.
fn check_table(rows: &[Row], phases: &[Phase], at_phase: impl Fn(Phase) -> (Lifecycle, Duration)) {
    for &phase in phases {
        for input in ALL_INPUTS {
            // `out` and `in` are two inputs, each with its rows.
            let same_kind = |a: &Input, b: &Input| {
                a == b
                    || (std::mem::discriminant(a) == std::mem::discriminant(b)
                        && !matches!(a, Input::Operator(_)))
            };
            assert!(
                rows.iter()
                    .any(|r| r.phase == phase && same_kind(&r.input, &input)),
                "no row for {phase:?} × {input:?}"
            );
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let (mut lc, reached) = at_phase(row.phase);
        let actions = lc.step(reached + T(row.after_ms), row.input);
        let ctx = format!(
            "row {i}: {:?} × {:?} at +{}ms → {actions:?}",
            row.phase, row.input, row.after_ms
        );
        assert_eq!(lc.phase(), row.next, "{ctx}");
        for a in row.must {
            assert!(actions.contains(a), "missing {a:?} in {ctx}");
        }
        for a in row.must_not {
            assert!(!actions.contains(a), "unexpected {a:?} in {ctx}");
        }
        // Issue 20, item 5: every stop signal is followed at once by SIGCONT
        // for the same target, so that a process job control stopped acts on it.
        for (j, a) in actions.iter().enumerate() {
            if let Action::Signal(target, sig) = a {
                if *sig != Signal::SIGCONT {
                    assert_eq!(
                        actions.get(j + 1),
                        Some(&Action::Signal(*target, Signal::SIGCONT)),
                        "{sig} not followed by SIGCONT in {ctx}"
                    );
                }
            }
        }
        if row.next != row.phase && row.next != Phase::Done {
            assert!(
                actions.contains(&Action::Enter(row.next)),
                "no Enter in {ctx}"
            );
        }
    }
}

#[test]
fn every_phase_and_input_pair() {
    check_table(&table(), &Phase::ALL, at_phase);
}

/// Runs inputs in order and collects (time, action).
fn run(settings: Settings, inputs: &[(u64, Input)]) -> (Lifecycle, Vec<(u64, Action)>) {
    let mut lc = Lifecycle::new(settings);
    let mut log = Vec::new();
    for (t, input) in inputs {
        for a in lc.step(T(*t), *input) {
            log.push((*t, a));
        }
    }
    (lc, log)
}

fn time_of(log: &[(u64, Action)], action: Action) -> Option<u64> {
    log.iter().find(|(_, a)| *a == action).map(|(t, _)| *t)
}

#[test]
fn full_graceful_shutdown_orders_drain_grace_stop() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (400, HEALTHY),
            (900, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::ProxyExited(OK)),
            (17_000, Input::Tick),
            (17_120, Input::AppExited(ExitStatus::Signaled(15))),
            (17_130, Input::DescendantsGone),
        ],
    );
    assert_eq!(time_of(&log, Action::SpawnApp), Some(0));
    assert_eq!(time_of(&log, Action::SpawnProxy), Some(400));
    assert_eq!(time_of(&log, Action::Ready(true)), Some(900));
    assert_eq!(time_of(&log, TERM_PROXY), Some(10_000));
    assert_eq!(time_of(&log, Action::Ready(false)), Some(10_000));
    assert_eq!(
        time_of(&log, STOP_APP),
        Some(17_000),
        "stop signal only after drain + grace"
    );
    let (reason, timeline) = log
        .iter()
        .find_map(|(_, a)| match a {
            Action::Exit { reason, timeline } => Some((*reason, *timeline)),
            _ => None,
        })
        .unwrap();
    assert_eq!(reason, ExitReason::App(ExitStatus::Signaled(15)));
    assert_eq!(
        timeline,
        Some(Timeline {
            drain: T(2000),
            grace: T(5000),
            app_stop: T(120),
            total: T(7130),
            drain_end: Some(DrainEnd::ProxyExit),
        })
    );
    assert_eq!(lc.phase(), Phase::Done);
    assert_eq!(lc.next_deadline(), None);
}

#[test]
fn proxy_never_starts_before_the_app_is_healthy() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, UNHEALTHY),
            (200, Input::Tick),
            (300, Input::ProxyReady),
            (400, HEALTHY),
        ],
    );
    assert_eq!(time_of(&log, Action::SpawnProxy), Some(400));
}

#[test]
fn without_proxy_grace_then_stop() {
    let s = Settings {
        has_proxy: false,
        probes: Vec::new(),
        ..settings()
    };
    let (_, log) = run(
        s,
        &[
            (0, Input::Start),
            (1000, Input::Stop(TERM)),
            (5999, Input::Tick),
            (6000, Input::Tick),
            (6050, Input::AppExited(ExitStatus::Code(0))),
            (6060, Input::DescendantsGone),
        ],
    );
    assert_eq!(time_of(&log, Action::Ready(true)), Some(0));
    assert_eq!(time_of(&log, Action::Enter(Phase::Grace)), Some(1000));
    assert_eq!(time_of(&log, STOP_APP), Some(6000));
    assert!(!log
        .iter()
        .any(|(_, a)| matches!(a, Action::Signal(Target::Proxy, _) | Action::SpawnProxy)));
}

#[test]
fn app_exiting_while_running_drains_then_exits_with_its_status() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (5000, Input::AppExited(ExitStatus::Code(7))),
            (8000, Input::ProxyExited(OK)),
            (8001, Input::DescendantsGone),
        ],
    );
    assert_eq!(time_of(&log, TERM_PROXY), Some(5000));
    assert_eq!(
        time_of(&log, Action::TermDescendants),
        Some(8000),
        "no grace owed to an app that is gone"
    );
    assert_eq!(
        exit_of(&log.iter().map(|(_, a)| *a).collect::<Vec<_>>()).map(|e| e.0),
        Some(ExitReason::App(ExitStatus::Code(7)))
    );
}

#[test]
fn drain_timeout_then_second_term_then_kill() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
            (41_000, Input::Tick),
            (42_000, Input::Tick),
            (42_010, Input::ProxyExited(ExitStatus::Signaled(9))),
        ],
    );
    let terms: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == TERM_PROXY)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(terms, vec![1000, 41_000]);
    assert_eq!(time_of(&log, Action::Kill(Target::Proxy)), Some(42_000));
    assert_eq!(time_of(&log, Action::Enter(Phase::Grace)), Some(42_010));
}

#[test]
fn usr2_drains_inbound_stops_app_then_terms_proxy() {
    let s = Settings {
        drain_mode: DrainMode::InboundUsr2 { wait: T(3000) },
        app_grace_delay: T(1000),
        ..settings()
    };
    let (_, log) = run(
        s,
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
            (4000, Input::Tick),
            (5000, Input::Tick),
            (5100, Input::AppExited(ExitStatus::Code(0))),
            (5150, Input::ProxyExited(OK)),
            (5160, Input::DescendantsGone),
        ],
    );
    assert_eq!(
        time_of(&log, Action::Signal(Target::Proxy, Signal::SIGUSR2)),
        Some(1000)
    );
    assert_eq!(time_of(&log, STOP_APP), Some(5000));
    assert_eq!(time_of(&log, TERM_PROXY), Some(5100), "kuma-dp goes last");
    assert!(log.iter().any(|(_, a)| matches!(a, Action::Exit { .. })));
}

#[test]
fn second_stop_cuts_short_and_third_kills_everything() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
            (1500, Input::Stop(TERM)),
            (2500, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, STOP_APP), Some(1500));
    assert_eq!(time_of(&log, Action::Kill(Target::App)), Some(2500));
    assert_eq!(time_of(&log, Action::Kill(Target::Proxy)), Some(2500));
    // The kill's log line blames the second signal, not --app-stop-timeout.
    assert_eq!(
        time_of(&log, Action::Event(Event::AppKilled { cut_short: true })),
        Some(2500)
    );
    assert_eq!(
        time_of(&log, Action::Event(Event::AppKilled { cut_short: false })),
        None
    );
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
            (1100, Input::Stop(TERM)),
            (1200, Input::Stop(TERM)),
        ],
    );
    let last: Vec<Action> = log
        .iter()
        .filter(|(t, _)| *t == 1200)
        .map(|(_, a)| *a)
        .collect();
    assert!(
        last.contains(&Action::Kill(Target::App))
            && last.contains(&Action::Kill(Target::Proxy))
            && last.contains(&Action::KillDescendants),
        "{last:?}"
    );
    assert!(exit_of(&last).is_some());
}

#[test]
fn proxy_crash_backoff_and_give_up() {
    let s = Settings {
        proxy_max_restarts: 3,
        ..settings()
    };
    let mut inputs = vec![(0, Input::Start), (100, HEALTHY)];
    let mut t = 100;
    for _ in 0..4 {
        t += 50;
        inputs.push((t, Input::ProxyExited(ExitStatus::Code(1))));
        t += 60_000;
        inputs.push((t, Input::Tick));
    }
    let (lc, log) = run(s, &inputs);
    let delays: Vec<Duration> = log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Event(Event::ProxyRestarting { delay, .. }) => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![T(1000), T(2000), T(4000)]);
    assert!(log
        .iter()
        .any(|(_, a)| *a == Action::Event(Event::ProxyGaveUp { crashes: 4 })));
    assert_eq!(
        log.iter().filter(|(_, a)| *a == Action::SpawnProxy).count(),
        4
    );
    assert!(lc.phase().is_shutdown());
}

#[test]
fn backoff_is_capped() {
    let s = Settings {
        proxy_max_restarts: 100,
        ..settings()
    };
    let mut lc = Lifecycle::new(s);
    lc.step(T(0), Input::Start);
    lc.step(T(1), HEALTHY);
    let mut last = Duration::ZERO;
    for i in 0..10u64 {
        let now = T(2 + i * 100_000);
        for a in lc.step(now, Input::ProxyExited(ExitStatus::Code(1))) {
            if let Action::Event(Event::ProxyRestarting { delay, .. }) = a {
                last = delay;
            }
        }
        lc.step(now + T(40_000), Input::Tick);
    }
    assert_eq!(last, T(30_000));
}

#[test]
fn on_unhealthy_shutdown_exits_unavailable() {
    let s = Settings {
        on_unhealthy: OnUnhealthy::Shutdown,
        ..settings()
    };
    let (_, log) = run(
        s,
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (9000, UNHEALTHY),
            (9500, Input::ProxyExited(OK)),
            (14_500, Input::Tick),
            (14_600, Input::AppExited(ExitStatus::Signaled(15))),
            (14_700, Input::DescendantsGone),
        ],
    );
    assert_eq!(time_of(&log, TERM_PROXY), Some(9000));
    let actions: Vec<Action> = log.iter().map(|(_, a)| *a).collect();
    assert_eq!(exit_of(&actions).map(|e| e.0), Some(ExitReason::Unhealthy));
}

#[test]
fn startup_timeout_never_starts_the_proxy() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (60_000, Input::Tick),
            (60_100, Input::AppExited(ExitStatus::Signaled(15))),
            (60_200, Input::DescendantsGone),
        ],
    );
    assert!(!log.iter().any(|(_, a)| *a == Action::SpawnProxy));
    let actions: Vec<Action> = log.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        exit_of(&actions).map(|e| e.0),
        Some(ExitReason::StartupTimeout)
    );
}

#[test]
fn descendants_wait_for_the_proxy_to_be_gone() {
    let (mut lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::AppExited(OK)),
        ],
    );
    assert!(log.iter().any(|(_, a)| *a == TERM_PROXY));
    assert!(
        !log.iter().any(|(_, a)| *a == Action::TermDescendants),
        "Envoy is only kuma-dp's to stop"
    );
    let a = lc.step(T(300), Input::ProxyExited(OK));
    assert!(a.contains(&Action::TermDescendants));
    let a = lc.step(T(301), Input::DescendantsGone);
    assert_eq!(exit_of(&a).map(|e| e.0), Some(ExitReason::App(OK)));
}

/// Issue 13: the worst case left out the second SIGTERM's SIGKILL bound, the
/// descendants' clean-up and the give-up bound after it (4 s by default).
#[test]
fn worst_case_shutdown_counts_every_wait() {
    let s = Settings {
        app_grace_delay: T(5000),
        ..Settings::defaults()
    };
    // 40 s drain + 1 s to SIGKILL kuma-dp + 5 s grace + 10 s stop + 2 s
    // clean-up + 1 s give-up.
    assert_eq!(s.worst_case_shutdown(), T(59_000));
    let usr2 = Settings {
        drain_mode: DrainMode::InboundUsr2 { wait: T(30_000) },
        ..s.clone()
    };
    // 30 s inbound drain + 5 s + 10 s + 2 s to stop kuma-dp last + 2 s + 1 s.
    assert_eq!(usr2.worst_case_shutdown(), T(50_000));
    let plain = Settings {
        has_proxy: false,
        ..s.clone()
    };
    assert_eq!(plain.worst_case_shutdown(), T(18_000));
    // With nothing else to wait for: the drain's second SIGTERM and SIGKILL
    // one kill bound later, then the clean-up and the give-up bound.
    let quick = Settings {
        app_grace_delay: T(0),
        app_stop_timeout: T(0),
        drain_timeout: T(0),
        ..s
    };
    assert_eq!(quick.worst_case_shutdown(), T(1_000 + 2_000 + 1_000));
    // Proxy-first, stopped while the app is still probed: kuma-dp's fast
    // stop (2 kill bounds) and the app's stop run side by side, and that
    // is longer.
    let quick_proxy_first = Settings {
        start_order: StartOrder::ProxyFirst,
        ..quick
    };
    assert_eq!(
        quick_proxy_first.worst_case_shutdown(),
        T(2_000 + 2_000 + 1_000)
    );
}

/// Issue 13: `--app-grace-delay 300000000000y` made meshinit panic adding
/// the delay to the clock mid-shutdown. Durations are capped at the
/// configuration now, and every deadline saturates besides.
#[test]
fn huge_durations_never_overflow_a_deadline() {
    let huge = Duration::MAX;
    let s = Settings {
        app_grace_delay: huge,
        app_stop_timeout: huge,
        drain_timeout: huge,
        startup_timeout: huge,
        proxy_ready_timeout: huge,
        cleanup_timeout: huge,
        kill_bound: huge,
        idle_drain: Some(IdleDrain {
            min: huge,
            idle: huge,
        }),
        ..Settings::defaults()
    };
    assert_eq!(s.worst_case_shutdown(), huge);
    let (lc, log) = run(
        s,
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
            (1100, Input::InboundIdle),
            (1200, Input::ProxyExited(OK)),
            (1300, Input::Stop(TERM)),
        ],
    );
    assert_eq!(time_of(&log, STOP_APP), Some(1300));
    assert_eq!(lc.next_deadline(), Some(huge));
}

#[test]
fn app_exit_ends_an_inbound_only_drain_at_once() {
    let s = Settings {
        drain_mode: DrainMode::InboundUsr2 { wait: T(30_000) },
        ..settings()
    };
    let (_, log) = run(
        s,
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
            (2000, Input::AppExited(ExitStatus::Code(0))),
        ],
    );
    assert_eq!(
        time_of(&log, TERM_PROXY),
        Some(2000),
        "kuma-dp is not kept for an app that is gone"
    );
}

fn idle_settings() -> Settings {
    Settings {
        idle_drain: Some(IdleDrain {
            min: T(5000),
            idle: T(1000),
        }),
        ..settings()
    }
}

#[test]
fn idle_drain_ends_after_min_and_idle_with_a_second_term() {
    let (_, log) = run(
        idle_settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (10_100, Input::InboundBusy),
            (12_000, Input::InboundIdle),
            (14_000, Input::Tick),
            (15_000, Input::Tick),
            (15_050, Input::ProxyExited(OK)),
        ],
    );
    assert_eq!(time_of(&log, Action::WatchInbound(true)), Some(10_000));
    let terms: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == TERM_PROXY)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        terms,
        vec![10_000, 15_000],
        "stop-now once drain-min has passed and the inbound was idle"
    );
    assert!(log.iter().any(|(t, a)| *t == 15_000
        && *a
            == Action::Event(Event::DrainIdle {
                drained_for: T(5000)
            })));
    assert_eq!(time_of(&log, Action::WatchInbound(false)), Some(15_000));
    assert_eq!(time_of(&log, Action::Enter(Phase::Grace)), Some(15_050));
}

#[test]
fn idle_drain_waits_for_requests_in_flight() {
    let (lc, log) = run(
        idle_settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (10_050, Input::InboundIdle),
            (14_000, Input::InboundBusy),
            (15_000, Input::Tick),
            (20_000, Input::InboundIdle),
            (20_500, Input::Tick),
        ],
    );
    let terms: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == TERM_PROXY)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(terms, vec![10_000], "busy again: the drain goes on");
    assert_eq!(
        lc.next_deadline(),
        Some(T(21_000)),
        "idle for drain-idle from 20 s"
    );
}

#[test]
fn unreadable_stats_fall_back_to_the_fixed_drain() {
    let (lc, log) = run(
        idle_settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (10_100, Input::InboundUnreadable),
            (10_200, Input::InboundUnreadable),
            (10_300, Input::InboundUnreadable),
            (10_400, Input::InboundUnreadable),
            (10_500, Input::InboundUnreadable),
            (10_600, Input::InboundIdle),
            (20_000, Input::Tick),
        ],
    );
    assert_eq!(INBOUND_UNREADABLE_TOLERATED, 5);
    assert_eq!(
        time_of(&log, Action::Event(Event::IdleWatchUnavailable)),
        Some(10_500),
        "the fifth miss in a row gives up"
    );
    assert_eq!(log.iter().filter(|(_, a)| *a == TERM_PROXY).count(), 1);
    assert_eq!(
        lc.next_deadline(),
        Some(T(50_000)),
        "only the drain timeout is left"
    );
}

fn proxy_first() -> Settings {
    Settings {
        start_order: StartOrder::ProxyFirst,
        ..settings()
    }
}

#[test]
fn proxy_first_starts_the_app_once_kuma_dp_is_ready() {
    let (lc, log) = run(
        proxy_first(),
        &[(0, Input::Start), (900, Input::ProxyReady), (1500, HEALTHY)],
    );
    assert_eq!(time_of(&log, Action::SpawnProxy), Some(0));
    assert_eq!(time_of(&log, Action::SpawnApp), Some(900));
    assert_eq!(time_of(&log, Action::Enter(Phase::Probing)), Some(900));
    assert_eq!(time_of(&log, Action::Ready(true)), Some(1500));
    assert_eq!(lc.phase(), Phase::Running);
}

#[test]
fn proxy_first_crash_while_probing_restarts_the_proxy_only() {
    let (lc, log) = run(
        proxy_first(),
        &[
            (0, Input::Start),
            (900, Input::ProxyReady),
            (1000, Input::ProxyExited(ExitStatus::Code(1))),
            (2000, Input::Tick),
            (2500, HEALTHY),
            (3000, Input::ProxyReady),
        ],
    );
    assert_eq!(
        log.iter().filter(|(_, a)| *a == Action::SpawnApp).count(),
        1
    );
    assert_eq!(
        log.iter().filter(|(_, a)| *a == Action::SpawnProxy).count(),
        2
    );
    assert_eq!(time_of(&log, Action::Enter(Phase::ProxyStarting)), Some(0));
    assert_eq!(time_of(&log, Action::Ready(true)), Some(3000));
    assert_eq!(lc.phase(), Phase::Running);
}

#[test]
fn proxy_first_stop_before_the_app_is_healthy_stops_both_without_drain() {
    let (_, log) = run(
        proxy_first(),
        &[
            (0, Input::Start),
            (900, Input::ProxyReady),
            (1000, Input::Stop(TERM)),
        ],
    );
    assert_eq!(time_of(&log, TERM_PROXY), Some(1000));
    assert_eq!(time_of(&log, STOP_APP), Some(1000));
    assert!(!log
        .iter()
        .any(|(_, a)| *a == Action::Enter(Phase::Draining)));
}

#[test]
fn proxy_first_stop_before_kuma_dp_is_ready_never_starts_the_app() {
    let (_, log) = run(
        proxy_first(),
        &[
            (0, Input::Start),
            (500, Input::Stop(TERM)),
            (600, Input::ProxyExited(OK)),
            (601, Input::DescendantsGone),
        ],
    );
    assert!(!log.iter().any(|(_, a)| *a == Action::SpawnApp));
    assert!(log.iter().any(|(_, a)| matches!(a, Action::Exit { .. })));
}

#[test]
fn proxy_first_stopped_before_the_app_started_exits_as_terminated() {
    let (_, log) = run(
        proxy_first(),
        &[
            (0, Input::Start),
            (500, Input::Stop(TERM)),
            (600, Input::ProxyExited(OK)),
            (601, Input::DescendantsGone),
        ],
    );
    let actions: Vec<Action> = log.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        exit_of(&actions).map(|e| e.0),
        Some(ExitReason::App(ExitStatus::Signaled(15)))
    );
}

const INT: Signal = Signal::SIGINT;

#[test]
fn the_app_gets_the_stop_signal_that_was_received() {
    // Ctrl-C: the ordered sequence runs (drain, grace), and the app gets
    // INT at its stop step, as under tini and dumb-init.
    let ctrl_c = [
        (0, Input::Start),
        (100, HEALTHY),
        (200, Input::ProxyReady),
        (1000, Input::Stop(INT)),
        (1500, Input::ProxyExited(OK)),
        (6500, Input::Tick),
    ];
    let (_, log) = run(settings(), &ctrl_c);
    assert_eq!(
        time_of(&log, Action::Signal(Target::Proxy, TERM)),
        Some(1000)
    );
    assert_eq!(time_of(&log, Action::Signal(Target::App, INT)), Some(6500));
    assert_eq!(time_of(&log, STOP_APP), None);

    // A second signal of another kind does not change it: the first one
    // said how the operator stopped the service.
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (1000, Input::Stop(INT)),
            (1200, Input::Stop(TERM)),
        ],
    );
    assert_eq!(time_of(&log, Action::Signal(Target::App, INT)), Some(1200));

    // --app-stop-signal given explicitly wins.
    let explicit = Settings {
        app_stop_signal: Signal::SIGQUIT,
        pass_stop_signal: false,
        ..settings()
    };
    let (_, log) = run(explicit, &ctrl_c);
    assert_eq!(
        time_of(&log, Action::Signal(Target::App, Signal::SIGQUIT)),
        Some(6500)
    );
    assert_eq!(time_of(&log, Action::Signal(Target::App, INT)), None);

    // A shutdown no signal began (startup timeout) uses --app-stop-signal's default.
    let (_, log) = run(settings(), &[(0, Input::Start), (60_000, Input::Tick)]);
    assert_eq!(time_of(&log, STOP_APP), Some(60_000));
}

/// Issue 13: with `--start-order proxy-first` kuma-dp is ready (registered)
/// when the app is spawned; if that fails, kuma-dp is drained and stopped and
/// the descendants cleaned up before meshinit exits with the failure.
#[test]
fn proxy_first_app_that_cannot_start_drains_and_stops_kuma_dp_first() {
    let (lc, log) = run(
        proxy_first(),
        &[
            (0, Input::Start),
            (900, Input::ProxyReady),
            (901, Input::AppSpawnFailed),
            (1500, Input::ProxyExited(OK)),
            (1501, Input::DescendantsGone),
        ],
    );
    assert_eq!(time_of(&log, Action::SpawnApp), Some(900));
    assert_eq!(
        time_of(&log, Action::Event(Event::AppSpawnFailed { drains: true })),
        Some(901)
    );
    assert_eq!(time_of(&log, Action::Enter(Phase::Draining)), Some(901));
    assert_eq!(time_of(&log, TERM_PROXY), Some(901));
    assert_eq!(time_of(&log, Action::TermDescendants), Some(1500));
    assert!(!log.iter().any(|(_, a)| *a == STOP_APP), "no app to stop");
    let actions: Vec<Action> = log.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        exit_of(&actions).map(|e| e.0),
        Some(ExitReason::AppSpawnFailed)
    );
    assert_eq!(lc.phase(), Phase::Done);
}

/// Issue 13: a stop while kuma-dp starts drains it first; with the idle drain
/// it ends as soon as nothing flows, and only then does the app get its stop
/// signal.
#[test]
fn stop_while_kuma_dp_starts_drains_it_first_and_the_idle_drain_ends_it() {
    let s = Settings {
        idle_drain: Some(IdleDrain {
            min: T(0),
            idle: T(200),
        }),
        app_grace_delay: T(0),
        ..Settings::defaults()
    };
    let (_, log) = run(
        s,
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (500, Input::Stop(TERM)),
            (550, Input::InboundIdle),
            (750, Input::Tick),
            (800, Input::ProxyExited(OK)),
        ],
    );
    assert_eq!(time_of(&log, Action::SpawnProxy), Some(300));
    assert_eq!(time_of(&log, Action::Enter(Phase::Draining)), Some(500));
    assert_eq!(time_of(&log, Action::WatchInbound(true)), Some(500));
    assert_eq!(
        log.iter()
            .filter(|(t, a)| *a == TERM_PROXY && *t == 500)
            .count(),
        1
    );
    assert!(log
        .iter()
        .any(|(t, a)| *t == 750 && matches!(a, Action::Event(Event::DrainIdle { .. }))));
    assert_eq!(
        log.iter().filter(|(_, a)| *a == TERM_PROXY).count(),
        2,
        "the idle drain's second SIGTERM"
    );
    assert_eq!(time_of(&log, STOP_APP), Some(800), "after kuma-dp is gone");
}

/// Issue 13: the drain of a starting kuma-dp is cut short by a second stop.
#[test]
fn second_stop_cuts_short_the_drain_of_a_starting_kuma_dp() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (500, Input::Stop(TERM)),
            (600, Input::Stop(TERM)),
        ],
    );
    assert_eq!(time_of(&log, Action::Enter(Phase::Draining)), Some(500));
    assert_eq!(time_of(&log, STOP_APP), Some(600));
    assert_eq!(
        log.iter().filter(|(_, a)| *a == TERM_PROXY).count(),
        2,
        "the drain's SIGTERM, then \"stop now\""
    );
    assert_eq!(
        lc.next_deadline(),
        Some(T(1600)),
        "SIGKILL one kill bound later"
    );
}

#[test]
fn each_timer_has_its_own_slot() {
    for (slot, timer) in Timer::ALL.into_iter().enumerate() {
        assert_eq!(timer as usize, slot, "{timer:?}");
    }
}

#[test]
fn a_reading_between_misses_keeps_the_idle_watch() {
    let mut inputs = vec![
        (0, Input::Start),
        (100, HEALTHY),
        (200, Input::ProxyReady),
        (10_000, Input::Stop(TERM)),
    ];
    let misses = u64::from(INBOUND_UNREADABLE_TOLERATED - 1);
    let mut t = 10_000;
    for _ in 0..2 {
        for _ in 0..misses {
            t += 100;
            inputs.push((t, Input::InboundUnreadable));
        }
        t += 100;
        inputs.push((t, Input::InboundIdle));
    }
    let (lc, log) = run(idle_settings(), &inputs);
    assert!(!log.iter().any(|(_, a)| matches!(
        a,
        Action::WatchInbound(false) | Action::Event(Event::IdleWatchUnavailable)
    )));
    assert_eq!(
        lc.next_deadline(),
        Some(T(15_000)),
        "idle since the first reading: the drain may end after drain-min"
    );
}

#[test]
fn exit_codes_are_the_apps_own_unless_meshinit_gave_up() {
    let map = ExitCodeMap(vec![(143, 0), (69, 1)]);
    let code = |reason: ExitReason| reason.exit_code(&map, 127);
    assert_eq!(code(ExitReason::App(ExitStatus::Code(3))), 3);
    assert_eq!(code(ExitReason::App(ExitStatus::Signaled(15))), 0, "mapped");
    assert_eq!(code(ExitReason::App(ExitStatus::Signaled(9))), 137);
    assert_eq!(code(ExitReason::StartupTimeout), 69, "never mapped");
    assert_eq!(code(ExitReason::Unhealthy), 69);
    assert_eq!(code(ExitReason::ProxyFailed), 75);
    assert_eq!(code(ExitReason::AppSpawnFailed), 127);
}

#[test]
fn ready_text_says_why_not() {
    let (lc, _) = at_phase(Phase::Starting);
    assert_eq!(lc.ready_text(), "starting");
    let (mut lc, now) = at_phase(Phase::Running);
    assert_eq!(lc.ready_text(), "ready");
    lc.step(now + T(100), UNHEALTHY);
    assert_eq!(lc.ready_text(), "running (out of the mesh: app unhealthy)");
    lc.step(now + T(200), OUT);
    assert_eq!(
        lc.ready_text(),
        "running (out of the mesh: operator, app unhealthy)"
    );
    lc.step(now + T(300), HEALTHY);
    assert_eq!(lc.ready_text(), "running (out of the mesh: operator)");
    let (lc, _) = at_phase(Phase::Draining);
    assert_eq!(lc.ready_text(), "draining");
    // Reporting only (`--on-unhealthy none`): the app is named, not the mesh.
    let mut lc = Lifecycle::new(Settings {
        on_unhealthy: OnUnhealthy::None,
        ..settings()
    });
    lc.step(T(0), Input::Start);
    lc.step(T(300), HEALTHY);
    lc.step(T(800), Input::ProxyReady);
    let a = lc.step(T(900), UNHEALTHY);
    assert_eq!(lc.ready_text(), "running (app unhealthy)");
    assert!(!a.contains(&LEAVE), "{a:?}");
    assert!(lc.in_mesh());
}

/// Issue 20, item 12: `/status`' `healthy` and `meshinit_healthy` agree with `/ready`.
#[test]
fn healthy_means_running_with_probes_passing_or_with_no_probe_at_all() {
    let (lc, _) = at_phase(Phase::Probing);
    assert!(!lc.is_healthy(), "probes not passing yet");
    let (mut lc, now) = at_phase(Phase::Running);
    assert!(lc.is_healthy());
    lc.step(now + T(100), UNHEALTHY);
    assert!(!lc.is_healthy(), "liveness failing");
    let (lc, _) = at_phase(Phase::Grace);
    assert!(
        lc.is_healthy(),
        "the app still runs; probes stopped at the shutdown"
    );
    let (lc, _) = at_phase(Phase::Cleanup);
    assert!(!lc.is_healthy(), "the app has exited");

    // No probe: the app counts as healthy once it runs, as /ready already says.
    let mut lc = Lifecycle::new(Settings {
        probes: Vec::new(),
        has_proxy: false,
        ..settings()
    });
    assert!(!lc.is_healthy(), "not started");
    lc.step(T(0), Input::Start);
    assert!(lc.is_healthy() && lc.is_ready());
    lc.step(T(500), Input::AppExited(ExitStatus::Code(3)));
    assert!(!lc.is_healthy(), "the app has exited");
}

#[test]
fn shutdown_time_left_counts_down_from_the_worst_case() {
    let (lc, _) = at_phase(Phase::Running);
    let worst = settings().worst_case_shutdown();
    assert_eq!(lc.shutdown_time_left(T(99_000)), worst, "no shutdown yet");
    // The shutdown began at 10 s.
    let (lc, _) = at_phase(Phase::Grace);
    assert_eq!(lc.shutdown_time_left(T(13_000)), worst - T(3000));
    assert_eq!(
        lc.shutdown_time_left(T(10_000) + worst + T(1)),
        Duration::ZERO
    );
}

/// Issue 22: why the drain ended is the lifecycle's decision (the first one
/// counts), no longer inferred from phase changes by the metrics, which
/// called a USR2 drain ended by the app's exit `wait`.
#[test]
fn the_drain_end_is_the_first_decision_that_ends_the_drain() {
    let serving: &[(u64, Input)] = &[
        (0, Input::Start),
        (300, HEALTHY),
        (800, Input::ProxyReady),
        (10_000, Input::Stop(TERM)),
    ];
    let idle = Settings {
        idle_drain: Some(IdleDrain {
            min: T(1000),
            idle: T(200),
        }),
        ..settings()
    };
    let usr2 = Settings {
        drain_mode: DrainMode::InboundUsr2 { wait: T(3000) },
        ..settings()
    };
    /// What happens after the stop signal, and the reason it must give.
    type Case = (&'static str, Settings, Vec<(u64, Input)>, Option<DrainEnd>);
    let cases: Vec<Case> = vec![
        (
            "kuma-dp exits on its own",
            settings(),
            vec![(12_000, Input::ProxyExited(OK))],
            Some(DrainEnd::ProxyExit),
        ),
        (
            "the drain timeout, then kuma-dp exits",
            settings(),
            vec![(50_000, Input::Tick), (50_100, Input::ProxyExited(OK))],
            Some(DrainEnd::Timeout),
        ),
        (
            "idle after drain-min",
            idle,
            vec![
                (10_100, Input::InboundIdle),
                (11_000, Input::Tick),
                (11_050, Input::ProxyExited(OK)),
            ],
            Some(DrainEnd::Idle),
        ),
        (
            "the USR2 wait passes",
            usr2.clone(),
            vec![(13_000, Input::Tick)],
            Some(DrainEnd::Wait),
        ),
        (
            "the app exits during a USR2 drain",
            usr2,
            vec![(11_000, Input::AppExited(OK))],
            Some(DrainEnd::AppExit),
        ),
        (
            "a second stop signal",
            settings(),
            vec![
                (11_000, Input::Stop(TERM)),
                (11_100, Input::ProxyExited(OK)),
            ],
            Some(DrainEnd::CutShort),
        ),
        (
            "a third stop signal mid-drain",
            settings(),
            vec![(11_000, Input::Stop(TERM)), (11_100, Input::Stop(TERM))],
            Some(DrainEnd::CutShort),
        ),
    ];
    for (what, s, rest, expected) in cases {
        let mut lc = Lifecycle::new(s);
        let mut now = T(0);
        for (t, input) in serving.iter().chain(rest.iter()) {
            now = T(*t);
            lc.step(now, *input);
        }
        assert_eq!(lc.shutdown_spans().drain_end(), expected, "{what}");
        assert!(
            lc.shutdown_spans().drain.end.is_some(),
            "{what}: the drain ended"
        );
        assert_eq!(
            lc.shutdown_spans().timeline(now).and_then(|t| t.drain_end),
            expected,
            "{what}"
        );
    }
    // No drain without a proxy: no reason.
    let mut plain = Lifecycle::new(Settings {
        has_proxy: false,
        ..settings()
    });
    plain.step(T(0), Input::Start);
    plain.step(T(300), HEALTHY);
    plain.step(T(1000), Input::Stop(TERM));
    assert_eq!(plain.shutdown_spans().drain_end(), None);
}

/// Plain init mode (no proxy, no probes, no grace delay), with
/// `--app-stop-timeout` given or not.
fn plain(stop_timeout_given: bool) -> Settings {
    Settings {
        has_proxy: false,
        probes: Vec::new(),
        app_grace_delay: T(0),
        app_stop_timeout_given: stop_timeout_given,
        ..settings()
    }
}

fn signals_to_app(log: &[(u64, Action)]) -> Vec<(u64, Signal)> {
    log.iter()
        .filter_map(|(t, a)| match a {
            Action::Signal(Target::App, s) if *s != Signal::SIGCONT => Some((*t, *s)),
            _ => None,
        })
        .collect()
}

/// Issue 20, item 18: in plain init mode INT and TERM keep tini's and
/// dumb-init's meaning: every one reaches the app, the app decides; no
/// escalation on a second Ctrl-C, no SIGKILL of meshinit's own after
/// `--app-stop-timeout` unless it was given.
#[test]
fn plain_init_mode_passes_every_stop_signal_on_and_never_escalates() {
    const INT: Signal = Signal::SIGINT;
    let (lc, log) = run(
        plain(false),
        &[
            (0, Input::Start),
            (1_000, Input::Stop(INT)),
            (1_500, Input::Stop(INT)),
            (2_000, Input::Stop(TERM)),
            (3_600_000, Input::Tick),
        ],
    );
    assert_eq!(
        signals_to_app(&log),
        [(1_000, INT), (1_500, INT), (2_000, TERM)],
        "each stop signal reaches the app as it came: {log:?}"
    );
    assert_eq!(lc.phase(), Phase::Stopping, "waiting for the app");
    assert_eq!(lc.next_deadline(), None, "no SIGKILL is timed");
    assert!(!lc.shutdown_is_bounded());
    for forbidden in [
        Action::Kill(Target::App),
        Action::KillDescendants,
        Action::Event(Event::Escalated { stops: 2 }),
        Action::Event(Event::Escalated { stops: 3 }),
    ] {
        assert_eq!(time_of(&log, forbidden), None, "{forbidden:?} in {log:?}");
    }
    assert_eq!(
        time_of(&log, Action::Event(Event::StopForwarded)),
        Some(1_500)
    );
    // The app decides: a REPL that handled both Ctrl-C exits later, its own way.
    let (_, log) = run(
        plain(false),
        &[
            (0, Input::Start),
            (1_000, Input::Stop(INT)),
            (1_500, Input::Stop(INT)),
            (90_000, Input::AppExited(ExitStatus::Code(0))),
            (90_010, Input::DescendantsGone),
        ],
    );
    assert!(matches!(
        exit_of(&log.iter().map(|(_, a)| *a).collect::<Vec<_>>()),
        Some((ExitReason::App(ExitStatus::Code(0)), _))
    ));
}

/// With `--app-stop-timeout` given explicitly, the SIGKILL comes after it,
/// and a second stop signal still does not cut it short.
#[test]
fn plain_init_mode_kills_after_an_explicit_stop_timeout_only() {
    let (lc, log) = run(
        plain(true),
        &[
            (0, Input::Start),
            (1_000, Input::Stop(TERM)),
            (1_500, Input::Stop(TERM)),
            (10_999, Input::Tick),
        ],
    );
    assert!(lc.shutdown_is_bounded());
    assert_eq!(lc.next_deadline(), Some(T(11_000)), "not cut short to 1s");
    assert_eq!(signals_to_app(&log), [(1_000, TERM), (1_500, TERM)]);
    assert_eq!(time_of(&log, Action::Kill(Target::App)), None);
    let (_, log) = run(
        plain(true),
        &[
            (0, Input::Start),
            (1_000, Input::Stop(TERM)),
            (11_000, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, Action::Kill(Target::App)), Some(11_000));
    // The worst case a platform must allow is as before: it is a bound now.
    assert_eq!(plain(true).worst_case_shutdown(), T(13_000));
}

/// A shutdown meshinit begins itself (here the startup timeout) is bounded
/// in plain mode too: no platform asked for it, none is counting.
#[test]
fn plain_init_mode_bounds_a_shutdown_meshinit_began_itself() {
    let s = Settings {
        probes: vec![Thresholds {
            success: 1,
            failure: 1,
        }],
        ..plain(false)
    };
    let (lc, log) = run(s, &[(0, Input::Start), (60_000, Input::Tick)]);
    assert_eq!(time_of(&log, STOP_APP), Some(60_000));
    assert!(lc.shutdown_is_bounded());
    assert_eq!(lc.next_deadline(), Some(T(70_000)), "SIGKILL after 10s");
}

/// With a grace delay in plain mode, a second stop signal ends the grace
/// (the app gets its stop signal now) without escalating.
#[test]
fn plain_init_mode_second_stop_during_the_grace_delay_stops_the_app_now() {
    let s = Settings {
        app_grace_delay: T(30_000),
        ..plain(false)
    };
    let (lc, log) = run(
        s,
        &[
            (0, Input::Start),
            (1_000, Input::Stop(TERM)),
            (2_000, Input::Stop(TERM)),
        ],
    );
    assert_eq!(time_of(&log, Action::Enter(Phase::Grace)), Some(1_000));
    assert_eq!(signals_to_app(&log), [(2_000, TERM)]);
    assert_eq!(lc.phase(), Phase::Stopping);
    assert_eq!(lc.next_deadline(), None);
    assert_eq!(
        time_of(&log, Action::Event(Event::Escalated { stops: 2 })),
        None
    );
}

/// Issue 20, item 18, by phase: a stop signal in plain init mode, wherever
/// the run is, never escalates or SIGKILLs; it reaches the app or, with the
/// app gone, leaves the clean-up as it is.
#[test]
fn plain_init_mode_stop_in_every_phase() {
    let s = Settings {
        app_grace_delay: T(5_000),
        ..plain(false)
    };
    /// The path to a phase, the phase it reaches, the phase after the stop
    /// signal, and actions that must come with it.
    type Case<'a> = (&'a [(u64, Input)], Phase, Phase, &'a [Action]);
    let paths: &[Case] = &[
        (
            &[],
            Phase::Starting,
            Phase::Cleanup,
            &[Action::TermDescendants],
        ),
        (
            &[(0, Input::Start)],
            Phase::Running,
            Phase::Grace,
            &[Action::Ready(false)],
        ),
        (
            &[(0, Input::Start), (100, Input::Stop(TERM))],
            Phase::Grace,
            Phase::Stopping,
            &[STOP_APP],
        ),
        (
            &[
                (0, Input::Start),
                (100, Input::Stop(TERM)),
                (5_100, Input::Tick),
            ],
            Phase::Stopping,
            Phase::Stopping,
            &[STOP_APP, Action::Event(Event::StopForwarded)],
        ),
        (
            &[
                (0, Input::Start),
                (100, Input::Stop(TERM)),
                (5_100, Input::Tick),
                (5_200, Input::AppExited(ExitStatus::Code(0))),
            ],
            Phase::Cleanup,
            Phase::Cleanup,
            &[],
        ),
    ];
    for (path, at, next, must) in paths {
        let mut lc = Lifecycle::new(s.clone());
        let mut now = T(0);
        for (t, input) in *path {
            now = T(*t);
            lc.step(now, *input);
        }
        assert_eq!(lc.phase(), *at, "setup {path:?}");
        let actions = lc.step(now + T(10), Input::Stop(TERM));
        assert_eq!(lc.phase(), *next, "{at:?}: {actions:?}");
        for a in *must {
            assert!(actions.contains(a), "{at:?}: missing {a:?} in {actions:?}");
        }
        for a in [
            Action::Kill(Target::App),
            Action::KillDescendants,
            Action::Event(Event::Escalated { stops: 2 }),
            Action::Event(Event::StopDuringShutdown),
        ] {
            assert!(!actions.contains(&a), "{at:?}: {a:?} in {actions:?}");
        }
        if lc.phase() == Phase::Stopping {
            assert_eq!(lc.next_deadline(), None, "{at:?}: a SIGKILL is timed");
        }
    }
}

/// A second stop signal after the descendants were already SIGKILLed re-armed
/// their SIGKILL, which pushed the give-up bound later: the shutdown took longer
/// than the worst case (found by the property tests). It only ever shortens now.
#[test]
fn a_second_stop_after_the_descendants_sigkill_does_not_push_the_give_up_later() {
    // A kill bound longer than the clean-up timeout: a re-armed SIGKILL then
    // fires before the give-up bound and sets it again, later.
    let s = Settings {
        app_grace_delay: T(0),
        kill_bound: T(3000),
        cleanup_timeout: T(1000),
        ..settings()
    };
    let (lc, log) = run(
        s,
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (10_100, Input::ProxyExited(OK)),
            (10_200, Input::AppExited(OK)),
            // The clean-up's SIGKILL after 1 s, the give-up bound 3 s later.
            (11_200, Input::Tick),
            (11_500, Input::Stop(TERM)),
            (12_500, Input::Tick),
            (14_200, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, Action::KillDescendants), Some(11_200));
    assert_eq!(
        log.iter()
            .filter(|(_, a)| *a == Action::KillDescendants)
            .count(),
        1,
        "{log:?}"
    );
    assert_eq!(lc.phase(), Phase::Done, "given up at 14.2 s: {log:?}");
}

/// Issue 22: the probes' thresholds and "every probe passes" are the
/// lifecycle's (they were the driver's): results go in one by one, each
/// probe's change is an event, the app's health follows all of them.
#[test]
fn probe_results_make_the_app_healthy_only_when_every_probe_passes_its_thresholds() {
    let s = Settings {
        probes: vec![
            Thresholds {
                success: 2,
                failure: 2,
            },
            Thresholds {
                success: 1,
                failure: 3,
            },
        ],
        ..settings()
    };
    let probe = |probe, ok| Input::Probe { probe, ok };
    let mut lc = Lifecycle::new(s);
    lc.step(T(0), Input::Start);
    let a = lc.step(T(100), probe(0, true));
    assert!(a.is_empty(), "one success of two: {a:?}");
    let a = lc.step(T(200), probe(1, true));
    assert_eq!(
        a,
        [Action::Event(Event::ProbeChanged {
            probe: 1,
            passing: true
        })],
        "probe 0 does not pass yet"
    );
    assert_eq!(lc.phase(), Phase::Probing);
    let a = lc.step(T(300), probe(0, true));
    assert!(a.contains(&Action::Event(Event::ProbeChanged {
        probe: 0,
        passing: true
    })));
    assert!(a.contains(&Action::Event(Event::AppHealthy)), "{a:?}");
    assert!(a.contains(&Action::SpawnProxy));
    lc.step(T(400), Input::ProxyReady);
    assert!(lc.is_ready());
    // One failure of probe 1 (threshold 3), two of probe 0 (threshold 2).
    assert!(lc.step(T(500), probe(1, false)).is_empty());
    assert!(lc.step(T(600), probe(0, false)).is_empty());
    assert_eq!(lc.probe_standing(0), Some((true, 1)));
    let a = lc.step(T(700), probe(0, false));
    assert!(a.contains(&Action::Event(Event::AppUnhealthy)), "{a:?}");
    assert!(a.contains(&Action::Ready(false)));
    assert_eq!(lc.ready_text(), "running (out of the mesh: app unhealthy)");
    // A result for a probe that does not exist changes nothing.
    assert!(lc.step(T(800), probe(7, true)).is_empty());
    assert_eq!(lc.probe_standing(7), None);
}

/// Issue 23, item 1: with `--on-unhealthy leave` failing probes take the
/// instance out of the mesh (Envoy fails its health checks) and passing ones
/// put it back; nothing is stopped, and kuma-dp's own later re-fail on
/// SIGTERM is not undone by a stray `ok`.
#[test]
fn unhealthy_leaves_the_mesh_and_healthy_rejoins_without_stopping_anything() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (5_000, UNHEALTHY),
            (6_000, UNHEALTHY),
            (9_000, HEALTHY),
            (10_000, HEALTHY),
        ],
    );
    assert_eq!(time_of(&log, LEAVE), Some(5_000));
    assert_eq!(time_of(&log, REJOIN), Some(9_000));
    assert_eq!(
        log.iter().filter(|(_, a)| *a == LEAVE).count(),
        1,
        "{log:?}"
    );
    assert_eq!(
        time_of(
            &log,
            Action::Event(Event::LeftMesh {
                reasons: OutReasons {
                    unhealthy: true,
                    operator: false
                },
                again: false
            })
        ),
        Some(5_000)
    );
    assert_eq!(time_of(&log, Action::Event(Event::BackInMesh)), Some(9_000));
    assert_eq!(time_of(&log, Action::Ready(true)), Some(800));
    assert!(lc.is_ready() && lc.in_mesh());
    assert!(!log.iter().any(|(_, a)| matches!(
        a,
        Action::Signal(..) | Action::Kill(_) | Action::Enter(Phase::Draining)
    )));
}

/// Issue 23: never out of the mesh before kuma-dp is ready; a failure while
/// it starts is applied the moment it is.
#[test]
fn no_leave_before_kuma_dp_is_ready_and_then_at_once() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (400, UNHEALTHY),
            (500, OUT),
            (800, Input::ProxyReady),
        ],
    );
    assert_eq!(time_of(&log, LEAVE), Some(800), "{log:?}");
    assert_eq!(time_of(&log, Action::Ready(true)), None);
    // Startup failures (the app not healthy yet) are no reason to leave.
    let (lc, log) = run(
        Settings {
            start_order: StartOrder::ProxyFirst,
            ..settings()
        },
        &[
            (0, Input::Start),
            (500, Input::ProxyReady),
            (600, UNHEALTHY),
            (700, UNHEALTHY),
        ],
    );
    assert_eq!(time_of(&log, LEAVE), None, "{log:?}");
    assert!(lc.in_mesh());
}

/// Issue 23, item 2: the operator's out survives probe recoveries until in;
/// an in while the probes fail keeps the instance out (reason: unhealthy).
#[test]
fn operator_out_holds_until_in_and_in_while_unhealthy_stays_out() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1_000, OUT),
            (2_000, UNHEALTHY),
            (3_000, HEALTHY),
            (4_000, UNHEALTHY),
            (5_000, IN),
        ],
    );
    assert_eq!(time_of(&log, LEAVE), Some(1_000));
    assert_eq!(time_of(&log, REJOIN), None, "{log:?}");
    assert!(!lc.in_mesh());
    assert_eq!(
        lc.out_reasons(),
        OutReasons {
            unhealthy: true,
            operator: false
        }
    );
    let mut lc = lc;
    let a = lc.step(T(6_000), HEALTHY);
    assert!(a.contains(&REJOIN), "{a:?}");
    assert!(a.contains(&Action::Ready(true)), "{a:?}");
    assert!(lc.in_mesh());
}

/// Issue 23: a stop signal while out runs the usual shutdown (drain first),
/// and every call on the health checks stops (kuma-dp fails them itself).
#[test]
fn stop_while_out_drains_as_usual_and_stops_calling() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1_000, OUT),
            (2_000, Input::Stop(TERM)),
            (3_000, IN),
            (4_000, Input::ProxyExited(OK)),
            (9_000, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, TERM_PROXY), Some(2_000));
    assert_eq!(
        time_of(&log, Action::Membership(MeshCall::Stop)),
        Some(2_000)
    );
    assert_eq!(time_of(&log, REJOIN), None, "{log:?}");
    assert_eq!(time_of(&log, STOP_APP), Some(9_000), "drain, grace, stop");
}

/// Issue 23: kuma-dp restarted while out (a crash, or a hang kill): the new
/// Envoy passes its health checks, so the leave is applied again once it is
/// ready; an in during the restart needs no call.
#[test]
fn a_restart_while_out_leaves_again_once_the_new_kuma_dp_is_ready() {
    let (_, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1_000, OUT),
            (2_000, Input::ProxyExited(ExitStatus::Code(1))),
            (3_000, Input::Tick),
            (3_500, Input::ProxyReady),
        ],
    );
    let leaves: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == LEAVE)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(leaves, [1_000, 3_500], "{log:?}");
    assert_eq!(
        time_of(&log, Action::Membership(MeshCall::Stop)),
        Some(2_000),
        "no retries on a kuma-dp that is gone"
    );
    assert!(log.iter().any(
        |(t, a)| *t == 3_500 && matches!(a, Action::Event(Event::LeftMesh { again: true, .. }))
    ));
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1_000, OUT),
            (2_000, Input::ProxyExited(ExitStatus::Code(1))),
            (2_500, IN),
            (3_000, Input::Tick),
            (3_500, Input::ProxyReady),
        ],
    );
    assert_eq!(log.iter().filter(|(_, a)| *a == LEAVE).count(), 1);
    assert_eq!(time_of(&log, REJOIN), None);
    assert_eq!(time_of(&log, Action::Event(Event::BackInMesh)), Some(3_500));
    assert!(lc.is_ready());
}

/// An app that turned unhealthy while kuma-dp restarted used to leave the
/// phase at proxy-starting for good (its recovery only moved `probing` on):
/// never ready again.
#[test]
fn unhealthy_during_a_restart_runs_again_once_kuma_dp_is_ready_and_the_app_recovers() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (2_000, Input::ProxyExited(ExitStatus::Code(1))),
            (2_100, UNHEALTHY),
            (3_000, Input::Tick),
            (3_500, Input::ProxyReady),
            (4_000, HEALTHY),
        ],
    );
    assert_eq!(lc.phase(), Phase::Running, "{log:?}");
    assert!(lc.is_ready());
    assert_eq!(time_of(&log, LEAVE), Some(3_500));
    assert_eq!(time_of(&log, REJOIN), Some(4_000));
}

/// Issue 23, item 3: Envoy's admin API silent for --proxy-hang-timeout: not
/// ready, kuma-dp (and Envoy) SIGKILLed, restarted with the crash backoff;
/// an answer of any kind (a 503 DRAINING while out is one) keeps it alive.
#[test]
fn a_hung_proxy_is_killed_and_restarted_with_the_backoff() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (2_800, Input::ProxyAnswered),
            (4_800, Input::ProxyUnanswered),
            (6_800, Input::ProxyUnanswered),
            (17_799, Input::Tick),
            (17_800, Input::Tick),
            (17_810, Input::ProxyExited(ExitStatus::Signaled(9))),
            (18_810, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, Action::WatchProxy(true)), Some(300));
    assert_eq!(
        time_of(&log, Action::Event(Event::ProxySilent)),
        Some(4_800)
    );
    assert_eq!(
        log.iter()
            .filter(|(_, a)| *a == Action::Event(Event::ProxySilent))
            .count(),
        1
    );
    assert_eq!(time_of(&log, Action::Kill(Target::Proxy)), Some(17_800));
    assert_eq!(time_of(&log, HUNG_15S), Some(17_800));
    assert_eq!(time_of(&log, Action::Ready(false)), Some(17_800));
    assert_eq!(
        time_of(
            &log,
            Action::Event(Event::ProxyRestarting {
                attempt: 1,
                delay: ONE_SECOND
            })
        ),
        Some(17_810)
    );
    let spawns: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == Action::SpawnProxy)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(spawns, [300, 18_810]);
    assert_eq!(lc.proxy_restarts(), 1, "the restart budget counts it");
    // A timeout shorter than the checks' period: the timer passes before any check was
    // missed, which is no hang; the first miss after it is.
    let (_, log) = run(
        Settings {
            proxy_hang_timeout: Some(T(1_000)),
            ..settings()
        },
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1_800, Input::Tick),
            (2_300, Input::ProxyAnswered),
            (3_300, Input::Tick),
            (4_300, Input::ProxyAnswered),
            (6_300, Input::ProxyUnanswered),
        ],
    );
    assert_eq!(
        time_of(&log, Action::Kill(Target::Proxy)),
        Some(6_300),
        "{log:?}"
    );
    // Answers keep it alive however long it runs.
    let mut inputs = vec![(0, Input::Start), (300, HEALTHY), (800, Input::ProxyReady)];
    for i in 1..100u64 {
        inputs.push((800 + i * 2_000, Input::ProxyAnswered));
        inputs.push((800 + i * 2_000, Input::Tick));
    }
    let (_, log) = run(settings(), &inputs);
    assert_eq!(time_of(&log, Action::Kill(Target::Proxy)), None);
}

/// Issue 23, item 3: a starting kuma-dp is not judged before it answered
/// or was ready (`--proxy-ready-timeout` bounds its start), and `0`
/// (`None`) turns the watch off: nothing is polled.
#[test]
fn a_starting_proxy_is_left_to_the_ready_timeout_and_the_watch_can_be_off() {
    let (lc, log) = run(
        settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (2_300, Input::ProxyUnanswered),
            (40_000, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, Action::Kill(Target::Proxy)), None, "{log:?}");
    assert_eq!(lc.phase(), Phase::ProxyStarting);
    let (_, log) = run(
        Settings {
            proxy_hang_timeout: None,
            ..settings()
        },
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (100_000, Input::Tick),
        ],
    );
    assert!(!log
        .iter()
        .any(|(_, a)| matches!(a, Action::WatchProxy(_) | Action::Kill(_))));
}

fn out_waited(log: &[(u64, Action)]) -> Vec<(u64, OutWaitEnd, Duration)> {
    log.iter()
        .filter_map(|(t, a)| match a {
            Action::Event(Event::OutWaitEnded { end, waited }) => Some((*t, *end, *waited)),
            _ => None,
        })
        .collect()
}

/// Issue 23, item 2: `ctl out` (waiting) returns once the inbound side is idle by the
/// shutdown drain's rule (at least --drain-min, then --drain-idle without traffic), read
/// from Envoy's stats as the drain reads them; busy readings put the end off.
#[test]
fn operator_out_waits_for_the_inbound_side_by_the_drains_idle_rule() {
    let (lc, log) = run(
        idle_settings(),
        &[
            (0, Input::Start),
            (300, HEALTHY),
            (800, Input::ProxyReady),
            (1_000, OUT_WAIT),
            (1_100, Input::InboundBusy),
            (2_000, Input::InboundIdle),
            (3_000, Input::InboundBusy),
            (5_500, Input::InboundIdle),
            (6_000, Input::Tick),
            (6_499, Input::Tick),
            (6_500, Input::Tick),
        ],
    );
    assert_eq!(time_of(&log, LEAVE), Some(1_000));
    assert_eq!(time_of(&log, Action::WatchInbound(true)), Some(1_000));
    assert_eq!(
        out_waited(&log),
        [(6_500, OutWaitEnd::Idle, T(5_500))],
        "min 5 s from the request, then 1 s idle: {log:?}"
    );
    assert_eq!(time_of(&log, Action::WatchInbound(false)), Some(6_500));
    assert!(!lc.waits_for_idle_out());
    assert_eq!(lc.phase(), Phase::Running);
    assert!(
        !lc.in_mesh(),
        "still out: the wait only says when it is idle"
    );
}

/// Issue 23, item 2: the wait is bounded by --drain-timeout (a TCP inbound's long-lived
/// connection is never drain-closed), ends at once on `in`, and a shutdown's drain takes
/// the watch over.
#[test]
fn operator_out_wait_times_out_is_cancelled_by_in_and_yields_to_a_shutdown() {
    let serving: Vec<(u64, Input)> = vec![
        (0, Input::Start),
        (300, HEALTHY),
        (800, Input::ProxyReady),
        (1_000, OUT_WAIT),
        (1_100, Input::InboundBusy),
    ];
    let with = |rest: &[(u64, Input)]| {
        let mut all = serving.clone();
        all.extend_from_slice(rest);
        run(idle_settings(), &all).1
    };
    let log = with(&[(40_999, Input::Tick), (41_000, Input::Tick)]);
    assert_eq!(
        out_waited(&log),
        [(41_000, OutWaitEnd::Timeout, T(40_000))],
        "{log:?}"
    );
    let log = with(&[(2_000, IN)]);
    assert_eq!(out_waited(&log), [(2_000, OutWaitEnd::Cancelled, T(1_000))]);
    assert_eq!(time_of(&log, REJOIN), Some(2_000));
    let log = with(&[(2_000, Input::Stop(TERM))]);
    assert_eq!(
        out_waited(&log),
        [(2_000, OutWaitEnd::ShuttingDown, T(1_000))]
    );
    let watches: Vec<(u64, Action)> = log
        .iter()
        .filter(|(_, a)| matches!(a, Action::WatchInbound(_)))
        .copied()
        .collect();
    assert_eq!(
        watches,
        [
            (1_000, Action::WatchInbound(true)),
            (2_000, Action::WatchInbound(false)),
            (2_000, Action::WatchInbound(true)),
        ],
        "the drain watches afresh"
    );
    let log = with(&[(2_000, Input::ProxyExited(ExitStatus::Code(1)))]);
    assert_eq!(
        out_waited(&log),
        [(2_000, OutWaitEnd::NotServing, T(1_000))]
    );
    let mut unreadable = vec![(1_200, Input::InboundUnreadable)];
    for i in 1..INBOUND_UNREADABLE_TOLERATED {
        unreadable.push((1_200 + u64::from(i) * 100, Input::InboundUnreadable));
    }
    let log = with(&unreadable);
    assert!(
        matches!(out_waited(&log)[..], [(_, OutWaitEnd::Unreadable, _)]),
        "{log:?}"
    );
    // Without kuma-dp there is no mesh: refused.
    let (_, log) = run(
        Settings {
            has_proxy: false,
            ..idle_settings()
        },
        &[(0, Input::Start), (300, HEALTHY), (1_000, OUT_WAIT)],
    );
    assert_eq!(
        time_of(
            &log,
            Action::Event(Event::OperatorRefused(OperatorRefused::NoProxy))
        ),
        Some(1_000)
    );
    assert_eq!(time_of(&log, LEAVE), None);
}

// ---- Issue 26: the hold drain and the DNS gate ----

const SECOND_TERM: Action = TERM_PROXY;
const USR2_PROXY: Action = Action::Signal(Target::Proxy, Signal::SIGUSR2);

/// `--drain-signal hold` on the usual settings (grace 5 s, drain timeout
/// 40 s, app stop timeout 10 s).
fn hold() -> Settings {
    Settings {
        drain_mode: DrainMode::Hold,
        ..settings()
    }
}

/// A hold-mode machine brought to one of the shutdown's phases: the stop at
/// 10 s, the inbound drain ended by `--drain-timeout` at 50 s, the grace
/// until 55 s, the app gone at 55.1 s.
fn at_hold_phase(phase: Phase) -> (Lifecycle, Duration) {
    let mut lc = Lifecycle::new(hold());
    let mut path = vec![
        (0, Input::Start),
        (300, HEALTHY),
        (800, Input::ProxyReady),
        (10_000, Input::Stop(TERM)),
    ];
    let extra: &[(u64, Input)] = match phase {
        Phase::Draining => &[],
        Phase::Grace => &[(50_000, Input::Tick)],
        Phase::Stopping => &[(50_000, Input::Tick), (55_000, Input::Tick)],
        Phase::Cleanup => &[
            (50_000, Input::Tick),
            (55_000, Input::Tick),
            (55_100, Input::AppExited(ExitStatus::Signaled(15))),
        ],
        other => panic!("no hold setup for {other:?}"),
    };
    path.extend_from_slice(extra);
    let mut now = T(0);
    for (t, input) in path {
        now = T(t);
        lc.step(now, input);
    }
    assert_eq!(lc.phase(), phase, "setup reached {:?}", lc.phase());
    (lc, now)
}

/// Every (phase, input) pair of the phases the hold drain changes.
#[rustfmt::skip]
fn hold_table() -> Vec<Row> {
    use Input::*;
    use Phase::*;
    let app_exit = AppExited(ExitStatus::Code(3));
    let proxy_exit = ProxyExited(ExitStatus::Code(0));
    let mut rows = Vec::new();
    // The inbound drain: kuma-dp got one SIGTERM and is kept.
    rows.extend([
        Row { phase: Draining, input: Start, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Draining, input: HEALTHY, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Draining, input: UNHEALTHY, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Draining, input: ProxyReady, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        // The app gone: the inbound drain still runs its course (clients must stop sending first).
        Row { phase: Draining, input: app_exit, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM, Action::Kill(Target::Proxy)] },
        Row { phase: Draining, input: AppSpawnFailed, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        // kuma-dp gone by itself during the hold: said, and the grace follows as planned.
        Row { phase: Draining, input: proxy_exit, after_ms: 0, next: Grace, must: &[Action::Event(Event::HeldProxyExited { phase: Draining })], must_not: &[STOP_APP] },
        Row { phase: Draining, input: ProxySpawnFailed, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        // The operator's second stop cuts it short: kuma-dp's second SIGTERM now, the app's stop now.
        Row { phase: Draining, input: Stop(TERM), after_ms: 0, next: Stopping, must: &[SECOND_TERM, STOP_APP], must_not: &[USR2_PROXY] },
        Row { phase: Draining, input: Tick, after_ms: 39_000, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        // --drain-timeout ends the inbound drain: held, no signal to kuma-dp, the grace begins.
        Row { phase: Draining, input: Tick, after_ms: 40_000, next: Grace, must: &[Action::Event(Event::ProxyHeld { end: DrainEnd::Timeout })], must_not: &[SECOND_TERM, Action::Kill(Target::Proxy), Action::Event(Event::DrainTimeout), STOP_APP] },
        Row { phase: Draining, input: DescendantsGone, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Draining, input: InboundIdle, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Draining, input: InboundBusy, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Draining, input: InboundUnreadable, after_ms: 0, next: Draining, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Draining, input: OUT, after_ms: 0, next: Draining, must: &[], must_not: &[LEAVE] },
        Row { phase: Draining, input: OUT_WAIT, after_ms: 0, next: Draining, must: &[], must_not: &[LEAVE] },
        Row { phase: Draining, input: IN, after_ms: 0, next: Draining, must: &[], must_not: &[REJOIN] },
        Row { phase: Draining, input: ProxyAnswered, after_ms: 0, next: Draining, must: &[], must_not: &[] },
        Row { phase: Draining, input: ProxyUnanswered, after_ms: 0, next: Draining, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
        Row { phase: Draining, input: ProxyDnsAnswered, after_ms: 0, next: Draining, must: &[], must_not: &[] },
    ]);
    // The grace and the app's stop: kuma-dp still held.
    for phase in [Grace, Stopping] {
        let (timer_ms, timer_next, timer_must): (u64, Phase, &'static [Action]) = match phase {
            Grace => (5_000, Stopping, &[STOP_APP]),
            _ => (10_000, Stopping, &[Action::Kill(Target::App)]),
        };
        let held_exit: &'static [Action] = match phase {
            Grace => &[Action::Event(Event::HeldProxyExited { phase: Grace })],
            _ => &[Action::Event(Event::HeldProxyExited { phase: Stopping })],
        };
        rows.extend([
            Row { phase, input: Start, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: HEALTHY, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: UNHEALTHY, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: ProxyReady, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            // The app has exited: now, and only now, kuma-dp's second SIGTERM; SIGKILL only after the bound.
            Row { phase, input: app_exit, after_ms: 0, next: Cleanup, must: &[SECOND_TERM], must_not: &[Action::Kill(Target::Proxy), Action::TermDescendants] },
            Row { phase, input: AppSpawnFailed, after_ms: 0, next: Cleanup, must: &[SECOND_TERM], must_not: &[] },
            Row { phase, input: proxy_exit, after_ms: 0, next: phase, must: held_exit, must_not: &[STOP_APP, Action::Kill(Target::App)] },
            Row { phase, input: ProxySpawnFailed, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: Stop(TERM), after_ms: 0, next: Stopping, must: &[SECOND_TERM], must_not: &[USR2_PROXY] },
            Row { phase, input: Tick, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: Tick, after_ms: timer_ms, next: timer_next, must: timer_must, must_not: &[SECOND_TERM, Action::Kill(Target::Proxy)] },
            Row { phase, input: DescendantsGone, after_ms: 0, next: phase, must: &[], must_not: &[] },
            Row { phase, input: InboundIdle, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: InboundBusy, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: InboundUnreadable, after_ms: 0, next: phase, must: &[], must_not: &[SECOND_TERM] },
            Row { phase, input: OUT, after_ms: 0, next: phase, must: &[], must_not: &[LEAVE] },
            Row { phase, input: OUT_WAIT, after_ms: 0, next: phase, must: &[], must_not: &[LEAVE] },
            Row { phase, input: IN, after_ms: 0, next: phase, must: &[], must_not: &[REJOIN] },
            Row { phase, input: ProxyAnswered, after_ms: 0, next: phase, must: &[], must_not: &[] },
            Row { phase, input: ProxyUnanswered, after_ms: 0, next: phase, must: &[], must_not: &[Action::Kill(Target::Proxy)] },
            Row { phase, input: ProxyDnsAnswered, after_ms: 0, next: phase, must: &[], must_not: &[] },
        ]);
    }
    // The clean-up: kuma-dp had its second SIGTERM; never a third.
    rows.extend([
        Row { phase: Cleanup, input: Start, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: HEALTHY, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: UNHEALTHY, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: ProxyReady, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: app_exit, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: AppSpawnFailed, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        // Its expected exit: not news, the descendants follow.
        Row { phase: Cleanup, input: proxy_exit, after_ms: 0, next: Cleanup, must: &[Action::TermDescendants], must_not: &[Action::Event(Event::HeldProxyExited { phase: Cleanup })] },
        Row { phase: Cleanup, input: ProxySpawnFailed, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: Stop(TERM), after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM, USR2_PROXY] },
        Row { phase: Cleanup, input: Tick, after_ms: 0, next: Cleanup, must: &[], must_not: &[SECOND_TERM] },
        // The bound after the second SIGTERM: SIGKILL, not a third SIGTERM (kuma-dp would exit 1).
        Row { phase: Cleanup, input: Tick, after_ms: 1_000, next: Cleanup, must: &[Action::Kill(Target::Proxy)], must_not: &[SECOND_TERM] },
        Row { phase: Cleanup, input: DescendantsGone, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: InboundIdle, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: InboundBusy, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: InboundUnreadable, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: OUT, after_ms: 0, next: Cleanup, must: &[], must_not: &[LEAVE] },
        Row { phase: Cleanup, input: OUT_WAIT, after_ms: 0, next: Cleanup, must: &[], must_not: &[LEAVE] },
        Row { phase: Cleanup, input: IN, after_ms: 0, next: Cleanup, must: &[], must_not: &[REJOIN] },
        Row { phase: Cleanup, input: ProxyAnswered, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: ProxyUnanswered, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
        Row { phase: Cleanup, input: ProxyDnsAnswered, after_ms: 0, next: Cleanup, must: &[], must_not: &[] },
    ]);
    rows
}

#[test]
fn every_hold_phase_and_input_pair() {
    use Phase::*;
    check_table(
        &hold_table(),
        &[Draining, Grace, Stopping, Cleanup],
        at_hold_phase,
    );
}

/// `--proxy-dns` with proxy-first (what transparent proxying asks for).
fn dns_gate() -> Settings {
    Settings {
        start_order: StartOrder::ProxyFirst,
        proxy_dns: Some(SocketAddr::from(([127, 0, 0, 1], 15053))),
        ..settings()
    }
}

/// kuma-dp spawned at 0, ready at 0.9 s, its DNS not answering yet.
fn at_dns_wait(phase: Phase) -> (Lifecycle, Duration) {
    assert_eq!(phase, Phase::ProxyStarting);
    let mut lc = Lifecycle::new(dns_gate());
    lc.step(T(0), Input::Start);
    let actions = lc.step(T(900), Input::ProxyReady);
    assert!(
        actions.contains(&Action::WatchProxyDns(true)),
        "{actions:?}"
    );
    assert!(!actions.contains(&Action::SpawnApp), "{actions:?}");
    assert_eq!(lc.phase(), phase);
    (lc, T(900))
}

/// Every input while kuma-dp is ready and its DNS does not answer yet.
#[rustfmt::skip]
fn dns_table() -> Vec<Row> {
    use Input::*;
    use Phase::*;
    let waiting = ProxyStarting;
    vec![
        Row { phase: waiting, input: Start, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: HEALTHY, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp, Action::Ready(true)] },
        Row { phase: waiting, input: UNHEALTHY, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: ProxyReady, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp, Action::WatchProxyDns(true)] },
        Row { phase: waiting, input: AppExited(OK), after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: AppSpawnFailed, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        // kuma-dp crashed while its DNS was awaited: the check stops, the restart follows; still no app.
        Row { phase: waiting, input: ProxyExited(ExitStatus::Code(1)), after_ms: 0, next: waiting, must: &[Action::WatchProxyDns(false), Action::Event(Event::ProxyRestarting { attempt: 1, delay: ONE_SECOND })], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: ProxySpawnFailed, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        // A stop while kuma-dp is ready (maybe registered): drained as any started kuma-dp; the app never starts.
        Row { phase: waiting, input: Stop(TERM), after_ms: 0, next: Draining, must: &[Action::WatchProxyDns(false), TERM_PROXY], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: Tick, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        // --proxy-ready-timeout (from the spawn) bounds the DNS wait too: named as the DNS's.
        Row { phase: waiting, input: Tick, after_ms: 59_100, next: Cleanup, must: &[Action::Event(Event::ProxyDnsTimeout), Action::WatchProxyDns(false), TERM_PROXY], must_not: &[Action::SpawnApp, Action::Event(Event::ProxyReadyTimeout)] },
        Row { phase: waiting, input: DescendantsGone, after_ms: 0, next: waiting, must: &[], must_not: &[] },
        Row { phase: waiting, input: InboundIdle, after_ms: 0, next: waiting, must: &[], must_not: &[] },
        Row { phase: waiting, input: InboundBusy, after_ms: 0, next: waiting, must: &[], must_not: &[] },
        Row { phase: waiting, input: InboundUnreadable, after_ms: 0, next: waiting, must: &[], must_not: &[] },
        Row { phase: waiting, input: OUT, after_ms: 0, next: waiting, must: &[LEAVE], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: OUT_WAIT, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: IN, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: ProxyAnswered, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        Row { phase: waiting, input: ProxyUnanswered, after_ms: 0, next: waiting, must: &[], must_not: &[Action::SpawnApp] },
        // The answer: the app starts (and is probed).
        Row { phase: waiting, input: ProxyDnsAnswered, after_ms: 0, next: Probing, must: &[Action::Event(Event::ProxyDnsAnswers), Action::WatchProxyDns(false), Action::SpawnApp], must_not: &[Action::Ready(true)] },
    ]
}

#[test]
fn every_input_while_kuma_dps_dns_is_awaited() {
    check_table(&dns_table(), &[Phase::ProxyStarting], at_dns_wait);
}

/// The whole hold drain in order: kuma-dp's SIGTERM at the stop, the
/// inbound idle by the drain's rule, the grace, the app's stop, its exit,
/// and only then kuma-dp's second SIGTERM; never SIGUSR2.
#[test]
fn the_hold_drain_keeps_kuma_dp_until_the_app_has_exited() {
    let s = Settings {
        idle_drain: Some(IdleDrain {
            min: T(5000),
            idle: T(1000),
        }),
        ..hold()
    };
    let (lc, log) = run(
        s,
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (10_100, Input::InboundIdle),
            (15_000, Input::Tick),
            (20_000, Input::Tick),
            (21_000, Input::AppExited(ExitStatus::Signaled(15))),
            (21_200, Input::ProxyExited(OK)),
            (21_300, Input::DescendantsGone),
        ],
    );
    let proxy_terms: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == TERM_PROXY)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        proxy_terms,
        [10_000, 21_000],
        "TERM at the stop, TERM once the app is gone"
    );
    assert!(!log.iter().any(|(_, a)| *a == USR2_PROXY));
    assert_eq!(
        time_of(
            &log,
            Action::Event(Event::DrainIdle {
                drained_for: T(5000)
            })
        ),
        Some(15_000)
    );
    assert_eq!(
        time_of(
            &log,
            Action::Event(Event::ProxyHeld {
                end: DrainEnd::Idle
            })
        ),
        Some(15_000)
    );
    assert_eq!(time_of(&log, Action::Enter(Phase::Grace)), Some(15_000));
    assert_eq!(time_of(&log, STOP_APP), Some(20_000));
    assert_eq!(time_of(&log, Action::Enter(Phase::Cleanup)), Some(21_000));
    assert_eq!(time_of(&log, Action::TermDescendants), Some(21_200));
    assert_eq!(time_of(&log, Action::Kill(Target::Proxy)), None);
    let (reason, timeline) = log
        .iter()
        .find_map(|(_, a)| match a {
            Action::Exit { reason, timeline } => Some((*reason, *timeline)),
            _ => None,
        })
        .expect("exit");
    assert_eq!(reason, ExitReason::App(ExitStatus::Signaled(15)));
    let t = timeline.expect("a shutdown took place");
    assert_eq!(t.drain, T(5000));
    assert_eq!(t.grace, T(5000));
    assert_eq!(t.app_stop, T(1000));
    assert_eq!(t.drain_end, Some(DrainEnd::Idle));
    assert_eq!(lc.phase(), Phase::Done);
}

/// An app that exits during the inbound drain: the drain still ends by
/// its rule (clients are withdrawn first), then kuma-dp's second SIGTERM.
#[test]
fn an_app_gone_during_a_hold_drain_ends_kuma_dp_when_the_drain_ends() {
    let (_, log) = run(
        hold(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::AppExited(OK)),
            (50_000, Input::Tick),
        ],
    );
    let proxy_terms: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == TERM_PROXY)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(proxy_terms, [10_000, 50_000]);
    assert_eq!(
        time_of(&log, Action::Enter(Phase::Grace)),
        None,
        "no grace for an app that is gone"
    );
}

/// The DNS gate after a kuma-dp restart: the restart gap is an outage of
/// the app's outbound side (every redirected call and lookup fails), so
/// the instance is not ready from the crash until the new kuma-dp is
/// ready AND its DNS answers.
#[test]
fn a_restarted_kuma_dp_counts_again_only_once_its_dns_answers() {
    let (lc, log) = run(
        dns_gate(),
        &[
            (0, Input::Start),
            (900, Input::ProxyReady),
            (950, Input::ProxyDnsAnswered),
            (1_500, HEALTHY),
            (20_000, Input::ProxyExited(ExitStatus::Code(2))),
            (21_000, Input::Tick),
            (23_000, Input::ProxyReady),
            (23_400, Input::ProxyDnsAnswered),
        ],
    );
    assert_eq!(time_of(&log, Action::SpawnApp), Some(950));
    let readiness: Vec<(u64, Action)> = log
        .iter()
        .filter(|(_, a)| matches!(a, Action::Ready(_)))
        .copied()
        .collect();
    assert_eq!(
        readiness,
        [
            (1_500, Action::Ready(true)),
            (20_000, Action::Ready(false)),
            (23_400, Action::Ready(true)),
        ],
        "not ready through the restart gap, until the new DNS answers"
    );
    let dns_checks: Vec<u64> = log
        .iter()
        .filter(|(_, a)| *a == Action::WatchProxyDns(true))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(dns_checks, [900, 23_000]);
    assert_eq!(lc.phase(), Phase::Running);
}

/// kuma-dp exiting on its own during the hold is news only while the app
/// still runs (its outbound side is lost); with the app gone it is the
/// drain's end, as with TERM.
#[test]
fn a_held_kuma_dp_that_exits_is_reported_only_while_the_app_needs_it() {
    let held_exit = |phase| Action::Event(Event::HeldProxyExited { phase });
    let (_, log) = run(
        hold(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (50_000, Input::Tick),
            (55_000, Input::Tick),
            (56_000, Input::ProxyExited(ExitStatus::Code(1))),
        ],
    );
    assert_eq!(time_of(&log, held_exit(Phase::Stopping)), Some(56_000));
    assert_eq!(
        log.iter().filter(|(_, a)| *a == TERM_PROXY).count(),
        1,
        "nothing more is sent to a kuma-dp that is gone"
    );
    let (_, log) = run(
        hold(),
        &[
            (0, Input::Start),
            (100, HEALTHY),
            (200, Input::ProxyReady),
            (10_000, Input::Stop(TERM)),
            (12_000, Input::AppExited(OK)),
            (13_000, Input::ProxyExited(ExitStatus::Code(0))),
        ],
    );
    assert!(
        !log.iter()
            .any(|(_, a)| matches!(a, Action::Event(Event::HeldProxyExited { .. }))),
        "{log:?}"
    );
    assert_eq!(time_of(&log, Action::TermDescendants), Some(13_000));
}
