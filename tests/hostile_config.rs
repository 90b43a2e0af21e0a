//! Hostile configuration, tested on the real binary (issue 20, items 6-9 and 13-16): the
//! files meshinit reads or replaces, what `check` must refuse because the run would, and the
//! messages a user sees. The typing itself is tested in `src/config/tests.rs`; these check
//! what only the binary shows: the exit code, the message, that nothing hangs, and what is
//! left on disk.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

const T: Duration = Duration::from_secs(15);

/// `meshinit check ARGS -- /bin/true`: its exit code and output.
fn check(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(meshinit_bin());
    cmd.arg("check").args(args).args(["--", "/bin/true"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::start(cmd);
    let code = p.wait_exit(T).code();
    (code, p.output())
}

fn mkfifo(path: &std::path::Path) {
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
}

/// A FIFO, a character device or a symbolic link as `--state-file` is a configuration error
/// (64) in `check` and in a run, which starts nothing: a run used to block reading the FIFO,
/// read `/dev/zero` without end, and replace the device with a regular file at exit.
#[test]
fn a_state_file_that_is_not_a_regular_file_is_refused_by_check_and_run() {
    let dir = temp_dir("state-kinds");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let link = dir.join("link");
    std::os::unix::fs::symlink(dir.join("target"), &link).unwrap();
    for (path, kind) in [
        (
            fifo.to_str().unwrap(),
            "is a FIFO (named pipe), not a regular file",
        ),
        ("/dev/null", "is a character device, not a regular file"),
        (link.to_str().unwrap(), "is a symbolic link"),
    ] {
        let (code, out) = check(&["--state-file", path], &[]);
        assert_eq!(code, Some(64), "{path}: {out}");
        assert!(
            out.contains(&format!("'{path}' {kind}")) && out.contains("flag --state-file"),
            "{path}: {out}"
        );
    }
    // A run refuses the FIFO before starting the app, instead of blocking on it.
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--state-file", fifo.to_str().unwrap(), "--"])
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(64), "{}", p.output());
    assert!(rec.find("start").is_none(), "{}", rec.dump());
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

/// Something other than a regular file put at the state file's path while meshinit runs is
/// left as it is at exit, and the exit says why no record was kept.
#[test]
fn a_fifo_put_at_the_state_file_while_running_is_not_replaced() {
    let dir = temp_dir("state-swap");
    let state = dir.join("last-shutdown");
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.args([
        "--log-level",
        "info",
        "--state-file",
        state.to_str().unwrap(),
    ])
    .arg("--")
    .arg(test_app_bin())
    .args(["--record", rec.path_str()]);
    let mut p = Proc::start(cmd);
    rec.wait_for("start", T);
    mkfifo(&state);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    assert!(
        std::fs::symlink_metadata(&state)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced:\n{}",
        p.output()
    );
    assert!(
        p.output()
            .contains("not a regular file; it is left as it is"),
        "{}",
        p.output()
    );
    // No temporary file is left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A relative `--state-file` is resolved against the directory meshinit was started in,
/// once: meshinit moves to `/` after starting the app, and the record used to land there.
#[test]
fn a_relative_state_file_is_kept_in_the_start_directory() {
    let dir = temp_dir("state-relative");
    let name = format!("meshinit-relative-state-{}", std::process::id());
    let rec = Record::new(&dir);
    let mut cmd = Command::new(meshinit_bin());
    cmd.current_dir(dir.path())
        .args(["--state-file", &name, "--"])
        .arg(test_app_bin())
        .args(["--record", rec.path_str()]);
    let mut p = Proc::start(cmd);
    rec.wait_for("start", T);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    let in_root = std::path::Path::new("/").join(&name);
    let landed_in_root = in_root.exists();
    let _ = std::fs::remove_file(&in_root);
    assert!(!landed_in_root, "the record was written to {in_root:?}");
    let text = std::fs::read_to_string(dir.join(&name))
        .unwrap_or_else(|e| panic!("no record in the start directory ({e}):\n{}", p.output()));
    assert!(text.contains("total_seconds"), "{text}");
}

/// `--config` and `--dataplane-file` must be regular files of at most 1 MiB: a FIFO used to
/// block meshinit forever, `/dev/zero` to grow it by gigabytes.
#[test]
fn config_and_dataplane_files_must_be_regular_files_of_bounded_size() {
    let dir = temp_dir("config-kinds");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let big = dir.join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let fifo = fifo.to_str().unwrap();
    let big = big.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--config", fifo],
            format!("'{fifo}' is a FIFO (named pipe), not a regular file"),
        ),
        (
            vec!["--kuma-dp", "/bin/true", "--dataplane-file", fifo],
            format!("'{fifo}' is a FIFO (named pipe), not a regular file"),
        ),
        (
            vec!["--config", "/dev/zero"],
            "'/dev/zero' is a character device, not a regular file".to_string(),
        ),
        (
            vec!["--kuma-dp", "/bin/true", "--dataplane-file", "/dev/zero"],
            "'/dev/zero' is a character device, not a regular file".to_string(),
        ),
        (
            vec!["--config", big],
            format!("'{big}' is larger than 1 MiB"),
        ),
    ] {
        let (code, out) = check(&args, &[]);
        assert_eq!(code, Some(64), "{args:?}: {out}");
        assert!(out.contains(&needle), "{args:?}: {out}");
    }
}

/// What would fail at run time is refused by `check`, each with the place it comes from: a
/// NUL byte in a YAML string (the app would not start, an exec probe would fail forever),
/// uid 4294967295 (-1 to setuid), and an argument list over the kernel's limit (E2BIG).
#[test]
fn check_refuses_what_run_refuses() {
    let dir = temp_dir("check-refuses");
    let file = dir.join("meshinit.yaml");
    std::fs::write(
        &file,
        "app:\n  command: [/bin/echo, \"a\\0b\"]\nprobes:\n  checks:\n  - exec: \"true\\0\"\nstatus:\n  state-file: \"/tmp/x\\0y\"\n",
    )
    .unwrap();
    let config = format!("--config={}", file.display());
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["check", &config]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(64), "{}", p.output());
    for (name, line) in [
        ("app.command[1] \"a\\0b\"", 2),
        ("probes.checks[0].exec \"true\\0\"", 5),
        ("status.state-file \"/tmp/x\\0y\"", 7),
    ] {
        assert!(
            p.lines().iter().any(|l| l.contains(name)
                && l.contains("contains a NUL byte")
                && l.contains(&format!("meshinit.yaml:{line}"))),
            "{name}: {}",
            p.output()
        );
    }

    let (code, out) = check(&["--app-user", "4294967295"], &[]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("'4294967295' is not a valid user id") && out.contains("flag --app-user"),
        "{out}"
    );

    // 70 aliases of a 100 KB argument: 7 MB, over the kernel's 6 MiB cap whatever the stack
    // limit (2 MiB with the usual 8 MiB stack), from a file well under the 1 MiB bound.
    let long = dir.join("long.yaml");
    std::fs::write(
        &long,
        format!(
            "app:\n  command: [/bin/true, &a {}, {}]\n",
            "x".repeat(100_000),
            vec!["*a"; 70].join(", ")
        ),
    )
    .unwrap();
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["check", &format!("--config={}", long.display())]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(64), "{}", p.output());
    assert!(
        p.output().contains("over the kernel's limit of") && p.output().contains("long.yaml:2"),
        "{}",
        p.output()
    );
}

/// An empty command is "command not found", 127, as in a shell: it used to be found on PATH
/// as a directory (`/usr/local/bin/`) and exit 126.
#[test]
fn an_empty_command_is_not_found() {
    for mode in [None, Some("check")] {
        let mut cmd = Command::new(meshinit_bin());
        cmd.args(mode).args(["--", ""]);
        let mut p = Proc::start(cmd);
        assert_eq!(p.wait_exit(T).code(), Some(127), "{mode:?}: {}", p.output());
        assert!(
            p.output().contains("command not found") && !p.output().contains("found on PATH as"),
            "{mode:?}: {}",
            p.output()
        );
    }
}

/// A misspelt `MESHINIT_*` variable is named in a warning with the option it resembles; the
/// systemd unit's own `MESHINIT_ARGS` is not.
#[test]
fn a_misspelt_env_var_is_named_with_the_closest_option() {
    let (code, out) = check(
        &[],
        &[
            ("MESHINIT_PROBE_HTPP", "http://127.0.0.1:8080/"),
            ("MESHINIT_ARGS", "--dataplane-var a=b"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "env MESHINIT_PROBE_HTPP is not a meshinit option and is ignored; did you mean MESHINIT_PROBE_HTTP?"
        ),
        "{out}"
    );
    assert!(!out.contains("MESHINIT_ARGS is not"), "{out}");
}

/// Values a run could not honour are refused with meshinit's words: a count too large says
/// so, conflicting exit-code maps and a stop signal that cannot end the app are refused.
#[test]
fn too_large_numbers_conflicting_maps_and_useless_stop_signals_are_refused() {
    for (args, needle) in [
        (
            vec!["--proxy-max-restarts", "4294967296"],
            "'4294967296' is too large: the largest is 4294967295",
        ),
        (
            vec!["--exit-code-map", "143:0", "--exit-code-map", "143:1"],
            "exit code 143 is mapped twice, to 0 ('143:0') and to 1 ('143:1')",
        ),
        (
            vec!["--app-stop-signal", "CHLD"],
            "'CHLD' (SIGCHLD) is ignored by a process that does not handle it",
        ),
        (
            vec!["--app-stop-signal", "CONT"],
            "'CONT' (SIGCONT) is ignored by a process that does not handle it",
        ),
    ] {
        let (code, out) = check(&args, &[]);
        assert_eq!(code, Some(64), "{args:?}: {out}");
        assert!(out.contains(needle), "{args:?}: {out}");
    }
}

/// Log lines say values as a user writes them, not in Rust's Debug form: the status address
/// that cannot be bound was logged as `addr=Some(127.0.0.1:PORT)`, the app's command as
/// `command=["/bin/sh", "-c", ...]`.
#[test]
fn log_lines_do_not_show_rusts_debug_form() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--status-listen", &addr, "--", "/bin/true"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(71), "{}", p.output());
    let line = p.wait_for_line("cannot listen for the status endpoint", T);
    assert!(
        line.contains(&format!("addr={addr}")) && !line.contains("Some("),
        "{line}"
    );

    let mut cmd = Command::new(meshinit_bin());
    cmd.args(["--log-level", "info", "--", "/bin/sh", "-c", "exit 0"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    let line = p.wait_for_line("app started", T);
    assert!(line.contains("command=/bin/sh -c 'exit 0'"), "{line}");
}
