//! Harness for meshinit's integration tests (`mod common;` from `tests/*.rs`).
//!
//! - [`Proc`]: a spawned program in its own process group, with its output captured line by
//!   line, and killed (with everything it started) when dropped, even when a test panics.
//! - [`Record`]: the event file written by `meshinit-test-app` and `fake-kuma-dp`
//!   (`<monotonic_ns> <event> [key=value ...]` lines).
//! - Small helpers: ports, a minimal HTTP GET, CLOCK_MONOTONIC, temp dirs, FNV-1a.
//!
//! Every wait here is a bounded polling loop or a condition variable with a deadline; nothing
//! sleeps for a fixed time hoping something happened meanwhile.

// Each test crate uses a different part of the harness.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// How often polling loops look again.
const POLL: Duration = Duration::from_millis(10);

/// The one poll loop of the tests: asks `f` every 10 ms until it gives
/// `Some`; `None` once `timeout` has passed, for the caller to say why (the
/// output so far, a record). Tests wait for events this way, never for a
/// fixed time.
pub fn poll_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// [`poll_for`], panicking with what was awaited after `timeout`.
pub fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll_for(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// The supervisor under test.
///
/// Every test builds its command through here, so this is where the test process gets the
/// signal state of a shell's foreground job before it spawns anything (see
/// [`known_signal_state`]).
pub fn meshinit_bin() -> PathBuf {
    known_signal_state();
    PathBuf::from(env!("CARGO_BIN_EXE_meshinit"))
}

/// Gives this process default dispositions for every signal it inherited as ignored, and the
/// calling thread an empty signal mask, so every child starts from the state a terminal's
/// foreground job has.
///
/// Why: meshinit keeps what it inherits (an ignored SIGINT stays ignored, as under tini), so
/// the tests' expectations depend on the state the test binary itself inherited, and that
/// varies: a background job of a non-interactive shell (CI's `bash .ci/run &`, a `nohup`)
/// has INT and QUIT ignored, some launchers block signals. Tests that want another state set
/// it in their own `pre_exec`. SIGPIPE stays as Rust's runtime set it (ignored), and the
/// handlers the test harness installed (SEGV, BUS) are left alone: only SIG_IGN is reset.
pub fn known_signal_state() {
    static DISPOSITIONS: std::sync::Once = std::sync::Once::new();
    DISPOSITIONS.call_once(|| {
        for sig in 1..=31 {
            if matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE) {
                continue;
            }
            // SAFETY: sigaction with a null new action only reads the current one into
            // `old`, a zeroed sigaction the call fills; setting SIG_DFL on a signal that was
            // ignored installs no handler code.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
                {
                    libc::signal(sig, libc::SIG_DFL);
                }
            }
        }
    });
    // The mask is per thread, and each test runs on a thread of its own.
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// The signal mask (SigBlk) and ignored set (SigIgn) the app starts with under meshinit, and
/// meshinit's output: the app is `grep` (C, no runtime of its own that would change them),
/// reading its own /proc status; `setup` may change what meshinit itself inherits.
pub fn app_signal_masks(setup: impl FnOnce(&mut Command)) -> (u64, u64, String) {
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]);
    setup(&mut cmd);
    let mut p = Proc::start(cmd);
    assert_eq!(
        p.wait_exit(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        p.output()
    );
    let out = p.output();
    let mask = |name: &str| {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{out}"));
        u64::from_str_radix(line[name.len()..].trim(), 16)
            .unwrap_or_else(|e| panic!("{line:?} is not hex: {e}"))
    };
    (mask("SigBlk:"), mask("SigIgn:"), out.clone())
}

/// The scriptable application (`tests/bin/test_app.rs`).
pub fn test_app_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_meshinit-test-app"))
}

/// The stand-in for `kuma-dp run` (`tests/bin/fake_kuma_dp.rs`).
pub fn fake_kuma_dp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fake-kuma-dp"))
}

/// Captured output of a [`Proc`], shared with its reader threads.
#[derive(Default)]
struct Output {
    /// Every line of stdout and stderr, in arrival order, without the newline.
    lines: Vec<String>,
    /// How many of stdout/stderr have not reached EOF yet.
    open: usize,
}

type SharedOutput = Arc<(Mutex<Output>, Condvar)>;

/// Locks the output, ignoring poisoning: a test that panics while holding the lock must not
/// take the reader threads (and their echo of the output) down with it.
fn locked(lock: &Mutex<Output>) -> MutexGuard<'_, Output> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A spawned program in its own process group, with stdout and stderr captured.
///
/// Dropping it SIGKILLs the process group, the process and every descendant found in /proc,
/// then reaps the process, so nothing outlives a test, whether it passes or panics.
pub struct Proc {
    child: Child,
    output: SharedOutput,
}

impl Proc {
    /// Spawns `cmd` as the leader of a new process group, capturing stdout and stderr (stdin is
    /// left as the caller set it). Each line is also echoed to the test's stderr as
    /// `[pid] line`, which the test harness shows when a test fails.
    pub fn start(mut cmd: Command) -> Proc {
        cmd.process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let output: SharedOutput = Arc::new((
            Mutex::new(Output {
                lines: Vec::new(),
                open: 2,
            }),
            Condvar::new(),
        ));
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_reader(stdout, pid, output.clone());
        spawn_reader(stderr, pid, output.clone());
        Proc { child, output }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the process (not to its group).
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("kill({}, {sig}): {e}", self.pid()));
    }

    /// Waits for the first output line containing `needle` and returns it.
    /// Panics, showing all output so far, after `timeout` or when the output ends without it.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cond) = &*self.output;
        let mut out = locked(lock);
        loop {
            if let Some(line) = out.lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let now = Instant::now();
            if now >= deadline || out.open == 0 {
                let why = if out.open == 0 {
                    "output ended"
                } else {
                    "timed out"
                };
                let text = out.lines.join("\n");
                drop(out);
                panic!(
                    "{why} waiting {timeout:?} for a line containing {needle:?} from pid {}; output:\n{text}",
                    self.pid()
                );
            }
            out = cond
                .wait_timeout(out, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// All output lines so far (stdout and stderr interleaved in arrival order).
    pub fn lines(&self) -> Vec<String> {
        locked(&self.output.0).lines.clone()
    }

    /// All output so far as one string.
    pub fn output(&self) -> String {
        self.lines().join("\n")
    }

    /// The exit status if the process has exited (it is then reaped), None while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit, polling every 10 ms; panics with its output after
    /// `timeout`. Once it has exited, waits briefly (at most 1 s) for the output to end so
    /// [`Proc::output`] is complete; a descendant still holding the pipes only cuts that short.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let Some(status) = poll_for(timeout, || self.try_status()) else {
            panic!(
                "pid {} still running after {timeout:?}; output:\n{}",
                self.pid(),
                self.output()
            );
        };
        let (lock, cond) = &*self.output;
        let out = locked(lock);
        let _ = cond.wait_timeout_while(out, Duration::from_secs(1), |o| o.open > 0);
        status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill_tree(self.pid());
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line into `output` until EOF, echoing each line to stderr.
fn spawn_reader(stream: impl Read + Send + 'static, pid: u32, output: SharedOutput) {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    eprintln!("[{pid}] {line}");
                    let (lock, cond) = &*output;
                    locked(lock).lines.push(line);
                    cond.notify_all();
                }
            }
        }
        let (lock, cond) = &*output;
        locked(lock).open -= 1;
        cond.notify_all();
    });
}

/// Every process below `root` in the process tree, zombies included. Walked
/// here from every process's parent pid rather than with meshinit's own walk:
/// the tests' view of the tree must not share the bugs of the code they test.
pub fn descendants(root: i32) -> Vec<i32> {
    let all = processes();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            all.iter()
                .filter(|(_, s)| s.ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// What the tests read of `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie), ...
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// `/proc/<pid>/stat`, or None once the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: read after the last ')'.
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        cpu_ticks: f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    })
}

/// Every process on the host with its stat.
pub fn processes() -> Vec<(i32, Stat)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// The CPU clock ticks `pid` uses over a 1.5 s window. The window is an
/// observation period, not a synchronisation: nothing is awaited in it.
pub fn idle_cpu_ticks(pid: i32) -> u64 {
    let ticks = || stat(pid).expect("the process runs").cpu_ticks;
    let before = ticks();
    std::thread::sleep(Duration::from_millis(1500));
    ticks() - before
}

/// The parent pid of `pid` (None if it is gone).
pub fn ppid_of(pid: i32) -> Option<i32> {
    stat(pid).map(|s| s.ppid)
}

/// Whether `pid` is a zombie (exited, not reaped yet).
pub fn is_zombie(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state == 'Z')
}

/// Whether `pid` has exited: gone, or a zombie waiting to be reaped.
pub fn is_dead(pid: i32) -> bool {
    stat(pid).is_none_or(|s| s.state == 'Z')
}

/// One line of a record file: `<t_ns> <name> <rest>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC time of the event in nanoseconds (comparable with [`now_ns`]).
    pub t_ns: u64,
    /// The event name, e.g. `start`, `signal`, `exit`.
    pub name: String,
    /// The `key=value` words of `rest`, in order (split at the first `=`).
    pub fields: Vec<(String, String)>,
    /// Everything after the name, e.g. `TERM n=1` or `3 --cp-address=x`.
    pub rest: String,
}

impl Event {
    /// Parses one record line; None if it is not `<number> <name> ...`.
    pub fn parse(line: &str) -> Option<Event> {
        let (t, after) = line.split_once(' ')?;
        let (name, rest) = after.split_once(' ').unwrap_or((after, ""));
        let fields = rest
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Event {
            t_ns: t.parse().ok()?,
            name: name.to_string(),
            fields,
            rest: rest.to_string(),
        })
    }

    /// The value of field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `key`; panics (showing the event) if it is missing.
    pub fn field(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("event {self:?} has no field {key:?}"))
    }
}

/// The record file of a test program (`--record PATH`, `TEST_APP_RECORD`,
/// `FAKE_KUMA_DP_RECORD`).
pub struct Record {
    /// Where the file is.
    pub path: PathBuf,
}

impl Record {
    /// A new, empty record file with a unique name in `dir`, writable by everyone so a test
    /// program running under another uid can append to it.
    pub fn new(dir: &Path) -> Record {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = dir.join(format!("record-{}-{n}.log", std::process::id()));
        fs::write(&path, "").unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod record");
        Record { path }
    }

    /// The path as a string, for command lines and env vars.
    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8 record path")
    }

    /// Every complete line of the file, parsed, in order (a half-written last line is skipped).
    pub fn events(&self) -> Vec<Event> {
        let text = fs::read_to_string(&self.path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => "",
        };
        complete.lines().filter_map(Event::parse).collect()
    }

    /// The first event called `name`.
    pub fn find(&self, name: &str) -> Option<Event> {
        self.events().into_iter().find(|e| e.name == name)
    }

    /// Every event called `name`.
    pub fn find_all(&self, name: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.name == name)
            .collect()
    }

    /// Waits (polling every 10 ms) for the first event called `name`; panics showing the
    /// whole record after `timeout`.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> Event {
        self.wait_for_match(name, |_| true, timeout)
    }

    /// Waits for the first event called `name` for which `pred` holds, e.g.
    /// `rec.wait_for_match("signal", |e| e.rest.starts_with("TERM"), t)`.
    pub fn wait_for_match(
        &self,
        name: &str,
        pred: impl Fn(&Event) -> bool,
        timeout: Duration,
    ) -> Event {
        let found = poll_for(timeout, || {
            self.events()
                .into_iter()
                .find(|e| e.name == name && pred(e))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no matching {name:?} event in {} after {timeout:?}; record:\n{}",
                self.path.display(),
                self.dump()
            )
        })
    }

    /// The raw file, for failure messages.
    pub fn dump(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_else(|e| format!("<unreadable: {e}>"))
    }
}

/// Undoes the escaping the test programs apply to recorded values (`\\`, `\n`, `\r`).
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close), and
/// that this test binary has not handed out before.
///
/// Why the memory: a scenario takes several ports (the app's, kuma-dp's readiness port, the
/// status port) before anything binds them, and the kernel may give the same free port to two
/// of those `bind(0)` calls in a row; seen in CI as an app and a fake kuma-dp fighting over
/// one port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no unused free port on 127.0.0.1 in 1000 tries");
}

/// Waits until something accepts TCP connections on `addr` (e.g. `127.0.0.1:18080`);
/// panics after `timeout`.
pub fn wait_port(addr: &str, timeout: Duration) {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("bad address {addr:?}"));
    poll(&format!("something listening on {addr}"), timeout, || {
        TcpStream::connect_timeout(&target, Duration::from_millis(100))
            .ok()
            .map(drop)
    });
}

/// A minimal HTTP/1.1 GET of `url` (`http://host:port/path`), giving (status, body).
/// None if the connection is refused or reset, or the answer is not HTTP; `timeout` bounds
/// the connect and each read and write.
pub fn http_get(url: &str, timeout: Duration) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// SIGKILLs `pid`, its process group and every descendant, for a test's
/// clean-up (the caller then waits for `pid`).
pub fn kill_tree(pid: i32) {
    // Snapshot the tree first: once the leader dies, its children are reparented away.
    let tree = descendants(pid);
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    for p in tree {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of [`Event::t_ns`]: the same
/// function the test programs stamp their records with.
#[path = "../bin/shared/record.rs"]
mod shared_record;
#[allow(unused_imports)] // Not every test crate uses the clock.
pub use shared_record::now_ns;

/// A unique directory under `std::env::temp_dir()`, removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/meshinit-<tag>-<pid>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("meshinit-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A fresh [`TempDir`] for one test; keep it alive for as long as the test uses it.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(tag)
}

/// FNV-1a, 64 bit: `fake-kuma-dp` records `token fnv=<this, as 16 hex digits>` for the token it
/// was given, so a test can check which token arrived without it appearing anywhere.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether the tests run in CI (`CI` set, and not to `false` or `0`), where every test must
/// run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// How much slower than this project's 2-core reference machine the tests
/// may find their machine: every upper bound on a latency in a functional
/// test is multiplied by it (`MESHINIT_TEST_SLACK`, default 1; 3 on a busy
/// or emulated machine). Functional tests assert order and outcome; the
/// precise latencies are scripts/bench's to measure.
pub fn slack() -> f64 {
    std::env::var("MESHINIT_TEST_SLACK")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|f| *f >= 1.0)
        .unwrap_or(1.0)
}

/// `ms` milliseconds, scaled by [`slack`]: an upper bound on a latency.
pub fn bound_ms(ms: f64) -> f64 {
    ms * slack()
}

/// The python that has the test tools (prometheus_client, python-hcl2), as
/// `scripts/install-test-tools` set it up: `MESHINIT_TEST_PYTHON`, else the
/// venv in the cache. `None`, said loudly (a failure under CI), when it
/// cannot import `module`: the tests never install anything themselves.
pub fn test_python(module: &str) -> Option<std::path::PathBuf> {
    let python = std::env::var_os("MESHINIT_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("MESHINIT_CACHE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/meshinit")
                });
            cache.join("test-venv/bin/python")
        });
    let imports = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if imports {
        return Some(python);
    }
    skip_or_fail(&format!(
        "{} cannot import {module}: run scripts/install-test-tools (scripts/test does)",
        python.display()
    ));
    None
}

/// For a test that cannot run on this machine: under CI it fails with `reason`, since a test
/// that silently passes there proves nothing; elsewhere the caller returns after this says so
/// loudly: written to stderr directly, which the test harness does not capture (it captures
/// `eprintln!`), so the line shows even though the test passes.
pub fn skip_or_fail(reason: &str) {
    assert!(!in_ci(), "cannot run under CI=true: {reason}");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (would fail under CI=true): {reason}"
    );
}
