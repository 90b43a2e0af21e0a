//! The `status` and `log` sections: how meshinit tells what it does (the
//! status endpoint, the state file kept for the next instance, the log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host::{FileKind, Host};
use super::parse;
use super::resolve::Resolver;

/// The status and log sections, typed.
pub(super) struct Status {
    pub listen: Option<SocketAddr>,
    pub request_timeout: Duration,
    pub state_file: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub log_json: bool,
    pub log_level: tracing::Level,
}

pub(super) fn section(r: &mut Resolver, host: &dyn Host, has_proxy: bool) -> Status {
    let state_file = state_file(r, host);
    let control_socket = control_socket(r, host);
    let levels = ["error", "warn", "info", "debug", "trace"];
    let log_level = match r.typed("log-level", parse::choice(&levels)).as_deref() {
        Some("error") => tracing::Level::ERROR,
        Some("warn") => tracing::Level::WARN,
        Some("debug") => tracing::Level::DEBUG,
        Some("trace") => tracing::Level::TRACE,
        Some(_) => tracing::Level::INFO,
        // Not given: a plain init is quiet, as tini and dumb-init are (a CLI
        // run under it prints only its own output); with kuma-dp the phase
        // lines are the story of the service, and stay.
        None if !has_proxy => tracing::Level::WARN,
        None => tracing::Level::INFO,
    };
    Status {
        listen: r.typed("status-listen", parse::listen_addr),
        request_timeout: r.value("status-request-timeout", parse::positive_duration),
        state_file,
        control_socket,
        log_json: r.value("log-format", parse::choice(&["text", "json"])) == "json",
        log_level,
    }
}

/// A path option resolved against the directory meshinit was started in
/// (meshinit moves to `/` once the app has started, and the file must be
/// where the user meant), and its directory; `None` (a problem recorded)
/// when a relative path cannot be resolved.
fn resolved_path(r: &mut Resolver, host: &dyn Host, key: &str) -> Option<(PathBuf, PathBuf)> {
    let given = PathBuf::from(r.text(key)?);
    let path = if given.is_relative() {
        let Some(cwd) = host.cwd() else {
            let o = r.origin(key);
            r.problem(
                key,
                &o,
                format!(
                    "'{}' is relative and the directory meshinit was started in cannot be read; give an absolute path",
                    given.display()
                ),
            );
            return None;
        };
        cwd.join(&given)
    } else {
        given
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    Some((path, dir))
}

/// `--state-file`, checked as it will be used: meshinit reads it at start
/// and replaces it (through a rename) at exit, so only a regular file, or
/// nothing yet, may be there. A device node, FIFO, socket or directory is
/// refused (as root, `--state-file /dev/null` would otherwise replace the
/// host's /dev/null), and so is a symbolic link: replacing it would replace
/// the link, not what it points at, which is never what was meant; give
/// the real path. A relative path is resolved here, against the directory
/// meshinit was started in, because meshinit moves to `/` once the app has
/// started and the record must land where the next run looks for it.
fn state_file(r: &mut Resolver, host: &dyn Host) -> Option<PathBuf> {
    let (file, dir) = resolved_path(r, host, "state-file")?;
    // Found out at start rather than at exit, when the record is lost.
    let problem = if !host.is_dir(&dir) {
        Some(format!("'{}' is not a directory", dir.display()))
    } else {
        match host.file_kind(&file) {
            None | Some(FileKind::Regular) => None,
            Some(FileKind::Symlink) => Some(format!(
                "'{}' is a symbolic link; meshinit replaces the state file at exit and would replace the link, not its target: give the real path",
                file.display()
            )),
            Some(kind) => Some(format!(
                "'{}' is {}, not a regular file; meshinit reads and replaces its state file, so give the path of a regular file (or of none yet)",
                file.display(),
                kind.described()
            )),
        }
    };
    if let Some(problem) = problem {
        let o = r.origin("state-file");
        r.problem("state-file", &o, problem);
    }
    Some(file)
}

/// The longest socket path the kernel takes: `sun_path` is 108 bytes,
/// one of them the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// `--control-socket`, checked as `ControlServer::bind` will use it, so a
/// path that cannot work is a configuration problem with nothing started.
/// A relative path is resolved here, as `--state-file`'s is: meshinit moves
/// to `/` once the app has started, and `meshinit ctl` is told the path.
/// Only a socket (a stale one from a meshinit that is gone, replaced at
/// bind) or nothing may be at the path: anything else is someone's file,
/// which meshinit never deletes.
fn control_socket(r: &mut Resolver, host: &dyn Host) -> Option<PathBuf> {
    let (path, dir) = resolved_path(r, host, "control-socket")?;
    let len = path.as_os_str().len();
    let problem = if len > MAX_SOCKET_PATH {
        Some(format!(
            "'{}' is {len} bytes; a Unix socket's path may have at most {MAX_SOCKET_PATH}: choose a shorter one (e.g. /run/meshinit.sock)",
            path.display()
        ))
    } else if !host.is_dir(&dir) {
        Some(format!(
            "'{}' is not a directory; create it or choose another path for the socket",
            dir.display()
        ))
    } else {
        match host.file_kind(&path) {
            None | Some(FileKind::Socket) => None,
            Some(kind) => Some(format!(
                "'{}' is {}, not a socket; meshinit never deletes it: remove it yourself or choose another path",
                path.display(),
                kind.described()
            )),
        }
    };
    if let Some(problem) = problem {
        let o = r.origin("control-socket");
        r.problem("control-socket", &o, problem);
    }
    Some(path)
}
