//! `meshinit ctl`: the client of the control socket (see `control` for the
//! protocol). Plain blocking std code: one connection, one request, the
//! answer copied out, meshinit's exit status returned.
//!
//! Timeouts: connecting and sending are bounded ([`IO_TIMEOUT`]); the answer
//! to `status`, `in` and `out --no-wait` too. `out` (waiting for the
//! inbound side to go idle) has no read timeout: it lasts as long as the
//! drain does, which meshinit bounds itself (`--drain-timeout`); Ctrl-C
//! stops waiting without undoing the `out`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::control::Request;
use crate::config::cli;
use crate::init::exit;

/// Time to connect, send the request and read a short answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `meshinit ctl ...` (`args` as given to meshinit, `ctl` at 1);
/// returns its exit code.
pub fn main(args: Vec<std::ffi::OsString>, env: &dyn Fn(&str) -> Option<String>) -> i32 {
    let mut argv = vec![std::ffi::OsString::from("meshinit ctl")];
    argv.extend(args.into_iter().skip(2));
    let matches = match cli::ctl_command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            let printed = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    if printed.is_ok() {
                        0
                    } else {
                        exit::EX_IOERR
                    }
                }
                _ => exit::EX_USAGE,
            };
        }
    };
    let request = match matches.subcommand() {
        Some(("out", m)) => Request::Out {
            wait: !m.get_flag("no-wait"),
        },
        Some(("in", _)) => Request::In,
        Some(("status", _)) => Request::Status,
        _ => unreachable!("clap requires one of the subcommands"),
    };
    let given = matches
        .get_one::<String>(cli::CONTROL_SOCKET_FLAG)
        .cloned()
        .or_else(|| env(cli::CONTROL_SOCKET_ENV))
        .filter(|s| !s.is_empty());
    let Some(path) = given.map(PathBuf::from) else {
        eprintln!(
            "meshinit ctl: no control socket given: pass --control-socket PATH or set {}, to the path the running meshinit was started with",
            cli::CONTROL_SOCKET_ENV
        );
        return exit::EX_USAGE;
    };
    match talk(&path, request) {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("meshinit ctl: {message}");
            code
        }
    }
}

/// Sends `request` to the meshinit at `path` and copies its answer out:
/// lines starting with `error: ` to stderr, the others to stdout; the
/// `exit N` line gives the code.
fn talk(path: &std::path::Path, request: Request) -> Result<i32, (i32, String)> {
    let p = path.display();
    let mut stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => (
            exit::EX_UNAVAILABLE,
            format!("{p} does not exist: is meshinit running with --control-socket {p}?"),
        ),
        io::ErrorKind::PermissionDenied => (
            exit::EX_NOPERM,
            format!("permission denied on {p}: run meshinit ctl as the user meshinit runs as"),
        ),
        io::ErrorKind::ConnectionRefused => (
            exit::EX_UNAVAILABLE,
            format!("nobody listens on {p}: the meshinit that made it is gone"),
        ),
        _ => (exit::EX_UNAVAILABLE, format!("cannot connect to {p}: {e}")),
    })?;
    let lost = |e: io::Error| {
        (
            exit::EX_UNAVAILABLE,
            format!("lost the connection to meshinit on {p}: {e}"),
        )
    };
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(lost)?;
    let read_timeout = match request {
        Request::Out { wait: true } => None,
        _ => Some(IO_TIMEOUT),
    };
    stream.set_read_timeout(read_timeout).map_err(lost)?;
    // A refusal (another user) may already be on its way: a failed write
    // is not the end, the answer is still read.
    let sent = stream.write_all(request.line().as_bytes());
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    for line in BufReader::new(&stream).lines() {
        let line = match line {
            Ok(l) => l,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err((
                    exit::EX_UNAVAILABLE,
                    format!(
                        "meshinit on {p} did not answer within {}s",
                        IO_TIMEOUT.as_secs()
                    ),
                ))
            }
            Err(e) => return Err(lost(e)),
        };
        if let Some(code) = line.strip_prefix("exit ") {
            return code.trim().parse().map_err(|_| {
                (
                    exit::EX_UNAVAILABLE,
                    format!("meshinit on {p} answered with a malformed status '{line}'"),
                )
            });
        }
        let written = if line.starts_with("error: ") {
            writeln!(err, "meshinit ctl: {line}")
        } else {
            writeln!(out, "{line}").and_then(|()| out.flush())
        };
        if let Err(e) = written {
            return Err((exit::EX_IOERR, format!("cannot write the answer: {e}")));
        }
    }
    let why = match sent {
        Err(e) => format!("could not send the request to meshinit on {p}: {e}"),
        Ok(()) => {
            format!("meshinit on {p} closed the connection without an answer (is it exiting?)")
        }
    };
    Err((exit::EX_UNAVAILABLE, why))
}
