//! Starting children: the app, kuma-dp and exec probes.
//!
//! Every child gets its own process group, so signals for the app never
//! reach kuma-dp and a group kill reaches the app's workers. Between fork
//! and exec only async-signal-safe system calls run; everything that
//! allocates or looks things up (users, groups, paths) happened before.

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{SigmaskHow, Signal};
use nix::unistd::{Pid, Uid};

use crate::init::user::Identity;

/// How to start one child.
pub struct Spec<'a> {
    pub program: &'a OsStr,
    pub args: &'a [String],
    pub user: Option<&'a Identity>,
    pub workdir: Option<&'a Path>,
    pub no_new_privs: bool,
    /// Hand the terminal on stdin to the child's process group, so Ctrl-C
    /// and Ctrl-Z reach it as in a shell.
    pub foreground: bool,
    /// Where stdout and stderr go (inherited when `None`).
    pub output: Option<std::os::fd::OwnedFd>,
    /// The app: it alone gets the descriptors meshinit inherited and the
    /// socket-activation variables (see `fds`).
    pub is_app: bool,
    /// The signal the child gets from the kernel when meshinit dies (even
    /// by SIGKILL, which meshinit cannot act on): see [`parent_death_signal`].
    pub parent_death_signal: Option<Signal>,
}

/// Whether a parent-death signal set now would fire when meshinit dies.
///
/// The kernel sends PR_SET_PDEATHSIG's signal when the *thread* that forked
/// the child exits, not the process. meshinit's event loop runs on the main
/// thread (a poll(2) loop in plain init mode, else tokio's current-thread
/// runtime driven by `block_on`), and every child is spawned from there (the
/// driver, its probes and kuma-dp's runner are local tasks of that loop), so
/// the forking thread lives exactly as long as meshinit. Should a spawn ever come from another thread (a unit
/// test's, say), the signal is not set rather than fire at that thread's
/// end and kill a child of a meshinit that is still running.
pub fn parent_death_signal(signal: Signal) -> Option<Signal> {
    (nix::unistd::gettid() == nix::unistd::getpid()).then_some(signal)
}

/// Whether meshinit's stdin is a terminal whose foreground group is ours:
/// only then is the terminal handed to the app (a backgrounded meshinit
/// must not steal it).
pub fn owns_terminal() -> bool {
    let stdin = std::io::stdin();
    nix::unistd::isatty(&stdin).unwrap_or(false)
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|pg| pg == nix::unistd::getpgrp())
}

/// Where meshinit was started. Children given no working directory start
/// there, as they always did, although meshinit itself moves to `/` once
/// the app runs (see `leave_start_dir`).
static START_DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// Records where meshinit was started; call before anything is spawned.
pub fn record_start_dir() {
    START_DIR.get_or_init(|| std::env::current_dir().ok());
}

/// Moves meshinit itself to `/`, as dumb-init does, so that it does not
/// keep the mount it was started in busy for the life of the service.
pub fn leave_start_dir() -> io::Result<()> {
    record_start_dir();
    std::env::set_current_dir("/")
}

/// Spawns the child and returns its pid (which is also its process group).
/// The exit status is collected by `reaper`, never here.
pub fn spawn(spec: Spec<'_>) -> io::Result<Pid> {
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args);
    cmd.process_group(0);
    // meshinit speaks to systemd itself; a child that also did would
    // confuse the service manager.
    const NOT_FOR_CHILDREN: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];
    // Only variables that are set: any `env_remove` makes std copy the
    // whole environment into a map and build a new one for execve, which
    // was 45 k instructions of every start when there was nothing to remove.
    let listen_vars: &[&str] = if spec.is_app {
        &[]
    } else {
        &crate::init::fds::LISTEN_VARS
    };
    for var in NOT_FOR_CHILDREN.iter().chain(listen_vars) {
        if std::env::var_os(var).is_some() {
            cmd.env_remove(var);
        }
    }
    let inherited_fds: &'static [std::os::fd::RawFd] = if spec.is_app {
        crate::init::fds::inherited()
    } else {
        &[]
    };
    // Socket activation: std's Command fixes the environment before the
    // child's pid is known, so the app is executed by hand with
    // LISTEN_PID filled in after the fork.
    let socket_activated =
        spec.is_app && crate::init::fds::socket_activated(&|k| std::env::var(k).ok());
    let mut exec_with_listen_pid = if socket_activated {
        Some(crate::init::fds::ExecWithListenPid::new(
            spec.program,
            spec.args,
            &NOT_FOR_CHILDREN,
        )?)
    } else {
        None
    };
    if let Some(dir) = spec
        .workdir
        .or_else(|| START_DIR.get().and_then(|d| d.as_deref()))
    {
        cmd.current_dir(dir);
    }
    if let Some(fd) = spec.output {
        let err = fd.try_clone()?;
        cmd.stdout(Stdio::from(fd));
        cmd.stderr(Stdio::from(err));
        cmd.stdin(Stdio::null());
    }
    let inherited = crate::init::signals::inherited();
    let identity = spec.user.cloned();
    let no_new_privs = spec.no_new_privs;
    let foreground = spec.foreground;
    let death_signal = spec.parent_death_signal;
    // Read before the fork: in the child, a different parent means meshinit
    // died before the parent-death signal was armed.
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only
    // makes async-signal-safe system calls (tcsetpgrp, setgroups,
    // setresgid, setresuid, prctl, getppid, fcntl, signal, sigprocmask,
    // execve) on
    // data prepared before the fork, and allocates nothing. std has already put the child
    // in its own process group at this point.
    unsafe {
        cmd.pre_exec(move || {
            if foreground {
                // All signals are still blocked (inherited from meshinit),
                // so the SIGTTOU that tcsetpgrp from a background group
                // raises cannot stop the child.
                let stdin = std::os::fd::BorrowedFd::borrow_raw(0);
                let _ = nix::unistd::tcsetpgrp(stdin, nix::unistd::getpid());
            }
            if let Some(id) = &identity {
                // Groups first, while still privileged; then gid, then uid,
                // real, effective and saved alike, so nothing can be regained.
                if Uid::effective().is_root() {
                    nix::unistd::setgroups(&id.groups)?;
                }
                nix::unistd::setresgid(id.gid, id.gid, id.gid)?;
                nix::unistd::setresuid(id.uid, id.uid, id.uid)?;
            }
            if no_new_privs {
                nix::sys::prctl::set_no_new_privs()?;
            }
            // After the user switch: the kernel clears the parent-death
            // signal whenever the credentials change (setresuid, setresgid),
            // so set before it, it would be gone for `--app-user`. (It is also
            // cleared when the program executed is set-user-ID, set-group-ID
            // or has file capabilities; meshinit cannot help that.)
            if let Some(sig) = death_signal {
                nix::sys::prctl::set_pdeathsig(sig)?;
                // meshinit may have died between the fork and the prctl: the
                // signal then never comes, so do not start the program at
                // all (the usual check: the parent pid is no longer ours).
                if nix::unistd::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
                }
            }
            // The app gets back what meshinit inherited (marked
            // close-on-exec at start so that nothing else does).
            for &fd in inherited_fds {
                nix::libc::fcntl(fd, nix::libc::F_SETFD, 0);
            }
            // Give the program back the signal state meshinit itself was
            // started with, as tini does: the mask survives exec, and
            // meshinit's own (every signal blocked, for its signalfd) would
            // keep an ordinary app from ever seeing its SIGTERM. This
            // closure is needed even when it has nothing else to do: std's
            // posix_spawn path leaves the mask as it is (measured: the app
            // got meshinit's mask). Ignored signals stay ignored (`nohup`
            // keeps working), except SIGCHLD: ignored, it would make the
            // kernel reap the child's own children behind its back.
            for signo in 1..=64 {
                if inherited.is_ignored(signo) && signo != nix::libc::SIGCHLD {
                    nix::libc::signal(signo, nix::libc::SIG_IGN);
                }
            }
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&inherited.mask), None)?;
            if let Some(exec) = exec_with_listen_pid.as_mut() {
                return Err(exec.exec());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Dropping the handle neither kills nor waits: the reaper owns the status.
    Ok(Pid::from_raw(child.id() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parent-death signal fires when the spawning *thread* ends: off the
    /// main thread (every unit test runs on one) none is set. The main
    /// thread's case is shown on the real binary (tests/faults.rs, init.rs).
    #[test]
    fn no_parent_death_signal_is_set_from_another_thread() {
        let got = std::thread::spawn(|| parent_death_signal(Signal::SIGTERM))
            .join()
            .unwrap();
        assert_eq!(got, None);
    }
}
