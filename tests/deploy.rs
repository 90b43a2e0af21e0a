//! The deployment targets: the systemd unit (checked by `systemd-analyze verify`), the Nomad
//! job and the Docker example (their stop budgets checked by `meshinit check` against the
//! very flags they use), the generated man page and completions, and meshinit as PID 1 in a
//! minimal root (`unshare` + `chroot` into a directory holding only meshinit and a test app).
//!
//! Tests that need something this machine may lack (systemd-analyze, root, unshare) print
//! `SKIPPED: <why>` and pass, unless CI=true or MESHINIT_REQUIRE_DEPLOY_TESTS=1, which make
//! a skip a failure with its reason (`scripts/test-packaging` sets the latter), so CI cannot
//! skip silently.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const T: Duration = Duration::from_secs(15);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Skips the calling test (returns true) unless skips are forbidden: under CI=true (see
/// `common::skip_or_fail`) or MESHINIT_REQUIRE_DEPLOY_TESTS=1 a test that cannot run fails.
fn skip(why: &str) -> bool {
    if std::env::var("MESHINIT_REQUIRE_DEPLOY_TESTS").as_deref() == Ok("1") {
        panic!("cannot run (MESHINIT_REQUIRE_DEPLOY_TESTS=1): {why}");
    }
    skip_or_fail(why);
    true
}

/// The full path of `prog` on PATH.
fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// `30s`, `2m`, `130s` → seconds (the forms used in these files).
fn secs(v: &str) -> u64 {
    let v = v.trim().trim_matches('"');
    if let Some(m) = v.strip_suffix('m') {
        m.parse::<u64>().expect("minutes") * 60
    } else {
        v.trim_end_matches('s').parse().expect("seconds")
    }
}

/// The `worst case: N` seconds printed by `meshinit check`.
fn worst_case(check_stdout: &str) -> u64 {
    let line = check_stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("worst case: "))
        .unwrap_or_else(|| panic!("no worst case in:\n{check_stdout}"));
    secs(line)
}

/// A Dataplane template, a token file and the fake kuma-dp: what `meshinit check` needs to
/// accept a direct-mode configuration on this machine.
struct ProxyFixture {
    dir: TempDir,
    token: PathBuf,
}

impl ProxyFixture {
    fn new(tag: &str) -> ProxyFixture {
        let dir = temp_dir(tag);
        let token = dir.join("token");
        fs::write(&token, "not-a-real-token").unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        ProxyFixture { dir, token }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::write(&p, content).unwrap();
        p
    }
}

// ------------------------------------------------------------------------------ systemd

/// The `[Service]` settings of the unit (last assignment wins, as in systemd).
fn unit_service_settings(unit: &str) -> HashMap<String, String> {
    let mut section = "";
    let mut out = HashMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" && !line.starts_with('#') {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

fn unit_text() -> String {
    fs::read_to_string(repo().join("systemd/meshinit@.service")).expect("read the unit")
}

/// A root for `systemd-analyze verify --root`: systemd's own units (the unit's implicit
/// dependencies must resolve), meshinit at /usr/bin/meshinit and `unit` as the template.
fn verify_root(tag: &str, unit: &str) -> Option<TempDir> {
    let system = Path::new("/usr/lib/systemd/system");
    if !system.is_dir() {
        skip("/usr/lib/systemd/system is missing (systemd not installed)");
        return None;
    }
    let root = temp_dir(tag);
    fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    let cp = run(Command::new("cp")
        .arg("-a")
        .arg(system)
        .arg(root.join("usr/lib/systemd/")));
    assert!(cp.status.success(), "cp: {}", text(&cp.stderr));
    fs::copy(meshinit_bin(), root.join("usr/bin/meshinit")).unwrap();
    fs::write(root.join("etc/systemd/system/meshinit@.service"), unit).unwrap();
    Some(root)
}

fn analyze_verify(root: &Path, unit: &str) -> Output {
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        // The man page check looks at the host, not the root; the .deb test does it.
        .arg("--man=no")
        .arg(unit))
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if which("systemd-analyze").is_none() {
        skip("systemd-analyze not found");
        return;
    }
    let Some(root) = verify_root("verify", &unit_text()) else {
        return;
    };
    for unit in ["meshinit@.service", "meshinit@demo.service"] {
        let out = analyze_verify(&root, unit);
        // verify exits 0 on unknown keys and bad values, only warning: demand silence.
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "systemd-analyze verify {unit}: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // The check can fail: a misspelt value and a missing binary are both reported.
    let broken = unit_text().replace("KillMode=mixed", "KillMode=mixd");
    let root = verify_root("verify-broken", &broken).unwrap();
    let out = analyze_verify(&root, "meshinit@demo.service");
    assert!(text(&out.stderr).contains("mixd"), "{out:?}");
    fs::remove_file(root.join("usr/bin/meshinit")).unwrap();
    let out = analyze_verify(&root, "meshinit@demo.service");
    assert!(!out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("/usr/bin/meshinit"), "{out:?}");
}

/// The overall exposure `systemd-analyze security --offline=true` gives `unit` (the text of
/// a meshinit@.service), or why it gave none.
fn security_rating(dir: &Path, unit: &str) -> Result<f64, String> {
    let path = dir.join("meshinit@.service");
    fs::write(&path, unit).unwrap();
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    all.lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or(all)
}

/// Issue 25: the shipped unit rated 9.6 "UNSAFE". Its sandbox must keep it at most 4.5
/// ("OK"). This is the host's systemd-analyze; scripts/homes-e2e rates the installed unit
/// with Debian 12's (systemd 252) in its booted root as well.
#[test]
fn systemd_unit_is_rated_ok_by_systemd_analyze_security() {
    if which("systemd-analyze").is_none() {
        skip("systemd-analyze not found (Debian: apt-get install systemd)");
        return;
    }
    let dir = temp_dir("security");
    let unit = unit_text();
    let rating = match security_rating(&dir, &unit) {
        Ok(r) => r,
        Err(out) if out.contains("--offline") => {
            // Older than systemd 250: no offline mode; under CI a failure.
            skip(&format!("systemd-analyze security has no --offline: {out}"));
            return;
        }
        Err(out) => panic!("no rating from systemd-analyze security:\n{out}"),
    };
    assert!(
        rating <= 4.5,
        "systemd-analyze security --offline=true rates systemd/meshinit@.service {rating}, more than 4.5"
    );
    // The check can fail: the same unit without its sandbox is rated UNSAFE.
    let start = unit
        .find("# ---------------------------------------------------------------- sandbox")
        .expect("the unit's sandbox section");
    let end = unit.find("[Install]").expect("[Install]");
    let bare = format!("{}{}", &unit[..start], &unit[end..]);
    let bare_rating = security_rating(&dir, &bare).unwrap_or_else(|out| panic!("{out}"));
    assert!(
        bare_rating > 9.0,
        "without its sandbox the unit rates {bare_rating}"
    );
}

#[test]
fn systemd_unit_settings_fit_meshinit_defaults() {
    let s = unit_service_settings(&unit_text());
    assert_eq!(s["Type"], "notify");
    assert_eq!(s["NotifyAccess"], "main");
    assert_eq!(s["KillMode"], "mixed");
    assert_eq!(s["KillSignal"], "SIGTERM");
    assert_eq!(s["EnvironmentFile"], "/etc/meshinit/%i.env");
    assert_eq!(
        s["ExecStart"],
        "/usr/bin/meshinit $MESHINIT_ARGS -- $MESHINIT_APP_ARGS"
    );
    assert!(s["SuccessExitStatus"].split(' ').any(|c| c == "143"));

    // The stop timeout covers the default worst case with a proxy, as meshinit computes it.
    let stop = secs(&s["TimeoutStopSec"]);
    let fx = ProxyFixture::new("unit-check");
    let dp = fx.write(
        "dp.yaml",
        "type: Dataplane\nmesh: default\nname: a\nnetworking:\n  address: 127.0.0.1\n  \
         inbound:\n  - port: 15001\n    servicePort: 8080\n    tags:\n      \
         kuma.io/service: backend\n",
    );
    let out = run(Command::new(meshinit_bin())
        .arg("check")
        .arg("--kuma-dp")
        .arg(fake_kuma_dp_bin())
        .arg("--dataplane-file")
        .arg(&dp)
        .arg("--dataplane-token-file")
        .arg(&fx.token)
        .arg(format!("--shutdown-budget={stop}s"))
        .arg("--")
        .arg(test_app_bin()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let worst = worst_case(&stdout);
    assert_eq!(
        worst, 54,
        "default drain 40s + 1s to SIGKILL kuma-dp + grace 0s + app stop 10s + 2s clean-up + 1s give-up"
    );
    assert!(
        stop >= worst + 5,
        "TimeoutStopSec={stop}s leaves no margin over {worst}s"
    );
    // Startup: the app's startup-timeout (60s) plus kuma-dp's ready timeout (60s).
    assert!(secs(&s["TimeoutStartSec"]) > 120);
}

// ------------------------------------------------------------------------------ Nomad

/// The quoted strings and bare references of the first `args = [ ... ]` list.
fn hcl_args(hcl: &str) -> Vec<String> {
    let start = hcl.find("args = [").expect("args list") + "args = [".len();
    let mut out = Vec::new();
    let mut rest = &hcl[start..];
    loop {
        rest = rest.trim_start_matches([' ', '\n', ',']);
        if rest.starts_with('#') {
            rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("closing quote");
            out.push(r[..end].to_string());
            rest = &r[end + 1..];
        } else if rest.starts_with(']') {
            return out;
        } else {
            let end = rest.find([',', '\n', ' ']).unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
}

/// The value of `key = "value"` (first occurrence).
fn hcl_string(hcl: &str, key: &str) -> String {
    hcl.lines()
        .map(str::trim)
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in the job"))
}

/// The default of `variable "name" { ... default = "..." }`.
fn hcl_variable_default(hcl: &str, name: &str) -> String {
    let from = hcl
        .find(&format!("variable \"{name}\""))
        .unwrap_or_else(|| panic!("no variable {name} in the job"));
    let block = &hcl[from..from + hcl[from..].find("\n}").expect("end of the variable")];
    hcl_string(block, "default")
}

/// The body of the first heredoc after `marker` (indented `<<-EOT` form).
fn hcl_heredoc(hcl: &str, marker: &str) -> String {
    let from = hcl.find(marker).expect("heredoc marker");
    let body = &hcl[from..];
    let start = body.find("<<-EOT\n").unwrap() + "<<-EOT\n".len();
    let end = body[start..].find("EOT").unwrap() + start;
    let lines: Vec<&str> = body[start..end].lines().collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").to_string() + "\n")
        .collect()
}

/// HCL file (argv[1]) to JSON with python-hcl2, whose version 8 keeps the quotes of strings
/// and labels: they are stripped so the JSON reads like the file.
const HCL_TO_JSON: &str = r#"
import hcl2, json, sys
def n(x):
    if isinstance(x, str):
        return x[1:-1] if len(x) > 1 and x[0] == x[-1] == '"' else x
    if isinstance(x, dict):
        return {n(k): n(v) for k, v in x.items()}
    if isinstance(x, list):
        return [n(i) for i in x]
    return x
print(json.dumps(n(hcl2.load(open(sys.argv[1])))))
"#;

#[test]
fn nomad_job_kill_timeout_covers_meshinit_check() {
    let path = repo().join("packaging/nomad/backend.nomad.hcl");
    let hcl = fs::read_to_string(&path).unwrap();
    assert_eq!(hcl_string(&hcl, "kill_signal"), "SIGTERM");
    // Three allocations unless told otherwise (scripts/cluster-e2e runs 6 on 3 clients).
    assert_eq!(hcl_variable_default(&hcl, "allocations"), "3");
    assert_eq!(hcl_string(&hcl, "command"), "var.meshinit_binary");
    assert_eq!(
        hcl_variable_default(&hcl, "meshinit_binary"),
        "/usr/bin/meshinit"
    );
    // Nomad's view follows meshinit's: a Nomad service check on meshinit's /ready, counted
    // by the deployment (scripts/nomad-e2e runs it on a real agent).
    assert_eq!(hcl_string(&hcl, "health_check"), "checks");
    assert_eq!(hcl_string(&hcl, "max_parallel"), "1");
    assert_eq!(hcl_string(&hcl, "provider"), "nomad");
    assert_eq!(hcl_string(&hcl, "path"), "/ready");
    assert!(secs(&hcl_string(&hcl, "min_healthy_time")) > 0);
    let kill_timeout = secs(&hcl_string(&hcl, "kill_timeout"));
    let args = hcl_args(&hcl);
    let status = args
        .iter()
        .position(|a| a == "--status-listen")
        .expect("the job passes --status-listen");
    assert_eq!(
        args[status + 1],
        "${NOMAD_ADDR_status}",
        "meshinit serves /ready on the port the check polls"
    );

    // Real HCL parsing with python-hcl2 (scripts/install-test-tools installs it).
    if let Some(python) = test_python("hcl2") {
        let out = run(Command::new(&python).args(["-c", HCL_TO_JSON]).arg(&path));
        assert!(
            out.status.success(),
            "python-hcl2 rejects {}: {}",
            path.display(),
            text(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let task = &json["job"][0]["backend"]["group"][0]["backend"]["task"][0]["backend"];
        assert_eq!(task["kill_timeout"], "30s", "{task:#}");
        assert_eq!(task["kill_signal"], "SIGTERM");
        assert_eq!(task["driver"], "raw_exec");
        let group = &json["job"][0]["backend"]["group"][0]["backend"];
        assert_eq!(group["count"], "${var.allocations}", "{group:#}");
        assert_eq!(group["spread"][0]["attribute"], "${node.unique.id}");
        assert_eq!(group["migrate"][0]["health_check"], "checks");
        assert_eq!(group["update"][0]["health_check"], "checks");
        let check = &task["service"][0]["check"][0];
        assert_eq!(check["port"], "status", "{task:#}");
        assert_eq!(check["path"], "/ready");
        assert_eq!(task["service"][0]["provider"], "nomad");
        let parsed_args: Vec<String> = task["config"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        // hcl2 writes references as ${...}; otherwise the scanner read the same list.
        let scanned: Vec<String> = args
            .iter()
            .map(|a| {
                if a.starts_with("var.") {
                    format!("${{{a}}}")
                } else {
                    a.clone()
                }
            })
            .collect();
        assert_eq!(parsed_args, scanned);
    }

    // Run `meshinit check` with the job's own flags, Nomad's variables given sample values
    // and the binaries replaced by the test programs.
    let fx = ProxyFixture::new("nomad-check");
    let dp = hcl_heredoc(&hcl, "destination     = \"local/dataplane.yaml\"");
    fs::write(fx.dir.join("dataplane.yaml"), dp).unwrap();
    fs::copy(&fx.token, fx.dir.join("kuma-token")).unwrap();
    let dir = fx.dir.to_str().unwrap();
    let subst = |a: &str| -> String {
        match a {
            "var.kuma_dp_binary" => fake_kuma_dp_bin().to_str().unwrap().to_string(),
            "var.kuma_cp_address" => "https://127.0.0.1:5678".into(),
            "var.backend_binary" => test_app_bin().to_str().unwrap().to_string(),
            _ => a
                .replace("${NOMAD_TASK_DIR}", dir)
                .replace("${NOMAD_SECRETS_DIR}", dir)
                .replace("${NOMAD_ALLOC_ID}", "0b8d5d0c-1b1e-4b8e-9d0e-2f3c4a5b6c7d")
                .replace("${NOMAD_ALLOC_INDEX}", "0")
                .replace("${NOMAD_IP_inbound}", "10.0.0.2")
                .replace("${NOMAD_ADDR_status}", "10.0.0.2:21005")
                .replace("${var.kuma_cp_ca_cert}", "/etc/kuma/kuma-cp-ca.crt")
                .replace("${var.envoy_binary}", "/usr/local/bin/envoy")
                .replace("${NOMAD_PORT_inbound}", "21001")
                .replace("${NOMAD_PORT_http}", "21002")
                .replace("${NOMAD_PORT_admin}", "21003"),
        }
    };
    let args: Vec<String> = args.iter().map(|a| subst(a)).collect();
    assert!(
        !args.iter().any(|a| a.contains("${")),
        "unreplaced: {args:?}"
    );
    let budget = args
        .iter()
        .position(|a| a == "--shutdown-budget")
        .map(|i| secs(&args[i + 1]))
        .expect("the job passes --shutdown-budget");
    assert_eq!(
        budget, kill_timeout,
        "--shutdown-budget is the kill_timeout"
    );

    let out = run(Command::new(meshinit_bin())
        .arg("check")
        .args(&args)
        .env("KUMA_READINESS_PORT", "21004"));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("Warnings:"), "{stdout}");
    assert!(stdout.contains("name: backend-0b8d5d0c"), "{stdout}");
    let worst = worst_case(&stdout);
    // 15s drain + 1s to SIGKILL kuma-dp + 10s stop + 2s clean-up + 1s give-up.
    assert_eq!(worst, 29);
    assert!(worst < kill_timeout, "kill_timeout {kill_timeout}s");
}

// ------------------------------------------------------------------------------ Docker

#[test]
fn docker_example_fits_its_stop_budget() {
    let dockerfile = fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    assert!(dockerfile.lines().any(|l| l.trim() == "STOPSIGNAL SIGTERM"));
    assert!(dockerfile
        .lines()
        .any(|l| l.starts_with("ENTRYPOINT [\"/usr/bin/meshinit\"")));
    assert!(dockerfile.contains("docker stop -t 35"));

    let fx = ProxyFixture::new("docker-check");
    let cfg = fs::read_to_string(repo().join("docker/example/meshinit.yaml"))
        .unwrap()
        .replace(
            "/etc/meshinit/dataplane.yaml",
            repo()
                .join("docker/example/dataplane.yaml")
                .to_str()
                .unwrap(),
        )
        .replace("/run/secrets/kuma-token", fx.token.to_str().unwrap())
        .replace("/usr/bin/kuma-dp", fake_kuma_dp_bin().to_str().unwrap());
    let cfg = fx.write("meshinit.yaml", &cfg);
    let out = run(Command::new(meshinit_bin())
        .arg("check")
        .arg("--config")
        .arg(&cfg)
        .args(["--dataplane-var", "name=backend-1"])
        .args(["--dataplane-var", "address=172.18.0.5"])
        .arg("--")
        .arg(test_app_bin()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("Warnings:"), "{stdout}");
    // 25s drain + 1s to SIGKILL kuma-dp + 5s stop + 2s clean-up + 1s give-up.
    assert_eq!(worst_case(&stdout), 34);
    assert!(stdout.contains("shutdown budget: 35s (fits)"), "{stdout}");
}

// ------------------------------------------------------------------------------ man page

#[test]
fn man_page_and_completions_name_every_flag() {
    let assets = meshinit_bin().parent().unwrap().join("meshinit-assets");
    let help = text(&run(Command::new(meshinit_bin()).arg("--help")).stdout);
    // Option lines: `  --flag <VALUE>` or `  -h, --help`; the examples' app flags are not ours.
    let mut flags: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
                .find(|w| w.len() > 2 && w.starts_with("--"))
        })
        .collect();
    flags.sort_unstable();
    flags.dedup();
    assert!(flags.len() > 30, "{flags:?}");

    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(assets.join("meshinit.1.gz")));
    assert!(man.status.success(), "gzip: {}", text(&man.stderr));
    let man = text(&man.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH meshinit 1"),
        "{man}"
    );
    assert!(man.contains(env!("CARGO_PKG_VERSION")));
    let bash = fs::read_to_string(assets.join("meshinit.bash")).unwrap();
    let zsh = fs::read_to_string(assets.join("_meshinit")).unwrap();
    let fish = fs::read_to_string(assets.join("meshinit.fish")).unwrap();
    assert!(zsh.starts_with("#compdef meshinit"));
    for flag in flags {
        assert!(
            man.contains(&flag.replace('-', "\\-")),
            "man page lacks {flag}"
        );
        assert!(bash.contains(flag), "bash completion lacks {flag}");
        assert!(zsh.contains(flag), "zsh completion lacks {flag}");
        assert!(
            fish.contains(&format!("-l {}", &flag[2..])),
            "fish completion lacks {flag}"
        );
    }
}

// ------------------------------------------------------------------------------ PID 1

/// Whether the ELF file has no program interpreter (PT_INTERP), i.e. is statically linked.
fn is_static_elf(path: &Path) -> bool {
    let b = fs::read(path).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let p = phoff + i * phentsize;
        u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) != 3
    })
}

/// Copies the shared libraries `bin` needs (per ldd) to the same paths under `root`.
fn copy_libs(bin: &Path, root: &Path) {
    let out = run(Command::new("ldd").arg(bin));
    for word in text(&out.stdout).split_whitespace() {
        if word.starts_with('/') {
            let dest = root.join(word.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(word, &dest).unwrap_or_else(|e| panic!("copy {word}: {e}"));
        }
    }
}

#[test]
fn pid1_in_minimal_root_reaps_forwards_and_exits_with_the_app() {
    if !nix::unistd::geteuid().is_root() {
        skip("needs root for unshare --pid and chroot");
        return;
    }
    if which("unshare").is_none() || which("chroot").is_none() {
        skip("unshare or chroot not found (util-linux, coreutils)");
        return;
    }
    let probe = run(Command::new("unshare").args(["--pid", "--fork", "--mount", "true"]));
    if !probe.status.success() {
        skip(&format!(
            "unshare --pid --fork --mount fails here: {}",
            text(&probe.stderr).trim()
        ));
        return;
    }

    let root = temp_dir("pid1-root");
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // Static binaries when given (scripts/test-packaging builds them); otherwise the test
    // binaries with their shared libraries copied in.
    match std::env::var_os("MESHINIT_STATIC_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            for (from, to) in [("meshinit", "meshinit"), ("meshinit-test-app", "app")] {
                let bin = dir.join(from);
                assert!(is_static_elf(&bin), "{} is not static", bin.display());
                fs::copy(&bin, root.join(to)).unwrap();
            }
            eprintln!("using the static binaries in {}", dir.display());
        }
        None => {
            if std::env::var("MESHINIT_REQUIRE_STATIC").as_deref() == Ok("1") {
                panic!("MESHINIT_REQUIRE_STATIC=1 but MESHINIT_STATIC_DIR is not set");
            }
            eprintln!("MESHINIT_STATIC_DIR not set: dynamic binaries plus their libraries");
            fs::copy(meshinit_bin(), root.join("meshinit")).unwrap();
            fs::copy(test_app_bin(), root.join("app")).unwrap();
            copy_libs(&meshinit_bin(), &root);
            copy_libs(&test_app_bin(), &root);
        }
    }
    fs::create_dir(root.join("proc")).unwrap();
    let rec = Record::new(&root);
    let rec_in_root = format!("/{}", rec.path.file_name().unwrap().to_str().unwrap());

    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount"])
        .arg(format!("--mount-proc={}", root.join("proc").display()))
        .arg("chroot")
        .arg(root.path())
        .args(["/meshinit", "--log-level", "debug", "--"])
        .args(["/app", "--record", &rec_in_root])
        .args(["--orphans", "20", "--daemon", "--on", "TERM=exit:7"]);
    let mut proc = Proc::start(cmd);

    // meshinit is PID 1 of the new namespace, and the app's parent.
    proc.wait_for_line("meshinit starting pid=1 ", T);
    let start = rec.wait_for("start", T);
    assert_eq!(start.field("ppid"), "1");
    assert_eq!(start.field("pid"), "2");

    // The 20 grandchildren the app orphaned were reaped by meshinit as PID 1.
    rec.wait_for("orphans", T);
    rec.wait_for("daemon", T);
    let reaped = || {
        let n = proc
            .lines()
            .iter()
            .filter(|l| l.contains("reaped orphan"))
            .count();
        (n >= 20).then_some(())
    };
    poll_for(T, reaped).unwrap_or_else(|| panic!("not 20 orphans reaped:\n{}", proc.output()));
    // Host view: meshinit is unshare's child; nothing below it is a zombie.
    let meshinit_pid = descendants(proc.pid())
        .into_iter()
        .find(|p| ppid_of(*p) == Some(proc.pid()))
        .expect("meshinit below unshare");
    let zombies: Vec<i32> = descendants(meshinit_pid)
        .into_iter()
        .filter(|p| is_zombie(*p))
        .collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}");

    // A signal from outside the namespace reaches PID 1 and is forwarded to the app.
    kill(Pid::from_raw(meshinit_pid), Signal::SIGUSR1).unwrap();
    rec.wait_for_match("signal", |e| e.rest == "USR1", T);

    // SIGTERM: the app exits 7, the daemon it left is stopped, meshinit exits 7.
    kill(Pid::from_raw(meshinit_pid), Signal::SIGTERM).unwrap();
    let status = proc.wait_exit(T);
    assert_eq!(status.code(), Some(7), "{}", proc.output());
    assert_eq!(rec.find("exit").unwrap().field("code"), "7");
    assert!(
        proc.output().contains("stopping leftover descendants"),
        "{}",
        proc.output()
    );
}
