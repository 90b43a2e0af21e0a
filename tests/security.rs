//! Security promises (issue 8), on the real binary: the dataplane token never appears in
//! anything meshinit prints, at any level and in either format; `--app-user` and
//! `--kuma-dp-user` drop every uid and gid and reset supplementary groups (read back from
//! /proc); unknown users are refused by name before anything starts; the status endpoint
//! binds loopback unless told otherwise; user values never pass through a shell.

mod common;
mod scenario;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use scenario::*;

const T: Duration = Duration::from_secs(20);

/// A token that looks like the real thing (a JWT) and can be searched for.
const SECRET: &str =
    "eyJhbGciOiJSUzI1NiJ9.eyJOYW1lIjoid2ViLTEifQ.S3CR3T-T0K3N-must-never-be-printed";

/// Every output line of `p`, searched for the secret and for its pieces (a log that
/// splits or quotes it still leaks it).
fn assert_no_secret(what: &str, output: &str) {
    for needle in [SECRET, "S3CR3T-T0K3N", "eyJOYW1lIjoid2ViLTEifQ"] {
        assert!(
            !output.contains(needle),
            "{what}: the token ({needle}) appears in meshinit's output:\n{output}"
        );
    }
}

/// A scenario whose token file holds [`SECRET`].
fn with_secret(tag: &str) -> Scenario {
    let mut s = Scenario::new(tag)
        .listening_app()
        .opt(&["--drain-until-idle=false"]);
    fs::write(&s.token_file, SECRET).unwrap();
    s.token = SECRET.into();
    s
}

#[test]
fn the_token_never_appears_in_any_output_at_trace_level() {
    for format in ["text", "json"] {
        let s = with_secret(&format!("sec-token-{format}")).opt(&[
            "--log-level",
            "trace",
            "--log-format",
            format,
            "--probe-exec",
            "true",
        ]);

        // Startup, a kuma-dp crash and restart, and the shutdown.
        let mut p = s.start();
        p.wait_for_line("kuma-dp ready", T);
        let first = s.dp.wait_for("ready", T);
        let dp: i32 = s.dp.find("start").unwrap().field("pid").parse().unwrap();
        kill(Pid::from_raw(dp), Signal::SIGKILL).unwrap();
        s.dp.wait_for_match("ready", |e| e.t_ns > first.t_ns, T);
        assert_eq!(s.dp.find_all("token").len(), 2, "kuma-dp read it twice");

        // `meshinit check` with the same configuration.
        let mut check = Command::new(meshinit_bin());
        check
            .arg("check")
            .args(&s.opts)
            .arg("--")
            .arg(test_app_bin());
        let check = check.output().unwrap();
        assert!(check.status.success(), "{check:?}");
        let check_out = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            check_out.contains(&path_str(&s.token_file)),
            "check names the token file:\n{check_out}"
        );

        // Configuration errors, including the token file given where meshinit reads
        // and quotes content: as the config file and as the Dataplane template.
        let token = path_str(&s.token_file);
        for extra in [
            vec!["--app-stop-timeout=bogus".to_string()],
            vec![format!("--config={token}")],
            vec![format!("--dataplane-file={token}")],
        ] {
            let mut args: Vec<String> = s.opts.clone();
            args.extend(extra.iter().cloned());
            let mut cmd = Command::new(meshinit_bin());
            cmd.args(&args).arg("--").arg(test_app_bin());
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(64), "{extra:?}: {out:?}");
            assert_no_secret(
                &format!("{format} config error {extra:?}"),
                &format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }

        p.signal(Signal::SIGTERM);
        assert_eq!(p.wait_exit(T).code(), Some(143));
        let out = p.output();
        if format == "json" {
            assert!(out.lines().any(|l| l.starts_with('{')), "{out}");
        }
        assert!(
            out.contains("TRACE") || out.contains("DEBUG") || out.contains("\"level\""),
            "ran verbosely:\n{out}"
        );
        assert_no_secret(&format!("{format} run"), &out);
        assert_no_secret(&format!("{format} check"), &check_out);
        // The fake records it hashed only; the test's own view of kuma-dp's argv has the
        // path, not the content.
        assert!(s.dp_argv().iter().all(|a| !a.contains("S3CR3T")));
    }
}

/// Regression: a token given inline to kuma-dp (`--kuma-dp-arg=--dataplane-token=...`,
/// or the flag and its value as two arguments) used to be printed by `meshinit check`,
/// in the effective configuration and in the kuma-dp command line.
#[test]
fn an_inline_token_given_to_kuma_dp_is_never_printed() {
    let s = with_secret("sec-inline-token").opt(&[
        "--log-level",
        "trace",
        "--kuma-dp-arg",
        &format!("--dataplane-token={SECRET}"),
        "--kuma-dp-arg",
        "--dataplane-token",
        "--kuma-dp-arg",
        SECRET,
    ]);
    let check = Command::new(meshinit_bin())
        .arg("check")
        .args(&s.opts)
        .arg("--")
        .arg(test_app_bin())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("--dataplane-token=<redacted>"), "{out}");
    assert_no_secret("check", &out);
    assert_no_secret("check stderr", &String::from_utf8_lossy(&check.stderr));

    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    // kuma-dp itself still gets the token, verbatim.
    assert!(s.dp.find("token").is_some());
    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143));
    assert_no_secret("run", &p.output());
}

/// A 0755 directory with copies of the test programs, so an unprivileged user can run
/// them (the build directory may sit below a home only root can enter).
struct Bins {
    _dir: TempDir,
    app: PathBuf,
    dp: PathBuf,
}

fn bins(tag: &str) -> Bins {
    let dir = temp_dir(tag);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let app = dir.join("test-app");
    let dp = dir.join("kuma-dp");
    fs::copy(test_app_bin(), &app).unwrap();
    fs::copy(fake_kuma_dp_bin(), &dp).unwrap();
    Bins { _dir: dir, app, dp }
}

/// `Uid:`/`Gid:` (real, effective, saved, fs) and `Groups:` of a running process.
fn proc_ids(pid: i32) -> (Vec<String>, Vec<String>, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let split = |s: String| s.split_whitespace().map(str::to_string).collect();
    (split(field("Uid:")), split(field("Gid:")), field("Groups:"))
}

fn nobody() -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name("nobody").ok()??;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

#[test]
fn app_and_kuma_dp_users_drop_every_id_and_reset_groups() {
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root to change users");
        return;
    }
    let Some((uid, gid)) = nobody() else {
        skip_or_fail("no user 'nobody' in /etc/passwd");
        return;
    };
    let b = bins("sec-users");
    let s = Scenario::new("sec-users-files").listening_app();
    // Everything the unprivileged programs touch must be theirs to touch.
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(
        &s.token_file,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    fs::set_permissions(&s.dp_file, fs::Permissions::from_mode(0o644)).unwrap();
    for rec in [&s.app.path, &s.dp.path] {
        fs::write(rec, "").unwrap();
        fs::set_permissions(rec, fs::Permissions::from_mode(0o666)).unwrap();
    }
    // meshinit itself keeps root's supplementary groups: give it some, so a reset shows.
    let mut cmd = Command::new(meshinit_bin());
    cmd.env("FAKE_KUMA_DP_RECORD", &s.dp.path)
        .env("KUMA_READINESS_PORT", s.ready_port.to_string())
        .env("KUMA_DATAPLANE_DRAIN_TIME", "100ms")
        .args(["--drain-until-idle=false", "--kuma-dp"])
        .arg(&b.dp)
        .args(s.proxy_opts().into_iter().skip(2))
        .args([
            "--app-user",
            "nobody",
            "--kuma-dp-user",
            &format!("{uid}:{gid}"),
            "--app-no-new-privs",
            "--",
        ])
        .arg(&b.app)
        .arg("--record")
        .arg(&s.app.path)
        .args(["--ids", "--listen", &s.app_addr()]);
    let mut p = Proc::start(cmd);
    p.wait_for_line("service running and ready", T);

    // The app, from its own getresuid/getresgid/getgroups.
    let ids = s.app.wait_for("ids", T);
    for key in ["ruid", "euid", "suid"] {
        assert_eq!(ids.field(key), uid.to_string(), "{key}: {}", s.app.dump());
    }
    for key in ["rgid", "egid", "sgid"] {
        assert_eq!(ids.field(key), gid.to_string(), "{key}: {}", s.app.dump());
    }
    assert_eq!(ids.get("groups").unwrap_or(""), gid.to_string());
    assert_eq!(ids.field("nnp"), "1", "--app-no-new-privs");
    // And from /proc, as the kernel sees it.
    let app: i32 = s.app.find("start").unwrap().field("pid").parse().unwrap();
    let (u, g, groups) = proc_ids(app);
    assert!(u.iter().all(|x| *x == uid.to_string()), "app Uid: {u:?}");
    assert!(g.iter().all(|x| *x == gid.to_string()), "app Gid: {g:?}");
    assert_eq!(groups, gid.to_string());

    // kuma-dp, read from /proc while it runs.
    let dp: i32 = s.dp.find("start").unwrap().field("pid").parse().unwrap();
    let (u, g, groups) = proc_ids(dp);
    assert_eq!(u.len(), 4, "{u:?}");
    assert!(
        u.iter().all(|x| *x == uid.to_string()),
        "kuma-dp Uid: {u:?}"
    );
    assert!(
        g.iter().all(|x| *x == gid.to_string()),
        "kuma-dp Gid: {g:?}"
    );
    assert_eq!(groups, gid.to_string(), "kuma-dp supplementary groups");
    // It read the token as that user.
    assert!(s.dp.find("token").is_some());

    p.signal(Signal::SIGTERM);
    assert_eq!(p.wait_exit(T).code(), Some(143), "{}", p.output());
    drop(b);
}

#[test]
fn unknown_users_are_refused_by_name_before_anything_starts() {
    let s = Scenario::new("sec-unknown-user").listening_app().opt(&[
        "--app-user",
        "no-such-app-user-xyz",
        "--kuma-dp-user",
        "no-such-kuma-user-xyz:no-such-group-xyz",
    ]);
    let mut p = s.start();
    assert_eq!(p.wait_exit(T).code(), Some(64));
    let out = p.output();
    for needle in [
        "'no-such-app-user-xyz' does not exist",
        "flag --app-user",
        "no-such-kuma-user-xyz",
        "flag --kuma-dp-user",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!s.app.path.exists(), "the app never ran");
    assert!(!s.dp.path.exists(), "kuma-dp never ran");
    // The same through the environment and the config file, named by origin.
    let dir = temp_dir("sec-unknown-user-file");
    let cfg = dir.join("m.yaml");
    fs::write(&cfg, "app:\n  user: ghost-user-from-file\n").unwrap();
    let out = Command::new(meshinit_bin())
        .env("MESHINIT_KUMA_DP_USER", "ghost-user-from-env")
        .arg(format!("--config={}", cfg.display()))
        .args(s.proxy_opts())
        .arg("--")
        .arg(test_app_bin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'ghost-user-from-file'") && err.contains("m.yaml:2"),
        "{err}"
    );
    assert!(
        err.contains("'ghost-user-from-env'") && err.contains("env MESHINIT_KUMA_DP_USER"),
        "{err}"
    );
}

/// The local address of the socket listening on `port`, from /proc/net/tcp (hex, as the
/// kernel writes it: `0100007F` is 127.0.0.1).
fn listening_address(port: u16) -> Option<String> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let suffix = format!(":{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[1].ends_with(&suffix) && f[3] == "0A")
            .then(|| f[1].split(':').next().unwrap().to_string())
    })
}

#[test]
fn the_status_endpoint_binds_loopback_for_a_bare_port() {
    for (spec, want) in [
        ("{port}", "0100007F"),
        (":{port}", "0100007F"),
        ("0.0.0.0:{port}", "00000000"),
    ] {
        let port = free_port();
        let listen = spec.replace("{port}", &port.to_string());
        let mut cmd = Command::new(meshinit_bin());
        cmd.args(["--log-level=info", "--status-listen", &listen, "--"])
            .arg(test_app_bin());
        let mut p = Proc::start(cmd);
        p.wait_for_line("status endpoint listening", T);
        assert_eq!(
            listening_address(port).as_deref(),
            Some(want),
            "--status-listen {listen}"
        );
        assert_eq!(get(port, "/live").map(|r| r.0), Some(200));
        p.signal(Signal::SIGTERM);
        p.wait_exit(T);
    }
}

#[test]
fn user_values_reach_kuma_dp_and_the_app_verbatim_never_through_a_shell() {
    let dir = temp_dir("sec-no-shell");
    let marker = dir.join("pwned");
    let evil = format!(
        "$(touch {m});`touch {m}`;touch {m}|| touch {m}",
        m = marker.display()
    );
    let s = Scenario::new("sec-no-shell").listening_app().opt(&[
        "--dataplane-var",
        &format!("evil={evil}"),
        "--kuma-dp-arg",
        &format!("--dataplane-var=also={evil}"),
    ]);
    let mut p = s.start();
    p.wait_for_line("service running and ready", T);
    let argv = s.dp_argv();
    assert!(argv.contains(&format!("evil={evil}")), "{argv:?}");
    assert!(
        argv.contains(&format!("--dataplane-var=also={evil}")),
        "{argv:?}"
    );
    p.signal(Signal::SIGTERM);
    p.wait_exit(T);

    // The app's own arguments, likewise (the test app refuses unknown options, so a
    // shell-expanded argument would change what it records; here it records the path).
    // A shell would run `touch pwned` in the app's working directory.
    let rec_path = dir.join("rec;touch pwned;$(touch pwned)");
    let mut cmd = Command::new(meshinit_bin());
    cmd.arg("--app-workdir")
        .arg(dir.path())
        .arg("--")
        .arg(test_app_bin())
        .arg("--record")
        .arg(&rec_path)
        .args(["--exit-code", "0"]);
    let mut p = Proc::start(cmd);
    assert_eq!(p.wait_exit(T).code(), Some(0), "{}", p.output());
    assert!(
        Path::new(&rec_path).exists(),
        "the argument arrived as one word"
    );
    assert!(!marker.exists(), "something ran a shell on a user value");
}

/// Issue 13: a kuma-dp work directory given with `--kuma-dp-arg --work-dir` that already
/// exists and belongs to another user was accepted; that user could replace Envoy's
/// bootstrap or the admin socket meshinit reads. It is refused by name before anything
/// starts; one of kuma-dp's own user is accepted.
#[test]
fn an_existing_work_dir_of_another_user_is_refused() {
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root to give a directory to another user");
        return;
    }
    let s = Scenario::new("sec-work-dir").listening_app();
    let work_dir = s.dir.join("kuma-work");
    fs::create_dir(&work_dir).unwrap();
    nix::unistd::chown(&work_dir, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
    let s = s.opt(&[&format!("--kuma-dp-arg=--work-dir={}", work_dir.display())]);
    let mut p = s.start();
    assert_eq!(p.wait_exit(T).code(), Some(64));
    let out = p.output();
    for needle in [
        "flag --kuma-dp-arg",
        &format!(
            "'{}' already exists and is owned by uid 4242",
            work_dir.display()
        ),
        "who runs kuma-dp",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!s.app.path.exists(), "the app never ran");
    assert!(!s.dp.path.exists(), "kuma-dp never ran");

    // kuma-dp's own (here root's, as meshinit runs kuma-dp as root) is accepted.
    nix::unistd::chown(&work_dir, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let run = s.command();
    let args: Vec<std::ffi::OsString> = run.get_args().map(|a| a.to_owned()).collect();
    let mut check = Command::new(meshinit_bin());
    check.arg("check").args(&args);
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
