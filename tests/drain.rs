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
