//! Transparent proxying (issue 26, items 1 and 4), on the real binary: `meshinit check` refuses
//! each misconfiguration with its own message and exit 64, with redirection known from the
//! Dataplane or kuma-dp's arguments (no root, no rules: PATH holds no iptables-save, so the
//! host's rules are never read); and, as root, in a network namespace of the test's own with
//! rules written by the real kumactl, `check` reads them (uid, excluded port, DNS), and says it
//! cannot read them without CAP_NET_ADMIN. The parsing and each check are table-tested in
//! `src/mesh/tproxy.rs` and `src/config/tproxy.rs`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// A Dataplane whose inbound has a serviceProbe and that says redirection is on.
const DP: &str = "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8000\n    servicePort: 8080\n    serviceAddress: 10.0.0.2\n    serviceProbe: {tcp: {}}\n    tags:\n      kuma.io/service: backend\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n";

/// `meshinit check` with kuma-dp (the fake) and `args`, PATH without iptables-save: exit code
/// and output.
fn check(dir: &Path, dataplane: &str, args: &[&str]) -> (Option<i32>, String) {
    let dp = dir.join("dp.yaml");
    std::fs::write(&dp, dataplane).unwrap();
    let mut cmd = Command::new(meshinit_bin());
    cmd.arg("check")
        .arg(format!("--kuma-dp={}", fake_kuma_dp_bin().display()))
        .arg(format!("--dataplane-file={}", dp.display()))
        .arg("--cp-address=https://127.0.0.1:5678")
        .args(args)
        .args(["--", "/bin/true"])
        .env_clear()
        .env("PATH", dir)
        .env("TMPDIR", dir);
    let mut p = Proc::start(cmd);
    let code = p.wait_exit(T).code();
    (code, p.output())
}

/// Every refusal's own words: each case below must show its own and no other.
const REFUSALS: &[&str] = &[
    "kuma-dp would run as",
    "the app would run as",
    "app-first with transparent proxying",
    "DNS queries are redirected to kuma-dp's DNS",
    "status.listen:",
    "have no serviceProbe",
];

/// (what, Dataplane, args, the refusal, words the message must hold)
type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a str, &'a [&'a str]);

/// Each misconfiguration of item 1 is refused by `check` with exit 64 and its own message,
/// naming the value and where it came from; the same configuration set right is accepted, with
/// proxy-first as the default. Fails on the code before issue 26: every case exited 0.
#[test]
fn check_refuses_each_misconfiguration_with_its_own_message() {
    let dir = temp_dir("tproxy-check");
    let good: &[&str] = &["--kuma-dp-user=5678", "--app-user=65534"];
    let (code, out) = check(dir.path(), DP, good);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("start order: proxy-first (the app starts once kuma-dp is ready, the default with transparent proxying)"),
        "{out}"
    );
    assert!(
        out.contains("Dataplane networking.transparentProxying")
            && out.contains("cannot read the rules: no iptables-save"),
        "{out}"
    );

    let without_probe = DP.replace("    serviceProbe: {tcp: {}}\n", "");
    let through_kuma_dp = DP.replace(
        "  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n",
        "",
    );
    let cases: &[Case] = &[
        (
            "kuma-dp as meshinit's own uid",
            DP,
            &["--app-user=65534"],
            "kuma-dp would run as",
            &[
                "meshinit's own uid",
                "(no --kuma-dp-user)",
                "exempt uid 5678",
                "--kuma-dp-user 5678",
            ],
        ),
        (
            "kuma-dp as another user",
            DP,
            &["--kuma-dp-user=65534", "--app-user=65533"],
            "kuma-dp would run as",
            &["uid 65534", "(from flag --kuma-dp-user)"],
        ),
        (
            "the app as the exempt uid",
            DP,
            &["--kuma-dp-user=5678", "--app-user=5678"],
            "the app would run as",
            &["uid 5678", "bypass the mesh", "(from flag --app-user)"],
        ),
        (
            "an explicit app-first",
            DP,
            &[
                "--kuma-dp-user=5678",
                "--app-user=65534",
                "--start-order=app-first",
            ],
            "app-first with transparent proxying",
            &["(from flag --start-order)"],
        ),
        (
            "redirection from kuma-dp's --transparent-proxy, app-first from the env",
            &through_kuma_dp,
            &[
                "--kuma-dp-user=5678",
                "--app-user=65534",
                "--kuma-dp-arg=--transparent-proxy",
                "--start-order=app-first",
            ],
            "app-first with transparent proxying",
            &["(from flag --start-order)"],
        ),
        (
            "a status port of Envoy's",
            DP,
            &[
                "--kuma-dp-user=5678",
                "--app-user=65534",
                "--status-listen=127.0.0.1:9901",
            ],
            "status.listen:",
            &[
                "port 9901 is Envoy's admin port",
                "(from flag --status-listen)",
            ],
        ),
        (
            "an inbound without a serviceProbe",
            &without_probe,
            &["--kuma-dp-user=5678", "--app-user=65534"],
            "have no serviceProbe",
            &["inbound port(s) 8000", "(from flag --dataplane-file)"],
        ),
    ];
    for (what, dp, args, refusal, words) in cases {
        let (code, out) = check(dir.path(), dp, args);
        assert_eq!(code, Some(64), "{what}: {out}");
        assert!(out.contains(refusal), "{what}: {out}");
        for w in *words {
            assert!(out.contains(w), "{what}: lacks '{w}': {out}");
        }
        for other in REFUSALS.iter().filter(|r| *r != refusal) {
            assert!(!out.contains(other), "{what}: also '{other}': {out}");
        }
    }
}

/// The facts only the rules (or the install step's arguments) give: DNS redirected while
/// kuma-dp's DNS is off, and a status port on a non-loopback address that the rules redirect.
/// Through `--transparent-proxy-install` (its arguments are read; kumactl is not run by
/// `check`), so no rule is needed; as a non-root user the install step's own refusals come
/// too, which is why only presence is asserted here.
#[test]
fn check_refuses_redirected_dns_without_kuma_dp_dns_and_a_redirected_status_port() {
    let dir = temp_dir("tproxy-install-facts");
    let base = [
        "--kuma-dp-user=nobody",
        "--app-user=65533",
        "--kumactl=/bin/true",
        "--transparent-proxy-install=--kuma-dp-user=nobody",
        "--transparent-proxy-install=--redirect-dns",
        "--transparent-proxy-install=--exclude-inbound-ports=9911",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        check(dir.path(), DP, &args)
    };
    let root = nix::unistd::geteuid().is_root();
    if root {
        let (code, out) = run(&["--status-listen=0.0.0.0:9911"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("first step: /bin/true install transparent-proxy --kuma-dp-user=nobody --redirect-dns --exclude-inbound-ports=9911"),
            "{out}"
        );
        assert!(out.contains("inbound ports not redirected: 9911"), "{out}");
    }
    let (code, out) = run(&["--kuma-dp-arg=--dns-enabled=false"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("DNS queries are redirected to kuma-dp's DNS on port 15053")
            && out.contains("kuma-dp is given --dns-enabled=false")
            && out.contains("(from flag --kuma-dp-arg)"),
        "{out}"
    );
    let (code, out) = run(&["--status-listen=0.0.0.0:9000"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("0.0.0.0:9000 is redirected to Envoy's inbound listener")
            && out.contains("--exclude-inbound-ports 9000"),
        "{out}"
    );
    if !root {
        assert!(out.contains("needs root"), "{out}");
    }
}

/// The kumactl the real-mesh suite builds (scripts/install-mesh-deps): KUMACTL_BIN, else the
/// cache's.
fn kumactl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUMACTL_BIN").map(PathBuf::from) {
        return Some(p).filter(|p| p.is_file());
    }
    let cache = std::env::var_os("MESHINIT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshinit")))?;
    Some(cache.join("kuma-2.14.3/bin/kumactl")).filter(|p| p.is_file())
}

/// As root, in a network (and mount) namespace of its own, made by `unshare` and gone with
/// it: the real kumactl writes Kuma's rules, and `check` reads them: the exempt uid, the
/// excluded port, the DNS server; a status port the rules redirect is refused. Then, with
/// CAP_NET_ADMIN dropped from the bounding set, `check` says it cannot read them. The root
/// namespace's rules are never touched.
#[test]
fn check_reads_the_rules_kumactl_wrote_in_a_namespace() {
    if !nix::unistd::geteuid().is_root() {
        return skip_or_fail("reading real rules needs root (a network namespace, kumactl)");
    }
    let Some(kumactl) = kumactl() else {
        return skip_or_fail(
            "no kumactl 2.14.3: run scripts/install-mesh-deps (it builds KUMACTL_BIN)",
        );
    };
    for tool in ["unshare", "setpriv", "iptables-nft-save"] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .is_ok_and(|s| s.success())
        {
            return skip_or_fail(&format!("{tool} is not installed"));
        }
    }
    let dir = temp_dir("tproxy-netns");
    let dp = dir.path().join("dp.yaml");
    std::fs::write(&dp, DP).unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.214.0.1\n").unwrap();
    let meshinit = |extra: &str| {
        format!(
            "{} check --kuma-dp={} --dataplane-file={} --cp-address=https://127.0.0.1:5678 {extra} -- /bin/true",
            meshinit_bin().display(),
            fake_kuma_dp_bin().display(),
            dp.display()
        )
    };
    // Inside the namespaces: the resolv.conf kumactl pins, the rules, then three checks, each
    // output (stderr into stdout, so the order holds) between markers. `nobody` (65534) is the exempt user: kumactl needs one in
    // /etc/passwd.
    let script = format!(
        "set -e\n\
         mount --bind {resolv} /etc/resolv.conf\n\
         ip link set lo up\n\
         {kumactl} install transparent-proxy --kuma-dp-user 65534 --redirect-dns --exclude-inbound-ports 9911 --ip-family-mode ipv4 >/dev/null 2>&1\n\
         set +e\n\
         echo '== ok'; {ok} 2>&1; echo \"== rc $?\"\n\
         echo '== redirected'; {bad} 2>&1; echo \"== rc $?\"\n\
         echo '== no cap'; setpriv --bounding-set=-net_admin -- {no_cap} 2>&1; echo \"== rc $?\"\n",
        resolv = resolv.display(),
        kumactl = kumactl.display(),
        ok = meshinit("--kuma-dp-user=65534 --status-listen=0.0.0.0:9911"),
        bad = meshinit("--kuma-dp-user=65534 --status-listen=0.0.0.0:9000"),
        // Without the rules kumactl's default uid is assumed.
        no_cap = meshinit("--kuma-dp-user=5678 --status-listen=0.0.0.0:9911"),
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]);
    let mut p = Proc::start(cmd);
    let status = p.wait_exit(T);
    let out = p.output();
    assert_eq!(status.code(), Some(0), "{out}");
    let part = |name: &str| {
        let start = out
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("no '{name}' part: {out}"));
        let rest = &out[start..];
        let end = rest.find("== rc ").unwrap_or(rest.len());
        let rc = rest[end..]
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("== rc "))
            .and_then(|c| c.trim().parse::<i32>().ok());
        (rc, rest[..end].to_string())
    };
    let (rc, ok) = part("ok");
    assert_eq!(rc, Some(0), "{ok}");
    for fact in [
        "Kuma's nat rules, read with",
        "exempt uid: 65534 (the nat rules' --uid-owner",
        "inbound ports not redirected: 9911",
        "DNS: UDP/53 to 10.214.0.1 redirected to port 15053",
        "outbound TCP -> 15001, inbound TCP -> 15006",
        "start order: proxy-first",
    ] {
        assert!(ok.contains(fact), "lacks '{fact}': {ok}");
    }
    let (rc, bad) = part("redirected");
    assert_eq!(rc, Some(64), "{bad}");
    assert!(
        bad.contains("0.0.0.0:9000 is redirected to Envoy's inbound listener"),
        "{bad}"
    );
    let (rc, no_cap) = part("no cap");
    // The Dataplane still says redirection is on; the rules' facts are unknown.
    assert_eq!(rc, Some(0), "{no_cap}");
    assert!(
        no_cap.contains("cannot read the rules (needs CAP_NET_ADMIN)")
            && no_cap.contains("inbound ports not redirected: unknown")
            && !no_cap.contains("no Kuma rule"),
        "{no_cap}"
    );
}

/// `meshinit RUN-ARGS -- sh -c APP` with the fake kuma-dp and the Dataplane, in `dir`.
fn run_args(dir: &Path, ready_port: u16) -> Vec<String> {
    let dp = dir.join("dp.yaml");
    std::fs::write(&dp, DP).unwrap();
    vec![
        format!("--kuma-dp={}", fake_kuma_dp_bin().display()),
        format!("--dataplane-file={}", dp.display()),
        "--cp-address=https://127.0.0.1:5678".into(),
        "--kuma-dp-user=65534".into(),
        format!("--proxy-ready-url=http://127.0.0.1:{ready_port}/ready"),
        "--log-format=text".into(),
    ]
}

/// The install step failing (kumactl exits 1) stops meshinit before anything starts: exit 78,
/// neither kuma-dp nor the app ever ran. `/bin/false` stands in for kumactl, so no rule is
/// written anywhere; root is needed because the step is refused up front otherwise.
#[test]
fn a_failing_install_step_starts_nothing() {
    if !nix::unistd::geteuid().is_root() {
        return skip_or_fail("the install step needs root (refused up front otherwise)");
    }
    let dir = temp_dir("tproxy-install-fails");
    let port = free_port();
    let marker = dir.path().join("app-ran");
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(run_args(dir.path(), port))
        .args([
            "--kumactl=/bin/false",
            "--transparent-proxy-install=--kuma-dp-user=65534",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg(format!("touch {}", marker.display()))
        .env("KUMA_READINESS_PORT", port.to_string())
        .env("FAKE_KUMA_DP_RECORD", dir.path().join("kuma-dp.record"))
        .env("TMPDIR", dir.path());
    let mut p = Proc::start(cmd);
    let status = p.wait_exit(T);
    let out = p.output();
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(
        out.contains("/bin/false install transparent-proxy exited with 1")
            && out.contains("nothing was started"),
        "{out}"
    );
    assert!(!marker.exists(), "the app ran: {out}");
    assert!(
        !dir.path().join("kuma-dp.record").exists(),
        "kuma-dp ran: {out}"
    );
}

/// The rules are written only once every start-up check that can still fail has passed: a
/// status port in use stops meshinit (exit 71) before kumactl runs, so no namespace is left
/// redirected to an Envoy that never comes. A stand-in kumactl records whether it ran.
#[test]
fn the_install_step_runs_after_the_sockets_are_bound() {
    if !nix::unistd::geteuid().is_root() {
        return skip_or_fail("the install step needs root (refused up front otherwise)");
    }
    let dir = temp_dir("tproxy-install-after-bind");
    let port = free_port();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let marker = dir.path().join("kumactl-ran");
    let kumactl = dir.path().join("kumactl");
    std::fs::write(&kumactl, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&kumactl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(meshinit_bin());
    cmd.args(run_args(dir.path(), port))
        .arg(format!("--kumactl={}", kumactl.display()))
        .arg("--transparent-proxy-install=--kuma-dp-user=65534")
        .arg(format!("--status-listen=127.0.0.1:{busy_port}"))
        .args(["--", "/bin/true"])
        .env("KUMA_READINESS_PORT", port.to_string())
        .env("TMPDIR", dir.path());
    let mut p = Proc::start(cmd);
    let status = p.wait_exit(T);
    let out = p.output();
    assert_eq!(status.code(), Some(71), "{out}");
    assert!(
        out.contains("cannot listen for the status endpoint"),
        "{out}"
    );
    assert!(
        !marker.exists(),
        "kumactl ran before the check that failed: {out}"
    );
    drop(busy);
}

/// As root, in a network namespace of its own: `--transparent-proxy-install` runs the real
/// kumactl before anything starts, so the app (started proxy-first, the default with
/// redirection) finds Kuma's rules in place, and kumactl's output is passed through.
#[test]
fn the_install_step_writes_the_rules_before_the_app_starts() {
    if !nix::unistd::geteuid().is_root() {
        return skip_or_fail("the install step needs root and a network namespace");
    }
    let Some(kumactl) = kumactl() else {
        return skip_or_fail(
            "no kumactl 2.14.3: run scripts/install-mesh-deps (it builds KUMACTL_BIN)",
        );
    };
    let dir = temp_dir("tproxy-install");
    let port = free_port();
    // kuma-dp runs as the exempt user (nobody), who cannot reach the build directory: a copy.
    let fake = dir.path().join("fake-kuma-dp");
    std::fs::copy(fake_kuma_dp_bin(), &fake).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut args = run_args(dir.path(), port);
    args[0] = format!("--kuma-dp={}", fake.display());
    let args = args.join(" ");
    let script = format!(
        "ip link set lo up\n\
         exec {meshinit} {args} --kumactl={kumactl} \
         --transparent-proxy-install=--kuma-dp-user=65534 \
         --transparent-proxy-install=--ip-family-mode=ipv4 \
         -- /bin/sh -c 'iptables-nft-save -t nat | grep -c \"^-A KUMA_MESH_OUTBOUND_REDIRECT\" | sed \"s/^/app sees rules: /\"'\n",
        meshinit = meshinit_bin().display(),
        kumactl = kumactl.display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c", &script])
        .env("KUMA_READINESS_PORT", port.to_string())
        .env("TMPDIR", dir.path());
    let mut p = Proc::start(cmd);
    let status = p.wait_exit(T);
    let out = p.output();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("transparent-proxy rules installed"), "{out}");
    // kumactl's own last progress line, passed through.
    assert!(
        out.contains("transparent proxy setup completed successfully"),
        "{out}"
    );
    assert!(out.contains("app sees rules: 1"), "{out}");
}

/// A network namespace made with `ip netns add`, deleted (with its rules) when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// meshinit started with SIGCHLD ignored (a parent may leave it so; meshinit resets it only
/// once it blocks its signals, after the configuration is built): the kernel reaps
/// `iptables-save` by itself, and the rules are still read from its output rather than
/// reported unreadable. In a namespace of the test's own (`ip netns add`, deleted on drop),
/// rules by the real kumactl.
#[test]
fn the_rules_are_read_when_sigchld_was_inherited_ignored() {
    if !nix::unistd::geteuid().is_root() {
        return skip_or_fail("reading real rules needs root (a network namespace, kumactl)");
    }
    let Some(kumactl) = kumactl() else {
        return skip_or_fail(
            "no kumactl 2.14.3: run scripts/install-mesh-deps (it builds KUMACTL_BIN)",
        );
    };
    let name = format!("meshinit-tproxy-{}", std::process::id());
    let ok = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&["netns", "add", &name]) {
        return skip_or_fail("`ip netns add` failed (iproute2 missing?)");
    }
    let ns = Netns(name);
    assert!(ok(&[
        "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"
    ]));
    let installed = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(&kumactl)
        .args([
            "install",
            "transparent-proxy",
            "--kuma-dp-user",
            "65534",
            "--ip-family-mode",
            "ipv4",
        ])
        .output()
        .unwrap();
    assert!(installed.status.success(), "{installed:?}");
    let dir = temp_dir("tproxy-sigchld");
    let dp = dir.path().join("dp.yaml");
    std::fs::write(&dp, DP).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0])
        .arg(meshinit_bin())
        .arg("check")
        .arg(format!("--kuma-dp={}", fake_kuma_dp_bin().display()))
        .arg(format!("--dataplane-file={}", dp.display()))
        .args([
            "--cp-address=https://127.0.0.1:5678",
            "--kuma-dp-user=65534",
            "--",
            "/bin/true",
        ]);
    // SAFETY: signal(2) is async-signal-safe; the closure runs in the child before exec,
    // and `ip netns exec` execs meshinit with the disposition kept.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            nix::libc::signal(nix::libc::SIGCHLD, nix::libc::SIG_IGN);
            Ok(())
        });
    }
    let mut p = Proc::start(cmd);
    let status = p.wait_exit(T);
    let out = p.output();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.contains("Kuma's nat rules, read with") && out.contains("exempt uid: 65534"),
        "{out}"
    );
}
