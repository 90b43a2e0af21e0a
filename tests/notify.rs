//! systemd's notify protocol, against a real notify socket opened by the test: the order of
//! the messages and their timing relative to the app's health, kuma-dp's readiness and the
//! stop signal, as a `Type=notify` unit with `WatchdogSec=` would see them.
//!
//! Times compared here are CLOCK_MONOTONIC: the test programs stamp their record lines with
//! it, and the socket reader stamps each datagram when it arrives (after meshinit sent it).

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(15);

/// One datagram received on the notify socket.
#[derive(Clone, Debug)]
struct Msg {
    /// CLOCK_MONOTONIC arrival time.
    t_ns: u64,
    /// The datagram, newline-separated `KEY=VALUE` assignments.
    text: String,
}

impl Msg {
    /// The value of `key` in this datagram.
    fn get(&self, key: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A notify socket like systemd's: datagrams are collected by a thread until drop.
struct NotifySocket {
    /// The NOTIFY_SOCKET value to give meshinit.
    env_value: String,
    msgs: Arc<(Mutex<Vec<Msg>>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl NotifySocket {
    /// Binds a socket at `dir/notify.sock`.
    fn at_path(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        Self::serve(sock, path.to_str().unwrap().to_string())
    }

    /// Binds a socket in the abstract namespace (`NOTIFY_SOCKET=@name`).
    fn abstract_name() -> NotifySocket {
        let name = format!("meshinit-notify-test-{}-{}", std::process::id(), now_ns());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        Self::serve(sock, format!("@{name}"))
    }

    fn serve(sock: UnixDatagram, env_value: String) -> NotifySocket {
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let msgs: Arc<(Mutex<Vec<Msg>>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (msgs.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = Msg {
                        t_ns: now_ns(),
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    };
                    eprintln!("[notify] {:?}", msg.text);
                    m.0.lock().unwrap().push(msg);
                    m.1.notify_all();
                }
            }
        });
        NotifySocket {
            env_value,
            msgs,
            stop,
        }
    }

    fn all(&self) -> Vec<Msg> {
        self.msgs.0.lock().unwrap().clone()
    }

    /// Waits for the first datagram that has `key=value` (any value when `value` is None).
    fn wait_for(&self, key: &str, value: Option<&str>, timeout: Duration) -> Msg {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.msgs;
        let mut msgs = lock.lock().unwrap();
        loop {
            if let Some(m) = msgs
                .iter()
                .find(|m| m.get(key).is_some_and(|v| value.is_none_or(|w| v == w)))
            {
                return m.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("no {key}={value:?} on the notify socket after {timeout:?}; got {msgs:#?}");
            }
            msgs = cond.wait_timeout(msgs, deadline - now).unwrap().0;
        }
    }

    /// Waits until `n` datagrams with `key` arrived; returns them all.
    fn wait_count(&self, key: &str, n: usize, timeout: Duration) -> Vec<Msg> {
        let with_key = || -> Vec<Msg> {
            self.all()
                .into_iter()
                .filter(|m| m.get(key).is_some())
                .collect()
        };
        poll_for(timeout, || Some(with_key()).filter(|got| got.len() >= n))
            .unwrap_or_else(|| panic!("only {} {key} messages after {timeout:?}", with_key().len()))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The STATUS= values in order, repeats folded (READY=1 repeats STATUS=running).
fn statuses(msgs: &[Msg]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in msgs.iter().filter_map(|m| m.get("STATUS")) {
        if out.last().map(String::as_str) != Some(s) {
            out.push(s.to_string());
        }
    }
    out
}

/// Asserts that neither the notify variables nor the watchdog ones reached `pid`'s
/// environment, while `marker` (set on meshinit) did: so the right environ was read.
fn assert_env_scrubbed(pid: &str, marker: &str) {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let vars: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        vars.iter().any(|v| v == marker),
        "pid {pid} lacks {marker}: {vars:?}"
    );
    for key in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(
            !vars.iter().any(|v| v.starts_with(key)),
            "pid {pid} inherited {key}: {vars:?}"
        );
    }
}

const MARKER: &str = "MESHINIT_NOTIFY_TEST_MARKER=1";

fn meshinit(sock: &NotifySocket) -> Command {
    let mut cmd = Command::new(meshinit_bin());
    cmd.env("NOTIFY_SOCKET", &sock.env_value)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env("MESHINIT_NOTIFY_TEST_MARKER", "1");
    cmd
}

/// Plain mode: READY=1 once the app is healthy, then STOPPING=1 and the phases. With
/// `--app-stop-timeout` given, each shutdown STATUS= carries EXTEND_TIMEOUT_USEC (meshinit
/// bounds the stop); without it a plain init waits for its app after a stop signal, as
/// tini does, and leaves the killing to systemd's TimeoutStopSec: no extension (issue 20,
/// item 18).
#[test]
fn plain_mode_ready_after_healthy_then_stopping_with_extend_timeout() {
    plain_mode_run(true);
}

#[test]
fn plain_mode_without_a_stop_timeout_leaves_the_stop_timeout_to_systemd() {
    plain_mode_run(false);
}

fn plain_mode_run(stop_timeout_given: bool) {
    let dir = temp_dir("notify-plain");
    let sock = NotifySocket::at_path(&dir);
    let rec = Record::new(&dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = meshinit(&sock);
    cmd.args(["--probe-http", &format!("http://{addr}/")]);
    if stop_timeout_given {
        cmd.args(["--app-stop-timeout", "10s"]);
    }
    cmd.arg("--")
        .arg(test_app_bin())
        .args(["--record", rec.path_str(), "--listen", &addr])
        .args(["--listen-after", "400"]);
    let mut mi = Proc::start(cmd);

    let ready = sock.wait_for("READY", Some("1"), T);
    let listening = rec.find("listening").expect("app listening before READY=1");
    assert!(
        listening.t_ns < ready.t_ns,
        "READY=1 came before the app answered"
    );
    let late_ms = (ready.t_ns - listening.t_ns) / 1_000_000;
    assert!(
        late_ms < 2000,
        "READY=1 {late_ms} ms after the app listened"
    );
    let before: Vec<Msg> = sock
        .all()
        .into_iter()
        .filter(|m| m.t_ns <= ready.t_ns)
        .collect();
    assert_eq!(statuses(&before), ["probing", "running"]);
    assert!(sock.all().iter().all(|m| m.get("WATCHDOG").is_none()));

    let app_pid = rec.wait_for("start", T).field("pid").to_string();
    assert_env_scrubbed(&app_pid, MARKER);

    let term_at = now_ns();
    mi.signal(Signal::SIGTERM);
    let status = mi.wait_exit(T);
    // The last datagrams may still be queued on the socket when meshinit has exited.
    sock.wait_for("STATUS", Some("done"), T);
    assert_eq!(status.code(), Some(143), "app died of SIGTERM: {status:?}");

    let all = sock.all();
    let after: Vec<Msg> = all.iter().filter(|m| m.t_ns >= term_at).cloned().collect();
    assert_eq!(
        all.iter().filter(|m| m.text.contains("READY=1")).count(),
        1,
        "READY=1 once: {all:#?}"
    );
    assert_eq!(
        after.first().map(|m| m.text.as_str()),
        Some("STOPPING=1"),
        "STOPPING=1 first after the stop signal: {all:#?}"
    );
    assert_eq!(
        all.iter().filter(|m| m.text == "STOPPING=1").count(),
        1,
        "{all:#?}"
    );
    // Plain mode: no proxy to drain, straight to stopping the app.
    assert_eq!(statuses(&after), ["stopping", "cleanup", "done"]);
    if stop_timeout_given {
        // Without a proxy: app-stop-timeout 10s + 2s clean-up + 1s give-up.
        check_extend_timeouts(&after, Duration::from_secs(13));
    } else {
        assert!(
            after.iter().all(|m| m.get("EXTEND_TIMEOUT_USEC").is_none()),
            "{after:#?}"
        );
    }
}

/// Every shutdown STATUS= carries EXTEND_TIMEOUT_USEC, at most the worst case plus meshinit's
/// 1 s margin, never growing, and the first one close to that (the shutdown just began).
fn check_extend_timeouts(after_stop: &[Msg], worst: Duration) {
    let max = (worst + Duration::from_secs(1)).as_micros() as u64;
    let mut last = u64::MAX;
    let mut seen = 0;
    for m in after_stop.iter().filter(|m| m.get("STATUS").is_some()) {
        let usec: u64 = m
            .get("EXTEND_TIMEOUT_USEC")
            .unwrap_or_else(|| panic!("shutdown STATUS without EXTEND_TIMEOUT_USEC: {m:?}"))
            .parse()
            .expect("EXTEND_TIMEOUT_USEC is a number");
        assert!(
            usec <= max && usec <= last,
            "{usec} µs after {last} µs (max {max})"
        );
        if seen == 0 {
            assert!(
                usec > max - 2_000_000,
                "first extension {usec} µs, worst case {max} µs"
            );
        }
        last = usec;
        seen += 1;
    }
    assert!(seen > 0, "no shutdown STATUS: {after_stop:#?}");
}

/// A Dataplane template with one inbound in front of `{{ app_port }}`, and
/// a token file as kuma-dp wants it (0600), in `dir`.
fn dataplane_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dp_file = dir.join("dp.yaml");
    std::fs::write(
        &dp_file,
        "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: 127.0.0.1\n  \
         inbound:\n  - port: 15001\n    servicePort: {{ app_port }}\n    tags:\n      \
         kuma.io/service: backend\n",
    )
    .unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "not-a-real-token").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (dp_file, token)
}

#[test]
fn proxy_mode_ready_only_once_kuma_dp_is_ready() {
    let dir = temp_dir("notify-proxy");
    let sock = NotifySocket::at_path(&dir);
    let app_rec = Record::new(&dir);
    let dp_rec = Record::new(&dir);
    let app_port = free_port();
    let ready_port = free_port();
    let (dp_file, token) = dataplane_files(&dir);

    let mut cmd = meshinit(&sock);
    cmd.env("KUMA_READINESS_PORT", ready_port.to_string())
        .env("FAKE_KUMA_DP_RECORD", &dp_rec.path)
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "600")
        .arg("--kuma-dp")
        .arg(fake_kuma_dp_bin())
        .args(["--cp-address", "https://127.0.0.1:5678"])
        .arg("--dataplane-file")
        .arg(&dp_file)
        .args(["--dataplane-var", "name=backend-1"])
        .args(["--dataplane-var", &format!("app_port={app_port}")])
        .arg("--dataplane-token-file")
        .arg(&token)
        .arg("--kuma-dp-arg=--drain-time=300ms")
        .args(["--probe-http", &format!("http://127.0.0.1:{app_port}/")])
        .arg("--")
        .arg(test_app_bin())
        .args(["--record", app_rec.path_str()])
        .args(["--listen", &format!("127.0.0.1:{app_port}")])
        .args(["--listen-after", "200"]);
    let mut mi = Proc::start(cmd);

    let ready = sock.wait_for("READY", Some("1"), T);
    let listening = app_rec.find("listening").expect("app listening");
    let dp_ready = dp_rec.find("ready").expect("kuma-dp ready before READY=1");
    assert!(
        listening.t_ns < dp_ready.t_ns,
        "kuma-dp ready before the app"
    );
    assert!(
        dp_ready.t_ns < ready.t_ns,
        "READY=1 before kuma-dp's /ready turned 200"
    );
    let late_ms = (ready.t_ns - dp_ready.t_ns) / 1_000_000;
    assert!(
        late_ms < 2000,
        "READY=1 {late_ms} ms after kuma-dp was ready"
    );
    let before: Vec<Msg> = sock
        .all()
        .into_iter()
        .filter(|m| m.t_ns <= ready.t_ns)
        .collect();
    assert_eq!(statuses(&before), ["probing", "proxy-starting", "running"]);
    // proxy-starting is announced when the app is healthy, before kuma-dp is ready.
    let proxy_starting = before
        .iter()
        .find(|m| m.get("STATUS") == Some("proxy-starting"))
        .unwrap();
    assert!(listening.t_ns < proxy_starting.t_ns && proxy_starting.t_ns < dp_ready.t_ns);

    assert_env_scrubbed(app_rec.find("start").unwrap().field("pid"), MARKER);
    assert_env_scrubbed(dp_rec.find("start").unwrap().field("pid"), MARKER);

    let term_at = now_ns();
    mi.signal(Signal::SIGTERM);
    let status = mi.wait_exit(T);
    // The last datagrams may still be queued on the socket when meshinit has exited.
    sock.wait_for("STATUS", Some("done"), T);
    assert_eq!(status.code(), Some(143), "{status:?}");

    let after: Vec<Msg> = sock
        .all()
        .into_iter()
        .filter(|m| m.t_ns >= term_at)
        .collect();
    assert_eq!(after[0].text, "STOPPING=1", "{after:#?}");
    assert_eq!(
        statuses(&after),
        ["draining", "stopping", "cleanup", "done"]
    );
    // Default worst case with a proxy: drain-timeout 40s + 1s to SIGKILL kuma-dp + grace 0s +
    // app-stop-timeout 10s + 2s clean-up + 1s give-up.
    check_extend_timeouts(&after, Duration::from_secs(54));
    // The drain really happened while systemd was told to wait: kuma-dp drained its 300 ms
    // after STATUS=draining, and the app was stopped only after that.
    let draining = after
        .iter()
        .find(|m| m.get("STATUS") == Some("draining"))
        .unwrap();
    let stopping = after
        .iter()
        .find(|m| m.get("STATUS") == Some("stopping"))
        .unwrap();
    let dp_exit = dp_rec.find("exit").expect("kuma-dp exited");
    assert_eq!(dp_exit.field("reason"), "drained");
    assert!(draining.t_ns < dp_exit.t_ns && dp_exit.t_ns < stopping.t_ns + 50_000_000);
}

#[test]
fn watchdog_pings_at_half_of_watchdog_usec() {
    let dir = temp_dir("notify-watchdog");
    let sock = NotifySocket::at_path(&dir);
    let rec = Record::new(&dir);
    let mut cmd = meshinit(&sock);
    cmd.env("WATCHDOG_USEC", "200000")
        .arg("--")
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    let mi = Proc::start(cmd);

    let pings = sock.wait_count("WATCHDOG", 11, T);
    let in_order: Vec<u64> = pings
        .windows(2)
        .map(|w| (w[1].t_ns - w[0].t_ns) / 1_000_000)
        .collect();
    let mut gaps_ms = in_order.clone();
    gaps_ms.sort_unstable();
    let median = gaps_ms[gaps_ms.len() / 2];
    let mean = (pings.last().unwrap().t_ns - pings[0].t_ns) / 1_000_000 / gaps_ms.len() as u64;
    // 100 ms expected. The gaps are measured where the test receives the pings, so one late
    // reception (a busy machine) shows as a long gap and a short one: judge the median and
    // the mean, and only require that no ping was skipped altogether.
    assert!(
        (85..=160).contains(&median) && (85..=160).contains(&mean),
        "median {median} ms, mean {mean} ms: {in_order:?}"
    );
    assert!(gaps_ms[0] >= 50, "pings too close together: {in_order:?}");
    assert!(
        *gaps_ms.last().unwrap() < 300,
        "a ping was skipped: {in_order:?}"
    );
    assert_env_scrubbed(rec.wait_for("start", T).field("pid"), MARKER);

    // Pings go on during a shutdown: here the app ignores SIGTERM for a while.
    drop(mi);
    let dir = temp_dir("notify-watchdog-stop");
    let sock = NotifySocket::at_path(&dir);
    let rec = Record::new(&dir);
    let mut cmd = meshinit(&sock);
    cmd.env("WATCHDOG_USEC", "200000")
        .arg("--")
        .arg(test_app_bin())
        .args(["--record", rec.path_str(), "--on", "TERM=exit-after:600:0"]);
    let mut mi = Proc::start(cmd);
    sock.wait_for("READY", Some("1"), T);
    // Without probes READY=1 follows the spawn: wait until the app handles its signals.
    rec.wait_for("start", T);
    let term_at = now_ns();
    mi.signal(Signal::SIGTERM);
    assert_eq!(mi.wait_exit(T).code(), Some(0));
    let during: Vec<Msg> = sock
        .all()
        .into_iter()
        .filter(|m| m.t_ns > term_at && m.get("WATCHDOG").is_some())
        .collect();
    assert!(
        during.len() >= 3,
        "{} pings in a 600 ms shutdown",
        during.len()
    );
}

#[test]
fn no_watchdog_when_watchdog_pid_names_another_process() {
    let dir = temp_dir("notify-watchdog-pid");
    let sock = NotifySocket::at_path(&dir);
    let mut cmd = meshinit(&sock);
    cmd.env("WATCHDOG_USEC", "100000")
        .env("WATCHDOG_PID", "1")
        .arg("--")
        .arg(test_app_bin());
    let mut mi = Proc::start(cmd);
    let ready = sock.wait_for("READY", Some("1"), T);
    // Waiting for an absence needs a window: ten watchdog half-intervals.
    let until = ready.t_ns + 500_000_000;
    while now_ns() < until {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sock.all().iter().all(|m| m.get("WATCHDOG").is_none()),
        "{:#?}",
        sock.all()
    );
    mi.signal(Signal::SIGTERM);
    mi.wait_exit(T);
}

#[test]
fn abstract_notify_socket() {
    let sock = NotifySocket::abstract_name();
    let mut cmd = meshinit(&sock);
    cmd.arg("--")
        .arg(test_app_bin())
        .args(["--exit-after", "300"]);
    let mut mi = Proc::start(cmd);
    sock.wait_for("READY", Some("1"), T);
    assert_eq!(mi.wait_exit(T).code(), Some(0));
    // The app ended on its own: still a stop, announced as such.
    sock.wait_for("STOPPING", Some("1"), T);
}

/// The value of `name` in meshinit's `/metrics`, when it answers within 2 s.
fn metric(status_port: u16, name: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{status_port}/metrics");
    let (_, body) = http_get(&url, Duration::from_secs(2))?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Issue 20, item 3: a service manager that stops reading its notify socket (its queue
/// full) must never block meshinit. With the watchdog asking for a ping every 10 ms the
/// queue fills within a fraction of a second; from then on each message is dropped and
/// counted, while `/ready` keeps answering and SIGTERM still stops meshinit at once. (A
/// blocking send stalled the event loop there: `/metrics` and `/ready` went unanswered
/// and SIGTERM did nothing.)
#[test]
fn a_notify_socket_nobody_reads_never_blocks_meshinit() {
    let dir = temp_dir("notify-stuck");
    let path = dir.join("notify.sock");
    // Bound and never read.
    let _stuck = UnixDatagram::bind(&path).expect("bind notify socket");
    let status_port = free_port();
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "20000")
        .env_remove("WATCHDOG_PID")
        .args(["--status-listen", &format!("127.0.0.1:{status_port}")])
        .arg("--")
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    let mut mi = Proc::start(cmd);
    rec.wait_for("start", T);

    // Drops happen only once the queue (net.unix.max_dgram_qlen: 10 by default, 512 on
    // some hosts) is full, so 100 of them mean meshinit kept sending into a full queue.
    let read = || metric(status_port, "meshinit_notify_dropped_total");
    let Some(dropped) = poll_for(T, || read().filter(|n| *n >= 100.0)) else {
        panic!(
            "no 100 dropped sd_notify messages after {T:?} (last /metrics read: {:?}); output:\n{}",
            read(),
            mi.output()
        );
    };
    assert!(dropped >= 100.0);
    mi.wait_for_line("does not take sd_notify messages", T);
    for _ in 0..10 {
        let url = format!("http://127.0.0.1:{status_port}/ready");
        let answer = http_get(&url, Duration::from_secs(2));
        assert_eq!(answer.map(|a| a.0), Some(200), "/ready answers");
    }
    let sent = Instant::now();
    mi.signal(Signal::SIGTERM);
    let status = mi.wait_exit(T);
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(143), "the app's TERM");
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM took {took:?} to stop meshinit"
    );
}

/// Issue 23: systemd's `Status:` says when the instance is out of the mesh and why, and
/// `running` again once it is back (here an operator's `meshinit ctl out` / `in`).
#[test]
fn status_says_out_of_the_mesh_and_why() {
    let dir = temp_dir("notify-membership");
    let sock = NotifySocket::at_path(&dir);
    let app_rec = Record::new(&dir);
    let dp_rec = Record::new(&dir);
    let app_port = free_port();
    let (dp_file, token) = dataplane_files(&dir);
    let ctl_sock = dir.join("ctl.sock");
    let mut cmd = meshinit(&sock);
    cmd.env("KUMA_READINESS_PORT", free_port().to_string())
        .env("FAKE_KUMA_DP_RECORD", &dp_rec.path)
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .arg("--kuma-dp")
        .arg(fake_kuma_dp_bin())
        .args(["--cp-address", "https://127.0.0.1:5678"])
        .arg("--dataplane-file")
        .arg(&dp_file)
        .args(["--dataplane-var", "name=backend-1"])
        .args(["--dataplane-var", &format!("app_port={app_port}")])
        .arg("--dataplane-token-file")
        .arg(&token)
        .arg("--kuma-dp-arg=--drain-time=100ms")
        .arg("--control-socket")
        .arg(&ctl_sock)
        .args(["--probe-tcp", &format!("127.0.0.1:{app_port}")])
        .arg("--")
        .arg(test_app_bin())
        .args(["--record", app_rec.path_str()])
        .args(["--listen", &format!("127.0.0.1:{app_port}")]);
    let mut mi = Proc::start(cmd);
    sock.wait_for("READY", Some("1"), T);
    let ctl = |what: &[&str]| {
        let out = Command::new(meshinit_bin())
            .arg("ctl")
            .arg("--control-socket")
            .arg(&ctl_sock)
            .args(what)
            .output()
            .expect("meshinit ctl");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    };
    ctl(&["out", "--no-wait"]);
    sock.wait_for("STATUS", Some("running (out of the mesh: operator)"), T);
    let out_at = now_ns();
    ctl(&["in"]);
    poll_for(T, || {
        sock.all()
            .iter()
            .any(|m| m.t_ns > out_at && m.get("STATUS") == Some("running"))
            .then_some(())
    })
    .expect("STATUS=running once back in the mesh");
    mi.signal(Signal::SIGTERM);
    assert_eq!(mi.wait_exit(T).code(), Some(143));
}
