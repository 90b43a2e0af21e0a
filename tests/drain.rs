//! Beyond kuma-dp's fixed drain (issue 9), with the real binary and the fake
//! kuma-dp standing in for Envoy's admin socket: the drain ends once the
//! inbound side is idle (after --drain-min), requests in flight keep it
//! open, unreadable stats fall back to the fixed drain, and proxy-first
//! start order.

mod common;
mod scenario;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use scenario::*;

const T: Duration = Duration::from_secs(20);
const MS: u64 = 1_000_000;

/// The inbound of scenario::TEMPLATE, as the fake's admin stand-in needs it.
fn inbound(s: &Scenario) -> String {
    format!("127.0.0.1:21011:{}", s.app_port)
}

/// kuma-dp's `signal TERM` records: (time, n).
fn terms(s: &Scenario) -> Vec<u64> {
    s.dp_signal_events()
        .into_iter()
        .filter(|e| e.rest.starts_with("TERM"))
        .map(|e| e.t_ns)
        .collect()
}

#[test]
fn drain_ends_once_the_inbound_is_idle_after_drain_min() {
    let s = Scenario::new("idle-drain").listening_app().opt(&[
        "--kuma-dp-arg=--drain-time=20s",
        "--drain-min",
        "500ms",
        "--drain-idle",
        "300ms",
    ]);
    let i = inbound(&s);
    let s = s
        .env("FAKE_KUMA_DP_INBOUND", &i)
        .env("FAKE_KUMA_DP_DRAIN_BUSY_MS", "900");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    assert!(
        s.dp.find("stats-read").is_none(),
        "Envoy's stats are read only during a drain"
    );
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(143), "{}", p.output());
    let t = terms(&s);
    assert_eq!(
        t.len(),
        2,
        "a drain TERM and a stop-now TERM:\n{}",
        s.timeline()
    );
    let stop_now = (t[1] - sent) / MS;
    // Busy for 900 ms, then idle for 300 ms: about 1.2 s, long before 20 s.
    assert!(
        (1150..6000).contains(&stop_now),
        "stop-now {stop_now} ms after SIGTERM\n{}",
        s.timeline()
    );
    let line = p.wait_for_line("inbound idle", T);
    // The fake reports one connection and one request until it goes idle.
    assert!(
        line.contains("at most 1 connections, 1 requests during the drain"),
        "{line}"
    );
    assert_eq!(s.dp.find("exit").unwrap().field("reason"), "stop-now");
    let sum = summary(&p);
    assert!(
        sum.drain < 6.0,
        "drain {} s instead of kuma-dp's 20 s",
        sum.drain
    );
}

#[test]
fn busy_inbound_keeps_the_drain_open_past_drain_min() {
    let s = Scenario::new("busy-drain").listening_app().opt(&[
        "--kuma-dp-arg=--drain-time=20s",
        "--drain-min",
        "200ms",
        "--drain-idle",
        "200ms",
    ]);
    let i = inbound(&s);
    let s = s
        .env("FAKE_KUMA_DP_INBOUND", &i)
        .env("FAKE_KUMA_DP_DRAIN_BUSY_MS", "1500");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    wait_exit_at(&mut p, T);
    let t = terms(&s);
    assert_eq!(t.len(), 2, "{}", s.timeline());
    let stop_now = (t[1] - sent) / MS;
    assert!(
        stop_now >= 1650,
        "requests in flight kept the drain open: stop-now at {stop_now} ms\n{}",
        s.timeline()
    );
    // The stats said busy during the drain before they said idle.
    let reads = s.dp.find_all("stats-read");
    assert!(
        reads.iter().any(|e| e.field("busy") == "1")
            && reads.iter().any(|e| e.field("busy") == "0"),
        "{}",
        s.dp.dump()
    );
}

#[test]
fn unreadable_stats_fall_back_to_the_fixed_drain() {
    // No admin socket at all: the fixed drain (1.5 s here) is waited out.
    let s = Scenario::new("no-stats").listening_app().opt(&[
        "--kuma-dp-arg=--drain-time=1500ms",
        "--drain-min",
        "100ms",
        "--drain-idle",
        "100ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    wait_exit_at(&mut p, T);
    p.wait_for_line("cannot read Envoy's inbound stats", T);
    assert_eq!(terms(&s).len(), 1, "no stop-now: {}", s.timeline());
    let exit = s.dp.find("exit").unwrap();
    assert_eq!(exit.field("reason"), "drained");
    assert!((exit.t_ns - sent) / MS >= 1450);
}

#[test]
fn drain_until_idle_can_be_turned_off() {
    let s = Scenario::new("idle-off").listening_app().opt(&[
        "--kuma-dp-arg=--drain-time=800ms",
        "--drain-until-idle=false",
        "--drain-min",
        "100ms",
    ]);
    let i = inbound(&s);
    let s = s.env("FAKE_KUMA_DP_INBOUND", &i);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGTERM);
    wait_exit_at(&mut p, T);
    assert!(
        s.dp.find("stats-read").is_none(),
        "stats were not read: {}",
        s.dp.dump()
    );
    assert_eq!(s.dp.find("exit").unwrap().field("reason"), "drained");
}

#[test]
fn meshinit_owns_and_removes_the_work_dir() {
    let s = Scenario::new("workdir-owned").listening_app();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let argv = s.dp_argv();
    let dir = argv
        .last()
        .and_then(|a| a.strip_prefix("--work-dir="))
        .expect("work dir")
        .to_string();
    assert!(std::path::Path::new(&dir).is_dir());
    p.signal(Signal::SIGTERM);
    wait_exit_at(&mut p, T);
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} removed at exit"
    );
}

#[test]
fn proxy_first_starts_the_app_after_kuma_dp_is_ready() {
    let s = Scenario::new("proxy-first")
        .listening_app()
        .opt(&["--start-order", "proxy-first"]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let ready = s.dp.wait_for("ready", T);
    let app = s.app.wait_for("start", T);
    assert!(
        ready.t_ns < app.t_ns,
        "the app starts only once kuma-dp is ready\n{}",
        s.timeline()
    );
    assert!(
        p.output()
            .contains("no serviceProbe on inbound port(s) 21011: with --start-order proxy-first"),
        "{}",
        p.output()
    );
    p.signal(Signal::SIGTERM);
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(143));
    // Shutdown order is unchanged: kuma-dp drains before the app is stopped.
    let term = s
        .dp_signal_events()
        .into_iter()
        .find(|e| e.rest.starts_with("TERM"))
        .unwrap();
    let app_term = s
        .app
        .find_all("signal")
        .into_iter()
        .find(|e| e.rest == "TERM")
        .unwrap();
    assert!(term.t_ns < app_term.t_ns, "{}", s.timeline());
}

#[test]
fn proxy_first_with_a_failing_proxy_never_starts_the_app() {
    let s = Scenario::new("proxy-first-fail")
        .listening_app()
        .opt(&[
            "--start-order",
            "proxy-first",
            "--proxy-ready-timeout",
            "700ms",
        ])
        .env("FAKE_KUMA_DP_NEVER_READY", "1");
    let mut p = s.start();
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(75), "{}", p.output());
    assert!(
        s.app.find("start").is_none(),
        "the app never ran: {}",
        s.timeline()
    );
}

// ---- Issue 26: the hold drain and the DNS gate ----

/// A scenario without the harness's short `KUMA_DATAPLANE_DRAIN_TIME`: the
/// hold drain sets kuma-dp's drain time itself (and refuses a short one).
fn hold_scenario(tag: &str) -> Scenario {
    let mut s = Scenario::new(tag);
    s.env.retain(|(k, _)| k != "KUMA_DATAPLANE_DRAIN_TIME");
    s
}

/// The whole hold drain against the fake kuma-dp: SIGTERM to kuma-dp, the
/// inbound idle after --drain-min, the grace, the app's stop, the app's exit,
/// and only then kuma-dp's second SIGTERM, which ends its (long) drain at
/// once; the app's outbound calls (to the fake kuma-dp, standing in for
/// Envoy) all work while it stops; meshinit exits with the app's status.
#[test]
fn the_hold_drain_keeps_kuma_dp_for_the_apps_outbound_until_the_app_has_exited() {
    let s = hold_scenario("hold-drain").listening_app().opt(&[
        "--drain-signal",
        "hold",
        "--drain-min",
        "300ms",
        "--drain-idle",
        "200ms",
        "--app-grace-delay",
        "300ms",
    ]);
    let envoy = format!("127.0.0.1:{}", s.ready_port);
    let i = inbound(&s);
    let s = s
        .app(&[
            "--on",
            "TERM=exit-after:700:0",
            "--call-while-stopping",
            &envoy,
        ])
        .env("FAKE_KUMA_DP_INBOUND", &i)
        .env("FAKE_KUMA_DP_DRAIN_BUSY_MS", "200");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let drain_time = s
        .dp_argv()
        .into_iter()
        .find_map(|a| a.strip_prefix("--drain-time=").map(str::to_string))
        .unwrap_or_else(|| panic!("meshinit passes kuma-dp a drain time: {:?}", s.dp_argv()));
    let secs: u64 = drain_time
        .trim_end_matches('s')
        .parse()
        .expect("whole seconds");
    assert!(
        secs > 40,
        "beyond --drain-timeout and the rest: {drain_time}"
    );
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(
        status.code(),
        Some(0),
        "the app's own status\n{}",
        p.output()
    );

    let t = terms(&s);
    assert_eq!(t.len(), 2, "two SIGTERMs, never a third\n{}", s.timeline());
    let app_term = s
        .app
        .find_all("signal")
        .into_iter()
        .find(|e| e.rest == "TERM")
        .expect("the app got its stop signal");
    let app_exit = s.app.wait_for("exit", T);
    let dp_exit = s.dp.wait_for("exit", T);
    let order = [t[0], app_term.t_ns, app_exit.t_ns, t[1], dp_exit.t_ns];
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "kuma-dp TERM, app TERM, app exit, kuma-dp TERM, kuma-dp exit:\n{}",
        s.timeline()
    );
    // The inbound phase (drain-min, busy 200 ms, idle 200 ms) and the grace.
    let before_app_stop = ms(t[0], app_term.t_ns);
    assert!(
        before_app_stop >= 600.0,
        "app stopped {before_app_stop} ms after kuma-dp's TERM\n{}",
        s.timeline()
    );
    assert!((t[0] - sent) / MS < 2_000);
    assert_eq!(
        dp_exit.field("reason"),
        "stop-now",
        "the second SIGTERM ended kuma-dp's drain (it was not its drain time)"
    );
    assert_eq!(dp_exit.field("code"), "0");
    assert!(
        !s.dp_signal_events().iter().any(|e| e.rest == "USR2"),
        "{}",
        s.timeline()
    );
    // Every outbound call of the stopping app went through.
    let calls = s.app.find_all("call");
    assert!(
        calls.len() >= 5,
        "the app called out while stopping:\n{}",
        s.timeline()
    );
    assert!(
        calls.iter().all(|c| c.field("ok") == "1"),
        "outbound calls failed while the app stopped:\n{}",
        s.timeline()
    );
    let line = p.wait_for_line("hold drain: the inbound drain is over", T);
    assert!(line.contains("(idle)"), "{line}");
    let sum = summary(&p);
    assert_eq!(sum.exit, 0);
    assert!(
        sum.drain < 5.0,
        "the inbound phase ended by the idle rule: {}",
        sum.drain
    );
}

/// A drain time given to kuma-dp that does not outlast meshinit's worst
/// case is refused before anything starts, naming both values; `check`
/// prints the hold timeline with the drain time meshinit passes.
#[test]
fn the_hold_drain_refuses_a_short_drain_time_and_check_prints_its_timeline() {
    let s = hold_scenario("hold-check").opt(&[
        "--drain-signal",
        "hold",
        "--kuma-dp-arg=--drain-time=5s",
    ]);
    let mut p = s.start();
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(64), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains("kuma-dp's --drain-time 5s (from flag --kuma-dp-arg) is shorter than meshinit's worst-case shutdown 54s"),
        "{out}"
    );
    assert!(s.app.find("start").is_none() && s.dp.find("start").is_none());

    let s = hold_scenario("hold-check-ok").opt(&["--drain-signal", "hold"]);
    let args: Vec<String> = s
        .command()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut check = std::process::Command::new(meshinit_bin());
    check.arg("check").args(&args);
    for (k, v) in &s.env {
        check.env(k, v);
    }
    let out = check.output().expect("meshinit check runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "drain (hold): kuma-dp gets SIGTERM; the inbound is withdrawn and drains, at most 40s (drain-timeout); kuma-dp keeps Envoy up for the app's outbound calls and DNS (its drain time 64s)",
        "40s  hold: the inbound drain ends (drain-timeout)",
        "50s  kuma-dp gets its second SIGTERM now that the app is gone",
        "--drain-time=64s",
        "worst case: 54s",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
}

/// `--proxy-dns`: with proxy-first the app starts only once kuma-dp is
/// ready AND its DNS answered (here 1.2 s after kuma-dp's start, 1 s after
/// its readiness).
#[test]
fn proxy_first_with_the_dns_gate_starts_the_app_after_kuma_dps_dns_answers() {
    let dns = format!("127.0.0.1:{}", free_port());
    let s = Scenario::new("dns-gate")
        .listening_app()
        .opt(&["--start-order", "proxy-first", "--proxy-dns", &dns])
        .env("FAKE_KUMA_DP_DNS", &dns)
        .env("FAKE_KUMA_DP_DNS_AFTER_MS", "1200");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let ready = s.dp.wait_for("ready", T);
    let listening = s.dp.wait_for("dns-listening", T);
    let answer = s.dp.wait_for("dns-answer", T);
    let app = s.app.wait_for("start", T);
    assert!(
        ready.t_ns < listening.t_ns && answer.t_ns < app.t_ns,
        "kuma-dp ready, its DNS answers, then the app starts:\n{}",
        s.timeline()
    );
    p.wait_for_line("kuma-dp's DNS server answers", T);
    p.signal(Signal::SIGTERM);
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(143), "{}", p.output());
}

/// A DNS that never answers: the wait is bounded by --proxy-ready-timeout,
/// the app never runs, meshinit exits 75 saying why.
#[test]
fn the_dns_gate_gives_up_at_the_proxy_ready_timeout() {
    let dns = format!("127.0.0.1:{}", free_port());
    let s = Scenario::new("dns-gate-silent").listening_app().opt(&[
        "--start-order",
        "proxy-first",
        "--proxy-dns",
        &dns,
        "--proxy-ready-timeout",
        "1500ms",
    ]);
    let mut p = s.start();
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(75), "{}", p.output());
    assert!(
        p.output()
            .contains("kuma-dp is ready but its DNS server did not answer"),
        "{}",
        p.output()
    );
    assert!(s.dp.find("ready").is_some(), "{}", s.timeline());
    assert!(s.app.find("start").is_none(), "{}", s.timeline());
}
