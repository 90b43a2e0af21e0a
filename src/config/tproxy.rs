//! Transparent proxying (issue 26): whether iptables redirects this
//! workload's traffic through Envoy, what the rules say (the uid they
//! exempt, the DNS they redirect, the inbound ports they leave alone), the
//! opt-in install step, and what must be refused then, each a pure
//! function of its facts with its own message.
//!
//! The facts come from four sources, any of which turns redirection on:
//! the Dataplane's `networking.transparentProxying`, kuma-dp's
//! `--transparent-proxy` / `--transparent-proxy-config` (given through
//! `--kuma-dp-arg`), `--transparent-proxy-install` and the network
//! namespace's nat rules (`iptables-save -t nat`, read only with kuma-dp
//! and unless `--transparent-proxy off`; see `System::nat_rules`). Only the
//! rules (or the install step's arguments) say which uid is exempt, which
//! DNS is redirected and which inbound ports are excluded; without them
//! kumactl's defaults are assumed (uid 5678, every inbound port
//! redirected) and an unknown DNS is left unchecked.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::host::{Host, NatTable};
use super::resolve::Resolver;
use super::{parse, Origin, Problem, ProxyConfig};
use crate::init::user::Identity;
use crate::lifecycle::StartOrder;
use crate::mesh::dataplane::Dataplane;
use crate::mesh::tproxy::{self, PortRange, Rules};

/// `--transparent-proxy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Auto,
    On,
    Off,
}

/// How the nat rules were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RulesReading {
    /// Not read, and why (the install step writes them first).
    NotRead(&'static str),
    /// Read with these commands (`iptables-nft-save -t nat`, ...).
    Read { commands: Vec<String>, rules: Rules },
    /// They could not be read: never taken as "no redirection".
    Unreadable(String),
}

/// Which inbound TCP ports the rules send to Envoy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundRedirect {
    /// Every port but these.
    AllBut(Vec<PortRange>),
    /// None (no inbound rule, `--redirect-inbound=false`).
    Off,
}

/// DNS queries redirected to kuma-dp's DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRedirect {
    /// Where they go on 127.0.0.1 (kuma-dp's DNS proxy, 15053): the port
    /// a DNS gate asks before starting the app.
    pub port: u16,
    /// The servers whose queries are redirected; empty: all of them.
    pub servers: Vec<String>,
    /// Where this was learnt.
    pub from: String,
}

/// The opt-in first step: `kumactl install transparent-proxy ARGS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub kumactl: PathBuf,
    /// The arguments after `install transparent-proxy`.
    pub args: Vec<String>,
}

impl Install {
    /// kumactl's whole argument list.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec!["install".to_string(), "transparent-proxy".to_string()];
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// What meshinit knows about transparent proxying (with kuma-dp only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransparentProxy {
    pub mode: Mode,
    /// Redirection is on: each source that says so (empty: off).
    pub sources: Vec<String>,
    pub rules: RulesReading,
    /// The uid whose traffic the rules return (kuma-dp's must be it).
    pub exempt_uid: u32,
    /// Where `exempt_uid` was learnt.
    pub exempt_uid_from: String,
    /// `None`: not redirected, or unknown (see `rules`).
    pub dns: Option<DnsRedirect>,
    /// `None`: unknown (the rules could not be read).
    pub inbound: Option<InboundRedirect>,
    pub install: Option<Install>,
}

impl TransparentProxy {
    pub fn active(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Whether inbound TCP to `port` reaches its listener without Envoy;
    /// `None` when the rules are unknown.
    pub fn inbound_excluded(&self, port: u16) -> Option<bool> {
        match self.inbound.as_ref()? {
            InboundRedirect::Off => Some(true),
            InboundRedirect::AllBut(ex) => Some(ex.iter().any(|r| r.contains(port))),
        }
    }
}

/// The section, with kuma-dp only (`None` in plain init mode): the mode,
/// the sources, the rules read (or the install step's arguments), the
/// exempt uid and the DNS.
pub(super) fn section(
    r: &mut Resolver,
    host: &dyn Host,
    dataplane: Option<&Dataplane>,
    dataplane_file: Option<&str>,
    kuma_dp_args: &[String],
) -> Option<TransparentProxy> {
    let mode = match r
        .value("transparent-proxy", parse::choice(&["auto", "on", "off"]))
        .as_str()
    {
        "on" => Mode::On,
        "off" => Mode::Off,
        _ => Mode::Auto,
    };
    let install_raw = r.raw("transparent-proxy-install").cloned();
    if mode == Mode::Off {
        if let Some(raw) = install_raw {
            r.problem(
                "transparent-proxy-install",
                &raw.origin,
                "installs the rules while --transparent-proxy is off; drop one of them".into(),
            );
        }
        return None;
    }
    let mut sources = Vec::new();
    if mode == Mode::On {
        sources.push(format!(
            "--transparent-proxy on (from {})",
            r.origin("transparent-proxy")
        ));
    }
    if let (Some(line), Some(file)) = (
        dataplane.and_then(|d| d.transparent_proxying),
        dataplane_file,
    ) {
        sources.push(format!(
            "Dataplane networking.transparentProxying ({file}:{line})"
        ));
    }
    if let Some(flag) = tproxy::kuma_dp_args(kuma_dp_args).transparent_proxy {
        sources.push(format!(
            "kuma-dp argument {flag} (from {})",
            r.origin("kuma-dp-arg")
        ));
    }
    let install = install_raw.map(|raw| {
        sources.push(format!("--transparent-proxy-install (from {})", raw.origin));
        let args: Vec<String> = raw.values.into_iter().filter(|a| !a.is_empty()).collect();
        (args, raw.origin)
    });

    let mut tp = TransparentProxy {
        mode,
        sources,
        rules: RulesReading::NotRead("not read"),
        exempt_uid: tproxy::DEFAULT_UID,
        exempt_uid_from: "kumactl's default, user kuma-dp".into(),
        dns: None,
        inbound: None,
        install: None,
    };
    match install {
        Some((args, origin)) => {
            install_facts(r, host, &mut tp, &args, &origin);
            tp.install = install_step(r, host, args, &origin);
        }
        None => {
            let reading = host.nat_rules();
            rules_facts(&mut tp, reading);
        }
    }
    Some(tp)
}

/// The facts the install step's arguments give: the rules do not exist
/// yet when `check` runs.
fn install_facts(
    r: &mut Resolver,
    host: &dyn Host,
    tp: &mut TransparentProxy,
    args: &[String],
    origin: &Origin,
) {
    tp.rules = RulesReading::NotRead("--transparent-proxy-install writes them before anything starts; the facts below are its arguments'");
    let facts = tproxy::install_args(args);
    // kumactl looks the user up (a name or a uid) and refuses one that
    // /etc/passwd does not have (research-26 §2): without
    // `--kuma-dp-user`, its default user `kuma-dp`.
    let (user, given) = match &facts.kuma_dp_user {
        Some(u) => (u.as_str(), true),
        None => ("kuma-dp", false),
    };
    let what = if given {
        format!("--kuma-dp-user {user}")
    } else {
        format!("kumactl's default user {user} (no --kuma-dp-user)")
    };
    match parse::user_spec(user).and_then(|spec| host.user(&spec)) {
        // A uid without a passwd entry resolves to its number as its name.
        Ok(id) if id.name != id.uid.to_string() => {
            tp.exempt_uid = id.uid.as_raw();
            tp.exempt_uid_from = format!("kumactl {what} (from {origin})");
        }
        Ok(id) => r.problem(
            "transparent-proxy-install",
            origin,
            format!("{what}: uid {} has no entry in this container's /etc/passwd, and kumactl refuses such a user; add one (useradd --system --uid {} kuma-dp)", id.uid, id.uid),
        ),
        Err(e) => r.problem(
            "transparent-proxy-install",
            origin,
            format!("{what}: {e}; kumactl needs the user in this container's /etc/passwd (useradd --system --uid 5678 kuma-dp) or another --kuma-dp-user"),
        ),
    }
    if facts.redirect_dns {
        tp.dns = Some(DnsRedirect {
            port: tproxy::DNS_PORT,
            servers: Vec::new(),
            from: format!("kumactl --redirect-dns (from {origin})"),
        });
    }
    tp.inbound = Some(if facts.no_inbound {
        InboundRedirect::Off
    } else {
        InboundRedirect::AllBut(facts.excluded_inbound)
    });
}

/// The install step itself: kumactl found, and meshinit able to run it
/// (kumactl checks only the euid and then fails with a misleading
/// "missing table: nat" without CAP_NET_ADMIN, research-26 §2).
fn install_step(
    r: &mut Resolver,
    host: &dyn Host,
    args: Vec<String>,
    origin: &Origin,
) -> Option<Install> {
    let mut ok = true;
    if host.euid() != 0 {
        ok = false;
        r.problem(
            "transparent-proxy-install",
            origin,
            format!(
                "kumactl install transparent-proxy needs root, and meshinit runs as uid {}; run meshinit as root (the app and kuma-dp can still run as other users with --app-user and --kuma-dp-user), or install the rules before meshinit starts",
                host.euid()
            ),
        );
    }
    if !host.net_admin() {
        ok = false;
        r.problem(
            "transparent-proxy-install",
            origin,
            "writing iptables rules needs CAP_NET_ADMIN, which meshinit does not have; give the container NET_ADMIN (docker run --cap-add NET_ADMIN, podman --cap-add NET_ADMIN), or install the rules before meshinit starts".into(),
        );
    }
    let text = r.text_or_default("kumactl");
    let kumactl = match host.executable(&text, None) {
        Ok(p) => Some(p),
        Err(e) => {
            let o = r.origin("kumactl");
            r.problem(
                "kumactl",
                &o,
                format!("kumactl {e}; install kumactl (the same version as kuma-dp) or pass --kumactl PATH"),
            );
            None
        }
    };
    Some(Install {
        kumactl: kumactl?,
        args,
    })
    .filter(|_| ok)
}

/// The facts the nat rules give, when they could be read.
fn rules_facts(tp: &mut TransparentProxy, reading: Result<Vec<NatTable>, String>) {
    let tables = match reading {
        Ok(t) => t,
        Err(why) => {
            tp.rules = RulesReading::Unreadable(why);
            return;
        }
    };
    let mut rules = Rules::default();
    let mut read_with = None;
    for t in &tables {
        let one = tproxy::parse(&t.text);
        if one.active() && read_with.is_none() {
            read_with = Some(t.command.clone());
        }
        rules.merge(one);
    }
    let commands: Vec<String> = tables.into_iter().map(|t| t.command).collect();
    if let Some(cmd) = read_with {
        tp.sources
            .push(format!("Kuma's nat rules, read with {cmd}"));
        if let Some(uid) = rules.exempt_uids.first() {
            tp.exempt_uid = *uid;
            tp.exempt_uid_from = format!("the nat rules' --uid-owner, read with {cmd}");
        }
        if let Some(port) = rules.dns_port {
            tp.dns = Some(DnsRedirect {
                port,
                servers: rules.dns_servers.clone(),
                from: format!("the nat rules, read with {cmd}"),
            });
        }
        tp.inbound = Some(if rules.inbound {
            InboundRedirect::AllBut(rules.excluded_inbound.clone())
        } else {
            InboundRedirect::Off
        });
    }
    tp.rules = RulesReading::Read { commands, rules };
}

/// "uid N (name)" for a message.
fn uid_text(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) if n != uid.to_string() => format!("uid {uid} ({n})"),
        _ => format!("uid {uid}"),
    }
}

/// Who a process runs as, and where that came from: `origin` is `None`
/// when it is meshinit's own uid (no `--app-user` / `--kuma-dp-user`).
#[derive(Clone, Debug)]
pub(super) struct RunsAs<'a> {
    pub uid: u32,
    pub name: Option<&'a str>,
    pub origin: Option<Origin>,
}

/// kuma-dp (and its DNS, which runs as kuma-dp's uid) must run as the
/// exempt uid: otherwise Envoy's own outbound traffic is redirected back
/// into Envoy and its DNS queries into its own DNS proxy.
pub(super) fn kuma_dp_not_exempt(tp: &TransparentProxy, kuma_dp: &RunsAs) -> Option<Problem> {
    if kuma_dp.uid == tp.exempt_uid {
        return None;
    }
    let who = match &kuma_dp.origin {
        Some(_) => format!(
            "kuma-dp would run as {}",
            uid_text(kuma_dp.uid, kuma_dp.name)
        ),
        None => format!(
            "kuma-dp would run as meshinit's own {} (no --kuma-dp-user)",
            uid_text(kuma_dp.uid, kuma_dp.name)
        ),
    };
    Some(Problem {
        message: format!(
            "transparent proxying: {who}, but the rules exempt uid {} ({}): Envoy's own calls would be redirected back into Envoy and its DNS queries into its own DNS proxy; run kuma-dp as that user with --kuma-dp-user {}",
            tp.exempt_uid, tp.exempt_uid_from, tp.exempt_uid
        ),
        origin: kuma_dp.origin.clone(),
    })
}

/// The app must not run as the exempt uid: its traffic would bypass Envoy
/// (no mTLS, no policy, no `.mesh` names) without a word.
pub(super) fn app_exempt(tp: &TransparentProxy, app: &RunsAs) -> Option<Problem> {
    if app.uid != tp.exempt_uid {
        return None;
    }
    let who = match &app.origin {
        Some(_) => format!("the app would run as {}", uid_text(app.uid, app.name)),
        None => format!(
            "the app would run as meshinit's own {} (no --app-user)",
            uid_text(app.uid, app.name)
        ),
    };
    Some(Problem {
        message: format!(
            "transparent proxying: {who}, which the rules exempt ({}): its traffic would silently bypass the mesh (no mTLS, no policies, no .mesh names); run the app as another user with --app-user",
            tp.exempt_uid_from
        ),
        origin: app.origin.clone(),
    })
}

/// An explicit `--start-order app-first`: the app would start before Envoy
/// listens and lose its first calls and lookups (measured: each lookup
/// blocks 10 s and fails, research-26 §7).
pub(super) fn app_first_given(order: StartOrder, given: Option<&Origin>) -> Option<Problem> {
    match (order, given) {
        (StartOrder::AppFirst, Some(origin)) => Some(Problem {
            message: "proxy.start-order: app-first with transparent proxying: the app would start before Envoy listens and every outbound call and DNS lookup it makes until then fails (each lookup blocks 10 s first); drop it (proxy-first is the default with redirection) or give proxy-first".into(),
            origin: Some(origin.clone()),
        }),
        _ => None,
    }
}

/// DNS redirected to kuma-dp's DNS while kuma-dp is told not to serve it:
/// every lookup of the app would go unanswered.
pub(super) fn dns_off(tp: &TransparentProxy, disabled: Option<(&str, Origin)>) -> Option<Problem> {
    let (dns, (flag, origin)) = (tp.dns.as_ref()?, disabled?);
    Some(Problem {
        message: format!(
            "transparent proxying: DNS queries are redirected to kuma-dp's DNS on port {} ({}), but kuma-dp is given {flag}: every lookup of the app would go unanswered; drop {flag}, or install the rules without --redirect-dns",
            dns.port, dns.from
        ),
        origin: Some(origin),
    })
}

/// A port of kuma-dp's or Envoy's, and what it is.
pub(super) type Reserved = (u16, &'static str);

/// meshinit's status port: not one of Envoy's or kuma-dp's (Envoy would
/// fail to bind it and reject its whole listener update, research-26
/// §8.2), and when reachable from outside (a non-loopback address), not
/// redirected to Envoy's inbound: it would then be unreachable whenever
/// Envoy is down, and in a strict-mTLS mesh even while it is up (§8.3).
/// Loopback traffic is never redirected. `Ok(Some)`: a warning (the rules
/// are unknown).
pub(super) fn status_port(
    tp: &TransparentProxy,
    listen: Option<(SocketAddr, Origin)>,
    reserved: &[Reserved],
) -> Result<Option<String>, Problem> {
    let Some((addr, origin)) = listen else {
        return Ok(None);
    };
    let port = addr.port();
    if let Some((_, what)) = reserved.iter().find(|(p, _)| *p == port) {
        return Err(Problem {
            message: format!(
                "status.listen: port {port} is {what} with transparent proxying: Envoy would fail to bind its listener and reject the whole update; pick another port"
            ),
            origin: Some(origin),
        });
    }
    if addr.ip().is_loopback() {
        return Ok(None);
    }
    match tp.inbound_excluded(port) {
        Some(true) => Ok(None),
        Some(false) => Err(Problem {
            message: format!(
                "status.listen: {addr} is redirected to Envoy's inbound listener by the transparent-proxy rules: unreachable from outside whenever Envoy is down (and in an mTLS mesh even while it is up); exclude it (kumactl install transparent-proxy --exclude-inbound-ports {port}) or listen on 127.0.0.1"
            ),
            origin: Some(origin),
        }),
        None => Ok(Some(format!(
            "status.listen {addr}: cannot tell whether the transparent-proxy rules exclude port {port} (the rules could not be read); kumactl excludes no inbound port by default: give it --exclude-inbound-ports {port}, or listen on 127.0.0.1"
        ))),
    }
}

/// An inbound without a `serviceProbe`: with redirection kuma-dp starts
/// first, and kuma-cp counts such an inbound healthy as soon as kuma-dp
/// connects, so clients would be sent to an app that is not up yet.
pub(super) fn unprobed_inbounds(ports: &[u16], origin: Option<Origin>) -> Option<Problem> {
    if ports.is_empty() {
        return None;
    }
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Some(Problem {
        message: format!(
            "proxy.dataplane-file: inbound port(s) {list} have no serviceProbe: with transparent proxying kuma-dp starts before the app, and kuma-cp would count the inbound healthy before the app can serve; add `serviceProbe: {{tcp: {{}}}}` to each inbound"
        ),
        origin,
    })
}

/// `--dns-enabled=false` given to kuma-dp, or `KUMA_DNS_ENABLED=false` in
/// the environment kuma-dp inherits; the flag wins as in kuma-dp (its
/// flags override its environment).
pub(super) fn kuma_dp_dns_disabled(
    args: &[String],
    args_origin: &Origin,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, Origin)> {
    let given = args
        .iter()
        .any(|a| a == "--dns-enabled" || a.starts_with("--dns-enabled="));
    if given {
        return tproxy::kuma_dp_args(args)
            .dns_disabled
            .map(|f| (f, args_origin.clone()));
    }
    env("KUMA_DNS_ENABLED")
        .filter(|v| matches!(v.trim(), "0" | "f" | "F" | "false" | "FALSE" | "False"))
        .map(|v| {
            (
                format!("KUMA_DNS_ENABLED={v}"),
                Origin::Env("KUMA_DNS_ENABLED".into()),
            )
        })
}

/// Every refusal of transparent proxying, with redirection on; warnings
/// for what cannot be told. Each check is one of the pure functions above.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_all(
    r: &mut Resolver,
    host: &dyn Host,
    tp: &TransparentProxy,
    app_user: Option<&Identity>,
    proxy: &ProxyConfig,
    start_order: StartOrder,
    status_listen: Option<SocketAddr>,
    warnings: &mut Vec<String>,
) {
    let own = host.euid();
    let runs_as = |id: Option<&Identity>, flag: &str, r: &Resolver| match id {
        Some(id) => (id.uid.as_raw(), Some(id.name.clone()), Some(r.origin(flag))),
        None => (own, None, None),
    };
    let mut found = Vec::new();
    let (uid, name, origin) = runs_as(proxy.user.as_ref(), "kuma-dp-user", r);
    found.extend(kuma_dp_not_exempt(
        tp,
        &RunsAs {
            uid,
            name: name.as_deref(),
            origin,
        },
    ));
    let (uid, name, origin) = runs_as(app_user, "app-user", r);
    found.extend(app_exempt(
        tp,
        &RunsAs {
            uid,
            name: name.as_deref(),
            origin,
        },
    ));
    let given = r.raw("start-order").map(|raw| raw.origin.clone());
    found.extend(app_first_given(start_order, given.as_ref()));
    let extra = r
        .raw("kuma-dp-arg")
        .map(|raw| raw.values.clone())
        .unwrap_or_default();
    let disabled = kuma_dp_dns_disabled(&extra, &r.origin("kuma-dp-arg"), &|k| host.env(k));
    found.extend(dns_off(
        tp,
        disabled.as_ref().map(|(f, o)| (f.as_str(), o.clone())),
    ));
    let (outbound_port, inbound_port) = match &tp.rules {
        RulesReading::Read { rules, .. } => (
            rules.outbound_port.unwrap_or(tproxy::OUTBOUND_PORT),
            rules.inbound_port.unwrap_or(tproxy::INBOUND_PORT),
        ),
        _ => (tproxy::OUTBOUND_PORT, tproxy::INBOUND_PORT),
    };
    let reserved: [Reserved; 6] = [
        (
            proxy.admin.tcp_port.unwrap_or(tproxy::DEFAULT_ADMIN_PORT),
            "Envoy's admin port (kuma-cp adds a listener on it at the data plane address)",
        ),
        (proxy.ready_url.port, "kuma-dp's readiness port"),
        (
            outbound_port,
            "Envoy's outbound port (the rules' redirect target)",
        ),
        (
            inbound_port,
            "Envoy's inbound port (the rules' redirect target)",
        ),
        (tproxy::DNS_PORT, "kuma-dp's DNS port"),
        (tproxy::ENVOY_DNS_PORT, "Envoy's DNS port"),
    ];
    let listen = status_listen.map(|a| (a, r.origin("status-listen")));
    match status_port(tp, listen, &reserved) {
        Ok(warning) => warnings.extend(warning),
        Err(p) => found.push(p),
    }
    if let (Some(dp), Some(_)) = (&proxy.dataplane, &proxy.dataplane_file) {
        let ports: Vec<u16> = dp
            .inbounds
            .iter()
            .filter(|i| !i.has_service_probe)
            .map(|i| i.port)
            .collect();
        found.extend(unprobed_inbounds(&ports, Some(r.origin("dataplane-file"))));
    }
    r.problems.extend(found);
}

/// The line `check` prints for rules that could not be read: never "no
/// redirection".
pub fn unreadable_text(why: &str) -> String {
    if why.starts_with("no iptables-save") {
        format!("cannot read the rules: {why}")
    } else {
        format!("cannot read the rules (needs CAP_NET_ADMIN): {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TransparentProxy {
        TransparentProxy {
            mode: Mode::Auto,
            sources: vec!["test".into()],
            rules: RulesReading::NotRead("test"),
            exempt_uid: 5678,
            exempt_uid_from: "the nat rules".into(),
            dns: Some(DnsRedirect {
                port: 15053,
                servers: vec!["10.0.0.53".into()],
                from: "the nat rules".into(),
            }),
            inbound: Some(InboundRedirect::AllBut(vec![PortRange {
                first: 9911,
                last: 9911,
            }])),
            install: None,
        }
    }

    fn flag(f: &str) -> Origin {
        Origin::Flag(f.into())
    }

    #[test]
    fn kuma_dp_must_run_as_the_exempt_uid() {
        let cases: &[(u32, Option<Origin>, Option<&str>)] = &[
            (5678, Some(flag("kuma-dp-user")), None),
            (
                990,
                Some(flag("kuma-dp-user")),
                Some("kuma-dp would run as uid 990 (kuma), but the rules exempt uid 5678"),
            ),
            (
                0,
                None,
                Some("kuma-dp would run as meshinit's own uid 0 (root) (no --kuma-dp-user)"),
            ),
        ];
        for (uid, origin, want) in cases {
            let name = match uid {
                990 => Some("kuma"),
                0 => Some("root"),
                _ => None,
            };
            let got = kuma_dp_not_exempt(
                &tp(),
                &RunsAs {
                    uid: *uid,
                    name,
                    origin: origin.clone(),
                },
            );
            match want {
                None => assert!(got.is_none(), "{uid}: {got:?}"),
                Some(w) => {
                    let p = got.expect("refused");
                    assert!(p.message.contains(w), "{p}");
                    assert!(p.message.contains("--kuma-dp-user 5678"), "{p}");
                    assert_eq!(&p.origin, origin);
                }
            }
        }
    }

    #[test]
    fn the_app_must_not_run_as_the_exempt_uid() {
        let cases: &[(u32, Option<Origin>, Option<&str>)] = &[
            (1000, Some(flag("app-user")), None),
            (0, None, None),
            (
                5678,
                Some(flag("app-user")),
                Some("the app would run as uid 5678, which the rules exempt"),
            ),
            (
                5678,
                None,
                Some("the app would run as meshinit's own uid 5678 (no --app-user)"),
            ),
        ];
        for (uid, origin, want) in cases {
            let got = app_exempt(
                &tp(),
                &RunsAs {
                    uid: *uid,
                    name: None,
                    origin: origin.clone(),
                },
            );
            match want {
                None => assert!(got.is_none(), "{uid}: {got:?}"),
                Some(w) => {
                    let p = got.expect("refused");
                    assert!(
                        p.message.contains(w) && p.message.contains("--app-user"),
                        "{p}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_an_explicit_app_first_is_refused() {
        let o = flag("start-order");
        assert!(app_first_given(StartOrder::AppFirst, Some(&o))
            .is_some_and(|p| p.message.contains("app-first") && p.origin == Some(o.clone())));
        assert!(app_first_given(StartOrder::AppFirst, None).is_none());
        assert!(app_first_given(StartOrder::ProxyFirst, Some(&o)).is_none());
    }

    #[test]
    fn redirected_dns_needs_kuma_dp_dns() {
        let off = Some(("--dns-enabled=false", flag("kuma-dp-arg")));
        let p = dns_off(&tp(), off.clone()).expect("refused");
        assert!(
            p.message.contains("port 15053") && p.message.contains("--dns-enabled=false"),
            "{p}"
        );
        assert!(dns_off(&tp(), None).is_none());
        let no_dns = TransparentProxy { dns: None, ..tp() };
        assert!(dns_off(&no_dns, off).is_none());
    }

    #[test]
    fn reads_whether_kuma_dp_dns_is_off() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let o = flag("kuma-dp-arg");
        let env_off = |k: &str| (k == "KUMA_DNS_ENABLED").then(|| "false".to_string());
        let none = |_: &str| None;
        assert_eq!(
            kuma_dp_dns_disabled(&s(&["--dns-enabled=false"]), &o, &none).map(|d| d.0),
            Some("--dns-enabled=false".into())
        );
        assert_eq!(
            kuma_dp_dns_disabled(&s(&[]), &o, &env_off),
            Some((
                "KUMA_DNS_ENABLED=false".into(),
                Origin::Env("KUMA_DNS_ENABLED".into())
            ))
        );
        // The flag wins over the environment, as in kuma-dp.
        assert_eq!(
            kuma_dp_dns_disabled(&s(&["--dns-enabled=true"]), &o, &env_off),
            None
        );
        assert_eq!(kuma_dp_dns_disabled(&s(&[]), &o, &none), None);
    }

    #[test]
    fn the_status_port_must_be_reachable_and_not_envoys() {
        let reserved: &[Reserved] = &[
            (9901, "Envoy's admin port"),
            (15006, "Envoy's inbound port"),
        ];
        let at = |a: &str| Some((a.parse::<SocketAddr>().unwrap(), flag("status-listen")));
        let known = tp();
        let unknown = TransparentProxy {
            inbound: None,
            ..tp()
        };
        let no_inbound = TransparentProxy {
            inbound: Some(InboundRedirect::Off),
            ..tp()
        };
        // (tp, listen, refused with, warned)
        let cases: Vec<(&TransparentProxy, _, Option<&str>, bool)> = vec![
            (&known, None, None, false),
            (&known, at("127.0.0.1:9000"), None, false),
            (&known, at("[::1]:9000"), None, false),
            (&known, at("0.0.0.0:9911"), None, false),
            (
                &known,
                at("0.0.0.0:9000"),
                Some("redirected to Envoy's inbound listener"),
                false,
            ),
            (
                &known,
                at("10.0.0.2:9000"),
                Some("--exclude-inbound-ports 9000"),
                false,
            ),
            (
                &known,
                at("127.0.0.1:9901"),
                Some("port 9901 is Envoy's admin port"),
                false,
            ),
            (
                &known,
                at("0.0.0.0:15006"),
                Some("Envoy's inbound port"),
                false,
            ),
            (&no_inbound, at("0.0.0.0:9000"), None, false),
            (&unknown, at("0.0.0.0:9000"), None, true),
            (&unknown, at("127.0.0.1:9000"), None, false),
        ];
        for (tp, listen, refused, warned) in cases {
            let shown = format!("{listen:?}");
            match (status_port(tp, listen, reserved), refused) {
                (Err(p), Some(w)) => assert!(p.message.contains(w), "{shown}: {p}"),
                (Ok(warning), None) => {
                    assert_eq!(warning.is_some(), warned, "{shown}: {warning:?}")
                }
                (got, _) => panic!("{shown}: {got:?}"),
            }
        }
    }

    #[test]
    fn every_inbound_needs_a_service_probe() {
        let o = Some(flag("dataplane-file"));
        assert!(unprobed_inbounds(&[], o.clone()).is_none());
        let p = unprobed_inbounds(&[8080, 8081], o).expect("refused");
        assert!(
            p.message.contains("8080, 8081") && p.message.contains("serviceProbe"),
            "{p}"
        );
    }

    #[test]
    fn unreadable_rules_are_not_no_redirection() {
        let mut t = TransparentProxy {
            sources: Vec::new(),
            dns: None,
            inbound: None,
            ..tp()
        };
        rules_facts(&mut t, Err("meshinit lacks CAP_NET_ADMIN".into()));
        assert_eq!(
            t.rules,
            RulesReading::Unreadable("meshinit lacks CAP_NET_ADMIN".into())
        );
        assert!(!t.active() && t.inbound.is_none() && t.dns.is_none());
        rules_facts(
            &mut t,
            Ok(vec![NatTable {
                command: "iptables-nft-save -t nat".into(),
                text: include_str!("../../tests/data/iptables/nft-redirect-dns.txt").into(),
            }]),
        );
        assert!(t.active(), "{t:?}");
        assert_eq!(t.exempt_uid, 5678);
        assert!(t.exempt_uid_from.contains("iptables-nft-save"));
        assert_eq!(t.dns.as_ref().map(|d| d.port), Some(15053));
        assert_eq!(t.inbound_excluded(9911), Some(true));
        assert_eq!(t.inbound_excluded(9912), Some(false));
    }
}
