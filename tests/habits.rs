//! What a tini or dumb-init user expects of an init, tried on the real binary: the stop
//! signal that reaches the app, ignored signals and the signal mask, job control on a
//! terminal, a quiet plain init, the working directory, a shell's exit codes for commands
//! that cannot run, and inherited descriptors (socket activation).

mod common;
mod scenario;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::libc;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use scenario::*;

const T: Duration = Duration::from_secs(15);

/// `SIGPIPE`'s bit: Rust programs (the test app, the fake kuma-dp) ignore it themselves before
/// `main`, so it says nothing about what they inherited.
const SIGPIPE_BIT: u64 = 1 << (libc::SIGPIPE - 1);
/// Signals 32 and 33 belong to the C library; the test harness may leave them ignored.
const LIBC_BITS: u64 = 0x1_8000_0000;

fn bit(sig: Signal) -> u64 {
    1 << (sig as i32 - 1)
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim(), 16).unwrap_or_else(|e| panic!("{s:?} is not hex: {e}"))
}

/// meshinit's `-- app` command with the test app recording to `rec`.
fn meshinit(args: &[&str], rec: &Record, app: &[&str]) -> Command {
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(args)
        .arg("--")
        .arg(test_app_bin())
        .arg("--record")
        .arg(rec.path_str())
        .args(app);
    cmd
}

/// Starts `cmd` as `nohup` and a parent that blocks SIGUSR2 would: SIGHUP ignored, SIGUSR2
/// in the signal mask; and SIGPIPE ignored, which meshinit must tell apart from the SIGPIPE
/// Rust's runtime ignores in meshinit itself before `main`.
fn as_nohup_with_usr2_blocked(cmd: &mut Command) {
    // SAFETY: signal(2) and sigprocmask(2) are async-signal-safe; this runs in the forked
    // child before exec and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            let mut usr2 = SigSet::empty();
            usr2.add(Signal::SIGUSR2);
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&usr2), None)?;
            Ok(())
        });
    }
}

/// The pid in a `... pid=N ...` log line.
fn pid_in(line: &str) -> i32 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid= in {line:?}"))
}

// ---- 1. the app gets the signal that stopped meshinit ----

#[test]
fn ctrl_c_reaches_the_app_as_int_after_the_ordered_stop() {
    let dir = temp_dir("habits-int");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(&["--app-grace-delay", "100ms"], &rec, &[]));
    rec.wait_for("start", T);
    p.signal(Signal::SIGINT);
    // The test app dies by the signal it gets: INT, as under tini and dumb-init.
    assert_eq!(p.wait_exit(T).code(), Some(130), "{}", p.output());
    assert!(
        rec.find("die").is_some_and(|e| e.rest.contains("INT")),
        "{}",
        rec.dump()
    );

    // --app-stop-signal given explicitly is what the app wants, whatever stopped meshinit.
    let dir = temp_dir("habits-int-explicit");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(&["--app-stop-signal", "QUIT"], &rec, &[]));
    rec.wait_for("start", T);
    p.signal(Signal::SIGINT);
    assert_eq!(p.wait_exit(T).code(), Some(131), "{}", p.output());
}

// ---- 7. the log says when a second stop signal cut the stop short ----

/// With a proxy (the ordered stop) a second stop signal cuts the stop short, and the log
/// says why the app was SIGKILLed. In plain init mode there is no such escalation (below).
#[test]
fn a_kill_after_a_second_stop_signal_says_so() {
    let s = Scenario::new("habits-cut-short")
        .listening_app()
        .opt(&["--app-stop-timeout", "60s", "--drain-until-idle=false"])
        .app(&["--on", "TERM=ignore"]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    p.signal(Signal::SIGTERM);
    s.app
        .wait_for_match("signal", |e| e.rest.contains("TERM"), T);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(137), "{}", p.output());
    let out = p.output();
    assert!(
        out.contains("second stop signal, which cut the stop short; sending SIGKILL"),
        "{out}"
    );
    assert!(
        !out.contains("did not stop within --app-stop-timeout"),
        "{out}"
    );
}

// ---- 7b. plain init mode keeps tini's and dumb-init's stop semantics ----

/// Issue 20, item 18, after dumb-init's proxies_signals_test.py: in plain init mode every
/// INT and TERM reaches the app and the app decides. An app that handles Ctrl-C and carries
/// on (a REPL) used to be SIGKILLed one second after a second Ctrl-C (137); here it gets
/// INT twice, then TERM, on which it finishes its work for 2.5 s and exits 0 on its own.
#[test]
fn plain_init_passes_every_ctrl_c_on_and_a_second_one_does_not_kill_the_app() {
    let dir = temp_dir("habits-plain-int");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(
        &[],
        &rec,
        &["--on", "INT=ignore", "--on", "TERM=exit-after:2500:0"],
    ));
    rec.wait_for("start", T);
    let count = |name: &str| {
        rec.find_all("signal")
            .iter()
            .filter(|e| e.rest == name)
            .count()
    };
    for (sig, name, n) in [
        (Signal::SIGINT, "INT", 1),
        (Signal::SIGINT, "INT", 2),
        (Signal::SIGTERM, "TERM", 1),
        (Signal::SIGINT, "INT", 3),
    ] {
        p.signal(sig);
        poll(&format!("{name} #{n} at the app"), T, || {
            (count(name) >= n).then_some(())
        });
    }
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    assert_eq!(rec.find("exit").map(|e| e.rest), Some("code=0".into()));
}

/// Issue 20, item 18: without `--app-stop-timeout` a plain init waits for its app after a
/// stop signal, however long it takes, as tini and dumb-init do (the platform's stop
/// timeout, `docker stop -t`, TimeoutStopSec, kill_timeout, does the killing). It used to
/// SIGKILL the app after the default 10 s (137); this app takes 12 s and exits 3.
#[test]
fn plain_init_waits_for_its_app_past_the_default_stop_timeout() {
    let dir = temp_dir("habits-plain-wait");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(&[], &rec, &["--on", "TERM=exit-after:12000:3"]));
    rec.wait_for("start", T);
    p.signal(Signal::SIGTERM);
    assert_eq!(
        p.wait_exit(Duration::from_secs(40)).code(),
        Some(3),
        "{}",
        p.output()
    );
}

// ---- 2. ignored stays ignored, the mask is the inherited one ----

#[test]
fn the_app_starts_with_the_ignored_signals_and_mask_meshinit_inherited() {
    let (blk, ign, out) = app_signal_masks(as_nohup_with_usr2_blocked);
    // Exactly what the parent left: meshinit's own blocking never leaks.
    assert_eq!(blk, bit(Signal::SIGUSR2), "{out}");
    assert_eq!(
        ign & !LIBC_BITS,
        bit(Signal::SIGHUP) | bit(Signal::SIGPIPE),
        "{out}"
    );
}

#[test]
fn under_nohup_a_hangup_kills_neither_meshinit_nor_the_app() {
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--log-level", "info", "--", "sleep", "60"]);
    as_nohup_with_usr2_blocked(&mut cmd);
    let mut p = Proc::start(cmd);
    let app = pid_in(&p.wait_for_line("app started", T));
    // The terminal hangs up: both get SIGHUP. A fatal signal is settled when kill(2)
    // returns, so a SIGHUP that killed `sleep` would show as 129 below.
    kill(Pid::from_raw(app), Signal::SIGHUP).unwrap();
    p.signal(Signal::SIGHUP);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
}

#[test]
fn kuma_dp_and_exec_probes_start_with_the_inherited_signal_state() {
    let s = Scenario::new("habits-dp-signals").listening_app();
    // The probe runs directly, without a shell (dash clears the mask it inherits): the test
    // app records what it inherited and exits 0.
    let probe = Record::new(&s.dir);
    let config = s.dir.join("meshinit.yaml");
    std::fs::write(
        &config,
        format!(
            "probes:\n  checks:\n  - exec: [{:?}, --record, {:?}, --exit-code, \"0\"]\n",
            path_str(&test_app_bin()),
            probe.path_str()
        ),
    )
    .unwrap();
    let s = s.opt(&["--config", &path_str(&config)]);
    let mut cmd = s.command();
    as_nohup_with_usr2_blocked(&mut cmd);
    let mut p = Proc::start(cmd);
    p.wait_for_line("service running and ready", T);
    for (who, rec) in [("kuma-dp", &s.dp), ("app", &s.app), ("probe", &probe)] {
        let start = rec.wait_for("start", T);
        assert_eq!(
            hex(start.field("sigblk")),
            bit(Signal::SIGUSR2),
            "{who}: {}",
            rec.dump()
        );
        assert_eq!(
            hex(start.field("sigign")) & !(SIGPIPE_BIT | LIBC_BITS),
            bit(Signal::SIGHUP),
            "{who}: {}",
            rec.dump()
        );
    }
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
}

// ---- 4. quiet where tini is quiet ----

#[test]
fn a_plain_init_prints_nothing_of_its_own_on_a_normal_run() {
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--", "sh", "-c", "echo the tool speaks; exit 3"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(3), "{}", p.output());
    assert_eq!(p.lines(), vec!["the tool speaks".to_string()]);
    // --log-level info brings the lines back.
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--log-level", "info", "--", "sh", "-c", "exit 0"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    assert!(p.output().contains("app started"), "{}", p.output());
    // `check` says which level a run would use.
    let out = Command::new(meshinit_bin())
        .args(["check", "--", "/bin/true"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.lines()
            .any(|l| l.contains("log.level") && l.contains("warn")),
        "{plan}"
    );
}

#[test]
fn with_kuma_dp_the_phase_lines_stay_at_the_default_level() {
    let s = Scenario::new("habits-phases").listening_app();
    let mut p = s.start();
    p.wait_for_line("phase running", T);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    assert!(p.output().contains("phase draining"), "{}", p.output());
}

// ---- 5. meshinit leaves its start directory; the app and kuma-dp start in it ----

fn cwd_of(pid: i32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|e| panic!("cwd of {pid}: {e}"))
}

#[test]
fn meshinit_moves_to_root_once_the_app_runs_where_it_was_asked_to() {
    let s = Scenario::new("habits-cwd").listening_app();
    let start_dir = s.dir.join("started-here");
    let app_dir = s.dir.join("app-here");
    std::fs::create_dir_all(&start_dir).unwrap();
    std::fs::create_dir_all(&app_dir).unwrap();
    let s = s.opt(&["--app-workdir", &path_str(&app_dir)]);
    let mut cmd = s.command();
    cmd.current_dir(&start_dir);
    let mut p = Proc::start(cmd);
    p.wait_for_line("service running and ready", T);
    let app: i32 = s.app.wait_for("start", T).field("pid").parse().unwrap();
    let dp: i32 = s.dp.wait_for("start", T).field("pid").parse().unwrap();
    assert_eq!(cwd_of(p.pid()), std::path::Path::new("/"));
    assert_eq!(cwd_of(app), app_dir);
    // kuma-dp (and exec probes) start where meshinit was started, as before: relative paths
    // in their arguments keep their meaning.
    assert_eq!(cwd_of(dp), start_dir);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
}

// ---- 3. Ctrl-Z on a terminal: the app and meshinit stop, `fg` resumes both ----

/// An interactive bash on a pseudo-terminal of its own (it is the session leader and the
/// terminal is its controlling terminal), with everything it printed collected. Dropping it
/// SIGKILLs bash and every process below it.
struct Terminal {
    master: std::fs::File,
    bash: std::process::Child,
    screen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Terminal {
    fn open() -> Terminal {
        use std::io::Read;
        known_signal_state();
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = Command::new("bash");
        cmd.args(["--norc", "--noprofile", "-i"])
            .env("PS1", "PROMPT$ ")
            .env("TERM", "dumb")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: setsid(2) and ioctl(2) are async-signal-safe; this runs in the forked child
        // before exec and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let bash = cmd.spawn().expect("start an interactive bash");
        let master = std::fs::File::from(pty.master);
        let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut reader, out) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once bash and everything on the terminal have gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                eprint!("{text}");
                out.lock().unwrap().push_str(&text);
            }
        });
        let t = Terminal {
            master,
            bash,
            screen,
        };
        t.wait_for("PROMPT$ ", 0);
        t
    }

    /// Types `keys` as a user would.
    fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until the screen, from byte `from` on, shows `text`; returns where it ends.
    fn wait_for(&self, text: &str, from: usize) -> usize {
        let screen = || self.screen.lock().unwrap().clone();
        poll(&format!("{text:?} on the terminal"), T, || {
            let s = screen();
            s.get(from..)
                .and_then(|rest| rest.find(text))
                .map(|i| from + i + text.len())
        })
    }

    fn len(&self) -> usize {
        self.screen.lock().unwrap().len()
    }

    /// The process group in the foreground of the terminal.
    fn foreground(&self) -> i32 {
        nix::unistd::tcgetpgrp(&self.master).map_or(-1, Pid::as_raw)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        for pid in descendants(self.bash.id() as i32) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.bash.kill();
        let _ = self.bash.wait();
    }
}

/// The state letter of `pid` (`T` when stopped).
fn state_of(pid: i32) -> char {
    stat(pid).map_or('?', |s| s.state)
}

/// The pid of the process called `name` below `root`.
fn find_below(root: i32, name: &str) -> i32 {
    poll(&format!("{name} below {root}"), T, || {
        descendants(root).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
    })
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it_in_an_interactive_shell() {
    if !std::path::Path::new("/bin/bash").exists()
        && !std::path::Path::new("/usr/bin/bash").exists()
    {
        skip_or_fail("bash is not installed");
        return;
    }
    let mut term = Terminal::open();
    let bash = term.bash.id() as i32;
    term.type_keys(&format!("{} -- sleep 60\n", meshinit_bin().display()));
    let meshinit = find_below(bash, "meshinit");
    let sleep = find_below(meshinit, "sleep");
    // The app owns the terminal, so Ctrl-Z reaches it.
    poll("the app in the foreground", T, || {
        (term.foreground() == sleep).then_some(())
    });

    let mark = term.len();
    term.type_keys("\x1a");
    // The prompt comes back with the job reported stopped: before, the terminal hung here.
    let mark = term.wait_for("Stopped", mark);
    term.wait_for("PROMPT$ ", mark);
    assert_eq!(state_of(sleep), 'T', "the app is stopped");
    assert_eq!(state_of(meshinit), 'T', "meshinit is stopped");
    assert_eq!(term.foreground(), bash, "the shell has the terminal back");

    let mark = term.len();
    term.type_keys("fg\n");
    term.wait_for("sleep 60", mark);
    poll("both resumed, the app in the foreground", T, || {
        (state_of(sleep) != 'T' && state_of(meshinit) != 'T' && term.foreground() == sleep)
            .then_some(())
    });
    // Ctrl-C reaches the resumed app: it dies of SIGINT and meshinit exits 130.
    let mark = term.len();
    term.type_keys("\x03");
    let mark = term.wait_for("PROMPT$ ", mark);
    term.type_keys("echo rc=$?\n");
    term.wait_for("rc=130", mark);
}

#[test]
fn job_control_signals_sent_to_meshinit_reach_the_app() {
    let dir = temp_dir("habits-jobsig");
    let rec = Record::new(&dir);
    let mut p = Proc::start(meshinit(&[], &rec, &[]));
    rec.wait_for("start", T);
    for (sig, name) in [
        (Signal::SIGTSTP, "TSTP"),
        (Signal::SIGTTIN, "TTIN"),
        (Signal::SIGTTOU, "TTOU"),
    ] {
        p.signal(sig);
        rec.wait_for_match("signal", |e| e.rest.starts_with(name), T);
        // Having passed it on, meshinit stops itself, as dumb-init does (issue 20,
        // item 19); SIGCONT resumes it and reaches the app too.
        poll(&format!("meshinit stopped after {name}"), T, || {
            (state_of(p.pid()) == 'T').then_some(())
        });
        let conts = rec
            .find_all("signal")
            .iter()
            .filter(|e| e.rest == "CONT")
            .count();
        p.signal(Signal::SIGCONT);
        poll("meshinit resumed, the app given CONT", T, || {
            let now = rec
                .find_all("signal")
                .iter()
                .filter(|e| e.rest == "CONT")
                .count();
            (state_of(p.pid()) != 'T' && now > conts).then_some(())
        });
    }
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
}

/// Issue 20, item 19: without a terminal meshinit stopped itself after a job-control
/// signal only when it ran in the foreground of one, so a script that suspends a
/// background job (`kill -TSTP %1`) never saw the job stopped. As under dumb-init (its
/// shell_background_test.py), the job is now reported stopped, its app with it, and
/// `kill -CONT %1` resumes both.
#[test]
fn a_script_suspending_meshinit_as_a_background_job_sees_it_stopped_and_resumes_it() {
    let script = r#"
set -m
"$MESHINIT" -- sleep 1000 &
job=$!
until app=$(pgrep -P "$job" -x sleep); do sleep 0.01; done
kill -TSTP %1
until jobs -l %1 | grep -q Stopped; do sleep 0.01; done
echo "job stopped; app state $(cut -d' ' -f3 /proc/$app/stat)"
kill -CONT %1
until jobs -l %1 | grep -q Running && [ "$(cut -d' ' -f3 /proc/$app/stat)" != T ]; do sleep 0.01; done
echo "job running; app state $(cut -d' ' -f3 /proc/$app/stat)"
kill -TERM %1
wait "$job"
echo "job exit $?"
"#;
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]).env("MESHINIT", meshinit_bin());
    let mut p = Proc::start(cmd);
    p.wait_for_line("job stopped; app state T", T);
    p.wait_for_line("job running; app state S", T);
    p.wait_for_line("job exit 143", T);
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
}

// ---- 15. inherited descriptors and socket activation reach the app only ----

/// Where each open descriptor of `pid` points (`socket:[inode]`, a path, ...).
fn fd_targets(pid: i32) -> Vec<(i32, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?.display().to_string()))
        })
        .collect()
}

/// The `LISTEN_*` variables `pid` was started with.
fn listen_env(pid: i32) -> Vec<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).to_string())
        .filter(|v| v.starts_with("LISTEN_"))
        .collect()
}

#[test]
fn socket_activation_and_inherited_descriptors_reach_only_the_app() {
    use std::os::fd::AsRawFd;
    let s = Scenario::new("habits-fds").listening_app();
    // What systemd's socket unit would pass: a listener on fd 3; and one more descriptor a
    // script opened for the app (`4>file`).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let socket = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd()))
        .unwrap()
        .display()
        .to_string();
    let marker = s.dir.join("for-the-app-only");
    let file = std::fs::File::create(&marker).unwrap();
    let probe_out = s.dir.join("probe-fds");
    let probe = format!(
        "{{ ls -l /proc/$$/fd; env; }} > {0}.tmp; mv {0}.tmp {0}",
        probe_out.display()
    );
    let s = s.opt(&["--probe-exec", &probe]);
    let inner = s.command();
    // LISTEN_PID names meshinit: `exec` keeps the shell's pid.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec \"$0\" \"$@\"")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let (sock_fd, file_fd) = (listener.as_raw_fd(), file.as_raw_fd());
    // SAFETY: dup2(2) and close(2) are async-signal-safe; this runs in the forked child
    // before exec. The copies go through spare numbers first, since the originals may
    // themselves be 3 or 4 (dup2 onto the same number would keep close-on-exec); dup2
    // clears close-on-exec on the copies.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(sock_fd, 900) < 0
                || libc::dup2(file_fd, 901) < 0
                || libc::dup2(900, 3) < 0
                || libc::dup2(901, 4) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(900);
            libc::close(901);
            Ok(())
        });
    }
    let mut p = Proc::start(cmd);
    p.wait_for_line("service running and ready", T);
    let app: i32 = s.app.wait_for("start", T).field("pid").parse().unwrap();
    let dp: i32 = s.dp.wait_for("start", T).field("pid").parse().unwrap();

    let app_fds = fd_targets(app);
    assert!(
        app_fds.contains(&(3, socket.clone())),
        "app fds: {app_fds:?}"
    );
    assert!(
        app_fds.contains(&(4, marker.display().to_string())),
        "app fds: {app_fds:?}"
    );
    let mut env = listen_env(app);
    env.sort();
    assert_eq!(
        env,
        vec![
            "LISTEN_FDNAMES=web".to_string(),
            "LISTEN_FDS=1".to_string(),
            format!("LISTEN_PID={app}"),
        ]
    );

    let dp_fds = fd_targets(dp);
    assert!(
        !dp_fds
            .iter()
            .any(|(_, t)| *t == socket || *t == marker.display().to_string()),
        "kuma-dp fds: {dp_fds:?}"
    );
    assert_eq!(listen_env(dp), Vec::<String>::new());
    let probe_seen = std::fs::read_to_string(&probe_out).expect("the probe ran");
    assert!(
        !probe_seen.contains(&socket) && !probe_seen.contains("for-the-app-only"),
        "{probe_seen}"
    );
    assert!(!probe_seen.contains("LISTEN_"), "{probe_seen}");
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
}
