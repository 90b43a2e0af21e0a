//! The Dataplane template: rendered as kuma-dp renders it, and checked before
//! anything starts.
//!
//! kuma-dp renders `{{ var }}` itself and silently turns a missing variable
//! into an empty string, which the control plane then rejects or, worse,
//! registers under a wrong name. meshinit renders the same template first so
//! that such mistakes stop the start with a message naming the variable.
//! The template is still passed to kuma-dp as written.

use std::collections::BTreeMap;

use crate::basics::yaml::{self, Item, Node};

/// An inbound as far as meshinit needs it: to probe the app and to warn when
/// a service port has no probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// Where Envoy listens for it: the inbound's `address`, else the
    /// Dataplane's `networking.address`.
    pub address: String,
    pub port: u16,
    /// Where the app listens; defaults to `port` as in Kuma.
    pub service_port: u16,
    /// Where the app listens; defaults to 127.0.0.1 as in Kuma.
    pub service_address: String,
    pub service: String,
    /// The inbound has a `serviceProbe` (the control plane health-checks it).
    pub has_service_probe: bool,
}

/// The facts of a rendered, valid Dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataplane {
    pub name: String,
    pub mesh: String,
    pub address: String,
    pub inbounds: Vec<Inbound>,
    pub outbound_ports: Vec<u16>,
    /// `networking.admin.port`, when the Dataplane sets Envoy's admin port.
    pub admin_port: Option<u16>,
    /// The line of `networking.transparentProxying`'s content (the YAML
    /// tree's line of the value), when the Dataplane has it: it tells kuma-cp that iptables redirects this workload's traffic
    /// (kuma-dp's `--transparent-proxy` metadata wins over it in kuma-cp,
    /// but either means the rules exist).
    pub transparent_proxying: Option<u64>,
    /// The rendered YAML, for `meshinit check`.
    pub rendered: String,
    /// Variables given but not used by the template (a warning, not an error).
    pub unused_vars: Vec<String>,
}

/// Renders `{{ var }}` (spaces inside the braces allowed) with `vars`.
/// Every variable used but not given is reported, by name.
pub fn render(
    template: &str,
    vars: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), Vec<String>> {
    let mut out = String::with_capacity(template.len());
    let mut errors = Vec::new();
    let mut used = Vec::new();
    let mut rest = template;
    let mut line = 1usize;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        line += rest[..start].matches('\n').count();
        let after = &rest[start + 2..];
        // `{{{ var }}}` is Mustache's unescaped form; kuma-dp accepts it too.
        let (triple, after) = match after.strip_prefix('{') {
            Some(a) => (true, a),
            None => (false, after),
        };
        let close = if triple { "}}}" } else { "}}" };
        let Some(end) = after.find(close) else {
            errors.push(format!("line {line}: '{{{{' is never closed"));
            rest = "";
            break;
        };
        let raw = after[..end].trim();
        let name = raw.strip_prefix('&').map_or(raw, str::trim);
        if name.is_empty() || name.starts_with(['#', '^', '/', '!', '>', '=']) {
            errors.push(format!(
                "line {line}: '{{{{{raw}}}}}' is not supported; only {{{{ variable }}}} is"
            ));
        } else if let Some(value) = vars.get(name) {
            // kuma-dp's Mustache escapes `{{ var }}` for HTML (measured:
            // `x<y` renders `x&lt;y`); `{{{ var }}}` and `{{& var }}` do not.
            if triple || raw.starts_with('&') {
                out.push_str(value);
            } else {
                out.push_str(&html_escape(value));
            }
            used.push(name.to_string());
        } else {
            errors.push(format!(
                "line {line}: variable '{name}' is used but not given; pass --dataplane-var {name}=VALUE (kuma-dp would render it empty)"
            ));
        }
        line += after[..end].matches('\n').count();
        rest = &after[end + close.len()..];
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    let unused = vars.keys().filter(|k| !used.contains(k)).cloned().collect();
    Ok((out, unused))
}

/// Mustache's HTML escaping, as kuma-dp applies it to `{{ var }}`.
fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders the template and checks the result as kuma-cp would at the
/// points that matter before anything starts. Fields meshinit does not know
/// are allowed: kuma-dp and kuma-cp own the schema.
pub fn check(template: &str, vars: &BTreeMap<String, String>) -> Result<Dataplane, Vec<String>> {
    let (rendered, unused_vars) = render(template, vars)?;
    let doc = yaml::parse(&rendered)
        .map_err(|e| vec![format!("rendered Dataplane is not valid YAML: {e}")])?;
    let mut errors = Vec::new();
    let mut err = |line: u64, msg: String| {
        errors.push(if line > 0 {
            format!("line {line}: {msg}")
        } else {
            msg
        });
    };

    if !matches!(doc.node, Node::Map(_)) {
        err(
            doc.line,
            format!("a Dataplane must be a mapping, not {}", doc.node.kind()),
        );
        return Err(errors);
    }

    let ty = doc.node.get("type");
    if text(ty) != "Dataplane" {
        err(
            line_of(ty, doc.line),
            format!("type must be 'Dataplane', found '{}'", text(ty)),
        );
    }
    for field in ["name", "mesh"] {
        let item = doc.node.get(field);
        if text(item).is_empty() {
            err(
                line_of(item, doc.line),
                format!("'{field}' must not be empty"),
            );
        }
    }
    let mut dp = Dataplane {
        name: text(doc.node.get("name")).to_string(),
        mesh: text(doc.node.get("mesh")).to_string(),
        address: String::new(),
        inbounds: Vec::new(),
        outbound_ports: Vec::new(),
        admin_port: None,
        transparent_proxying: None,
        rendered: rendered.clone(),
        unused_vars,
    };

    let Some(net) = doc.node.get("networking") else {
        err(doc.line, "'networking' is missing".into());
        return Err(errors);
    };
    let address = net.node.get("address");
    dp.address = text(address).to_string();
    if dp.address.is_empty() {
        err(
            line_of(address, net.line),
            "'networking.address' must not be empty".into(),
        );
    }

    let port = |item: Option<&Item>| -> Option<Result<u16, String>> {
        let s = text(item);
        if item.is_none() || s.is_empty() {
            return None;
        }
        Some(
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("'{s}' is not a port 1-65535")),
        )
    };

    let inbound = net.node.get("inbound");
    match inbound.map(|i| &i.node) {
        Some(Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("networking.inbound[{i}]");
                let n = &item.node;
                let p = match port(n.get("port")) {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => {
                        err(line_of(n.get("port"), item.line), format!("{at}.port: {e}"));
                        continue;
                    }
                    None => {
                        err(item.line, format!("{at}.port is missing"));
                        continue;
                    }
                };
                let service_port = match port(n.get("servicePort")) {
                    Some(Ok(sp)) => sp,
                    Some(Err(e)) => {
                        err(
                            line_of(n.get("servicePort"), item.line),
                            format!("{at}.servicePort: {e}"),
                        );
                        p
                    }
                    None => p,
                };
                let tags = n.get("tags");
                let service = text(tags.and_then(|t| t.node.get("kuma.io/service")));
                if service.is_empty() {
                    err(
                        line_of(tags, item.line),
                        format!("{at} needs a 'kuma.io/service' tag"),
                    );
                }
                if dp.inbounds.iter().any(|x| x.port == p) {
                    err(
                        line_of(n.get("port"), item.line),
                        format!("{at}.port {p} is used by another inbound"),
                    );
                }
                let service_address = match text(n.get("serviceAddress")) {
                    "" => "127.0.0.1".to_string(),
                    a => a.to_string(),
                };
                let address = match text(n.get("address")) {
                    "" => dp.address.clone(),
                    a => a.to_string(),
                };
                dp.inbounds.push(Inbound {
                    address,
                    port: p,
                    service_port,
                    service_address,
                    service: service.to_string(),
                    has_service_probe: n.get("serviceProbe").is_some(),
                });
            }
        }
        Some(other) if !matches!(other, Node::Null) => {
            err(
                line_of(inbound, net.line),
                format!("'networking.inbound' must be a list, not {}", other.kind()),
            );
        }
        _ => {
            if net.node.get("gateway").is_none() {
                err(
                    net.line,
                    "'networking.inbound' is missing (a Dataplane needs an inbound or a gateway)"
                        .into(),
                );
            }
        }
    }

    dp.transparent_proxying = net
        .node
        .get("transparentProxying")
        .filter(|t| !matches!(t.node, Node::Null))
        .map(|t| t.line);
    dp.admin_port = text(net.node.get("admin").and_then(|a| a.node.get("port")))
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0);

    if let Some(Node::Seq(items)) = net.node.get("outbound").map(|i| &i.node) {
        for (i, item) in items.iter().enumerate() {
            match port(item.node.get("port")) {
                Some(Ok(p)) => {
                    if dp.outbound_ports.contains(&p) {
                        err(
                            item.line,
                            format!(
                                "networking.outbound[{i}].port {p} is used by another outbound"
                            ),
                        );
                    }
                    dp.outbound_ports.push(p);
                }
                Some(Err(e)) => err(
                    line_of(item.node.get("port"), item.line),
                    format!("networking.outbound[{i}].port: {e}"),
                ),
                None => err(
                    item.line,
                    format!("networking.outbound[{i}].port is missing"),
                ),
            }
        }
    }

    if errors.is_empty() {
        Ok(dp)
    } else {
        Err(errors)
    }
}

/// A scalar's trimmed text, or "" when absent or not a scalar.
fn text(item: Option<&Item>) -> &str {
    item.and_then(|i| i.node.as_scalar())
        .map(str::trim)
        .unwrap_or("")
}

fn line_of(item: Option<&Item>, fallback: u64) -> u64 {
    item.map_or(fallback, |i| i.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BACKEND: &str = "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  address: {{address}}\n  inbound:\n  - port: 8000\n    servicePort: 80\n    tags:\n      kuma.io/service: backend\n      kuma.io/protocol: http\n  outbound:\n  - port: 10000\n    tags:\n      kuma.io/service: redis\n";

    #[test]
    fn renders_the_docs_backend_example() {
        let dp = check(
            BACKEND,
            &vars(&[("name", "backend-1"), ("address", "192.168.0.2")]),
        )
        .unwrap();
        assert_eq!(dp.name, "backend-1");
        assert_eq!(dp.address, "192.168.0.2");
        assert_eq!(
            dp.inbounds,
            vec![Inbound {
                address: "192.168.0.2".into(),
                port: 8000,
                service_port: 80,
                service_address: "127.0.0.1".into(),
                service: "backend".into(),
                has_service_probe: false,
            }]
        );
        assert_eq!(dp.outbound_ports, vec![10000]);
        assert!(dp.rendered.contains("name: backend-1\n"));
    }

    #[test]
    fn names_every_missing_variable() {
        let errs = check(BACKEND, &vars(&[])).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("line 3") && errs[0].contains("'name'"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("line 5") && errs[1].contains("'address'"),
            "{errs:?}"
        );
    }

    #[test]
    fn escapes_like_kuma_dp_does() {
        // Observed with kuma-dp 2.14.3: `a<b>&"c'` renders as below in `{{ }}`.
        let (out, _) = render(
            "a: {{ v }}\nb: {{{ v }}}\nc: {{& v}}",
            &vars(&[("v", "a<b>&\"c'")]),
        )
        .unwrap();
        assert_eq!(
            out,
            "a: a&lt;b&gt;&amp;&#34;c&#39;\nb: a<b>&\"c'\nc: a<b>&\"c'"
        );
    }

    #[test]
    fn reports_unused_variables_and_unescaped_forms() {
        let (out, unused) = render(
            "a: {{{ x }}} {{& y}}",
            &vars(&[("x", "1"), ("y", "2"), ("z", "3")]),
        )
        .unwrap();
        assert_eq!(out, "a: 1 2");
        assert_eq!(unused, vec!["z".to_string()]);
        assert!(render("{{#section}}", &vars(&[])).is_err());
        assert!(render("a: {{ x", &vars(&[])).is_err());
    }

    #[test]
    fn checks_the_fields_kuma_cp_needs() {
        let cases: &[(&str, &str)] = &[
            ("type: Foo\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: s}\n", "type must be 'Dataplane'"),
            ("type: Dataplane\nname: ''\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: s}\n", "'name' must not be empty"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: ''\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: s}\n", "networking.address"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 70000\n    tags: {kuma.io/service: s}\n", "not a port"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 1\n    tags: {kuma.io/protocol: http}\n", "kuma.io/service"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: s}\n  - port: 1\n    tags: {kuma.io/service: t}\n", "used by another inbound"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 1\n    servicePort: 0\n    tags: {kuma.io/service: s}\n", "servicePort"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: s}\n  outbound:\n  - port: 0\n", "outbound[0].port"),
            ("type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 1.2.3.4\n", "needs an inbound"),
            ("type: Dataplane\nname: a\nmesh: m\n", "'networking' is missing"),
            ("- a\n- b\n", "must be a mapping"),
            ("type: Dataplane\nname: [a\n", "not valid YAML"),
        ];
        for (doc, expected) in cases {
            let errs = check(doc, &vars(&[])).unwrap_err();
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "{expected}: {errs:?}"
            );
        }
    }

    #[test]
    fn reads_transparent_proxying_with_its_line() {
        let doc = "type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: s}\n  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n";
        assert_eq!(
            check(doc, &vars(&[])).unwrap().transparent_proxying,
            Some(10)
        );
        let empty = doc.replace("  transparentProxying:\n    redirectPortInbound: 15006\n    redirectPortOutbound: 15001\n", "  transparentProxying:\n");
        assert_eq!(
            check(&empty, &vars(&[])).unwrap().transparent_proxying,
            None
        );
    }

    #[test]
    fn unknown_fields_and_service_probes_are_allowed() {
        let doc = "type: Dataplane\nname: a\nmesh: m\nnetworking:\n  address: ::1\n  admin: {port: 9901}\n  inbound:\n  - port: 1\n    serviceAddress: 10.0.0.1\n    serviceProbe: {tcp: {}}\n    tags: {kuma.io/service: s}\n";
        let dp = check(doc, &vars(&[])).unwrap();
        assert!(dp.inbounds[0].has_service_probe);
        assert_eq!(dp.transparent_proxying, None);
        assert_eq!(dp.inbounds[0].service_address, "10.0.0.1");
    }
}
