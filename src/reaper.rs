//! The one place that waits on children.
//!
//! `waitpid(-1)` collects every child meshinit has: the app, kuma-dp, exec
//! probes, and every orphan re-parented to it (as PID 1 or as a child
//! subreaper). Nothing else may wait: a second waiter would steal statuses.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::exit::ExitStatus;

/// Reaps every child that has exited, without blocking.
pub fn reap() -> Vec<(Pid, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid, ExitStatus::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                out.push((pid, ExitStatus::Signaled(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return out,
            // Stop/continue reports need WUNTRACED/WCONTINUED, which are not
            // asked for; skip anything else and keep reaping.
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return out,
        }
    }
}

/// Makes meshinit the reaper of its orphaned descendants when it is not
/// PID 1, so the app's double-forked children are still reaped and found
/// at cleanup.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}
