//! Health probes gate kuma-dp (issue 3): the real `meshinit` binary with the scriptable
//! test app and `fake-kuma-dp`, asserting what a user would notice: the exact kuma-dp
//! command line and environment, that kuma-dp starts only once the app is healthy (from
//! CLOCK_MONOTONIC timestamps the programs record), every probe kind against listeners the
//! test controls, crashes and restarts, and bad input that starts nothing.
//!
//! Timing bounds are generous (CI runs on 2 busy cores); ordering assertions are strict.

mod common;
mod scenario;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use scenario::*;

/// Upper bound for any single wait; tests normally finish long before.
const T: Duration = Duration::from_secs(15);

/// Stops a running meshinit with SIGTERM and gives its exit code.
fn stop(p: &mut Proc) -> i32 {
    p.signal(Signal::SIGTERM);
    p.wait_exit(T).code().expect("meshinit exits with a code")
}

#[test]
fn kuma_dp_gets_the_exact_argv_and_inherits_kuma_env() {
    let s = Scenario::new("argv")
        .listening_app()
        .opt(&[
            "--kuma-dp-arg=--drain-time=100ms",
            // Values that start with `--` are taken verbatim, in the separate form too.
            "--kuma-dp-arg",
            "--dns-enabled=false",
            "--kuma-dp-arg",
            "--concurrency=2",
        ])
        .env("KUMA_DATAPLANE_RUNTIME_BINARY_PATH", "/opt/envoy/bin/envoy")
        .env("KUMA_DNS_ENABLED", "false");
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);

    assert_eq!(
        argv_without_work_dir(&s),
        [
            "run".to_string(),
            format!("--cp-address={CP}"),
            format!("--dataplane-file={}", s.dp_file.display()),
            "--dataplane-var".into(),
            "name=web-1".into(),
            "--dataplane-var".into(),
            format!("port={}", s.app_port),
            format!("--dataplane-token-file={}", s.token_file.display()),
            "--drain-time=100ms".into(),
            "--dns-enabled=false".into(),
            "--concurrency=2".into(),
        ],
        "the template is passed as written, vars and extra args in order"
    );
    let env: Vec<String> = s.dp.find_all("env").into_iter().map(|e| e.rest).collect();
    for want in [
        format!("KUMA_READINESS_PORT={}", s.ready_port),
        "KUMA_DATAPLANE_RUNTIME_BINARY_PATH=/opt/envoy/bin/envoy".into(),
        "KUMA_DNS_ENABLED=false".into(),
    ] {
        assert!(env.contains(&want), "kuma-dp env lacks {want}: {env:?}");
    }
    assert_eq!(
        s.dp.find("token").expect("token read").field("fnv"),
        format!("{:016x}", fnv1a64(s.token.as_bytes())),
        "kuma-dp read our token file"
    );
    let dp_start = s.dp.find("start").unwrap();
    assert_eq!(dp_start.field("ppid"), p.pid().to_string());
    assert_eq!(
        dp_start.field("pgid"),
        dp_start.field("pid"),
        "kuma-dp runs in its own process group"
    );
    let app_start = s.app.find("start").unwrap();
    assert_ne!(app_start.field("pgid"), dp_start.field("pgid"));

    assert_eq!(stop(&mut p), 143);
    assert!(!p.output().contains(&s.token), "token leaked in the log");
    assert!(!s.dp.dump().contains(&s.token));
}

#[test]
fn app_healthy_strictly_before_kuma_dp_starts_and_within_a_second() {
    // Default settings: no probe given, so the first inbound's servicePort is probed.
    let s = Scenario::new("order")
        .listening_app()
        .app(&["--listen-after", "500"]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);

    let app_start = s.app.find("start").unwrap();
    let listening = s.app.find("listening").unwrap();
    let dp_start = s.dp.find("start").unwrap();
    assert!(
        listening.t_ns < dp_start.t_ns,
        "kuma-dp started before the app listened:\n{}",
        s.timeline()
    );
    assert!(ms(app_start.t_ns, dp_start.t_ns) >= 500.0);
    let lag = ms(listening.t_ns, dp_start.t_ns);
    assert!(
        lag < bound_ms(1000.0),
        "kuma-dp started {lag:.0}ms after the app listened (issue: within 1 s)"
    );
    assert!(line_index(&p, "app healthy") < line_index(&p, "kuma-dp started"));
    assert!(line_index(&p, "kuma-dp started") < line_index(&p, "kuma-dp ready"));
    let ready = p.wait_for_line("kuma-dp ready", T);
    assert!(ready.contains("since_app_healthy="), "{ready}");
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn http_probe_needs_consecutive_2xx_or_3xx_answers() {
    // Request n (from 0) gets: 503 200 204 500 302 200 200 ...; with a success threshold
    // of 3 the first run of three passing answers ends at request 6 (302, 200, 200). A
    // lower threshold starts kuma-dp before request 6 was answered; a higher one only
    // once a later scheduled request passed, a startup period (500 ms) after request 6 at
    // the earliest: both fail below. (Once the probe passes meshinit probes again at once,
    // so request 7 may come before kuma-dp records its start: it is not a scheduled one.)
    let script = [503, 200, 204, 500, 302, 200];
    let server = ScriptedHttp::start(move |n| script.get(n).copied().unwrap_or(200));
    let url = format!("http://127.0.0.1:{}/healthz", server.port);
    let s = Scenario::new("http").opt(&[
        "--probe-http",
        &url,
        "--probe-success-threshold",
        "3",
        "--probe-startup-period",
        "500ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("kuma-dp started", T);

    let dp_start = s.dp.wait_for("start", T);
    let hits = server.hits();
    let sixth = hits
        .iter()
        .find(|h| h.0 == 6)
        .unwrap_or_else(|| panic!("kuma-dp started before request 6: {hits:?}"));
    let after = ms(sixth.1, dp_start.t_ns);
    assert!(
        (0.0..500.0).contains(&after),
        "kuma-dp started {after:.0}ms after request 6, not before the next scheduled one: {hits:?}"
    );
    p.wait_for_line(&format!("probe passing probe=http GET {url}"), T);
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn tcp_probe_passes_once_the_port_accepts() {
    let port = free_port();
    let s = Scenario::new("tcp").opt(&[
        "--probe-tcp",
        &format!("127.0.0.1:{port}"),
        "--log-level",
        "debug",
    ]);
    let mut p = s.start();
    // The probe has been refused at least once before the test opens the port.
    let refused = p.wait_for_line("ok=false", T);
    assert!(
        refused.contains(&format!("tcp 127.0.0.1:{port}")),
        "{refused}"
    );
    let opened = now_ns();
    let _listener = TcpListener::bind(("127.0.0.1", port)).expect("bind probe port");
    let dp_start = s.dp.wait_for("start", T);
    assert!(
        opened < dp_start.t_ns,
        "kuma-dp started before the port accepted"
    );
    assert!(ms(opened, dp_start.t_ns) < 1000.0);
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn exec_probe_gates_too_and_all_probes_must_pass() {
    let s = Scenario::new("exec").listening_app();
    let flag = s.dir.join("healthy.flag");
    let cmd = format!("echo exec-probe-says-hi; test -e '{}'", flag.display());
    let addr = s.app_addr();
    let s = s.opt(&[
        "--probe-tcp",
        &addr,
        "--probe-exec",
        &cmd,
        "--log-level",
        "debug",
    ]);
    let mut p = s.start();
    // The TCP probe passes, the command's output is logged at debug, and still nothing
    // starts: every probe must pass.
    p.wait_for_line(&format!("probe passing probe=tcp {addr}"), T);
    let out = p.wait_for_line("exec-probe-says-hi", T);
    assert!(out.contains("DEBUG"), "{out}");
    assert!(s.dp.find("start").is_none(), "kuma-dp started too early");
    let flagged = now_ns();
    fs::write(&flag, "").unwrap();
    let dp_start = s.dp.wait_for("start", T);
    assert!(flagged < dp_start.t_ns);
    assert!(ms(flagged, dp_start.t_ns) < 1000.0);
    assert_eq!(stop(&mut p), 143);
}

/// meshinit in plain mode with `--probe-exec CMD` and a status endpoint, running the test
/// app: (meshinit, status port).
fn exec_probed(cmd: &str, extra: &[&str]) -> (Proc, u16, TempDir) {
    let dir = temp_dir("exec-probe");
    let rec = Record::new(&dir);
    let port = free_port();
    let mut c = Command::new(meshinit_bin());
    c.env_remove("RUST_LOG")
        .args(["--status-listen", &format!("127.0.0.1:{port}")])
        .args(["--probe-exec", cmd])
        .args(extra)
        .arg("--")
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    (Proc::start(c), port, dir)
}

#[test]
fn an_exec_probe_that_leaves_a_background_child_passes_at_its_exit() {
    // Issue 20, item 10: the background sleep holds the output pipe for 30 s; the probe
    // is over when the command exits (status from the reaper), with its output read.
    let (mut p, port, _dir) = exec_probed(
        "echo bg-probe-says-hi; sleep 30.0123 & exit 0",
        &["--log-level", "debug"],
    );
    let passing = p.wait_for_line("probe passing", T);
    assert!(passing.contains("result=exit 0"), "{passing}");
    let out = p.wait_for_line("bg-probe-says-hi", T);
    assert!(out.contains("probe output"), "{out}");
    assert!(!p.output().contains("killed after"), "{}", p.output());
    let ready = http_get(
        &format!("http://127.0.0.1:{port}/ready"),
        Duration::from_secs(2),
    );
    assert_eq!(ready.map(|r| r.0), Some(200));
    assert!(
        processes_with_arg("30.0123") >= 1,
        "the background child runs on"
    );
    assert_eq!(stop(&mut p), 143);
    // The background children were cleaned up with the rest.
    poll("the probe's background sleeps to be gone", T, || {
        (processes_with_arg("30.0123") == 0).then_some(())
    });
}

/// What a probe prints to forge a log line and recolour the terminal.
const FORGERY: &str = "printf 'real\\n2026-01-01T00:00:00.000000Z  INFO forged line\\033[2J'";

#[test]
fn exec_probe_output_cannot_forge_log_lines() {
    // Issue 20, item 11: in text logs the command's newlines and escape sequences are
    // escaped, so its words stay inside one line of meshinit's.
    let (mut p, _, _dir) = exec_probed(FORGERY, &["--log-level", "debug"]);
    let line = p.wait_for_line("probe output", T);
    assert!(
        line.contains("output=real\\n2026-01-01T00:00:00.000000Z  INFO forged line\\u{1b}[2J"),
        "{line}"
    );
    let out = p.output();
    assert!(
        !out.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00.000000Z")),
        "a forged line: {out}"
    );
    assert!(!out.contains('\x1b'), "a raw escape sequence: {out:?}");
    assert_eq!(stop(&mut p), 143);

    // JSON logs carry the output as it is: their encoder escapes it, once.
    let (mut p, _, _dir) = exec_probed(FORGERY, &["--log-level", "debug", "--log-format", "json"]);
    let line = p.wait_for_line("probe output", T);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(
        v["output"],
        "real\n2026-01-01T00:00:00.000000Z  INFO forged line\x1b[2J"
    );
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn probe_timeouts_count_as_failures_and_kill_the_command() {
    // A listener that never answers (the kernel accepts, nobody reads) and a command that
    // outlives its timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let s = Scenario::new("probe-timeout").opt(&[
        "--probe-http",
        &silent_url,
        "--probe-exec",
        "sleep 9.123",
        "--probe-timeout",
        "300ms",
        "--startup-timeout",
        "2s",
        "--log-level",
        "debug",
    ]);
    let mut p = s.start();
    // Each timed-out command is killed before the next one runs: after two timeouts, at
    // most the third is alive (a leak would leave two or more).
    poll("two exec probe timeouts", T, || {
        (p.output().matches("killed after 300ms").count() >= 2).then_some(())
    });
    poll("at most one probe command alive", T, || {
        (processes_with_arg("9.123") <= 1).then_some(())
    });
    assert!(
        p.try_status().is_none(),
        "still probing (startup timeout 2s)"
    );
    assert_eq!(p.wait_exit(T).code(), Some(69), "startup timeout");
    let out = p.output();
    assert!(out.contains("no answer within 300ms"), "{out}");
    assert!(out.contains("killed after 300ms"), "{out}");
    assert!(!s.dp.path.exists(), "kuma-dp must never start");
    // Nothing is left behind.
    poll("the probe's sleep to be gone", T, || {
        (processes_with_arg("9.123") == 0).then_some(())
    });
}

/// How many live processes have `arg` as an argument (zombies have an empty cmdline): the
/// `sleep` of `sh -c 'sleep 9.123'`, not the shell.
fn processes_with_arg(arg: &str) -> usize {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes())
        })
        .count()
}

#[test]
fn default_probe_is_tcp_on_the_first_inbounds_service_address_and_port() {
    let s = Scenario::new("default-probe");
    let other = free_port();
    fs::write(
        &s.dp_file,
        format!(
            "type: Dataplane\nmesh: default\nname: {{{{ name }}}}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: 21011\n      servicePort: {{{{ port }}}}\n      serviceAddress: 127.0.0.2\n      tags:\n        kuma.io/service: backend\n    - port: 21012\n      servicePort: {other}\n      tags:\n        kuma.io/service: admin\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.2:{}", s.app_port);
    let s = s.app(&["--listen", &addr, "--listen-after", "300"]);
    let mut p = s.start();
    let said = p.wait_for_line("no probe given", T);
    assert!(said.contains(&format!("probe=tcp {addr}")), "{said}");
    // The second inbound's servicePort is covered by no probe: a warning, not an error.
    let warned = p.wait_for_line("which no probe checks", T);
    assert!(warned.contains(&format!("servicePort {other}")), "{warned}");
    let dp_start = s.dp.wait_for("start", T);
    let listening = s.app.find("listening").unwrap();
    assert_eq!(listening.field("addr"), addr);
    assert!(listening.t_ns < dp_start.t_ns);
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn startup_timeout_stops_the_app_and_never_starts_kuma_dp() {
    let s = Scenario::new("startup-timeout").opt(&["--startup-timeout", "1s"]);
    let t0 = now_ns();
    let mut p = s.start();
    let (status, exited) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(69), "EX_UNAVAILABLE");
    let took = ms(t0, exited);
    assert!((1000.0..4000.0).contains(&took), "exited after {took:.0}ms");
    assert_eq!(s.app.find("die").expect("app stopped").field("sig"), "TERM");
    assert!(!s.dp.path.exists(), "kuma-dp must never start");
    p.wait_for_line("app not healthy within --startup-timeout", T);
}

#[test]
fn app_exiting_while_probed_ends_meshinit_with_its_status() {
    let s = Scenario::new("early-exit").app(&["--exit-after", "300", "--exit-code", "7"]);
    let mut p = s.start();
    let (status, exited) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(7), "the app's own status");
    let app_exit = s.app.find("exit").unwrap();
    let tail = ms(app_exit.t_ns, exited);
    assert!(tail < 500.0, "meshinit lingered {tail:.0}ms after the app");
    assert!(!s.dp.path.exists(), "kuma-dp must never start");
}

#[test]
fn crashing_kuma_dp_is_restarted_with_backoff_then_given_up() {
    // The backoff is shortened (250 ms, 500 ms, 1 s instead of 1 s, 2 s, 4 s): what is
    // tested is that it doubles, not its default.
    let (s, status) = Scenario::new("crash")
        .listening_app()
        .opt(&[
            "--proxy-max-restarts",
            "3",
            "--proxy-restart-backoff",
            "250ms",
        ])
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .env("FAKE_KUMA_DP_CRASH_AFTER_MS", "300")
        .with_status();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    // After the first crash the service is no longer ready and the restart is counted;
    // meshinit keeps serving its status while it waits to restart.
    let st = poll("proxy_restarts = 1 in /status", T, || {
        Some(status_json(status)).filter(|st| st["proxy_restarts"] == 1)
    });
    assert_eq!(st["phase"], "proxy-starting", "{st}");
    assert_eq!(st["ready"], false, "{st}");

    let (code, exited) = wait_exit_at(&mut p, T);
    assert_eq!(
        code.code(),
        Some(75),
        "EX_TEMPFAIL when kuma-dp keeps failing"
    );
    // Exactly the first start and max-restarts restarts: no busy loop, no extra one.
    let starts = s.dp.find_all("start");
    let exits = s.dp.find_all("exit");
    assert_eq!(
        starts.len(),
        4,
        "first start + 3 restarts, no more:\n{}",
        s.timeline()
    );
    assert_eq!(exits.len(), 4);
    assert!(exits.iter().all(|e| e.field("reason") == "crash"));
    // Exponential backoff, measured from the crash: each wait is at least its doubled
    // value (the lower bounds alone rule out a constant backoff), and not much more.
    for (i, want) in [(0, 250.0), (1, 500.0), (2, 1000.0)] {
        let gap = ms(exits[i].t_ns, starts[i + 1].t_ns);
        assert!(
            gap >= want && gap < want + 400.0,
            "restart {} came {gap:.0}ms after the crash, want {want}ms",
            i + 1
        );
    }
    // Then the orderly shutdown: the app gets its stop signal after the last crash, and
    // meshinit exits soon after.
    let app_die = s.app.find("die").expect("app stopped");
    assert_eq!(app_die.field("sig"), "TERM");
    assert!(app_die.t_ns > exits[3].t_ns);
    assert!(ms(exits[3].t_ns, exited) < 3000.0, "{}", s.timeline());
    let out = p.output();
    for attempt in 1..=3 {
        assert!(
            out.contains(&format!("kuma-dp will be restarted attempt={attempt}")),
            "{out}"
        );
    }
    assert!(!out.contains("attempt=4"), "{out}");
    assert!(out.contains("giving up"), "{out}");
}

#[test]
fn kuma_dp_never_ready_ends_with_75_after_the_ready_timeout() {
    let s = Scenario::new("never-ready")
        .listening_app()
        .opt(&["--proxy-ready-timeout", "1s"])
        .env("FAKE_KUMA_DP_NEVER_READY", "1");
    let mut p = s.start();
    let (status, exited) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(75), "EX_TEMPFAIL");
    let dp_start = s.dp.find("start").unwrap();
    let term = s.dp.find("signal").expect("kuma-dp was stopped");
    assert_eq!(term.rest, "TERM n=1");
    let after = ms(dp_start.t_ns, term.t_ns);
    assert!(
        (900.0..1500.0).contains(&after),
        "TERM {after:.0}ms after start"
    );
    assert!(s.dp.find("ready").is_none());
    assert_eq!(s.app.find("die").expect("app stopped").field("sig"), "TERM");
    // A proxy that was never ready is owed no drain: out within the short kill bound.
    assert!(ms(term.t_ns, exited) < 2500.0);
    p.wait_for_line("did not become ready within --proxy-ready-timeout", T);
}

#[test]
fn indirect_mode_passes_name_and_mesh() {
    let s = Scenario::bare("indirect").listening_app();
    let addr = s.app_addr();
    let fake = path_str(&fake_kuma_dp_bin());
    let token = path_str(&s.token_file);
    let s = s.opt(&[
        "--kuma-dp",
        &fake,
        "--cp-address",
        CP,
        "--dataplane-name",
        "web-1",
        "--mesh",
        "demo",
        "--dataplane-token-file",
        &token,
        "--probe-tcp",
        &addr,
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    assert_eq!(
        argv_without_work_dir(&s),
        [
            "run".to_string(),
            format!("--cp-address={CP}"),
            "--name=web-1".into(),
            "--mesh=demo".into(),
            format!("--dataplane-token-file={token}"),
        ]
    );
    assert!(s.app.find("listening").unwrap().t_ns < s.dp.find("start").unwrap().t_ns);
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn bad_input_exits_64_names_the_problem_and_starts_nothing() {
    struct Case {
        what: &'static str,
        /// Changes the scenario's files or options.
        setup: fn(&mut Scenario),
        /// Every one must appear in the output.
        needles: fn(&Scenario) -> Vec<String>,
    }
    fn replace_opt(s: &mut Scenario, flag: &str, value: String) {
        let i = s.opts.iter().position(|o| o == flag).unwrap();
        s.opts[i + 1] = value;
    }
    let cases = [
        Case {
            what: "a template variable is used but not given",
            setup: |s| {
                let i = s.opts.iter().position(|o| o.starts_with("port=")).unwrap();
                s.opts.drain(i - 1..=i);
            },
            needles: |_| vec!["variable 'port' is used but not given".into()],
        },
        Case {
            what: "kuma-dp does not exist",
            setup: |s| {
                let missing = path_str(&s.dir.join("no-such-kuma-dp"));
                replace_opt(s, "--kuma-dp", missing);
            },
            needles: |_| vec!["no-such-kuma-dp' does not exist".into()],
        },
        Case {
            what: "kuma-dp is not on PATH",
            setup: |s| replace_opt(s, "--kuma-dp", "kuma-dp-not-installed-here".into()),
            needles: |_| vec!["'kuma-dp-not-installed-here' was not found on PATH".into()],
        },
        Case {
            what: "kuma-dp is not executable",
            setup: |s| {
                let file = path_str(&s.dp_file);
                replace_opt(s, "--kuma-dp", file);
            },
            needles: |s| vec![format!("'{}' is not executable", s.dp_file.display())],
        },
        Case {
            what: "malformed YAML",
            setup: |s| {
                fs::write(
                    &s.dp_file,
                    "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: 127.0.0.1\n   inbound: [\n",
                )
                .unwrap();
            },
            needles: |s| {
                vec![
                    "not valid YAML".into(),
                    "line 6 column".into(),
                    path_str(&s.dp_file),
                ]
            },
        },
        Case {
            what: "an inbound without a kuma.io/service tag",
            setup: |s| {
                fs::write(&s.dp_file, TEMPLATE.replace("kuma.io/service", "team")).unwrap();
            },
            needles: |_| vec!["networking.inbound[0] needs a 'kuma.io/service' tag".into()],
        },
        Case {
            what: "a cp-address that is not a URL",
            setup: |s| replace_opt(s, "--cp-address", "kuma-cp:5678".into()),
            needles: |_| vec!["'kuma-cp:5678' is not a URL".into()],
        },
        Case {
            what: "an empty token file",
            setup: |s| fs::write(&s.token_file, "").unwrap(),
            needles: |s| vec![format!("'{}' is empty", s.token_file.display())],
        },
        Case {
            what: "a missing token file",
            setup: |s| fs::remove_file(&s.token_file).unwrap(),
            needles: |s| vec![format!("cannot read '{}'", s.token_file.display())],
        },
        Case {
            // A scratch image: no /tmp for kuma-dp's work directory.
            what: "no temp dir for kuma-dp's work directory",
            setup: |s| {
                s.env
                    .push(("TMPDIR".into(), path_str(&s.dir.join("no-tmp"))))
            },
            needles: |s| {
                vec![
                    format!(
                        "temp dir '{}', which does not exist",
                        s.dir.join("no-tmp").display()
                    ),
                    "--kuma-dp-arg=--work-dir=DIR".into(),
                ]
            },
        },
        Case {
            what: "two problems at once, both reported",
            setup: |s| {
                replace_opt(s, "--cp-address", "nope".into());
                let missing = path_str(&s.dir.join("gone"));
                replace_opt(s, "--kuma-dp", missing);
            },
            needles: |_| {
                vec![
                    "2 problems".into(),
                    "'nope' is not a URL".into(),
                    "gone' does not exist".into(),
                ]
            },
        },
    ];
    for case in cases {
        let mut s = Scenario::new("bad").listening_app();
        (case.setup)(&mut s);
        let mut p = s.start();
        let code = p.wait_exit(T).code();
        let out = p.output();
        assert_eq!(code, Some(64), "{}: exit code; output:\n{out}", case.what);
        for needle in (case.needles)(&s) {
            assert!(
                out.contains(&needle),
                "{}: output lacks {needle:?}:\n{out}",
                case.what
            );
        }
        assert!(!s.app.path.exists(), "{}: the app was started", case.what);
        assert!(!s.dp.path.exists(), "{}: kuma-dp was started", case.what);
        assert!(!out.contains(&s.token), "{}: token leaked", case.what);
        assert!(!out.contains("app started"), "{}: {out}", case.what);
    }
}

#[test]
fn check_prints_the_plan_with_the_token_path_never_its_content() {
    let s = Scenario::new("check");
    // Group-readable: a warning, not an error.
    fs::set_permissions(&s.token_file, fs::Permissions::from_mode(0o640)).unwrap();
    let mut cmd = Command::new(meshinit_bin());
    cmd.env("KUMA_READINESS_PORT", s.ready_port.to_string())
        .arg("check")
        .args(&s.opts)
        .arg("--kuma-dp-arg=--drain-time=10s")
        .arg("--")
        .arg(test_app_bin())
        .arg("--record")
        .arg(&s.app.path);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    let out = p.output();
    let argv = format!(
        "kuma-dp (direct mode): {} run --cp-address={CP} --dataplane-file={} --dataplane-var name=web-1 --dataplane-var port={} --dataplane-token-file={} --drain-time=10s",
        fake_kuma_dp_bin().display(),
        s.dp_file.display(),
        s.app_port,
        s.token_file.display()
    );
    for want in [
        argv,
        "name: web-1".to_string(),
        format!("servicePort: {}", s.app_port),
        format!(
            "tcp 127.0.0.1:{} (default: the first inbound's servicePort)",
            s.app_port
        ),
        format!("http://127.0.0.1:{}/ready", s.ready_port),
        "readable by group or others".into(),
    ] {
        assert!(out.contains(&want), "check output lacks {want:?}:\n{out}");
    }
    assert!(!out.contains(&s.token), "token content printed:\n{out}");
    assert!(
        !s.app.path.exists() && !s.dp.path.exists(),
        "check started something"
    );
}

#[test]
fn app_signals_reach_the_app_and_never_kuma_dp() {
    let s = Scenario::new("usr1").listening_app();
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGUSR1);
    p.signal(Signal::SIGHUP);
    s.app.wait_for_match("signal", |e| e.rest == "USR1", T);
    s.app.wait_for_match("signal", |e| e.rest == "HUP", T);
    // The app survives them (recorded only) and kuma-dp never hears of them.
    assert_eq!(stop(&mut p), 143);
    let dp_signals: Vec<String> = s.dp_signal_events().into_iter().map(|e| e.rest).collect();
    assert_eq!(
        dp_signals,
        ["TERM n=1"],
        "kuma-dp got only its drain signal"
    );
}

/// An HTTP probe target that answers 200 until [`Flip::fail`], then 503 (or, after
/// [`Flip::alternate`], 503 to every other request; after [`Flip::burst`], 503 to the next
/// N only); it logs the time of every request before answering, so "meshinit acted after
/// failure N" is strict.
struct Flip {
    server: ScriptedHttp,
    failing: Arc<AtomicBool>,
    alternating: Arc<AtomicBool>,
    burst: Arc<AtomicUsize>,
}

impl Flip {
    fn start() -> Flip {
        let failing = Arc::new(AtomicBool::new(false));
        let alternating = Arc::new(AtomicBool::new(false));
        let burst = Arc::new(AtomicUsize::new(0));
        let (f, a, b) = (failing.clone(), alternating.clone(), burst.clone());
        let server = ScriptedHttp::start(move |n| {
            let in_burst = b
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
                .is_ok();
            if in_burst || f.load(Ordering::SeqCst) || (a.load(Ordering::SeqCst) && n % 2 == 1) {
                503
            } else {
                200
            }
        });
        Flip {
            server,
            failing,
            alternating,
            burst,
        }
    }
    /// One failure at a time, never two in a row.
    fn alternate(&self, on: bool) {
        self.alternating.store(on, Ordering::SeqCst);
    }
    /// Exactly `n` failures in a row, then successes again.
    fn burst(&self, n: usize) {
        self.burst.store(n, Ordering::SeqCst);
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.server.port)
    }
    fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }
    fn heal(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }
    /// Times of the 503 answers so far.
    fn failures(&self) -> Vec<u64> {
        self.server
            .hits()
            .into_iter()
            .filter(|h| h.2 == 503)
            .map(|h| h.1)
            .collect()
    }
}

/// `--on-unhealthy none` (the default before issue 23, which made `leave` the default with
/// kuma-dp): reported, nothing else.
#[test]
fn failing_liveness_with_on_unhealthy_none_is_reported_and_kept_running() {
    let target = Flip::start();
    let (s, status) = Scenario::new("liveness-none")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .with_status();
    let s = s.opt(&[
        "--on-unhealthy",
        "none",
        "--probe-http",
        &target.url(),
        "--probe-period",
        "100ms",
        "--probe-failure-threshold",
        "2",
        "--kuma-dp-arg=--drain-time=100ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    assert_eq!(get(status, "/ready"), Some((200, "ready\n".into())));
    // Exactly two failures in a row are needed (failure threshold 2). Three single
    // failures, each followed by a success, leave the probe passing (a threshold of 1
    // would fail it)...
    target.alternate(true);
    poll("three single failures", T, || {
        (target.failures().len() >= 3).then_some(())
    });
    target.alternate(false);
    // The burst below must follow a success, or it would make three in a row.
    poll("a success after the last single failure", T, || {
        (target.server.hits().last()?.2 == 200).then_some(())
    });
    assert!(
        !p.output().contains("probe failing"),
        "one failure at a time made the probe fail:\n{}",
        p.output()
    );
    // ...and exactly two in a row, then successes again, fail it (a threshold of 3 would
    // not: this wait would time out).
    target.burst(2);
    p.wait_for_line("probe failing", T);
    poll("the probe passing again", T, || {
        let passing = p
            .lines()
            .iter()
            .filter(|l| l.contains("probe passing"))
            .count();
        (passing >= 2).then_some(())
    });
    poll("/ready back to 200", T, || {
        get(status, "/ready").filter(|r| r.0 == 200)
    });
    // Failing for good: /ready turns 503 and stays so.
    let single = target.failures().len();
    target.fail();
    let (code, body) = poll("/ready to turn 503", T, || {
        get(status, "/ready").filter(|r| r.0 != 200)
    });
    let in_a_row = target.failures().len() - single;
    assert!(in_a_row >= 2, "{:?}", target.server.hits());
    assert_eq!((code, body.as_str()), (503, "running (app unhealthy)\n"));
    let st = status_json(status);
    assert_eq!(st["phase"], "running");
    assert_eq!(st["healthy"], false);
    assert_eq!(st["probes"][0]["passing"], false, "{st}");
    assert_eq!(st["probes"][0]["detail"], "HTTP 503", "{st}");
    p.wait_for_line("probe failing", T);
    p.wait_for_line("app unhealthy", T);
    assert!(
        s.dp.find("signal").is_none(),
        "--on-unhealthy none must not stop anything"
    );
    assert!(
        s.dp.find("healthcheck").is_none(),
        "--on-unhealthy none must not take the instance out of the mesh"
    );
    assert_eq!(stop(&mut p), 143);
}

#[test]
fn failing_liveness_with_on_unhealthy_shutdown_drains_and_exits_69() {
    let target = Flip::start();
    let s = Scenario::new("liveness-shutdown")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50");
    let s = s.opt(&[
        "--probe-http",
        &target.url(),
        "--probe-period",
        "100ms",
        "--probe-failure-threshold",
        "3",
        "--on-unhealthy",
        "shutdown",
        "--kuma-dp-arg=--drain-time=100ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    target.fail();
    assert_eq!(p.wait_exit(T).code(), Some(69), "EX_UNAVAILABLE");
    let term = s.dp.find("signal").expect("kuma-dp was drained");
    assert_eq!(term.rest, "TERM n=1");
    let failures = target.failures();
    assert!(
        failures.len() >= 3 && failures[2] < term.t_ns,
        "the drain began before the third failure: {failures:?}\n{}",
        s.timeline()
    );
    assert!(ms(failures[2], term.t_ns) < 300.0, "the drain began late");
    // Drain first, then the app.
    let dp_exit = s.dp.find("exit").unwrap();
    let app_die = s.app.find("die").unwrap();
    assert!(dp_exit.t_ns < app_die.t_ns, "{}", s.timeline());
}

#[test]
fn stop_during_the_restart_backoff_restarts_nothing() {
    let s = Scenario::new("stop-backoff")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .env("FAKE_KUMA_DP_CRASH_AFTER_MS", "300");
    let mut p = s.start();
    p.wait_for_line("kuma-dp will be restarted attempt=1", T);
    // The restart is 1 s away; a stop now owes kuma-dp nothing and the app no drain.
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    let (status, exited) = wait_exit_at(&mut p, T);
    assert_eq!(status.code(), Some(143));
    let die = s.app.find("die").expect("app stopped");
    assert!(ms(sent, die.t_ns) < 300.0, "{}", s.timeline());
    assert!(ms(sent, exited) < 800.0);
    assert_eq!(
        s.dp.find_all("start").len(),
        1,
        "restarted during a shutdown"
    );
}

/// kuma-dp's argv without the `--work-dir` meshinit appends (a fresh private
/// directory, created before kuma-dp starts), which is checked here.
fn argv_without_work_dir(s: &Scenario) -> Vec<String> {
    let mut argv = s.dp_argv();
    let last = argv.pop().expect("argv");
    let dir = last
        .strip_prefix("--work-dir=")
        .unwrap_or_else(|| panic!("no --work-dir appended: {argv:?} {last}"));
    let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("work dir {dir}: {e}"));
    assert!(meta.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700,
        "private work dir"
    );
    argv
}

#[test]
fn a_work_dir_given_by_the_user_is_passed_through_alone() {
    let dir = temp_dir("user-work-dir");
    let wd = format!("--kuma-dp-arg=--work-dir={}", dir.path().display());
    let s = Scenario::new("workdir").listening_app().opt(&[&wd]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let argv = s.dp_argv();
    assert_eq!(
        argv.iter().filter(|a| a.starts_with("--work-dir")).count(),
        1,
        "{argv:?}"
    );
    assert_eq!(
        argv.last().unwrap(),
        &format!("--work-dir={}", dir.path().display())
    );
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
    assert!(
        dir.path().is_dir(),
        "meshinit leaves a work dir it does not own"
    );
}

/// The fake Envoy's `healthcheck fail|ok` calls, in order.
fn healthcheck_calls(s: &Scenario) -> Vec<String> {
    s.dp.find_all("healthcheck")
        .into_iter()
        .map(|e| e.rest)
        .collect()
}

/// Issue 23, item 1: with kuma-dp, failing liveness probes take the instance out of the
/// mesh (Envoy's health checks failed through its admin API, as kuma-dp's drain does)
/// without stopping anything; /ready, /status and /metrics say so and why; kuma-dp's own
/// `503 DRAINING` that follows is not taken for a failing or hung kuma-dp (a hang timeout
/// shorter than the time out proves it); passing probes put it back.
#[test]
fn unhealthy_app_leaves_the_mesh_and_comes_back_without_stopping_anything() {
    let target = Flip::start();
    let (s, status) = Scenario::new("membership-health")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .with_status();
    let s = s.opt(&[
        "--probe-http",
        &target.url(),
        "--probe-period",
        "100ms",
        "--probe-failure-threshold",
        "2",
        "--proxy-hang-timeout",
        "1s",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    assert!(healthcheck_calls(&s).is_empty(), "{}", s.dp.dump());
    let body = get(status, "/metrics").expect("/metrics").1;
    assert!(body.contains("\nmeshinit_mesh_member 1\n"), "{body}");

    target.fail();
    s.dp.wait_for_match("healthcheck", |e| e.rest == "fail", T);
    p.wait_for_line("left the mesh: app unhealthy", T);
    let (code, text) = poll("/ready to say out", T, || {
        get(status, "/ready").filter(|r| r.0 != 200)
    });
    assert_eq!(
        (code, text.as_str()),
        (503, "running (out of the mesh: app unhealthy)\n")
    );
    let st = status_json(status);
    assert_eq!(st["phase"], "running", "{st}");
    assert_eq!(st["mesh"]["member"], false, "{st}");
    assert_eq!(st["mesh"]["out_reason"], "app unhealthy", "{st}");
    let body = get(status, "/metrics").expect("/metrics").1;
    assert!(body.contains("\nmeshinit_mesh_member 0\n"), "{body}");
    assert!(
        body.contains("\nmeshinit_mesh_leaves_total{reason=\"unhealthy\"} 1\n"),
        "{body}"
    );
    // kuma-dp's readiness follows Envoy's, as the real one does: 503 DRAINING.
    let kuma_dp_ready = format!("http://127.0.0.1:{}/ready", s.ready_port);
    assert_eq!(
        http_get(&kuma_dp_ready, T),
        Some((503, "DRAINING".to_string()))
    );
    // Out for longer than the hang timeout (1 s) plus a check period (2 s): Envoy's
    // `503 DRAINING` is an answer, so nothing is restarted.
    let restarted = poll_for(Duration::from_secs(4), || {
        (s.dp.find_all("start").len() > 1 || p.output().contains("hung")).then_some(())
    });
    assert!(restarted.is_none(), "restarted while out:\n{}", p.output());

    target.heal();
    s.dp.wait_for_match("healthcheck", |e| e.rest == "ok", T);
    p.wait_for_line("back in the mesh", T);
    poll("/ready back to 200", T, || {
        get(status, "/ready").filter(|r| r.0 == 200)
    });
    assert_eq!(http_get(&kuma_dp_ready, T), Some((200, "LIVE".to_string())));
    assert_eq!(healthcheck_calls(&s), ["fail", "ok"]);
    assert_eq!(s.dp.find_all("start").len(), 1, "kuma-dp was restarted");
    assert!(s.dp.find("signal").is_none(), "kuma-dp was signalled");
    assert!(s.app.find("signal").is_none(), "the app was signalled");
    let st = status_json(status);
    assert_eq!(st["mesh"]["member"], true, "{st}");
    assert_eq!(stop(&mut p), 143);
}

/// Issue 23, item 1: a stop signal while out of the mesh runs the usual shutdown: kuma-dp
/// drains and exits first, then the app is stopped, and meshinit exits with its status.
/// No `ok` is sent behind kuma-dp's own drain.
#[test]
fn a_stop_signal_while_out_of_the_mesh_runs_the_usual_shutdown() {
    let target = Flip::start();
    let s = Scenario::new("membership-stop")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .opt(&[
            "--probe-http",
            &target.url(),
            "--probe-period",
            "100ms",
            "--probe-failure-threshold",
            "1",
            "--kuma-dp-arg=--drain-time=300ms",
        ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    target.fail();
    p.wait_for_line("left the mesh: app unhealthy", T);
    s.dp.wait_for_match("healthcheck", |e| e.rest == "fail", T);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    let drained = s.dp.find("draining").expect("kuma-dp drained");
    let dp_exit = s.dp.find("exit").expect("kuma-dp exited");
    assert_eq!(dp_exit.field("reason"), "drained", "{}", s.timeline());
    let app_stop = s.app.find("signal").expect("the app got its stop signal");
    assert!(
        drained.t_ns < dp_exit.t_ns && dp_exit.t_ns < app_stop.t_ns,
        "{}",
        s.timeline()
    );
    assert_eq!(healthcheck_calls(&s), ["fail"], "{}", s.dp.dump());
}

/// Issue 23, item 3: Envoy's admin API stops answering (accepts, never answers) while
/// kuma-dp runs: after `--proxy-hang-timeout` meshinit says so, reports not ready,
/// SIGKILLs kuma-dp and its Envoy (a child in a process group of its own), and restarts
/// kuma-dp with the crash backoff; the new one is ready again.
#[test]
fn a_hung_proxy_is_killed_with_its_envoy_and_restarted() {
    let (s, status) = Scenario::new("proxy-hang")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .env("FAKE_KUMA_DP_ENVOY_CHILD", "1")
        .with_status();
    let hang_file = s.dir.join("hang");
    let s = s
        .env("FAKE_KUMA_DP_HANG_FILE", &path_str(&hang_file))
        .opt(&[
            "--proxy-hang-timeout",
            "1s",
            "--proxy-restart-backoff",
            "200ms",
        ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let envoy = s.dp.wait_for("envoy-start", T);
    let envoy_pid: i32 = envoy.field("pid").parse().unwrap();
    let dp_pid: i32 = s.dp.find("start").unwrap().field("pid").parse().unwrap();
    assert_eq!(envoy.field("pgid"), envoy.field("pid"), "own process group");
    // Let one check pass first: the hang is counted from an answer.
    poll("a first admin answer", T, || {
        let body = get(status, "/metrics")?.1;
        body.contains("meshinit_proxy_hangs_total 0").then_some(())
    });
    fs::write(&hang_file, "").unwrap();
    let hung_at = now_ns();
    s.dp.wait_for("admin-hung", T);
    p.wait_for_line("kuma-dp hung", T);
    let found = now_ns();
    // The new kuma-dp must find a working Envoy admin.
    fs::remove_file(&hang_file).unwrap();
    // Checks every 2 s, timeout 1 s: found within about 3 s of the hang.
    eprintln!("hang found {} ms after it began", ms(hung_at, found));
    assert!(
        ms(hung_at, found) < bound_ms(6_000.0),
        "found after {} ms",
        ms(hung_at, found)
    );
    // Gone from /proc, not just dead: the orphaned Envoy was re-parented to meshinit (a
    // child subreaper) and reaped by its one reaper.
    poll("kuma-dp and its Envoy killed and reaped", T, || {
        (stat(envoy_pid).is_none() && stat(dp_pid).is_none()).then_some(())
    });
    let exit = s.dp.find("exit");
    assert!(exit.is_none(), "kuma-dp exited on its own: {}", s.dp.dump());
    s.dp.wait_for_match("start", |e| e.field("pid") != dp_pid.to_string(), T);
    poll("ready again", T, || {
        get(status, "/ready").filter(|r| r.0 == 200)
    });
    let envoys = s.dp.find_all("envoy-start");
    assert_eq!(envoys.len(), 2, "{}", s.dp.dump());
    let body = get(status, "/metrics").expect("/metrics").1;
    assert!(body.contains("\nmeshinit_proxy_hangs_total 1\n"), "{body}");
    assert!(
        body.contains("\nmeshinit_proxy_restarts_total 1\n"),
        "{body}"
    );
    assert!(s.app.find("signal").is_none(), "the app was signalled");
    assert_eq!(stop(&mut p), 143);
    // Nothing left behind: the second Envoy went with its kuma-dp.
    let last: i32 = envoys[1].field("pid").parse().unwrap();
    poll("the second Envoy gone", T, || is_dead(last).then_some(()));
}

/// `meshinit ctl ARGS` against the control socket `sock`: exit code, stdout, stderr.
fn ctl(sock: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(meshinit_bin())
        .env_remove("MESHINIT_CONTROL_SOCKET")
        .arg("ctl")
        .arg("--control-socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("run meshinit ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 23, item 2: `meshinit ctl out` takes the instance out of the mesh and returns once
/// its inbound side is idle by the drain's rule (here: clients leave 800 ms after the
/// health checks fail, `--drain-min 500ms`, `--drain-idle 200ms`), printing how long that
/// took; the instance stays out through a probe failure and recovery until `ctl in`.
#[test]
fn ctl_out_waits_for_idle_holds_through_probe_recoveries_and_in_puts_it_back() {
    let target = Flip::start();
    let (s, status) = Scenario::new("ctl-out")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .env("FAKE_KUMA_DP_DRAIN_BUSY_MS", "800")
        .with_status();
    let inbound = format!("127.0.0.1:21011:{}", s.app_port);
    let sock = s.dir.join("ctl.sock");
    let s = s.env("FAKE_KUMA_DP_INBOUND", &inbound).opt(&[
        "--control-socket",
        &path_str(&sock),
        "--probe-http",
        &target.url(),
        "--probe-period",
        "100ms",
        "--probe-failure-threshold",
        "1",
        "--drain-min",
        "500ms",
        "--drain-idle",
        "200ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let (code, out, err) = ctl(&sock, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("mesh: in\n"), "{out}");

    let asked = now_ns();
    let (code, out, err) = ctl(&sock, &["out"]);
    let answered = now_ns();
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}\n{}", p.output());
    assert!(
        out.contains("waiting for the inbound side to go idle"),
        "{out}"
    );
    assert!(out.contains("out of the mesh; inbound idle after"), "{out}");
    let fail = s.dp.wait_for_match("healthcheck", |e| e.rest == "fail", T);
    assert!(fail.t_ns > asked && fail.t_ns < answered);
    // Clients left 800 ms after the call, then 200 ms of idleness.
    let took = ms(fail.t_ns, answered);
    assert!(took >= 1_000.0, "returned {took} ms after the call: {out}");
    assert!(
        took < bound_ms(5_000.0),
        "returned {took} ms after the call"
    );
    eprintln!("ctl out returned {took} ms after /healthcheck/fail: {out}");
    p.wait_for_line("left the mesh: operator", T);
    assert_eq!(
        get(status, "/ready"),
        Some((503, "running (out of the mesh: operator)\n".into()))
    );
    let (_, out, _) = ctl(&sock, &["status"]);
    assert!(out.contains("mesh: out (operator)\n"), "{out}");

    // The probes fail and recover: the operator's out holds.
    target.fail();
    p.wait_for_line("app unhealthy", T);
    target.heal();
    p.wait_for_line("app healthy elapsed", T);
    poll("the probes passing again", T, || {
        let st = status_json(status);
        (st["healthy"] == true).then_some(())
    });
    assert_eq!(healthcheck_calls(&s), ["fail"], "{}", s.dp.dump());
    assert_eq!(get(status, "/ready").map(|r| r.0), Some(503));

    let (code, out, err) = ctl(&sock, &["in"]);
    assert_eq!((code, out.as_str()), (0, "in the mesh\n"), "{err}");
    s.dp.wait_for_match("healthcheck", |e| e.rest == "ok", T);
    p.wait_for_line("back in the mesh", T);
    poll("/ready 200", T, || {
        get(status, "/ready").filter(|r| r.0 == 200)
    });
    let body = get(status, "/metrics").expect("/metrics").1;
    assert!(
        body.contains("\nmeshinit_mesh_leaves_total{reason=\"operator\"} 1\n"),
        "{body}"
    );
    assert!(s.dp.find("signal").is_none(), "kuma-dp was signalled");
    assert_eq!(stop(&mut p), 143);
}

/// Issue 23, item 2: an inbound that does not go idle (a long-lived connection) makes
/// `ctl out` give up after `--drain-timeout`, saying how much is still open (exit 75); the
/// instance stays out. `ctl out --no-wait` returns at once; a shutdown refuses both.
#[test]
fn ctl_out_says_what_is_still_open_after_the_drain_timeout() {
    let (s, status) = Scenario::new("ctl-out-busy")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .env("FAKE_KUMA_DP_DRAIN_BUSY_MS", "600000")
        .with_status();
    let inbound = format!("127.0.0.1:21011:{}", s.app_port);
    let sock = s.dir.join("ctl.sock");
    let s = s.env("FAKE_KUMA_DP_INBOUND", &inbound).opt(&[
        "--control-socket",
        &path_str(&sock),
        "--drain-min",
        "200ms",
        "--drain-timeout",
        "2s",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let asked = now_ns();
    let (code, out, err) = ctl(&sock, &["out"]);
    let took = ms(asked, now_ns());
    assert_eq!(code, 75, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("not idle after 2.00s") && err.contains("still 1 connections, 1 requests"),
        "{err}"
    );
    assert!(took >= 2_000.0 && took < bound_ms(6_000.0), "{took} ms");
    assert_eq!(get(status, "/ready").map(|r| r.0), Some(503), "still out");
    let (code, out, _) = ctl(&sock, &["out", "--no-wait"]);
    assert_eq!((code, out.as_str()), (0, "out of the mesh: operator\n"));
    assert_eq!(healthcheck_calls(&s), ["fail"], "idempotent: one call");
    p.signal(Signal::SIGTERM);
    // A request during the shutdown is refused, if meshinit still answers at all.
    let (code, _, err) = ctl(&sock, &["in"]);
    assert_eq!(code, 69, "{err}");
    assert_eq!(p.wait_exit(T).code(), Some(143));
    assert_eq!(
        healthcheck_calls(&s),
        ["fail"],
        "no `ok` behind kuma-dp's drain"
    );
}

/// Issue 23: kuma-dp restarted while the instance is out (here it is killed): the new
/// Envoy starts with its health checks passing, so meshinit fails them again as soon as
/// the new kuma-dp is ready, and says so.
#[test]
fn a_restart_while_out_of_the_mesh_leaves_again_once_the_new_kuma_dp_is_ready() {
    let (s, status) = Scenario::new("membership-restart")
        .listening_app()
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "50")
        .with_status();
    let sock = s.dir.join("ctl.sock");
    let s = s.opt(&[
        "--control-socket",
        &path_str(&sock),
        "--proxy-restart-backoff",
        "100ms",
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let (code, out, err) = ctl(&sock, &["out", "--no-wait"]);
    assert_eq!(code, 0, "{out}{err}");
    s.dp.wait_for_match("healthcheck", |e| e.rest == "fail", T);
    let first: i32 = s.dp.find("start").unwrap().field("pid").parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let second =
        s.dp.wait_for_match("start", |e| e.field("pid") != first.to_string(), T);
    let ready = s.dp.wait_for_match("ready", |e| e.t_ns > second.t_ns, T);
    let again = s.dp.wait_for_match(
        "healthcheck",
        |e| e.rest == "fail" && e.t_ns > second.t_ns,
        T,
    );
    p.wait_for_line(
        "left the mesh: operator (again, on the restarted kuma-dp)",
        T,
    );
    // meshinit reads kuma-dp's readiness every 100 ms: the call follows within a few polls.
    eprintln!(
        "re-applied {} ms after the new kuma-dp was ready",
        ms(ready.t_ns, again.t_ns)
    );
    assert!(ms(ready.t_ns, again.t_ns) < bound_ms(2_000.0));
    assert_eq!(healthcheck_calls(&s), ["fail", "fail"]);
    assert_eq!(get(status, "/ready").map(|r| r.0), Some(503));
    let body = get(status, "/metrics").expect("/metrics").1;
    assert!(
        body.contains("\nmeshinit_mesh_leaves_total{reason=\"operator\"} 1\n"),
        "a re-apply is not a new leave: {body}"
    );
    assert_eq!(stop(&mut p), 143);
}
