//! Configuration: three sources merged with the precedence
//! flag > env var > file > default, then typed and checked as a whole.
//!
//! Every problem is collected and reported at once, each with where its
//! value came from (flag, env var, or file and line), and nothing starts
//! while any is left. The pieces, in the order `load` runs them:
//!
//! - `options`: the one table of options (flags, env vars, YAML keys,
//!   defaults, help), from which `cli` builds the clap command;
//! - `layers`: the flag, env and file layers as text with origins, merged;
//! - `resolve`: typing one merged value, falling back to its default;
//! - `app`, `proxy`, `probes`, `shutdown`, `status`: each YAML section
//!   typed (the probes come after the proxy, whose Dataplane gives the
//!   default probe);
//! - `host`: what is asked of the machine (executables, users, files),
//!   behind a trait so typing can be tested against a made-up one;
//! - `lints`: warnings, each a pure pass over the built configuration;
//! - `plan`: what `meshinit check` prints.

mod app;
pub mod cli;
mod host;
mod layers;
mod lints;
pub mod options;
pub mod plan;
mod probes;
mod proxy;
mod resolve;
mod shutdown;
mod status;
pub mod tproxy;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use nix::sys::signal::Signal;

pub(crate) use host::{Host, System};
// The leaf modules that config's parts use by these short paths.
use crate::basics::{parse, yaml};
use crate::health::{ProbeKind, ProbeSpec};
pub use options::{OptDef, OPTIONS};

use crate::init::exit::ExitCodeMap;
use crate::init::user::Identity;
use crate::lifecycle::{self, DrainMode, Settings, StartOrder};
use crate::mesh::dataplane::Dataplane;
use crate::mesh::envoy::{Admin, InboundListener};
use crate::mesh::kuma_dp;
use cli::Mode;
use parse::Url;
use resolve::Resolver;

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag(String),
    Env(String),
    File {
        path: String,
        line: u64,
    },
    /// The app command after `--`.
    Command,
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag --{flag}"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Command => f.write_str("the command after --"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One configuration problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub origin: Option<Origin>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(o) => write!(f, "{} (from {o})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// All problems found; nothing may start.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub problems: Vec<Problem>,
    /// What meshinit exits with: 64 (usage), or a shell's 127/126 when the
    /// only problem is an app command that does not exist or cannot run.
    pub exit_code: i32,
}

impl ConfigError {
    fn render(&self) -> String {
        let n = self.problems.len();
        let mut s = format!(
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        );
        for p in &self.problems {
            s.push_str("\n  - ");
            s.push_str(&p.to_string());
        }
        s
    }
}

/// Where forwarded and stop signals go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardTo {
    Group,
    Process,
}

/// The app and how it is run.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub command: Vec<String>,
    pub user: Option<Identity>,
    pub workdir: Option<PathBuf>,
    pub no_new_privs: bool,
    pub forward_to: ForwardTo,
}

/// kuma-dp and how it is run.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The resolved kuma-dp binary.
    pub kuma_dp: PathBuf,
    /// Everything after the program name: `run --cp-address=... ...`.
    pub args: Vec<String>,
    pub user: Option<Identity>,
    pub ready_url: Url,
    /// The Dataplane file as given (direct mode).
    pub dataplane_file: Option<String>,
    /// The rendered Dataplane (direct mode).
    pub dataplane: Option<Dataplane>,
    /// The drain time kuma-dp was given, when meshinit can tell.
    pub drain_time: Option<Duration>,
    /// kuma-dp's `--work-dir`, where Envoy's admin socket lives.
    pub work_dir: PathBuf,
    /// meshinit chose (and will create and remove) the work dir; otherwise
    /// the user passed `--work-dir` through `--kuma-dp-arg`.
    pub owns_work_dir: bool,
    /// Envoy's admin API, for the idle drain.
    pub admin: Admin,
    /// The inbound listeners whose load ends an idle drain (direct mode).
    pub inbound_listeners: Vec<InboundListener>,
}

impl ProxyConfig {
    /// The drain time kuma-dp will use: the one it was given, or its own default.
    pub fn effective_drain_time(&self) -> Duration {
        self.drain_time.unwrap_or(kuma_dp::DEFAULT_DRAIN_TIME)
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub app: AppConfig,
    pub probes: Vec<ProbeSpec>,
    /// The probe was derived from the Dataplane's first inbound.
    pub default_probe: bool,
    pub proxy: Option<ProxyConfig>,
    pub stop_signals: Vec<Signal>,
    pub exit_code_map: ExitCodeMap,
    pub shutdown_budget: Option<Duration>,
    pub status_listen: Option<SocketAddr>,
    /// Time a status client has to send its request.
    pub status_request_timeout: Duration,
    /// Where the last shutdown's timeline is kept for the next instance's `/metrics`.
    pub state_file: Option<PathBuf>,
    /// Where `meshinit ctl` reaches this instance (resolved absolute).
    pub control_socket: Option<PathBuf>,
    pub log_json: bool,
    pub log_level: tracing::Level,
    /// The lifecycle's knobs.
    pub settings: Settings,
    /// Transparent proxying, with kuma-dp unless `--transparent-proxy off`:
    /// whether iptables redirects the workload's traffic (see
    /// [`Config::redirection`]), the rules' facts (exempt uid, DNS
    /// redirect, excluded inbound ports) and the install step.
    pub transparent_proxy: Option<tproxy::TransparentProxy>,
    /// `--start-order` was given (flag, env or file); otherwise it follows
    /// redirection (`proxy-first` with it, else `app-first`).
    pub start_order_given: bool,
    /// Things worth a warning at start (and in `check`).
    pub warnings: Vec<String>,
    /// Every option's effective value and origin, for `meshinit check`.
    pub effective: Vec<Effective>,
}

/// One option as `meshinit check` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// Its YAML key (`shutdown.drain-timeout`).
    pub key: String,
    /// Its value as written (lists joined with commas; empty when unset).
    pub value: String,
    /// Where the value came from.
    pub origin: Origin,
}

/// The worst-case shutdown against `--shutdown-budget`: worked out here
/// once for `check`'s plan, `check`'s exit code and the warning at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetVerdict {
    /// [`Settings::worst_case_shutdown`] (`Duration::MAX`: unbounded).
    pub worst: Duration,
    pub budget: Duration,
}

impl BudgetVerdict {
    pub fn fits(&self) -> bool {
        self.worst <= self.budget
    }
}

impl std::fmt::Display for BudgetVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let worst = if self.worst == Duration::MAX {
            "unbounded".to_string()
        } else {
            parse::fmt_duration(self.worst)
        };
        if self.fits() {
            write!(
                f,
                "worst-case shutdown {worst} fits --shutdown-budget {}",
                parse::fmt_duration(self.budget)
            )
        } else {
            write!(
                f,
                "worst-case shutdown {worst} exceeds --shutdown-budget {}: the platform may SIGKILL meshinit mid-shutdown; lower drain-timeout, app-grace-delay or app-stop-timeout, or raise the platform's stop timeout and the budget",
                parse::fmt_duration(self.budget)
            )
        }
    }
}

impl Config {
    /// Transparent proxying, when redirection is on: with it the app must
    /// start only once kuma-dp is ready and its DNS answers
    /// (`TransparentProxy::dns`), and Envoy must outlive the app at stop.
    pub fn redirection(&self) -> Option<&tproxy::TransparentProxy> {
        self.transparent_proxy.as_ref().filter(|t| t.active())
    }

    /// How the worst-case shutdown compares with `--shutdown-budget`, when
    /// one is given.
    pub fn budget_verdict(&self) -> Option<BudgetVerdict> {
        self.shutdown_budget.map(|budget| BudgetVerdict {
            worst: self.settings.worst_case_shutdown(),
            budget,
        })
    }
}

/// Builds the configuration from the command line, the environment and
/// the file, on this machine. `env` is the environment meshinit was given
/// (injected for tests): the only one it reads.
pub fn load(
    mode: Mode,
    matches: &ArgMatches,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    load_on(&System { env }, mode, matches)
}

/// As [`load`], on the machine `host` describes.
pub(crate) fn load_on(
    host: &dyn Host,
    mode: Mode,
    matches: &ArgMatches,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let layers = layers::read(matches, host, &mut problems);
    let mut r = Resolver::new(layers.merged, problems);
    let mut warnings = layers.warnings;

    let command = matches
        .get_many::<String>("command")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let app = app::section(&mut r, host, mode, command, layers.command);
    let proxy = proxy::section(&mut r, host, &mut warnings);
    let dataplane = proxy.as_ref().and_then(|p| p.dataplane.as_ref());
    let probes = probes::section(&mut r, &layers.checks, dataplane, proxy.is_some());
    let shutdown = shutdown::section(
        &mut r,
        proxy.as_ref().map(ProxyConfig::effective_drain_time),
    );
    let status = status::section(&mut r, host, proxy.is_some());
    let transparent_proxy = proxy.as_ref().and_then(|p| {
        let extra = r
            .raw("kuma-dp-arg")
            .map(|raw| raw.values.clone())
            .unwrap_or_default();
        tproxy::section(
            &mut r,
            host,
            p.dataplane.as_ref(),
            p.dataplane_file.as_deref(),
            &extra,
        )
    });
    let redirecting = transparent_proxy.as_ref().is_some_and(|t| t.active());
    // With redirection every outbound call and lookup of the app goes
    // through Envoy. Unless told otherwise, Envoy stays up until the app has
    // stopped (the hold drain), and the app starts only once kuma-dp's DNS
    // answers when the rules send its lookups there.
    let auto_hold = redirecting && r.raw("drain-signal").is_none();
    let drain_mode = if auto_hold {
        DrainMode::Hold
    } else {
        shutdown.drain_mode
    };
    let redirected_dns = transparent_proxy
        .as_ref()
        .filter(|_| redirecting)
        .and_then(|t| t.dns.as_ref())
        .map(|d| SocketAddr::from(([127, 0, 0, 1], d.port)));
    let start_order_given = r.raw("start-order").is_some();
    // Not given: proxy-first with redirection (an app started before
    // Envoy listens loses its calls and lookups), else app-first.
    let start_order = match r
        .typed("start-order", parse::choice(&["app-first", "proxy-first"]))
        .as_deref()
    {
        Some("proxy-first") => StartOrder::ProxyFirst,
        Some(_) => StartOrder::AppFirst,
        None if redirecting => StartOrder::ProxyFirst,
        None => StartOrder::AppFirst,
    };
    if let Some(tp) = &transparent_proxy {
        if let (true, Some(p)) = (tp.active(), &proxy) {
            tproxy::check_all(
                &mut r,
                host,
                tp,
                app.config.user.as_ref(),
                p,
                start_order,
                status.listen,
                &mut warnings,
            );
        }
    }
    let settings = Settings {
        has_proxy: proxy.is_some(),
        probes: probes
            .probes
            .iter()
            .map(|p| lifecycle::Thresholds {
                success: p.success_threshold,
                failure: p.failure_threshold,
            })
            .collect(),
        startup_timeout: probes.startup_timeout,
        proxy_ready_timeout: r.value("proxy-ready-timeout", parse::duration),
        proxy_max_restarts: r.value("proxy-max-restarts", parse::count),
        proxy_restart_window: lifecycle::PROXY_RESTART_WINDOW,
        proxy_backoff_initial: r.value("proxy-restart-backoff", parse::positive_duration),
        proxy_backoff_max: lifecycle::PROXY_BACKOFF_MAX,
        app_stop_signal: app.stop_signal,
        pass_stop_signal: !app.stop_signal_given,
        app_stop_timeout: app.stop_timeout,
        app_stop_timeout_given: app.stop_timeout_given,
        app_grace_delay: app.grace_delay,
        drain_mode,
        drain_timeout: shutdown.drain_timeout,
        on_unhealthy: probes.on_unhealthy,
        kill_bound: lifecycle::KILL_BOUND,
        cleanup_timeout: lifecycle::CLEANUP_TIMEOUT,
        start_order,
        idle_drain: shutdown.idle_drain,
        // `0` turns the check off.
        proxy_hang_timeout: Some(r.value("proxy-hang-timeout", parse::duration))
            .filter(|t| !t.is_zero()),
        proxy_dns: match proxy_dns(&mut r, proxy.is_some()) {
            None if r.raw("proxy-dns").is_none() => redirected_dns,
            given => given,
        },
    };
    let mut proxy = proxy;
    if let Some(p) = proxy.as_mut() {
        proxy::hold_drain_time(&mut r, p, &settings, auto_hold);
    }

    if !r.problems.is_empty() {
        // A shell's codes when the command alone is the problem: a wrapper
        // script or `docker run` user tells "not found" from "bad option".
        let exit_code = match app.not_runnable {
            Some(code) if r.problems.len() == 1 => code,
            _ => crate::init::exit::EX_USAGE,
        };
        return Err(ConfigError {
            problems: r.problems,
            exit_code,
        });
    }
    let effective = effective(
        &r,
        &settings,
        status.log_level,
        proxy.as_ref(),
        status.state_file.as_deref(),
        status.control_socket.as_deref(),
    );
    let mut config = Config {
        app: app.config,
        probes: probes.probes,
        default_probe: probes.default_probe,
        proxy,
        stop_signals: shutdown.stop_signals,
        exit_code_map: shutdown.exit_code_map,
        shutdown_budget: shutdown.budget,
        status_listen: status.listen,
        status_request_timeout: status.request_timeout,
        state_file: status.state_file,
        control_socket: status.control_socket,
        log_json: status.log_json,
        log_level: status.log_level,
        settings,
        transparent_proxy,
        start_order_given,
        warnings: Vec::new(),
        effective,
    };
    warnings.extend(lints::all(&config));
    config.warnings = warnings;
    Ok(config)
}

/// `--proxy-dns`: the DNS server of kuma-dp the start waits for; `off`
/// (the default): none. Only meaningful with a proxy.
fn proxy_dns(r: &mut Resolver, has_proxy: bool) -> Option<SocketAddr> {
    // Not given: none here; the caller asks kuma-dp's DNS when transparent
    // proxying redirects the app's lookups there.
    let addr = r.typed("proxy-dns", |s| {
        if s.trim().eq_ignore_ascii_case("off") {
            Ok(None)
        } else {
            parse::listen_addr(s)
                .map(Some)
                .map_err(|e| format!("{e}, or off"))
        }
    })??;
    if !has_proxy {
        let o = r.origin("proxy-dns");
        r.problem(
            "proxy-dns",
            &o,
            "is set but no proxy would run: kuma-dp's DNS is only waited for with a Dataplane"
                .into(),
        );
    }
    Some(addr)
}

/// Every option's effective value and origin, as `check` shows them.
fn effective(
    r: &Resolver,
    settings: &Settings,
    log_level: tracing::Level,
    proxy: Option<&ProxyConfig>,
    state_file: Option<&std::path::Path>,
    control_socket: Option<&std::path::Path>,
) -> Vec<Effective> {
    OPTIONS
        .iter()
        .map(|d| {
            let (value, origin) = match r.raw(d.flag) {
                Some(raw) => (raw.values.join(","), raw.origin.clone()),
                None => match d.default {
                    options::DefaultValue::Is(v) => (v.to_string(), Origin::Default),
                    _ => (String::new(), Origin::Default),
                },
            };
            let derived = (origin == Origin::Default)
                .then(|| derived_default(d.flag, settings, log_level))
                .flatten();
            let value = if let Some(derived) = derived {
                derived
            } else if d.flag == "proxy-ready-url" && origin == Origin::Default {
                proxy.map_or(value, |p| p.ready_url.to_string())
            } else if d.flag == "state-file" {
                // As resolved at load: a relative path shown absolute.
                state_file.map_or(value, |p| p.display().to_string())
            } else if d.flag == "control-socket" {
                control_socket.map_or(value, |p| p.display().to_string())
            } else if d.flag == "kuma-dp-arg" {
                // A token given inline is shown redacted.
                r.raw(d.flag)
                    .map_or(value, |raw| kuma_dp::shown_args(&raw.values).join(","))
            } else {
                value
            };
            Effective {
                key: d.yaml(),
                value,
                origin,
            }
        })
        .collect()
}

/// The value an option whose default depends on the rest of the
/// configuration (`Depends` in the option table) took, from the settings it
/// went into; `None` for the others.
fn derived_default(flag: &str, s: &Settings, log_level: tracing::Level) -> Option<String> {
    let text = match flag {
        "log-level" => return Some(log_level.as_str().to_ascii_lowercase()),
        "proxy-dns" => return Some(s.proxy_dns.map_or("off".into(), |a| a.to_string())),
        "on-unhealthy" => match s.on_unhealthy {
            lifecycle::OnUnhealthy::Leave => "leave",
            lifecycle::OnUnhealthy::None => "none",
            lifecycle::OnUnhealthy::Shutdown => "shutdown",
        },
        "start-order" => match s.start_order {
            StartOrder::AppFirst => "app-first",
            StartOrder::ProxyFirst => "proxy-first",
        },
        "drain-signal" => match s.drain_mode {
            DrainMode::Term => "TERM",
            DrainMode::InboundUsr2 { .. } => "USR2",
            DrainMode::Hold => "hold",
        },
        _ => return None,
    };
    Some(text.to_string())
}

/// The lifecycle settings the options' defaults give, for a run with a
/// proxy and probes: where the lifecycle's tests start from.
#[cfg(test)]
pub(crate) fn default_settings() -> Settings {
    let matches = cli::command().get_matches_from(["meshinit"]);
    let cfg = load(Mode::Check, &matches, &|_: &str| None).expect("the defaults are valid");
    Settings {
        has_proxy: true,
        // One probe that flips with each result: `Input::Probe { probe: 0,
        // ok }` is then "healthy" or "unhealthy" at once in the tests.
        probes: vec![lifecycle::Thresholds {
            success: 1,
            failure: 1,
        }],
        // The default with kuma-dp (`none` is the default without).
        on_unhealthy: lifecycle::OnUnhealthy::Leave,
        ..cfg.settings
    }
}

#[cfg(test)]
mod tests;
