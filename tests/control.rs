//! The control socket (`--control-socket`) and `meshinit ctl` (issue 23, item 2): the real
//! binary on both ends, a test app as the supervised program (no proxy).

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    bound_ms, meshinit_bin, poll, skip_or_fail, temp_dir, test_app_bin, Proc, Record, TempDir,
};
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(20);

/// meshinit supervising the test app, with its control socket at `sock`.
fn start(sock: &Path, rec: &Record, setup: impl FnOnce(&mut Command)) -> Proc {
    let mut cmd = Command::new(meshinit_bin());
    cmd.env_remove("MESHINIT_CONTROL_SOCKET")
        .arg("--control-socket")
        .arg(sock)
        .args(["--log-level", "info", "--"])
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    setup(&mut cmd);
    Proc::start(cmd)
}

/// `meshinit ctl ARGS`: its exit code, stdout and stderr.
fn ctl_with(bin: &Path, args: &[&str], setup: impl FnOnce(&mut Command)) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.env_remove("MESHINIT_CONTROL_SOCKET")
        .arg("ctl")
        .args(args);
    setup(&mut cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctl(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--control-socket", sock.to_str().unwrap()];
    all.extend_from_slice(args);
    ctl_with(&meshinit_bin(), &all, |_| {})
}

/// `ctl status` once meshinit answers it with the app running.
fn wait_running(sock: &Path, p: &Proc) -> String {
    poll("meshinit ctl status to say running", T, || {
        let (code, out, err) = ctl(sock, &["status"]);
        if code == 0 && out.contains("phase: running") {
            return Some(out);
        }
        eprintln!("ctl status not yet: {code} {out}{err}");
        // meshinit gone: no point waiting.
        assert!(
            !p.output().contains("ERROR"),
            "meshinit failed: {}",
            p.output()
        );
        None
    })
}

fn app_pid(status: &str) -> i32 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("app: pid "))
        .unwrap_or_else(|| panic!("no app pid in {status:?}"))
        .parse()
        .unwrap()
}

/// (a) `ctl status` prints the phase and exits 0; the same path through the env var.
#[test]
fn ctl_status_prints_the_phase_of_a_running_meshinit() {
    let dir = temp_dir("ctl-status");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |_| {});
    let out = wait_running(&sock, &p);
    let started = rec.wait_for("start", T);
    assert_eq!(
        app_pid(&out),
        started.field("pid").parse::<i32>().unwrap(),
        "{out}"
    );
    assert!(out.contains("ready: yes"), "{out}");
    assert!(out.contains("kuma-dp: not managed"), "{out}");
    // MESHINIT_CONTROL_SOCKET, as an image sets it for `docker exec ... meshinit ctl`.
    let (code, out2, err) = ctl_with(&meshinit_bin(), &["status"], |c| {
        c.env("MESHINIT_CONTROL_SOCKET", &sock);
    });
    assert_eq!(code, 0, "{out2}{err}");
    assert!(out2.contains("phase: running"), "{out2}");
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}

/// (b) A peer of another uid is refused by SO_PEERCRED even with the socket opened to 0666;
/// meshinit logs the refusal (uid, pid) and keeps serving its own user.
#[test]
fn a_peer_of_another_user_is_refused_even_with_the_mode_opened() {
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root to run meshinit ctl as another user");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        skip_or_fail("setpriv (util-linux) is not installed");
        return;
    }
    let dir = reachable_dir("ctl-peer");
    // The build directory may sit below a home only root can enter.
    let bin = dir.join("meshinit");
    std::fs::copy(meshinit_bin(), &bin).unwrap();
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |_| {});
    wait_running(&sock, &p);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let nobody = Command::new("setpriv")
        .env_remove("MESHINIT_CONTROL_SOCKET")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(["ctl", "--control-socket", sock.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let code = nobody.status.code().unwrap_or(-1);
    let out = String::from_utf8_lossy(&nobody.stdout);
    let err = String::from_utf8_lossy(&nobody.stderr);
    assert_eq!(code, 77, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("refused: uid 65534 is not meshinit's uid 0"),
        "{err}"
    );
    assert!(!out.contains("phase"), "nothing but the refusal: {out}");
    let warn = p.wait_for_line("refused a peer of another user", T);
    assert!(
        warn.contains("uid=65534") && warn.contains("pid="),
        "{warn}"
    );
    // Still there for its own user.
    let (code, out, _) = ctl(&sock, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("phase: running"), "{out}");
    assert!(p.try_status().is_none(), "meshinit must keep running");
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}

/// A directory another user can enter.
fn reachable_dir(tag: &str) -> TempDir {
    let dir = temp_dir(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// (c) A socket left by a meshinit killed outright is replaced by the next one.
#[test]
fn a_stale_socket_from_a_killed_meshinit_is_replaced() {
    let dir = temp_dir("ctl-stale");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut first = start(&sock, &rec, |_| {});
    wait_running(&sock, &first);
    first.signal(Signal::SIGKILL);
    first.wait_exit(T);
    assert!(
        std::fs::symlink_metadata(&sock).is_ok(),
        "SIGKILL leaves the socket file behind"
    );
    let dir2 = temp_dir("ctl-stale-2");
    let rec2 = Record::new(&dir2);
    let mut second = start(&sock, &rec2, |_| {});
    second.wait_for_line("removing a stale control socket", T);
    let out = wait_running(&sock, &second);
    assert_eq!(
        app_pid(&out),
        rec2.wait_for("start", T)
            .field("pid")
            .parse::<i32>()
            .unwrap()
    );
    second.signal(Signal::SIGTERM);
    second.wait_exit(T);
}

/// (c) A live socket refuses a second meshinit, which starts nothing and exits 64; the first
/// keeps its socket.
#[test]
fn a_live_socket_refuses_a_second_meshinit_with_nothing_started() {
    let dir = temp_dir("ctl-live");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut first = start(&sock, &rec, |_| {});
    wait_running(&sock, &first);
    let dir2 = temp_dir("ctl-live-2");
    let rec2 = Record::new(&dir2);
    let mut second = start(&sock, &rec2, |_| {});
    assert_eq!(second.wait_exit(T).code(), Some(64), "{}", second.output());
    assert!(
        second
            .output()
            .contains(&format!("another meshinit listens on {}", sock.display())),
        "{}",
        second.output()
    );
    assert!(rec2.events().is_empty(), "nothing started: {}", rec2.dump());
    let (code, out, _) = ctl(&sock, &["status"]);
    assert_eq!((code, out.contains("phase: running")), (0, true), "{out}");
    first.signal(Signal::SIGTERM);
    first.wait_exit(T);
}

/// (c) A regular file at the path is refused at load (with its origin) and left intact.
#[test]
fn a_regular_file_at_the_socket_path_is_refused_and_kept() {
    let dir = temp_dir("ctl-file");
    let sock = dir.join("ctl.sock");
    std::fs::write(&sock, "precious\n").unwrap();
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |_| {});
    assert_eq!(p.wait_exit(T).code(), Some(64), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains(&format!(
            "'{}' is a regular file, not a socket; meshinit never deletes it",
            sock.display()
        )) && out.contains("(from flag --control-socket)"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious\n");
    assert!(rec.events().is_empty(), "nothing started: {}", rec.dump());
}

/// (d) The socket is 0600 and meshinit's, even when meshinit runs with umask 000 (the app
/// keeps that umask), and it is removed at exit.
#[test]
fn the_socket_is_0600_and_removed_at_exit() {
    let dir = temp_dir("ctl-mode");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |c| {
        // SAFETY: umask(2) is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                nix::libc::umask(0);
                Ok(())
            });
        }
    });
    let out = wait_running(&sock, &p);
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    let status = std::fs::read_to_string(format!("/proc/{}/status", app_pid(&out))).unwrap();
    let umask = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    assert_eq!(umask.split_whitespace().nth(1), Some("0000"), "{umask}");
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "the socket must be removed at exit"
    );
}

/// (e) No socket given, or a path nobody listens on: a clear message and its exit code.
#[test]
fn ctl_without_a_socket_or_with_a_wrong_one_says_how_to_fix_it() {
    let (code, _, err) = ctl_with(&meshinit_bin(), &["status"], |_| {});
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains(
            "no control socket given: pass --control-socket PATH or set MESHINIT_CONTROL_SOCKET"
        ),
        "{err}"
    );
    let dir = temp_dir("ctl-none");
    let sock = dir.join("nothing.sock");
    let (code, _, err) = ctl(&sock, &["status"]);
    assert_eq!(code, 69, "{err}");
    assert!(
        err.contains(&format!(
            "does not exist: is meshinit running with --control-socket {}?",
            sock.display()
        )),
        "{err}"
    );
    // A socket file nobody accepts on (its meshinit is gone).
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (code, _, err) = ctl(&stale, &["status"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("nobody listens on"), "{err}");
    // Usage: no subcommand.
    let (code, _, err) = ctl(&sock, &[]);
    assert_eq!(code, 64, "{err}");
}

/// One raw request; the whole answer.
fn raw(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// (f) Garbage, an oversized request and silent peers get their answer and never keep an
/// operator out: with more silent connections held than meshinit has slots, `ctl status`
/// is still answered at once (the oldest silent one makes room), and a silent peer is told
/// after the 2 s request timeout.
#[test]
fn garbage_oversized_and_silent_peers_do_not_block_other_clients() {
    let dir = temp_dir("ctl-garbage");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |_| {});
    wait_running(&sock, &p);

    let out = raw(&sock, b"restart --now\n");
    assert_eq!(
        out,
        "error: unknown request 'restart --now'; this meshinit knows: status, in, out [--no-wait]\nexit 64\n"
    );
    let out = raw(&sock, &[b'x'; 300]);
    assert_eq!(out, "error: request longer than 256 bytes\nexit 64\n");
    let out = raw(&sock, b"\xff\xfe\n");
    assert!(
        out.starts_with("error: unknown request") && out.ends_with("exit 64\n"),
        "{out}"
    );

    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let t0 = Instant::now();
    let (code, out, err) = ctl(&sock, &["status"]);
    let took = t0.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("phase: running"), "{out}");
    assert!(
        took.as_millis() as f64 <= bound_ms(1500.0),
        "ctl status took {took:?} with silent peers connected: they held it up"
    );
    // The newest silent peer kept its slot and is told why it is closed.
    let mut last = silent.into_iter().last().unwrap();
    last.set_read_timeout(Some(T)).unwrap();
    let mut told = String::new();
    let _ = last.read_to_string(&mut told);
    assert_eq!(told, "error: no request within 2s\nexit 64\n");
    assert!(p.try_status().is_none(), "{}", p.output());
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}

/// The control socket costs nothing while nobody talks to it (issue 23: idle CPU with
/// nothing probed stays 0): after a request, whatever served it is gone.
#[test]
fn the_control_socket_adds_no_work_while_nobody_talks_to_it() {
    let dir = temp_dir("ctl-idle");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |_| {});
    wait_running(&sock, &p);
    let used = common::idle_cpu_ticks(p.pid());
    assert!(
        used <= 1,
        "meshinit used {used} clock ticks with nobody on its control socket"
    );
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}

/// Issue 23, item 2: without kuma-dp there is no mesh to leave: `out` and `in` are refused
/// with the reason (69), and nothing changes (no `mesh:` line in the status).
#[test]
fn out_and_in_without_kuma_dp_are_refused_with_the_reason() {
    let dir = temp_dir("ctl-no-mesh");
    let sock = dir.join("ctl.sock");
    let rec = Record::new(&dir);
    let mut p = start(&sock, &rec, |_| {});
    wait_running(&sock, &p);
    for args in [&["out"][..], &["out", "--no-wait"], &["in"]] {
        let (code, out, err) = ctl(&sock, args);
        assert_eq!(code, 69, "{args:?}: {out}{err}");
        assert!(err.contains("no kuma-dp is managed"), "{args:?}: {err}");
    }
    let (_, out, _) = ctl(&sock, &["status"]);
    assert!(!out.contains("mesh:"), "{out}");
    assert!(out.contains("ready: yes"), "{out}");
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);
}
