//! Faults meshinit must survive (issue 8): the real binary with the test app and the fake
//! kuma-dp, each test breaking one thing on purpose and checking that nothing is lost,
//! nothing waits for what can no longer happen, and nothing is left behind.
//!
//! Every wait is on an event (a record line, a log line, a port, an exit) with a generous
//! bound; ordering assertions are strict, timing bounds leave room for a busy 2-core CI
//! machine. docs/robustness.md lists each fault with the test that shows it.

mod common;
mod scenario;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use scenario::*;

/// Upper bound for any single wait; tests normally finish long before.
const T: Duration = Duration::from_secs(20);

/// Sends meshinit `sig` and gives the CLOCK_MONOTONIC time just before.
fn send(p: &Proc, sig: Signal) -> u64 {
    let t = now_ns();
    p.signal(sig);
    t
}

/// The first time the app recorded receiving `sig` (e.g. `TERM`).
fn app_got(s: &Scenario, sig: &str) -> Event {
    s.app.wait_for_match("signal", |e| e.rest == sig, T)
}

/// The pid of the newest kuma-dp.
fn dp_pid(s: &Scenario) -> i32 {
    s.dp.find_all("start")
        .last()
        .expect("kuma-dp started")
        .field("pid")
        .parse()
        .unwrap()
}

/// Live (non-zombie) processes in process group `pgid`.
fn live_in_group(pgid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, s)| s.pgid == pgid && s.state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Zombie children of `parent` (exited, not yet reaped).
fn zombies_of(parent: i32) -> usize {
    processes()
        .into_iter()
        .filter(|(_, s)| s.ppid == parent && s.state == 'Z')
        .count()
}

/// Open file descriptors of `pid`.
fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The scenario every proxy test starts from: a listening app (probed on its port by
/// default), kuma-dp draining 100 ms, no idle-drain shortcut (the fake has no Envoy stats).
fn proxied(tag: &str) -> Scenario {
    Scenario::new(tag)
        .listening_app()
        .opt(&["--drain-until-idle=false"])
}

#[test]
fn kuma_dp_killed_in_the_middle_of_its_drain_moves_the_sequence_on_at_once() {
    let s = proxied("fault-dp-killed").opt(&[
        "--kuma-dp-arg=--drain-time=30s",
        "--drain-timeout",
        "60s",
        "--app-grace-delay",
        "500ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let dp = dp_pid(&s);
    send(&p, Signal::SIGTERM);
    s.dp.wait_for("draining", T);
    let killed = now_ns();
    kill(Pid::from_raw(dp), Signal::SIGKILL).unwrap();

    let term = app_got(&s, "TERM");
    let after = ms(killed, term.t_ns);
    // The grace delay still runs (500 ms), then the app's stop signal, nothing waits
    // for the 30 s drain that can no longer happen.
    assert!(
        (450.0..3000.0).contains(&after),
        "app stopped {after:.0}ms after kuma-dp was killed mid-drain (grace 500ms, drain 30s):\n{}",
        s.timeline()
    );
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(143));
    let sum = summary(&p);
    assert!(sum.drain < 3.0 && sum.total < 5.0, "{sum:?}");
    assert!(p.output().contains("killed by signal 9"), "{}", p.output());
}

#[test]
fn app_crash_looping_before_it_is_healthy_never_starts_kuma_dp() {
    // Each run is one turn of an orchestrator's restart loop: the app dies before its
    // port opens, meshinit exits with its status and kuma-dp is never started.
    for (i, app) in [
        vec!["--exit-after", "200", "--exit-code", "3"],
        vec!["--exit-code", "1"],
        vec!["--exit-after", "50", "--exit-code", "0"],
    ]
    .into_iter()
    .enumerate()
    {
        let s = Scenario::new(&format!("fault-app-crashloop-{i}")).app(&app);
        let mut p = s.start();
        let want = app[app.len() - 1].parse::<i32>().unwrap();
        assert_eq!(p.wait_exit(T).code(), Some(want), "{}", p.output());
        assert!(
            !s.dp.path.exists(),
            "kuma-dp was started for an app that never became healthy:\n{}",
            s.dp.dump()
        );
        assert!(!p.output().contains("kuma-dp started"), "{}", p.output());
    }
    // Killed by a signal while being probed: 128+N, still no kuma-dp.
    let s = Scenario::new("fault-app-crashloop-kill");
    let mut p = s.start();
    let app: i32 = s.app.wait_for("start", T).field("pid").parse().unwrap();
    kill(Pid::from_raw(app), Signal::SIGKILL).unwrap();
    assert_eq!(p.wait_exit(T).code(), Some(137));
    assert!(!s.dp.path.exists());
}

#[test]
fn an_app_that_forks_a_thousand_children_leaves_no_zombie_and_nothing_behind() {
    let dir = temp_dir("fault-fork");
    let rec = Record::new(&dir);
    let mut cmd = std::process::Command::new(meshinit_bin());
    cmd.arg("--").arg(test_app_bin()).args([
        "--record",
        rec.path_str(),
        "--orphans",
        "1000",
        "--children",
        "100",
    ]);
    let mut p = Proc::start(cmd);
    let start = rec.wait_for("start", T);
    let app: i32 = start.field("pid").parse().unwrap();
    rec.wait_for("orphans", T);
    let children: Vec<i32> = rec
        .wait_for("children", T)
        .field("pids")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 100);
    // The thousand orphans became meshinit's children and are reaped as they exit.
    let meshinit = p.pid();
    poll("no zombie left under meshinit", T, || {
        (zombies_of(meshinit) == 0).then_some(())
    });
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    for pid in &children {
        assert!(is_dead(*pid), "child {pid} outlived meshinit");
    }
    assert_eq!(
        live_in_group(app),
        Vec::<i32>::new(),
        "left in the app's group"
    );
}

#[test]
fn an_app_that_exits_leaving_children_behind_has_them_all_stopped() {
    let dir = temp_dir("fault-exit-children");
    let rec = Record::new(&dir);
    let mut cmd = std::process::Command::new(meshinit_bin());
    cmd.args(["--log-level=info", "--"])
        .arg(test_app_bin())
        .args([
            "--record",
            rec.path_str(),
            "--orphans",
            "1000",
            "--children",
            "200",
            "--exit-after",
            "500",
            "--exit-code",
            "5",
        ]);
    let mut p = Proc::start(cmd);
    let app: i32 = rec.wait_for("start", T).field("pid").parse().unwrap();
    let children: Vec<i32> = rec
        .wait_for("children", T)
        .field("pids")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(p.wait_exit(T).code(), Some(5), "{}", p.output());
    for pid in &children {
        assert!(is_dead(*pid), "child {pid} outlived meshinit");
    }
    assert_eq!(live_in_group(app), Vec::<i32>::new());
    assert!(
        p.output().contains("stopping leftover descendants"),
        "{}",
        p.output()
    );
}

#[test]
fn an_app_that_ignores_its_stop_signal_is_killed_after_the_stop_timeout() {
    let s = proxied("fault-app-ignores")
        .app(&["--on", "TERM=ignore"])
        .opt(&["--app-stop-timeout", "1s", "--app-grace-delay", "200ms"]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    send(&p, Signal::SIGTERM);
    let term = app_got(&s, "TERM");
    let (status, exited) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(137), "SIGKILLed: 128+9");
    let waited = ms(term.t_ns, exited);
    assert!(
        (950.0..4000.0).contains(&waited),
        "SIGKILL {waited:.0}ms after the stop signal (app-stop-timeout 1s)"
    );
    // kuma-dp had drained and gone before.
    let dp_exit = s.dp.find("exit").expect("kuma-dp exited");
    assert!(dp_exit.t_ns < term.t_ns, "{}", s.timeline());
    assert!(
        p.output()
            .contains("did not stop within --app-stop-timeout"),
        "{}",
        p.output()
    );
}

#[test]
fn a_burst_of_signals_keeps_meshinit_responsive_and_the_shutdown_ordered() {
    let (s, status) = proxied("fault-burst").with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let kinds = [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGWINCH, "WINCH"),
        (Signal::SIGALRM, "ALRM"),
        (Signal::SIGCONT, "CONT"),
    ];
    for i in 0..600 {
        p.signal(kinds[i % kinds.len()].0);
    }
    // Still serving its status while (or right after) the burst is processed.
    assert_eq!(get(status, "/live").map(|r| r.0), Some(200));
    // Forwarded: POSIX coalesces pending signals of one kind, so at least one of each.
    for (_, name) in kinds {
        s.app.wait_for_match("signal", |e| e.rest == name, T);
    }
    assert!(p.try_status().is_none(), "meshinit died of the burst");
    assert_eq!(status_json(status)["phase"], "running");
    // Never forwarded to kuma-dp.
    assert!(s.dp.find("signal").is_none(), "{}", s.dp.dump());

    // A SIGTERM right after still gets the full ordered sequence.
    send(&p, Signal::SIGTERM);
    let (code, _) = wait_exit_at(&mut p, T);
    assert_eq!(code.code(), Some(143));
    let dp_term = s
        .dp_signal_events()
        .into_iter()
        .find(|e| e.rest == "TERM n=1")
        .expect("kuma-dp drained");
    let dp_exit = s.dp.find("exit").expect("kuma-dp exited");
    let app_term = app_got(&s, "TERM");
    assert!(
        dp_term.t_ns < dp_exit.t_ns && dp_exit.t_ns < app_term.t_ns,
        "drain, then the app:\n{}",
        s.timeline()
    );
}

/// Issue 13: once spawned, kuma-dp may already be registered and receiving traffic, so a
/// stop while it starts drains it first; the idle drain ends that drain as soon as nothing
/// flows (here at once: its 30 s drain time is not waited for), and only then is the app
/// stopped.
#[test]
fn stop_right_when_kuma_dp_is_starting_drains_it_first_and_the_idle_drain_ends_it() {
    let s = Scenario::new("fault-stop-dp-starting")
        .listening_app()
        .opt(&[
            "--kuma-dp-arg=--drain-time=30s",
            "--drain-min",
            "200ms",
            "--drain-idle",
            "200ms",
        ]);
    let inbound = format!("127.0.0.1:21011:{}", s.app_port);
    let s = s
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "10000")
        .env("FAKE_KUMA_DP_INBOUND", &inbound);
    let mut p = s.start();
    s.dp.wait_for("start", T);
    let sent = send(&p, Signal::SIGTERM);
    let dp_term = s.dp.wait_for("signal", T);
    assert_eq!(dp_term.rest, "TERM n=1");
    assert!(ms(sent, dp_term.t_ns) < 1000.0, "{}", s.timeline());
    let app_term = app_got(&s, "TERM");
    let dp_exit = s.dp.find("exit").expect("kuma-dp exited");
    assert!(
        dp_exit.t_ns < app_term.t_ns,
        "the app was stopped while kuma-dp still drained:\n{}",
        s.timeline()
    );
    p.wait_for_line("inbound idle", T);
    let (code, exited) = wait_exit_at(&mut p, T);
    assert_eq!(code.code(), Some(143));
    assert!(ms(sent, exited) < 5000.0, "{}", s.timeline());
    assert!(s.dp.find("ready").is_none());
}

/// Issue 13: the drain of a kuma-dp that was still starting is cut short by a second stop
/// signal, as any drain is.
#[test]
fn a_second_stop_cuts_short_the_drain_of_a_starting_kuma_dp() {
    let s = proxied("fault-stop-dp-starting-twice")
        .opt(&["--kuma-dp-arg=--drain-time=30s"])
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "10000");
    let mut p = s.start();
    s.dp.wait_for("start", T);
    send(&p, Signal::SIGTERM);
    p.wait_for_line("phase draining", T);
    assert_eq!(s.dp.wait_for("signal", T).rest, "TERM n=1");
    assert!(
        s.app.find("signal").is_none(),
        "the app keeps running while kuma-dp drains"
    );
    let second = send(&p, Signal::SIGTERM);
    let app_term = app_got(&s, "TERM");
    assert!(ms(second, app_term.t_ns) < 1000.0, "{}", s.timeline());
    s.dp.wait_for_match("signal", |e| e.rest == "TERM n=2", T);
    let (code, exited) = wait_exit_at(&mut p, T);
    assert_eq!(code.code(), Some(143));
    assert!(ms(second, exited) < 3000.0, "{}", s.timeline());
}

/// Issue 13: with `--start-order proxy-first`, kuma-dp is ready (registered) when the app is
/// started; if the app cannot start, meshinit used to exit 71 at once and leave kuma-dp
/// running, registered, with its work directory. Now kuma-dp is drained and stopped, nothing
/// is left, and the exit code is the one a failed start has (127 for a vanished program).
#[test]
fn an_app_that_cannot_start_after_kuma_dp_leaves_nothing_behind() {
    let s = proxied("fault-app-cannot-start")
        .opt(&["--start-order", "proxy-first"])
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "1500");
    // The app is a copy that exists when the configuration is checked and is removed
    // while kuma-dp starts: its start fails as a missing program does.
    let app = s.dir.join("vanishing-app");
    fs::copy(test_app_bin(), &app).unwrap();
    let mut p = Proc::start(s.command_with_app(&app));
    let started = s.dp.wait_for("start", T);
    fs::remove_file(&app).unwrap();
    assert!(
        s.dp.find("ready").is_none(),
        "kuma-dp became ready before the app was removed; the test is too slow:\n{}",
        s.timeline()
    );
    let dp = dp_pid(&s);
    let work_dir = s
        .dp_argv()
        .iter()
        .find_map(|a| a.strip_prefix("--work-dir=").map(PathBuf::from))
        .expect("meshinit gives kuma-dp a work dir");
    assert!(work_dir.is_dir());
    let code = p.wait_exit(T).code();
    let out = p.output();
    // The program is gone, so its start fails as a shell's would: 127.
    assert_eq!(code, Some(127), "{out}");
    assert!(
        out.contains("cannot start the app") && out.contains("draining and stopping kuma-dp"),
        "{out}"
    );
    // kuma-dp was drained (one SIGTERM, after it was ready) and is gone.
    let ready = s.dp.find("ready").expect("kuma-dp was ready");
    let term = s.dp.wait_for("signal", T);
    assert_eq!(term.rest, "TERM n=1", "{}", s.timeline());
    assert!(started.t_ns < ready.t_ns && ready.t_ns < term.t_ns);
    assert!(s.dp.find("exit").is_some(), "{}", s.timeline());
    assert!(is_dead(dp), "kuma-dp {dp} is still running");
    assert!(!work_dir.exists(), "{} was left behind", work_dir.display());
    assert!(s.app.find("start").is_none(), "the app never ran");
}

#[test]
fn stop_during_the_grace_delay_cuts_it_short() {
    let s = proxied("fault-stop-grace").opt(&["--app-grace-delay", "30s"]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    send(&p, Signal::SIGTERM);
    p.wait_for_line("phase grace", T);
    assert!(s.app.find("signal").is_none(), "the app is still serving");
    let second = send(&p, Signal::SIGTERM);
    let term = app_got(&s, "TERM");
    assert!(ms(second, term.t_ns) < 1000.0, "{}", s.timeline());
    assert_eq!(p.wait_exit(T).code(), Some(143));
    assert!(s.dp.find("exit").unwrap().t_ns < term.t_ns);
}

/// A TCP connection that sends nothing.
fn idle_connection(port: u16) -> Option<TcpStream> {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .ok()
}

#[test]
fn status_endpoint_keeps_answering_beside_idle_connections_and_under_a_burst() {
    let (s, status) = proxied("fault-status").with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let baseline = fd_count(p.pid());

    // Dozens of clients that connect and never send a request.
    let idle: Vec<TcpStream> = (0..40).filter_map(|_| idle_connection(status)).collect();
    assert_eq!(idle.len(), 40);
    let (code, body) = get(status, "/live").expect("/live answers beside idle connections");
    assert_eq!((code, body.as_str()), (200, "live\n"));

    // A burst of concurrent requests: they are answered (idle connections make room), none
    // is queued without bound, and it answers again right after.
    let burst: Vec<_> = (0..200)
        .map(|_| thread::spawn(move || get(status, "/live").map(|r| r.0)))
        .collect();
    let answered = burst
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .filter(|c| *c == 200)
        .count();
    assert!(answered > 0, "no request of the burst was answered");
    assert_eq!(get(status, "/live").map(|r| r.0), Some(200));

    // Hundreds of idle connections: it holds at most 256 of them.
    let more: Vec<TcpStream> = (0..300).filter_map(|_| idle_connection(status)).collect();
    let held = fd_count(p.pid()).saturating_sub(baseline);
    assert!(
        held <= 256 + 8,
        "meshinit holds {held} more descriptors with {} idle connections open",
        idle.len() + more.len()
    );
    // The oldest idle ones were closed by meshinit to admit the newer: a read sees EOF or
    // a reset (held ones would time out instead).
    let closed = idle
        .iter()
        .take(20)
        .filter(|c| {
            let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
            let mut b = [0u8; 1];
            match (&mut &**c).read(&mut b) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
        })
        .count();
    assert_eq!(
        closed, 20,
        "the oldest idle connections make room for new ones"
    );

    // And the idle connections do not delay the shutdown.
    let sent = send(&p, Signal::SIGTERM);
    let (code, exited) = wait_exit_at(&mut p, T);
    assert_eq!(code.code(), Some(143));
    assert!(
        ms(sent, exited) < 3000.0,
        "exit {:.0}ms after SIGTERM with idle connections open",
        ms(sent, exited)
    );
    drop(idle);
    drop(more);
}

/// Raises this test process's open-file soft limit to at least `want` (up to the hard
/// limit); `false` when the hard limit is lower.
fn raise_fd_limit(want: u64) -> bool {
    let mut lim = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we own.
    unsafe {
        if nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return false;
        }
        if lim.rlim_cur >= want {
            return true;
        }
        if lim.rlim_max < want {
            return false;
        }
        lim.rlim_cur = want;
        nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &lim) == 0
    }
}

/// Issue 13: 64 connections that never send a request used to make `/ready` unanswerable
/// for seconds (a monitoring agent gone wrong could get the instance killed). With 1000 of
/// them held open, `/ready` still answers within 100 ms: the oldest idle connection is closed
/// to admit each new one, and meshinit itself holds no more than its cap of 256.
#[test]
fn a_thousand_idle_connections_do_not_starve_ready() {
    if !raise_fd_limit(4096) {
        skip_or_fail("the open-file hard limit is below 4096; this test holds 1000 connections");
        return;
    }
    let (s, status) = proxied("fault-status-thousand").with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let baseline = fd_count(p.pid());
    let idle: Vec<TcpStream> = (0..1000).filter_map(|_| idle_connection(status)).collect();
    assert_eq!(idle.len(), 1000, "every idle connection was accepted");
    let mut took = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let answer = get(status, "/ready");
        took.push(t0.elapsed());
        assert_eq!(
            answer,
            Some((200, "ready\n".to_string())),
            "/ready beside 1000 idle connections"
        );
    }
    took.sort();
    eprintln!("/ready beside 1000 idle connections took {took:?}");
    assert!(
        took[2].as_secs_f64() * 1000.0 < bound_ms(100.0),
        "/ready took {took:?} (median over 100 ms) beside 1000 idle connections"
    );
    let held = fd_count(p.pid()).saturating_sub(baseline);
    assert!(held <= 256 + 8, "meshinit holds {held} more descriptors");
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    drop(idle);
}

#[test]
fn a_request_sent_slowly_is_dropped_after_its_timeout_and_the_slot_freed() {
    let (s, status) = proxied("fault-status-slow")
        .opt(&["--status-request-timeout", "300ms"])
        .with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let mut slow = idle_connection(status).unwrap();
    slow.write_all(b"GET /li").unwrap();
    let t0 = Instant::now();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let held = t0.elapsed();
    // Below the 2 s default: the setting, not the default, closed it.
    assert!(
        held >= Duration::from_millis(200) && held < Duration::from_millis(1900),
        "a half-sent request was held {held:?} (300 ms request timeout)"
    );
    assert!(buf.is_empty(), "no answer to half a request");
    assert_eq!(get(status, "/live").map(|r| r.0), Some(200));
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
}

#[test]
fn a_request_whose_lines_end_in_a_bare_lf_is_answered() {
    // Issue 20, item 17: `printf 'GET /ready HTTP/1.0\n\n' | nc`, as many health checkers
    // send. The client keeps its side open (as nc does until the answer), so only the
    // empty line can tell meshinit the request is complete: it used to wait for CRLF CRLF
    // until --status-request-timeout and close without an answer.
    let (s, port) = Scenario::bare("bare-lf").with_status();
    let s = s.opt(&["--status-request-timeout", "20s"]);
    let mut p = s.start();
    poll("/ready 200", T, || {
        get(port, "/ready").filter(|r| r.0 == 200)
    });
    for request in [
        &b"GET /ready HTTP/1.0\n\n"[..],
        b"GET /ready HTTP/1.1\nHost: x\n\n",
        b"HEAD /live HTTP/1.1\r\nHost: x\n\n",
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(T)).unwrap();
        c.write_all(request).unwrap();
        let asked = Instant::now();
        let mut answer = String::new();
        c.read_to_string(&mut answer)
            .expect("an answer before the read timeout");
        assert!(
            answer.starts_with("HTTP/1.1 200 OK\r\n"),
            "{:?} got {answer:?}",
            String::from_utf8_lossy(request)
        );
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "answered only after {:?}",
            asked.elapsed()
        );
    }
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}

#[test]
fn a_rotated_token_file_is_read_by_the_restarted_kuma_dp() {
    let s = proxied("fault-token-rotation").opt(&["--proxy-restart-backoff", "100ms"]);
    let old = s.token.clone();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let first = s.dp.wait_for("token", T);
    assert_eq!(
        first.field("fnv"),
        format!("{:016x}", fnv1a64(old.as_bytes()))
    );

    // Rotate as secret managers do: write a new file beside it, rename it over.
    let new = format!("rotated-{old}-v2");
    let tmp = s.dir.join("token.new");
    fs::write(&tmp, &new).unwrap();
    fs::rename(&tmp, &s.token_file).unwrap();

    let dp = dp_pid(&s);
    kill(Pid::from_raw(dp), Signal::SIGKILL).unwrap();
    // Restarted after the (shortened) backoff, it reads the file as it is now.
    poll("a second token read", T, || {
        let tokens = s.dp.find_all("token");
        (tokens.len() >= 2).then(|| tokens[1].clone())
    });
    let tokens = s.dp.find_all("token");
    assert_eq!(
        tokens[1].field("fnv"),
        format!("{:016x}", fnv1a64(new.as_bytes())),
        "the restarted kuma-dp read the rotated token:\n{}",
        s.timeline()
    );
    p.wait_for_line("kuma-dp ready", T);
    ready_again(&p);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    let out = p.output();
    assert!(
        !out.contains(&old) && !out.contains(&new),
        "a token leaked:\n{out}"
    );
}

/// Issue 22: a kuma-dp that cannot be spawned (its binary removed after the configuration
/// was checked) is a failed start of its own: retried with backoff, then given up on (75),
/// and no ready URL is polled for a process that does not exist. It used to reach the
/// lifecycle as a made-up exit with 127 while the ready poll ran against nothing.
#[test]
fn a_kuma_dp_that_cannot_be_spawned_is_retried_and_its_ready_url_never_polled() {
    // Stands where the kuma-dp that never started would answer /ready.
    let ready = ScriptedHttp::start(|_| 200);
    let base = Scenario::bare("fault-dp-cannot-spawn");
    let dp = base.dir.join("vanishing-kuma-dp");
    fs::copy(fake_kuma_dp_bin(), &dp).unwrap();
    let mut opts = base.proxy_opts();
    let at = opts.iter().position(|o| o == "--kuma-dp").unwrap() + 1;
    opts[at] = path_str(&dp);
    let s = base
        .opt(&opts.iter().map(String::as_str).collect::<Vec<_>>())
        .opt(&[
            "--drain-until-idle=false",
            "--proxy-max-restarts",
            "1",
            "--proxy-restart-backoff",
            "200ms",
        ])
        .listening_app()
        .app(&["--listen-after", "300"])
        .env("KUMA_READINESS_PORT", &ready.port.to_string());
    let mut p = s.start();
    // Removed once the app runs, before it is healthy: kuma-dp's start then fails.
    s.app.wait_for("start", T);
    fs::remove_file(&dp).unwrap();
    let code = p.wait_exit(T).code();
    let out = p.output();
    assert_eq!(code, Some(75), "kuma-dp failed:\n{out}");
    assert_eq!(
        out.matches("cannot start kuma-dp").count(),
        2,
        "the first start and its one restart both failed:\n{out}"
    );
    assert!(out.contains("kuma-dp will be restarted"), "{out}");
    assert!(
        !out.contains("kuma-dp exited"),
        "nothing ran, nothing exited:\n{out}"
    );
    assert!(
        ready.hits().is_empty(),
        "the ready URL was polled {} times for a kuma-dp that never ran",
        ready.hits().len()
    );
    assert!(s.dp.find("start").is_none(), "kuma-dp never ran");
}

/// Issue 20, item 1: kuma-dp killed by a real-time signal was never noticed (nix's waitpid
/// fails with EINVAL for signals 34-64 after the kernel has reaped the child): `/ready`
/// stayed 200, nothing restarted it, and at stop meshinit waited out the drain timeout.
/// Now its death is reported as such (128+40 = "killed by signal 40"), it is restarted,
/// and a SIGTERM ends the run at once.
#[test]
fn kuma_dp_killed_by_a_real_time_signal_is_noticed_and_restarted() {
    let s = proxied("fault-dp-rt")
        .opt(&["--proxy-restart-backoff", "100ms", "--drain-timeout", "60s"])
        .env("FAKE_KUMA_DP_DIE_ON", "40");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let dp = dp_pid(&s);
    kill_raw(dp, 40);
    s.dp.wait_for("die", T);
    p.wait_for_line("killed by signal 40 (SIGRTMIN+6)", T);
    poll("a second kuma-dp", T, || {
        (s.dp.find_all("start").len() >= 2).then_some(())
    });
    ready_again(&p);
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    assert!(
        (now_ns() - sent) / 1_000_000 < 10_000,
        "the stop waited for a kuma-dp that was long dead:\n{}",
        s.timeline()
    );
}

/// kill(2) with a raw signal number (real-time signals have no nix::Signal).
fn kill_raw(pid: i32, signo: i32) {
    // SAFETY: kill(2) with a plain pid and signal number.
    let rc = unsafe { nix::libc::kill(pid, signo) };
    assert_eq!(rc, 0, "kill({pid}, {signo})");
}

/// Issue 20, item 5: an app and a kuma-dp stopped by job control (here SIGSTOP, as an
/// operator or a debugger would) used to be sent their stop signal only: kuma-dp never
/// drained (SIGKILL after the drain timeout) and the app was SIGKILLed after its stop
/// timeout (137). Each stop signal is now followed by SIGCONT, as systemd does: kuma-dp
/// drains and exits on its own, the app dies of its TERM (143), well before either timeout.
#[test]
fn a_stopped_app_and_kuma_dp_are_continued_after_their_stop_signal() {
    let s = proxied("fault-stopped").opt(&["--drain-timeout", "8s", "--app-stop-timeout", "8s"]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let dp = dp_pid(&s);
    let app: i32 = s.app.wait_for("start", T).field("pid").parse().unwrap();
    for pid in [dp, app] {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    }
    poll("both stopped", T, || {
        [dp, app]
            .iter()
            .all(|pid| stat(*pid).is_some_and(|s| s.state == 'T'))
            .then_some(())
    });
    let sent = send(&p, Signal::SIGTERM);
    let (status, _) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(143), "{}", p.output());
    assert!(
        (now_ns() - sent) / 1_000_000 < 7_000,
        "waited for a timeout:\n{}",
        s.timeline()
    );
    let exit = s.dp.wait_for("exit", T);
    assert_eq!(exit.field("reason"), "drained", "{}", s.timeline());
}

/// Issue 20, item 4: meshinit SIGKILLed (not PID 1) left the app and kuma-dp running,
/// kuma-dp undrained and still registered, its work directory behind. Now the kernel
/// tells both (PR_SET_PDEATHSIG): the app gets its stop signal and exits, kuma-dp gets
/// SIGTERM and runs its own drain to the end; and the next meshinit removes the work
/// directory the dead one made (and only that one).
#[test]
fn sigkill_of_meshinit_stops_the_app_and_drains_kuma_dp_and_the_next_start_cleans_up() {
    let s = proxied("fault-sigkill");
    let tmp = s.dir.join("tmp");
    fs::create_dir(&tmp).unwrap();
    let s = s.env("TMPDIR", &path_str(&tmp));
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let dp = dp_pid(&s);
    let app: i32 = s.app.wait_for("start", T).field("pid").parse().unwrap();
    let work_dir = s
        .dp_argv()
        .iter()
        .find_map(|a| a.strip_prefix("--work-dir=").map(PathBuf::from))
        .expect("meshinit gave kuma-dp a work dir");
    assert!(work_dir.starts_with(&tmp), "{}", work_dir.display());
    // A directory of the same name pattern that meshinit did not make stays.
    let planted = tmp.join("meshinit-kuma-dp-1-planted");
    fs::create_dir(&planted).unwrap();

    p.signal(Signal::SIGKILL);
    p.wait_exit(T);
    app_got(&s, "TERM");
    let exit = s.dp.wait_for("exit", T);
    assert_eq!(exit.field("reason"), "drained", "{}", s.timeline());
    assert!(s.dp.find("draining").is_some(), "{}", s.timeline());
    poll("the app and kuma-dp gone", T, || {
        (is_dead(app) && is_dead(dp)).then_some(())
    });
    assert!(
        work_dir.is_dir(),
        "a SIGKILLed meshinit cannot clean up itself"
    );

    let mut next = s.start();
    let line = next.wait_for_line("removed kuma-dp's work directory", T);
    assert!(line.contains(&path_str(&work_dir)), "{line}");
    assert!(!work_dir.exists(), "{}", work_dir.display());
    assert!(
        planted.is_dir(),
        "a directory meshinit did not make was removed"
    );
    next.wait_for_line("service running and ready", T);
    next.signal(Signal::SIGTERM);
    assert_eq!(next.wait_exit(T).code(), Some(143), "{}", next.output());
}

/// Waits for the second "service running and ready": kuma-dp is back.
fn ready_again(p: &Proc) {
    poll("ready again", T, || {
        p.lines()
            .iter()
            .filter(|l| l.contains("service running and ready"))
            .nth(1)
            .cloned()
    });
}
