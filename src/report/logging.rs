//! Logs go to stderr, as text for people or JSON for collectors, with
//! structured fields (`phase`, `elapsed`, `pid`, ...).
//!
//! No output failure may end meshinit: once the app runs, an init that
//! aborts because its log reader went away (journald restarting, a log
//! collector dying, `2>/dev/full`) orphans the app and kuma-dp undrained.
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE, and
//! `eprintln!` panics on that; so does tracing-subscriber's own report of a
//! failed write. Every line meshinit writes therefore goes through [`Stderr`]
//! (the logs) or [`say`] (the messages before anything runs), which never
//! fail: a line that cannot be written is dropped and counted
//! ([`dropped_lines`], `meshinit_log_lines_dropped_total` in `/metrics`).
//!
//! Nor may a log reader stall the event loop (the status endpoint, signals,
//! the drain all wait behind a blocked write): a reader alive but no longer
//! reading fills its pipe, and a blocking write then waits for ever. Making
//! stderr non-blocking is not meshinit's to do, since the flag belongs to
//! the open file description the app and kuma-dp share. So when stderr is a
//! pipe or a FIFO (a container runtime's, `| logger`), meshinit opens it
//! again through `/proc/self/fd/2`, which gives a description of its own,
//! and makes that one non-blocking (another user's pipe, which it may not
//! open, is written with `pwritev2(RWF_NOWAIT)`, which Linux 6.4 and later
//! honour for pipes); when it is a socket (journald's stream), each line is
//! sent with `MSG_DONTWAIT`. A full pipe or socket answers
//! EAGAIN at once and the line is dropped and counted; so is one to a
//! stderr another program made non-blocking. A terminal or a file is
//! written plainly (a terminal stopped with Ctrl-S still blocks, as it does
//! every program). A line cut by a partial write is ended with a newline
//! before the next one, so that line starts on its own.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::libc;

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// Log lines (and messages) that could not be written to stderr.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The last line was written only in part: the next one starts with a
/// newline so it is not glued to the remains of the cut one.
static CUT: AtomicBool = AtomicBool::new(false);
/// Where log lines go, decided at the first one (see the module
/// documentation).
static TARGET: OnceLock<Target> = OnceLock::new();

enum Target {
    /// A pipe or FIFO, opened again, non-blocking, for meshinit alone.
    Pipe(OwnedFd),
    /// A pipe meshinit may not open again (another user's: a container
    /// runtime's, when the container runs as an unprivileged user):
    /// `pwritev2(RWF_NOWAIT)` on descriptor 2, until the kernel refuses it.
    NoWait,
    /// A stream socket: `send(MSG_DONTWAIT)` on descriptor 2.
    Socket,
    /// A terminal, a file, or a pipe neither way works for.
    Plain,
}

/// The kernel refused RWF_NOWAIT on stderr (before Linux 6.4 for pipes;
/// FIFOs opened by path never take it): plain writes from then on.
static NOWAIT_REFUSED: AtomicBool = AtomicBool::new(false);

pub fn init(json: bool, level: Level) {
    crate::basics::escape::set_json(json);
    let builder = tracing_subscriber::fmt()
        .with_writer(Stderr)
        // The writer never fails; should it ever, the report of the
        // failure would be an `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_max_level(level)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// How many log lines could not be written since meshinit started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes a message of meshinit's own to stderr (followed by a newline)
/// before anything runs (a configuration error, `check`'s verdict); counted
/// as dropped when it cannot be. It may wait for a slow reader, as any
/// command-line tool's message does: nothing is supervised yet, and a
/// reader that is gone fails the write at once (EPIPE) rather than block.
pub fn say(message: &str) {
    let mut line = String::with_capacity(message.len() + 1);
    line.push_str(message);
    line.push('\n');
    write_line(&mut io::stderr(), line.as_bytes());
}

/// Descriptor 2, one write(2) (or send(2)) at a time, never waiting where
/// the file allows it (see the module documentation).
struct RawStderr;

impl Write for RawStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match target() {
            Target::Pipe(fd) => nix::unistd::write(fd, buf).map_err(io::Error::from),
            Target::Socket => {
                // SAFETY: send(2) only reads `buf`, which outlives the call.
                let n = unsafe {
                    libc::send(
                        libc::STDERR_FILENO,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            }
            Target::NoWait if !NOWAIT_REFUSED.load(Ordering::Relaxed) => write_nowait(buf),
            Target::NoWait | Target::Plain => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One `pwritev2(RWF_NOWAIT)` to descriptor 2; plain when refused.
fn write_nowait(buf: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let write = || {
        // SAFETY: pwritev2 only reads `buf` through one iovec that points
        // into it and outlives the call. The offset -1 (both halves, for
        // 32-bit kernels) means the current position, as for write(2); a
        // pipe has no other.
        unsafe {
            libc::syscall(
                libc::SYS_pwritev2,
                libc::c_long::from(libc::STDERR_FILENO),
                &iov as *const libc::iovec,
                1 as libc::c_long,
                -1 as libc::c_long,
                -1 as libc::c_long,
                libc::c_long::from(libc::RWF_NOWAIT),
            )
        }
    };
    // With RWF_NOWAIT a pipe also answers EAGAIN when another writer (the
    // app, kuma-dp) holds its lock for a moment: try again, a few times,
    // while poll says there is room, rather than drop the line.
    let mut tries = 0;
    loop {
        let n = write();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) if tries < 3 && has_room() => tries += 1,
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                NOWAIT_REFUSED.store(true, Ordering::Relaxed);
                return io::stderr().write(buf);
            }
            _ => return Err(e),
        }
    }
}

/// Whether stderr can take more now (poll(2) with no wait).
fn has_room() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDERR_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd it is given, which we
    // own, and with a zero timeout does not wait.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & libc::POLLOUT != 0
}

fn target() -> &'static Target {
    TARGET.get_or_init(|| {
        let kind = nix::sys::stat::fstat(io::stderr()).map(|st| st.st_mode & libc::S_IFMT);
        match kind {
            Ok(libc::S_IFIFO) => reopen_nonblocking().map_or(Target::NoWait, Target::Pipe),
            Ok(libc::S_IFSOCK) => Target::Socket,
            _ => Target::Plain,
        }
    })
}

/// A description of stderr's pipe of meshinit's own, non-blocking and
/// close-on-exec. `None` without /proc, for another user's pipe (EACCES),
/// or when the pipe has no reader left (ENXIO; writes then fail with
/// EPIPE, which drops lines too).
fn reopen_nonblocking() -> Option<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/proc/self/fd/2")
        .ok()?;
    Some(OwnedFd::from(file))
}

/// Writes one whole line with as few write(2) calls as the file takes;
/// any failure drops the rest of it, counted.
fn write_line(out: &mut impl Write, line: &[u8]) {
    if CUT.load(Ordering::Relaxed) {
        match out.write(b"\n") {
            Ok(1) => CUT.store(false, Ordering::Relaxed),
            _ => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let mut rest = line;
    while !rest.is_empty() {
        match out.write(rest) {
            Ok(0) => break,
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if !rest.is_empty() {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        if rest.len() < line.len() {
            CUT.store(true, Ordering::Relaxed);
        }
    }
}

/// tracing-subscriber's writer: stderr, where a failed write is a dropped,
/// counted line and never an error (the formatter hands over each event as
/// one buffer, so one call is one line).
#[derive(Clone, Copy, Debug)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_line(&mut RawStderr, buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_line(&mut RawStderr, buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes `room` bytes, then fails like a full pipe.
    struct Full {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_that_cannot_be_written_is_counted_and_a_cut_one_ended() {
        // One test, since the counters are the process's.
        let before = dropped_lines();
        let mut out = Full {
            taken: Vec::new(),
            room: 6,
        };
        write_line(&mut out, b"first line\n");
        assert_eq!(dropped_lines(), before + 1);
        assert_eq!(out.taken, b"first ");
        out.room = 100;
        write_line(&mut out, b"second\n");
        assert_eq!(
            out.taken, b"first \nsecond\n",
            "the cut line is ended first"
        );
        out.room = 0;
        write_line(&mut out, b"third\n");
        assert_eq!(dropped_lines(), before + 2);
        out.room = 100;
        write_line(&mut out, b"fourth\n");
        assert_eq!(
            out.taken, b"first \nsecond\nfourth\n",
            "nothing was cut when nothing was written"
        );
    }
}
