//! Property tests of the lifecycle: random settings and random input
//! sequences at monotonically increasing times, checked against the promises
//! the README makes. The table tests in `tests.rs` pin each (phase, input)
//! pair; these look for sequences nobody thought of.
//!
//! A small model of the world rides along: it learns from the actions which
//! processes exist (SpawnApp, SpawnProxy) and from the inputs which are gone,
//! and in the completion part it answers signals the way a real app, kuma-dp
//! and leftover descendants would (or would not: stubborn ones ignore them).
//!
//! - (a) the app never gets its stop signal while kuma-dp drains, unless the
//!   operator escalated, kuma-dp exited, or an inbound-only (USR2) drain's
//!   wait has passed; and a stop while running with a live proxy always
//!   starts a drain;
//! - (b) every run reaches `Done` with exactly one `Exit` once the world
//!   answers, in a bounded number of steps, with the app's own status or a
//!   reason an event announced, and nothing left running;
//! - (c) the exit-code mapping is total and the identity on unmapped codes;
//! - (d) `next_deadline()` never lies in the past after a step (the driver
//!   would otherwise spin on an expired timer or miss it);
//! - (e) a stop signal that starts the shutdown (optionally followed by a
//!   second one at any time) leads to the exit within
//!   [`Settings::worst_case_shutdown`], whatever the app, kuma-dp and the
//!   descendants do, when meshinit bounds that stop (in plain init mode only
//!   with `--app-stop-timeout` given: otherwise it waits for the app, as tini
//!   does, and never escalates or SIGKILLs it; the model's platform does);
//! - (f) whenever the service is ready its app is healthy, and only a live
//!   app is healthy (`/ready`, `/status` and `meshinit_healthy` agree);
//! - (g) mesh membership (issue 23): the instance never leaves (or rejoins)
//!   the mesh before the current kuma-dp is ready, nor during a shutdown;
//!   an operator's `out` is never lifted by probes (no rejoin until `in`);
//!   a membership change never signals, kills or starts a process; and a
//!   hang kill only ever hits a kuma-dp that was watched;
//! - (h) the hold drain (issue 26): never SIGUSR2 to kuma-dp; once its
//!   inbound drain began, kuma-dp's second SIGTERM comes only after the app
//!   has exited (or the operator cut the stop short), and never a third;
//! - (i) the DNS gate (issue 26): with `proxy_dns`, a proxy-first app is
//!   never started, and the service never counts as ready, before the
//!   current kuma-dp's DNS answered.
//!
//! Case counts are modest so that `cargo test` stays fast.

use proptest::prelude::*;

use super::*;
use crate::init::exit::ExitCodeMap;

const KILL: i32 = Signal::SIGKILL as i32;
/// Bound on steps for one run, ticks included: a run needs a few dozen.
const MAX_STEPS: usize = 2_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn dur() -> impl Strategy<Value = Duration> {
    prop_oneof![Just(0u64), 1u64..2_000, 1u64..90_000].prop_map(ms)
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        (
            any::<bool>(),
            // No probe, or one or two, each with thresholds of 1 to 3.
            proptest::collection::vec((1u32..4, 1u32..4), 0..3),
            0u32..6,
            0u8..3,
            0u8..3,
        ),
        (dur(), dur(), dur(), dur(), dur(), dur()),
        (
            prop_oneof![
                Just(Signal::SIGTERM),
                Just(Signal::SIGINT),
                Just(Signal::SIGQUIT),
                Just(Signal::SIGUSR1),
            ],
            1u64..3_000,
            1u64..5_000,
            1u64..5_000,
            1u64..120_000,
        ),
        (
            any::<bool>(),
            proptest::option::of((dur(), dur())),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(dur()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (has_proxy, has_probes, max_restarts, drain_kind, unhealthy_shutdown),
                (startup, ready, stop, grace, drain, wait),
                (stop_signal, kill_bound, cleanup, backoff, window),
                (proxy_first, idle, pass_stop_signal, app_stop_timeout_given, hang, dns),
            )| Settings {
                has_proxy,
                probes: has_probes
                    .into_iter()
                    .map(|(success, failure)| Thresholds { success, failure })
                    .collect(),
                startup_timeout: startup,
                proxy_ready_timeout: ready,
                proxy_max_restarts: max_restarts,
                proxy_restart_window: ms(window),
                proxy_backoff_initial: ms(backoff),
                proxy_backoff_max: ms(backoff * 8),
                app_stop_signal: stop_signal,
                pass_stop_signal,
                app_stop_timeout: stop,
                app_stop_timeout_given,
                app_grace_delay: grace,
                drain_mode: match drain_kind {
                    0 => DrainMode::Term,
                    1 => DrainMode::InboundUsr2 { wait },
                    _ => DrainMode::Hold,
                },
                drain_timeout: drain,
                on_unhealthy: match unhealthy_shutdown {
                    0 => OnUnhealthy::None,
                    1 => OnUnhealthy::Leave,
                    _ => OnUnhealthy::Shutdown,
                },
                kill_bound: ms(kill_bound),
                cleanup_timeout: ms(cleanup),
                start_order: if proxy_first {
                    StartOrder::ProxyFirst
                } else {
                    StartOrder::AppFirst
                },
                idle_drain: idle.map(|(min, idle)| IdleDrain { min, idle }),
                proxy_hang_timeout: hang.filter(|t| !t.is_zero()),
                proxy_dns: dns.then(|| SocketAddr::from(([127, 0, 0, 1], 15053))),
            },
        )
}

fn status() -> impl Strategy<Value = ExitStatus> {
    prop_oneof![
        (0i32..256).prop_map(ExitStatus::Code),
        (1i32..32).prop_map(ExitStatus::Signaled),
    ]
}

/// Any input but `Start` (which every run begins with, as the driver does).
fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        5 => (0usize..3, prop::bool::weighted(0.6))
            .prop_map(|(probe, ok)| Input::Probe { probe, ok }),
        3 => Just(Input::ProxyReady),
        1 => status().prop_map(Input::AppExited),
        1 => Just(Input::AppSpawnFailed),
        2 => status().prop_map(Input::ProxyExited),
        1 => Just(Input::ProxySpawnFailed),
        2 => prop_oneof![Just(Signal::SIGTERM), Just(Signal::SIGINT)].prop_map(Input::Stop),
        2 => Just(Input::Tick),
        1 => Just(Input::DescendantsGone),
        1 => Just(Input::Start),
        2 => prop_oneof![Just(Input::InboundIdle), Just(Input::InboundBusy)],
        1 => Just(Input::InboundUnreadable),
        2 => prop_oneof![
            Just(Operator::Out { wait: false }),
            Just(Operator::Out { wait: true }),
            Just(Operator::In),
        ]
        .prop_map(Input::Operator),
        2 => prop_oneof![Just(Input::ProxyAnswered), Just(Input::ProxyUnanswered)],
        2 => Just(Input::ProxyDnsAnswered),
    ]
}

/// Time between two inputs: mostly short, sometimes past every timeout.
fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..500, 2 => 0u64..5_000, 1 => 0u64..200_000]
}

/// How the world answers in the completion part.
#[derive(Clone, Copy, Debug)]
struct World {
    /// The app exits on its stop signal (else only SIGKILL ends it).
    app_obeys: bool,
    app_stop_ms: u64,
    /// kuma-dp exits on SIGTERM (else only SIGKILL ends it).
    proxy_obeys: bool,
    proxy_drain_ms: u64,
    /// 0: descendants go on SIGTERM, 1: only on SIGKILL, 2: never.
    descendants: u8,
    /// What the inbound watch reports: 0 nothing, 1 idle, 2 stats unreadable.
    inbound: u8,
    /// The operator sends a second stop signal this long after the first.
    again_ms: Option<u64>,
    /// kuma-dp's DNS answers the check this long after it began (never:
    /// the start waits out `--proxy-ready-timeout`).
    dns_ms: Option<u64>,
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        0u64..20_000,
        any::<bool>(),
        0u64..60_000,
        0u8..3,
        0u8..3,
        proptest::option::of(0u64..100_000),
        proptest::option::of(0u64..3_000),
    )
        .prop_map(
            |(
                app_obeys,
                app_stop_ms,
                proxy_obeys,
                proxy_drain_ms,
                descendants,
                inbound,
                again_ms,
                dns_ms,
            )| {
                World {
                    app_obeys,
                    app_stop_ms,
                    proxy_obeys,
                    proxy_drain_ms,
                    descendants,
                    inbound,
                    again_ms,
                    dns_ms,
                }
            },
        )
}

/// An ongoing drain as the actions announced it.
#[derive(Clone, Copy, Debug)]
struct Drain {
    /// With an inbound-only (USR2) drain: when its wait is over.
    until: Option<Duration>,
}

/// The machine, the model of the world, and everything that happened.
struct Run {
    lc: Lifecycle,
    now: Duration,
    /// Deliver a Tick at every deadline before time moves past it (the
    /// driver's promise); when false, Ticks come only when the inputs say.
    punctual: bool,
    app_spawned: bool,
    app_alive: bool,
    app_status: Option<ExitStatus>,
    /// The app's spawn failed (it never ran).
    app_spawn_failed: bool,
    app_stops_sent: u32,
    healthy_seen: bool,
    proxy_alive: bool,
    proxy_generation: u32,
    proxy_terms: u32,
    /// The current kuma-dp reported ready.
    proxy_ready: bool,
    /// What was asked of the world before it listened (the prefix).
    app_killed: bool,
    proxy_killed: bool,
    descendants_termed: bool,
    descendants_killed: bool,
    stops: u32,
    drain: Option<Drain>,
    events: Vec<Event>,
    exit: Option<ExitReason>,
    /// Answers the world will give: (time, input, proxy generation).
    pending: Vec<(Duration, Input, u32)>,
    world: Option<World>,
    log: Vec<String>,
    /// When the stop that started the shutdown came (for (e)), if that
    /// shutdown is bounded by meshinit (plain init mode without an explicit
    /// `--app-stop-timeout` waits for the app, as tini does).
    budget_from: Option<Duration>,
    /// The app outlived a plain init's stop signal and the platform's stop
    /// timeout SIGKILLed it (meshinit had nothing left to wait on).
    platform_killed: bool,
    /// The operator's `out` holds (taken while it could be: kuma-dp
    /// managed, no shutdown), until `in`.
    operator_out: bool,
    /// The current kuma-dp is watched for a hang.
    proxy_watched: bool,
    /// The current kuma-dp's DNS is being checked, and has answered (as
    /// the lifecycle took it: `ProxyDnsAnswers`).
    dns_watched: bool,
    dns_answered: bool,
    /// The hold drain's inbound phase began (a drain with one SIGTERM while
    /// the app may still run): kuma-dp's second SIGTERM must wait for the
    /// app's exit.
    holding: bool,
}

impl Run {
    fn new(settings: Settings, punctual: bool) -> Run {
        Run {
            lc: Lifecycle::new(settings),
            now: Duration::ZERO,
            punctual,
            app_spawned: false,
            app_alive: false,
            app_status: None,
            app_spawn_failed: false,
            app_stops_sent: 0,
            healthy_seen: false,
            proxy_alive: false,
            proxy_generation: 0,
            proxy_terms: 0,
            proxy_ready: false,
            app_killed: false,
            proxy_killed: false,
            descendants_termed: false,
            descendants_killed: false,
            stops: 0,
            drain: None,
            events: Vec::new(),
            exit: None,
            pending: Vec::new(),
            world: None,
            log: Vec::new(),
            budget_from: None,
            platform_killed: false,
            operator_out: false,
            proxy_watched: false,
            dns_watched: false,
            dns_answered: false,
            holding: false,
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nsettings: {:?}\nworld: {:?}\nhistory:\n{}",
            self.lc.settings(),
            self.world,
            self.log.join("\n")
        )
    }

    fn check(&self, ok: bool, what: &str) {
        if !ok {
            self.fail(what);
        }
    }

    /// Moves time to `to`, delivering the Ticks a punctual driver would.
    fn advance(&mut self, to: Duration) {
        if self.punctual {
            let mut ticks = 0;
            while let Some(d) = self.lc.next_deadline() {
                if d > to || self.exit.is_some() {
                    break;
                }
                ticks += 1;
                self.check(ticks < MAX_STEPS, "deadlines keep expiring: a busy loop");
                self.step_at(d.max(self.now), Input::Tick);
            }
        }
        self.now = self.now.max(to);
    }

    fn step_at(&mut self, t: Duration, input: Input) {
        self.check(t >= self.now, "time went backwards in the harness");
        self.now = t;
        let phase_before = self.lc.phase();
        let proxy_was_alive = self.proxy_alive;
        // What the input tells the model.
        match input {
            Input::AppExited(s) if self.app_alive => {
                self.app_alive = false;
                self.app_status = Some(s);
            }
            Input::AppSpawnFailed if self.app_alive => {
                self.app_alive = false;
                self.app_spawn_failed = true;
            }
            Input::ProxyExited(_) if self.proxy_alive => {
                self.proxy_alive = false;
                self.drain = None;
            }
            // Only the start not yet ready can have failed to spawn.
            Input::ProxySpawnFailed if self.proxy_alive && !self.proxy_ready => {
                self.proxy_alive = false;
                self.drain = None;
            }
            Input::Stop(_) => self.stops += 1,
            Input::Operator(op)
                if self.lc.settings().has_proxy && !self.lc.phase().is_shutdown() =>
            {
                self.operator_out = op != Operator::In;
            }
            _ => {}
        }
        if let Some(Drain { until: Some(u) }) = self.drain {
            if self.now >= u {
                self.drain = None;
            }
        }
        let actions = self.lc.step(t, input);
        self.log.push(format!(
            "{:>9?} {:?} in {:?} -> {:?}",
            t, input, phase_before, actions
        ));
        let stop_signal = self.lc.app_stop_signal();
        let proxy_first = self.lc.settings().has_proxy
            && self.lc.settings().start_order == StartOrder::ProxyFirst;
        let drain_limit = match self.lc.settings().drain_mode {
            DrainMode::InboundUsr2 { wait } => wait.min(self.lc.settings().drain_timeout),
            DrainMode::Term | DrainMode::Hold => self.lc.settings().drain_timeout,
        };
        let hold = self.lc.settings().drain_mode == DrainMode::Hold;
        let dns_gate = self.lc.settings().has_proxy && self.lc.settings().proxy_dns.is_some();
        if matches!(input, Input::Stop(_))
            && self.stops == 1
            && phase_before == Phase::Running
            && self.lc.settings().has_proxy
            && proxy_was_alive
        {
            // (a) A stop while serving through the proxy starts with a drain.
            let drain_signal = actions.iter().position(|a| {
                matches!(
                    a,
                    Action::Signal(Target::Proxy, Signal::SIGTERM | Signal::SIGUSR2)
                )
            });
            self.check(
                drain_signal.is_some() && actions.contains(&Action::Enter(Phase::Draining)),
                "a stop while running did not drain kuma-dp first",
            );
        }
        // (g) Taking the instance out of the mesh or back stops nothing.
        if matches!(input, Input::Operator(_)) {
            self.check(
                actions.iter().all(|a| {
                    !matches!(
                        a,
                        Action::Signal(..)
                            | Action::Kill(_)
                            | Action::SpawnApp
                            | Action::SpawnProxy
                            | Action::Enter(_)
                    )
                }),
                "an operator's out/in did more than change the membership",
            );
        }
        for action in &actions {
            match *action {
                Action::Membership(call @ (MeshCall::Leave | MeshCall::Rejoin)) => {
                    // (g) Only a ready kuma-dp is called, never in a shutdown.
                    self.check(
                        self.proxy_alive && self.proxy_ready,
                        "a membership call before kuma-dp was ready",
                    );
                    self.check(
                        !self.lc.phase().is_shutdown(),
                        "a membership call during a shutdown",
                    );
                    self.check(
                        call == MeshCall::Leave || !self.operator_out,
                        "the operator's out was lifted without an in",
                    );
                }
                Action::WatchProxy(on) => {
                    self.check(
                        !on || self.proxy_alive,
                        "a hang watch on a kuma-dp that is not running",
                    );
                    self.proxy_watched = on;
                }
                Action::Event(Event::ProxyHung { .. }) => {
                    self.check(
                        self.proxy_watched || actions.contains(&Action::WatchProxy(false)),
                        "a hang found on a kuma-dp that was not watched",
                    );
                    self.check(
                        actions.contains(&Action::Kill(Target::Proxy)),
                        "a hang without a SIGKILL",
                    );
                    self.events.push(Event::ProxyHung {
                        silent_for: Duration::ZERO,
                    });
                }
                Action::SpawnApp => {
                    self.check(!self.app_spawned, "the app was spawned twice");
                    if proxy_first {
                        // proxy-first: the app waits for a ready kuma-dp.
                        self.check(
                            self.proxy_alive && self.proxy_ready,
                            "proxy-first started the app before kuma-dp was ready",
                        );
                        // (i) ... and for its DNS, when the gate is on.
                        self.check(
                            !dns_gate || self.dns_answered,
                            "proxy-first started the app before kuma-dp's DNS answered",
                        );
                    }
                    self.check(self.stops == 0, "the app started after a stop signal");
                    self.app_spawned = true;
                    self.app_alive = true;
                }
                Action::SpawnProxy => {
                    self.check(!self.proxy_alive, "two kuma-dp at once");
                    self.check(
                        self.lc.settings().has_proxy,
                        "kuma-dp without a proxy config",
                    );
                    if proxy_first {
                        self.check(
                            self.app_alive || !self.app_spawned,
                            "kuma-dp restarted after the app is gone",
                        );
                    } else {
                        self.check(self.app_alive, "kuma-dp started without a running app");
                        self.check(
                            self.healthy_seen || !self.lc.settings().has_probes(),
                            "kuma-dp started before the app was ever healthy",
                        );
                    }
                    self.check(self.stops == 0, "kuma-dp started after a stop signal");
                    self.proxy_alive = true;
                    self.proxy_generation += 1;
                    self.proxy_terms = 0;
                    self.proxy_ready = false;
                    self.proxy_killed = false;
                    self.proxy_watched = false;
                    self.dns_watched = false;
                    self.dns_answered = false;
                }
                Action::WatchProxyDns(on) => {
                    self.check(dns_gate, "kuma-dp's DNS checked without the gate");
                    self.check(
                        !on || (self.proxy_alive && self.proxy_ready),
                        "kuma-dp's DNS checked before kuma-dp was ready",
                    );
                    self.dns_watched = on;
                    if on {
                        if let Some(after) = self.world.and_then(|w| w.dns_ms) {
                            self.answer(ms(after), Input::ProxyDnsAnswered);
                        }
                    }
                }
                Action::Event(Event::ProxyDnsAnswers) => {
                    self.check(
                        input == Input::ProxyDnsAnswered,
                        "kuma-dp's DNS counted as answering without an answer",
                    );
                    self.dns_answered = true;
                    self.events.push(Event::ProxyDnsAnswers);
                }
                Action::Enter(Phase::Draining) => {
                    self.drain = Some(Drain { until: None });
                    self.holding = hold;
                }
                Action::Event(Event::ProxyHeld { end }) => {
                    // The inbound drain is over; the app's stop may begin.
                    self.check(hold, "kuma-dp held outside the hold drain");
                    self.check(self.proxy_alive, "a kuma-dp that is gone held");
                    self.drain = None;
                    self.events.push(Event::ProxyHeld { end });
                }
                Action::Signal(Target::Proxy, sig) => {
                    self.check(self.proxy_alive, "a signal for a kuma-dp that is gone");
                    // (h) The hold drain never sends SIGUSR2 (a SIGTERM
                    // after it ends kuma-dp at once), and kuma-dp's second
                    // SIGTERM waits for the app's exit, unless the operator
                    // cut the stop short.
                    self.check(
                        !(hold && sig == Signal::SIGUSR2),
                        "SIGUSR2 to kuma-dp in a hold drain",
                    );
                    if hold && sig == Signal::SIGTERM && self.proxy_terms == 1 && self.holding {
                        self.check(
                            !self.app_alive || self.stops >= 2,
                            "kuma-dp's second SIGTERM before the app exited in a hold drain",
                        );
                    }
                    if sig == Signal::SIGUSR2 {
                        if let Some(d) = &mut self.drain {
                            d.until = Some(t + drain_limit);
                        }
                    }
                    if sig == Signal::SIGTERM {
                        self.proxy_terms += 1;
                        // kuma-dp exits 1 at its third stop signal.
                        self.check(self.proxy_terms <= 2, "a third SIGTERM to kuma-dp");
                        self.answer_proxy_term();
                    }
                }
                Action::Signal(Target::App, sig) if sig == stop_signal => {
                    self.check(self.app_alive, "a stop signal for an app that is gone");
                    // (a) Never while kuma-dp still drains.
                    self.check(
                        self.drain.is_none(),
                        "the app got its stop signal while kuma-dp was still draining",
                    );
                    self.app_stops_sent += 1;
                    // Plain init mode passes every stop signal on, as tini does.
                    self.check(
                        self.app_stops_sent == 1 || !self.lc.settings().has_proxy,
                        "the app got two stop signals",
                    );
                    self.answer_app_stop();
                }
                Action::Kill(Target::App) => {
                    self.check(self.app_alive, "SIGKILL for an app that is gone");
                    // Plain init mode kills only a stop it bounds (issue 20, item 18).
                    self.check(
                        self.lc.shutdown_is_bounded(),
                        "a plain init SIGKILLed an app it should wait for",
                    );
                    self.app_killed = true;
                    self.answer(ms(1), Input::AppExited(ExitStatus::Signaled(KILL)));
                }
                Action::Kill(Target::Proxy) => {
                    self.check(self.proxy_alive, "SIGKILL for a kuma-dp that is gone");
                    self.proxy_killed = true;
                    self.answer(ms(1), Input::ProxyExited(ExitStatus::Signaled(KILL)));
                }
                Action::TermDescendants => {
                    self.check(
                        !self.proxy_alive,
                        "descendants (Envoy) signalled while kuma-dp runs",
                    );
                    self.descendants_termed = true;
                    if self.world.is_some_and(|w| w.descendants == 0) {
                        self.answer(ms(5), Input::DescendantsGone);
                    }
                }
                Action::KillDescendants => {
                    self.descendants_killed = true;
                    if self.world.is_some_and(|w| w.descendants < 2) {
                        self.answer(ms(1), Input::DescendantsGone);
                    }
                }
                Action::Event(Event::Escalated { .. }) => {
                    self.check(
                        self.lc.settings().has_proxy,
                        "a plain init escalated a repeated stop signal",
                    );
                    self.drain = None;
                    self.events.push(Event::Escalated { stops: 0 });
                }
                Action::Event(e) => {
                    // Ready and healthy as the lifecycle took them (it
                    // ignores a report it no longer waits for).
                    self.proxy_ready |= e == Event::ProxyReady;
                    self.healthy_seen |= e == Event::AppHealthy;
                    self.events.push(e)
                }
                Action::WatchInbound(true) => {
                    self.check(
                        self.drain.is_some() || self.lc.waits_for_idle_out(),
                        "inbound watched outside a drain or an operator's out",
                    );
                    match self.world.map(|w| w.inbound) {
                        Some(1) => self.answer(ms(50), Input::InboundIdle),
                        Some(2) => {
                            for miss in 1..=INBOUND_UNREADABLE_TOLERATED {
                                self.answer(ms(50 * u64::from(miss)), Input::InboundUnreadable);
                            }
                        }
                        _ => {}
                    }
                }
                Action::Exit { reason, .. } => {
                    self.check(self.exit.is_none(), "two Exit actions");
                    self.exit = Some(reason);
                }
                _ => {}
            }
        }
        if self.exit.is_some() {
            self.check(self.lc.phase() == Phase::Done, "Exit without entering Done");
        }
        // (d) A deadline in the past would make the driver's timer fire at
        // once forever, or never be looked at again.
        if let Some(d) = self.lc.next_deadline() {
            if self.punctual || input == Input::Tick {
                self.check(d >= t, "next_deadline() lies in the past after a step");
            }
        }
        // (f) `/ready` and `/status` never contradict each other: ready
        // means healthy, and only a live app is healthy.
        if self.lc.is_ready() {
            self.check(self.lc.is_healthy(), "ready but not healthy");
            // (i) Ready through a kuma-dp whose DNS never answered: the
            // app's redirected lookups would fail.
            self.check(
                !dns_gate || self.dns_answered,
                "ready before kuma-dp's DNS answered",
            );
        }
        if self.lc.is_healthy() {
            self.check(self.app_alive, "healthy with no app running");
        }
    }

    /// Schedules an answer of the world (only in the completion part).
    fn answer(&mut self, after: Duration, input: Input) {
        if self.world.is_some() {
            self.pending
                .push((self.now + after, input, self.proxy_generation));
        }
    }

    fn answer_app_stop(&mut self) {
        if let Some(w) = self.world {
            if w.app_obeys {
                let sig = self.lc.app_stop_signal() as i32;
                self.answer(
                    ms(w.app_stop_ms),
                    Input::AppExited(ExitStatus::Signaled(sig)),
                );
            }
        }
    }

    fn answer_proxy_term(&mut self) {
        if let Some(w) = self.world {
            if w.proxy_obeys {
                let after = if self.proxy_terms == 1 {
                    w.proxy_drain_ms
                } else {
                    10
                };
                self.answer(ms(after), Input::ProxyExited(ExitStatus::Code(0)));
            }
        }
    }

    /// (b) From wherever the prefix left it: the operator's stop signal (if
    /// none came), then Ticks at deadlines and the world's answers, until Exit.
    fn complete(&mut self, world: World) {
        self.world = Some(world);
        self.punctual = true;
        // A late driver catches up on the deadlines it missed first.
        let now = self.now;
        self.advance(now);
        if self.exit.is_some() {
            return;
        }
        // The world answers what was asked before it started listening:
        // signals already sent get their answer now.
        if self.app_alive {
            if self.app_killed {
                self.answer(ms(1), Input::AppExited(ExitStatus::Signaled(KILL)));
            } else if self.app_stops_sent > 0 {
                self.answer_app_stop();
            }
        }
        if self.proxy_alive {
            if self.proxy_killed {
                self.answer(ms(1), Input::ProxyExited(ExitStatus::Signaled(KILL)));
            } else if self.proxy_terms > 0 && world.proxy_obeys {
                self.answer(
                    ms(world.proxy_drain_ms),
                    Input::ProxyExited(ExitStatus::Code(0)),
                );
            }
        }
        if (self.descendants_termed && world.descendants == 0)
            || (self.descendants_killed && world.descendants < 2)
        {
            self.answer(ms(5), Input::DescendantsGone);
        }
        if self.stops == 0 {
            let now = self.now;
            // (e) is checked when this stop is what starts the shutdown.
            let starts_shutdown = self.lc.shutdown_spans().began.is_none();
            self.step_at(now, Input::Stop(Signal::SIGTERM));
            if let Some(again) = world.again_ms {
                self.answer(ms(again), Input::Stop(Signal::SIGTERM));
            }
            if starts_shutdown && self.lc.shutdown_is_bounded() {
                self.budget_from = Some(now);
            }
        }
        for _ in 0..MAX_STEPS {
            if self.exit.is_some() {
                return;
            }
            let deadline = self.lc.next_deadline();
            let next_answer = self
                .pending
                .iter()
                .enumerate()
                .min_by_key(|(_, (t, _, _))| *t)
                .map(|(i, (t, _, _))| (i, *t));
            match (deadline, next_answer) {
                (Some(d), Some((_, t))) if d <= t => self.step_at(d.max(self.now), Input::Tick),
                (Some(d), None) => self.step_at(d.max(self.now), Input::Tick),
                (_, Some((i, t))) => {
                    let (_, input, generation) = self.pending.remove(i);
                    let stale = matches!(input, Input::ProxyExited(_) | Input::ProxyDnsAnswered)
                        && generation != self.proxy_generation;
                    // Only one second stop: the third kills everything.
                    let stale = stale || (matches!(input, Input::Stop(_)) && self.stops >= 2);
                    if !stale {
                        self.step_at(t.max(self.now), input);
                    }
                }
                // A plain init waits for an app that ignores its stop
                // signal, as tini does: the platform's stop timeout ends it.
                (None, None)
                    if !self.lc.shutdown_is_bounded()
                        && self.app_alive
                        && !self.platform_killed =>
                {
                    self.platform_killed = true;
                    self.app_killed = true;
                    self.answer(ms(1), Input::AppExited(ExitStatus::Signaled(KILL)));
                }
                (None, None) => self.fail("stuck: no deadline and nothing left to happen"),
            }
        }
        self.fail("no Exit within the step bound");
    }

    /// (b) What the exit says agrees with what happened.
    fn check_exit(&self) {
        let Some(reason) = self.exit else {
            self.fail("the run did not exit")
        };
        let announced = |f: fn(&Event) -> bool| self.events.iter().any(f);
        match reason {
            ExitReason::App(status) => {
                // Killed by the third stop signal (not waited for): 137; never
                // started (proxy-first, stopped before kuma-dp was ready): 143.
                let unknown = if self.app_spawned {
                    KILL
                } else {
                    Signal::SIGTERM as i32
                };
                let expected = self.app_status.unwrap_or(ExitStatus::Signaled(unknown));
                self.check(status == expected, "exit status is not the app's own");
            }
            ExitReason::StartupTimeout => self.check(
                announced(|e| *e == Event::StartupTimeout),
                "StartupTimeout exit without the event",
            ),
            ExitReason::ProxyFailed => self.check(
                announced(|e| {
                    matches!(
                        e,
                        Event::ProxyGaveUp { .. }
                            | Event::ProxyReadyTimeout
                            | Event::ProxyDnsTimeout
                    )
                }),
                "ProxyFailed exit without the event",
            ),
            ExitReason::AppSpawnFailed => self.check(
                self.app_spawn_failed && announced(|e| matches!(e, Event::AppSpawnFailed { .. })),
                "AppSpawnFailed exit without a failed spawn",
            ),
            ExitReason::Unhealthy => self.check(
                self.lc.settings().on_unhealthy == OnUnhealthy::Shutdown
                    && announced(|e| *e == Event::AppUnhealthy),
                "Unhealthy exit without --on-unhealthy shutdown and a failing probe",
            ),
        }
        // (e) No shutdown takes longer than the worst case meshinit announces.
        // The world reaps a SIGKILLed process 1 ms later, a reaction the
        // worst case cannot know about: at most four such steps follow one
        // another (kuma-dp, the app, the descendants, the give-up).
        if let Some(from) = self.budget_from {
            let took = self.now.saturating_sub(from);
            let worst = self.lc.settings().worst_case_shutdown();
            self.check(
                took <= worst.saturating_add(ms(4)),
                &format!("the shutdown took {took:?}, more than the worst case {worst:?}"),
            );
        }
        // Nothing is left running, except after the third stop signal,
        // which SIGKILLs everything and exits at once.
        if self.stops < 3 || !self.lc.settings().has_proxy {
            self.check(!self.app_alive, "exited with the app still running");
            self.check(!self.proxy_alive, "exited with kuma-dp still running");
        }
    }
}

fn run_case(settings: Settings, punctual: bool, prefix: &[(u64, Input)], world: World) {
    let mut run = Run::new(settings, punctual);
    run.step_at(Duration::ZERO, Input::Start);
    for (gap, input) in prefix {
        if run.exit.is_some() {
            break;
        }
        let to = run.now + ms(*gap);
        run.advance(to);
        if run.exit.is_some() {
            break;
        }
        run.step_at(to, *input);
    }
    run.complete(world);
    run.check_exit();
    // Done is final: nothing comes out of it any more.
    let now = run.now;
    for input in [
        Input::Stop(Signal::SIGTERM),
        Input::Tick,
        Input::Start,
        Input::DescendantsGone,
    ] {
        let out = run.lc.step(now, input);
        run.check(out.is_empty(), "actions after Done");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// (a), (b) and (d) on runs where the driver ticks at every deadline.
    #[test]
    fn punctual_runs_keep_every_promise(
        settings in settings(),
        prefix in proptest::collection::vec((gap(), input()), 0..40),
        world in world(),
    ) {
        run_case(settings, true, &prefix, world);
    }

    /// The same with Ticks only where the inputs put them (a late or busy
    /// driver): the promises must hold whenever the machine looks.
    #[test]
    fn late_ticks_keep_every_promise(
        settings in settings(),
        prefix in proptest::collection::vec((gap(), input()), 0..40),
        world in world(),
    ) {
        run_case(settings, false, &prefix, world);
    }

    /// (c) The exit-code mapping is total: the first matching entry wins and
    /// every other code passes through unchanged.
    #[test]
    fn exit_code_map_is_total(
        map in proptest::collection::vec((0i32..256, 0i32..256), 0..8),
        code in prop_oneof![0i32..256, any::<i32>()],
    ) {
        let m = ExitCodeMap(map.clone());
        let got = m.apply(code);
        match map.iter().find(|(from, _)| *from == code) {
            Some((_, to)) => prop_assert_eq!(got, *to),
            None => prop_assert_eq!(got, code),
        }
        if (0..256).contains(&code) {
            prop_assert!((0..256).contains(&got), "a valid code maps to a valid code");
        }
    }
}
