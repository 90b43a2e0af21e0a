//! Signal intake: every signal meshinit handles is blocked before the first
//! fork and read from a signalfd in the event loop.
//!
//! Blocking first means no signal can be lost between spawning the app and
//! being ready to handle it (dumb-init PR #104), and there is no signal
//! handler at all: nothing runs in signal context, nothing races.

use std::io;

use nix::libc;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;

/// Synchronous fault signals stay unblocked: they mean meshinit itself
/// crashed, and blocking them would turn a crash into a hang.
const FAULTS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGABRT,
];

/// The set meshinit takes over: everything but the fault signals.
fn handled_set() -> SigSet {
    let mut set = SigSet::all();
    for s in FAULTS {
        set.remove(s);
    }
    set
}

/// The signal state meshinit was started with: its children start with it
/// again (see `spawn`), as tini's do, so `nohup meshinit -- app` keeps the
/// app immune to SIGHUP and a background job's ignored INT stays ignored.
#[derive(Clone, Copy, Debug)]
pub struct Inherited {
    /// The signal mask.
    pub mask: SigSet,
    /// Bit `N-1` set: signal N was ignored (SIG_IGN).
    pub ignored: u64,
}

impl Inherited {
    /// Whether signal `signo` was ignored when meshinit started.
    pub fn is_ignored(&self, signo: i32) -> bool {
        (1..=64).contains(&signo) && self.ignored & (1 << (signo - 1)) != 0
    }
}

static INHERITED: std::sync::OnceLock<Inherited> = std::sync::OnceLock::new();

/// Records the signal state meshinit was started with; the first call
/// wins. The binary calls it from an `.init_array` constructor, before
/// Rust's runtime sets SIGPIPE to ignored (which would otherwise be
/// indistinguishable from an inherited ignored SIGPIPE); `block` calls it
/// too, for callers without that constructor.
pub fn record_inherited() {
    INHERITED.get_or_init(|| {
        let mut ignored = 0u64;
        for signo in 1..=nix::libc::SIGRTMAX().min(64) {
            // SAFETY: a null `act` only reads the current action into `old`,
            // which is a plain C struct that zeroed memory initialises.
            let mut old: nix::libc::sigaction = unsafe { std::mem::zeroed() };
            let rc = unsafe { nix::libc::sigaction(signo, std::ptr::null(), &mut old) };
            if rc == 0 && old.sa_sigaction == nix::libc::SIG_IGN {
                ignored |= 1 << (signo - 1);
            }
        }
        Inherited {
            mask: SigSet::thread_get_mask().unwrap_or_else(|_| SigSet::empty()),
            ignored,
        }
    });
}

/// Puts SIGCHLD back to its default action, the inherited state recorded
/// first (children get it back): inherited as ignored, it makes the kernel
/// reap meshinit's children itself and their statuses are lost. [`block`]
/// does it before the app; a child run while the configuration is built
/// (`iptables-save`) needs it before that.
pub fn default_sigchld() {
    record_inherited();
    // SAFETY: SIG_DFL installs no handler.
    unsafe { nix::libc::signal(nix::libc::SIGCHLD, nix::libc::SIG_DFL) };
}

/// The signal state meshinit was started with (recorded on first use when
/// nothing recorded it earlier).
pub fn inherited() -> Inherited {
    record_inherited();
    *INHERITED.get().expect("recorded just above")
}

/// Blocks every handled signal on the calling thread. Call before any
/// thread or child exists: both inherit the mask (children get the mask
/// meshinit inherited back right before exec, see `spawn`).
///
/// Every disposition is also reset to the default first: an inherited
/// `SIGCHLD` set to ignore would make the kernel reap the app behind
/// meshinit's back (and meshinit wait forever). The inherited ignored set
/// is recorded first; children get it back.
pub fn block() -> nix::Result<()> {
    record_inherited();
    for signo in 1..=nix::libc::SIGRTMAX() {
        if signo != nix::libc::SIGKILL && signo != nix::libc::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler; the C library refuses
            // (harmlessly) the real-time signals it reserves.
            unsafe { nix::libc::signal(signo, nix::libc::SIG_DFL) };
        }
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None)
}

/// Whether a signal received by meshinit is passed on to the app.
///
/// Not forwarded: SIGCHLD (ours, for reaping), SIGPIPE (raised by
/// meshinit's own writes to a closed pipe), and SIGURG (runtime-internal in
/// Go programs; forwarding it killed apps under other supervisors). Stop
/// signals are handled separately. The job-control signals SIGTSTP, SIGTTIN
/// and SIGTTOU are forwarded, as dumb-init does, and meshinit then stops
/// itself (see the driver; on a terminal it also stops when it sees a
/// Ctrl-Z stop the app). The kernel never sends
/// meshinit TTIN/TTOU for its own terminal use: it blocks them, which makes
/// the kernel let the operation through instead.
pub fn is_forwarded(signo: i32) -> bool {
    ![
        Signal::SIGCHLD as i32,
        Signal::SIGPIPE as i32,
        Signal::SIGURG as i32,
        Signal::SIGKILL as i32,
        Signal::SIGSTOP as i32,
    ]
    .contains(&signo)
}

/// SIGTSTP, SIGTTIN and SIGTTOU: the signals after which meshinit, having
/// passed them on, stops itself as dumb-init does.
pub fn is_job_control_stop(signo: i32) -> bool {
    [
        Signal::SIGTSTP as i32,
        Signal::SIGTTIN as i32,
        Signal::SIGTTOU as i32,
    ]
    .contains(&signo)
}

/// The signalfd of the handled set, non-blocking.
///
/// Two ways to wait on it: [`Signals::wait`] blocks the thread in poll(2)
/// (the plain init loop, which has nothing else to wait for), and
/// [`AsyncSignals`] hands it to tokio (the loop with probes, kuma-dp or the
/// status endpoint). Either way a wake-up costs one read(2) for every
/// signal pending (up to [`BATCH`] per call) into a buffer the caller keeps.
pub struct Signals {
    fd: SignalFd,
}

/// Signals read per read(2): a short read means none is left, so the
/// usual case (one signal) needs no second read to find EAGAIN.
const BATCH: usize = 16;

impl Signals {
    /// Opens a non-blocking signalfd for the handled set, which must already
    /// be blocked ([`block`]).
    pub fn open() -> io::Result<Signals> {
        let fd = SignalFd::with_flags(
            &handled_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )?;
        Ok(Signals { fd })
    }

    /// Appends every pending signal to `out`; `Ok` with nothing appended
    /// when none is pending. An error once something was read ends the
    /// batch (the next wake-up reads again).
    pub fn read_pending(&self, out: &mut Vec<i32>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut buf = [std::mem::MaybeUninit::<libc::signalfd_siginfo>::uninit(); BATCH];
        let before = out.len();
        loop {
            // SAFETY: read(2) writes at most size_of_val(&buf) bytes into
            // `buf`, which outlives the call; a signalfd only ever returns
            // whole `signalfd_siginfo` records.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ if out.len() > before => Ok(()),
                    _ => Err(e),
                };
            };
            let records = n / size;
            // SAFETY: the kernel wrote the first `records` records in full.
            out.extend(
                buf[..records]
                    .iter()
                    .map(|r| unsafe { r.assume_init_ref() }.ssi_signo as i32),
            );
            if records < BATCH {
                return Ok(());
            }
        }
    }

    /// Blocks until a signal is pending or `timeout` passes (`None`: no
    /// limit); whether one is pending. A wait cut short by EINTR returns
    /// `Ok(false)` early (the caller works out its deadlines afresh).
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        // Rounded up to whole milliseconds, so that a deadline is not woken
        // for early and polled again in a busy loop.
        let ms = match timeout {
            None => -1,
            Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        let mut fds = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: poll(2) on one pollfd that outlives the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            e => Err(e),
        }
    }

    /// The same signalfd, waited on by tokio's reactor.
    pub fn into_async(self) -> io::Result<AsyncSignals> {
        // SAFETY: tokio's registration (epoll) reads no Rust-visible state
        // through the descriptor, which AsyncFd owns from here on.
        let fd = unsafe { AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(AsyncSignals { fd })
    }
}

impl std::os::fd::AsRawFd for Signals {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// A readable stream of pending signals on tokio's reactor.
pub struct AsyncSignals {
    fd: AsyncFd<Signals>,
}

impl AsyncSignals {
    /// Waits for at least one signal and returns every pending one, in
    /// arrival order (standard signals coalesce, as POSIX allows).
    ///
    /// It never fails: once the app runs meshinit must go on supervising
    /// (catatonit's rule). A read error is logged and reported as a SIGCHLD
    /// (one may have been lost with it, and reaping is always safe) after a
    /// short pause, so a descriptor that keeps failing cannot spin the loop.
    pub async fn recv(&self) -> Vec<i32> {
        let mut out = Vec::new();
        loop {
            match self.read_ready(&mut out).await {
                Ok(()) if out.is_empty() => continue,
                Ok(()) => return out,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read signals; reaping, and trying again shortly");
                    tokio::time::sleep(READ_ERROR_PAUSE).await;
                    return vec![Signal::SIGCHLD as i32];
                }
            }
        }
    }

    async fn read_ready(&self, out: &mut Vec<i32>) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        let r = guard.get_inner().read_pending(out);
        guard.clear_ready();
        r
    }
}

/// How long meshinit waits before reading signals again after a read error.
pub const READ_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// A printable name for any signal number, real-time ones included
/// (`SIGRTMIN+6` for 40, as `kill -l` names them; the C library's own 32
/// and 33 by number).
pub fn name(signo: i32) -> String {
    let rtmin = nix::libc::SIGRTMIN();
    match Signal::try_from(signo) {
        Ok(s) => s.as_str().to_string(),
        Err(_) if signo == rtmin => "SIGRTMIN".to_string(),
        Err(_) if (rtmin..=nix::libc::SIGRTMAX()).contains(&signo) => {
            format!("SIGRTMIN+{}", signo - rtmin)
        }
        Err(_) => format!("SIG{signo}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_user_signals_but_not_internal_ones() {
        for s in [
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGQUIT,
            Signal::SIGCONT,
            Signal::SIGTSTP,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
        ] {
            assert!(is_forwarded(s as i32), "{s}");
        }
        for s in [Signal::SIGCHLD, Signal::SIGPIPE, Signal::SIGURG] {
            assert!(!is_forwarded(s as i32), "{s}");
        }
        assert!(is_forwarded(libc_rtmin() + 1));
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(40), "SIGRTMIN+6");
        assert_eq!(name(34), "SIGRTMIN");
        assert_eq!(name(32), "SIG32");
    }

    fn libc_rtmin() -> i32 {
        nix::libc::SIGRTMIN()
    }
}
