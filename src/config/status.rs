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
    pub log_json: bool,
    pub log_level: tracing::Level,
}

pub(super) fn section(r: &mut Resolver, host: &dyn Host, has_proxy: bool) -> Status {
    let state_file = state_file(r, host);
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
        log_json: r.value("log-format", parse::choice(&["text", "json"])) == "json",
        log_level,
    }
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
    let given = PathBuf::from(r.text("state-file")?);
    let file = if given.is_relative() {
        match host.cwd() {
            Some(cwd) => cwd.join(&given),
            None => {
                let o = r.origin("state-file");
                r.problem(
                    "state-file",
                    &o,
                    format!(
                        "'{}' is relative and the directory meshinit was started in cannot be read; give an absolute path",
                        given.display()
                    ),
                );
                return None;
            }
        }
    } else {
        given
    };
    // Found out at start rather than at exit, when the record is lost.
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"));
    let problem = if !host.is_dir(dir) {
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
