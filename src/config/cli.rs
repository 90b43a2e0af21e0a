//! The command line. Every option is also an environment variable
//! (`MESHINIT_<NAME>`) and a key of the YAML file (see `config::OPTIONS`).
//!
//! Values are taken as text here and parsed in `config`, so that every bad
//! value is reported at once, each with where it came from, instead of clap
//! stopping at the first one.

use clap::{ArgAction, Parser};

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
--on-unhealthy shutdown), 71 operating system error, 75 kuma-dp failed.";

/// The raw command line. See the README for the reference of every option.
#[derive(Debug, Parser)]
#[command(
    name = "meshinit",
    version,
    about = "PID-1-capable supervisor that starts an app, launches kuma-dp once the app is healthy, \
             and drains the proxy before the app on shutdown",
    override_usage = "meshinit [OPTIONS] -- COMMAND [ARGS...]\n       meshinit check [OPTIONS] [-- COMMAND [ARGS...]]",
    after_help = EXAMPLES,
    max_term_width = 100
)]
pub struct Cli {
    /// YAML configuration file; flags and env vars override its values.
    #[arg(long, env = "MESHINIT_CONFIG", value_name = "FILE")]
    pub config: Option<String>,

    // ---- app ----
    /// Signal that stops the app [default: TERM].
    #[arg(
        long,
        env = "MESHINIT_APP_STOP_SIGNAL",
        value_name = "SIGNAL",
        help_heading = "App"
    )]
    pub app_stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL [default: 10s].
    #[arg(
        long,
        env = "MESHINIT_APP_STOP_TIMEOUT",
        value_name = "DURATION",
        help_heading = "App"
    )]
    pub app_stop_timeout: Option<String>,
    /// Time the app keeps running after a stop signal (after the proxy drained) [default: 0s].
    #[arg(
        long,
        env = "MESHINIT_APP_GRACE_DELAY",
        value_name = "DURATION",
        help_heading = "App"
    )]
    pub app_grace_delay: Option<String>,
    /// Run the app as USER[:GROUP] (names or ids); supplementary groups become the user's own.
    #[arg(
        long,
        env = "MESHINIT_APP_USER",
        value_name = "USER[:GROUP]",
        help_heading = "App"
    )]
    pub app_user: Option<String>,
    /// Working directory of the app.
    #[arg(
        long,
        env = "MESHINIT_APP_WORKDIR",
        value_name = "DIR",
        help_heading = "App"
    )]
    pub app_workdir: Option<String>,
    /// Set no_new_privs for the app (setuid binaries cannot raise privileges) [default: false].
    #[arg(long, env = "MESHINIT_APP_NO_NEW_PRIVS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true, help_heading = "App")]
    pub app_no_new_privs: Option<String>,
    /// Where forwarded signals go: the app's process group, or its main process [default: group].
    #[arg(
        long,
        env = "MESHINIT_FORWARD_TO",
        value_name = "group|process",
        help_heading = "App"
    )]
    pub forward_to: Option<String>,

    // ---- probes ----
    /// HTTP GET probe; healthy on 2xx/3xx. Repeatable (comma-separated in env).
    #[arg(long, env = "MESHINIT_PROBE_HTTP", value_name = "URL", value_delimiter = ',',
          action = ArgAction::Append, help_heading = "Probes")]
    pub probe_http: Vec<String>,
    /// TCP connect probe. Repeatable (comma-separated in env).
    #[arg(long, env = "MESHINIT_PROBE_TCP", value_name = "HOST:PORT", value_delimiter = ',',
          action = ArgAction::Append, help_heading = "Probes")]
    pub probe_tcp: Vec<String>,
    /// Command probe, run with /bin/sh -c; healthy on exit 0. Repeatable.
    #[arg(long, env = "MESHINIT_PROBE_EXEC", value_name = "CMD", action = ArgAction::Append,
          help_heading = "Probes")]
    pub probe_exec: Vec<String>,
    /// Probe period once the app is healthy (liveness) [default: 5s].
    #[arg(
        long,
        env = "MESHINIT_PROBE_PERIOD",
        value_name = "DURATION",
        help_heading = "Probes"
    )]
    pub probe_period: Option<String>,
    /// Probe period until the app is first healthy [default: 100ms].
    #[arg(
        long,
        env = "MESHINIT_PROBE_STARTUP_PERIOD",
        value_name = "DURATION",
        help_heading = "Probes"
    )]
    pub probe_startup_period: Option<String>,
    /// Time a single probe may take [default: 1s].
    #[arg(
        long,
        env = "MESHINIT_PROBE_TIMEOUT",
        value_name = "DURATION",
        help_heading = "Probes"
    )]
    pub probe_timeout: Option<String>,
    /// Consecutive successes that make a probe pass [default: 1].
    #[arg(
        long,
        env = "MESHINIT_PROBE_SUCCESS_THRESHOLD",
        value_name = "N",
        help_heading = "Probes"
    )]
    pub probe_success_threshold: Option<String>,
    /// Consecutive failures that make a passing probe fail [default: 3].
    #[arg(
        long,
        env = "MESHINIT_PROBE_FAILURE_THRESHOLD",
        value_name = "N",
        help_heading = "Probes"
    )]
    pub probe_failure_threshold: Option<String>,
    /// If the app is not healthy by then, stop it and exit 69 [default: 60s].
    #[arg(
        long,
        env = "MESHINIT_STARTUP_TIMEOUT",
        value_name = "DURATION",
        help_heading = "Probes"
    )]
    pub startup_timeout: Option<String>,
    /// What failing liveness probes do: none (report only) or shutdown [default: none].
    #[arg(
        long,
        env = "MESHINIT_ON_UNHEALTHY",
        value_name = "none|shutdown",
        help_heading = "Probes"
    )]
    pub on_unhealthy: Option<String>,

    // ---- proxy ----
    /// kuma-dp binary, a path or a name looked up on PATH [default: kuma-dp].
    #[arg(
        long,
        env = "MESHINIT_KUMA_DP",
        value_name = "PATH",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub kuma_dp: Option<String>,
    /// Control plane address passed to kuma-dp (e.g. https://kuma-cp:5678).
    #[arg(
        long,
        env = "MESHINIT_CP_ADDRESS",
        value_name = "URL",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub cp_address: Option<String>,
    /// Dataplane resource or Mustache template (direct mode).
    #[arg(
        long,
        env = "MESHINIT_DATAPLANE_FILE",
        value_name = "FILE",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub dataplane_file: Option<String>,
    /// Template variable for the Dataplane file. Repeatable.
    #[arg(long, env = "MESHINIT_DATAPLANE_VAR", value_name = "KEY=VALUE", action = ArgAction::Append,
          help_heading = "Proxy (kuma-dp)")]
    pub dataplane_var: Vec<String>,
    /// File holding the dataplane token (never logged).
    #[arg(
        long,
        env = "MESHINIT_DATAPLANE_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub dataplane_token_file: Option<String>,
    /// Indirect mode: name of an existing Dataplane resource (with --mesh).
    #[arg(
        long,
        env = "MESHINIT_DATAPLANE_NAME",
        value_name = "NAME",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub dataplane_name: Option<String>,
    /// Indirect mode: mesh of the Dataplane resource (with --dataplane-name).
    #[arg(
        long,
        env = "MESHINIT_MESH",
        value_name = "MESH",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub mesh: Option<String>,
    /// Extra argument appended verbatim to `kuma-dp run` (e.g. --kuma-dp-arg=--drain-time=10s). Repeatable.
    #[arg(long, env = "MESHINIT_KUMA_DP_ARG", value_name = "ARG", action = ArgAction::Append,
          allow_hyphen_values = true, help_heading = "Proxy (kuma-dp)")]
    pub kuma_dp_arg: Vec<String>,
    /// Run kuma-dp as USER[:GROUP].
    #[arg(
        long,
        env = "MESHINIT_KUMA_DP_USER",
        value_name = "USER[:GROUP]",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub kuma_dp_user: Option<String>,
    /// kuma-dp readiness URL [default: http://127.0.0.1:${KUMA_READINESS_PORT:-9902}/ready].
    #[arg(
        long,
        env = "MESHINIT_PROXY_READY_URL",
        value_name = "URL",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub proxy_ready_url: Option<String>,
    /// If kuma-dp is not ready by then, shut down and exit 75 [default: 60s].
    #[arg(
        long,
        env = "MESHINIT_PROXY_READY_TIMEOUT",
        value_name = "DURATION",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub proxy_ready_timeout: Option<String>,
    /// Start order: app-first (kuma-dp once the app is healthy) or proxy-first (the app once kuma-dp is ready) [default: app-first].
    #[arg(
        long,
        env = "MESHINIT_START_ORDER",
        value_name = "app-first|proxy-first",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub start_order: Option<String>,
    /// kuma-dp crashes tolerated within 10 minutes before giving up [default: 5].
    #[arg(
        long,
        env = "MESHINIT_PROXY_MAX_RESTARTS",
        value_name = "N",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub proxy_max_restarts: Option<String>,
    /// First wait before kuma-dp is restarted after a crash, doubled at each crash up to 30s [default: 1s].
    #[arg(
        long,
        env = "MESHINIT_PROXY_RESTART_BACKOFF",
        value_name = "DUR",
        help_heading = "Proxy (kuma-dp)"
    )]
    pub proxy_restart_backoff: Option<String>,

    // ---- shutdown ----
    /// Signals that begin the graceful shutdown [default: TERM,INT].
    #[arg(long, env = "MESHINIT_STOP_SIGNALS", value_name = "SIGNALS", value_delimiter = ',',
          action = ArgAction::Append, help_heading = "Shutdown")]
    pub stop_signals: Vec<String>,
    /// How kuma-dp is drained: TERM (all listeners, then it exits) or USR2 (inbound only) [default: TERM].
    #[arg(
        long,
        env = "MESHINIT_DRAIN_SIGNAL",
        value_name = "TERM|USR2",
        help_heading = "Shutdown"
    )]
    pub drain_signal: Option<String>,
    /// Longest wait for kuma-dp to drain and exit [default: 40s].
    #[arg(
        long,
        env = "MESHINIT_DRAIN_TIMEOUT",
        value_name = "DURATION",
        help_heading = "Shutdown"
    )]
    pub drain_timeout: Option<String>,
    /// End the drain once the inbound side is idle, watching Envoy's stats [default: true].
    #[arg(long, env = "MESHINIT_DRAIN_UNTIL_IDLE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true, help_heading = "Shutdown")]
    pub drain_until_idle: Option<String>,
    /// Shortest drain: the time the control plane needs to withdraw this instance from every client [default: 10s].
    #[arg(
        long,
        env = "MESHINIT_DRAIN_MIN",
        value_name = "DURATION",
        help_heading = "Shutdown"
    )]
    pub drain_min: Option<String>,
    /// How long the inbound side must stay idle before the drain ends early [default: 1s].
    #[arg(
        long,
        env = "MESHINIT_DRAIN_IDLE",
        value_name = "DURATION",
        help_heading = "Shutdown"
    )]
    pub drain_idle: Option<String>,
    /// The platform's stop budget; warn (run) or fail (check) when the worst case exceeds it.
    #[arg(
        long,
        env = "MESHINIT_SHUTDOWN_BUDGET",
        value_name = "DURATION",
        help_heading = "Shutdown"
    )]
    pub shutdown_budget: Option<String>,
    /// Rewrite the exit code, e.g. 143:0. Repeatable (comma-separated in env).
    #[arg(long, env = "MESHINIT_EXIT_CODE_MAP", value_name = "FROM:TO", value_delimiter = ',',
          action = ArgAction::Append, help_heading = "Shutdown")]
    pub exit_code_map: Vec<String>,

    // ---- status, log ----
    /// Serve /ready, /live and /status on ADDR (e.g. 127.0.0.1:9000) [default: off].
    #[arg(
        long,
        env = "MESHINIT_STATUS_LISTEN",
        value_name = "ADDR",
        help_heading = "Status and logs"
    )]
    pub status_listen: Option<String>,
    /// Time a status client has to send its request before its connection is closed [default: 2s].
    #[arg(
        long,
        env = "MESHINIT_STATUS_REQUEST_TIMEOUT",
        value_name = "DUR",
        help_heading = "Status and logs"
    )]
    pub status_request_timeout: Option<String>,
    /// Keep the last shutdown's timeline in FILE; the next meshinit reports it on /metrics [default: off].
    #[arg(
        long,
        env = "MESHINIT_STATE_FILE",
        value_name = "FILE",
        help_heading = "Status and logs"
    )]
    pub state_file: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(
        long,
        env = "MESHINIT_LOG_FORMAT",
        value_name = "text|json",
        help_heading = "Status and logs"
    )]
    pub log_format: Option<String>,
    /// Log level: error, warn, info, debug or trace [default: warn in plain
    /// init mode, as tini is quiet; info with kuma-dp].
    #[arg(
        long,
        env = "MESHINIT_LOG_LEVEL",
        value_name = "LEVEL",
        help_heading = "Status and logs"
    )]
    pub log_level: Option<String>,

    /// The application and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
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
/// subcommand so that the same options (and their env vars) apply to both
/// modes without clap counting env-provided values as conflicting with it.
pub fn split_mode(mut args: Vec<std::ffi::OsString>) -> (Mode, Vec<std::ffi::OsString>) {
    if args.get(1).is_some_and(|a| a == "check") {
        args.remove(1);
        (Mode::Check, args)
    } else {
        (Mode::Run, args)
    }
}

/// The clap command, for the man page and shell completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
