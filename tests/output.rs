//! No output failure ends meshinit (issue 20, item 2): a full disk, a log reader that went
//! away (a closed pipe, a FIFO whose reader was killed) or a full non-blocking pipe costs
//! log lines (counted in `/metrics`), never the app's exit code, the drain or the cleanup;
//! `meshinit check` that cannot write its plan exits 74 (EX_IOERR).
//!
//! [`Proc`] captures stdout and stderr itself, so the tests that choose meshinit's stdio run
//! it through [`Spawned`].

mod common;
mod scenario;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use scenario::*;

const T: Duration = Duration::from_secs(20);

/// meshinit started with the stdin, stdout and stderr a test chose, in its own process
/// group; killed with everything it started when dropped, even when the test panics.
struct Spawned(Child);

impl Spawned {
    fn start(mut cmd: Command, stdout: impl Into<Stdio>, stderr: impl Into<Stdio>) -> Spawned {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        Spawned(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Waits (polling) for the exit; panics after `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        poll_for(timeout, || self.0.try_wait().expect("try_wait"))
            .unwrap_or_else(|| panic!("meshinit (pid {pid}) still running after {timeout:?}"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        kill_tree(self.pid());
        let _ = self.0.wait();
    }
}

fn dev_full() -> File {
    OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}

/// The write end of a pipe whose reader is already gone, as after `| head -1` ended.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    write
}

/// A pipe for meshinit's stderr and the test's end of it, to read what meshinit said.
fn pipe() -> (File, OwnedFd) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    (File::from(read), write)
}

fn meshinit(args: &[&str]) -> Command {
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(args).env_remove("RUST_LOG");
    cmd
}

/// How a process ended, readable in an assertion: a code, or the signal (an abort is 6).
fn how(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => format!("{status:?}"),
    }
}

#[test]
fn a_failing_log_never_changes_the_apps_exit_code() {
    // The reproduction: every log line fails (ENOSPC) at trace level.
    let mut p = Spawned::start(
        meshinit(&["--log-level", "trace", "--", "sh", "-c", "exit 9"]),
        Stdio::null(),
        dev_full(),
    );
    assert_eq!(how(p.wait(T)), "exit 9", "2>/dev/full");
    // A log reader that is gone (EPIPE: Rust ignores SIGPIPE, so the write fails).
    let mut p = Spawned::start(
        meshinit(&["--log-level", "trace", "--", "sh", "-c", "exit 9"]),
        Stdio::null(),
        closed_pipe(),
    );
    assert_eq!(how(p.wait(T)), "exit 9", "stderr a pipe without reader");
}

#[test]
fn a_full_non_blocking_stderr_drops_lines_instead_of_blocking_or_aborting() {
    // A pipe another program made non-blocking (the flag is on the shared description),
    // filled to the brim: every write answers EAGAIN.
    let (mut read, write) = pipe();
    let filled = fill(&write);
    let flags = OFlag::from_bits_truncate(fcntl(&write, FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(&write, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("F_SETFL");
    let mut p = Spawned::start(
        meshinit(&["--log-level", "trace", "--", "sh", "-c", "exit 9"]),
        Stdio::null(),
        write,
    );
    assert_eq!(how(p.wait(T)), "exit 9");
    // Nothing meshinit wrote got in: the pipe holds the test's bytes alone.
    let mut got = Vec::new();
    read.read_to_end(&mut got).expect("read the pipe");
    assert_eq!(got.len(), filled);
    assert!(got.iter().all(|b| *b == b'x'));
}

/// Fills the pipe whose write end is `write` to the brim (through a non-blocking moment);
/// gives how many bytes it took.
fn fill(write: &OwnedFd) -> usize {
    let flags = OFlag::from_bits_truncate(fcntl(write, FcntlArg::F_GETFL).expect("F_GETFL"));
    fcntl(write, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).expect("F_SETFL");
    let mut filled = 0usize;
    let chunk = [b'x'; 4096];
    loop {
        match nix::unistd::write(write, &chunk) {
            Ok(n) => filled += n,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    fcntl(write, FcntlArg::F_SETFL(flags)).expect("F_SETFL");
    filled
}

#[test]
fn a_log_reader_that_stops_reading_never_blocks_meshinit() {
    // A blocking pipe, a FIFO (what a container runtime hands over) and a socket whose reader is
    // alive but reads nothing (a stuck log collector, a paused pager), already full: a
    // plain write(2) to it would wait for ever.
    let (_reader, write) = pipe();
    fill(&write);
    let mut p = Spawned::start(
        meshinit(&["--log-level", "trace", "--", "sh", "-c", "exit 9"]),
        Stdio::null(),
        write,
    );
    assert_eq!(how(p.wait(T)), "exit 9", "a pipe");

    let dir = temp_dir("stuck-fifo");
    let fifo = dir.join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open the FIFO for reading");
    let write = OwnedFd::from(
        OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the FIFO for writing"),
    );
    fill(&write);
    let mut p = Spawned::start(
        meshinit(&["--log-level", "trace", "--", "sh", "-c", "exit 9"]),
        Stdio::null(),
        write,
    );
    assert_eq!(how(p.wait(T)), "exit 9", "a FIFO");

    // A stream socket, as journald's stdout/stderr stream is.
    let (_peer, ours) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let ours = OwnedFd::from(ours);
    fill(&ours);
    let mut p = Spawned::start(
        meshinit(&["--log-level", "trace", "--", "sh", "-c", "exit 9"]),
        Stdio::null(),
        ours,
    );
    assert_eq!(how(p.wait(T)), "exit 9", "a socket");
}

/// Whether this kernel answers `pwritev2(RWF_NOWAIT)` on a full pipe with EAGAIN rather
/// than waiting or refusing the flag (Linux 6.4 and later).
fn nowait_pipes() -> bool {
    let (_read, write) = nix::unistd::pipe().expect("pipe");
    fill(&write);
    let byte = [b'y'];
    let iov = nix::libc::iovec {
        iov_base: byte.as_ptr() as *mut nix::libc::c_void,
        iov_len: 1,
    };
    // SAFETY: one iovec pointing at `byte`, which outlives the call; offset -1 is the
    // current position.
    let n = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pwritev2,
            std::os::fd::AsRawFd::as_raw_fd(&write) as nix::libc::c_long,
            &iov as *const nix::libc::iovec,
            1 as nix::libc::c_long,
            -1 as nix::libc::c_long,
            -1 as nix::libc::c_long,
            nix::libc::RWF_NOWAIT as nix::libc::c_long,
        )
    };
    n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(nix::libc::EAGAIN)
}

#[test]
fn a_stuck_log_pipe_of_another_user_never_blocks_meshinit() {
    // A container runtime's pipe (root's) handed to a container that runs as an
    // unprivileged user: meshinit may not open it again, and writes with RWF_NOWAIT.
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root to create a pipe of another user");
        return;
    }
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        skip_or_fail("no user 'nobody' in /etc/passwd");
        return;
    };
    if !nowait_pipes() {
        skip_or_fail("this kernel does not honour RWF_NOWAIT on pipes (before Linux 6.4)");
        return;
    }
    // The build directory may be closed to other users: run a copy.
    let dir = temp_dir("stuck-pipe-other-user");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("meshinit");
    std::fs::copy(meshinit_bin(), &bin).expect("copy meshinit");
    let (_reader, write) = pipe();
    fill(&write);
    let mut cmd = Command::new(&bin);
    cmd.args(["--log-level", "trace", "--", "sh", "-c", "exit 9"])
        .env_remove("RUST_LOG")
        .current_dir(dir.path())
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw());
    let mut p = Spawned::start(cmd, Stdio::null(), write);
    assert_eq!(how(p.wait(T)), "exit 9");
}

#[test]
fn check_that_cannot_write_its_plan_exits_74_and_says_why() {
    for (what, stdout) in [
        ("/dev/full", OwnedFd::from(dev_full())),
        ("a pipe without reader", closed_pipe()),
    ] {
        let (mut err, err_w) = pipe();
        let mut p = Spawned::start(meshinit(&["check", "--", "/bin/true"]), stdout, err_w);
        assert_eq!(how(p.wait(T)), "exit 74", "stdout {what}");
        let mut said = String::new();
        err.read_to_string(&mut said).expect("read stderr");
        assert!(
            said.starts_with("meshinit: cannot write the plan to stdout: "),
            "stdout {what}: {said}"
        );
        assert!(!said.contains("panicked"), "{said}");
    }
    // The same for --help, whose whole purpose is its output.
    let (mut err, err_w) = pipe();
    let mut p = Spawned::start(meshinit(&["--help"]), dev_full(), err_w);
    assert_eq!(how(p.wait(T)), "exit 74", "--help >/dev/full");
    let mut said = String::new();
    err.read_to_string(&mut said).expect("read stderr");
    assert!(said.contains("cannot write to stdout"), "{said}");
}

#[test]
fn a_configuration_error_into_a_closed_pipe_is_still_exit_64() {
    // `meshinit ... 2>&1 | head -1`: head has gone before the rest of the message.
    let mut p = Spawned::start(
        meshinit(&["--probe-http", "nope", "--", "/bin/true"]),
        Stdio::null(),
        closed_pipe(),
    );
    assert_eq!(how(p.wait(T)), "exit 64", "a configuration error");
    let mut p = Spawned::start(
        meshinit(&["--no-such-flag", "--", "/bin/true"]),
        Stdio::null(),
        closed_pipe(),
    );
    assert_eq!(how(p.wait(T)), "exit 64", "a usage error");
    let mut p = Spawned::start(
        meshinit(&["check", "--probe-http", "nope", "--", "/bin/true"]),
        closed_pipe(),
        closed_pipe(),
    );
    assert_eq!(
        how(p.wait(T)),
        "exit 64",
        "check with a configuration error"
    );
}

/// The value of an unlabelled series in `/metrics`, once it is served.
fn metric(port: u16, name: &str) -> Option<f64> {
    let (code, body) = get(port, "/metrics")?;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn a_log_reader_killed_mid_run_costs_log_lines_not_the_drain_or_the_cleanup() {
    // meshinit's stderr is a FIFO read by `cat`; cat is SIGKILLed while meshinit runs with
    // kuma-dp (a log collector dying, journald restarting). Probe results are logged at
    // debug every 100 ms, so lines keep failing from then on.
    let (s, port) = Scenario::new("log-reader-gone")
        .listening_app()
        .opt(&["--log-level", "debug", "--probe-period", "100ms"])
        .with_status();
    let fifo = s.dir.join("log.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut cmd = Command::new("cat");
    cmd.arg(&fifo);
    let reader = Proc::start(cmd);
    // Opening for writing without blocking succeeds once cat has the FIFO open.
    let log = poll("cat to open the FIFO", T, || {
        OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .ok()
    });
    // meshinit gets a blocking descriptor, as a shell's `2>fifo` gives.
    fcntl(&log, FcntlArg::F_SETFL(OFlag::empty())).expect("F_SETFL");
    let mut p = Spawned::start(s.command(), Stdio::null(), log);
    reader.wait_for_line("service running and ready", T);
    let work_dir = s
        .dp_argv()
        .last()
        .and_then(|a| a.strip_prefix("--work-dir=").map(std::path::PathBuf::from))
        .expect("a --work-dir given to kuma-dp");
    assert!(work_dir.is_dir());

    drop(reader); // SIGKILL: the log reader is gone.
    let dropped = poll("log lines counted as dropped", T, || {
        if let Some(status) = p.0.try_wait().expect("try_wait") {
            panic!(
                "meshinit ended ({}) when its log reader went away",
                how(status)
            );
        }
        metric(port, "meshinit_log_lines_dropped_total").filter(|n| *n > 0.0)
    });
    assert!(dropped >= 1.0);
    assert_eq!(get(port, "/ready").map(|r| r.0), Some(200), "still serving");

    // The stop runs in full: kuma-dp drains first, then the app is stopped.
    let app_pid: i32 = s.app.wait_for("start", T).field("pid").parse().unwrap();
    let dp_pid: i32 = s.dp.wait_for("start", T).field("pid").parse().unwrap();
    kill(Pid::from_raw(p.pid()), Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(
        how(p.wait(T)),
        "exit 143",
        "the app's TERM, as without logs"
    );
    let dp_exit = s.dp.wait_for("exit", T);
    assert_eq!(dp_exit.field("reason"), "drained", "{}", s.timeline());
    let app_term = s
        .app
        .wait_for_match("signal", |e| e.rest.starts_with("TERM"), T);
    assert!(
        dp_exit.t_ns < app_term.t_ns,
        "kuma-dp drained before the app got TERM:\n{}",
        s.timeline()
    );
    assert!(!work_dir.exists(), "{} was left behind", work_dir.display());
    assert!(
        is_dead(app_pid) && is_dead(dp_pid),
        "nothing is left running"
    );
}
