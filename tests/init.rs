//! What an init owes its children, tested on the real binary with the
//! scriptable test app: exit codes, signal forwarding, the stop sequence
//! and its escalation, leftover descendants, privileges, bad input.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const T: Duration = Duration::from_secs(15);
const MS: u64 = 1_000_000;

/// meshinit at `--log-level info`: these tests follow the run by its log lines, which a
/// plain init does not print by default (tests/habits.rs checks that it is quiet).
fn meshinit(args: &[&str], app: &[&str]) -> Command {
    let mut cmd = Command::new(meshinit_bin());
    if !args.iter().any(|a| a.starts_with("--log-level")) {
        cmd.args(["--log-level", "info"]);
    }
    cmd.args(args).arg("--").arg(test_app_bin()).args(app);
    cmd
}

/// Running: not gone, and not a zombie (which still accepts kill(0)).
fn alive(pid: i32) -> bool {
    !is_dead(pid)
}

#[test]
fn exit_code_is_the_apps_own_and_can_be_mapped() {
    let mut p = Proc::start(meshinit(&[], &["--exit-code", "3"]));
    assert_eq!(p.wait_exit(T).code(), Some(3));
    let mut p = Proc::start(meshinit(&["--exit-code-map", "3:0"], &["--exit-code", "3"]));
    assert_eq!(p.wait_exit(T).code(), Some(0));
}

#[test]
fn the_app_starts_with_no_blocked_or_ignored_signals() {
    // meshinit blocks everything itself and Rust ignores SIGPIPE; none of it
    // may leak into the app, or an ordinary app never sees its SIGTERM.
    let (blk, ign, out) = app_signal_masks(|_| {});
    assert_eq!(blk, 0, "{out}");
    // Signals 32 and 33 belong to the C library, which keeps whatever the
    // test harness gave meshinit; every other signal has its default action.
    assert_eq!(ign & !0x1_8000_0000, 0, "{out}");
    // The test app (Rust) records its inherited mask before touching it.
    let dir = temp_dir("init-sigmask");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &[],
        &["--record", rec.path_str(), "--exit-code", "0"],
    ));
    assert_eq!(p.wait_exit(T).code(), Some(0));
    assert_eq!(
        rec.wait_for("start", T).field("sigblk"),
        "0000000000000000",
        "{}",
        rec.dump()
    );
}

#[test]
fn an_app_with_default_signal_handling_stops_on_sigterm() {
    // A plain `sleep` relies on the default SIGTERM action.
    let mut cmd = Command::new(meshinit_bin());
    cmd.args([
        "--log-level=info",
        "--app-stop-timeout",
        "30s",
        "--",
        "sleep",
        "60",
    ]);
    let mut p = Proc::start(cmd);
    p.wait_for_line("app started", T);
    let sent = std::time::Instant::now();
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "the app died of SIGTERM, not of the stop timeout"
    );
}

#[test]
fn signal_death_becomes_128_plus_n() {
    let dir = temp_dir("init-sigdeath");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(&[], &["--record", rec.path_str()]));
    let app: i32 = rec.wait_for("start", T).field("pid").parse().unwrap();
    kill(Pid::from_raw(app), Signal::SIGKILL).unwrap();
    assert_eq!(p.wait_exit(T).code(), Some(137));
    assert!(p.output().contains("killed by signal 9"), "{}", p.output());
}

/// Signals whose default action is not to end the process: ignored (CHLD, CONT, URG,
/// WINCH) or stopping it (STOP, TSTP, TTIN, TTOU).
const DO_NOT_KILL: [i32; 8] = [17, 18, 19, 20, 21, 22, 23, 28];

/// Gives meshinit default dispositions for 32 and 33, which the test harness hands down
/// ignored (and which meshinit, as tini, keeps ignored for the app): the C library
/// refuses `signal()` on them, so the kernel's rt_sigaction is called directly.
fn default_libc_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    /// The kernel's struct sigaction (x86_64 and aarch64 layout).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    // SAFETY: runs in the forked child before exec and only makes two raw
    // rt_sigaction system calls on a struct it owns; SIG_DFL installs no handler.
    unsafe {
        cmd.pre_exec(|| {
            let dfl = KernelSigaction {
                handler: nix::libc::SIG_DFL,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            for signo in [32, 33] {
                nix::libc::syscall(
                    nix::libc::SYS_rt_sigaction,
                    signo,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
            Ok(())
        });
    }
}

/// Every signal number that can kill, 1-64 (issue 20, item 1).
fn killing_signals() -> Vec<i32> {
    (1..=64).filter(|n| !DO_NOT_KILL.contains(n)).collect()
}

/// Issue 20, item 1: a child killed by a real-time signal (34-64) was never noticed (nix's
/// waitpid cannot map the signal and fails after the kernel has reaped the child), so
/// meshinit ran forever. A shell reports 128+N for every N, and so must meshinit: here the
/// app kills itself with each signal that can kill, all at once.
#[test]
fn an_app_killed_by_any_signal_1_to_64_exits_128_plus_n() {
    let runs: Vec<(i32, Proc)> = killing_signals()
        .into_iter()
        .map(|n| {
            let mut cmd = Command::new(meshinit_bin());
            cmd.args(["--", "/bin/sh", "-c", &format!("kill -s {n} $$")]);
            default_libc_signals(&mut cmd);
            (n, Proc::start(cmd))
        })
        .collect();
    for (n, mut p) in runs {
        let status = p.wait_exit(T);
        assert_eq!(status.code(), Some(128 + n), "signal {n}: {}", p.output());
    }
}

/// The same for `kill -s RTMIN 0` from inside the app: its whole process group (the app
/// alone, in the group meshinit made for it) dies of SIGRTMIN.
#[test]
fn an_app_that_signals_its_own_group_with_rtmin_exits_162() {
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--", "/bin/sh", "-c", "kill -s RTMIN 0"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(162), "{}", p.output());
}

/// A real-time signal forwarded to the app kills it (default action), and meshinit exits
/// with 128+N, for every real-time signal the C library leaves to programs.
#[test]
fn a_forwarded_real_time_signal_that_kills_the_app_ends_meshinit_with_128_plus_n() {
    let rtmin = nix::libc::SIGRTMIN();
    let runs: Vec<(i32, Proc)> = (rtmin..=64)
        .map(|n| {
            let mut cmd = Command::new(meshinit_bin());
            cmd.args(["--log-level", "info", "--", "sleep", "60"]);
            (n, Proc::start(cmd))
        })
        .collect();
    for (n, p) in &runs {
        p.wait_for_line("app started", T);
        // SAFETY: kill(2) with a plain pid and signal number.
        assert_eq!(unsafe { nix::libc::kill(p.pid(), *n) }, 0);
    }
    for (n, mut p) in runs {
        let status = p.wait_exit(T);
        assert_eq!(status.code(), Some(128 + n), "signal {n}: {}", p.output());
        assert!(
            p.output()
                .contains(&format!("killed by signal {n} (SIGRTMIN")),
            "{}",
            p.output()
        );
    }
}

#[test]
fn every_forwardable_signal_reaches_the_app() {
    let dir = temp_dir("init-forward");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &["--log-level", "debug"],
        &["--record", rec.path_str(), "--on", "QUIT=ignore"],
    ));
    rec.wait_for("start", T);
    for (sig, name) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGWINCH, "WINCH"),
        (Signal::SIGQUIT, "QUIT"),
        (Signal::SIGCONT, "CONT"),
        (Signal::SIGALRM, "ALRM"),
    ] {
        p.signal(sig);
        rec.wait_for_match("signal", |e| e.rest.starts_with(name), T);
    }
    // Every real-time signal (issue 22, item 17): the app records each by number.
    for n in nix::libc::SIGRTMIN()..=nix::libc::SIGRTMAX() {
        // SAFETY: kill(2) with a plain pid and signal number.
        assert_eq!(unsafe { nix::libc::kill(p.pid(), n) }, 0);
        rec.wait_for_match("signal", |e| e.rest == n.to_string(), T);
    }
    // The job-control signals: passed on, then meshinit stops itself until SIGCONT
    // (issue 20, item 19), which is passed on too.
    for (sig, name) in [
        (Signal::SIGTSTP, "TSTP"),
        (Signal::SIGTTIN, "TTIN"),
        (Signal::SIGTTOU, "TTOU"),
    ] {
        let conts = rec
            .find_all("signal")
            .iter()
            .filter(|e| e.rest == "CONT")
            .count();
        p.signal(sig);
        rec.wait_for_match("signal", |e| e.rest == name, T);
        wait_state(p.pid(), |s| s == 'T', name);
        p.signal(Signal::SIGCONT);
        wait_state(p.pid(), |s| s != 'T', "CONT");
        let passed = || {
            let n = rec
                .find_all("signal")
                .iter()
                .filter(|e| e.rest == "CONT")
                .count();
            (n > conts).then_some(())
        };
        poll(&format!("CONT after {name} passed on"), T, passed);
    }
    // SIGURG is runtime-internal elsewhere and must not be relayed.
    p.signal(Signal::SIGURG);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    assert!(
        rec.find_all("signal")
            .iter()
            .all(|e| !e.rest.starts_with("URG")),
        "{}",
        rec.dump()
    );
}

/// Waits until the state letter of `pid` (`T`: stopped) satisfies `ok`.
fn wait_state(pid: i32, ok: impl Fn(char) -> bool, after: &str) {
    if poll_for(T, || stat(pid).is_some_and(|s| ok(s.state)).then_some(())).is_none() {
        panic!(
            "meshinit's state after {after}: {:?}",
            stat(pid).map(|s| s.state)
        );
    }
}

#[test]
fn forwarding_targets_the_group_or_only_the_process() {
    for (mode, child_dies) in [("group", true), ("process", false)] {
        let dir = temp_dir("init-forward-to");
        let rec = Record::new(&dir);
        let mut p = Proc::start(meshinit(
            &["--forward-to", mode],
            &["--record", rec.path_str(), "--children", "1"],
        ));
        rec.wait_for("children", T);
        p.signal(Signal::SIGUSR1);
        rec.wait_for("signal", T);
        if child_dies {
            // The worker has the default USR1 disposition: the group signal ends it.
            let reaped = rec.wait_for("reaped", T);
            assert_eq!(reaped.get("sig"), Some("USR1"), "{}", rec.dump());
        }
        p.signal(Signal::SIGTERM);
        p.wait_exit(T);
        if !child_dies {
            assert!(
                rec.find("reaped")
                    .is_none_or(|e| e.get("sig") != Some("USR1")),
                "{mode}: {}",
                rec.dump()
            );
        }
    }
}

#[test]
fn grace_delay_then_stop_signal_then_sigkill() {
    let dir = temp_dir("init-grace");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &[
            "--app-grace-delay",
            "500ms",
            "--app-stop-timeout",
            "700ms",
            "--app-stop-signal",
            "QUIT",
        ],
        &["--record", rec.path_str(), "--on", "QUIT=ignore"],
    ));
    rec.wait_for("start", T);
    let sent = now_ns();
    p.signal(Signal::SIGTERM);
    let quit = rec.wait_for("signal", T);
    assert!(
        quit.rest.starts_with("QUIT"),
        "the configured stop signal: {}",
        rec.dump()
    );
    let waited = (quit.t_ns - sent) / MS;
    assert!(
        (450..3000).contains(&waited),
        "stop signal {waited} ms after SIGTERM, expected the 500 ms grace"
    );
    let status = p.wait_exit(T);
    let ended = (now_ns() - sent) / MS;
    assert_eq!(status.code(), Some(137), "killed after the stop timeout");
    assert!(
        ended >= 1150,
        "SIGKILL came {ended} ms after SIGTERM, before grace + stop timeout"
    );
    let summary = p.wait_for_line("shutdown: drain", T);
    assert!(
        summary.contains("grace 0.5") && summary.contains("app stop 0.7"),
        "{summary}"
    );
}

#[test]
fn second_stop_signal_cuts_the_grace_short() {
    let dir = temp_dir("init-second");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &["--app-grace-delay", "30s"],
        &["--record", rec.path_str()],
    ));
    rec.wait_for("start", T);
    p.signal(Signal::SIGTERM);
    p.wait_for_line("phase grace", T);
    let second = now_ns();
    p.signal(Signal::SIGINT);
    let term = rec.wait_for("signal", T);
    assert!(term.rest.starts_with("TERM"), "{}", rec.dump());
    assert!(
        (term.t_ns - second) / MS < 1000,
        "the app got its stop signal at the second signal"
    );
    assert_eq!(p.wait_exit(T).code(), Some(143));
}

/// Issue 20, item 18: in plain init mode stop signals keep tini's and dumb-init's meaning:
/// a second and a third TERM reach the app like the first, nothing is cut short or
/// SIGKILLed at once (that is the ordered stop's escalation, with a proxy only:
/// shutdown.rs); an explicit `--app-stop-timeout` still bounds the stop.
#[test]
fn plain_init_passes_repeated_stop_signals_on_and_kills_only_after_an_explicit_timeout() {
    let dir = temp_dir("init-third");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &["--app-stop-timeout", "3s"],
        &["--record", rec.path_str(), "--on", "TERM=ignore"],
    ));
    let app: i32 = rec.wait_for("start", T).field("pid").parse().unwrap();
    let first = now_ns();
    for n in 1..=3 {
        p.signal(Signal::SIGTERM);
        let reached = || {
            let terms = rec
                .find_all("signal")
                .iter()
                .filter(|e| e.rest == "TERM")
                .count();
            (terms >= n).then_some(())
        };
        if poll_for(T, reached).is_none() {
            panic!("TERM #{n} did not reach the app:\n{}", rec.dump());
        }
    }
    let status = p.wait_exit(T);
    let took = (now_ns() - first) / MS;
    assert_eq!(status.code(), Some(137), "{}", p.output());
    assert!(
        took >= 2900,
        "SIGKILL {took} ms after the first TERM: cut short, not the 3s stop timeout"
    );
    assert!(!alive(app) || is_zombie(app), "the app was SIGKILLed");
    assert!(!p.output().contains("Escalated"), "{}", p.output());
}

#[test]
fn descendants_are_cleaned_up_even_after_setsid() {
    let dir = temp_dir("init-descendants");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &[],
        &[
            "--record",
            rec.path_str(),
            "--daemon",
            "--children",
            "2",
            "--exit-after",
            "300",
            "--exit-code",
            "4",
        ],
    ));
    let daemon: i32 = rec.wait_for("daemon", T).field("pid").parse().unwrap();
    let children: Vec<i32> = rec
        .wait_for("children", T)
        .field("pids")
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(p.wait_exit(T).code(), Some(4));
    for pid in children.iter().chain([&daemon]) {
        assert!(
            !alive(*pid),
            "descendant {pid} outlived meshinit\n{}",
            p.output()
        );
    }
}

#[test]
fn descendants_that_ignore_sigterm_are_killed() {
    let dir = temp_dir("init-stubborn");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &[],
        &[
            "--record",
            rec.path_str(),
            "--daemon-ignore-term",
            "--exit-after",
            "200",
        ],
    ));
    let daemon: i32 = rec.wait_for("daemon", T).field("pid").parse().unwrap();
    assert_eq!(p.wait_exit(T).code(), Some(0));
    assert!(!alive(daemon), "stubborn daemon survived\n{}", p.output());
    assert!(p.output().contains("sending SIGKILL"), "{}", p.output());
}

/// Issue 20, item 5, for what the app leaves behind: a leftover daemon stopped by job
/// control gets SIGCONT after its SIGTERM, so it ends on the SIGTERM instead of waiting,
/// stopped, for the SIGKILL two seconds later.
#[test]
fn a_stopped_leftover_descendant_is_continued_after_its_sigterm() {
    let dir = temp_dir("init-stopped-daemon");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &[],
        &[
            "--record",
            rec.path_str(),
            "--daemon",
            "--exit-after",
            "500",
        ],
    ));
    let daemon: i32 = rec.wait_for("daemon", T).field("pid").parse().unwrap();
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    wait_state(daemon, |s| s == 'T', "SIGSTOP");
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    let out = p.output();
    assert!(out.contains("stopping leftover descendants"), "{out}");
    assert!(
        !out.contains("sending SIGKILL"),
        "the stopped daemon sat out its SIGTERM:\n{out}"
    );
    assert!(!alive(daemon));
}

/// A copy of the test app an unprivileged `--app-user` can execute, in a
/// directory it can enter: the build directory may sit below a home only
/// root can enter.
fn app_for_another_user(tag: &str) -> (TempDir, std::path::PathBuf) {
    let dir = temp_dir(tag);
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let app = dir.join("test-app");
    std::fs::copy(test_app_bin(), &app).unwrap();
    (dir, app)
}

#[test]
fn app_runs_as_the_given_user_with_its_own_groups() {
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root to change users");
        return;
    }
    let (dir, app) = app_for_another_user("init-user");
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--app-user", "nobody", "--app-no-new-privs", "--"])
        .arg(&app)
        .args(["--record", rec.path_str(), "--ids", "--exit-code", "0"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0));
    let ids = rec.wait_for("ids", T);
    for key in ["ruid", "euid", "suid"] {
        assert_eq!(ids.field(key), "65534", "{}", rec.dump());
    }
    for key in ["rgid", "egid", "sgid"] {
        assert_eq!(ids.field(key), "65534", "{}", rec.dump());
    }
    assert_eq!(
        ids.get("groups").unwrap_or(""),
        "65534",
        "supplementary groups reset to nobody's own"
    );
    assert_eq!(ids.field("nnp"), "1");
}

/// Issue 20, item 4: the parent-death signal is set after the switch to `--app-user`
/// (the kernel clears it when the credentials change): a SIGKILLed meshinit still gets
/// its unprivileged app its stop signal.
#[test]
fn an_app_of_another_user_gets_its_stop_signal_when_meshinit_is_killed() {
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root to change users");
        return;
    }
    let (dir, app) = app_for_another_user("init-pdeath-user");
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--app-user", "nobody", "--app-stop-signal", "QUIT", "--"])
        .arg(&app)
        .args(["--record", rec.path_str(), "--ids"]);
    let mut p = Proc::start(cmd);
    let pid: i32 = rec.wait_for("start", T).field("pid").parse().unwrap();
    assert_eq!(rec.wait_for("ids", T).field("euid"), "65534");
    p.signal(Signal::SIGKILL);
    p.wait_exit(T);
    let got = rec.wait_for("signal", T);
    assert_eq!(
        got.rest,
        "QUIT",
        "the configured stop signal: {}",
        rec.dump()
    );
    rec.wait_for("die", T);
    if poll_for(T, || (!alive(pid)).then_some(())).is_none() {
        panic!("the app outlived meshinit");
    }
}

#[test]
fn the_app_gets_the_terminal_as_foreground_group() {
    // `script` gives meshinit a pseudo-terminal on stdin, as an interactive shell would.
    if Command::new("script").arg("--version").output().is_err() {
        skip_or_fail("script(1) (util-linux) is not installed");
        return;
    }
    let dir = temp_dir("init-tty");
    let rec = Record::new(&dir);
    let inner = format!(
        "{} -- {} --record {} --exit-code 0",
        meshinit_bin().display(),
        test_app_bin().display(),
        rec.path_str()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0));
    let start = rec.wait_for("start", T);
    assert_eq!(
        start.field("fg"),
        "1",
        "the app is the terminal's foreground group: {}",
        rec.dump()
    );
    assert_eq!(start.field("pgid"), start.field("pid"), "own process group");
}

#[test]
fn idle_supervisor_uses_no_cpu() {
    let dir = temp_dir("init-idle");
    let rec = Record::new(&dir);
    let p = Proc::start(meshinit(&[], &["--record", rec.path_str()]));
    rec.wait_for("start", T);
    let used = idle_cpu_ticks(p.pid());
    assert!(used <= 1, "meshinit used {used} clock ticks while idle");
}

/// A plain init (no probe, kuma-dp or status endpoint) waits on its signalfd
/// alone, as tini and catatonit do: no async runtime with its epoll instance
/// and wake-up eventfd, whose turn cost 2.9 k instructions per forwarded
/// signal and per reaped orphan (BENCHMARKS.md).
#[test]
fn a_plain_init_waits_on_its_signalfd_without_an_event_loop() {
    let dir = temp_dir("init-plain-fds");
    let rec = Record::new(&dir);
    let p = Proc::start(meshinit(&[], &["--record", rec.path_str()]));
    rec.wait_for("start", T);
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .expect("meshinit's descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    assert!(
        fds.iter().any(|t| t == "anon_inode:[signalfd]"),
        "signals are read from a signalfd: {fds:?}"
    );
    assert!(
        !fds.iter()
            .any(|t| t == "anon_inode:[eventpoll]" || t == "anon_inode:[eventfd]"),
        "no event loop in plain mode: {fds:?}"
    );
    // Still an init: a forwarded signal reaches the app.
    p.signal(Signal::SIGUSR1);
    rec.wait_for("signal", T);
}

/// Each bad input: one clear message naming the value and its origin, exit
/// 64, nothing started.
#[test]
fn bad_input_is_refused_before_anything_starts() {
    let dir = temp_dir("init-bad");
    let rec = Record::new(&dir);
    let config = dir.join("bad.yaml");
    std::fs::write(&config, "app:\n  stop-timeout: soon\n  colour: red\n").unwrap();
    let not_exec = dir.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let config_arg = format!("--config={}", config.display());
    let missing_arg = format!("--config={}", dir.join("missing.yaml").display());
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec![missing_arg.clone()],
            vec!["cannot read config file", "missing.yaml"],
        ),
        (
            vec![config_arg.clone()],
            vec![
                "'soon' is not a duration",
                "bad.yaml:2",
                "unknown key 'colour' in section 'app'",
                "bad.yaml:3",
            ],
        ),
        (
            vec!["--app-stop-timeout=10".into()],
            vec!["'10' has no unit", "flag --app-stop-timeout"],
        ),
        (
            vec!["--app-stop-signal=SIGFOO".into()],
            vec!["'SIGFOO' is not a signal", "flag --app-stop-signal"],
        ),
        (
            vec!["--app-user=no-such-user-xyz".into()],
            vec!["user 'no-such-user-xyz' does not exist", "flag --app-user"],
        ),
        (
            vec!["--status-listen=nowhere".into()],
            vec!["'nowhere' is not an address", "status.listen"],
        ),
        (
            // Refused at start: at exit the shutdown's record would be lost.
            vec!["--state-file=/no/such/dir/last-shutdown".into()],
            vec!["'/no/such/dir' is not a directory", "flag --state-file"],
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = Command::new(meshinit_bin());
        cmd.args(&args)
            .arg("--")
            .arg(test_app_bin())
            .args(["--record", rec.path_str()]);
        let mut p = Proc::start(cmd);
        assert_eq!(p.wait_exit(T).code(), Some(64), "{args:?}: {}", p.output());
        for needle in expected {
            assert!(
                p.output().contains(needle),
                "{args:?}: missing {needle:?} in\n{}",
                p.output()
            );
        }
    }
    // A command that cannot run exits as in a shell, tini or `docker run`: 127 when it does
    // not exist, 126 when it cannot be executed.
    for (program, needle, code) in [
        ("/no/such/app", "does not exist", 127),
        (not_exec.to_str().unwrap(), "is not executable", 126),
        ("no-such-program-on-path", "was not found on PATH", 127),
        ("/tmp", "is not a file", 126),
    ] {
        let mut cmd = Command::new(meshinit_bin());
        cmd.args(["--", program]);
        let mut p = Proc::start(cmd);
        assert_eq!(
            p.wait_exit(T).code(),
            Some(code),
            "{program}: {}",
            p.output()
        );
        assert!(
            p.output().contains(needle) && p.output().contains(program),
            "{program}: {}",
            p.output()
        );
    }
    // Found on PATH but not executable: 126, as bash says "Permission denied".
    let mut cmd = Command::new(meshinit_bin());
    cmd.env("PATH", dir.path()).args(["--", "not-executable"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(126), "{}", p.output());
    assert!(
        p.output().contains("is not an executable file"),
        "{}",
        p.output()
    );
    // A usage error stays 64, even with a missing command beside it.
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--app-stop-timeout=10", "--", "/no/such/app"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(64), "{}", p.output());
    // Env vars are named as the origin.
    let mut cmd = Command::new(meshinit_bin());
    cmd.env("MESHINIT_APP_GRACE_DELAY", "forever")
        .args(["--", "/bin/true"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(64));
    assert!(
        p.output().contains("env MESHINIT_APP_GRACE_DELAY"),
        "{}",
        p.output()
    );
    assert!(rec.events().is_empty(), "the app never ran: {}", rec.dump());
}

#[test]
fn check_prints_the_plan_and_starts_nothing() {
    let dir = temp_dir("init-check");
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["check", "--app-grace-delay", "5s", "--"])
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains("app.grace-delay") && out.contains("5s  (flag --app-grace-delay)"),
        "{out}"
    );
    assert!(out.contains("worst case: 18s"), "{out}");
    assert!(out.contains("plain init mode"), "{out}");
    assert!(rec.events().is_empty());
}

#[test]
fn help_and_version_exit_zero() {
    let out = Command::new(meshinit_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--app-grace-delay")
            && text.contains("Examples:")
            && text.contains("MESHINIT_APP_GRACE_DELAY"),
        "{text}"
    );
    let out = Command::new(meshinit_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("meshinit "));
}

#[test]
fn an_inherited_ignored_sigchld_does_not_hide_the_apps_exit() {
    // With SIGCHLD ignored the kernel would reap the app itself and meshinit
    // would wait forever; meshinit resets every disposition at start.
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--", "sh", "-c", "exit 3"]);
    // SAFETY: signal(2) is async-signal-safe; it runs in the forked child
    // before exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::signal(nix::libc::SIGCHLD, nix::libc::SIG_IGN);
            nix::libc::signal(nix::libc::SIGTERM, nix::libc::SIG_IGN);
            Ok(())
        });
    }
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(3), "{}", p.output());
}
