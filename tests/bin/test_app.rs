//! `meshinit-test-app`: a scriptable application for meshinit's integration tests.
//!
//! It records what happens to it (start, ids, signals, exits) in a record file so a test in
//! another process can check, with CLOCK_MONOTONIC timestamps, what meshinit did and when.
//! Each record line is `<monotonic_ns> <event> [key=value ...]`, written with one `write()` on
//! a file opened with O_APPEND, so lines from several processes never interleave.
//!
//! Signals are blocked on the main thread before any thread or child exists and read from a
//! `signalfd` in the main loop: there are no signal handlers. Forked helpers (orphans, the
//! daemon, children) are created while the process is still single-threaded and unblock
//! every signal, so they get default dispositions.
//!
//! Options (`--opt VALUE` or `--opt=VALUE`):
//! - `--record PATH` (env `TEST_APP_RECORD`): the record file.
//! - `--ids`: record `ids ruid= euid= suid= rgid= egid= sgid= groups= nnp=`.
//! - `--listen ADDR`, `--listen-after MS`, `--http-status N`, `--unhealthy-after MS`,
//!   `--close-after MS`: a tiny HTTP server that answers every request with `ok\n`.
//! - `--exit-after MS`, `--exit-code N`: exit on its own (at once if only `--exit-code`).
//! - `--on SIG=ACTION` (ACTION: `ignore`, `die`, `exit:CODE`, `exit-after:MS:CODE`).
//!   Defaults: TERM, INT and QUIT die by that signal; every other signal is recorded only.
//! - `--orphans N`, `--daemon`, `--daemon-ignore-term`, `--children N`: leave work for the
//!   reaper.
//! - `--call-while-stopping ADDR`: from the first TERM or INT on, connect to ADDR (TCP) every
//!   50 ms until the process ends, recording each as `call ok=1`, or `call ok=0 error=...`:
//!   an app calling out through its proxy while it shuts down.
//!
//! Events: `start`, `ids`, `orphans`, `daemon`, `children`, `listening`, `request`,
//! `unhealthy`, `closed`, `signal`, `reaped`, `die`, `exit`, `call`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::libc;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};

#[path = "shared/record.rs"]
mod record;
use record::{record, sig_name};

/// This program's name, in its messages.
const PROGRAM: &str = "meshinit-test-app";

/// What to do when a signal arrives.
#[derive(Clone, Copy, Debug)]
enum Action {
    /// Record it and carry on.
    Ignore,
    /// Record `die`, then die by that same signal.
    Die,
    /// Exit with this code at once.
    Exit(i32),
    /// Keep running and exit with the code after this many milliseconds.
    ExitAfter(u64, i32),
}

/// The parsed command line.
#[derive(Default)]
struct Opts {
    record: Option<String>,
    ids: bool,
    listen: Option<String>,
    listen_after_ms: u64,
    http_status: u16,
    unhealthy_after_ms: Option<u64>,
    close_after_ms: Option<u64>,
    exit_after_ms: Option<u64>,
    exit_code: Option<i32>,
    on: HashMap<i32, Action>,
    orphans: u32,
    daemon: bool,
    daemon_ignore_term: bool,
    call_while_stopping: Option<String>,
    children: u32,
}

/// Held by whoever is ending the process, so exactly one `exit`/`die` line is recorded.
static ENDING: Mutex<()> = Mutex::new(());

fn main() {
    let mut opts = match parse_args(std::env::args().skip(1).collect()) {
        Ok(opts) => opts,
        Err(msg) => {
            eprintln!("meshinit-test-app: {msg}");
            process::exit(2);
        }
    };

    // What the supervisor handed over, read before this program changes it: a signal mask
    // or ignored signals inherited across exec would keep an ordinary app from ever seeing
    // its SIGTERM.
    let inherited = inherited_signal_state();

    // Block every signal before anything else exists: threads and forks inherit the mask,
    // and the main loop reads them from a signalfd.
    let all = SigSet::all();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&all), None).expect("block signals");
    let sfd = SignalFd::new(&all).expect("signalfd");

    let record_path = opts
        .record
        .clone()
        .or_else(|| std::env::var("TEST_APP_RECORD").ok());
    record::open(PROGRAM, record_path);

    record_start(&inherited);
    if opts.ids {
        record_ids();
    }
    // Everything that forks happens here, while the process is still single-threaded.
    if opts.orphans > 0 {
        make_orphans(opts.orphans);
    }
    if opts.daemon {
        make_daemon(opts.daemon_ignore_term);
    }
    if opts.children > 0 {
        make_children(opts.children);
    }

    match (opts.exit_after_ms, opts.exit_code) {
        (None, Some(code)) => exit_with(code),
        (Some(ms), code) => exit_later(ms, code.unwrap_or(0)),
        (None, None) => {}
    }
    if let Some(addr) = opts.listen.clone() {
        let server = Server {
            addr,
            listen_after_ms: opts.listen_after_ms,
            status: Arc::new(AtomicU16::new(opts.http_status)),
            unhealthy_after_ms: opts.unhealthy_after_ms,
            close_after_ms: opts.close_after_ms,
        };
        thread::spawn(move || server.run());
    }

    loop {
        let info = match sfd.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("meshinit-test-app: reading signalfd: {e}");
                exit_with(1);
            }
        };
        let signo = info.ssi_signo as i32;
        record(&format!("signal {}", sig_name(signo)));
        if signo == libc::SIGCHLD {
            reap_children();
        }
        if matches!(signo, libc::SIGTERM | libc::SIGINT) {
            if let Some(addr) = opts.call_while_stopping.take() {
                thread::spawn(move || call_while_stopping(&addr));
            }
        }
        match opts
            .on
            .get(&signo)
            .copied()
            .unwrap_or(default_action(signo))
        {
            Action::Ignore => {}
            Action::Die => die(signo),
            Action::Exit(code) => exit_with(code),
            Action::ExitAfter(ms, code) => exit_later(ms, code),
        }
    }
}

/// Calls out every 50 ms until the process ends (see `--call-while-stopping`).
fn call_while_stopping(addr: &str) {
    loop {
        let result = addr
            .parse::<SocketAddr>()
            .map_err(|e| e.to_string())
            .and_then(|a| {
                TcpStream::connect_timeout(&a, Duration::from_millis(500))
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(_) => record("call ok=1"),
            Err(e) => record(&format!("call ok=0 error={}", e.replace(' ', "_"))),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn default_action(signo: i32) -> Action {
    match signo {
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => Action::Die,
        _ => Action::Ignore,
    }
}

fn usage_error(msg: String) -> String {
    format!("{msg}\nusage: meshinit-test-app [--record PATH] [--ids] [--listen ADDR] [--listen-after MS] [--http-status N] [--unhealthy-after MS] [--close-after MS] [--exit-after MS] [--exit-code N] [--on SIG=ACTION]... [--orphans N] [--daemon] [--daemon-ignore-term] [--children N] [--call-while-stopping ADDR]")
}

fn parse_args(args: Vec<String>) -> Result<Opts, String> {
    let mut opts = Opts {
        http_status: 200,
        ..Opts::default()
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| usage_error(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "--record" => opts.record = Some(value("--record")?),
            "--ids" => opts.ids = true,
            "--listen" => opts.listen = Some(value("--listen")?),
            "--listen-after" => opts.listen_after_ms = number(&flag, &value(&flag)?)?,
            "--http-status" => opts.http_status = number(&flag, &value(&flag)?)?,
            "--unhealthy-after" => opts.unhealthy_after_ms = Some(number(&flag, &value(&flag)?)?),
            "--close-after" => opts.close_after_ms = Some(number(&flag, &value(&flag)?)?),
            "--exit-after" => opts.exit_after_ms = Some(number(&flag, &value(&flag)?)?),
            "--exit-code" => opts.exit_code = Some(number(&flag, &value(&flag)?)?),
            "--on" => {
                let (sig, action) = parse_on(&value("--on")?)?;
                opts.on.insert(sig, action);
            }
            "--orphans" => opts.orphans = number(&flag, &value(&flag)?)?,
            "--daemon" => opts.daemon = true,
            "--daemon-ignore-term" => {
                opts.daemon = true;
                opts.daemon_ignore_term = true;
            }
            "--children" => opts.children = number(&flag, &value(&flag)?)?,
            "--call-while-stopping" => opts.call_while_stopping = Some(value(&flag)?),
            other => return Err(usage_error(format!("unknown option {other:?}"))),
        }
    }
    Ok(opts)
}

fn number<T: FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| usage_error(format!("{flag}: {value:?} is not a valid number")))
}

/// Parses `SIG=ACTION`, e.g. `TERM=exit-after:500:0`, `HUP=die`, `40=ignore`.
fn parse_on(spec: &str) -> Result<(i32, Action), String> {
    let (sig, action) = spec
        .split_once('=')
        .ok_or_else(|| usage_error(format!("--on {spec:?}: expected SIG=ACTION")))?;
    let signo = parse_signal(sig)
        .ok_or_else(|| usage_error(format!("--on {spec:?}: unknown signal {sig:?}")))?;
    let bad = || {
        usage_error(format!(
            "--on {spec:?}: bad action {action:?} (ignore, die, exit:CODE, exit-after:MS:CODE)"
        ))
    };
    let parts: Vec<&str> = action.split(':').collect();
    let action = match parts.as_slice() {
        ["ignore"] => Action::Ignore,
        ["die"] => Action::Die,
        ["exit", code] => Action::Exit(code.parse().map_err(|_| bad())?),
        ["exit-after", ms, code] => Action::ExitAfter(
            ms.parse().map_err(|_| bad())?,
            code.parse().map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    Ok((signo, action))
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (`40`).
fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=libc::SIGRTMAX()).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok().map(|s| s as i32)
}

/// `SigBlk` and `SigIgn` of /proc/self/status, as hex masks.
fn inherited_signal_state() -> (String, String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| "?".to_string(), |v| v.trim().to_string())
    };
    (field("SigBlk:"), field("SigIgn:"))
}

fn record_start(inherited: &(String, String)) {
    let pgid = unistd::getpgrp();
    let stdin = std::io::stdin();
    let fg = unistd::isatty(&stdin).unwrap_or(false)
        && unistd::tcgetpgrp(&stdin).is_ok_and(|pg| pg == pgid);
    record(&format!(
        "start pid={} pgid={} sid={} ppid={} fg={} sigblk={} sigign={}",
        process::id(),
        pgid,
        unistd::getsid(None).map_or(-1, Pid::as_raw),
        unistd::getppid(),
        u8::from(fg),
        inherited.0,
        inherited.1
    ));
}

fn record_ids() {
    let uid = unistd::getresuid().expect("getresuid");
    let gid = unistd::getresgid().expect("getresgid");
    let groups = unistd::getgroups()
        .expect("getgroups")
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let nnp = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NoNewPrivs:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "?".to_string());
    record(&format!(
        "ids ruid={} euid={} suid={} rgid={} egid={} sgid={} groups={groups} nnp={nnp}",
        uid.real, uid.effective, uid.saved, gid.real, gid.effective, gid.saved
    ));
}

/// Forks, runs `child` in the child (which then exits 0), and gives the child's pid.
/// Only called while single-threaded.
fn fork_with(child: impl FnOnce()) -> Pid {
    // SAFETY: the process is single-threaded at every call site (no thread has been
    // spawned yet), so the child may run ordinary code.
    match unsafe { unistd::fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            child();
            child_exit(0)
        }
    }
}

/// Ends a forked helper without running atexit handlers or flushing the parent's buffers.
fn child_exit(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it ends this (forked) process at once.
    unsafe { libc::_exit(code) }
}

/// Gives a forked helper default signal handling back.
fn unblock_all() {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn sleep_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// N times: a child forks a grandchild and exits; the grandchild exits at once and is left
/// as an orphan zombie for the reaper.
fn make_orphans(n: u32) {
    for _ in 0..n {
        let child = fork_with(|| {
            fork_with(|| child_exit(0));
            child_exit(0)
        });
        let _ = waitpid(child, None);
    }
    record(&format!("orphans n={n}"));
}

/// Double fork: the grandchild starts its own session and sleeps; the middle child passes
/// its pid up a pipe and exits, so the grandchild is reparented to the reaper. The app
/// records `daemon` only after it has reaped the middle child, so a test that sees the event
/// sees no zombie of the app's own making.
fn make_daemon(ignore_term: bool) {
    let (read_end, write_end) = unistd::pipe().expect("pipe");
    // The forked middle child writes through the raw fd: the closure must not own the pipe's
    // ends, or the parent would close them when it drops the closure.
    let write_fd = write_end.as_raw_fd();
    let middle = fork_with(|| {
        let daemon = fork_with(move || {
            let _ = unistd::setsid();
            if ignore_term {
                // SAFETY: no handler is installed, only SIG_IGN; we are single-threaded.
                let _ = unsafe {
                    nix::sys::signal::signal(Signal::SIGTERM, nix::sys::signal::SigHandler::SigIgn)
                };
            }
            unblock_all();
            sleep_forever()
        });
        let pid = daemon.as_raw().to_le_bytes();
        // SAFETY: write_fd is the pipe's write end, open in this forked child.
        let _ = unsafe { libc::write(write_fd, pid.as_ptr().cast(), pid.len()) };
        child_exit(0)
    });
    drop(write_end);
    let mut pid = [0u8; 4];
    File::from(read_end)
        .read_exact(&mut pid)
        .expect("the middle child passes the daemon's pid before it exits");
    let _ = waitpid(middle, None);
    record(&format!("daemon pid={}", i32::from_le_bytes(pid)));
}

/// N direct children that sleep until a signal kills them.
fn make_children(n: u32) {
    let pids: Vec<String> = (0..n)
        .map(|_| {
            fork_with(|| {
                unblock_all();
                sleep_forever()
            })
            .to_string()
        })
        .collect();
    record(&format!("children pids={}", pids.join(",")));
}

/// Collects exited direct children (from `--children`) so they do not linger as zombies.
fn reap_children() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        match status {
            WaitStatus::Exited(pid, code) => record(&format!("reaped pid={pid} code={code}")),
            WaitStatus::Signaled(pid, sig, _) => {
                record(&format!("reaped pid={pid} sig={}", sig_name(sig as i32)))
            }
            WaitStatus::StillAlive => break,
            _ => {}
        }
    }
}

/// Records `exit code=N` and exits; the first caller wins.
fn exit_with(code: i32) -> ! {
    let _ending = ENDING.lock();
    record(&format!("exit code={code}"));
    process::exit(code)
}

fn exit_later(ms: u64, code: i32) {
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(ms));
        exit_with(code)
    });
}

/// Records `die sig=NAME`, then dies by that signal so the parent sees a signal death.
fn die(signo: i32) -> ! {
    let _ending = ENDING.lock();
    record(&format!("die sig={}", sig_name(signo)));
    record::raise_default(signo);
    // Only reached for signals whose default action is not to terminate (CHLD, WINCH, ...).
    process::exit(128 + signo)
}

/// The `--listen` HTTP server.
struct Server {
    addr: String,
    listen_after_ms: u64,
    /// The status every request gets; `--unhealthy-after` switches it to 503.
    status: Arc<AtomicU16>,
    unhealthy_after_ms: Option<u64>,
    close_after_ms: Option<u64>,
}

impl Server {
    fn run(self) {
        thread::sleep(Duration::from_millis(self.listen_after_ms));
        let listener = match TcpListener::bind(&self.addr) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("meshinit-test-app: cannot listen on {}: {e}", self.addr);
                record(&format!("listen-failed addr={}", self.addr));
                exit_with(1);
            }
        };
        let local = listener.local_addr().expect("local_addr");
        record(&format!("listening addr={local}"));
        eprintln!("meshinit-test-app: listening on {local}");

        if let Some(ms) = self.unhealthy_after_ms {
            let status = self.status.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(ms));
                status.store(503, Ordering::SeqCst);
                record("unhealthy status=503");
            });
        }
        let closing = Arc::new(AtomicBool::new(false));
        if let Some(ms) = self.close_after_ms {
            let closing = closing.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(ms));
                closing.store(true, Ordering::SeqCst);
                // Wake the blocking accept so the server thread sees the flag.
                let _ = TcpStream::connect(wake_addr(local));
            });
        }

        for stream in listener.incoming() {
            if closing.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = stream {
                let status = self.status.load(Ordering::SeqCst);
                thread::spawn(move || answer(stream, status));
            }
        }
        drop(listener);
        record(&format!("closed addr={local}"));
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address means any).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if addr.ip().is_unspecified() {
        target.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    target
}

/// Reads the request head and answers `ok\n` with `status`.
fn answer(mut stream: TcpStream, status: u16) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let head = read_head(&mut stream);
    if head.is_empty() {
        return; // a bare TCP connect (port check): no request to answer or record
    }
    let path = head.split_whitespace().nth(1).unwrap_or("-").to_string();
    let response =
        format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
    let _ = stream.write_all(response.as_bytes());
    record(&format!("request path={path} status={status}"));
}

/// Reads until the blank line that ends an HTTP request head (or EOF, or 16 KiB).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
