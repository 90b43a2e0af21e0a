//! Transparent proxying: what `iptables-save -t nat` says about the rules
//! `kumactl install transparent-proxy` wrote, and what kumactl's and
//! kuma-dp's arguments say about them. Pure: the text comes from the
//! caller (config's host runs the commands), so every backend's output is
//! tested here on real captures (tests/data/iptables, written by kumactl
//! 2.14.3 in throw-away network namespaces).
//!
//! The rules (Kuma 2.14.3 `pkg/transparentproxy/iptables/builder/
//! builder_table_nat.go`): PREROUTING jumps to `KUMA_MESH_INBOUND`, which
//! returns the excluded inbound ports and sends the rest to
//! `KUMA_MESH_INBOUND_REDIRECT` (`REDIRECT --to-ports 15006`); OUTPUT jumps
//! to `KUMA_MESH_OUTBOUND`, which returns the kuma-dp uid's traffic
//! (`--uid-owner U -j RETURN`, not the negated one) and sends the rest to
//! `KUMA_MESH_OUTBOUND_REDIRECT` (15001); with `--redirect-dns`, OUTPUT
//! sends UDP/53 to each resolv.conf server (`-d S`) to 15053 (every server
//! with `--redirect-all-dns-traffic`: no `-d`).

/// Envoy's outbound listener (kumactl's default redirect port).
pub const OUTBOUND_PORT: u16 = 15001;
/// Envoy's inbound listener.
pub const INBOUND_PORT: u16 = 15006;
/// kuma-dp's DNS proxy (CoreDNS or the embedded one).
pub const DNS_PORT: u16 = 15053;
/// Envoy's DNS listener behind kuma-dp's DNS.
pub const ENVOY_DNS_PORT: u16 = 15054;
/// Envoy's admin port when the Dataplane sets none (kuma-cp also opens a
/// listener on it at the data plane address, research-26 §8.2).
pub const DEFAULT_ADMIN_PORT: u16 = 9901;
/// The uid kumactl exempts when given no `--kuma-dp-user` (user `kuma-dp`).
pub const DEFAULT_UID: u32 = 5678;
/// The prefix of every chain kumactl writes.
pub const CHAIN_PREFIX: &str = "KUMA_MESH";

/// A port or an inclusive range of ports (`--dport 80`, `--dport 80:90`,
/// `--dports 80,90:99`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// What one `iptables-save -t nat` (either backend, either family) says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// `:KUMA_MESH_OUTBOUND` exists and OUTPUT jumps to it.
    pub outbound: bool,
    /// `:KUMA_MESH_INBOUND` exists and PREROUTING jumps to it.
    pub inbound: bool,
    /// Where outbound TCP goes (`KUMA_MESH_OUTBOUND_REDIRECT --to-ports`).
    pub outbound_port: Option<u16>,
    /// Where inbound TCP goes (`KUMA_MESH_INBOUND_REDIRECT --to-ports`).
    pub inbound_port: Option<u16>,
    /// The uids whose traffic is returned (`--uid-owner U -j RETURN`,
    /// never the negated `! --uid-owner`): kuma-dp's.
    pub exempt_uids: Vec<u32>,
    /// Where redirected DNS goes (`--dport 53 ... --to-ports N`).
    pub dns_port: Option<u16>,
    /// The DNS servers whose queries are redirected; empty with `dns_port`
    /// set means every server (`--redirect-all-dns-traffic`).
    pub dns_servers: Vec<String>,
    /// Inbound ports returned before the redirect (`KUMA_MESH_INBOUND ...
    /// --dport P -j RETURN`, multiport lists and ranges included).
    pub excluded_inbound: Vec<PortRange>,
}

impl Rules {
    /// Redirection is active in this table: either direction's jump exists.
    pub fn active(&self) -> bool {
        self.outbound || self.inbound
    }

    /// Whether inbound TCP to `port` reaches the app without Envoy.
    pub fn inbound_excluded(&self, port: u16) -> bool {
        !self.inbound || self.excluded_inbound.iter().any(|r| r.contains(port))
    }

    /// Folds another table's facts in (nf_tables and legacy, IPv4 and IPv6):
    /// active if either is; lists merged without repeats.
    pub fn merge(&mut self, other: Rules) {
        self.outbound |= other.outbound;
        self.inbound |= other.inbound;
        self.outbound_port = self.outbound_port.or(other.outbound_port);
        self.inbound_port = self.inbound_port.or(other.inbound_port);
        self.dns_port = self.dns_port.or(other.dns_port);
        for uid in other.exempt_uids {
            if !self.exempt_uids.contains(&uid) {
                self.exempt_uids.push(uid);
            }
        }
        for s in other.dns_servers {
            if !self.dns_servers.contains(&s) {
                self.dns_servers.push(s);
            }
        }
        for r in other.excluded_inbound {
            if !self.excluded_inbound.contains(&r) {
                self.excluded_inbound.push(r);
            }
        }
    }
}

/// Reads `iptables-save` output (stdout only: nft's warning about legacy
/// tables goes to stderr, and a `#` line is skipped anyway). Only the nat
/// table is read; a text without Kuma's chains gives `Rules::default()`.
pub fn parse(save: &str) -> Rules {
    let mut out = Rules::default();
    let mut in_nat = false;
    let mut chains: Vec<String> = Vec::new();
    let mut jumps_out = false;
    let mut jumps_in = false;
    for line in save.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table.trim() == "nat";
            continue;
        }
        if !in_nat {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if name.starts_with(CHAIN_PREFIX) {
                chains.push(name.to_string());
            }
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let words = split(rule);
        let Some(chain) = words.first().map(String::as_str) else {
            continue;
        };
        let target = arg(&words, "-j");
        let to_port = arg(&words, "--to-ports").and_then(|p| p.parse::<u16>().ok());
        let outbound_chain = format!("{CHAIN_PREFIX}_OUTBOUND");
        let inbound_chain = format!("{CHAIN_PREFIX}_INBOUND");
        match (chain, target) {
            ("OUTPUT", Some(t)) if t == outbound_chain => jumps_out = true,
            ("PREROUTING", Some(t)) if t == inbound_chain => jumps_in = true,
            _ => {}
        }
        if chain == format!("{CHAIN_PREFIX}_OUTBOUND_REDIRECT") && to_port.is_some() {
            out.outbound_port = to_port;
        } else if chain == format!("{CHAIN_PREFIX}_INBOUND_REDIRECT") && to_port.is_some() {
            out.inbound_port = to_port;
        } else if chain == "OUTPUT"
            && to_port.is_some()
            && !negated(&words, "--dport")
            && arg(&words, "--dport") == Some("53")
        {
            out.dns_port = to_port;
            if let Some(server) = arg(&words, "-d").filter(|_| !negated(&words, "-d")) {
                let server = server.split('/').next().unwrap_or(server).to_string();
                if !out.dns_servers.contains(&server) {
                    out.dns_servers.push(server);
                }
            }
        }
        if target == Some("RETURN") && !negated(&words, "--uid-owner") {
            // `--uid-owner 5678` or a range `5678-5680`: the first uid.
            let uid = arg(&words, "--uid-owner")
                .and_then(|u| u.split('-').next())
                .and_then(|u| u.parse::<u32>().ok());
            if let Some(uid) = uid.filter(|u| !out.exempt_uids.contains(u)) {
                out.exempt_uids.push(uid);
            }
        }
        if chain == inbound_chain && target == Some("RETURN") {
            let ports = arg(&words, "--dport")
                .filter(|_| !negated(&words, "--dport"))
                .or_else(|| arg(&words, "--dports").filter(|_| !negated(&words, "--dports")));
            for range in ports.iter().flat_map(|p| p.split(',')) {
                if let Some(r) = port_range(range) {
                    if !out.excluded_inbound.contains(&r) {
                        out.excluded_inbound.push(r);
                    }
                }
            }
        }
    }
    let has = |suffix: &str| {
        chains
            .iter()
            .any(|c| *c == format!("{CHAIN_PREFIX}{suffix}"))
    };
    out.outbound = jumps_out && has("_OUTBOUND");
    out.inbound = jumps_in && has("_INBOUND");
    out
}

/// `80` or `80:90` (iptables' range form).
fn port_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.split_once(':').unwrap_or((s, s));
    let first = a.trim().parse().ok()?;
    let last = b.trim().parse().ok()?;
    (first <= last).then_some(PortRange { first, last })
}

/// The word after `flag`.
fn arg<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let i = words.iter().position(|w| w == flag)?;
    words.get(i + 1).map(String::as_str)
}

/// `! flag`: the match is negated.
fn negated(words: &[String], flag: &str) -> bool {
    words
        .iter()
        .position(|w| w == flag)
        .is_some_and(|i| i > 0 && words[i - 1] == "!")
}

/// Splits a rule as iptables-save quotes it: words separated by spaces,
/// `"..."` one word (comments have spaces) with `\"` and `\\` inside.
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// What `kumactl install transparent-proxy ARGS` will write, as far as
/// meshinit checks it: read from the arguments (the install step runs
/// before anything starts, so the rules cannot be read yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallArgs {
    /// `--kuma-dp-user` (`--kuma-dp-uid`): a name or a uid; kumactl's
    /// default is the user `kuma-dp`, uid 5678.
    pub kuma_dp_user: Option<String>,
    /// `--redirect-dns` or `--redirect-all-dns-traffic`.
    pub redirect_dns: bool,
    /// `--exclude-inbound-ports a,b` (kumactl takes single ports only).
    pub excluded_inbound: Vec<PortRange>,
    /// `--redirect-inbound=false`: no inbound redirection at all.
    pub no_inbound: bool,
}

/// Reads kumactl's flags in both forms (`--flag value`, `--flag=value`);
/// flags it does not know are kumactl's business.
pub fn install_args(args: &[String]) -> InstallArgs {
    let mut out = InstallArgs::default();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let value = |it: &mut std::iter::Peekable<std::slice::Iter<'_, String>>| {
            inline.clone().or_else(|| it.next().cloned())
        };
        match name {
            "--kuma-dp-user" | "--kuma-dp-uid" => out.kuma_dp_user = value(&mut it),
            "--redirect-dns" | "--redirect-all-dns-traffic" => {
                out.redirect_dns = inline.as_deref() != Some("false");
            }
            "--redirect-inbound" => out.no_inbound = inline.as_deref() == Some("false"),
            "--exclude-inbound-ports" => {
                for p in value(&mut it).iter().flat_map(|v| v.split(',')) {
                    out.excluded_inbound.extend(port_range(p));
                }
            }
            _ => {}
        }
    }
    out
}

/// What kuma-dp's own arguments say (`--kuma-dp-arg`): kuma-dp installs no
/// rule, but `--transparent-proxy` / `--transparent-proxy-config` tell
/// kuma-cp they exist, and `--dns-enabled=false` turns its DNS off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KumaDpArgs {
    /// The flag that says redirection is on, as given.
    pub transparent_proxy: Option<String>,
    /// `--dns-enabled=false` (or `=0`, `=f`...), as given.
    pub dns_disabled: Option<String>,
}

pub fn kuma_dp_args(args: &[String]) -> KumaDpArgs {
    let mut out = KumaDpArgs::default();
    for a in args {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a.as_str(), None),
        };
        match name {
            "--transparent-proxy" => {
                // A boolean flag: `--transparent-proxy` or `=true`.
                let on = inline.is_none_or(|v| v == "true" || v == "1");
                out.transparent_proxy = on.then(|| a.clone());
            }
            "--transparent-proxy-config" => out.transparent_proxy = Some(a.clone()),
            "--dns-enabled" => {
                // A Go boolean flag: only `--dns-enabled=VALUE` sets a value
                // (a separate word is an argument, not the value), read as
                // strconv.ParseBool does; the last one given wins.
                let off = matches!(inline, Some("0" | "f" | "F" | "false" | "FALSE" | "False"));
                out.dns_disabled = off.then(|| a.clone());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFT_DNS: &str = include_str!("../../tests/data/iptables/nft-redirect-dns.txt");
    const LEGACY_DNS: &str = include_str!("../../tests/data/iptables/legacy-redirect-dns.txt");
    const NFT_ALL_DNS: &str = include_str!("../../tests/data/iptables/nft-all-dns.txt");
    const IP6_NFT_DNS: &str = include_str!("../../tests/data/iptables/ip6-nft-redirect-dns.txt");
    const NFT_EMPTY: &str = include_str!("../../tests/data/iptables/nft-empty.txt");
    const NFT_BESIDE_LEGACY: &str = include_str!("../../tests/data/iptables/nft-beside-legacy.txt");

    fn one(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// Captured from kumactl 2.14.3 (see tests/data/iptables/README.md):
    /// each backend and family, with what each must give.
    #[test]
    fn reads_the_rules_kumactl_writes_on_each_backend() {
        let cases: &[(&str, &str, Rules)] = &[
            (
                "nf_tables, --redirect-dns, --exclude-inbound-ports 9911,9000",
                NFT_DNS,
                Rules {
                    outbound: true,
                    inbound: true,
                    outbound_port: Some(15001),
                    inbound_port: Some(15006),
                    exempt_uids: vec![5678],
                    dns_port: Some(15053),
                    dns_servers: vec!["10.255.255.53".into()],
                    excluded_inbound: vec![one(9911), one(9000)],
                },
            ),
            (
                "legacy (a rule of another tool's beside Kuma's), --redirect-dns",
                LEGACY_DNS,
                Rules {
                    outbound: true,
                    inbound: true,
                    outbound_port: Some(15001),
                    inbound_port: Some(15006),
                    exempt_uids: vec![5678],
                    dns_port: Some(15053),
                    dns_servers: vec!["10.255.255.53".into()],
                    excluded_inbound: vec![one(9911)],
                },
            ),
            (
                "nf_tables, --redirect-all-dns-traffic, no port excluded",
                NFT_ALL_DNS,
                Rules {
                    outbound: true,
                    inbound: true,
                    outbound_port: Some(15001),
                    inbound_port: Some(15006),
                    exempt_uids: vec![5678],
                    dns_port: Some(15053),
                    dns_servers: vec![],
                    excluded_inbound: vec![],
                },
            ),
            ("an empty namespace", NFT_EMPTY, Rules::default()),
            (
                "nf_tables while kumactl chose legacy (empty nat)",
                NFT_BESIDE_LEGACY,
                Rules::default(),
            ),
        ];
        for (what, text, want) in cases {
            assert_eq!(&parse(text), want, "{what}");
        }
    }

    #[test]
    fn reads_the_ipv6_table_and_merges_it() {
        let v6 = parse(IP6_NFT_DNS);
        assert!(v6.outbound && v6.inbound, "{v6:?}");
        assert_eq!(v6.exempt_uids, vec![5678]);
        assert_eq!(v6.excluded_inbound, vec![one(22)]);
        let mut both = parse(NFT_DNS);
        both.merge(v6);
        assert_eq!(both.excluded_inbound, vec![one(9911), one(9000), one(22)]);
        assert_eq!(both.exempt_uids, vec![5678]);
        let mut none = Rules::default();
        none.merge(parse(NFT_EMPTY));
        assert!(!none.active());
    }

    /// Rules kumactl does not write but iptables can hold (another tool, a
    /// later Kuma): multiport lists, ranges, a uid range, negations.
    #[test]
    fn reads_multiport_lists_ranges_and_ignores_negations() {
        let text = "*nat\n:KUMA_MESH_INBOUND - [0:0]\n:KUMA_MESH_OUTBOUND - [0:0]\n\
            -A PREROUTING -p tcp -j KUMA_MESH_INBOUND\n\
            -A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\n\
            -A KUMA_MESH_INBOUND -p tcp -m multiport --dports 22,9000:9010 -j RETURN\n\
            -A KUMA_MESH_INBOUND -p tcp -m tcp --dport 8000:8001 -j RETURN\n\
            -A KUMA_MESH_INBOUND -p tcp -m tcp ! --dport 7000 -j RETURN\n\
            -A KUMA_MESH_OUTBOUND -m owner ! --uid-owner 1000 -j RETURN\n\
            -A KUMA_MESH_OUTBOUND -m owner --uid-owner 1234-1240 -j RETURN\n\
            -A OUTPUT -p udp -m udp ! --dport 53 -j REDIRECT --to-ports 9\n\
            COMMIT\n*filter\n-A OUTPUT -m owner --uid-owner 42 -j RETURN\nCOMMIT\n";
        let r = parse(text);
        assert_eq!(
            r.excluded_inbound,
            vec![
                one(22),
                PortRange {
                    first: 9000,
                    last: 9010
                },
                PortRange {
                    first: 8000,
                    last: 8001
                }
            ]
        );
        assert!(r.inbound_excluded(9005) && r.inbound_excluded(8001));
        assert!(!r.inbound_excluded(7000) && !r.inbound_excluded(9011));
        // The negated owner match is everyone else's; the filter table's
        // rule is not nat's.
        assert_eq!(r.exempt_uids, vec![1234]);
        assert_eq!(r.dns_port, None);
    }

    /// A chain declared without the jump into it (a half-removed install)
    /// or a jump to a chain that is not there is no redirection.
    #[test]
    fn a_chain_without_its_jump_is_not_active() {
        let chains_only = "*nat\n:KUMA_MESH_OUTBOUND - [0:0]\n:KUMA_MESH_INBOUND - [0:0]\nCOMMIT\n";
        assert!(!parse(chains_only).active());
        let jump_only = "*nat\n-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\nCOMMIT\n";
        assert!(!parse(jump_only).active());
        // The redirect is not read outside nat.
        let raw = NFT_DNS.replace("*nat", "*raw");
        assert!(!parse(&raw).active());
    }

    #[test]
    fn splits_quoted_comments() {
        assert_eq!(
            split(r#"OUTPUT -m comment --comment "a \"b\" c" -j RETURN"#),
            vec![
                "OUTPUT",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "RETURN"
            ]
        );
        assert_eq!(split(r#"X --comment """#), vec!["X", "--comment", ""]);
    }

    #[test]
    fn reads_kumactl_install_arguments() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], InstallArgs)] = &[
            (&[], InstallArgs::default()),
            (
                &[
                    "--kuma-dp-user",
                    "kuma-dp",
                    "--redirect-dns",
                    "--exclude-inbound-ports=9911,22",
                ],
                InstallArgs {
                    kuma_dp_user: Some("kuma-dp".into()),
                    redirect_dns: true,
                    excluded_inbound: vec![one(9911), one(22)],
                    no_inbound: false,
                },
            ),
            (
                &[
                    "--kuma-dp-uid=5679",
                    "--redirect-all-dns-traffic",
                    "--redirect-inbound=false",
                ],
                InstallArgs {
                    kuma_dp_user: Some("5679".into()),
                    redirect_dns: true,
                    excluded_inbound: vec![],
                    no_inbound: true,
                },
            ),
            (
                &["--redirect-dns=false", "--exclude-inbound-ports", "80"],
                InstallArgs {
                    redirect_dns: false,
                    excluded_inbound: vec![one(80)],
                    ..InstallArgs::default()
                },
            ),
        ];
        for (args, want) in cases {
            assert_eq!(&install_args(&s(args)), want, "{args:?}");
        }
    }

    #[test]
    fn reads_kuma_dp_arguments() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], Option<&str>, Option<&str>)] = &[
            (&[], None, None),
            (&["--transparent-proxy"], Some("--transparent-proxy"), None),
            (
                &["--transparent-proxy=true"],
                Some("--transparent-proxy=true"),
                None,
            ),
            (&["--transparent-proxy=false"], None, None),
            (
                &["--transparent-proxy-config", "/etc/tp.yaml"],
                Some("--transparent-proxy-config"),
                None,
            ),
            (&["--dns-enabled=false"], None, Some("--dns-enabled=false")),
            // A separate word is not a Go boolean flag's value.
            (&["--dns-enabled", "false"], None, None),
            (&["--dns-enabled=F"], None, Some("--dns-enabled=F")),
            (&["--dns-enabled=true"], None, None),
            (&["--dns-enabled=false", "--dns-enabled=true"], None, None),
        ];
        for (args, tp, dns) in cases {
            let got = kuma_dp_args(&s(args));
            assert_eq!(got.transparent_proxy.as_deref(), *tp, "{args:?}");
            assert_eq!(got.dns_disabled.as_deref(), *dns, "{args:?}");
        }
    }
}
