//! `fake-kuma-dp`: a stand-in for `kuma-dp run` that follows kuma-dp's process contract
//! (`reference/kuma-dp-contract.md`) closely enough for meshinit's integration tests.
//!
//! It checks its flags like kuma-dp's cobra command does, serves `GET /ready` on
//! `127.0.0.1:${KUMA_READINESS_PORT:-9902}` (503 NOT_READY, then 200 LIVE, then 503 TERMINATING
//! after the first stop signal), drains for `--drain-time` on SIGTERM/SIGINT, and records what
//! happened in `$FAKE_KUMA_DP_RECORD` as `<monotonic_ns> <event> [key=value ...]` lines, each
//! written with one `write()` on an O_APPEND file.
//!
//! Record lines: `start`, `arg <i> <value>`, `env K=V`, `token fnv=<hex>`, `ready`,
//! `signal TERM n=<stop count>` (INT likewise), `signal <NAME>`, `drain-inbound`,
//! `draining drain_ms=<ms>`, `exit code=<c> reason=<why>`. Newlines and backslashes in
//! argument and env values are escaped as `\n` and `\\` so every event stays on one line.
//! Token values (`--dataplane-token`, `KUMA_*_TOKEN` variables) are recorded only as
//! `redacted-fnv=<hex>`, never in clear.
//!
//! Environment knobs for tests:
//! - `FAKE_KUMA_DP_READY_AFTER_MS` (default 200): when `/ready` turns 200.
//! - `FAKE_KUMA_DP_NEVER_READY=1`: never ready.
//! - `FAKE_KUMA_DP_CRASH_AFTER_MS=N`: exit 1 (reason `crash`) N ms after start.
//! - `FAKE_KUMA_DP_IGNORE_TERM=1`: record SIGTERM/SIGINT but do nothing about them.
//! - `FAKE_KUMA_DP_STOP_MS=N` (default 0): how long "stopping Envoy" takes after the drain or
//!   a second stop signal; a third stop signal in that window exits 1 (reason `third-signal`).
//! - Envoy's admin API is stood in for on the Unix socket `<--work-dir>/kuma-envoy-admin.sock`
//!   (as kuma-dp's Envoy does; without `--work-dir` there is none, as with kuma-dp's random
//!   one), following Envoy's contract (research for issue 23, §1 and §4):
//!   - `GET /ready`: `503 INITIALIZING` until the fake is ready, then `200 LIVE`, or
//!     `503 DRAINING` while its health checks are failed;
//!   - `POST /healthcheck/fail` and `POST /healthcheck/ok`: `200 OK\n`, fail or pass the
//!     health checks (idempotent), recorded as `healthcheck fail` / `healthcheck ok`; as GET
//!     `405 Method Not Allowed` (Envoy 1.37 takes mutations as POST only; its docs say 400,
//!     the binary answers 405). The first stop signal fails them too, as kuma-dp's drain does;
//!   - `GET /stats`, with `FAKE_KUMA_DP_INBOUND=ADDR:PORT:SERVICE_PORT`: the inbound
//!     listener's stats under their real names (`listener.<addr>_<port>.downstream_cx_active`,
//!     `http.localhost_<service port>.downstream_rq_active`): one connection and one request in
//!     flight until the first stop signal or `/healthcheck/fail` (clients drop the endpoint),
//!     then still busy for `FAKE_KUMA_DP_DRAIN_BUSY_MS` (default 0), then idle (busy again
//!     after `/healthcheck/ok`). Each stats read is recorded as `stats-read`. Without it, no
//!     inbound stats.
//!
//!   The readiness `/ready` passes Envoy's answer through as kuma-dp's does (its status and
//!   body: `503 DRAINING` while the health checks are failed), after its own `TERMINATING`
//!   and `NOT_READY`; `503 envoy not ready` while the admin API hangs.
//! - `FAKE_KUMA_DP_HANG_FILE=PATH`: while PATH exists, the admin socket accepts connections
//!   and never answers (a hung Envoy; recorded once as `admin-hung`).
//! - `FAKE_KUMA_DP_ENVOY_CHILD=1`: start a child standing in for Envoy, in a process group of
//!   its own as kuma-dp starts Envoy (recorded by the child as `envoy-start pid=.. pgid=..`);
//!   it runs until it is killed (the fake kuma-dp SIGTERMs it when it exits on its own).
//! - `FAKE_KUMA_DP_DIE_ON=N`: signal N (a number, e.g. 40 for a real-time signal) kills it,
//!   as it would kill a Go program that does not handle it; it is recorded as `die sig=N`
//!   first.
//! - `FAKE_KUMA_DP_DNS=ADDR`: a DNS server on UDP ADDR, as kuma-dp's embedded DNS proxy or
//!   CoreDNS (127.0.0.1:15053), that starts `FAKE_KUMA_DP_DNS_AFTER_MS` after the start (default:
//!   when `/ready` turns 200; kuma-dp's readiness does not wait for CoreDNS) and answers every
//!   query with NXDOMAIN (recorded once as `dns-listening`, then `dns-answer` per answer) until
//!   the process exits.
//!
//! A second SIGTERM (or INT) ends the drain at once and exits 0 (`reason=stop-now`), a third
//! exits 1, as kuma-dp does (Kuma 2.14.3 `app/kuma-dp/cmd/run.go`, `pkg/core/alias.go`).
//!
//! Signals are blocked before any thread exists and read from a signalfd in the main loop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use nix::libc;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::signalfd::SignalFd;
use nix::unistd;

#[path = "shared/record.rs"]
mod record;
use record::{now_ns, record, sig_name};

/// This program's name, in its messages.
const PROGRAM: &str = "fake-kuma-dp";

/// kuma-dp's logger (zap, behind logr) ignores a failed write: with SIGPIPE ignored, as
/// systemd and Rust's test harness leave it, kuma-dp carries on when its log reader is
/// gone. `eprintln!` would panic instead, so the fake writes its log lines this way.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `/ready` states.
const NOT_READY: u8 = 0;
const LIVE: u8 = 1;
const TERMINATING: u8 = 2;

/// Flags that take a value (long name, optional shorthand).
const VALUE_FLAGS: &[(&str, Option<char>)] = &[
    ("cp-address", None),
    ("dataplane-file", Some('d')),
    ("dataplane-var", Some('v')),
    ("dataplane-token-file", None),
    ("dataplane-token", None),
    ("name", None),
    ("mesh", None),
    ("drain-time", None),
    ("work-dir", None),
    ("binary-path", None),
    ("log-level", None),
    ("concurrency", None),
    ("envoy-log-level", None),
    ("ca-cert-file", None),
    ("dataplane", None),
    ("admin-port", None),
];

/// Boolean flags: `--flag` means true, `--flag=false` false; like cobra, they never take the
/// next argument as their value.
const BOOL_FLAGS: &[&str] = &["dns-enabled"];

/// The flags that matter to the fake, after validation.
#[derive(Default, Debug)]
struct Config {
    cp_address: Option<String>,
    dataplane_file: Option<String>,
    dataplane_inline: Option<String>,
    dataplane_vars: Vec<String>,
    token_file: Option<String>,
    token: Option<String>,
    name: Option<String>,
    mesh: Option<String>,
    drain_time: Option<Duration>,
}

/// CLOCK_MONOTONIC ns since which traffic leaves (the first stop signal, or health checks
/// failed: clients drop the endpoint); 0 while it flows.
static DRAIN_STARTED_NS: AtomicU64 = AtomicU64::new(0);

/// Held by whoever is ending the process, so exactly one `exit` line is recorded.
static ENDING: Mutex<()> = Mutex::new(());

/// Envoy's health checks are failed (`POST /healthcheck/fail`, or the drain).
static HC_FAILED: AtomicBool = AtomicBool::new(false);

/// The fake Envoy child's pid (0: none).
static ENVOY_CHILD: AtomicI32 = AtomicI32::new(0);

/// While this file exists the admin API hangs.
static HANG_FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();

fn admin_hangs() -> bool {
    HANG_FILE
        .get()
        .and_then(Option::as_ref)
        .is_some_and(|p| p.exists())
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("fake-envoy") {
        fake_envoy();
    }
    // What meshinit handed over (`SigBlk`/`SigIgn` of /proc/self/status), read before this
    // program changes it.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let inherited = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| "?".to_string(), |v| v.trim().to_string())
    };
    let (sigblk, sigign) = (inherited("SigBlk:"), inherited("SigIgn:"));
    // Block every signal before any thread exists; the main loop reads them from a signalfd.
    let all = SigSet::all();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&all), None).expect("block signals");
    let sfd = SignalFd::new(&all).expect("signalfd");

    record::open(PROGRAM, std::env::var("FAKE_KUMA_DP_RECORD").ok());

    record(&format!(
        "start pid={} pgid={} ppid={} sigblk={sigblk} sigign={sigign}",
        process::id(),
        unistd::getpgrp(),
        unistd::getppid()
    ));
    let args: Vec<String> = std::env::args().skip(1).collect();
    record_args(&args);
    record_env();

    let cfg = match parse_run(&args) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("Error: {msg}");
            finish(1, "usage");
        }
    };
    let cfg = with_env_defaults(cfg);
    if let Err(msg) = check_inputs(&cfg) {
        eprintln!("Error: {msg}");
        finish(1, "usage");
    }
    let drain = match drain_time(&cfg) {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("Error: {msg}");
            finish(1, "usage");
        }
    };
    let port = match std::env::var("KUMA_READINESS_PORT") {
        Ok(v) => v.parse::<u16>().unwrap_or_else(|_| {
            eprintln!("Error: KUMA_READINESS_PORT={v:?} is not a port number");
            finish(1, "usage")
        }),
        Err(_) => 9902,
    };
    eprintln!(
        "fake-kuma-dp: starting, cp-address={} drain-time={}ms readiness-port={port}",
        cfg.cp_address.as_deref().unwrap_or(""),
        drain.as_millis()
    );

    let crash_after = env_ms("FAKE_KUMA_DP_CRASH_AFTER_MS");
    if crash_after == Some(0) {
        eprintln!("fake-kuma-dp: crashing (FAKE_KUMA_DP_CRASH_AFTER_MS=0)");
        finish(1, "crash");
    }
    let state = Arc::new(AtomicU8::new(NOT_READY));

    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("Error: readiness server cannot listen on 127.0.0.1:{port}: {e}");
        finish(1, "readiness-bind")
    });
    let server_state = state.clone();
    thread::spawn(move || serve_ready(listener, server_state));
    let _ = HANG_FILE.set(std::env::var_os("FAKE_KUMA_DP_HANG_FILE").map(Into::into));
    serve_admin(&args, state.clone());
    if std::env::var("FAKE_KUMA_DP_ENVOY_CHILD").as_deref() == Ok("1") {
        start_envoy_child();
    }

    if let Some(ms) = crash_after {
        after(ms, || {
            eprintln!("fake-kuma-dp: crashing (FAKE_KUMA_DP_CRASH_AFTER_MS)");
            finish(1, "crash")
        });
    }
    if let Ok(addr) = std::env::var("FAKE_KUMA_DP_DNS") {
        let after_ms = env_ms("FAKE_KUMA_DP_DNS_AFTER_MS")
            .or_else(|| env_ms("FAKE_KUMA_DP_READY_AFTER_MS"))
            .unwrap_or(200);
        after(after_ms, move || serve_dns(&addr));
    }
    if std::env::var("FAKE_KUMA_DP_NEVER_READY").as_deref() != Ok("1") {
        let ready_after = env_ms("FAKE_KUMA_DP_READY_AFTER_MS").unwrap_or(200);
        let state = state.clone();
        after(ready_after, move || {
            // A stop signal before this moment keeps it from ever turning ready.
            if state
                .compare_exchange(NOT_READY, LIVE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                record("ready");
                eprintln!("fake-kuma-dp: Envoy is live, /ready answers 200");
            }
        });
    }

    let ignore_term = std::env::var("FAKE_KUMA_DP_IGNORE_TERM").as_deref() == Ok("1");
    let stop_ms = env_ms("FAKE_KUMA_DP_STOP_MS").unwrap_or(0);
    let die_on = std::env::var("FAKE_KUMA_DP_DIE_ON")
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    let mut stops = 0u32;
    let mut inbound_drained = false;
    loop {
        let signo = match sfd.read_signal() {
            Ok(Some(info)) => info.ssi_signo as i32,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("fake-kuma-dp: reading signalfd: {e}");
                finish(1, "crash");
            }
        };
        let name = sig_name(signo);
        if die_on == Some(signo) {
            die(signo);
        }
        match signo {
            libc::SIGTERM | libc::SIGINT => {
                stops += 1;
                record(&format!("signal {name} n={stops}"));
                eprintln!("fake-kuma-dp: received SIG{name} (stop signal {stops})");
                if ignore_term {
                    continue;
                }
                match stops {
                    1 => {
                        let _ = DRAIN_STARTED_NS.compare_exchange(
                            0,
                            now_ns(),
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                        state.store(TERMINATING, Ordering::SeqCst);
                        // kuma-dp's drain begins with FailHealthchecks().
                        HC_FAILED.store(true, Ordering::SeqCst);
                        if inbound_drained {
                            finish(0, "already-drained");
                        }
                        let drain_ms = drain.as_millis();
                        record(&format!("draining drain_ms={drain_ms}"));
                        eprintln!("fake-kuma-dp: draining for {drain_ms}ms");
                        after(drain.as_millis() as u64, move || {
                            stop_envoy_then_exit(stop_ms, "drained")
                        });
                    }
                    2 => stop_envoy_then_exit(stop_ms, "stop-now"),
                    _ => finish(1, "third-signal"),
                }
            }
            libc::SIGUSR2 => {
                record(&format!("signal {name}"));
                if stops == 0 || ignore_term {
                    inbound_drained = true;
                    record("drain-inbound");
                    eprintln!("fake-kuma-dp: draining inbound listeners, staying up");
                }
            }
            _ => record(&format!("signal {name}")),
        }
    }
}

/// Records `die sig=N`, then dies by that signal (default action, unblocked), so the parent
/// sees a signal death.
fn die(signo: i32) -> ! {
    let _ending = ENDING.lock();
    record(&format!("die sig={}", sig_name(signo)));
    record::raise_default(signo);
    finish(1, "survived-its-death-signal")
}

/// Stopping Envoy takes `stop_ms` (0: at once); then exit 0 with `reason`.
fn stop_envoy_then_exit(stop_ms: u64, reason: &'static str) {
    if stop_ms == 0 {
        finish(0, reason);
    }
    eprintln!("fake-kuma-dp: stopping Envoy ({stop_ms}ms)");
    after(stop_ms, move || finish(0, reason));
}

/// The DNS stand-in: answers every query (a 12-byte header at least) with NXDOMAIN, the
/// question echoed, as a DNS server does for a name it does not know.
fn serve_dns(addr: &str) {
    let socket = std::net::UdpSocket::bind(addr).unwrap_or_else(|e| {
        eprintln!("Error: DNS server cannot listen on udp {addr}: {e}");
        finish(1, "dns-bind")
    });
    record(&format!("dns-listening addr={addr}"));
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if n < 12 {
            continue;
        }
        let mut answer = buf[..n].to_vec();
        // QR (a response), keep RD; RA; rcode 3 (NXDOMAIN).
        answer[2] = 0x80 | (answer[2] & 0x01);
        answer[3] = 0x80 | 0x03;
        if socket.send_to(&answer, from).is_ok() {
            record("dns-answer");
        }
    }
}

/// Runs `f` on a new thread after `ms` milliseconds.
fn after(ms: u64, f: impl FnOnce() + Send + 'static) {
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(ms));
        f()
    });
}

/// Records `exit code=<code> reason=<reason>` and exits; the first caller wins. Envoy (the
/// fake child) is stopped first, as kuma-dp stops Envoy before it exits.
fn finish(code: i32, reason: &str) -> ! {
    let _ending = ENDING.lock();
    let envoy = ENVOY_CHILD.load(Ordering::SeqCst);
    if envoy > 0 {
        let _ = nix::sys::signal::kill(
            unistd::Pid::from_raw(envoy),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    record(&format!("exit code={code} reason={reason}"));
    eprintln!("fake-kuma-dp: exiting with {code} ({reason})");
    process::exit(code)
}

fn env_ms(var: &str) -> Option<u64> {
    let value = std::env::var(var).ok()?;
    match value.parse() {
        Ok(ms) => Some(ms),
        Err(_) => {
            eprintln!("Error: {var}={value:?} is not a number of milliseconds");
            finish(1, "usage")
        }
    }
}

/// One `arg <i> <value>` line per argument; token values are redacted.
fn record_args(args: &[String]) {
    let mut next_is_token = false;
    for (i, arg) in args.iter().enumerate() {
        let shown = if next_is_token {
            next_is_token = false;
            redact(arg)
        } else if let Some(token) = arg.strip_prefix("--dataplane-token=") {
            format!("--dataplane-token={}", redact(token))
        } else {
            next_is_token = arg == "--dataplane-token";
            escape(arg)
        };
        record(&format!("arg {} {shown}", i + 1));
    }
}

/// `env K=V` for every `KUMA_*` variable, KUMA_READINESS_PORT first, the rest sorted.
fn record_env() {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("KUMA_"))
        .collect();
    vars.sort_by_key(|(k, _)| (k != "KUMA_READINESS_PORT", k.clone()));
    for (k, v) in vars {
        let v = if k.ends_with("_TOKEN") {
            redact(&v)
        } else {
            escape(&v)
        };
        record(&format!("env {k}={v}"));
    }
}

fn redact(secret: &str) -> String {
    format!("redacted-fnv={:016x}", fnv1a64(secret.as_bytes()))
}

/// Keeps a value on one record line: `\` → `\\`, newline → `\n`, CR → `\r`.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// FNV-1a, 64 bit: lets tests check which token was passed without ever seeing it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Parses `run [flags]` the way cobra/pflag would (both `--f=v` and `--f v`, `-d v`, `-dv`).
fn parse_run(args: &[String]) -> Result<Config, String> {
    match args.first().map(String::as_str) {
        Some("run") => {}
        Some(other) => return Err(format!("unknown command {other:?} for \"kuma-dp\"")),
        None => return Err("a command is required (the fake knows only \"run\")".into()),
    }
    let mut cfg = Config::default();
    let mut it = args[1..].iter();
    while let Some(arg) = it.next() {
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let c = short.chars().next().expect("non-empty");
            let rest = &short[c.len_utf8()..];
            let long = VALUE_FLAGS
                .iter()
                .find(|(_, s)| *s == Some(c))
                .map(|(l, _)| l.to_string())
                .ok_or_else(|| format!("unknown shorthand flag: '{c}' in {arg}"))?;
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            (long, (!rest.is_empty()).then(|| rest.to_string()))
        } else {
            return Err(format!(
                "unexpected argument {arg:?} (kuma-dp run takes only flags)"
            ));
        };

        if BOOL_FLAGS.contains(&name.as_str()) {
            match inline.as_deref() {
                None | Some("true") | Some("1") | Some("false") | Some("0") => {}
                Some(v) => {
                    return Err(format!(
                        "invalid argument {v:?} for \"--{name}\" flag: strconv.ParseBool: parsing {v:?}: invalid syntax"
                    ))
                }
            }
            continue;
        }
        if !VALUE_FLAGS.iter().any(|(l, _)| *l == name) {
            return Err(format!("unknown flag: --{name}"));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: --{name}"))?,
        };
        match name.as_str() {
            "cp-address" => cfg.cp_address = Some(value),
            "dataplane-file" => cfg.dataplane_file = Some(value),
            "dataplane" => cfg.dataplane_inline = Some(value),
            "dataplane-var" => {
                if !value.contains('=') {
                    return Err(format!(
                        "invalid argument {value:?} for \"-v, --dataplane-var\" flag: expected KEY=VALUE"
                    ));
                }
                cfg.dataplane_vars.push(value)
            }
            "dataplane-token-file" => cfg.token_file = Some(value),
            "dataplane-token" => cfg.token = Some(value),
            "name" => cfg.name = Some(value),
            "mesh" => cfg.mesh = Some(value),
            "drain-time" => {
                cfg.drain_time = Some(parse_go_duration(&value).ok_or_else(|| {
                    format!("invalid argument {value:?} for \"--drain-time\" flag: time: invalid duration {value:?}")
                })?)
            }
            _ => {} // accepted, no effect on the fake
        }
    }
    Ok(cfg)
}

/// kuma-dp reads most settings from `KUMA_*` variables too; a flag wins over its variable.
fn with_env_defaults(mut cfg: Config) -> Config {
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    cfg.cp_address = cfg.cp_address.or_else(|| env("KUMA_CONTROL_PLANE_URL"));
    cfg.name = cfg.name.or_else(|| env("KUMA_DATAPLANE_NAME"));
    cfg.mesh = cfg.mesh.or_else(|| env("KUMA_DATAPLANE_MESH"));
    cfg.dataplane_file = cfg
        .dataplane_file
        .or_else(|| env("KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH"));
    cfg.dataplane_inline = cfg
        .dataplane_inline
        .or_else(|| env("KUMA_DATAPLANE_RUNTIME_RESOURCE"));
    cfg.token_file = cfg
        .token_file
        .or_else(|| env("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH"));
    cfg.token = cfg.token.or_else(|| env("KUMA_DATAPLANE_RUNTIME_TOKEN"));
    cfg
}

/// The checks kuma-dp makes before it contacts the control plane; records the token hash.
fn check_inputs(cfg: &Config) -> Result<(), String> {
    if cfg.cp_address.is_none() {
        return Err("--cp-address (or KUMA_CONTROL_PLANE_URL) is required".into());
    }
    let has_dataplane = cfg.dataplane_file.is_some() || cfg.dataplane_inline.is_some();
    if !has_dataplane && (cfg.name.is_none() || cfg.mesh.is_none()) {
        return Err(
            "either --dataplane-file/--dataplane or both --name and --mesh are required".into(),
        );
    }
    if let Some(path) = &cfg.dataplane_file {
        let text = std::fs::read(path)
            .map_err(|e| format!("could not read dataplane file {path}: {e}"))?;
        eprintln!(
            "fake-kuma-dp: dataplane template {path} ({} bytes, {} vars)",
            text.len(),
            cfg.dataplane_vars.len()
        );
    }
    if let Some(path) = &cfg.token_file {
        let token = std::fs::read(path)
            .map_err(|e| format!("could not read dataplane token file {path}: {e}"))?;
        record(&format!("token fnv={:016x}", fnv1a64(&token)));
        eprintln!("fake-kuma-dp: using dataplane token from {path}");
    } else if let Some(token) = &cfg.token {
        record(&format!("token fnv={:016x}", fnv1a64(token.as_bytes())));
        eprintln!("fake-kuma-dp: using dataplane token from --dataplane-token");
    }
    Ok(())
}

/// `--drain-time`, else `KUMA_DATAPLANE_DRAIN_TIME`, else 30s.
fn drain_time(cfg: &Config) -> Result<Duration, String> {
    if let Some(d) = cfg.drain_time {
        return Ok(d);
    }
    match std::env::var("KUMA_DATAPLANE_DRAIN_TIME") {
        Ok(v) => parse_go_duration(&v)
            .ok_or_else(|| format!("KUMA_DATAPLANE_DRAIN_TIME={v:?}: time: invalid duration")),
        Err(_) => Ok(Duration::from_secs(30)),
    }
}

/// Go's `time.ParseDuration` for non-negative values: `300ms`, `1.5s`, `1m30s`, `0`.
fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += num * nanos_per;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

/// The readiness server: one short-lived thread per connection.
fn serve_ready(listener: TcpListener, state: Arc<AtomicU8>) {
    for stream in listener.incoming().flatten() {
        let state = state.clone();
        thread::spawn(move || answer_ready(stream, &state));
    }
}

fn answer_ready(mut stream: TcpStream, state: &AtomicU8) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = if path == "/ready" {
        // As kuma-dp's readiness handler: its own states first, then Envoy's answer passed
        // through (status and body), or "envoy not ready" when Envoy does not answer.
        match state.load(Ordering::SeqCst) {
            LIVE if admin_hangs() => ("503 Service Unavailable", "envoy not ready"),
            LIVE if HC_FAILED.load(Ordering::SeqCst) => ("503 Service Unavailable", "DRAINING"),
            LIVE => ("200 OK", "LIVE"),
            TERMINATING => ("503 Service Unavailable", "TERMINATING"),
            _ => ("503 Service Unavailable", "NOT_READY"),
        }
    } else {
        ("404 Not Found", "404 page not found\n")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// The Envoy admin stand-in (see the module documentation).
fn serve_admin(args: &[String], state: Arc<AtomicU8>) {
    let inbound = match std::env::var("FAKE_KUMA_DP_INBOUND") {
        Ok(inbound) => {
            let mut parts = inbound.rsplitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(sp), Some(p), Some(a)) => {
                    Some((a.to_string(), p.to_string(), sp.to_string()))
                }
                _ => {
                    eprintln!(
                        "Error: FAKE_KUMA_DP_INBOUND={inbound:?} is not ADDR:PORT:SERVICE_PORT"
                    );
                    finish(1, "usage")
                }
            }
        }
        Err(_) => None,
    };
    let mut work_dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--work-dir=") {
            work_dir = Some(v.to_string());
        } else if a == "--work-dir" {
            work_dir = it.next().cloned();
        }
    }
    let Some(work_dir) = work_dir else {
        eprintln!("fake-kuma-dp: no --work-dir, so no admin socket (as kuma-dp's random one)");
        return;
    };
    let _ = std::fs::create_dir_all(&work_dir);
    let socket = std::path::Path::new(&work_dir).join("kuma-envoy-admin.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap_or_else(|e| {
        eprintln!("Error: admin socket {}: {e}", socket.display());
        finish(1, "usage")
    });
    let busy_ms = env_ms("FAKE_KUMA_DP_DRAIN_BUSY_MS").unwrap_or(0);
    thread::spawn(move || {
        let mut hung = Vec::new();
        for mut stream in listener.incoming().flatten() {
            if admin_hangs() {
                // Accepted, never answered: kept open so the client waits.
                if hung.is_empty() {
                    record("admin-hung");
                }
                hung.push(stream);
                continue;
            }
            hung.clear();
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let mut words = head.split_whitespace();
            let method = words.next().unwrap_or("");
            let target = words.next().unwrap_or("");
            let path = target.split('?').next().unwrap_or("");
            let (status, body) = match (method, path) {
                ("GET", "/ready") => match state.load(Ordering::SeqCst) {
                    NOT_READY => ("503 Service Unavailable", "INITIALIZING\n".to_string()),
                    _ if HC_FAILED.load(Ordering::SeqCst) => {
                        ("503 Service Unavailable", "DRAINING\n".to_string())
                    }
                    _ => ("200 OK", "LIVE\n".to_string()),
                },
                ("POST", "/healthcheck/fail" | "/healthcheck/ok") => {
                    let fail = path == "/healthcheck/fail";
                    HC_FAILED.store(fail, Ordering::SeqCst);
                    // Clients stop sending once the endpoint is withdrawn, and come back
                    // after `ok` (unless a drain is under way).
                    if fail {
                        let _ = DRAIN_STARTED_NS.compare_exchange(
                            0,
                            now_ns(),
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                    } else if state.load(Ordering::SeqCst) != TERMINATING {
                        DRAIN_STARTED_NS.store(0, Ordering::SeqCst);
                    }
                    record(if fail {
                        "healthcheck fail"
                    } else {
                        "healthcheck ok"
                    });
                    ("200 OK", "OK\n".to_string())
                }
                // As Envoy 1.37 answers it (measured; its docs say 400).
                (_, "/healthcheck/fail" | "/healthcheck/ok") => (
                    "405 Method Not Allowed",
                    format!("Method {method} not allowed, POST required.\n"),
                ),
                (_, "/stats") => {
                    let started = DRAIN_STARTED_NS.load(Ordering::SeqCst);
                    let busy =
                        started == 0 || now_ns().saturating_sub(started) < busy_ms * 1_000_000;
                    let n = u8::from(busy);
                    let body = match &inbound {
                        Some((addr, port, service_port)) => format!(
                            "http.admin.downstream_rq_active: 1\nhttp.localhost_{service_port}.downstream_rq_active: {n}\nlistener.{}_{port}.downstream_cx_active: {n}\nlistener.admin.downstream_cx_active: 1\n",
                            addr.replace(':', "_")
                        ),
                        None => "http.admin.downstream_rq_active: 1\nlistener.admin.downstream_cx_active: 1\n".to_string(),
                    };
                    record(&format!("stats-read busy={n}"));
                    ("200 OK", body)
                }
                _ => ("404 Not Found", "invalid path\n".to_string()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// Starts the fake Envoy: this program again, in a process group of its own (kuma-dp's
/// `Setpgid`), not told of its parent's death.
fn start_envoy_child() {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = process::Command::new(exe);
    cmd.arg("fake-envoy").process_group(0);
    match cmd.spawn() {
        Ok(child) => ENVOY_CHILD.store(child.id() as i32, Ordering::SeqCst),
        Err(e) => {
            eprintln!("Error: cannot start the fake Envoy: {e}");
            finish(1, "envoy-spawn")
        }
    }
}

/// The fake Envoy's whole life: say so, then wait to be killed (default signal actions).
fn fake_envoy() -> ! {
    record::open("fake-envoy", std::env::var("FAKE_KUMA_DP_RECORD").ok());
    record(&format!(
        "envoy-start pid={} pgid={}",
        process::id(),
        unistd::getpgrp()
    ));
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
