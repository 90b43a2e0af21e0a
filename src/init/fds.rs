//! Descriptors meshinit inherited, and systemd socket activation.
//!
//! Whatever a parent left open beyond stdio (a socket-activated listener,
//! `3>file` in a script) is meant for the app, as under tini: it reaches the
//! app and nothing else. kuma-dp and exec probes start without it, so they
//! cannot hold a listener open or write to a file that was not for them.
//! With socket activation (`LISTEN_FDS`, with `LISTEN_PID` naming meshinit)
//! the app gets `LISTEN_PID` rewritten to its own pid, as catatonit does,
//! since `sd_listen_fds` ignores descriptors announced for another process;
//! kuma-dp and probes get none of the `LISTEN_*` variables.

use std::ffi::{CString, OsStr};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;

/// The systemd socket-activation variables.
pub const LISTEN_VARS: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// Descriptors (above stdio) that meshinit inherited open across exec.
static INHERITED: OnceLock<Vec<RawFd>> = OnceLock::new();

/// Marks every descriptor meshinit inherited close-on-exec, so that only
/// the app gets them back (see [`inherited`]). Call once at start, before
/// anything is spawned: meshinit's own descriptors are all close-on-exec,
/// so the ones that are not were inherited.
pub fn adopt_inherited() {
    INHERITED.get_or_init(|| {
        let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        fds.retain(|&fd| {
            // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's
            // flags; a number that is not open (the directory listing's
            // own, now closed) fails and is dropped.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            match fcntl(fd, FcntlArg::F_GETFD) {
                Ok(flags) if flags & libc::FD_CLOEXEC == 0 => {
                    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_ok()
                }
                _ => false,
            }
        });
        fds.sort_unstable();
        fds
    });
}

/// The descriptors meshinit inherited (empty before [`adopt_inherited`]).
pub fn inherited() -> &'static [RawFd] {
    INHERITED.get().map_or(&[], Vec::as_slice)
}

/// Whether `LISTEN_FDS` was passed to meshinit itself (`LISTEN_PID` is its
/// pid): the app then gets `LISTEN_PID` rewritten to its own.
pub fn socket_activated(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let ours = env("LISTEN_PID").is_some_and(|p| p.trim() == std::process::id().to_string());
    ours && env("LISTEN_FDS").is_some_and(|n| n.trim().parse::<u32>().is_ok())
}

/// Everything `execve` needs, built before the fork so that the child only
/// writes its pid into `LISTEN_PID=` and calls `execve`: no allocation
/// between fork and exec. Used for the app when socket-activated (std's
/// `Command` fixes the environment before the child's pid is known).
pub struct ExecWithListenPid {
    path: CString,
    /// Owns the strings `argv` and `envp` point into.
    _strings: Vec<CString>,
    /// `LISTEN_PID=` followed by room for any pid and its NUL.
    listen_pid: Vec<u8>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into buffers this struct owns and never
// changes after construction (the pid is written into `listen_pid` only in
// the forked child, which has its own copy of the memory).
unsafe impl Send for ExecWithListenPid {}
// SAFETY: as above; nothing is shared mutably between threads.
unsafe impl Sync for ExecWithListenPid {}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl ExecWithListenPid {
    /// `program` is looked up on PATH as `execvp` would, when it has no
    /// slash; the environment is meshinit's minus `remove` and `LISTEN_PID`.
    pub fn new(program: &OsStr, args: &[String], remove: &[&str]) -> std::io::Result<Self> {
        let nul = |b: &[u8]| {
            CString::new(b).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a NUL byte in the command",
                )
            })
        };
        let path = nul(resolve(program).as_os_str().as_bytes())?;
        let mut strings = vec![nul(program.as_bytes())?];
        for a in args {
            strings.push(nul(a.as_bytes())?);
        }
        let argc = strings.len();
        for (k, v) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name == "LISTEN_PID" || remove.contains(&name.as_ref()) {
                continue;
            }
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            if let Ok(c) = CString::new(kv) {
                strings.push(c);
            }
        }
        let mut listen_pid = LISTEN_PID_PREFIX.to_vec();
        listen_pid.resize(LISTEN_PID_PREFIX.len() + 21, 0);
        let mut argv: Vec<*const libc::c_char> =
            strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> =
            strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp.push(listen_pid.as_ptr().cast());
        envp.push(std::ptr::null());
        Ok(ExecWithListenPid {
            path,
            _strings: strings,
            listen_pid,
            argv,
            envp,
        })
    }

    /// Writes `pid` after `LISTEN_PID=`, without allocating.
    fn write_listen_pid(&mut self, pid: u32) {
        let mut digits = [0u8; 10];
        let (mut n, mut len) = (pid, 0);
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let start = LISTEN_PID_PREFIX.len();
        for i in 0..len {
            self.listen_pid[start + i] = digits[len - 1 - i];
        }
        self.listen_pid[start + len] = 0;
    }

    /// In the forked child: writes its pid into `LISTEN_PID` and executes
    /// the program. Returns only on failure. Async-signal-safe.
    pub fn exec(&mut self) -> std::io::Error {
        self.write_listen_pid(std::process::id());
        // SAFETY: every pointer is to a NUL-terminated string owned by
        // `self`, and both arrays end with a null pointer.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// The program's path as `execvp` finds it, through the one resolver the
/// configuration check uses (`config::host::find_executable`): as given
/// with a slash, otherwise the first executable file of that name on PATH.
/// When there is none (the file went away since the check), the bare name,
/// which then fails as "not found" (127).
fn resolve(program: &OsStr) -> PathBuf {
    crate::init::path::find_executable(program, None, std::env::var_os("PATH"))
        .unwrap_or_else(|_| PathBuf::from(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_written_into_listen_pid_and_the_program_found_on_path() {
        let mut e = ExecWithListenPid::new(OsStr::new("sh"), &["-c".into()], &[]).unwrap();
        let shown = |e: &ExecWithListenPid| {
            std::ffi::CStr::from_bytes_until_nul(&e.listen_pid)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        e.write_listen_pid(4_194_304);
        assert_eq!(shown(&e), "LISTEN_PID=4194304");
        e.write_listen_pid(7);
        assert_eq!(shown(&e), "LISTEN_PID=7");
        assert!(e.path.to_str().unwrap().ends_with("/sh"), "{:?}", e.path);
        assert_eq!(e.argv.len(), 3, "sh -c and the null pointer");
        assert!(e.envp.last().unwrap().is_null());
    }
}
