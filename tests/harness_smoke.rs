//! Smoke test of the harness and the two test programs, without meshinit: if these fail,
//! the integration tests that use them cannot be trusted.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(10);

#[test]
fn test_app_serves_records_signals_and_dies_by_term() {
    let dir = temp_dir("smoke-app");
    let rec = Record::new(&dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(test_app_bin());
    cmd.args(["--record", rec.path_str(), "--listen", &addr]);
    let mut app = Proc::start(cmd);

    let start = rec.wait_for("start", T);
    assert_eq!(start.field("pid"), app.pid().to_string());
    assert_eq!(
        start.field("pgid"),
        app.pid().to_string(),
        "own process group"
    );
    assert_eq!(start.field("ppid"), std::process::id().to_string());
    assert_eq!(start.field("fg"), "0");

    wait_port(&addr, T);
    app.wait_for_line("listening on", T);
    assert_eq!(rec.wait_for("listening", T).field("addr"), addr);
    let (status, body) = http_get(&format!("http://{addr}/healthz"), T).expect("GET");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let request = rec.wait_for("request", T);
    assert_eq!(request.field("path"), "/healthz");

    app.signal(Signal::SIGUSR1);
    rec.wait_for_match("signal", |e| e.rest == "USR1", T);
    app.signal(Signal::SIGTERM);
    let status = app.wait_exit(T);
    assert_eq!(status.signal(), Some(15), "died by SIGTERM: {status:?}");

    let names: Vec<String> = rec.events().into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        ["start", "listening", "request", "signal", "signal", "die"]
    );
    let die = rec.find("die").unwrap();
    assert_eq!(die.field("sig"), "TERM");
    assert!(start.t_ns < die.t_ns && die.t_ns <= now_ns());
}

#[test]
fn test_app_exit_code_and_signal_actions() {
    let dir = temp_dir("smoke-app-exit");
    let rec = Record::new(&dir);
    let mut cmd = Command::new(test_app_bin());
    cmd.env("TEST_APP_RECORD", &rec.path)
        .args(["--on", "TERM=exit-after:50:7", "--orphans", "20"]);
    let mut app = Proc::start(cmd);
    assert_eq!(rec.wait_for("orphans", T).field("n"), "20");
    app.signal(Signal::SIGTERM);
    let status = app.wait_exit(T);
    assert_eq!(status.code(), Some(7));
    assert_eq!(rec.find("exit").unwrap().field("code"), "7");

    let mut bad = Proc::start({
        let mut c = Command::new(test_app_bin());
        c.arg("--no-such-option");
        c
    });
    assert_eq!(bad.wait_exit(T).code(), Some(2));
    assert!(bad.output().contains("unknown option"), "{}", bad.output());
}

#[test]
fn fake_kuma_dp_ready_then_drains_on_term() {
    let dir = temp_dir("smoke-dp");
    let rec = Record::new(&dir);
    let dp_file = dir.join("dp.yaml");
    std::fs::write(&dp_file, "type: Dataplane\nname: {{ name }}\n").unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "not-a-real-token").unwrap();
    let port = free_port();
    let ready_url = format!("http://127.0.0.1:{port}/ready");

    let mut cmd = Command::new(fake_kuma_dp_bin());
    cmd.env("FAKE_KUMA_DP_RECORD", &rec.path)
        .env("KUMA_READINESS_PORT", port.to_string())
        .env("FAKE_KUMA_DP_READY_AFTER_MS", "1000")
        .arg("run")
        .arg("--cp-address=https://127.0.0.1:5678")
        .arg("-d")
        .arg(&dp_file)
        .args(["--dataplane-var", "name=web"])
        .arg(format!("--dataplane-token-file={}", token_file.display()))
        .args(["--drain-time=300ms", "--dns-enabled=false"]);
    let mut dp = Proc::start(cmd);

    wait_port(&format!("127.0.0.1:{port}"), T);
    // READY_AFTER_MS=1000 leaves plenty of room to see NOT_READY first, even on a loaded machine.
    assert_eq!(
        http_get(&ready_url, T),
        Some((503, "NOT_READY".to_string()))
    );
    rec.wait_for("ready", T);
    assert_eq!(http_get(&ready_url, T), Some((200, "LIVE".to_string())));
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/other"), T).map(|r| r.0),
        Some(404)
    );

    let term_sent = now_ns();
    dp.signal(Signal::SIGTERM);
    assert_eq!(rec.wait_for("draining", T).field("drain_ms"), "300");
    assert_eq!(
        http_get(&ready_url, T),
        Some((503, "TERMINATING".to_string()))
    );
    let status = dp.wait_exit(T);
    assert_eq!(status.code(), Some(0), "{status:?}");

    let exit = rec.find("exit").unwrap();
    assert_eq!(exit.field("reason"), "drained");
    let drained_ms = (exit.t_ns - term_sent) / 1_000_000;
    assert!(
        (300..3000).contains(&drained_ms),
        "drain took {drained_ms}ms"
    );

    assert_eq!(
        rec.find("token").unwrap().field("fnv"),
        format!("{:016x}", fnv1a64(b"not-a-real-token"))
    );
    assert!(!rec.dump().contains("not-a-real-token"));
    assert!(!dp.output().contains("not-a-real-token"));
    let args: Vec<String> = rec.find_all("arg").into_iter().map(|e| e.rest).collect();
    assert_eq!(args[0], "1 run");
    assert_eq!(args[4], "5 --dataplane-var");
    assert_eq!(args[5], "6 name=web");
    assert_eq!(
        rec.find("env").unwrap().rest,
        format!("KUMA_READINESS_PORT={port}")
    );
    let signal = rec.find("signal").unwrap();
    assert_eq!(signal.rest, "TERM n=1");
}

#[test]
fn fake_kuma_dp_rejects_unknown_flags() {
    let mut dp = Proc::start({
        let mut c = Command::new(fake_kuma_dp_bin());
        c.args(["run", "--cp-address=x", "--name=a", "--mesh=m", "--bogus"]);
        c
    });
    assert_eq!(dp.wait_exit(T).code(), Some(1));
    dp.wait_for_line("Error: unknown flag: --bogus", T);
}
