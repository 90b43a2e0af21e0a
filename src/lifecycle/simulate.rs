//! The lifecycle run on a simulated clock: what a shutdown does and how long
//! it can last, found by running the state machine itself instead of
//! restating it (a restatement drifts the day a wait is added).
//!
//! Nobody cooperates: the app and kuma-dp exit only when they are SIGKILLed
//! (the kernel leaves them no choice), and the descendants never go. Every
//! wait the lifecycle schedules then runs to its end, so a run's length is
//! the longest a shutdown can take from where it began.
//!
//! A stop signal may arrive at any point of a normal start, so the worst
//! case is the longest run over every state of that start (with the app
//! still probed, with kuma-dp starting, while serving). The property tests
//! (`props.rs`) check that no random run, with crashes, early exits and
//! escalations, ever takes longer.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Action, Input, Lifecycle, Phase, Settings, Target};
use crate::init::exit::ExitStatus;

/// One action of a simulated shutdown and when it happens, counted from the
/// stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timed {
    pub at: Duration,
    pub action: Action,
}

/// A shutdown run on the simulated clock.
#[derive(Clone, Debug)]
pub struct ShutdownRun {
    /// The phase the stop signal found.
    pub from: Phase,
    /// Every action the lifecycle asked for, in order.
    pub actions: Vec<Timed>,
    /// From the stop signal to meshinit's exit; `None` when the lifecycle
    /// would wait for ever (no deadline left and nobody exits).
    pub length: Option<Duration>,
}

/// The exit status of a process that was SIGKILLed.
const KILLED: ExitStatus = ExitStatus::Signaled(Signal::SIGKILL as i32);

/// More steps than any shutdown takes: a bound, so that a lifecycle bug can
/// only make a run unbounded, never hang the simulation.
const MAX_STEPS: usize = 256;

/// Every state of a normal start (probes pass, kuma-dp becomes ready), in
/// order, the last one serving. Each is a machine a stop signal may find.
fn start_states(settings: &Settings) -> Vec<Lifecycle> {
    let zero = Duration::ZERO;
    let mut lc = Lifecycle::new(settings.clone());
    lc.step(zero, Input::Start);
    let mut states = vec![lc.clone()];
    // Each step brings the start one state further: the app's health in
    // `probing`, kuma-dp's readiness (and its DNS) in `proxy-starting`. Two
    // of each at most.
    for _ in 0..4 {
        let before = lc.phase();
        match before {
            Phase::Running => break,
            Phase::ProxyStarting => {
                lc.step(zero, Input::ProxyReady);
                // With the DNS gate kuma-dp is ready and its DNS not yet
                // answering: a state of its own (kuma-dp serves, the app
                // waits), then the answer moves the start on.
                if lc.phase() == before {
                    states.push(lc.clone());
                    lc.step(zero, Input::ProxyDnsAnswered);
                }
            }
            // Every probe passes its success threshold.
            _ => {
                for (probe, th) in settings.probes.iter().enumerate() {
                    for _ in 0..th.success {
                        lc.step(zero, Input::Probe { probe, ok: true });
                    }
                }
            }
        }
        if lc.phase() != before {
            states.push(lc.clone());
        }
    }
    states
}

/// The shutdown of `lc` on `stop`, nobody cooperating.
fn run_from(mut lc: Lifecycle, stop: Signal) -> ShutdownRun {
    let from = lc.phase();
    let mut now = Duration::ZERO;
    let mut actions = Vec::new();
    let mut pending = vec![Input::Stop(stop)];
    for _ in 0..MAX_STEPS {
        let input = match pending.pop() {
            Some(input) => input,
            None => match lc.next_deadline() {
                Some(at) => {
                    now = now.max(at);
                    Input::Tick
                }
                None => break,
            },
        };
        for action in lc.step(now, input) {
            actions.push(Timed { at: now, action });
            match action {
                Action::Kill(Target::App) => pending.push(Input::AppExited(KILLED)),
                Action::Kill(Target::Proxy) => pending.push(Input::ProxyExited(KILLED)),
                Action::Exit { .. } => {
                    return ShutdownRun {
                        from,
                        actions,
                        length: Some(now),
                    }
                }
                _ => {}
            }
        }
    }
    ShutdownRun {
        from,
        actions,
        length: None,
    }
}

/// The shutdown on `stop` from every state of a normal start, the serving
/// one last.
pub fn shutdowns(settings: &Settings, stop: Signal) -> Vec<ShutdownRun> {
    start_states(settings)
        .into_iter()
        .map(|lc| run_from(lc, stop))
        .collect()
}

/// The longest shutdown the lifecycle can take, from the stop signal to
/// meshinit's exit; `None` when one of them is unbounded.
///
/// In plain init mode without `--app-stop-timeout` a stop signal waits for
/// the app for as long as it takes (as tini does); what meshinit bounds
/// there is a stop it begins itself (startup timeout, failed liveness),
/// which takes the waits of an explicitly bounded stop: that is the worst
/// case then.
pub fn worst_case(settings: &Settings) -> Option<Duration> {
    let bounded;
    let settings = if settings.stop_waits_for_app() {
        bounded = Settings {
            app_stop_timeout_given: true,
            ..settings.clone()
        };
        &bounded
    } else {
        settings
    };
    shutdowns(settings, Signal::SIGTERM)
        .iter()
        .try_fold(Duration::ZERO, |worst, run| {
            run.length.map(|l| worst.max(l))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{DrainMode, Event, StartOrder};

    const T: fn(u64) -> Duration = Duration::from_millis;

    fn serving(settings: &Settings) -> ShutdownRun {
        shutdowns(settings, Signal::SIGTERM)
            .pop()
            .expect("a start has states")
    }

    fn at(run: &ShutdownRun, action: Action) -> Vec<Duration> {
        run.actions
            .iter()
            .filter(|t| t.action == action)
            .map(|t| t.at)
            .collect()
    }

    #[test]
    fn a_normal_start_passes_through_every_phase_before_running() {
        let phases: Vec<Phase> = start_states(&Settings::defaults())
            .iter()
            .map(Lifecycle::phase)
            .collect();
        assert_eq!(
            phases,
            [Phase::Probing, Phase::ProxyStarting, Phase::Running]
        );
        let proxy_first = Settings {
            start_order: StartOrder::ProxyFirst,
            ..Settings::defaults()
        };
        let phases: Vec<Phase> = start_states(&proxy_first)
            .iter()
            .map(Lifecycle::phase)
            .collect();
        assert_eq!(
            phases,
            [Phase::ProxyStarting, Phase::Probing, Phase::Running]
        );
        let plain = Settings {
            has_proxy: false,
            probes: Vec::new(),
            ..Settings::defaults()
        };
        let phases: Vec<Phase> = start_states(&plain).iter().map(Lifecycle::phase).collect();
        assert_eq!(phases, [Phase::Running]);
    }

    /// The ordered path, every wait run out: the drain timeout, kuma-dp's
    /// second SIGTERM and SIGKILL, the grace, the app's stop timeout, the
    /// descendants' clean-up and the give-up bound.
    #[test]
    fn the_serving_shutdown_runs_every_wait_to_its_end() {
        let s = Settings {
            app_grace_delay: T(5000),
            ..Settings::defaults()
        };
        let run = serving(&s);
        assert_eq!(run.from, Phase::Running);
        assert_eq!(
            at(&run, Action::Signal(Target::Proxy, Signal::SIGTERM)),
            [T(0), T(40_000)]
        );
        assert_eq!(at(&run, Action::Kill(Target::Proxy)), [T(41_000)]);
        assert_eq!(at(&run, Action::Enter(Phase::Grace)), [T(41_000)]);
        assert_eq!(
            at(&run, Action::Signal(Target::App, Signal::SIGTERM)),
            [T(46_000)]
        );
        assert_eq!(at(&run, Action::Kill(Target::App)), [T(56_000)]);
        assert_eq!(at(&run, Action::TermDescendants), [T(56_000)]);
        assert_eq!(at(&run, Action::KillDescendants), [T(58_000)]);
        assert_eq!(at(&run, Action::Event(Event::DescendantsLeft)), [T(59_000)]);
        assert_eq!(run.length, Some(T(59_000)));
        assert_eq!(worst_case(&s), Some(T(59_000)));
    }

    /// With an inbound-only drain kuma-dp is stopped last, after the app.
    #[test]
    fn an_inbound_only_drain_stops_kuma_dp_after_the_app() {
        let s = Settings {
            app_grace_delay: T(5000),
            drain_mode: DrainMode::InboundUsr2 { wait: T(30_000) },
            ..Settings::defaults()
        };
        let run = serving(&s);
        assert_eq!(
            at(&run, Action::Signal(Target::Proxy, Signal::SIGUSR2)),
            [T(0)]
        );
        assert_eq!(at(&run, Action::Kill(Target::App)), [T(45_000)]);
        assert_eq!(
            at(&run, Action::Signal(Target::Proxy, Signal::SIGTERM)),
            [T(45_000), T(46_000)]
        );
        assert_eq!(at(&run, Action::Kill(Target::Proxy)), [T(47_000)]);
        assert_eq!(run.length, Some(T(50_000)));
    }

    /// The hold drain: kuma-dp's first SIGTERM at the stop, the inbound
    /// drain to its timeout, the grace and the app's stop with kuma-dp still
    /// up, its second SIGTERM only once the app is gone, SIGKILL a kill
    /// bound later; never SIGUSR2. As long as the TERM drain's worst case:
    /// the same waits, in another order.
    #[test]
    fn the_hold_drain_stops_kuma_dp_after_the_app() {
        let s = Settings {
            app_grace_delay: T(5000),
            drain_mode: DrainMode::Hold,
            ..Settings::defaults()
        };
        let run = serving(&s);
        assert_eq!(
            at(&run, Action::Signal(Target::Proxy, Signal::SIGTERM)),
            [T(0), T(55_000)]
        );
        assert_eq!(at(&run, Action::Signal(Target::Proxy, Signal::SIGUSR2)), []);
        assert_eq!(
            at(
                &run,
                Action::Event(Event::ProxyHeld {
                    end: crate::lifecycle::DrainEnd::Timeout
                })
            ),
            [T(40_000)]
        );
        assert_eq!(at(&run, Action::Enter(Phase::Grace)), [T(40_000)]);
        assert_eq!(
            at(&run, Action::Signal(Target::App, Signal::SIGTERM)),
            [T(45_000)]
        );
        assert_eq!(at(&run, Action::Kill(Target::App)), [T(55_000)]);
        assert_eq!(at(&run, Action::Kill(Target::Proxy)), [T(56_000)]);
        assert_eq!(run.length, Some(T(59_000)));
        assert_eq!(worst_case(&s), Some(T(59_000)));
    }

    /// With the DNS gate, a stop while kuma-dp is ready and its DNS is
    /// awaited is one of the start's states, and counted.
    #[test]
    fn the_dns_wait_is_a_state_of_the_start() {
        let s = Settings {
            start_order: StartOrder::ProxyFirst,
            proxy_dns: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 15053))),
            ..Settings::defaults()
        };
        let phases: Vec<Phase> = start_states(&s).iter().map(Lifecycle::phase).collect();
        assert_eq!(
            phases,
            [
                Phase::ProxyStarting,
                Phase::ProxyStarting,
                Phase::Probing,
                Phase::Running
            ]
        );
    }

    /// Stopped while kuma-dp (proxy-first) runs and the app is still probed,
    /// the two are stopped side by side; when that is longer than the
    /// ordered path, it is the worst case.
    #[test]
    fn the_worst_case_is_the_longest_run_over_the_whole_start() {
        let quick = Settings {
            app_grace_delay: T(0),
            app_stop_timeout: T(0),
            drain_timeout: T(0),
            start_order: StartOrder::ProxyFirst,
            ..Settings::defaults()
        };
        let runs = shutdowns(&quick, Signal::SIGTERM);
        let probed = runs
            .iter()
            .find(|r| r.from == Phase::Probing)
            .expect("the app is probed once kuma-dp is ready");
        // kuma-dp: SIGTERM, a second one after a kill bound, SIGKILL after
        // two; then the clean-up (2 s) and the give-up bound (1 s).
        assert_eq!(probed.length, Some(T(5_000)));
        let serving = runs.last().expect("serving");
        assert!(serving.length < probed.length, "{serving:?}");
        assert_eq!(worst_case(&quick), Some(T(5_000)));
    }

    /// Plain init mode waits for its app after a stop signal, as tini does:
    /// the run has no end of meshinit's own; the worst case is the bounded
    /// stop meshinit begins itself.
    #[test]
    fn a_plain_init_stop_waits_for_the_app_and_the_worst_case_is_meshinits_own_stop() {
        let plain = Settings {
            has_proxy: false,
            probes: Vec::new(),
            app_stop_timeout_given: false,
            ..Settings::defaults()
        };
        let run = serving(&plain);
        assert_eq!(run.length, None, "{run:?}");
        assert_eq!(at(&run, Action::Kill(Target::App)), []);
        assert_eq!(
            worst_case(&plain),
            Some(plain.app_stop_timeout + T(3_000)),
            "the stop timeout, the clean-up and the give-up bound"
        );
        let given = Settings {
            app_stop_timeout_given: true,
            ..plain
        };
        assert_eq!(serving(&given).length, worst_case(&given));
    }

    #[test]
    fn long_waits_are_counted_in_full() {
        // A 24 h stop timeout is waited out in full, then the clean-up.
        let long = Settings {
            app_stop_timeout: Duration::from_secs(86_400),
            app_stop_timeout_given: true,
            has_proxy: false,
            ..Settings::defaults()
        };
        assert_eq!(
            worst_case(&long),
            Some(Duration::from_secs(86_400) + T(3_000))
        );
    }
}
