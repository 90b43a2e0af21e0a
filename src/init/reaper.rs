//! The one place that waits on children.
//!
//! `waitpid(-1)` collects every child meshinit has: the app, kuma-dp, exec
//! probes, and every orphan re-parented to it (as PID 1 or as a child
//! subreaper). Nothing else may wait: a second waiter would steal statuses.

use std::time::Duration;

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

/// As [`wait_for`], within `limit`: a child still running then is killed
/// with its process group (SIGKILL) and `Ok(None)` returned once it is
/// gone. The wait is a poll(2) on a pidfd (Linux 5.3), so nothing spins;
/// where pidfds are missing the wait is [`wait_for`]'s, unbounded.
pub fn wait_within(pid: Pid, limit: Duration) -> nix::Result<Option<ExitStatus>> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor, owned from here on, or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) } as libc::c_int;
    if raw < 0 {
        return wait_for(pid).map(Some);
    }
    // SAFETY: `raw` is a descriptor this call just opened and nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one pollfd we own, its count 1.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            // Readable: it has exited; the status is waiting.
            1.. => return wait_for(pid).map(Some),
            0 => {
                // Its group first (a shell's children too); the pid alone
                // when it has none of its own.
                if nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL).is_err() {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
                return wait_for(pid).map(|_| None);
            }
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return wait_for(pid).map(Some),
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

    /// A child that does not end within the limit is killed, with the
    /// children of its process group, and waited for: nothing is left and
    /// the caller learns it did not finish; one that ends in time gives its
    /// status.
    #[test]
    fn a_bounded_wait_kills_what_overstays() {
        use std::os::unix::process::CommandExt;
        // Waited for by the functions under test, not by std's handle.
        #[allow(clippy::zombie_processes)]
        let spawn = |script: &str| {
            let child = std::process::Command::new("/bin/sh")
                .args(["-c", script])
                .process_group(0)
                .spawn()
                .unwrap();
            Pid::from_raw(child.id() as i32)
        };
        let pid = spawn("sleep 30 & sleep 30");
        let started = std::time::Instant::now();
        assert_eq!(wait_within(pid, Duration::from_millis(200)), Ok(None));
        assert!(started.elapsed() < Duration::from_secs(5));
        // The group is gone too: its background sleep, killed, becomes a
        // zombie of the test's init until that reaps it; then signalling
        // the group finds nobody.
        let gone = (0..250).any(|_| {
            let gone = nix::sys::signal::killpg(pid, None) == Err(Errno::ESRCH);
            if !gone {
                std::thread::sleep(Duration::from_millis(20));
            }
            gone
        });
        assert!(gone, "the background sleep of the killed group survived");
        let pid = spawn("exit 3");
        assert_eq!(
            wait_within(pid, Duration::from_secs(10)),
            Ok(Some(ExitStatus::Code(3)))
        );
    }
}
