//! Configuration: three sources merged with the precedence
//! flag > env var > file > default, then validated as a whole.
//!
//! Every problem is collected and reported at once, each with where its
//! value came from (flag, env var, or file and line), and nothing starts
//! while any is left. The table [`OPTIONS`] is the single list of options:
//! flags, env vars, YAML keys and defaults all come from it.

pub mod cli;
pub mod options;
pub mod parse;
pub mod plan;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use nix::sys::signal::Signal;
pub use options::{OptDef, OPTIONS};

use crate::init::exit::ExitCodeMap;
use crate::init::user::{self, Identity};
use crate::lifecycle::{self, DrainMode, IdleDrain, OnUnhealthy, Settings, StartOrder};
use crate::mesh::dataplane::{self, Dataplane};
use crate::mesh::envoy::{Admin, InboundListener};
use crate::mesh::kuma_dp;
use cli::Mode;
use parse::Url;
use yaml::{Item, Node};

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

/// A raw value before typing: the text of each item and its origin.
#[derive(Clone, Debug)]
struct Raw {
    values: Vec<String>,
    origin: Origin,
}

/// How a probe checks the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Http(Url),
    Tcp {
        host: String,
        port: u16,
    },
    /// Run through `/bin/sh -c` (from `--probe-exec` or a YAML string).
    Shell(String),
    /// Run directly, no shell (a YAML list).
    Argv(Vec<String>),
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeKind::Http(u) => write!(f, "http GET {u}"),
            ProbeKind::Tcp { host, port } => {
                if host.contains(':') {
                    write!(f, "tcp [{host}]:{port}")
                } else {
                    write!(f, "tcp {host}:{port}")
                }
            }
            ProbeKind::Shell(cmd) => write!(f, "exec sh -c {cmd:?}"),
            ProbeKind::Argv(argv) => write!(f, "exec {argv:?}"),
        }
    }
}

/// One probe with its own timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub startup_period: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
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
    /// The rendered Dataplane (direct mode).
    pub dataplane: Option<Dataplane>,
    /// The drain time kuma-dp will use, when meshinit can tell.
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
    pub log_json: bool,
    pub log_level: tracing::Level,
    /// The lifecycle's knobs.
    pub settings: Settings,
    /// Things worth a warning at start (and in `check`).
    pub warnings: Vec<String>,
    /// Every option's effective value and origin, for `meshinit check`.
    pub effective: Vec<(String, String, Origin)>,
}

/// Reads the flag layer from clap's matches.
fn flag_layer(matches: &ArgMatches) -> BTreeMap<&'static str, Raw> {
    let mut out = BTreeMap::new();
    for def in OPTIONS {
        let Some(values) = matches.get_many::<String>(def.flag) else {
            continue;
        };
        if matches.value_source(def.flag) != Some(ValueSource::CommandLine) {
            continue;
        }
        out.insert(
            def.flag,
            Raw {
                values: values.cloned().collect(),
                origin: Origin::Flag(def.flag.to_string()),
            },
        );
    }
    out
}

/// Reads the env var layer. A variable that is set counts, even empty (an
/// empty value is reported, not taken as unset); a list splits at commas.
fn env_layer(env: &dyn Fn(&str) -> Option<String>) -> BTreeMap<&'static str, Raw> {
    let mut out = BTreeMap::new();
    for def in OPTIONS {
        let name = def.env();
        let Some(value) = env(&name) else { continue };
        let values = match def.kind {
            options::Kind::List(_) => value.split(',').map(str::to_string).collect(),
            _ => vec![value],
        };
        out.insert(
            def.flag,
            Raw {
                values,
                origin: Origin::Env(name),
            },
        );
    }
    out
}

/// What the YAML file contributes.
#[derive(Default)]
struct FileLayer {
    values: BTreeMap<&'static str, Raw>,
    command: Option<(Vec<String>, Origin)>,
    checks: Vec<(Item, Origin)>,
}

fn file_layer(path: &str, problems: &mut Vec<Problem>) -> FileLayer {
    let mut layer = FileLayer::default();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem {
                message: format!("cannot read config file '{path}': {e}; check the path given to --config / MESHINIT_CONFIG"),
                origin: None,
            });
            return layer;
        }
    };
    let doc = match yaml::parse(&text) {
        Ok(d) => d,
        Err(e) => {
            problems.push(Problem {
                message: format!("config file is not valid YAML: {}", e.message),
                origin: Some(Origin::File {
                    path: path.into(),
                    line: e.line,
                }),
            });
            return layer;
        }
    };
    let at = |line: u64| Origin::File {
        path: path.to_string(),
        line,
    };
    let sections = match doc.node {
        Node::Map(s) => s,
        Node::Null => return layer,
        other => {
            problems.push(Problem {
                message: format!(
                    "the config file must be a mapping of sections, not {}",
                    other.kind()
                ),
                origin: Some(at(doc.line)),
            });
            return layer;
        }
    };
    let known_sections = options::Section::ALL.map(options::Section::name);
    for section in sections {
        if !known_sections.contains(&section.key.as_str()) {
            problems.push(Problem {
                message: format!(
                    "unknown section '{}' (known sections: {})",
                    section.key,
                    known_sections.join(", ")
                ),
                origin: Some(at(section.line)),
            });
            continue;
        }
        let entries = match section.value.node {
            Node::Map(e) => e,
            Node::Null => continue,
            other => {
                problems.push(Problem {
                    message: format!(
                        "section '{}' must be a mapping, not {}",
                        section.key,
                        other.kind()
                    ),
                    origin: Some(at(section.line)),
                });
                continue;
            }
        };
        for entry in entries {
            let origin = at(entry.line);
            let name = format!("{}.{}", section.key, entry.key);
            match (section.key.as_str(), entry.key.as_str()) {
                ("app", "command") => match scalars(&entry.value) {
                    Ok(v) => layer.command = Some((v, origin)),
                    Err(kind) => problems.push(Problem {
                        message: format!("{name} must be a list of strings, not {kind}"),
                        origin: Some(origin),
                    }),
                },
                ("probes", "checks") => match entry.value.node {
                    Node::Seq(items) => layer.checks.extend(items.into_iter().map(|i| {
                        let o = at(i.line);
                        (i, o)
                    })),
                    other => problems.push(Problem {
                        message: format!("{name} must be a list of probes, not {}", other.kind()),
                        origin: Some(origin),
                    }),
                },
                ("proxy", "dataplane-var") if matches!(entry.value.node, Node::Map(_)) => {
                    let Node::Map(vars) = entry.value.node else {
                        unreachable!()
                    };
                    let mut list = Vec::new();
                    for v in vars {
                        match v.value.node.as_scalar() {
                            Some(s) => list.push(format!("{}={s}", v.key)),
                            None if v.value.node == Node::Null => list.push(format!("{}=", v.key)),
                            None => problems.push(Problem {
                                message: format!(
                                    "{name}.{} must be a value, not {}",
                                    v.key,
                                    v.value.node.kind()
                                ),
                                origin: Some(at(v.line)),
                            }),
                        }
                    }
                    layer.values.insert(
                        "dataplane-var",
                        Raw {
                            values: list,
                            origin,
                        },
                    );
                }
                (s, k) => {
                    let Some(def) = OPTIONS.iter().find(|d| d.section.name() == s && d.key == k)
                    else {
                        let mut known: Vec<&str> = OPTIONS
                            .iter()
                            .filter(|d| d.section.name() == s)
                            .map(|d| d.key)
                            .collect();
                        known.extend(
                            options::FILE_ONLY
                                .iter()
                                .filter(|(fs, _)| fs.name() == s)
                                .map(|(_, k)| *k),
                        );
                        problems.push(Problem {
                            message: format!(
                                "unknown key '{k}' in section '{s}' (known keys: {})",
                                known.join(", ")
                            ),
                            origin: Some(origin),
                        });
                        continue;
                    };
                    match scalars(&entry.value) {
                        Ok(values) if def.kind.is_multi() || values.len() == 1 => {
                            layer.values.insert(def.flag, Raw { values, origin });
                        }
                        Ok(_) => problems.push(Problem {
                            message: format!("{name} takes a single value, not a list"),
                            origin: Some(origin),
                        }),
                        Err(kind) => problems.push(Problem {
                            message: format!(
                                "{name} must be a value or a list of values, not {kind}"
                            ),
                            origin: Some(origin),
                        }),
                    }
                }
            }
        }
    }
    layer
}

/// A scalar or a list of scalars as text.
fn scalars(item: &Item) -> Result<Vec<String>, &'static str> {
    match &item.node {
        Node::Scalar(s) => Ok(vec![s.clone()]),
        Node::Seq(items) => items
            .iter()
            .map(|i| i.node.as_scalar().map(str::to_string).ok_or(i.node.kind()))
            .collect(),
        Node::Null => Ok(Vec::new()),
        other => Err(other.kind()),
    }
}

/// The merged values and the problems found while typing them.
struct Resolver {
    merged: BTreeMap<&'static str, Raw>,
    problems: Vec<Problem>,
}

impl Resolver {
    fn def(id: &str) -> &'static OptDef {
        options::find(id)
    }

    /// The default's text; for options whose default is a value.
    fn default_text(id: &str) -> &'static str {
        match Self::def(id).default {
            options::DefaultValue::Is(d) => d,
            _ => panic!("--{id} has no default value"),
        }
    }

    fn raw(&self, id: &str) -> Option<&Raw> {
        self.merged.get(id)
    }

    fn problem(&mut self, id: &str, origin: &Origin, message: String) {
        let def = Self::def(id);
        self.problems.push(Problem {
            message: format!("{}: {message}", def.yaml()),
            origin: Some(origin.clone()),
        });
    }

    /// Parses a single value with `f`, falling back to the default (which is
    /// known to parse) when the given value is bad, so checking goes on.
    fn typed<T>(&mut self, id: &str, f: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.raw(id).cloned();
        if let Some(raw) = raw {
            let text = raw.values.first().cloned().unwrap_or_default();
            match f(&text) {
                Ok(v) => return Some(v),
                Err(e) => self.problem(id, &raw.origin, e),
            }
        }
        match Self::def(id).default {
            options::DefaultValue::Is(d) => Some(f(d).expect("defaults parse")),
            _ => None,
        }
    }

    /// As `typed`, for an option with a default value: there is always one.
    fn value<T>(&mut self, id: &str, f: impl Fn(&str) -> Result<T, String>) -> T {
        Self::default_text(id);
        self.typed(id, f)
            .expect("an option with a default has a value")
    }

    /// Every value of a list; the default's (split at commas) when unset.
    fn list<T>(&mut self, id: &str, f: impl Fn(&str) -> Result<T, String>) -> Vec<T> {
        let Some(raw) = self.raw(id).cloned() else {
            return match Self::def(id).default {
                options::DefaultValue::Is(d) => d
                    .split(',')
                    .map(|v| f(v).expect("defaults parse"))
                    .collect(),
                _ => Vec::new(),
            };
        };
        let mut out = Vec::new();
        for v in &raw.values {
            match f(v) {
                Ok(t) => out.push(t),
                Err(e) => self.problem(id, &raw.origin, e),
            }
        }
        out
    }

    fn text(&self, id: &str) -> Option<String> {
        self.raw(id)
            .and_then(|r| r.values.first().cloned())
            .filter(|s| !s.is_empty())
    }

    /// The given text, or the default's when none (or an empty one) is given.
    fn text_or_default(&self, id: &str) -> String {
        self.text(id)
            .unwrap_or_else(|| Self::default_text(id).to_string())
    }

    fn origin(&self, id: &str) -> Origin {
        self.raw(id).map_or(Origin::Default, |r| r.origin.clone())
    }
}

fn choice<'a>(options: &'a [&'a str]) -> impl Fn(&str) -> Result<String, String> + 'a {
    move |s| {
        let l = s.trim().to_ascii_lowercase();
        if options.contains(&l.as_str()) {
            Ok(l)
        } else {
            Err(format!("'{s}' is not one of {}", options.join(", ")))
        }
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

fn count(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("'{s}' is not a whole number"))
}

/// A duration above zero: a wait that must actually wait.
fn positive_duration(s: &str) -> Result<Duration, String> {
    parse::duration(s).and_then(|d| {
        if d.is_zero() {
            Err("must be more than 0".to_string())
        } else {
            Ok(d)
        }
    })
}

fn positive(s: &str) -> Result<u32, String> {
    count(s).and_then(|n| {
        if n == 0 {
            Err("must be at least 1".to_string())
        } else {
            Ok(n)
        }
    })
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        // A bare port binds loopback: the endpoint is for local checks
        // unless an address is given on purpose.
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    t.parse::<SocketAddr>()
        .map_err(|_| format!("'{s}' is not an address like 127.0.0.1:9000"))
}

/// Why a command cannot be run, with the exit code a shell (and tini,
/// and `docker run`) reports for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRunnable {
    /// Nothing by that name: 127.
    #[error("{0}")]
    Missing(String),
    /// It exists but cannot be executed (a directory, no execute bit): 126.
    #[error("{0}")]
    NotExecutable(String),
}

impl NotRunnable {
    /// 127 for a command that does not exist, 126 for one that cannot be executed.
    pub fn exit_code(&self) -> i32 {
        match self {
            NotRunnable::Missing(_) => crate::init::exit::EX_NOT_FOUND,
            NotRunnable::NotExecutable(_) => crate::init::exit::EX_NOT_EXECUTABLE,
        }
    }
}

/// Finds an executable: a path with a slash as given (relative to `cwd`),
/// otherwise the first match on PATH.
pub fn find_executable(program: &str, cwd: Option<&Path>) -> Result<PathBuf, NotRunnable> {
    let is_exec = |p: &Path| {
        p.metadata().is_ok_and(|m| m.is_file())
            && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if program.contains('/') {
        let p = match cwd {
            Some(dir) if Path::new(program).is_relative() => dir.join(program),
            _ => PathBuf::from(program),
        };
        return match p.metadata() {
            Err(_) => Err(NotRunnable::Missing(format!("'{program}' does not exist"))),
            Ok(m) if !m.is_file() => Err(NotRunnable::NotExecutable(format!(
                "'{program}' is not a file"
            ))),
            Ok(_) if !is_exec(&p) => Err(NotRunnable::NotExecutable(format!(
                "'{program}' is not executable (chmod +x it)"
            ))),
            Ok(_) => Ok(p),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let candidates: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .collect();
    if let Some(p) = candidates.iter().find(|p| is_exec(p)) {
        return Ok(p.clone());
    }
    // As a shell: found, but not runnable, is 126; not found at all, 127.
    match candidates.iter().find(|p| p.exists()) {
        Some(p) => Err(NotRunnable::NotExecutable(format!(
            "'{program}' was found on PATH as {} but is not an executable file",
            p.display()
        ))),
        None => Err(NotRunnable::Missing(format!(
            "'{program}' was not found on PATH"
        ))),
    }
}

/// Whether the file's owner, group and mode let `id` read it (what kuma-dp,
/// running as `--kuma-dp-user`, will need).
fn readable_by(m: &std::fs::Metadata, id: &Identity) -> bool {
    let mode = m.mode();
    if id.uid.is_root() {
        true
    } else if m.uid() == id.uid.as_raw() {
        mode & 0o400 != 0
    } else if m.gid() == id.gid.as_raw() || id.groups.iter().any(|g| g.as_raw() == m.gid()) {
        mode & 0o040 != 0
    } else {
        mode & 0o004 != 0
    }
}

/// Builds the configuration from the command line, the environment and
/// the file. `env` is the process environment lookup (injected for tests).
pub fn load(
    mode: Mode,
    matches: &ArgMatches,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let config_path = matches
        .get_one::<String>(options::CONFIG_FLAG)
        .cloned()
        .or_else(|| env(options::CONFIG_ENV));
    let file = match &config_path {
        Some(p) => file_layer(p, &mut problems),
        None => FileLayer::default(),
    };
    // Precedence: flag > env var > file > default.
    let mut merged = file.values.clone();
    merged.extend(env_layer(env));
    merged.extend(flag_layer(matches));
    let mut r = Resolver { merged, problems };
    let mut warnings = Vec::new();

    // ---- app ----
    let cli_command: Vec<String> = matches
        .get_many::<String>("command")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let (command, command_origin) = if !cli_command.is_empty() {
        (cli_command, Origin::Command)
    } else if let Some((c, o)) = file.command.clone() {
        (c, o)
    } else {
        (Vec::new(), Origin::Default)
    };
    let stop_signal = r.value("app-stop-signal", parse::signal);
    let stop_timeout = r.value("app-stop-timeout", parse::duration);
    let grace_delay = r.value("app-grace-delay", parse::duration);
    let app_user = identity(&mut r, "app-user");
    let workdir = r.text("app-workdir").map(PathBuf::from);
    if let Some(dir) = &workdir {
        if !dir.is_dir() {
            let o = r.origin("app-workdir");
            r.problem(
                "app-workdir",
                &o,
                format!("'{}' is not a directory", dir.display()),
            );
        }
    }
    let no_new_privs = r.value("app-no-new-privs", boolean);
    let mut app_not_runnable = None;
    let forward_to = match r
        .typed("forward-to", choice(&["group", "process"]))
        .as_deref()
    {
        Some("process") => ForwardTo::Process,
        _ => ForwardTo::Group,
    };
    if command.is_empty() {
        if mode == Mode::Run {
            r.problems.push(Problem {
                message: "no app command: give it after `--` (meshinit [OPTIONS] -- COMMAND [ARGS...]) or as app.command in the config file".into(),
                origin: None,
            });
        }
    } else if let Err(e) = find_executable(&command[0], workdir.as_deref()) {
        app_not_runnable = Some(e.exit_code());
        r.problems.push(Problem {
            message: format!("app command {e}; give the full path of an executable"),
            origin: Some(command_origin.clone()),
        });
    }

    // ---- probes ----
    let startup_period = r.value("probe-startup-period", parse::duration);
    let period = r.value("probe-period", parse::duration);
    let timeout = r.value("probe-timeout", parse::duration);
    let success_threshold = r.value("probe-success-threshold", positive);
    let failure_threshold = r.value("probe-failure-threshold", positive);
    let startup_timeout = r.value("startup-timeout", parse::duration);
    let on_unhealthy = match r
        .typed("on-unhealthy", choice(&["none", "shutdown"]))
        .as_deref()
    {
        Some("shutdown") => OnUnhealthy::Shutdown,
        _ => OnUnhealthy::None,
    };
    for (id, d) in [
        ("probe-period", period),
        ("probe-startup-period", startup_period),
        ("probe-timeout", timeout),
    ] {
        if d.is_zero() {
            let o = r.origin(id);
            r.problem(id, &o, "must be longer than 0s".into());
        }
    }
    let base = ProbeSpec {
        kind: ProbeKind::Shell(String::new()),
        startup_period,
        period,
        timeout,
        success_threshold,
        failure_threshold,
    };
    let mut probes: Vec<ProbeSpec> = Vec::new();
    for u in r.list("probe-http", |s| parse::url(s, &["http"])) {
        probes.push(ProbeSpec {
            kind: ProbeKind::Http(u),
            ..base.clone()
        });
    }
    for (host, port) in r.list("probe-tcp", parse::host_port) {
        probes.push(ProbeSpec {
            kind: ProbeKind::Tcp { host, port },
            ..base.clone()
        });
    }
    for cmd in r.list("probe-exec", |s| {
        if s.trim().is_empty() {
            Err("empty command".into())
        } else {
            Ok(s.to_string())
        }
    }) {
        probes.push(ProbeSpec {
            kind: ProbeKind::Shell(cmd),
            ..base.clone()
        });
    }
    for (item, origin) in &file.checks {
        if let Some(p) = file_check(item, origin, &base, &mut r.problems) {
            probes.push(p);
        }
    }

    // ---- proxy ----
    let proxy = proxy_config(&mut r, &mut warnings, env);
    let mut default_probe = false;
    if let Some(dp) = proxy.as_ref().and_then(|p| p.dataplane.as_ref()) {
        if probes.is_empty() {
            if let Some(first) = dp.inbounds.first() {
                probes.push(ProbeSpec {
                    kind: ProbeKind::Tcp {
                        host: first.service_address.clone(),
                        port: first.service_port,
                    },
                    ..base.clone()
                });
                default_probe = true;
            }
        }
        let has_exec = probes
            .iter()
            .any(|p| matches!(p.kind, ProbeKind::Shell(_) | ProbeKind::Argv(_)));
        for inbound in &dp.inbounds {
            let covered = probes.iter().any(|p| match &p.kind {
                ProbeKind::Http(u) => u.port == inbound.service_port,
                ProbeKind::Tcp { port, .. } => *port == inbound.service_port,
                _ => false,
            });
            if !covered && !has_exec {
                warnings.push(format!(
                    "inbound port {} (service '{}') forwards to servicePort {} which no probe checks; add --probe-tcp {}:{} or an HTTP probe on that port",
                    inbound.port, inbound.service, inbound.service_port, inbound.service_address, inbound.service_port
                ));
            }
        }
    }

    // ---- shutdown ----
    let stop_signals = r.list("stop-signals", parse::signal);
    for s in &stop_signals {
        if matches!(s, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGCHLD) {
            let o = r.origin("stop-signals");
            r.problem(
                "stop-signals",
                &o,
                format!("{} cannot be a stop signal", parse::signal_name(*s)),
            );
        }
    }
    if stop_signals.is_empty() {
        let o = r.origin("stop-signals");
        r.problem(
            "stop-signals",
            &o,
            "at least one stop signal is needed".into(),
        );
    }
    let drain_signal = r.value("drain-signal", |s| {
        parse::signal(s).and_then(|sig| match sig {
            Signal::SIGTERM | Signal::SIGUSR2 => Ok(sig),
            _ => Err(format!("'{s}' is not TERM or USR2")),
        })
    });
    let drain_timeout = r.value("drain-timeout", parse::duration);
    let shutdown_budget = r.typed("shutdown-budget", parse::duration);
    let exit_code_map = ExitCodeMap(r.list("exit-code-map", parse::exit_code_mapping));
    let drain_time = proxy.as_ref().and_then(|p| p.drain_time);
    if proxy.is_some() {
        let effective = drain_time.unwrap_or(kuma_dp::DEFAULT_DRAIN_TIME);
        if drain_signal == Signal::SIGTERM && drain_timeout <= effective {
            warnings.push(format!(
                "drain-timeout {} is not larger than kuma-dp's drain time {}: kuma-dp will be told to stop before its drain ends; raise --drain-timeout",
                parse::fmt_duration(drain_timeout),
                parse::fmt_duration(effective)
            ));
        }
    }
    let start_order = match r
        .typed("start-order", choice(&["app-first", "proxy-first"]))
        .as_deref()
    {
        Some("proxy-first") => StartOrder::ProxyFirst,
        _ => StartOrder::AppFirst,
    };
    let until_idle = r.value("drain-until-idle", boolean);
    let drain_min = r.value("drain-min", parse::duration);
    let drain_idle = r.value("drain-idle", parse::duration);
    // Only meaningful with a SIGTERM drain that Envoy's stats can follow.
    let idle_drain =
        (until_idle && proxy.is_some() && drain_signal == Signal::SIGTERM).then_some(IdleDrain {
            min: drain_min,
            idle: drain_idle,
        });
    if let Some(p) = &proxy {
        let unprobed: Vec<String> = p
            .dataplane
            .iter()
            .flat_map(|dp| dp.inbounds.iter())
            .filter(|i| !i.has_service_probe)
            .map(|i| i.port.to_string())
            .collect();
        if !unprobed.is_empty() {
            // Direct mode registers the Dataplane when kuma-dp connects, and
            // kuma-cp counts an inbound without a serviceProbe as healthy at
            // once: measured, about a second before Envoy listens on it.
            let why = match start_order {
                StartOrder::ProxyFirst => "with --start-order proxy-first kuma-dp registers the Dataplane before the app is ready, so clients may be sent to an app that cannot serve yet",
                StartOrder::AppFirst => "kuma-cp counts such an inbound healthy as soon as kuma-dp connects, about a second before Envoy listens on it, so a new instance can fail requests while it joins",
            };
            warnings.push(format!(
                "no serviceProbe on inbound port(s) {}: {why}; add `serviceProbe: {{tcp: {{}}}}` to each inbound",
                unprobed.join(", ")
            ));
        }
        if let Some(idle) = idle_drain {
            let kuma = p.drain_time.unwrap_or(kuma_dp::DEFAULT_DRAIN_TIME);
            if idle.min >= kuma {
                warnings.push(format!(
                    "--drain-min {} is not shorter than kuma-dp's drain time {}: the drain cannot end early once the traffic has gone",
                    parse::fmt_duration(idle.min),
                    parse::fmt_duration(kuma)
                ));
            }
        }
    }
    let drain_mode = match drain_signal {
        Signal::SIGUSR2 => DrainMode::InboundUsr2 {
            wait: drain_time.unwrap_or(kuma_dp::DEFAULT_DRAIN_TIME),
        },
        _ => DrainMode::Term,
    };

    // ---- status, log ----
    let status_listen = r.typed("status-listen", listen_addr);
    let status_request_timeout = r.value("status-request-timeout", positive_duration);
    let state_file = r.text("state-file").map(PathBuf::from);
    if let Some(file) = &state_file {
        // Found out at start rather than at exit, when the record is lost.
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let problem = if !dir.is_dir() {
            Some(format!("'{}' is not a directory", dir.display()))
        } else if file.is_dir() {
            Some(format!("'{}' is a directory, not a file", file.display()))
        } else {
            None
        };
        if let Some(problem) = problem {
            let o = r.origin("state-file");
            r.problem("state-file", &o, problem);
        }
    }
    let log_json = r.typed("log-format", choice(&["text", "json"])).as_deref() == Some("json");
    let log_level = match r
        .typed(
            "log-level",
            choice(&["error", "warn", "info", "debug", "trace"]),
        )
        .as_deref()
    {
        Some("error") => tracing::Level::ERROR,
        Some("warn") => tracing::Level::WARN,
        Some("debug") => tracing::Level::DEBUG,
        Some("trace") => tracing::Level::TRACE,
        Some(_) => tracing::Level::INFO,
        // Not given: a plain init is quiet, as tini and dumb-init are (a CLI
        // run under it prints only its own output); with kuma-dp the phase
        // lines are the story of the service, and stay.
        None if proxy.is_none() => tracing::Level::WARN,
        None => tracing::Level::INFO,
    };

    let settings = Settings {
        has_proxy: proxy.is_some(),
        has_probes: !probes.is_empty(),
        startup_timeout,
        proxy_ready_timeout: r.value("proxy-ready-timeout", parse::duration),
        proxy_max_restarts: r.value("proxy-max-restarts", count),
        proxy_backoff_initial: r.value("proxy-restart-backoff", positive_duration),
        app_stop_signal: stop_signal,
        // Given explicitly (flag, env or file), it is what the app wants;
        // otherwise the received stop signal is passed through.
        pass_stop_signal: r.raw("app-stop-signal").is_none(),
        app_stop_timeout: stop_timeout,
        app_grace_delay: grace_delay,
        drain_mode,
        drain_timeout,
        on_unhealthy,
        start_order,
        idle_drain,
        proxy_restart_window: lifecycle::PROXY_RESTART_WINDOW,
        proxy_backoff_max: lifecycle::PROXY_BACKOFF_MAX,
        kill_bound: lifecycle::KILL_BOUND,
        cleanup_timeout: lifecycle::CLEANUP_TIMEOUT,
    };
    if let Some(budget) = shutdown_budget {
        let worst = settings.worst_case_shutdown();
        if worst > budget {
            warnings.push(format!(
                "worst-case shutdown {} exceeds the shutdown budget {}: the platform may SIGKILL meshinit mid-shutdown; lower the delays or raise the budget",
                parse::fmt_duration(worst),
                parse::fmt_duration(budget)
            ));
        }
    }

    if !r.problems.is_empty() {
        // A shell's codes when the command alone is the problem: a wrapper
        // script or `docker run` user tells "not found" from "bad option".
        let exit_code = match app_not_runnable {
            Some(code) if r.problems.len() == 1 => code,
            _ => crate::init::exit::EX_USAGE,
        };
        return Err(ConfigError {
            problems: r.problems,
            exit_code,
        });
    }
    let effective = OPTIONS
        .iter()
        .map(|d| {
            let (value, origin) = match r.raw(d.flag) {
                Some(raw) => (raw.values.join(","), raw.origin.clone()),
                None => match d.default {
                    options::DefaultValue::Is(v) => (v.to_string(), Origin::Default),
                    _ => (String::new(), Origin::Default),
                },
            };
            let value = if d.flag == "log-level" && origin == Origin::Default {
                log_level.as_str().to_ascii_lowercase()
            } else if d.flag == "proxy-ready-url" && origin == Origin::Default {
                proxy.as_ref().map_or(value, |p| p.ready_url.to_string())
            } else if d.flag == "kuma-dp-arg" {
                // A token given inline is shown redacted (issue 8).
                r.raw(d.flag)
                    .map_or(value, |raw| kuma_dp::shown_args(&raw.values).join(","))
            } else {
                value
            };
            (d.yaml(), value, origin)
        })
        .collect();
    Ok(Config {
        app: AppConfig {
            command,
            user: app_user,
            workdir,
            no_new_privs,
            forward_to,
        },
        probes,
        default_probe,
        proxy,
        stop_signals,
        exit_code_map,
        shutdown_budget,
        status_listen,
        status_request_timeout,
        state_file,
        log_json,
        log_level,
        settings,
        warnings,
        effective,
    })
}

fn identity(r: &mut Resolver, id: &str) -> Option<Identity> {
    let spec = r.typed(id, parse::user_spec)?;
    match user::resolve(&spec) {
        Ok(i) => Some(i),
        Err(e) => {
            let o = r.origin(id);
            r.problem(id, &o, e);
            None
        }
    }
}

/// One entry of `probes.checks` in the file.
fn file_check(
    item: &Item,
    origin: &Origin,
    base: &ProbeSpec,
    problems: &mut Vec<Problem>,
) -> Option<ProbeSpec> {
    let path = match origin {
        Origin::File { path, .. } => path.clone(),
        _ => String::new(),
    };
    let Node::Map(entries) = &item.node else {
        problems.push(Problem {
            message: format!(
                "probes.checks: each check must be a mapping, not {}",
                item.node.kind()
            ),
            origin: Some(origin.clone()),
        });
        return None;
    };
    let mut spec = base.clone();
    let mut kind = None;
    let mut ok = true;
    for e in entries {
        let text = e.value.node.as_scalar();
        let parsed: Result<(), String> = match (e.key.as_str(), text) {
            ("http", Some(t)) => parse::url(t, &["http"]).map(|u| kind = Some(ProbeKind::Http(u))),
            ("tcp", Some(t)) => parse::host_port(t).map(|(host, port)| kind = Some(ProbeKind::Tcp { host, port })),
            ("exec", Some(t)) => {
                kind = Some(ProbeKind::Shell(t.to_string()));
                Ok(())
            }
            ("exec", None) => match scalars(&e.value) {
                Ok(argv) if !argv.is_empty() => {
                    kind = Some(ProbeKind::Argv(argv));
                    Ok(())
                }
                _ => Err("exec must be a command string (run by /bin/sh) or a non-empty list (run directly)".into()),
            },
            ("period", Some(t)) => parse::duration(t).map(|d| spec.period = d),
            ("startup-period", Some(t)) => parse::duration(t).map(|d| spec.startup_period = d),
            ("timeout", Some(t)) => parse::duration(t).map(|d| spec.timeout = d),
            ("success-threshold", Some(t)) => positive(t).map(|n| spec.success_threshold = n),
            ("failure-threshold", Some(t)) => positive(t).map(|n| spec.failure_threshold = n),
            (k, _) if !PROBE_CHECK_KEYS.contains(&k) => Err(format!("unknown key '{k}' (known keys: {})", PROBE_CHECK_KEYS.join(", "))),
            (k, _) => Err(format!("{k} must be a single value, not {}", e.value.node.kind())),
        };
        if let Err(m) = parsed {
            ok = false;
            problems.push(Problem {
                message: format!("probes.checks: {m}"),
                origin: Some(Origin::File {
                    path: path.clone(),
                    line: e.line,
                }),
            });
        }
    }
    match kind {
        Some(k) if ok => Some(ProbeSpec { kind: k, ..spec }),
        Some(_) => None,
        None => {
            problems.push(Problem {
                message: "probes.checks: each check needs one of http, tcp or exec".into(),
                origin: Some(origin.clone()),
            });
            None
        }
    }
}

fn proxy_config(
    r: &mut Resolver,
    warnings: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ProxyConfig> {
    let file = r.text("dataplane-file");
    let name = r.text("dataplane-name");
    let mesh = r.text("mesh");
    let vars_list = r.list("dataplane-var", parse::key_value);
    let extra = r
        .raw("kuma-dp-arg")
        .map(|raw| raw.values.clone())
        .unwrap_or_default();
    let token_file = r.text("dataplane-token-file");
    let cp = r.text("cp-address");

    if file.is_none() && name.is_none() {
        for id in ["cp-address", "dataplane-token-file", "mesh", "kuma-dp-user"] {
            if r.raw(id).is_some() {
                let o = r.origin(id);
                r.problem(id, &o, "is set but no proxy would run: give --dataplane-file (direct mode) or --dataplane-name with --mesh (indirect mode)".into());
            }
        }
        return None;
    }
    if file.is_some() && name.is_some() {
        let o = r.origin("dataplane-name");
        r.problem("dataplane-name", &o, "direct mode (--dataplane-file) and indirect mode (--dataplane-name) exclude each other; give one".into());
    }
    if name.is_some() && mesh.is_none() {
        let o = r.origin("dataplane-name");
        r.problem(
            "dataplane-name",
            &o,
            "indirect mode needs --mesh too".into(),
        );
    }
    if let Some(cp) = &cp {
        if let Err(e) = parse::url(cp, &["http", "https"]) {
            let o = r.origin("cp-address");
            r.problem("cp-address", &o, e);
        }
    }
    let kuma_dp_text = r.text_or_default("kuma-dp");
    let kuma_dp = match find_executable(&kuma_dp_text, None) {
        Ok(p) => Some(p),
        Err(e) => {
            let o = r.origin("kuma-dp");
            r.problem(
                "kuma-dp",
                &o,
                format!("kuma-dp {e}; install kuma-dp or pass --kuma-dp PATH"),
            );
            None
        }
    };
    let user = identity(r, "kuma-dp-user");
    let ready_url = r.typed("proxy-ready-url", |s| {
        parse::url(&parse::expand_env(s, env), &["http"])
    });

    let mut vars = BTreeMap::new();
    for (k, v) in &vars_list {
        vars.insert(k.clone(), v.clone());
    }
    let dataplane = file.as_ref().and_then(|path| {
        let origin = r.origin("dataplane-file");
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                r.problem(
                    "dataplane-file",
                    &origin,
                    format!("cannot read '{path}': {e}"),
                );
                return None;
            }
        };
        match dataplane::check(&text, &vars) {
            Ok(dp) => {
                if !dp.unused_vars.is_empty() {
                    warnings.push(format!(
                        "dataplane variables given but not used by {path}: {}",
                        dp.unused_vars.join(", ")
                    ));
                }
                Some(dp)
            }
            Err(errs) => {
                for e in errs {
                    r.problem("dataplane-file", &origin, format!("{path} {e}"));
                }
                None
            }
        }
    });
    if let Some(path) = &token_file {
        let origin = r.origin("dataplane-token-file");
        match std::fs::metadata(path) {
            Err(e) => r.problem(
                "dataplane-token-file",
                &origin,
                format!("cannot read '{path}': {e}"),
            ),
            Ok(m) if !m.is_file() => r.problem(
                "dataplane-token-file",
                &origin,
                format!("'{path}' is not a file"),
            ),
            Ok(m) => {
                // Open it to prove it is readable; the content is never read
                // into meshinit's memory, let alone logged.
                if let Err(e) = std::fs::File::open(path) {
                    r.problem(
                        "dataplane-token-file",
                        &origin,
                        format!("cannot read '{path}': {e}"),
                    );
                } else if m.len() == 0 {
                    r.problem("dataplane-token-file", &origin, format!("'{path}' is empty; write the token issued by the control plane into it"));
                } else if let Some(id) = user.as_ref().filter(|id| !readable_by(&m, id)) {
                    r.problem(
                        "dataplane-token-file",
                        &origin,
                        format!("'{path}' is not readable by {} (--kuma-dp-user), who runs kuma-dp; chown or chmod it", id.name),
                    );
                } else if m.permissions().mode() & 0o044 != 0 {
                    warnings.push(format!(
                        "dataplane token file {path} is readable by group or others (mode {:o}); chmod 600 it",
                        m.mode() & 0o777
                    ));
                }
            }
        }
    }

    let mut args = vec!["run".to_string()];
    if let Some(cp) = &cp {
        args.push(format!("--cp-address={cp}"));
    }
    if let Some(path) = &file {
        args.push(format!("--dataplane-file={path}"));
        for (k, v) in &vars_list {
            args.push("--dataplane-var".into());
            args.push(format!("{k}={v}"));
        }
    } else if let (Some(n), Some(m)) = (&name, &mesh) {
        args.push(format!("--name={n}"));
        args.push(format!("--mesh={m}"));
    }
    if let Some(t) = &token_file {
        args.push(format!("--dataplane-token-file={t}"));
    }
    args.extend(extra.iter().cloned());
    let drain_time = kuma_dp::drain_time(&extra, env);
    let (work_dir, owns_work_dir) = match kuma_dp::user_work_dir(&extra) {
        Some(dir) => {
            if let Some(problem) = crate::mesh::workdir::check_given(Path::new(&dir), user.as_ref())
            {
                let o = r.origin("kuma-dp-arg");
                r.problem("kuma-dp-arg", &o, format!("--work-dir: {problem}"));
            }
            // Absolute, because meshinit moves to `/` once the app runs and
            // still reads Envoy's admin socket in there (kuma-dp itself starts
            // where meshinit was started, so the argument stays as written).
            (
                std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir)),
                false,
            )
        }
        None => {
            // A scratch image has no /tmp: without this check kuma-dp's every
            // start would fail on the missing directory until meshinit gives
            // up on it (exit 75), long after the app was started.
            let tmp = std::env::temp_dir();
            if !tmp.is_dir() {
                r.problems.push(Problem {
                    message: format!(
                        "kuma-dp's work directory is made in the temp dir '{}', which does not exist (a scratch image has none): create it (e.g. `mkdir -m 1777 /tmp` in the image), point TMPDIR at a directory, or give kuma-dp one with --kuma-dp-arg=--work-dir=DIR",
                        tmp.display()
                    ),
                    origin: None,
                });
            }
            // A fresh, unguessable name: the directory is created at spawn
            // time as mkdtemp(3) does (another name if this one exists),
            // mode 0700, and removed at exit.
            let dir = tmp.join(format!(
                "meshinit-kuma-dp-{}-{:016x}",
                std::process::id(),
                crate::mesh::workdir::random_u64()
            ));
            args.push(format!("--work-dir={}", dir.display()));
            (dir, true)
        }
    };
    let admin = Admin {
        socket: work_dir.join(crate::mesh::envoy::ADMIN_SOCKET),
        tcp_port: dataplane.as_ref().and_then(|d| d.admin_port),
    };
    let inbound_listeners = dataplane
        .iter()
        .flat_map(|d| d.inbounds.iter())
        .map(|i| InboundListener {
            address: i.address.clone(),
            port: i.port,
            service_port: i.service_port,
        })
        .collect();

    Some(ProxyConfig {
        kuma_dp: kuma_dp?,
        args,
        user,
        ready_url: ready_url?,
        dataplane,
        drain_time,
        work_dir,
        owns_work_dir,
        admin,
        inbound_listeners,
    })
}

/// The lifecycle settings the options' defaults give, for a run with a
/// proxy and probes: where the lifecycle's tests start from.
#[cfg(test)]
pub(crate) fn default_settings() -> Settings {
    let matches = cli::command().get_matches_from(["meshinit"]);
    let cfg = load(Mode::Check, &matches, &|_: &str| None).expect("the defaults are valid");
    Settings {
        has_proxy: true,
        has_probes: true,
        ..cfg.settings
    }
}

/// Keys of one entry of `probes.checks`.
const PROBE_CHECK_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "period",
    "startup-period",
    "timeout",
    "success-threshold",
    "failure-threshold",
];

#[cfg(test)]
mod tests;
