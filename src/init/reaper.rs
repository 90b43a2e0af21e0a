//! The one place that waits on children.
//!
//! `waitpid(-1)` collects every child meshinit has: the app, kuma-dp, exec
//! probes, and every orphan re-parented to it (as PID 1 or as a child
//! subreaper). Nothing else may wait: a second waiter would steal statuses.

use nix::errno::Errno;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;

use crate::init::exit::ExitStatus;

/// What one pass of the reaper found.
#[derive(Debug, Default)]
pub struct Reaped {
    pub exited: Vec<(Pid, ExitStatus)>,
    /// Children stopped by a signal (job control: Ctrl-Z), with the signal.
    pub stopped: Vec<(Pid, i32)>,
}

/// How one `waitpid` status word reads: decoded here, by the kernel's own
/// layout, rather than by nix's `waitpid`, which maps the signal to its
/// `Signal` enum and fails with EINVAL for the real-time signals (34-64)
/// after the kernel has already reaped the child, so that a child killed by
/// SIGRTMIN was never noticed and meshinit waited forever (issue 20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Exited, or killed by a signal: any signal number 1-64.
    Exited(ExitStatus),
    /// Stopped by this signal (job control).
    Stopped(i32),
    /// Anything else (a continue report, which is not asked for).
    Other,
}

/// Reads a raw status word as `waitpid(2)` fills it in.
pub fn decode(status: i32) -> Decoded {
    use nix::libc;
    if libc::WIFEXITED(status) {
        Decoded::Exited(ExitStatus::Code(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Decoded::Exited(ExitStatus::Signaled(libc::WTERMSIG(status)))
    } else if libc::WIFSTOPPED(status) {
        Decoded::Stopped(libc::WSTOPSIG(status))
    } else {
        Decoded::Other
    }
}

/// Reaps every child that has exited, without blocking, and reports the
/// ones that were stopped (each stop is reported once) in `out`, emptied
/// first. The caller keeps `out` from one pass to the next, so that a
/// reaped child costs no allocation.
pub fn reap(out: &mut Reaped) {
    use nix::libc;
    out.exited.clear();
    out.stopped.clear();
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status word into a c_int we own.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if rc == 0 {
            return;
        }
        if rc < 0 {
            // ECHILD: no child at all (`has_children` answers that where it
            // matters); anything else ends the pass too.
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return;
        }
        let pid = Pid::from_raw(rc);
        match decode(status) {
            Decoded::Exited(st) => out.exited.push((pid, st)),
            Decoded::Stopped(sig) => out.stopped.push((pid, sig)),
            // Continue reports need WCONTINUED, which is not asked for.
            Decoded::Other => {}
        }
    }
}

/// Blocks until the child `pid` has ended and returns how. Only for a
/// child meshinit runs to its end before anything else is started: the
/// `iptables-save` that tells whether transparent proxying is on (read
/// while the configuration is built) and `kumactl install
/// transparent-proxy` (`--transparent-proxy-install`, run before the app
/// and kuma-dp). `waitpid(pid)` on that one pid never takes another
/// child's status, so the `waitpid(-1)` of [`reap`] still sees every other
/// child; nothing else may call it once the app runs (the driver's loop
/// must not block).
pub fn wait_for(pid: Pid) -> nix::Result<ExitStatus> {
    use nix::libc;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status word into a c_int we own.
        let rc = unsafe { libc::waitpid(pid.as_raw(), &mut status, 0) };
        if rc < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        // Without WUNTRACED only an end is reported.
        if let Decoded::Exited(st) = decode(status) {
            return Ok(st);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The status words the kernel builds (`exit << 8`, `signal`,
    /// `signal << 8 | 0x7f`), for every signal number there is: a
    /// real-time signal death is 128+N like any other.
    #[test]
    fn every_signal_number_decodes_to_128_plus_n() {
        for sig in 1..=64 {
            assert_eq!(
                decode(sig),
                Decoded::Exited(ExitStatus::Signaled(sig)),
                "killed by {sig}"
            );
            assert_eq!(ExitStatus::Signaled(sig).code(), 128 + sig);
            // With a core dump (0x80) it is the same death.
            assert_eq!(
                decode(sig | 0x80),
                Decoded::Exited(ExitStatus::Signaled(sig))
            );
        }
        for code in [0, 1, 42, 255] {
            assert_eq!(decode(code << 8), Decoded::Exited(ExitStatus::Code(code)));
        }
        assert_eq!(decode((20 << 8) | 0x7f), Decoded::Stopped(20));
        assert_eq!(decode(0xffff), Decoded::Other, "a continue report");
    }
}
