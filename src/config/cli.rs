//! The command line, built from the options table (`options::OPTIONS`).
//!
//! Values are taken as text here and typed in `config`, so that every bad
//! value is reported at once, each with where it came from, instead of clap
//! stopping at the first one. clap reads no environment variable: the
//! configuration reads them through the environment it is given, so tests
//! need not touch the process's own. This file is also compiled into
//! build.rs (man page and completions), with `options.rs` beside it.

use clap::{Arg, ArgAction, Command};

/// The control socket's option, shared by meshinit and `meshinit ctl`.
pub const CONTROL_SOCKET_FLAG: &str = "control-socket";
pub const CONTROL_SOCKET_ENV: &str = "MESHINIT_CONTROL_SOCKET";

use super::options::{Kind, CONFIG_ENV, CONFIG_FLAG, OPTIONS};
const EXAMPLES: &str = "\
Examples:
  # Plain init: reap zombies, forward signals, exit with the app's status
  meshinit -- /usr/bin/myapp --port 8080

  # Start kuma-dp in direct mode once the app answers on :8080
  meshinit --probe-http http://127.0.0.1:8080/health \\
           --cp-address https://kuma-cp:5678 \\
           --dataplane-file /etc/kuma/backend.yaml \\
           --dataplane-var name=backend-1 --dataplane-var address=10.0.0.2 \\
           --dataplane-token-file /run/secrets/kuma-token \\
           --app-grace-delay 5s -- /usr/bin/backend

  # Validate everything and print the plan and shutdown timeline
  meshinit check --config /etc/meshinit.yaml --shutdown-budget 90s

Exit codes: the app's own (128+N when signal N ended it, then --exit-code-map);
64 bad usage or configuration, 69 app not healthy in time (or unhealthy with
--on-unhealthy shutdown), 71 operating system error, 74 `check` could not
write its plan to stdout, 75 kuma-dp failed, 126 the app command cannot be
executed, 127 the app command was not found (as in a shell).";

/// The clap command: every option of the table, under its section's
/// heading, with its help (for `--help`, the man page and completions).
pub fn command() -> Command {
    build(true)
}

/// Parses the command line. The help lines are built only to be shown:
/// formatting them all on every start cost more than the parse itself. A
/// command line the lean command refuses (or `--help`) is parsed again by
/// the full one, which gives the same outcome with the help text.
pub fn parse(args: Vec<std::ffi::OsString>) -> Result<clap::ArgMatches, clap::Error> {
    match build(false).try_get_matches_from(&args) {
        Ok(matches) => Ok(matches),
        Err(_) => command().try_get_matches_from(args),
    }
}

fn build(with_help: bool) -> Command {
    let mut config = Arg::new(CONFIG_FLAG).long(CONFIG_FLAG).value_name("FILE");
    if with_help {
        config = config.help(format!(
            "YAML configuration file; flags and env vars override its values [env: {CONFIG_ENV}]"
        ));
    }
    let options = OPTIONS.iter().map(|def| {
        let mut arg = Arg::new(def.flag)
            .long(def.flag)
            .value_name(def.kind.value_name())
            .help_heading(def.section.heading());
        if with_help {
            arg = arg.help(def.help_line());
        }
        match def.kind {
            Kind::One(_) => arg,
            Kind::List(_) => arg.action(ArgAction::Append).value_delimiter(','),
            Kind::Repeat(_) => arg.action(ArgAction::Append),
            Kind::Verbatim(_) => arg.action(ArgAction::Append).allow_hyphen_values(true),
            Kind::Switch => arg
                .num_args(0..=1)
                .default_missing_value("true")
                .require_equals(true),
        }
    });
    let app = Arg::new("command")
        .last(true)
        .num_args(1..)
        .action(ArgAction::Append)
        .value_name("COMMAND")
        .help("The application and its arguments, after `--`");
    Command::new("meshinit")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "PID-1-capable supervisor that starts an app, launches kuma-dp once the app is healthy, \
             and drains the proxy before the app on shutdown",
        )
        .override_usage(
            "meshinit [OPTIONS] -- COMMAND [ARGS...]\n       meshinit check [OPTIONS] [-- COMMAND [ARGS...]]\n       meshinit ctl [--control-socket PATH] out [--no-wait] | in | status",
        )
        .after_help(EXAMPLES)
        .max_term_width(100)
        .arg(config)
        .args(options)
        .arg(app)
}

/// What meshinit was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Supervise the app.
    Run,
    /// Validate and print the plan; start nothing.
    Check,
}

/// Splits off the `check` word. It is handled by hand rather than as a clap
/// subcommand so that every option is accepted before and after it, as
/// the same options apply to both modes.
pub fn split_mode(mut args: Vec<std::ffi::OsString>) -> (Mode, Vec<std::ffi::OsString>) {
    if args.get(1).is_some_and(|a| a == "check") {
        args.remove(1);
        (Mode::Check, args)
    } else {
        (Mode::Run, args)
    }
}

const CTL_AFTER_HELP: &str = "\
The socket is the one the running meshinit was given with --control-socket
(or MESHINIT_CONTROL_SOCKET, or status.control-socket in its file); set
MESHINIT_CONTROL_SOCKET in the image or unit so both see the same path:
  docker exec CONTAINER meshinit ctl status

Only meshinit's own user is admitted (SO_PEERCRED): run ctl as that user
(e.g. sudo -u USER meshinit ctl status, docker exec -u USER ...).

Exit codes: the running meshinit's answer (0 done; 69 not possible now),
64 bad usage, 69 cannot reach meshinit (no socket, nobody listening, or it
went away before answering), 75 meshinit is busy with other requests,
77 refused (another user) or the socket cannot be opened (permissions).";

/// `meshinit ctl`: talks to a running meshinit over its control socket.
pub fn ctl_command() -> Command {
    let socket = Arg::new(CONTROL_SOCKET_FLAG)
        .long(CONTROL_SOCKET_FLAG)
        .value_name("PATH")
        .global(true)
        .help(format!(
            "The running meshinit's control socket [env: {CONTROL_SOCKET_ENV}]"
        ));
    Command::new("ctl")
        .bin_name("meshinit ctl")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Ask a running meshinit (started with --control-socket) to take the instance out of the mesh, put it back, or say how it is")
        .max_term_width(100)
        .subcommand_required(true)
        .arg(socket)
        .subcommand(
            Command::new("out")
                .about("Take the instance out of the mesh; by default return once its inbound traffic is idle")
                .arg(
                    Arg::new("no-wait")
                        .long("no-wait")
                        .action(ArgAction::SetTrue)
                        .help("Return as soon as the instance is marked out, without waiting for idle"),
                ),
        )
        .subcommand(Command::new("in").about("Put the instance back into the mesh (unless its probes fail)"))
        .subcommand(Command::new("status").about("Print the phase, readiness, processes and probes"))
        .after_help(CTL_AFTER_HELP)
}
