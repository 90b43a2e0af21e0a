//! What the two test programs (`meshinit-test-app`, `fake-kuma-dp`) share:
//! the record file of `<CLOCK_MONOTONIC ns> <event> ...` lines the tests read
//! back, signal names as the records write them, and dying by a signal. Included by both with
//! `#[path]`: each is a standalone binary.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use nix::libc;
use nix::sys::signal::Signal;

/// The record file, opened once at start (`None`: recording is off), and
/// the program's name for messages.
static RECORD: OnceLock<(Option<File>, &'static str)> = OnceLock::new();

/// Opens the record file at `path` (appending, created mode 0666 so that a
/// program running as another user can write to it too); exits 2 when it
/// cannot, as a test cannot go on without it.
pub fn open(program: &'static str, path: Option<String>) {
    let file = path.map(|path| {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o666)
            .open(&path)
            .unwrap_or_else(|e| {
                let _ = writeln!(
                    std::io::stderr(),
                    "{program}: cannot open record file {path}: {e}"
                );
                std::process::exit(2);
            })
    });
    RECORD
        .set((file, program))
        .unwrap_or_else(|_| panic!("record opened once"));
}

/// Appends one event line, stamped with CLOCK_MONOTONIC.
pub fn record(line: &str) {
    if let Some((Some(mut file), program)) = RECORD.get().map(|(f, p)| (f.as_ref(), *p)) {
        let full = format!("{} {line}\n", now_ns());
        // O_APPEND and one buffer: a regular file takes it in one write(2).
        if let Err(e) = file.write_all(full.as_bytes()) {
            let _ = writeln!(std::io::stderr(), "{program}: writing record: {e}");
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock the tests compare records on.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Dies by `signo` if its default action ends the process: SIG_DFL
/// restored, raised, unblocked in this thread. Returns for a signal whose
/// default action does not terminate (CHLD, WINCH, ...).
pub fn raise_default(signo: i32) {
    // SAFETY: plain libc calls on a sigset we own; with SIG_DFL restored,
    // raising the signal and unblocking it in this thread ends the process
    // with that signal.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signo);
        libc::raise(signo);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// A signal's name without `SIG` (`TERM`), or its number.
pub fn sig_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(sig) => sig.as_str().trim_start_matches("SIG").to_string(),
        Err(_) => signo.to_string(),
    }
}
