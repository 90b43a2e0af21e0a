//! The `app` section: the command, who and where it runs as, how it is
//! signalled and stopped.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::cli::Mode;
use super::host::Host;
use super::parse;
use super::resolve::Resolver;
use super::{AppConfig, ForwardTo, Origin, Problem};
use crate::init::user::Identity;

/// The app section, typed.
pub(super) struct App {
    pub config: AppConfig,
    pub stop_signal: Signal,
    /// `--app-stop-signal` was given (flag, env or file): it is what the app
    /// wants; otherwise the received stop signal is passed through.
    pub stop_signal_given: bool,
    pub stop_timeout: Duration,
    /// `--app-stop-timeout` was given (flag, env or file): in plain init
    /// mode meshinit then SIGKILLs an app that outlives it after a stop
    /// signal; otherwise it waits for the app, as tini and dumb-init do.
    pub stop_timeout_given: bool,
    pub grace_delay: Duration,
    /// The exit code a shell gives when the command alone cannot run
    /// (127 not found, 126 not executable).
    pub not_runnable: Option<i32>,
}

/// `command`: the one after `--`, else `app.command` from the file.
pub(super) fn section(
    r: &mut Resolver,
    host: &dyn Host,
    mode: Mode,
    command: Vec<String>,
    file_command: Option<(Vec<String>, Origin)>,
) -> App {
    let (command, command_origin) = match file_command {
        _ if !command.is_empty() => (command, Origin::Command),
        Some((c, o)) => (c, o),
        None => (Vec::new(), Origin::Default),
    };
    let user = identity(r, host, "app-user");
    let workdir = r.text("app-workdir").map(PathBuf::from);
    if let Some(dir) = workdir.as_ref().filter(|d| !host.is_dir(d)) {
        let o = r.origin("app-workdir");
        let message = format!("'{}' is not a directory", dir.display());
        r.problem("app-workdir", &o, message);
    }
    let forward_to = match r
        .value("forward-to", parse::choice(&["group", "process"]))
        .as_str()
    {
        "process" => ForwardTo::Process,
        _ => ForwardTo::Group,
    };
    let mut not_runnable = None;
    if command.is_empty() {
        if mode == Mode::Run {
            r.problems.push(Problem {
                message: "no app command: give it after `--` (meshinit [OPTIONS] -- COMMAND [ARGS...]) or as app.command in the config file".into(),
                origin: None,
            });
        }
    } else {
        match host.executable(&command[0], workdir.as_deref()) {
            Err(e) => {
                not_runnable = Some(e.exit_code());
                r.problems.push(Problem {
                    message: format!("app command {e}; give the full path of an executable"),
                    origin: Some(command_origin),
                });
            }
            // Found by `check` rather than as E2BIG (71) at the spawn.
            Ok(program) => {
                if let Some(why) = host.exec_limits().problem(&program, &command) {
                    r.problems.push(Problem {
                        message: format!("app command: {why}"),
                        origin: Some(command_origin),
                    });
                }
            }
        }
    }
    App {
        stop_signal: r.value("app-stop-signal", app_stop_signal),
        stop_signal_given: r.raw("app-stop-signal").is_some(),
        stop_timeout: r.value("app-stop-timeout", parse::duration),
        stop_timeout_given: r.raw("app-stop-timeout").is_some(),
        grace_delay: r.value("app-grace-delay", parse::duration),
        config: AppConfig {
            command,
            user,
            workdir,
            no_new_privs: r.value("app-no-new-privs", parse::boolean),
            forward_to,
        },
        not_runnable,
    }
}

/// A `USER[:GROUP]` option resolved on the host.
pub(super) fn identity(r: &mut Resolver, host: &dyn Host, id: &str) -> Option<Identity> {
    let spec = r.typed(id, parse::user_spec)?;
    match host.user(&spec) {
        Ok(i) => Some(i),
        Err(e) => {
            let o = r.origin(id);
            r.problem(id, &o, e);
            None
        }
    }
}

/// A signal that can end the app. Those whose default action is to ignore
/// (CHLD, CONT, URG, WINCH) or to stop the process (STOP, TSTP, TTIN, TTOU)
/// would leave every stop to the SIGKILL after `--app-stop-timeout`; KILL
/// itself is allowed, for an app that is meant to be killed at once.
fn app_stop_signal(s: &str) -> Result<Signal, String> {
    let sig = parse::signal(s)?;
    let why = match sig {
        Signal::SIGCHLD | Signal::SIGCONT | Signal::SIGURG | Signal::SIGWINCH => {
            "is ignored by a process that does not handle it"
        }
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => {
            "suspends a process rather than ending it"
        }
        _ => return Ok(sig),
    };
    Err(format!(
        "'{}' ({}) {why}, so it cannot stop the app; use TERM, INT, QUIT, HUP or the signal the app handles",
        s.trim(),
        sig.as_str()
    ))
}
