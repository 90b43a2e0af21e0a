use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::host::{ExecLimits, FileKind, NotRunnable, ReadError};

use crate::lifecycle::DrainMode;

/// Loads a configuration from argv, a fake environment and optional file text.
fn load_with(
    args: &[&str],
    env: &[(&str, &str)],
    file: Option<&str>,
) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "meshinit-config-test-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut argv: Vec<String> = vec!["meshinit".into()];
    if let Some(text) = file {
        let path = dir.join("meshinit.yaml");
        std::fs::write(&path, text).unwrap();
        argv.push(format!("--config={}", path.display()));
    }
    argv.extend(args.iter().map(|s| s.to_string()));
    let matches = crate::config::cli::command()
        .try_get_matches_from(&argv)
        .expect("clap parses");
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let r = load(Mode::Run, &matches, &lookup);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn messages(e: ConfigError) -> Vec<String> {
    e.problems.iter().map(|p| p.to_string()).collect()
}

#[test]
fn every_option_is_a_flag_of_the_command_line() {
    let cmd = crate::config::cli::command();
    for def in OPTIONS {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == def.flag)
            .unwrap_or_else(|| panic!("--{} has no clap arg", def.flag));
        assert_eq!(arg.get_long(), Some(def.flag));
    }
}

#[test]
fn every_default_value_is_valid() {
    // Typing falls back to the default when a given value is bad, and
    // panics if the default itself does not parse: load them all.
    let c = load_with(&["--", "/bin/true"], &[], None).unwrap();
    for def in OPTIONS {
        if let options::DefaultValue::Is(d) = def.default {
            assert!(
                c.effective
                    .iter()
                    .any(|e| e.key == def.yaml() && e.value == d && e.origin == Origin::Default),
                "{} = {d} (default) in {:?}",
                def.yaml(),
                c.effective
            );
        }
    }
}

#[test]
fn defaults_apply_without_any_source() {
    let c = load_with(&["--", "/bin/true"], &[], None).unwrap();
    assert_eq!(c.settings.app_stop_signal, Signal::SIGTERM);
    assert_eq!(c.settings.app_stop_timeout, Duration::from_secs(10));
    assert_eq!(c.settings.app_grace_delay, Duration::ZERO);
    assert_eq!(c.stop_signals, vec![Signal::SIGTERM, Signal::SIGINT]);
    assert!(c.proxy.is_none() && c.probes.is_empty());
    assert!(c
        .effective
        .iter()
        .any(|e| e.key == "app.stop-timeout" && e.value == "10s" && e.origin == Origin::Default));
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let file = "app:\n  stop-timeout: 3s\n  grace-delay: 2s\n  stop-signal: QUIT\n";
    let c = load_with(
        &["--app-stop-timeout=7s", "--", "/bin/true"],
        &[
            ("MESHINIT_APP_STOP_TIMEOUT", "5s"),
            ("MESHINIT_APP_GRACE_DELAY", "4s"),
        ],
        Some(file),
    )
    .unwrap();
    assert_eq!(c.settings.app_stop_timeout, Duration::from_secs(7));
    assert_eq!(c.settings.app_grace_delay, Duration::from_secs(4));
    assert_eq!(c.settings.app_stop_signal, Signal::SIGQUIT);
    assert_eq!(c.settings.drain_timeout, Duration::from_secs(40));
    let origin = |key: &str| {
        c.effective
            .iter()
            .find(|e| e.key == key)
            .unwrap()
            .origin
            .clone()
    };
    assert_eq!(
        origin("app.stop-timeout"),
        Origin::Flag("app-stop-timeout".into())
    );
    assert_eq!(
        origin("app.grace-delay"),
        Origin::Env("MESHINIT_APP_GRACE_DELAY".into())
    );
    assert!(matches!(
        origin("app.stop-signal"),
        Origin::File { line: 4, .. }
    ));
}

#[test]
fn every_problem_is_reported_at_once_with_its_origin() {
    let file =
        "app:\n  stop-timeout: 10x\n  colour: blue\nprobez:\n  a: 1\nprobes:\n  period: soon\n";
    let errs = messages(
        load_with(
            &[
                "--app-stop-signal=NOPE",
                "--exit-code-map=999:0",
                "--",
                "/no/such/program",
            ],
            &[("MESHINIT_APP_GRACE_DELAY", "5")],
            Some(file),
        )
        .unwrap_err(),
    );
    let has = |needle: &str, origin: &str| {
        errs.iter()
            .any(|e| e.contains(needle) && e.contains(origin))
    };
    assert!(
        has("'10x' is not a duration", "meshinit.yaml:2"),
        "{errs:#?}"
    );
    assert!(
        has("unknown key 'colour' in section 'app'", "meshinit.yaml:3"),
        "{errs:#?}"
    );
    assert!(
        has("unknown section 'probez'", "meshinit.yaml:4"),
        "{errs:#?}"
    );
    assert!(
        has("'soon' is not a duration", "meshinit.yaml:7"),
        "{errs:#?}"
    );
    assert!(
        has("'NOPE' is not a signal", "flag --app-stop-signal"),
        "{errs:#?}"
    );
    assert!(has("'999'", "flag --exit-code-map"), "{errs:#?}");
    assert!(
        has("'5' has no unit", "env MESHINIT_APP_GRACE_DELAY"),
        "{errs:#?}"
    );
    assert!(
        has("'/no/such/program' does not exist", "the command after --"),
        "{errs:#?}"
    );
    assert_eq!(errs.len(), 8, "{errs:#?}");
}

#[test]
fn missing_config_file_and_bad_yaml_are_reported() {
    let dir = std::env::temp_dir();
    let missing = dir.join("meshinit-definitely-missing.yaml");
    let argv = [
        "meshinit".to_string(),
        format!("--config={}", missing.display()),
        "--".into(),
        "/bin/true".into(),
    ];
    let m = crate::config::cli::command()
        .try_get_matches_from(&argv)
        .unwrap();
    let errs = messages(load(Mode::Run, &m, &|_: &str| None).unwrap_err());
    assert!(
        errs[0].contains("cannot read config file")
            && errs[0].contains("meshinit-definitely-missing.yaml"),
        "{errs:?}"
    );

    let errs = messages(
        load_with(&["--", "/bin/true"], &[], Some("app:\n  command: [a, b\n")).unwrap_err(),
    );
    assert!(
        errs[0].contains("not valid YAML") && errs[0].contains("meshinit.yaml:"),
        "{errs:?}"
    );
}

#[test]
fn command_comes_from_the_file_when_not_given() {
    let c = load_with(&[], &[], Some("app:\n  command: [/bin/sleep, '10']\n")).unwrap();
    assert_eq!(c.app.command, vec!["/bin/sleep", "10"]);
    let errs = messages(load_with(&[], &[], None).unwrap_err());
    assert!(errs[0].contains("no app command"), "{errs:?}");
}

#[test]
fn probes_from_flags_env_and_file_checks() {
    let file = "probes:\n  checks:\n  - http: http://127.0.0.1:8080/health\n    period: 2s\n    failure-threshold: 5\n  - exec: [/bin/true]\n  - exec: 'test -f /tmp/x'\n";
    let c = load_with(
        &["--probe-tcp=127.0.0.1:6379", "--", "/bin/true"],
        &[(
            "MESHINIT_PROBE_HTTP",
            "http://127.0.0.1:1/a,http://127.0.0.1:2/b",
        )],
        Some(file),
    )
    .unwrap();
    let kinds: Vec<String> = c.probes.iter().map(|p| p.kind.to_string()).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert!(kinds[0].starts_with("http GET http://127.0.0.1:1/a"));
    assert!(kinds[2].starts_with("tcp 127.0.0.1:6379"));
    assert_eq!(c.probes[3].period, Duration::from_secs(2));
    assert_eq!(c.probes[3].failure_threshold, 5);
    assert_eq!(c.probes[4].kind, ProbeKind::Argv(vec!["/bin/true".into()]));
    assert_eq!(c.probes[5].kind, ProbeKind::Shell("test -f /tmp/x".into()));
    let errs = messages(
        load_with(
            &["--", "/bin/true"],
            &[],
            Some("probes:\n  checks:\n  - period: 1s\n  - tcp: nope\n    color: red\n"),
        )
        .unwrap_err(),
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("needs one of http, tcp or exec")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown key 'color'") && e.contains(":5")),
        "{errs:?}"
    );
}

#[test]
fn proxy_needs_a_dataplane_and_renders_it() {
    let dir = std::env::temp_dir().join(format!("meshinit-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dp = dir.join("dp.yaml");
    std::fs::write(&dp, "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18000\n    servicePort: 18080\n    tags:\n      kuma.io/service: backend\n").unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "secret-token-value").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dp_arg = format!("--dataplane-file={}", dp.display());
    let token_arg = format!("--dataplane-token-file={}", token.display());
    let c = load_with(
        &[
            "--kuma-dp=/bin/true",
            "--cp-address=https://127.0.0.1:5678",
            &dp_arg,
            "--dataplane-var=name=b-1",
            &token_arg,
            "--kuma-dp-arg=--drain-time=3s",
            "--",
            "/bin/true",
        ],
        &[],
        None,
    )
    .unwrap();
    // Issue 23: with kuma-dp, failing probes take the instance out of the mesh by default.
    assert_eq!(
        c.settings.on_unhealthy,
        crate::lifecycle::OnUnhealthy::Leave
    );
    let p = c.proxy.as_ref().unwrap();
    let mut args = p.args.clone();
    let work_dir = args.pop().unwrap();
    assert_eq!(
        args,
        vec![
            "run".to_string(),
            "--cp-address=https://127.0.0.1:5678".into(),
            format!("--dataplane-file={}", dp.display()),
            "--dataplane-var".into(),
            "name=b-1".into(),
            format!("--dataplane-token-file={}", token.display()),
            "--drain-time=3s".into(),
        ]
    );
    assert!(
        work_dir.starts_with("--work-dir=") && p.owns_work_dir,
        "meshinit gives kuma-dp a work dir it owns: {work_dir}"
    );
    assert_eq!(p.drain_time, Some(Duration::from_secs(3)));
    assert_eq!(p.ready_url.to_string(), "http://127.0.0.1:9902/ready");
    // The default probe: the first inbound's servicePort.
    assert!(c.default_probe);
    assert_eq!(
        c.probes[0].kind,
        ProbeKind::Tcp {
            host: "127.0.0.1".into(),
            port: 18080
        }
    );
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("no serviceProbe on inbound port(s) 18000"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[1].contains("--drain-min 10s is not shorter than kuma-dp's drain time 3s"),
        "{:?}",
        c.warnings
    );

    // Missing variable, readable-by-others token, bad cp-address: all at once.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let errs = messages(
        load_with(
            &[
                "--kuma-dp=/bin/true",
                "--cp-address=127.0.0.1:5678",
                &dp_arg,
                &token_arg,
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("variable 'name' is used but not given")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("proxy.cp-address") && e.contains("flag --cp-address")),
        "{errs:?}"
    );
    for e in &errs {
        assert!(!e.contains("secret-token-value"));
    }
    let c = load_with(
        &[
            "--kuma-dp=/bin/true",
            &dp_arg,
            "--dataplane-var=name=x",
            &token_arg,
            "--",
            "/bin/true",
        ],
        &[],
        None,
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("readable by group or others")),
        "{:?}",
        c.warnings
    );

    // kuma-dp runs as nobody: a root-only token would fail it at start.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let errs = messages(
        load_with(
            &[
                "--kuma-dp=/bin/true",
                &dp_arg,
                "--dataplane-var=name=x",
                &token_arg,
                "--kuma-dp-user=nobody",
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        errs.iter().any(|e| e.contains("not readable by nobody")),
        "{errs:?}"
    );

    std::fs::write(&token, "").unwrap();
    let errs = messages(
        load_with(
            &[
                "--kuma-dp=/bin/true",
                &dp_arg,
                "--dataplane-var=name=x",
                &token_arg,
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(errs.iter().any(|e| e.contains("is empty")), "{errs:?}");
    let errs = messages(
        load_with(
            &[
                "--kuma-dp=/no/kuma-dp",
                &dp_arg,
                "--dataplane-var=name=x",
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("kuma-dp '/no/kuma-dp' does not exist")),
        "{errs:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn proxy_options_without_a_dataplane_are_refused() {
    let errs = messages(
        load_with(
            &["--cp-address=https://x:5678", "--", "/bin/true"],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(errs[0].contains("no proxy would run"), "{errs:?}");
    let errs = messages(
        load_with(
            &[
                "--kuma-dp=/bin/true",
                "--dataplane-name=a",
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(errs[0].contains("needs --mesh"), "{errs:?}");
}

#[test]
fn drain_settings_and_budget() {
    let c = load_with(
        &[
            "--kuma-dp=/bin/true",
            "--dataplane-name=a",
            "--mesh=m",
            "--drain-timeout=20s",
            "--shutdown-budget=25s",
            "--app-grace-delay=5s",
            "--",
            "/bin/true",
        ],
        &[],
        None,
    )
    .unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("drain-timeout 20s is not larger than kuma-dp's drain time 30s")),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("worst-case shutdown 39s exceeds --shutdown-budget 25s")),
        "{:?}",
        c.warnings
    );
    assert_eq!(c.settings.worst_case_shutdown(), Duration::from_secs(39));
    let c = load_with(
        &[
            "--kuma-dp=/bin/true",
            "--dataplane-name=a",
            "--mesh=m",
            "--drain-signal=USR2",
            "--kuma-dp-arg=--drain-time",
            "--kuma-dp-arg=5s",
            "--",
            "/bin/true",
        ],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        c.settings.drain_mode,
        DrainMode::InboundUsr2 {
            wait: Duration::from_secs(5)
        }
    );
    let p = c.proxy.unwrap();
    assert_eq!(
        p.args[..5],
        ["run", "--name=a", "--mesh=m", "--drain-time", "5s"]
    );
    assert!(p.args[5].starts_with("--work-dir=") && p.inbound_listeners.is_empty());
    assert_eq!(
        c.settings.idle_drain, None,
        "indirect mode: no inbound listeners to watch"
    );
}

#[test]
fn unknown_user_is_refused_by_name() {
    let errs = messages(
        load_with(
            &["--app-user=no-such-user-xyz", "--", "/bin/true"],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        errs[0].contains("'no-such-user-xyz' does not exist")
            && errs[0].contains("flag --app-user"),
        "{errs:?}"
    );
}

#[test]
fn status_listen_defaults_to_loopback_for_a_bare_port() {
    let c = load_with(&["--status-listen=9000", "--", "/bin/true"], &[], None).unwrap();
    assert_eq!(c.status_listen, Some("127.0.0.1:9000".parse().unwrap()));
}

#[test]
fn restart_backoff_and_status_request_timeout_default_and_can_be_shortened() {
    let c = load_with(&["--", "/bin/true"], &[], None).unwrap();
    assert_eq!(c.settings.proxy_backoff_initial, Duration::from_secs(1));
    assert_eq!(c.status_request_timeout, Duration::from_secs(2));
    let file = "status:\n  request-timeout: 300ms\n";
    let c = load_with(
        &["--", "/bin/true"],
        &[("MESHINIT_PROXY_RESTART_BACKOFF", "100ms")],
        Some(file),
    )
    .unwrap();
    assert_eq!(c.settings.proxy_backoff_initial, Duration::from_millis(100));
    assert_eq!(c.status_request_timeout, Duration::from_millis(300));
    let errs = messages(
        load_with(
            &[
                "--proxy-restart-backoff=0s",
                "--status-request-timeout=0ms",
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter().all(|e| e.contains("must be longer than 0s")),
        "{errs:?}"
    );
}

/// Issue 13: `--app-grace-delay 300000000000y` was accepted, and meshinit
/// (PID 1) then panicked computing the grace deadline mid-shutdown.
#[test]
fn durations_longer_than_a_day_are_refused_with_their_origin() {
    let file = "app:\n  stop-timeout: 2d\n";
    let errs = messages(
        load_with(
            &["--app-grace-delay", "300000000000y", "--", "/bin/true"],
            &[("MESHINIT_STARTUP_TIMEOUT", "25h")],
            Some(file),
        )
        .unwrap_err(),
    );
    let has = |needle: &str, origin: &str| {
        errs.iter()
            .any(|e| e.contains(needle) && e.contains(origin) && e.contains("longer than 24h"))
    };
    assert!(
        has("'300000000000y'", "flag --app-grace-delay"),
        "{errs:#?}"
    );
    assert!(has("'25h'", "env MESHINIT_STARTUP_TIMEOUT"), "{errs:#?}");
    assert!(has("'2d'", "meshinit.yaml:2"), "{errs:#?}");
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

/// A machine that exists only in the test: its environment, executables,
/// users and files. Typing through it touches nothing real.
struct MadeUpHost {
    env: Vec<(&'static str, &'static str)>,
    executables: Vec<&'static str>,
    files: Vec<(&'static str, &'static str)>,
    dirs: Vec<&'static str>,
    /// Whatever else is there: devices, FIFOs, links.
    special: Vec<(&'static str, FileKind)>,
    /// Where meshinit was started.
    cwd: &'static str,
    /// What `iptables-save -t nat` prints here, or why it cannot be read.
    nat: Result<&'static str, &'static str>,
    euid: u32,
    net_admin: bool,
    /// How often the rules were read.
    nat_reads: std::cell::Cell<u32>,
}

impl Host for MadeUpHost {
    fn env(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
    fn executable(&self, program: &str, _: Option<&Path>) -> Result<PathBuf, NotRunnable> {
        self.executables
            .iter()
            .find(|p| p.ends_with(&format!("/{program}")) || **p == program)
            .map(PathBuf::from)
            .ok_or_else(|| NotRunnable::Missing(format!("'{program}' was not found on PATH")))
    }
    fn user(&self, spec: &parse::UserSpec) -> Result<Identity, String> {
        let uid = match spec.user.as_str() {
            "kuma" => 990,
            other if other.parse::<u32>().is_ok() => other.parse().unwrap(),
            other => return Err(format!("no user '{other}'")),
        };
        Ok(Identity {
            name: spec.user.clone(),
            uid: nix::unistd::Uid::from_raw(uid),
            gid: nix::unistd::Gid::from_raw(uid),
            groups: Vec::new(),
        })
    }
    fn read_file(&self, path: &str) -> Result<String, ReadError> {
        match self.file_kind(Path::new(path)) {
            Some(FileKind::Regular) => Ok(self
                .files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, text)| text.to_string())
                .unwrap()),
            Some(kind) => Err(ReadError::NotRegular {
                path: path.into(),
                kind,
            }),
            None => Err(ReadError::Missing(path.into())),
        }
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| Path::new(d) == path)
    }
    fn file_kind(&self, path: &Path) -> Option<FileKind> {
        if self.files.iter().any(|(p, _)| Path::new(p) == path) {
            Some(FileKind::Regular)
        } else if self.is_dir(path) {
            Some(FileKind::Dir)
        } else {
            self.special
                .iter()
                .find(|(p, _)| Path::new(p) == path)
                .map(|(_, k)| *k)
        }
    }
    fn cwd(&self) -> Option<PathBuf> {
        Some(PathBuf::from(self.cwd))
    }
    fn token_file(&self, path: &str, reader: Option<&Identity>) -> Result<Option<String>, String> {
        match reader {
            Some(id) if id.name == "kuma" && path == "/secrets/token" => Ok(None),
            _ => Err(format!("'{path}' is not readable")),
        }
    }
    fn work_dir_problem(&self, _: &Path, _: Option<&Identity>) -> Option<String> {
        None
    }
    fn temp_dir(&self) -> PathBuf {
        PathBuf::from(self.env("TMPDIR").unwrap_or_else(|| "/tmp".into()))
    }
    fn exec_limits(&self) -> ExecLimits {
        // The smallest the kernel allows, with a small environment.
        ExecLimits {
            arg_max: 128 * 1024,
            env_bytes: 100,
            env_count: 4,
        }
    }
    fn meshinit_vars(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| k.starts_with("MESHINIT_"))
            .collect()
    }
    fn nat_rules(&self) -> Result<Vec<super::host::NatTable>, String> {
        self.nat_reads.set(self.nat_reads.get() + 1);
        self.nat
            .map(|text| {
                vec![super::host::NatTable {
                    command: "iptables-nft-save -t nat".into(),
                    text: text.into(),
                }]
            })
            .map_err(str::to_string)
    }
    fn euid(&self) -> u32 {
        self.euid
    }
    fn net_admin(&self) -> bool {
        self.net_admin
    }
}

#[test]
fn typing_reads_only_the_machine_it_is_given() {
    let host = MadeUpHost {
        env: vec![
            ("MESHINIT_DATAPLANE_FILE", "/etc/dp.yaml"),
            ("MESHINIT_DATAPLANE_TOKEN_FILE", "/secrets/token"),
            ("MESHINIT_KUMA_DP_USER", "kuma"),
            ("MESHINIT_APP_STOP_TIMEOUT", "4s"),
            ("KUMA_READINESS_PORT", "9555"),
            ("TMPDIR", "/scratch"),
        ],
        executables: vec!["/opt/kuma/bin/kuma-dp", "/srv/app"],
        files: vec![(
            "/etc/dp.yaml",
            "type: Dataplane\nmesh: default\nname: one\nnetworking:\n  address: 10.0.0.9\n  inbound:\n  - port: 8000\n    servicePort: 8080\n    serviceProbe: {tcp: {}}\n    tags: {kuma.io/service: backend}\n",
        )],
        dirs: vec!["/scratch"],
        special: Vec::new(),
        cwd: "/",
        nat: Err("meshinit lacks CAP_NET_ADMIN"),
        euid: 0,
        net_admin: false,
        nat_reads: Default::default(),
    };
    let matches = cli::command()
        .try_get_matches_from(["meshinit", "--", "/srv/app"])
        .unwrap();
    let c = load_on(&host, Mode::Run, &matches).unwrap_or_else(|e| panic!("{e}"));
    let proxy = c.proxy.as_ref().expect("direct mode from the made-up env");
    assert_eq!(proxy.kuma_dp, Path::new("/opt/kuma/bin/kuma-dp"));
    assert_eq!(proxy.user.as_ref().unwrap().uid.as_raw(), 990);
    assert_eq!(
        proxy.ready_url.port, 9555,
        "KUMA_READINESS_PORT from the given env"
    );
    assert!(
        proxy.work_dir.starts_with("/scratch"),
        "{:?}",
        proxy.work_dir
    );
    assert_eq!(c.settings.app_stop_timeout, Duration::from_secs(4));
    // The default probe comes from the made-up Dataplane's first inbound.
    assert!(c.default_probe);
    assert_eq!(
        c.probes[0].kind,
        ProbeKind::Tcp {
            host: "127.0.0.1".into(),
            port: 8080
        }
    );
}

/// Under systemd with `RuntimeDirectory=` (the shipped unit's
/// /run/meshinit/<instance>), kuma-dp's work dir goes there, not in TMPDIR:
/// the app inherits TMPDIR, and pointing that at a root-owned directory
/// would leave an app running as --app-user without a temp dir.
#[test]
fn kuma_dp_work_dir_goes_in_the_units_runtime_directory() {
    const DATAPLANE: &str = "type: Dataplane\nmesh: default\nname: one\nnetworking:\n  address: 10.0.0.9\n  inbound:\n  - port: 8000\n    servicePort: 8080\n    tags: {kuma.io/service: backend}\n";
    let host = |runtime: &'static str| MadeUpHost {
        env: vec![
            ("MESHINIT_DATAPLANE_FILE", "/etc/dp.yaml"),
            ("MESHINIT_DATAPLANE_TOKEN_FILE", "/secrets/token"),
            ("MESHINIT_KUMA_DP_USER", "kuma"),
            ("TMPDIR", "/scratch"),
            ("RUNTIME_DIRECTORY", runtime),
        ],
        executables: vec!["/opt/kuma/bin/kuma-dp", "/srv/app"],
        files: vec![("/etc/dp.yaml", DATAPLANE)],
        dirs: vec!["/scratch", "/run/meshinit/backend"],
        special: Vec::new(),
        cwd: "/",
        nat: Err("meshinit lacks CAP_NET_ADMIN"),
        euid: 0,
        net_admin: false,
        nat_reads: Default::default(),
    };
    let matches = cli::command()
        .try_get_matches_from(["meshinit", "--", "/srv/app"])
        .unwrap();
    // One directory, or several (colon-separated, as systemd sets it): the first.
    for runtime in ["/run/meshinit/backend", "/run/meshinit/backend:/run/other"] {
        let c = load_on(&host(runtime), Mode::Run, &matches).unwrap_or_else(|e| panic!("{e}"));
        let proxy = c.proxy.as_ref().expect("direct mode from the made-up env");
        assert_eq!(
            proxy.work_dir.parent(),
            Some(Path::new("/run/meshinit/backend")),
            "RUNTIME_DIRECTORY={runtime}: {:?}",
            proxy.work_dir
        );
        assert!(
            proxy
                .args
                .iter()
                .any(|a| a.starts_with("--work-dir=/run/meshinit/backend/meshinit-kuma-dp-")),
            "{:?}",
            proxy.args
        );
    }
    // Named by systemd but missing (not under systemd's control any more):
    // refused by name before anything starts, as a missing TMPDIR is.
    let mut missing = host("/run/meshinit/gone");
    missing.dirs = vec!["/scratch"];
    let errs = messages(load_on(&missing, Mode::Run, &matches).unwrap_err());
    assert!(
        errs.iter()
            .any(|e| e.contains("RUNTIME_DIRECTORY") && e.contains("/run/meshinit/gone")),
        "{errs:?}"
    );
}

#[test]
fn lints_are_passes_over_the_built_configuration() {
    let mut c = load_with(&["--", "/bin/true"], &[], None).unwrap();
    assert!(lints::all(&c).is_empty(), "{:?}", lints::all(&c));
    c.shutdown_budget = Some(Duration::from_secs(5));
    let warnings = lints::all(&c);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("worst-case shutdown 13s exceeds --shutdown-budget 5s"),
        "{warnings:?}"
    );
}

/// Issue 23: `leave` is the default with kuma-dp only; `none` without, and an explicit
/// `leave` without kuma-dp is warned about (there is no mesh to leave). `0` turns the hang
/// check off.
#[test]
fn on_unhealthy_defaults_to_leave_with_kuma_dp_only_and_the_hang_check_can_be_off() {
    use crate::lifecycle::OnUnhealthy;
    let c = load_with(&["--", "/bin/true"], &[], None).unwrap();
    assert_eq!(c.settings.on_unhealthy, OnUnhealthy::None);
    assert_eq!(c.settings.proxy_hang_timeout, Some(Duration::from_secs(15)));
    let shown = |c: &Config| {
        c.effective
            .iter()
            .find(|e| e.key == "probes.on-unhealthy")
            .map(|e| (e.value.clone(), e.origin.clone()))
    };
    assert_eq!(shown(&c), Some(("none".to_string(), Origin::Default)));
    let c = load_with(
        &[
            "--on-unhealthy",
            "leave",
            "--proxy-hang-timeout=0",
            "--",
            "/bin/true",
        ],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(c.settings.on_unhealthy, OnUnhealthy::Leave);
    assert_eq!(c.settings.proxy_hang_timeout, None);
    assert!(
        c.warnings.iter().any(|w| w.contains("no mesh to leave")),
        "{:?}",
        c.warnings
    );
    let errs =
        messages(load_with(&["--on-unhealthy", "exit", "--", "/bin/true"], &[], None).unwrap_err());
    assert!(
        errs.iter()
            .any(|e| e.contains("probes.on-unhealthy") && e.contains("leave")),
        "{errs:?}"
    );
}

/// A `probes.checks` entry is typed as the flags are: a 0s period made the
/// probe loop spin without sleeping, a 0s timeout failed every check.
#[test]
fn a_zero_period_or_timeout_in_probes_checks_is_refused() {
    let errs = messages(
        load_with(
            &["--", "/bin/true"],
            &[],
            Some("probes:\n  checks:\n  - tcp: 127.0.0.1:80\n    period: 0s\n    timeout: 0ms\n"),
        )
        .unwrap_err(),
    );
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter().all(|e| e.contains("must be longer than 0s")),
        "{errs:?}"
    );
}

// ---- issue 20: hostile configuration (items 6-9, 13-16) ----

/// A directory of the test's own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "meshinit-config-scratch-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// meshinit reads the state file at start and replaces it at exit: only a regular file, or
/// nothing yet, may be there (item 6).
#[test]
fn a_state_file_must_be_a_regular_file_or_nothing() {
    let dir = Scratch::new();
    let fifo = dir.0.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let link = dir.0.join("link");
    std::os::unix::fs::symlink(dir.0.join("file"), &link).unwrap();
    std::fs::write(dir.0.join("file"), "").unwrap();
    for (path, needle) in [
        (
            "/dev/null".to_string(),
            "is a character device, not a regular file",
        ),
        (
            fifo.display().to_string(),
            "is a FIFO (named pipe), not a regular file",
        ),
        (link.display().to_string(), "is a symbolic link"),
        (
            dir.0.display().to_string(),
            "is a directory, not a regular file",
        ),
    ] {
        let flag = format!("--state-file={path}");
        let errs = messages(load_with(&[&flag, "--", "/bin/true"], &[], None).unwrap_err());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains(&format!("'{path}' {needle}"))
                && errs[0].contains("(from flag --state-file)"),
            "{errs:?}"
        );
    }
    for ok in [dir.0.join("file"), dir.0.join("not-yet")] {
        let flag = format!("--state-file={}", ok.display());
        let c = load_with(&[&flag, "--", "/bin/true"], &[], None).unwrap();
        assert_eq!(c.state_file.as_deref(), Some(ok.as_path()));
    }
}

/// `--config` and `--dataplane-file` are read only when they are regular files, and at most
/// 1 MiB of them (item 8). A FIFO used to block the load forever.
#[test]
fn config_files_must_be_regular_files_of_at_most_one_mib() {
    let dir = Scratch::new();
    let fifo = dir.0.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let big = dir.0.join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(1 << 20))).unwrap();
    let fifo_flag = format!("--config={}", fifo.display());
    let errs = messages(load_with(&[&fifo_flag, "--", "/bin/true"], &[], None).unwrap_err());
    assert!(
        errs[0].contains(&format!(
            "'{}' is a FIFO (named pipe), not a regular file",
            fifo.display()
        )),
        "{errs:?}"
    );
    let big_flag = format!("--config={}", big.display());
    let errs = messages(load_with(&[&big_flag, "--", "/bin/true"], &[], None).unwrap_err());
    assert!(
        errs[0].contains(&format!("'{}' is larger than 1 MiB", big.display())),
        "{errs:?}"
    );
    let dp_flag = format!("--dataplane-file={}", fifo.display());
    let errs = messages(
        load_with(
            &["--kuma-dp=/bin/true", &dp_flag, "--", "/bin/true"],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("is a FIFO (named pipe)")
                && e.contains("(from flag --dataplane-file)")),
        "{errs:?}"
    );
}

/// `check` refuses a NUL byte in any YAML string, with the key and line (item 9).
#[test]
fn a_nul_byte_in_a_yaml_string_is_refused_with_its_place() {
    let file = "app:\n  command: [/bin/echo, \"a\\0b\"]\nprobes:\n  checks:\n  - exec: [/bin/test, \"x\\0\"]\nstatus:\n  state-file: \"/tmp/s\\0\"\n";
    let errs = messages(load_with(&[], &[], Some(file)).unwrap_err());
    // An inline token in a kuma-dp argument is never shown, even here.
    let token = "proxy:\n  kuma-dp-arg: [\"--dataplane-token=s3cr3t\\0\"]\n";
    let token_errs = messages(load_with(&["--", "/bin/true"], &[], Some(token)).unwrap_err());
    assert!(
        token_errs
            .iter()
            .any(|e| e.starts_with("proxy.kuma-dp-arg[0] contains a NUL byte")),
        "{token_errs:#?}"
    );
    assert!(
        !token_errs.iter().any(|e| e.contains("s3cr3t")),
        "{token_errs:#?}"
    );
    for (name, line) in [
        ("app.command[1] \"a\\0b\"", 2),
        ("probes.checks[0].exec[1] \"x\\0\"", 5),
        ("status.state-file \"/tmp/s\\0\"", 7),
    ] {
        assert!(
            errs.iter().any(|e| e.contains(name)
                && e.contains("contains a NUL byte")
                && e.contains(&format!("meshinit.yaml:{line})"))),
            "{name}: {errs:#?}"
        );
    }
}

/// uid and gid 4294967295 are -1 to the kernel, which refuses them; 4294967296 is too large
/// (items 9 and 14). Named in meshinit's words, not "not a whole number".
#[test]
fn user_ids_and_counts_out_of_range_say_so() {
    for (args, needle) in [
        (
            ["--app-user=4294967295"],
            "'4294967295' is not a valid user id: it is -1 to the kernel, which refuses it; the largest user id is 4294967294 (from flag --app-user)",
        ),
        (
            ["--app-user=0:4294967295"],
            "'4294967295' is not a valid group id",
        ),
        (
            ["--app-user=4294967296"],
            "user id '4294967296' is too large: the largest is 4294967294",
        ),
        (
            ["--proxy-max-restarts=4294967296"],
            "'4294967296' is too large: the largest is 4294967295 (from flag --proxy-max-restarts)",
        ),
    ] {
        let mut argv = args.to_vec();
        argv.extend(["--", "/bin/true"]);
        let errs = messages(load_with(&argv, &[], None).unwrap_err());
        assert!(errs.iter().any(|e| e.contains(needle)), "{args:?}: {errs:#?}");
    }
    assert!(parse::count("12x")
        .unwrap_err()
        .contains("is not a whole number"));
    assert_eq!(parse::count(" 4294967295 "), Ok(u32::MAX));
}

/// An app argument list the kernel would refuse (E2BIG at the spawn, exit 71) is a
/// configuration error (item 9): a YAML alias can make one from a small file.
#[test]
fn an_argument_list_over_the_kernels_limit_is_refused() {
    let file = format!(
        "app:\n  command: [/bin/true, &a {}, {}]\n",
        "x".repeat(100_000),
        vec!["*a"; 70].join(", ")
    );
    let errs = messages(load_with(&[], &[], Some(&file)).unwrap_err());
    assert!(
        errs.iter().any(
            |e| e.contains("app command: the 72 arguments and the environment take")
                && e.contains("over the kernel's limit of")
                && e.contains("meshinit.yaml:2")
        ),
        "{errs:#?}"
    );
    let file = format!("app:\n  command: [/bin/true, {}]\n", "y".repeat(200_000));
    let errs = messages(load_with(&[], &[], Some(&file)).unwrap_err());
    assert!(
        errs.iter().any(
            |e| e.contains("argument 1 is 200000 bytes; the kernel takes at most 131072 bytes")
        ),
        "{errs:#?}"
    );
}

/// The count is the kernel's: strings with their NULs (the program path too) and a pointer
/// for each argument and variable, against ARG_MAX.
#[test]
fn exec_limits_count_as_the_kernel_does() {
    let limits = ExecLimits {
        arg_max: 1000,
        env_bytes: 100,
        env_count: 4,
    };
    let program = Path::new("/bin/x"); // 6 bytes + NUL
                                       // 7 + 100 + (argc + 4) * 8, with each argument a + 1 bytes.
    let argv = |a: usize, n: usize| vec!["a".repeat(a); n];
    // 2 args of 300: 7 + 100 + 602 + 48 = 757.
    assert_eq!(limits.problem(program, &argv(300, 2)), None);
    // 3 args of 278: 7 + 100 + 837 + 56 = 1000, the limit; of 279: 1003.
    assert_eq!(limits.problem(program, &argv(278, 3)), None);
    let e = limits.problem(program, &argv(279, 3)).unwrap();
    assert!(
        e.contains("take 1003 bytes, over the kernel's limit of 1000"),
        "{e}"
    );
    let huge = ExecLimits {
        arg_max: 1 << 30,
        ..limits
    };
    assert_eq!(huge.problem(program, &argv(131_071, 1)), None);
    assert!(huge
        .problem(program, &argv(131_072, 1))
        .unwrap()
        .contains("argument 0 is 131072 bytes"));
}

/// `meshinit -- ''` is "command not found", 127, as in a shell (item 13); a directory on
/// PATH with the program's name is passed over, as bash does.
#[test]
fn an_empty_command_is_not_found() {
    let e = load_with(&["--", ""], &[], None).unwrap_err();
    assert_eq!(e.exit_code, 127);
    let errs = messages(e);
    assert_eq!(
        errs,
        vec!["app command '' is empty: command not found; give the full path of an executable (from the command after --)"]
    );
    let dir = Scratch::new();
    std::fs::create_dir(dir.0.join("only-a-dir")).unwrap();
    let e = crate::init::path::find_executable(
        std::ffi::OsStr::new("only-a-dir"),
        None,
        Some(dir.0.clone().into_os_string()),
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
}

/// `--exit-code-map` gives each code one meaning (item 16); the same pair twice is one.
#[test]
fn conflicting_exit_code_maps_are_refused() {
    let errs = messages(
        load_with(
            &[
                "--exit-code-map=143:0",
                "--exit-code-map=143:1",
                "--",
                "/bin/true",
            ],
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert_eq!(
        errs,
        vec!["shutdown.exit-code-map: exit code 143 is mapped twice, to 0 ('143:0') and to 1 ('143:1'); keep one (from flag --exit-code-map)"]
    );
    let c = load_with(
        &["--exit-code-map=143:0,143:0,1:2", "--", "/bin/true"],
        &[],
        None,
    )
    .unwrap();
    assert_eq!(c.exit_code_map.0, vec![(143, 0), (1, 2)]);
}

/// A stop signal must be able to end the app (item 16): those ignored by default and those
/// that suspend are refused; KILL and the usual ones are taken.
#[test]
fn app_stop_signals_that_cannot_end_the_app_are_refused() {
    for sig in [
        "CHLD", "CONT", "URG", "WINCH", "STOP", "TSTP", "TTIN", "TTOU", "18",
    ] {
        let flag = format!("--app-stop-signal={sig}");
        let errs = messages(load_with(&[&flag, "--", "/bin/true"], &[], None).unwrap_err());
        assert!(
            errs.len() == 1
                && errs[0].starts_with(&format!("app.stop-signal: '{sig}' ("))
                && errs[0].contains("so it cannot stop the app"),
            "{sig}: {errs:?}"
        );
    }
    for (sig, want) in [
        ("KILL", Signal::SIGKILL),
        ("QUIT", Signal::SIGQUIT),
        ("USR1", Signal::SIGUSR1),
    ] {
        let flag = format!("--app-stop-signal={sig}");
        let c = load_with(&[&flag, "--", "/bin/true"], &[], None).unwrap();
        assert_eq!(c.settings.app_stop_signal, want);
    }
}

fn made_up(env: Vec<(&'static str, &'static str)>) -> MadeUpHost {
    MadeUpHost {
        env,
        executables: vec!["/srv/app"],
        files: Vec::new(),
        dirs: vec!["/srv", "/srv/run"],
        special: vec![("/srv/run/dev", FileKind::CharDevice)],
        cwd: "/srv/run",
        nat: Err("meshinit lacks CAP_NET_ADMIN"),
        euid: 0,
        net_admin: false,
        nat_reads: Default::default(),
    }
}

fn load_made_up(host: &MadeUpHost) -> Result<Config, ConfigError> {
    let matches = cli::command()
        .try_get_matches_from(["meshinit", "--", "/srv/app"])
        .unwrap();
    load_on(host, Mode::Run, &matches)
}

/// A relative state file is resolved against the start directory, once, at load (item 7);
/// what is at the resolved path is what is checked.
#[test]
fn a_relative_state_file_is_resolved_against_the_start_directory() {
    let c = load_made_up(&made_up(vec![("MESHINIT_STATE_FILE", "last")])).unwrap();
    assert_eq!(c.state_file.as_deref(), Some(Path::new("/srv/run/last")));
    // `check` shows where it will be.
    assert!(
        c.effective
            .iter()
            .any(|e| e.key == "status.state-file" && e.value == "/srv/run/last"),
        "{:?}",
        c.effective
    );
    let errs = messages(load_made_up(&made_up(vec![("MESHINIT_STATE_FILE", "dev")])).unwrap_err());
    assert_eq!(
        errs,
        vec!["status.state-file: '/srv/run/dev' is a character device, not a regular file; meshinit reads and replaces its state file, so give the path of a regular file (or of none yet) (from env MESHINIT_STATE_FILE)"]
    );
}

/// A misspelt `MESHINIT_*` variable warns with the closest option's (item 15); one far from
/// every option's, and the systemd unit's own, do not.
#[test]
fn a_misspelt_meshinit_variable_warns_with_the_closest() {
    let c = load_made_up(&made_up(vec![
        ("MESHINIT_PROBE_HTPP", "http://127.0.0.1:1/"),
        ("MESHINIT_APP_STOP_TIMOUT", "3s"),
        ("MESHINIT_ARGS", "--x"),
        ("MESHINIT_APP_ARGS", "/srv/app"),
        ("MESHINIT_BLESS", "1"),
        ("MESHINIT_CACHE", "/var/cache"),
        ("MESHINIT_APP_STOP_TIMEOUT", "4s"),
    ]))
    .unwrap();
    assert_eq!(
        c.warnings,
        vec![
            "env MESHINIT_APP_STOP_TIMOUT is not a meshinit option and is ignored; did you mean MESHINIT_APP_STOP_TIMEOUT?",
            "env MESHINIT_PROBE_HTPP is not a meshinit option and is ignored; did you mean MESHINIT_PROBE_HTTP?",
        ]
    );
    // The same suggestion for a YAML key.
    let errs = messages(
        load_with(&["--", "/bin/true"], &[], Some("app:\n  stop-timout: 1s\n")).unwrap_err(),
    );
    assert!(errs[0].contains("did you mean 'stop-timeout'?"), "{errs:?}");
}
/// The lifecycle's test settings are written out in the lifecycle (which
/// must not import the configuration above it); they must stay the options'
/// defaults, with a proxy and one probe that flips with each result.
#[test]
fn the_lifecycles_test_settings_are_the_options_defaults() {
    assert_eq!(
        crate::lifecycle::Settings::defaults(),
        super::default_settings()
    );
}

/// `--control-socket` (issue 23): a relative path is resolved against the start directory and
/// shown absolute by `check`; a stale socket may be there (bind replaces it); anything else at
/// the path, a missing directory or a path longer than sun_path is refused with its origin.
#[test]
fn a_control_socket_path_is_resolved_and_checked_at_load() {
    let mut host = made_up(vec![("MESHINIT_CONTROL_SOCKET", "ctl.sock")]);
    host.special.push(("/srv/run/old.sock", FileKind::Socket));
    host.files.push(("/srv/run/notes", "keep me"));
    let c = load_made_up(&host).unwrap();
    assert_eq!(
        c.control_socket.as_deref(),
        Some(Path::new("/srv/run/ctl.sock"))
    );
    assert!(
        c.effective
            .iter()
            .any(|e| e.key == "status.control-socket" && e.value == "/srv/run/ctl.sock"),
        "{:?}",
        c.effective
    );
    host.env = vec![("MESHINIT_CONTROL_SOCKET", "/srv/run/old.sock")];
    assert!(load_made_up(&host).is_ok());
    // Not given: no socket.
    host.env = Vec::new();
    assert_eq!(load_made_up(&host).unwrap().control_socket, None);

    let long = format!("/srv/run/{}", "s".repeat(100));
    let long: &'static str = Box::leak(long.into_boxed_str());
    for (value, want) in [
        (
            "/srv/run/notes",
            "status.control-socket: '/srv/run/notes' is a regular file, not a socket; meshinit never deletes it: remove it yourself or choose another path (from env MESHINIT_CONTROL_SOCKET)".to_string(),
        ),
        (
            "/nowhere/ctl.sock",
            "status.control-socket: '/nowhere' is not a directory; create it or choose another path for the socket (from env MESHINIT_CONTROL_SOCKET)".to_string(),
        ),
        (
            long,
            format!("status.control-socket: '{long}' is 109 bytes; a Unix socket's path may have at most 107: choose a shorter one (e.g. /run/meshinit.sock) (from env MESHINIT_CONTROL_SOCKET)"),
        ),
    ] {
        host.env = vec![("MESHINIT_CONTROL_SOCKET", value)];
        assert_eq!(messages(load_made_up(&host).unwrap_err()), vec![want]);
    }
}

/// `--drain-signal hold` (issue 26): kuma-dp's drain time must outlast
/// meshinit's worst case, so meshinit passes one; a shorter one given is
/// refused naming both values and where the given one came from.
#[test]
fn the_hold_drain_sets_kuma_dps_drain_time_beyond_the_worst_case() {
    let base = [
        "--kuma-dp=/bin/true",
        "--dataplane-name=a",
        "--mesh=m",
        "--drain-signal=hold",
        "--app-grace-delay=5s",
    ];
    let c = load_with(&[&base[..], &["--", "/bin/true"]].concat(), &[], None).unwrap();
    assert_eq!(c.settings.drain_mode, DrainMode::Hold);
    // 40 s drain timeout, 5 s grace, 10 s app stop, 1 s kuma-dp's kill
    // bound, 2 s clean-up, 1 s give-up.
    assert_eq!(c.settings.worst_case_shutdown(), Duration::from_secs(59));
    let p = c.proxy.as_ref().unwrap();
    assert!(
        p.args.contains(&"--drain-time=69s".to_string()),
        "the worst case and a 10 s margin: {:?}",
        p.args
    );
    assert_eq!(p.drain_time, Some(Duration::from_secs(69)));
    assert!(
        !c.warnings.iter().any(|w| w.contains("drain-timeout")),
        "{:?}",
        c.warnings
    );

    // Given long enough: kept as given, nothing added.
    let c = load_with(
        &[
            &base[..],
            &["--kuma-dp-arg=--drain-time=2m", "--", "/bin/true"],
        ]
        .concat(),
        &[],
        None,
    )
    .unwrap();
    let args = &c.proxy.as_ref().unwrap().args;
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with("--drain-time"))
            .count(),
        1,
        "{args:?}"
    );

    // Given too short, by flag or by kuma-dp's env var: refused with both values.
    let e = load_with(
        &[
            &base[..],
            &["--kuma-dp-arg=--drain-time=30s", "--", "/bin/true"],
        ]
        .concat(),
        &[],
        None,
    )
    .unwrap_err();
    assert_eq!(e.exit_code, 64);
    let m = messages(e);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].contains("--drain-time 30s (from flag --kuma-dp-arg)")
            && m[0].contains("worst-case shutdown 59s")
            && m[0].contains("(from flag --drain-signal)"),
        "{m:?}"
    );
    let m = messages(
        load_with(
            &[&base[..], &["--", "/bin/true"]].concat(),
            &[("KUMA_DATAPLANE_DRAIN_TIME", "20s")],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        m[0].contains("KUMA_DATAPLANE_DRAIN_TIME 20s (from env KUMA_DATAPLANE_DRAIN_TIME)"),
        "{m:?}"
    );

    // Not a signal name: the three choices are named.
    let m = messages(
        load_with(
            &[&base[..3], &["--drain-signal=KILL", "--", "/bin/true"]].concat(),
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(m[0].contains("is not TERM, USR2 or hold"), "{m:?}");
}

/// `--proxy-dns`: the address the start waits for, `off` by default, and
/// only with a proxy.
#[test]
fn proxy_dns_is_an_address_or_off() {
    let proxy = ["--kuma-dp=/bin/true", "--dataplane-name=a", "--mesh=m"];
    let c = load_with(&[&proxy[..], &["--", "/bin/true"]].concat(), &[], None).unwrap();
    assert_eq!(c.settings.proxy_dns, None);
    let c = load_with(
        &[
            &proxy[..],
            &["--proxy-dns=127.0.0.1:15053", "--", "/bin/true"],
        ]
        .concat(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(
        c.settings.proxy_dns,
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 15053)))
    );
    let m = messages(
        load_with(
            &[&proxy[..], &["--proxy-dns=nowhere", "--", "/bin/true"]].concat(),
            &[],
            None,
        )
        .unwrap_err(),
    );
    assert!(
        m[0].contains("'nowhere'") && m[0].contains("or off"),
        "{m:?}"
    );
    let m = messages(load_with(&["--proxy-dns=:15053", "--", "/bin/true"], &[], None).unwrap_err());
    assert!(m[0].contains("no proxy would run"), "{m:?}");
}

/// Transparent proxying on a made-up machine: a Dataplane with an inbound
/// that has a serviceProbe, kuma-dp as `kuma` (uid 990), and the rules.
fn tproxy_host(
    env: Vec<(&'static str, &'static str)>,
    nat: Result<&'static str, &'static str>,
) -> MadeUpHost {
    const DP: &str = "type: Dataplane\nmesh: default\nname: one\nnetworking:\n  address: 10.0.0.9\n  inbound:\n  - port: 8000\n    servicePort: 8080\n    serviceProbe: {tcp: {}}\n    tags: {kuma.io/service: backend}\n";
    let mut all = vec![("MESHINIT_DATAPLANE_FILE", "/etc/dp.yaml")];
    all.extend(env);
    MadeUpHost {
        env: all,
        executables: vec!["/opt/kuma/bin/kuma-dp", "/srv/app", "/opt/kuma/bin/kumactl"],
        files: vec![("/etc/dp.yaml", DP)],
        dirs: vec!["/tmp"],
        special: Vec::new(),
        cwd: "/",
        nat,
        euid: 0,
        net_admin: true,
        nat_reads: Default::default(),
    }
}

const NAT_RULES: &str = include_str!("../../tests/data/iptables/nft-redirect-dns.txt");
const NAT_EMPTY: &str = include_str!("../../tests/data/iptables/nft-empty.txt");

/// The rules read from the namespace turn redirection on, give the facts
/// the hold drain and the DNS gate need, and make proxy-first the default.
#[test]
fn rules_found_make_proxy_first_the_default_and_give_their_facts() {
    let host = tproxy_host(
        vec![
            ("MESHINIT_KUMA_DP_USER", "5678"),
            ("MESHINIT_KUMA_DP", "/opt/kuma/bin/kuma-dp"),
        ],
        Ok(NAT_RULES),
    );
    let c = load_made_up_numeric(&host).unwrap_or_else(|e| panic!("{e}"));
    let tp = c.redirection().expect("redirection found in the rules");
    assert_eq!(c.settings.start_order, lifecycle::StartOrder::ProxyFirst);
    assert!(!c.start_order_given);
    assert_eq!(tp.exempt_uid, 5678);
    assert_eq!(
        tp.dns.as_ref().map(|d| (d.port, d.servers.clone())),
        Some((15053, vec!["10.255.255.53".to_string()]))
    );
    assert_eq!(tp.inbound_excluded(9911), Some(true));
    assert_eq!(host.nat_reads.get(), 1);
    // Envoy is held up until the app has stopped, the app waits for
    // kuma-dp's DNS, and kuma-dp is told to outlast meshinit's worst case.
    assert_eq!(c.settings.drain_mode, lifecycle::DrainMode::Hold);
    assert_eq!(
        c.settings.proxy_dns,
        Some(std::net::SocketAddr::from(([127, 0, 0, 1], 15053)))
    );
    assert!(
        c.proxy
            .as_ref()
            .unwrap()
            .args
            .iter()
            .any(|a| a.starts_with("--drain-time=")),
        "{:?}",
        c.proxy
    );

    // `check` shows what the defaults became, not "-".
    let shown = |key: &str| {
        c.effective
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    };
    assert_eq!(shown("shutdown.drain-signal").as_deref(), Some("hold"));
    assert_eq!(shown("proxy.start-order").as_deref(), Some("proxy-first"));
    assert_eq!(shown("proxy.dns").as_deref(), Some("127.0.0.1:15053"));

    // Either can be chosen otherwise.
    let host = tproxy_host(
        vec![
            ("MESHINIT_KUMA_DP_USER", "5678"),
            ("MESHINIT_KUMA_DP", "/opt/kuma/bin/kuma-dp"),
            ("MESHINIT_DRAIN_SIGNAL", "USR2"),
            ("MESHINIT_PROXY_DNS", "off"),
        ],
        Ok(NAT_RULES),
    );
    let c = load_made_up_numeric(&host).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        c.settings.drain_mode,
        lifecycle::DrainMode::InboundUsr2 { .. }
    ));
    assert_eq!(c.settings.proxy_dns, None);

    // No rule: nothing changes (app-first stays the default).
    let host = tproxy_host(vec![("MESHINIT_KUMA_DP_USER", "5678")], Ok(NAT_EMPTY));
    let c = load_made_up_numeric(&host).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.redirection().is_none());
    assert_eq!(c.settings.start_order, lifecycle::StartOrder::AppFirst);
    // Off: not even read.
    let host = tproxy_host(
        vec![
            ("MESHINIT_KUMA_DP_USER", "5678"),
            ("MESHINIT_TRANSPARENT_PROXY", "off"),
        ],
        Ok(NAT_RULES),
    );
    let c = load_made_up_numeric(&host).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.transparent_proxy.is_none() && c.redirection().is_none());
    assert_eq!(host.nat_reads.get(), 0);
}

/// Plain init mode pays nothing: the rules are read only with kuma-dp.
#[test]
fn plain_mode_reads_no_rules() {
    let host = MadeUpHost {
        nat: Ok(NAT_RULES),
        ..made_up(Vec::new())
    };
    let c = load_made_up(&host).unwrap();
    assert!(c.transparent_proxy.is_none());
    assert_eq!(host.nat_reads.get(), 0);
}

/// Rules that cannot be read are said to be so, not taken for none; a
/// Dataplane that says redirection is on still turns it on.
#[test]
fn unreadable_rules_are_reported_as_such() {
    let host = tproxy_host(
        vec![("MESHINIT_KUMA_DP_USER", "5678")],
        Err("meshinit lacks CAP_NET_ADMIN"),
    );
    let c = load_made_up_numeric(&host).unwrap();
    let tp = c.transparent_proxy.as_ref().unwrap();
    assert!(!tp.active());
    assert_eq!(
        tp.rules,
        tproxy::RulesReading::Unreadable("meshinit lacks CAP_NET_ADMIN".into())
    );
    let plan = plan::render(&c);
    assert!(
        plan.contains("cannot read the rules (needs CAP_NET_ADMIN)")
            && plan.contains("redirection: unknown")
            && !plan.contains("no Kuma rule"),
        "{plan}"
    );
    // With `on`, the defaults are assumed: kuma-dp as root is refused.
    let host = tproxy_host(
        vec![("MESHINIT_TRANSPARENT_PROXY", "on")],
        Err("meshinit lacks CAP_NET_ADMIN"),
    );
    let errs = messages(load_made_up_numeric(&host).unwrap_err());
    assert!(
        errs.iter()
            .any(|e| e.contains("kuma-dp would run as meshinit's own uid 0")
                && e.contains("kumactl's default")),
        "{errs:?}"
    );
}

/// The install step: its arguments give the facts (the rules are not there
/// yet, and are not read), and it is refused up front without root, without
/// CAP_NET_ADMIN or without kumactl.
#[test]
fn the_install_step_is_checked_up_front() {
    let host = tproxy_host(
        vec![
            ("MESHINIT_KUMA_DP_USER", "kuma"),
            ("MESHINIT_KUMACTL", "/opt/kuma/bin/kumactl"),
            ("MESHINIT_TRANSPARENT_PROXY_INSTALL", "--kuma-dp-user=kuma"),
        ],
        Ok(NAT_EMPTY),
    );
    let c = load_made_up_numeric(&host).unwrap_or_else(|e| panic!("{e}"));
    let tp = c
        .redirection()
        .expect("the install step turns redirection on");
    assert_eq!(host.nat_reads.get(), 0);
    assert_eq!(tp.exempt_uid, 990);
    assert_eq!(tp.dns, None);
    let install = tp.install.as_ref().unwrap();
    assert_eq!(install.kumactl, Path::new("/opt/kuma/bin/kumactl"));
    assert_eq!(
        install.argv(),
        vec!["install", "transparent-proxy", "--kuma-dp-user=kuma"]
    );
    assert_eq!(c.settings.start_order, lifecycle::StartOrder::ProxyFirst);

    let host = MadeUpHost {
        euid: 1000,
        net_admin: false,
        executables: vec!["/opt/kuma/bin/kuma-dp", "/srv/app"],
        ..tproxy_host(
            vec![
                ("MESHINIT_KUMA_DP_USER", "kuma"),
                ("MESHINIT_TRANSPARENT_PROXY_INSTALL", "--kuma-dp-user=kuma"),
            ],
            Ok(NAT_EMPTY),
        )
    };
    let errs = messages(load_made_up_numeric(&host).unwrap_err());
    let has = |n: &str| errs.iter().any(|e| e.contains(n));
    assert!(has("needs root, and meshinit runs as uid 1000"), "{errs:?}");
    assert!(has("needs CAP_NET_ADMIN"), "{errs:?}");
    assert!(
        has("kumactl 'kumactl' was not found") && has("--kumactl PATH"),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .filter(|e| e.contains("needs"))
            .all(|e| e.contains("env MESHINIT_TRANSPARENT_PROXY_INSTALL")),
        "{errs:?}"
    );
}

/// kumactl refuses a user that /etc/passwd does not have: its default `kuma-dp` when no
/// `--kuma-dp-user` is given, or a bare uid; `check` says so before anything runs.
#[test]
fn the_install_steps_user_must_exist() {
    for (arg, want) in [
        (
            "--redirect-dns",
            "kumactl's default user kuma-dp (no --kuma-dp-user): no user 'kuma-dp'",
        ),
        (
            "--kuma-dp-user=5678",
            "--kuma-dp-user 5678: uid 5678 has no entry in this container's /etc/passwd",
        ),
    ] {
        let host = tproxy_host(
            vec![
                ("MESHINIT_KUMA_DP_USER", "kuma"),
                ("MESHINIT_KUMACTL", "/opt/kuma/bin/kumactl"),
                ("MESHINIT_TRANSPARENT_PROXY_INSTALL", arg),
            ],
            Ok(NAT_EMPTY),
        );
        let errs = messages(load_made_up_numeric(&host).unwrap_err());
        assert!(
            errs.iter()
                .any(|e| e.contains(want) && e.contains("env MESHINIT_TRANSPARENT_PROXY_INSTALL")),
            "{arg}: {errs:?}"
        );
    }
}

/// As `load_made_up`, with kuma-dp found on the made-up PATH.
fn load_made_up_numeric(host: &MadeUpHost) -> Result<Config, ConfigError> {
    let matches = cli::command()
        .try_get_matches_from([
            "meshinit",
            "--kuma-dp",
            "/opt/kuma/bin/kuma-dp",
            "--",
            "/srv/app",
        ])
        .unwrap();
    load_on(host, Mode::Run, &matches)
}

/// CAP_NET_ADMIN is bit 12 of `CapEff:` (root's full set, root with it dropped, a user's
/// empty set), and IPv6 counts only beyond `lo`: what decides whether the rules are read.
#[test]
fn net_admin_and_ipv6_are_read_from_proc() {
    use super::host::{cap_eff_has_net_admin, if_inet6_beyond_loopback};
    let status = |caps: &str| {
        format!("Name:\tmeshinit\nCapInh:\t0000000000000000\nCapEff:\t{caps}\nCapBnd:\t000001ffffffffff\n")
    };
    assert!(cap_eff_has_net_admin(&status("000001ffffffffff")));
    assert!(!cap_eff_has_net_admin(&status("000001ffffffefff")));
    assert!(cap_eff_has_net_admin(&status("0000000000001000")));
    assert!(!cap_eff_has_net_admin(&status("0000000000000000")));
    assert!(!cap_eff_has_net_admin("Name:\tmeshinit\n"));
    let lo = "00000000000000000000000000000001 01 80 10 80       lo\n";
    assert!(!if_inet6_beyond_loopback(lo));
    assert!(!if_inet6_beyond_loopback(""));
    assert!(if_inet6_beyond_loopback(&format!(
        "{lo}fd000000000000000000000000000002 04 40 00 82     eth0\n"
    )));
}
