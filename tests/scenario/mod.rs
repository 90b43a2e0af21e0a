//! A meshinit + test app + fake kuma-dp setup shared by `tests/proxy.rs` and
//! `tests/shutdown.rs` (`mod scenario;` after `mod common;`).
//!
//! Each [`Scenario`] has its own temp dir, Dataplane template, token file (mode 0600), app
//! port, kuma-dp readiness port and record files, so tests can run in parallel. The record
//! files are *not* created up front: the test programs create them when they start, so a
//! missing file proves a program never ran. meshinit's environment carries
//! `KUMA_DATAPLANE_DRAIN_TIME=100ms` (kuma-dp's default drain is 30 s) so that a plain
//! SIGTERM ends a test quickly; a `--kuma-dp-arg=--drain-time=X` overrides it.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::*;

/// The Dataplane template every scenario writes: `{{ name }}` and `{{ port }}` are given
/// with `--dataplane-var`, and the first inbound's servicePort is the app's port.
pub const TEMPLATE: &str = "\
type: Dataplane
mesh: default
name: {{ name }}
networking:
  address: 127.0.0.1
  inbound:
    - port: 21011
      servicePort: {{ port }}
      tags:
        kuma.io/service: backend
";

/// The control plane address given to kuma-dp (the fake never connects to it).
pub const CP: &str = "https://127.0.0.1:5678";

/// One test's meshinit invocation, before and after it starts.
pub struct Scenario {
    pub dir: TempDir,
    /// The app's record (`--record`), created by the app.
    pub app: Record,
    /// The fake kuma-dp's record (`FAKE_KUMA_DP_RECORD`), created by the fake.
    pub dp: Record,
    /// Where the app listens (when the test passes `--listen` with [`Scenario::app_addr`]).
    pub app_port: u16,
    /// `KUMA_READINESS_PORT` in meshinit's environment.
    pub ready_port: u16,
    pub dp_file: PathBuf,
    pub token_file: PathBuf,
    /// The token's content: must never appear in any output.
    pub token: String,
    /// meshinit's options (before `--`).
    pub opts: Vec<String>,
    /// The test app's options (after `--record FILE`).
    pub app_args: Vec<String>,
    /// Extra environment for meshinit (and so kuma-dp and the app).
    pub env: Vec<(String, String)>,
}

impl Scenario {
    /// A scenario in direct mode: `--kuma-dp <fake> --cp-address --dataplane-file
    /// --dataplane-var name=web-1 --dataplane-var port=<app port> --dataplane-token-file`.
    pub fn new(tag: &str) -> Scenario {
        let mut s = Scenario::bare(tag);
        let opts = s.proxy_opts();
        s.opts = opts;
        s
    }

    /// Like [`Scenario::new`] but with no meshinit options at all.
    pub fn bare(tag: &str) -> Scenario {
        let dir = temp_dir(tag);
        let dp_file = dir.join("backend.yaml");
        fs::write(&dp_file, TEMPLATE).expect("write template");
        let token_file = dir.join("token");
        let token = format!("tok-{tag}-s3cr3t-{}", std::process::id());
        fs::write(&token_file, &token).expect("write token");
        fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).expect("chmod");
        Scenario {
            app: Record {
                path: dir.join("app.log"),
            },
            dp: Record {
                path: dir.join("kuma-dp.log"),
            },
            dir,
            app_port: free_port(),
            ready_port: free_port(),
            dp_file,
            token_file,
            token,
            opts: Vec::new(),
            app_args: Vec::new(),
            // kuma-dp's default drain is 30 s; keep the tests short unless one sets
            // `--drain-time` (the flag wins over the variable, as in kuma-dp).
            env: vec![("KUMA_DATAPLANE_DRAIN_TIME".into(), "100ms".into())],
        }
    }

    /// The direct-mode options [`Scenario::new`] starts with.
    pub fn proxy_opts(&self) -> Vec<String> {
        vec![
            "--kuma-dp".into(),
            path_str(&fake_kuma_dp_bin()),
            "--cp-address".into(),
            CP.into(),
            "--dataplane-file".into(),
            path_str(&self.dp_file),
            "--dataplane-var".into(),
            "name=web-1".into(),
            "--dataplane-var".into(),
            format!("port={}", self.app_port),
            "--dataplane-token-file".into(),
            path_str(&self.token_file),
        ]
    }

    /// `127.0.0.1:<app port>`.
    pub fn app_addr(&self) -> String {
        format!("127.0.0.1:{}", self.app_port)
    }

    /// Adds meshinit options.
    pub fn opt(mut self, args: &[&str]) -> Scenario {
        self.opts.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Adds test app options.
    pub fn app(mut self, args: &[&str]) -> Scenario {
        self.app_args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// The app listens on [`Scenario::app_addr`] (`--listen`).
    pub fn listening_app(self) -> Scenario {
        let addr = self.app_addr();
        self.app(&["--listen", &addr])
    }

    /// Adds an environment variable for meshinit (kuma-dp and the app inherit it).
    pub fn env(mut self, key: &str, value: &str) -> Scenario {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds `--status-listen 127.0.0.1:<free port>` and returns the port.
    pub fn with_status(self) -> (Scenario, u16) {
        let port = free_port();
        let s = self.opt(&["--status-listen", &format!("127.0.0.1:{port}")]);
        (s, port)
    }

    /// The meshinit command line: options, `--`, the test app with `--record`.
    pub fn command(&self) -> Command {
        self.command_with_app(&test_app_bin())
    }

    /// [`Scenario::command`] with `app` (a copy of the test app, say) in the test app's place.
    pub fn command_with_app(&self, app: &std::path::Path) -> Command {
        let mut cmd = Command::new(meshinit_bin());
        cmd.env("FAKE_KUMA_DP_RECORD", &self.dp.path)
            .env("KUMA_READINESS_PORT", self.ready_port.to_string())
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.opts)
            .arg("--")
            .arg(app)
            .arg("--record")
            .arg(&self.app.path)
            .args(&self.app_args);
        cmd
    }

    /// Starts meshinit.
    pub fn start(&self) -> Proc {
        Proc::start(self.command())
    }

    /// kuma-dp's `signal` records, without the SIGCONT meshinit sends right after each stop
    /// signal (issue 20, item 5: a kuma-dp stopped by job control must be continued to act
    /// on it).
    pub fn dp_signal_events(&self) -> Vec<Event> {
        self.dp
            .find_all("signal")
            .into_iter()
            .filter(|e| e.rest != "CONT")
            .collect()
    }

    /// The arguments kuma-dp was started with (from the fake's `arg` lines; the first start
    /// only).
    pub fn dp_argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        for e in self.dp.events() {
            if e.name == "start" && !argv.is_empty() {
                break;
            }
            if e.name == "arg" {
                let (_, value) = e.rest.split_once(' ').unwrap_or((&e.rest, ""));
                argv.push(unescape(value));
            }
        }
        argv
    }

    /// Every event of either record, app ones as `app:<name>` and kuma-dp ones as
    /// `dp:<name>`, in time order: for failure messages.
    pub fn timeline(&self) -> String {
        let mut all: Vec<(u64, String)> = self
            .app
            .events()
            .into_iter()
            .map(|e| (e.t_ns, format!("app:{} {}", e.name, e.rest)))
            .chain(
                self.dp
                    .events()
                    .into_iter()
                    .map(|e| (e.t_ns, format!("dp:{} {}", e.name, e.rest))),
            )
            .collect();
        all.sort();
        let t0 = all.first().map_or(0, |(t, _)| *t);
        all.iter()
            .map(|(t, l)| format!("{:>8.1}ms {l}", (*t - t0) as f64 / 1e6))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A path as a String (test paths are UTF-8).
pub fn path_str(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Milliseconds from `a` to `b` (negative if `b` is earlier), both CLOCK_MONOTONIC ns.
pub fn ms(a: u64, b: u64) -> f64 {
    (b as f64 - a as f64) / 1e6
}

/// Waits for the process to exit and gives the status with the CLOCK_MONOTONIC time the
/// exit was seen (at most one poll, 10 ms, late, plus scheduling).
pub fn wait_exit_at(p: &mut Proc, timeout: Duration) -> (ExitStatus, u64) {
    let Some(seen) = poll_for(timeout, || p.try_status().map(|status| (status, now_ns()))) else {
        panic!(
            "meshinit (pid {}) still running after {timeout:?}; output:\n{}",
            p.pid(),
            p.output()
        );
    };
    // Let the output readers finish (the status is cached by then).
    p.wait_exit(timeout);
    seen
}

/// GET `http://127.0.0.1:<port><path>` with a 2 s bound: (status, body).
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get(
        &format!("http://127.0.0.1:{port}{path}"),
        Duration::from_secs(2),
    )
}

/// `/status` of meshinit's status endpoint, parsed.
pub fn status_json(port: u16) -> serde_json::Value {
    let (code, body) = get(port, "/status").expect("GET /status");
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// The numbers of meshinit's summary line
/// `shutdown: drain 2.01s, grace 1.00s, app stop 0.12s, total 3.14s, exit 0`.
#[derive(Debug)]
pub struct Summary {
    pub drain: f64,
    pub grace: f64,
    pub app_stop: f64,
    pub total: f64,
    pub exit: i32,
}

/// Finds and parses the summary line in meshinit's output.
pub fn summary(p: &Proc) -> Summary {
    let out = p.output();
    let line = out
        .lines()
        .find(|l| l.contains("shutdown: drain "))
        .unwrap_or_else(|| panic!("no summary line; output:\n{out}"));
    let rest = &line[line.find("shutdown: ").unwrap() + "shutdown: ".len()..];
    let mut vals = std::collections::HashMap::new();
    for part in rest.split(", ") {
        let (k, v) = part.rsplit_once(' ').expect("key value");
        vals.insert(k.to_string(), v.trim().to_string());
    }
    let secs = |k: &str| -> f64 {
        vals.get(k)
            .and_then(|v| v.strip_suffix('s'))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("summary field {k:?} missing in {line:?}"))
    };
    Summary {
        drain: secs("drain"),
        grace: secs("grace"),
        app_stop: secs("app stop"),
        total: secs("total"),
        exit: vals
            .get("exit")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exit in {line:?}")),
    }
}

/// Index of the first output line containing `needle` (panics if none).
pub fn line_index(p: &Proc, needle: &str) -> usize {
    p.lines()
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line containing {needle:?}; output:\n{}", p.output()))
}

/// One request seen by a [`ScriptedHttp`]: (index, CLOCK_MONOTONIC ns, status answered).
pub type Hit = (usize, u64, u16);

/// An HTTP server the test opens itself: request N (from 0) gets `script(N)`, and every
/// request is logged with its time. The server thread lives until the test process ends.
pub struct ScriptedHttp {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl ScriptedHttp {
    pub fn start(script: impl Fn(usize) -> u16 + Send + 'static) -> ScriptedHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let log = hits.clone();
        thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let status = script(n);
                let t = now_ns();
                log.lock().unwrap().push((n, t, status));
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        ScriptedHttp { port, hits }
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}
