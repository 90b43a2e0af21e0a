//! Exit statuses: how a child ended, and the codes meshinit itself exits with.
//!
//! meshinit's own failures use sysexits(3) codes so that they never collide
//! with the common application codes (0, 1, 2, 126, 127, 128+N).

use std::fmt;

/// The configuration or command line is invalid; nothing was started.
pub const EX_USAGE: i32 = 64;
/// The application did not become healthy within `--startup-timeout`, or it
/// failed its liveness probes with `--on-unhealthy shutdown`.
pub const EX_UNAVAILABLE: i32 = 69;
/// The operating system refused something meshinit needs (fork, signalfd, ...).
pub const EX_OSERR: i32 = 71;
/// An output meshinit must write could not be: `meshinit check` (or
/// `--help`) could not write to stdout (a full disk, a closed pipe).
pub const EX_IOERR: i32 = 74;
/// kuma-dp failed: it crashed more than `--proxy-max-restarts` times within
/// the restart window, or did not become ready within `--proxy-ready-timeout`.
pub const EX_TEMPFAIL: i32 = 75;
/// `--transparent-proxy-install`: `kumactl install transparent-proxy`
/// failed or could not be run; nothing else was started.
pub const EX_CONFIG: i32 = 78;
/// `meshinit ctl`: the running meshinit refused this user (its control
/// socket admits only meshinit's own uid), or the socket cannot be opened.
pub const EX_NOPERM: i32 = 77;

/// The app command exists but cannot be executed (a directory, no execute
/// bit): what a shell, tini and `docker run` exit with.
pub const EX_NOT_EXECUTABLE: i32 = 126;
/// The app command does not exist: what a shell, tini and `docker run` exit with.
pub const EX_NOT_FOUND: i32 = 127;

/// The code for an app that could not be executed, as a shell reports it:
/// 127 when it does not exist, 126 when it cannot be executed; `None` for
/// other failures (e.g. switching users), which are meshinit's own.
pub fn for_exec_error(e: &std::io::Error) -> Option<i32> {
    use nix::libc;
    match e.raw_os_error()? {
        libc::ENOENT | libc::ENOTDIR => Some(EX_NOT_FOUND),
        libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY => Some(EX_NOT_EXECUTABLE),
        _ => None,
    }
}

/// How a child process ended, as reported by `waitpid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// The process called `exit(code)`.
    Code(i32),
    /// The process was killed by signal N.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code itself, or 128+N for a signal death.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signaled(s) => {
                let name = crate::init::signals::name(*s);
                write!(f, "killed by signal {s} ({name})")
            }
        }
    }
}

/// `--exit-code-map`: rewrites the final exit code (e.g. `143:0` makes a
/// SIGTERM death a success). The mapping is total: unmapped codes pass through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCodeMap(pub Vec<(i32, i32)>);

impl ExitCodeMap {
    /// The mapped code; the first matching entry wins.
    pub fn apply(&self, code: i32) -> i32 {
        self.0
            .iter()
            .find(|(from, _)| *from == code)
            .map_or(code, |(_, to)| *to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_death_is_128_plus_n() {
        assert_eq!(ExitStatus::Signaled(15).code(), 143);
        assert_eq!(ExitStatus::Code(3).code(), 3);
    }

    #[test]
    fn exec_errors_map_to_a_shells_codes() {
        use nix::libc;
        let code = |errno| for_exec_error(&std::io::Error::from_raw_os_error(errno));
        assert_eq!(code(libc::ENOENT), Some(127));
        assert_eq!(code(libc::EACCES), Some(126));
        assert_eq!(code(libc::ENOEXEC), Some(126));
        // Not an exec failure (e.g. --app-user cannot be switched to): meshinit's own.
        assert_eq!(code(libc::EPERM), None);
    }

    #[test]
    fn map_rewrites_only_listed_codes() {
        let m = ExitCodeMap(vec![(143, 0), (1, 2), (143, 9)]);
        assert_eq!(m.apply(143), 0);
        assert_eq!(m.apply(1), 2);
        assert_eq!(m.apply(7), 7);
    }
}
