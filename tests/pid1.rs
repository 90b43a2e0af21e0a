//! meshinit as PID 1 of a new PID namespace (`unshare --pid --fork
//! --mount-proc`), as in a container: it reaps every orphan, forwards
//! signals and exits with the app's status.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const T: Duration = Duration::from_secs(20);

/// `unshare` with PID namespaces needs root (or user namespaces); the
/// tests say so and pass vacuously only where it cannot work at all.
fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

fn in_namespace(meshinit_args: &[&str], app: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    // At info level: these tests follow the run by its log lines, which a plain init
    // does not print by default.
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(meshinit_bin())
        .arg("--log-level=info")
        .args(meshinit_args)
        .arg("--")
        .arg(test_app_bin())
        .args(app);
    cmd
}

/// meshinit's host pid: the child of `unshare`.
fn init_below(p: &Proc) -> i32 {
    descendants(p.pid())
        .into_iter()
        .find(|pid| ppid_of(*pid) == Some(p.pid()))
        .expect("meshinit below unshare")
}

/// Zombie processes anywhere below `root` (host view).
fn zombies_below(root: i32) -> Vec<i32> {
    descendants(root)
        .into_iter()
        .filter(|pid| is_zombie(*pid))
        .collect()
}

#[test]
fn reaps_hundreds_of_orphans_as_pid_1() {
    if !unshare_works() {
        skip_or_fail("unshare --pid --fork --mount-proc is not permitted here");
        return;
    }
    let dir = temp_dir("pid1-orphans");
    let rec = Record::new(&dir);
    let mut p = Proc::start(in_namespace(
        &[],
        &["--record", rec.path_str(), "--orphans", "500"],
    ));
    let start = rec.wait_for("start", T);
    assert_eq!(
        start.field("ppid"),
        "1",
        "the app's parent is meshinit as PID 1"
    );
    assert_eq!(rec.wait_for("orphans", T).field("n"), "500");
    // Orphans exit at once; meshinit must have collected every one of them.
    if poll_for(T, || zombies_below(p.pid()).is_empty().then_some(())).is_none() {
        panic!("zombies left: {:?}", zombies_below(p.pid()));
    }
    // unshare does not pass signals on: signal meshinit itself.
    kill(Pid::from_raw(init_below(&p)), Signal::SIGTERM).unwrap();
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
}

#[test]
fn forwards_signals_and_exit_codes_as_pid_1() {
    if !unshare_works() {
        skip_or_fail("unshare --pid --fork --mount-proc is not permitted here");
        return;
    }
    let dir = temp_dir("pid1-signals");
    let rec = Record::new(&dir);
    let mut p = Proc::start(in_namespace(
        &[],
        &["--record", rec.path_str(), "--on", "USR1=exit:42"],
    ));
    rec.wait_for("start", T);
    // Signal meshinit itself (PID 1 inside): it has no handler, only a
    // blocked mask and a signalfd, which the kernel honours for an init.
    kill(Pid::from_raw(init_below(&p)), Signal::SIGUSR1).unwrap();
    rec.wait_for("signal", T);
    assert_eq!(p.wait_exit(T).code(), Some(42), "{}", p.output());
}

#[test]
fn leftover_daemons_die_with_the_app_as_pid_1() {
    if !unshare_works() {
        skip_or_fail("unshare --pid --fork --mount-proc is not permitted here");
        return;
    }
    let dir = temp_dir("pid1-daemon");
    let rec = Record::new(&dir);
    let mut p = Proc::start(in_namespace(
        &[],
        &[
            "--record",
            rec.path_str(),
            "--daemon",
            "--orphans",
            "100",
            "--exit-after",
            "300",
            "--exit-code",
            "5",
        ],
    ));
    rec.wait_for("daemon", T);
    assert_eq!(p.wait_exit(T).code(), Some(5), "{}", p.output());
    assert!(
        p.output().contains("stopping leftover descendants"),
        "{}",
        p.output()
    );
}

/// Issue 20, item 5: a forwarded SIGTSTP stops the app (here a shell that exits 0 on
/// TERM, and its `sleep`); SIGTERM to meshinit then used to reach a stopped app that could
/// not act on it, and SIGKILL followed after the stop timeout (137). The stop signal is now
/// followed by SIGCONT, as systemd sends it: the app exits with its own status, 0. As PID 1
/// meshinit does not stop itself after forwarding SIGTSTP (the kernel would not let it),
/// which is what lets this run see the app stopped and meshinit still listening.
#[test]
fn an_app_stopped_by_a_forwarded_tstp_still_exits_cleanly_on_sigterm_as_pid_1() {
    if !unshare_works() {
        skip_or_fail("unshare --pid --fork --mount-proc is not permitted here");
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(meshinit_bin())
        .args(["--log-level=info", "--app-stop-timeout", "5s", "--"])
        .args(["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]);
    let mut p = Proc::start(cmd);
    p.wait_for_line("app started", T);
    let init = init_below(&p);
    let sleeper = poll("the app's sleep", T, || {
        descendants(init)
            .into_iter()
            .find(|pid| comm(*pid) == "sleep")
    });
    let shell = ppid_of(sleeper).expect("the app's shell");
    kill(Pid::from_raw(init), Signal::SIGTSTP).unwrap();
    poll("the app stopped", T, || {
        (stat(shell)?.state == 'T' && stat(sleeper)?.state == 'T').then_some(())
    });
    assert_ne!(
        stat(init).map(|s| s.state),
        Some('T'),
        "meshinit as PID 1 stopped itself"
    );
    let sent = Instant::now();
    kill(Pid::from_raw(init), Signal::SIGTERM).unwrap();
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "the app was not continued: it ended after the stop timeout"
    );
}

/// The process name of `pid` (empty once it is gone).
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `meshinit ctl` as `docker exec` runs it: from inside the namespaces of a meshinit that is
/// PID 1 (nsenter into its PID and mount namespaces), over the control socket.
#[test]
fn ctl_status_reaches_meshinit_as_pid_1_from_inside_its_namespace() {
    if !unshare_works() {
        skip_or_fail("unshare --pid --fork --mount-proc is not permitted here");
        return;
    }
    if Command::new("nsenter").arg("--version").output().is_err() {
        skip_or_fail("nsenter (util-linux) is not installed");
        return;
    }
    let dir = temp_dir("pid1-ctl");
    let sock = dir.join("ctl.sock");
    let flag = format!("--control-socket={}", sock.display());
    let p = Proc::start(in_namespace(&[&flag], &[]));
    p.wait_for_line("control socket listening", T);
    let init = init_below(&p).to_string();
    let out = poll("ctl status from inside the namespace", T, || {
        let out = Command::new("nsenter")
            .args(["--target", &init, "--pid", "--mount", "--"])
            .arg(meshinit_bin())
            .args(["ctl", "status"])
            .env("MESHINIT_CONTROL_SOCKET", &sock)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code() == Some(0) && text.contains("phase: running")).then_some(text)
    });
    // The app's pid as meshinit sees it, in its namespace: 2, meshinit being 1.
    assert!(out.contains("app: pid 2\n"), "{out}");
    kill(Pid::from_raw(init_below(&p)), Signal::SIGTERM).unwrap();
    let mut p = p;
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "socket removed at exit"
    );
}
