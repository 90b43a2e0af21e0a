//! Graceful shutdown (issue 4): the real `meshinit` binary with the test app and
//! `fake-kuma-dp`. The ordering is read from CLOCK_MONOTONIC timestamps recorded by the
//! programs themselves (and by the test just before it sends a signal): kuma-dp drains
//! first, the app keeps running for the grace delay after kuma-dp has gone, then it is
//! stopped, and meshinit exits with the app's status without an idle tail.
//!
//! The issue asks for "within 100 ms"; the bounds here are 300 ms so that a busy 2-core CI
//! machine does not fail them. Ordering assertions are strict.

mod common;
mod scenario;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use scenario::*;

/// Upper bound for any single wait; tests normally finish long before.
const T: Duration = Duration::from_secs(15);

/// How soon "at once" must be: 300 ms on the reference machine, scaled by the slack.
fn prompt_ms() -> f64 {
    bound_ms(300.0)
}

/// The app's record of receiving `sig` (e.g. `TERM`).
fn app_got(s: &Scenario, sig: &str) -> Event {
    s.app
        .find_all("signal")
        .into_iter()
        .find(|e| e.rest == sig)
        .unwrap_or_else(|| panic!("the app never got SIG{sig}:\n{}", s.timeline()))
}

/// kuma-dp's `signal` records, as their text (`TERM n=1`, `USR2`, ...), without the
/// SIGCONT that follows each stop signal.
fn dp_signals(s: &Scenario) -> Vec<String> {
    s.dp_signal_events().into_iter().map(|e| e.rest).collect()
}

/// Sends meshinit `sig` and gives the CLOCK_MONOTONIC time just before.
fn send(p: &Proc, sig: Signal) -> u64 {
    let t = now_ns();
    p.signal(sig);
    t
}

#[test]
fn sigterm_drains_kuma_dp_then_waits_the_grace_delay_then_stops_the_app() {
    let (s, status) = Scenario::new("sequence")
        .listening_app()
        .opt(&[
            "--kuma-dp-arg=--drain-time=500ms",
            "--app-grace-delay",
            "500ms",
            "--drain-timeout",
            "5s",
        ])
        .with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    assert_eq!(get(status, "/ready"), Some((200, "ready\n".into())));

    let sent = send(&p, Signal::SIGTERM);
    // meshinit is marked not ready at once, for the whole drain.
    let first = poll("/ready to stop answering 200", T, || {
        get(status, "/ready").filter(|r| r.0 != 200)
    });
    assert_eq!(first, (503, "draining\n".into()));
    assert_eq!(get(status, "/live").map(|r| r.0), Some(200));
    let (exit, exited) = wait_exit_at(&mut p, T);
    assert_eq!(
        exit.code(),
        Some(143),
        "the app's status: killed by SIGTERM"
    );

    let term = s.dp.find("signal").expect("kuma-dp drained");
    assert_eq!(dp_signals(&s), ["TERM n=1"]);
    let lag = ms(sent, term.t_ns);
    assert!(
        lag < prompt_ms(),
        "kuma-dp got SIGTERM {lag:.0}ms after meshinit"
    );
    let dp_exit = s.dp.find("exit").unwrap();
    assert_eq!(dp_exit.field("reason"), "drained");
    let app_term = app_got(&s, "TERM");
    let grace = ms(dp_exit.t_ns, app_term.t_ns);
    assert!(
        grace >= 500.0,
        "the app got SIGTERM {grace:.0}ms after kuma-dp exited, before the 500ms grace delay:\n{}",
        s.timeline()
    );
    assert!(grace < 500.0 + prompt_ms(), "grace took {grace:.0}ms");
    let die = s.app.find("die").unwrap();
    let tail = ms(die.t_ns, exited);
    assert!(tail < 500.0, "meshinit exited {tail:.0}ms after the app");

    eprintln!("measured: TERM to kuma-dp {lag:.1}ms after the signal, grace {grace:.1}ms, exit {tail:.1}ms after the app");

    // The summary line tells the same story as the records.
    let sum = summary(&p);
    assert_eq!(sum.exit, 143);
    let drain = ms(term.t_ns, dp_exit.t_ns) / 1000.0;
    assert!(
        (sum.drain - drain).abs() < 0.1,
        "{sum:?} vs drain {drain:.3}"
    );
    assert!(
        (sum.grace - grace / 1000.0).abs() < 0.1,
        "{sum:?} vs {grace:.0}ms"
    );
    assert!(sum.drain >= 0.49 && sum.grace >= 0.49, "{sum:?}");
    assert!(
        (sum.total - (sum.drain + sum.grace + sum.app_stop)).abs() < 0.035,
        "{sum:?}"
    );
    let total = ms(sent, die.t_ns) / 1000.0;
    assert!((sum.total - total).abs() < 0.15, "{sum:?} vs {total:.3}s");

    let order = [
        "phase draining",
        "sending signal target=\"kuma-dp\" signal=\"TERM\"",
        "phase grace",
        "phase stopping",
        "sending signal target=\"app\" signal=\"TERM\"",
        "phase done",
    ];
    let at: Vec<usize> = order.iter().map(|l| line_index(&p, l)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "log order {at:?}");
}

#[test]
fn exit_code_map_rewrites_the_status_and_a_budget_overrun_is_warned() {
    // Worst case 40s + 1s + 0s + 10s + 2s + 1s = 54s against a 1s budget: a warning at
    // start, not an error.
    let s = Scenario::new("exit-map").listening_app().opt(&[
        "--exit-code-map",
        "143:0",
        "--shutdown-budget",
        "1s",
    ]);
    let mut p = s.start();
    let warned = p.wait_for_line("exceeds --shutdown-budget", T);
    assert!(
        warned.contains("WARN") && warned.contains("54s"),
        "{warned}"
    );
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(0), "143 mapped to 0");
    assert_eq!(s.app.find("die").unwrap().field("sig"), "TERM");
    assert_eq!(summary(&p).exit, 0);
}

#[test]
fn drain_timeout_sends_a_second_term_then_sigkill_and_still_stops_the_app_last() {
    let s = Scenario::new("drain-timeout")
        .listening_app()
        .opt(&["--drain-timeout", "1s", "--app-grace-delay", "200ms"])
        .env("FAKE_KUMA_DP_IGNORE_TERM", "1");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let dp_pid = s.dp.find("start").unwrap().field("pid").parse().unwrap();
    let sent = send(&p, Signal::SIGTERM);
    let (exit, exited) = wait_exit_at(&mut p, T);
    assert_eq!(exit.code(), Some(143));
    // drain-timeout 1 s + kill bound 1 s + grace 200 ms + app stop: nothing waits for what
    // can no longer happen.
    assert!(ms(sent, exited) < 5000.0, "{}", s.timeline());

    let terms = s.dp_signal_events();
    assert_eq!(dp_signals(&s), ["TERM n=1", "TERM n=2"], "{}", s.timeline());
    assert!(ms(sent, terms[0].t_ns) < prompt_ms());
    let second = ms(terms[0].t_ns, terms[1].t_ns);
    assert!(
        (950.0..1000.0 + prompt_ms()).contains(&second),
        "second TERM {second:.0}ms after the first (drain-timeout 1s)"
    );
    assert!(
        s.dp.find("exit").is_none(),
        "kuma-dp was SIGKILLed, not exited"
    );
    assert!(is_dead(dp_pid));
    let out = p.output();
    assert!(
        out.contains("did not finish draining within --drain-timeout"),
        "{out}"
    );
    assert!(
        out.contains("kuma-dp did not exit in time; sending SIGKILL"),
        "{out}"
    );
    assert!(out.contains("killed by signal 9"), "{out}");
    // SIGKILL follows the second TERM after the 1 s bound, then the 200ms grace: only then
    // the app's stop signal. The fake records the TERM when it has read it, a little after
    // meshinit sent it (and started the 1 s bound): 100 ms of slack for a busy machine,
    // far less than the 200 ms grace or the 1 s bound a skipped step would remove.
    let app_term = app_got(&s, "TERM");
    let after = ms(terms[1].t_ns, app_term.t_ns);
    assert!(
        after >= 1000.0 + 200.0 - 100.0,
        "the app was stopped {after:.0}ms after the second TERM:\n{}",
        s.timeline()
    );
}

#[test]
fn drain_timeout_shorter_than_kuma_dps_drain_time_is_warned_and_cut_short() {
    let s = Scenario::new("drain-short").listening_app().opt(&[
        "--kuma-dp-arg=--drain-time=5s",
        "--drain-timeout",
        "1s",
    ]);
    let mut p = s.start();
    let warned = p.wait_for_line("is not larger than kuma-dp's drain time", T);
    assert!(
        warned.contains("drain-timeout 1s") && warned.contains("5s"),
        "{warned}"
    );
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    assert_eq!(dp_signals(&s), ["TERM n=1", "TERM n=2"]);
    assert_eq!(s.dp.find("exit").unwrap().field("reason"), "stop-now");
    let dp_exit = s.dp.find("exit").unwrap();
    assert!(dp_exit.t_ns < app_got(&s, "TERM").t_ns, "{}", s.timeline());
}

#[test]
fn a_second_stop_signal_cuts_the_shutdown_short() {
    let s = Scenario::new("second-signal").listening_app().opt(&[
        "--kuma-dp-arg=--drain-time=5s",
        "--drain-timeout",
        "10s",
        "--app-grace-delay",
        "5s",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGTERM);
    s.dp.wait_for("draining", T);
    // SIGINT is a stop signal too (default --stop-signals TERM,INT); kuma-dp still gets TERM.
    let second = send(&p, Signal::SIGINT);
    let (exit, exited) = wait_exit_at(&mut p, T);
    assert_eq!(exit.code(), Some(143));

    let terms = s.dp_signal_events();
    assert_eq!(dp_signals(&s), ["TERM n=1", "TERM n=2"]);
    assert!(ms(second, terms[1].t_ns) < prompt_ms(), "{}", s.timeline());
    assert_eq!(s.dp.find("exit").unwrap().field("reason"), "stop-now");
    let app_term = app_got(&s, "TERM");
    let lag = ms(second, app_term.t_ns);
    assert!(
        lag < prompt_ms(),
        "the app got its stop signal {lag:.0}ms after the 2nd signal"
    );
    let out_in = ms(second, exited);
    assert!(
        out_in < 2000.0,
        "meshinit took {out_in:.0}ms after the 2nd signal"
    );
    p.wait_for_line("stop signal #2", T);
}

#[test]
fn a_third_stop_signal_kills_everything_and_exits_at_once() {
    let s = Scenario::new("third-signal")
        .listening_app()
        .app(&["--on", "TERM=ignore"])
        .opt(&["--drain-timeout", "10s", "--app-stop-timeout", "10s"])
        .env("FAKE_KUMA_DP_IGNORE_TERM", "1");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let app_pid = s.app.find("start").unwrap().field("pid").parse().unwrap();
    let dp_pid = s.dp.find("start").unwrap().field("pid").parse().unwrap();

    p.signal(Signal::SIGTERM);
    s.dp.wait_for_match("signal", |e| e.rest == "TERM n=1", T);
    p.signal(Signal::SIGTERM);
    s.dp.wait_for_match("signal", |e| e.rest == "TERM n=2", T);
    s.app.wait_for_match("signal", |e| e.rest == "TERM", T);
    let third = send(&p, Signal::SIGTERM);
    let (exit, exited) = wait_exit_at(&mut p, T);
    let took = ms(third, exited);
    assert!(
        took < 500.0,
        "meshinit took {took:.0}ms after the 3rd signal"
    );
    assert_eq!(exit.code(), Some(137), "the app died by SIGKILL");
    // Both were SIGKILLed (neither recorded an exit of its own).
    assert!(s.app.find("die").is_none() && s.app.find("exit").is_none());
    assert!(s.dp.find("exit").is_none());
    poll("the app and kuma-dp to be dead", T, || {
        (is_dead(app_pid) && is_dead(dp_pid)).then_some(())
    });
    p.wait_for_line("stop signal #3", T);
}

#[test]
fn stop_while_probing_stops_the_app_and_never_starts_kuma_dp() {
    // The app never listens, so meshinit stays in the probing phase.
    let s = Scenario::new("stop-probing");
    let mut p = s.start();
    p.wait_for_line("phase probing", T);
    s.app.wait_for("start", T);
    let sent = send(&p, Signal::SIGTERM);
    let (exit, exited) = wait_exit_at(&mut p, T);
    assert_eq!(exit.code(), Some(143));
    let die = s.app.find("die").expect("app stopped");
    assert!(
        ms(sent, die.t_ns) < prompt_ms(),
        "no drain or grace is owed"
    );
    assert!(ms(die.t_ns, exited) < 500.0);
    assert!(!s.dp.path.exists(), "kuma-dp must never start");
}

/// Issue 13: a kuma-dp that was spawned may already be registered and receiving traffic even
/// though its /ready is not 200 yet, so a stop drains it first (here its fixed 300 ms drain:
/// the fake has no Envoy stats to end it earlier) and the app keeps running through the
/// drain and the grace delay. It used to get SIGTERM at once, beside kuma-dp.
#[test]
fn stop_while_kuma_dp_is_not_ready_drains_it_before_the_app_is_stopped() {
    let s = Scenario::new("stop-starting")
        .listening_app()
        .opt(&[
            "--kuma-dp-arg=--drain-time=300ms",
            "--app-grace-delay",
            "500ms",
        ])
        .env("FAKE_KUMA_DP_NEVER_READY", "1");
    let mut p = s.start();
    p.wait_for_line("kuma-dp started", T);
    s.dp.wait_for("token", T);
    let sent = send(&p, Signal::SIGTERM);
    let (exit, exited) = wait_exit_at(&mut p, T);
    assert_eq!(exit.code(), Some(143));

    let terms = s.dp_signal_events();
    assert_eq!(terms[0].rest, "TERM n=1");
    assert!(ms(sent, terms[0].t_ns) < prompt_ms());
    let dp_exit = s.dp.find("exit").expect("kuma-dp exited");
    let app_term = app_got(&s, "TERM");
    assert!(
        ms(dp_exit.t_ns, app_term.t_ns) >= 450.0,
        "the app was stopped {:.0}ms after kuma-dp's drain ended (grace 500ms)\n{}",
        ms(dp_exit.t_ns, app_term.t_ns),
        s.timeline()
    );
    assert!(ms(sent, exited) < 5000.0);
    assert!(p.output().contains("phase draining"));
}

#[test]
fn app_exiting_on_its_own_drains_kuma_dp_then_exits_with_the_apps_code() {
    let s = Scenario::new("app-exits")
        .listening_app()
        .app(&["--on", "USR1=exit:3"])
        .opt(&[
            "--kuma-dp-arg=--drain-time=300ms",
            "--app-grace-delay",
            "3s",
        ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGUSR1); // forwarded to the app, which exits 3
    let (exit, exited) = wait_exit_at(&mut p, T);
    assert_eq!(exit.code(), Some(3), "the app's own code");

    let app_exit = s.app.find("exit").unwrap();
    assert_eq!(app_exit.field("code"), "3");
    let term = s.dp.find("signal").expect("kuma-dp drained");
    assert_eq!(term.rest, "TERM n=1");
    assert!(app_exit.t_ns < term.t_ns);
    assert!(
        ms(app_exit.t_ns, term.t_ns) < prompt_ms(),
        "{}",
        s.timeline()
    );
    let dp_exit = s.dp.find("exit").unwrap();
    assert_eq!(dp_exit.field("reason"), "drained");
    // No grace is owed to an app that is gone, and no idle tail.
    let tail = ms(dp_exit.t_ns, exited);
    assert!(tail < 500.0, "meshinit exited {tail:.0}ms after kuma-dp");
    assert_eq!(summary(&p).exit, 3);
}

#[test]
fn drain_signal_usr2_drains_inbound_then_stops_the_app_then_terms_kuma_dp() {
    let (s, status) = Scenario::new("usr2")
        .listening_app()
        .opt(&[
            "--drain-signal",
            "USR2",
            "--kuma-dp-arg=--drain-time=500ms",
            "--app-grace-delay",
            "300ms",
        ])
        .with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let sent = send(&p, Signal::SIGTERM);
    let usr2 = s.dp.wait_for_match("signal", |e| e.rest == "USR2", T);
    assert!(ms(sent, usr2.t_ns) < prompt_ms());
    s.dp.wait_for("drain-inbound", T);
    // meshinit reports draining while kuma-dp keeps serving outbound traffic (ready 200).
    assert_eq!(get(status, "/ready"), Some((503, "draining\n".into())));
    assert_eq!(get(s.ready_port, "/ready"), Some((200, "LIVE".into())));
    let (exit, _) = wait_exit_at(&mut p, T);
    assert_eq!(exit.code(), Some(143));

    // The drain wait (kuma-dp's drain time, 500ms) and the grace delay (300ms), then the
    // app. The wait starts as meshinit sends USR2, a little before the fake records it:
    // 100 ms of slack for a busy machine (a skipped grace would remove 300 ms).
    let app_term = app_got(&s, "TERM");
    let waited = ms(usr2.t_ns, app_term.t_ns);
    assert!(
        (800.0 - 100.0..800.0 + prompt_ms()).contains(&waited),
        "app stopped {waited:.0}ms after USR2:\n{}",
        s.timeline()
    );
    // kuma-dp gets SIGTERM last, after the app is gone, and exits at once.
    let die = s.app.find("die").unwrap();
    assert_eq!(dp_signals(&s), ["USR2", "TERM n=1"]);
    let term = s.dp_signal_events()[1].clone();
    assert!(die.t_ns < term.t_ns, "{}", s.timeline());
    assert_eq!(
        s.dp.find("exit").unwrap().field("reason"),
        "already-drained"
    );
}

#[test]
fn without_a_proxy_the_grace_delay_precedes_the_app_stop() {
    let s = Scenario::bare("no-proxy").listening_app().opt(&[
        "--log-level=info",
        "--app-grace-delay",
        "300ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("plain init mode", T);
    p.wait_for_line("service running and ready", T);
    let sent = send(&p, Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    let waited = ms(sent, app_got(&s, "TERM").t_ns);
    assert!(
        (300.0..300.0 + prompt_ms()).contains(&waited),
        "app stopped after {waited:.0}ms"
    );
    let sum = summary(&p);
    assert_eq!(sum.drain, 0.0);
    assert!(sum.grace >= 0.29, "{sum:?}");
    assert!(!s.dp.path.exists());
}

#[test]
fn status_endpoint_follows_the_lifecycle() {
    let (s, status) = Scenario::new("status")
        .listening_app()
        .app(&["--listen-after", "400"])
        .opt(&[
            "--kuma-dp-arg=--drain-time=300ms",
            "--app-grace-delay",
            "300ms",
        ])
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "400")
        .with_status();
    // Poll /ready from before meshinit starts until it has exited.
    let seen: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    // Stops the poller however the test ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop_poller = StopOnDrop(done.clone());
    let poller = {
        let (seen, done) = (seen.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(answer) = get(status, "/ready") {
                    let mut seen = seen.lock().unwrap();
                    if seen.last() != Some(&answer) {
                        seen.push(answer);
                    }
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);

    let st = status_json(status);
    let app_pid: i64 = s.app.find("start").unwrap().field("pid").parse().unwrap();
    let dp_pid: i64 = s.dp.find("start").unwrap().field("pid").parse().unwrap();
    assert_eq!(st["phase"], "running", "{st}");
    assert_eq!(st["ready"], true, "{st}");
    assert_eq!(st["healthy"], true, "{st}");
    assert_eq!(st["pids"]["app"], app_pid, "{st}");
    assert_eq!(st["pids"]["proxy"], dp_pid, "{st}");
    assert_eq!(st["proxy_restarts"], 0, "{st}");
    assert_eq!(st["probes"][0]["passing"], true, "{st}");
    assert_eq!(
        st["probes"][0]["probe"],
        format!("tcp 127.0.0.1:{}", s.app_port),
        "{st}"
    );
    let phases: Vec<&str> = st["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["starting", "probing", "proxy-starting", "running"]);
    assert_eq!(get(status, "/live").map(|r| r.0), Some(200));
    assert_eq!(get(status, "/nope").map(|r| r.0), Some(404));

    // Let the poller see the ready state too before the shutdown begins.
    poll("the poller to see 200", T, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|r| r.0 == 200)
            .then_some(())
    });
    p.signal(Signal::SIGTERM);
    p.wait_for_line("phase grace", T);
    let st = status_json(status);
    assert_eq!(st["phase"], "grace");
    assert_eq!(
        st["pids"]["proxy"],
        serde_json::Value::Null,
        "kuma-dp is gone"
    );
    assert_eq!(get(status, "/live").map(|r| r.0), Some(200));
    assert_eq!(p.wait_exit(T).code(), Some(143));
    done.store(true, Ordering::SeqCst);
    poller.join().unwrap();
    assert!(
        get(status, "/ready").is_none(),
        "the endpoint ends with meshinit"
    );

    let seen = seen.lock().unwrap().clone();
    for (code, body) in &seen {
        assert_eq!(
            *code == 200,
            body == "ready\n",
            "200 only when ready: {seen:?}"
        );
    }
    let order = [
        "starting",
        "probing",
        "proxy-starting",
        "ready",
        "draining",
        "grace",
        "stopping",
        "cleanup",
        "done",
    ];
    let bodies: Vec<&str> = seen.iter().map(|(_, b)| b.trim_end()).collect();
    let mut pos = 0;
    for b in &bodies {
        let i = order
            .iter()
            .position(|o| o == b)
            .unwrap_or_else(|| panic!("unexpected /ready body {b:?} in {bodies:?}"));
        assert!(i >= pos, "/ready went backwards: {bodies:?}");
        pos = i;
    }
    for must in ["probing", "proxy-starting", "ready", "draining", "grace"] {
        assert!(
            bodies.contains(&must),
            "/ready never said {must}: {bodies:?}"
        );
    }
}

/// Runs `meshinit check` with the scenario's options and `extra`: (exit code, output).
fn check(s: &Scenario, extra: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(meshinit_bin());
    cmd.arg("check")
        .args(&s.opts)
        .args(extra)
        .arg("--")
        .arg(test_app_bin());
    let mut p = Proc::start(cmd);
    let code = p.wait_exit(T).code().expect("exit code");
    (code, p.output())
}

#[test]
fn check_reports_the_worst_case_shutdown_and_enforces_the_budget() {
    let s = Scenario::new("budget");
    let grace = ["--app-grace-delay", "5s"];

    let (code, out) = check(&s, &grace);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("worst case: 59s"),
        "40s drain + 1s to SIGKILL kuma-dp + 5s grace + 10s stop + 2s clean-up + 1s give-up:\n{out}"
    );
    assert!(out.contains("at most 40s (drain-timeout)"), "{out}");

    let (code, out) = check(&s, &[grace[0], grace[1], "--shutdown-budget", "30s"]);
    assert_ne!(code, 0, "59s does not fit in 30s:\n{out}");
    assert!(out.contains("shutdown budget: 30s (EXCEEDED)"), "{out}");
    assert!(
        out.contains("worst-case shutdown 59s exceeds --shutdown-budget 30s"),
        "{out}"
    );

    let (code, out) = check(&s, &[grace[0], grace[1], "--shutdown-budget", "58s"]);
    assert_ne!(code, 0, "one second short:\n{out}");
    let (code, out) = check(&s, &[grace[0], grace[1], "--shutdown-budget", "59s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("shutdown budget: 59s (fits)"), "{out}");

    // Without a proxy there is no drain: 5s + 10s + 2s clean-up + 1s give-up.
    let plain = Scenario::bare("budget-plain");
    let (code, out) = check(&plain, &[grace[0], grace[1], "--shutdown-budget", "18s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("worst case: 18s"), "{out}");
}

/// The times `meshinit check` prints in its shutdown timeline, by what happens then.
fn planned_at(plan: &str, what: &str) -> f64 {
    let line = plan
        .lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} in the plan:\n{plan}"));
    let at = line.split_whitespace().next().expect("a time");
    let secs = if let Some(ms) = at.strip_suffix("ms") {
        ms.parse::<f64>().map(|v| v / 1000.0)
    } else {
        at.trim_end_matches('s').parse::<f64>()
    };
    secs.unwrap_or_else(|_| panic!("no time in {line:?}"))
}

/// Issue 22: `check`'s timeline is the lifecycle run on a simulated clock,
/// so a real run in which nobody cooperates (kuma-dp and the app ignore
/// SIGTERM) takes each step when the plan says. The only difference: the
/// real processes leave no descendant behind, so the real run ends where
/// the plan's clean-up begins.
#[test]
fn checks_timeline_is_what_a_real_run_takes_when_nobody_cooperates() {
    let flags = [
        "--drain-timeout",
        "1s",
        "--app-grace-delay",
        "500ms",
        "--app-stop-timeout",
        "1500ms",
    ];
    let s = Scenario::new("plan-vs-run")
        .listening_app()
        .app(&["--on", "TERM=ignore"])
        .opt(&flags)
        .env("FAKE_KUMA_DP_IGNORE_TERM", "1");
    let (code, plan) = check(&s, &[]);
    assert_eq!(code, 0, "{plan}");
    let grace_at = planned_at(&plan, "grace: the app keeps running");
    let stop_at = planned_at(&plan, "stop: the app gets");
    let killed_at = planned_at(&plan, "the app gets SIGKILL");
    // 1 s drain, a second SIGTERM, SIGKILL one kill bound later; the grace; the stop timeout.
    assert_eq!((grace_at, stop_at, killed_at), (2.0, 2.5, 4.0), "{plan}");

    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
    let real = summary(&p);
    assert_eq!(real.exit, 137, "the app was SIGKILLed");
    // Each phase as planned, give or take a busy machine's scheduling.
    let close = |real: f64, planned: f64| (real - planned).abs() < bound_ms(400.0) / 1000.0;
    assert!(close(real.drain, grace_at), "{real:?} vs the plan:\n{plan}");
    assert!(close(real.grace, stop_at - grace_at), "{real:?} vs\n{plan}");
    assert!(
        close(real.app_stop, killed_at - stop_at),
        "{real:?} vs\n{plan}"
    );
    assert!(close(real.total, killed_at), "{real:?} vs\n{plan}");
}
