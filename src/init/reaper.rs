//! The one place that waits on children.
//!
//! `waitpid(-1)` collects every child meshinit has: the app, kuma-dp, exec
//! probes, and every orphan re-parented to it (as PID 1 or as a child
//! subreaper). Nothing else may wait: a second waiter would steal statuses.

use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::init::exit::ExitStatus;

/// What one pass of the reaper found.
#[derive(Debug, Default)]
pub struct Reaped {
    pub exited: Vec<(Pid, ExitStatus)>,
    /// Children stopped by a signal (job control: Ctrl-Z), with the signal.
    pub stopped: Vec<(Pid, i32)>,
    /// meshinit has no child left at all (ECHILD). As PID 1 or a child
    /// subreaper every live descendant has a living ancestor among
    /// meshinit's children, so none is left either.
    pub no_children: bool,
}

/// Reaps every child that has exited, without blocking, and reports the
/// ones that were stopped (each stop is reported once).
pub fn reap() -> Reaped {
    let mut out = Reaped::default();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(pid, code)) => out.exited.push((pid, ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                out.exited.push((pid, ExitStatus::Signaled(sig as i32)))
            }
            Ok(WaitStatus::Stopped(pid, sig)) => out.stopped.push((pid, sig as i32)),
            Ok(WaitStatus::StillAlive) => return out,
            Err(Errno::ECHILD) => {
                out.no_children = true;
                return out;
            }
            // Continue reports need WCONTINUED, which is not asked for;
            // skip anything else and keep reaping.
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return out,
        }
    }
}

/// Whether meshinit has any child at all, exited or not, without reaping
/// it (WNOWAIT): the status stays for `reap`.
pub fn has_children() -> bool {
    !matches!(
        waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Err(Errno::ECHILD)
    )
}

/// Makes meshinit the reaper of its orphaned descendants when it is not
/// PID 1, so the app's double-forked children are still reaped and found
/// at cleanup.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}
