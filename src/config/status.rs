//! The `status` and `log` sections: how meshinit tells what it does (the
//! status endpoint, the state file kept for the next instance, the log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::host::Host;
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
    let state_file = r.text("state-file").map(PathBuf::from);
    if let Some(file) = &state_file {
        // Found out at start rather than at exit, when the record is lost.
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let problem = if !host.is_dir(dir) {
            Some(format!("'{}' is not a directory", dir.display()))
        } else if host.is_dir(file) {
            Some(format!("'{}' is a directory, not a file", file.display()))
        } else {
            None
        };
        if let Some(problem) = problem {
            let o = r.origin("state-file");
            r.problem("state-file", &o, problem);
        }
    }
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
