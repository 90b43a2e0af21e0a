//! The `proxy` section: kuma-dp, its command line (direct or indirect
//! mode), the Dataplane it registers, its token file, work dir and Envoy
//! admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::host::Host;
use super::resolve::Resolver;
use super::{app, parse, Problem, ProxyConfig};
use crate::lifecycle::{DrainMode, Settings};
use crate::mesh::dataplane;
use crate::mesh::envoy::{Admin, InboundListener};
use crate::mesh::kuma_dp;

/// `None` when no proxy is configured (plain init mode).
pub(super) fn section(
    r: &mut Resolver,
    host: &dyn Host,
    warnings: &mut Vec<String>,
) -> Option<ProxyConfig> {
    let env = |name: &str| host.env(name);
    let file = r.text("dataplane-file");
    let name = r.text("dataplane-name");
    let mesh = r.text("mesh");
    let vars = r.list("dataplane-var", parse::key_value);
    if !mode_is_valid(r, file.is_some(), name.is_some(), mesh.is_some()) {
        return None;
    }
    let extra = r
        .raw("kuma-dp-arg")
        .map(|raw| raw.values.clone())
        .unwrap_or_default();
    let token_file = r.text("dataplane-token-file");
    let cp = r.text("cp-address");
    if let Some(cp) = &cp {
        if let Err(e) = parse::url(cp, &["http", "https"]) {
            let o = r.origin("cp-address");
            r.problem("cp-address", &o, e);
        }
    }
    let kuma_dp = binary(r, host);
    let user = app::identity(r, host, "kuma-dp-user");
    let ready_url = r.typed("proxy-ready-url", |s| {
        parse::url(&parse::expand_env(s, env), &["http"])
    });
    let dataplane = file
        .as_ref()
        .and_then(|path| dataplane(r, host, path, &vars));
    if let Some(path) = &token_file {
        match host.token_file(path, user.as_ref()) {
            Ok(warning) => warnings.extend(warning),
            Err(problem) => {
                let o = r.origin("dataplane-token-file");
                r.problem("dataplane-token-file", &o, problem);
            }
        }
    }

    let mut args = vec!["run".to_string()];
    args.extend(cp.iter().map(|cp| format!("--cp-address={cp}")));
    if let Some(path) = &file {
        args.push(format!("--dataplane-file={path}"));
        for (k, v) in &vars {
            args.push("--dataplane-var".into());
            args.push(format!("{k}={v}"));
        }
    } else if let (Some(n), Some(m)) = (&name, &mesh) {
        args.push(format!("--name={n}"));
        args.push(format!("--mesh={m}"));
    }
    args.extend(
        token_file
            .iter()
            .map(|t| format!("--dataplane-token-file={t}")),
    );
    args.extend(extra.iter().cloned());
    let (work_dir, owns_work_dir) = match kuma_dp::user_work_dir(&extra) {
        Some(dir) => (given_work_dir(r, host, dir, user.as_ref()), false),
        None => {
            let dir = fresh_work_dir(r, host);
            args.push(format!("--work-dir={}", dir.display()));
            (dir, true)
        }
    };
    let admin = Admin {
        socket: crate::mesh::envoy::admin_socket(&work_dir),
        tcp_port: dataplane.as_ref().and_then(|d| d.admin_port),
    };
    let inbound_listeners = dataplane
        .iter()
        .flat_map(|d| d.inbounds.iter())
        .map(|i| InboundListener {
            address: i.address.clone(),
            port: i.port,
            service_port: i.service_port,
        })
        .collect();

    Some(ProxyConfig {
        kuma_dp: kuma_dp?,
        dataplane_file: file,
        args,
        user,
        ready_url: ready_url?,
        dataplane,
        drain_time: kuma_dp::drain_time(&extra, &env),
        work_dir,
        owns_work_dir,
        admin,
        inbound_listeners,
    })
}

/// `--drain-signal hold` keeps kuma-dp draining (Envoy up for the app's
/// outbound side) until meshinit sends its second SIGTERM after the app
/// has exited, so kuma-dp's `--drain-time` must outlast meshinit's whole
/// worst-case shutdown: were it shorter, kuma-dp would exit on its own in
/// the middle of the app's stop and take the outbound calls with it. With
/// no drain time given meshinit passes one (the worst case and a margin);
/// one given (`--kuma-dp-arg=--drain-time=...` or
/// `KUMA_DATAPLANE_DRAIN_TIME`) that is shorter is refused.
pub(super) fn hold_drain_time(r: &mut Resolver, p: &mut ProxyConfig, settings: &Settings) {
    if settings.drain_mode != DrainMode::Hold {
        return;
    }
    let worst = settings.worst_case_shutdown();
    if worst == std::time::Duration::MAX {
        // Unbounded: the budget lint says so; nothing to size against.
        return;
    }
    match p.drain_time {
        Some(given) if given < worst => {
            let in_args = kuma_dp::drain_time(&p.args, &|_| None).is_some();
            let (named, from) = if in_args {
                ("--drain-time", r.origin("kuma-dp-arg"))
            } else {
                (
                    "KUMA_DATAPLANE_DRAIN_TIME",
                    super::Origin::Env("KUMA_DATAPLANE_DRAIN_TIME".into()),
                )
            };
            let message = format!(
                "hold: kuma-dp's {named} {} (from {from}) is shorter than meshinit's worst-case shutdown {}: kuma-dp must keep draining until meshinit stops it after the app has exited, or the app loses its outbound calls mid-stop; give a drain time of at least {}, or none and meshinit sets {}",
                parse::fmt_duration(given),
                parse::fmt_duration(worst),
                parse::fmt_duration(worst),
                parse::fmt_duration(kuma_dp::hold_drain_time(worst)),
            );
            let o = r.origin("drain-signal");
            r.problem("drain-signal", &o, message);
        }
        Some(_) => {}
        None => {
            let t = kuma_dp::hold_drain_time(worst);
            p.args.push(format!("--drain-time={}s", t.as_secs()));
            p.drain_time = Some(t);
        }
    }
}

/// Direct mode (a Dataplane file) or indirect mode (a name and a mesh), not
/// both; with neither, no option that only a proxy uses may be set. False
/// when no proxy runs.
fn mode_is_valid(r: &mut Resolver, file: bool, name: bool, mesh: bool) -> bool {
    if !file && !name {
        for id in ["cp-address", "dataplane-token-file", "mesh", "kuma-dp-user"] {
            if r.raw(id).is_some() {
                let o = r.origin(id);
                r.problem(id, &o, "is set but no proxy would run: give --dataplane-file (direct mode) or --dataplane-name with --mesh (indirect mode)".into());
            }
        }
        return false;
    }
    let o = r.origin("dataplane-name");
    if file && name {
        r.problem("dataplane-name", &o, "direct mode (--dataplane-file) and indirect mode (--dataplane-name) exclude each other; give one".into());
    }
    if name && !mesh {
        r.problem(
            "dataplane-name",
            &o,
            "indirect mode needs --mesh too".into(),
        );
    }
    true
}

/// The kuma-dp binary, found as the shell would.
fn binary(r: &mut Resolver, host: &dyn Host) -> Option<PathBuf> {
    let text = r.text_or_default("kuma-dp");
    match host.executable(&text, None) {
        Ok(p) => Some(p),
        Err(e) => {
            let o = r.origin("kuma-dp");
            let message = format!("kuma-dp {e}; install kuma-dp or pass --kuma-dp PATH");
            r.problem("kuma-dp", &o, message);
            None
        }
    }
}

/// The Dataplane template rendered with `vars` and checked, as kuma-dp will.
fn dataplane(
    r: &mut Resolver,
    host: &dyn Host,
    path: &str,
    vars: &[(String, String)],
) -> Option<dataplane::Dataplane> {
    let origin = r.origin("dataplane-file");
    let text = match host.read_file(path) {
        Ok(t) => t,
        Err(e) => {
            let message = format!("{e}; give the path of the Dataplane YAML file");
            r.problem("dataplane-file", &origin, message);
            return None;
        }
    };
    let vars: BTreeMap<String, String> = vars.iter().cloned().collect();
    match dataplane::check(&text, &vars) {
        Ok(dp) => Some(dp),
        Err(errs) => {
            for e in errs {
                r.problem("dataplane-file", &origin, format!("{path} {e}"));
            }
            None
        }
    }
}

/// A work dir the user gave kuma-dp (`--kuma-dp-arg=--work-dir=DIR`).
fn given_work_dir(
    r: &mut Resolver,
    host: &dyn Host,
    dir: String,
    user: Option<&crate::init::user::Identity>,
) -> PathBuf {
    if let Some(problem) = host.work_dir_problem(Path::new(&dir), user) {
        let o = r.origin("kuma-dp-arg");
        r.problem("kuma-dp-arg", &o, format!("--work-dir: {problem}"));
    }
    // Absolute, because meshinit moves to `/` once the app runs and still
    // reads Envoy's admin socket in there (kuma-dp itself starts where
    // meshinit was started, so the argument stays as written).
    std::path::absolute(&dir).unwrap_or_else(|_| PathBuf::from(dir))
}

/// The work dir meshinit makes for kuma-dp: in the service's runtime
/// directory when systemd gave it one, else in the temp dir.
fn fresh_work_dir(r: &mut Resolver, host: &dyn Host) -> PathBuf {
    // `RuntimeDirectory=` sets RUNTIME_DIRECTORY (colon-separated when the
    // unit names several: the first is used). That directory is the
    // instance's own and root's, writable under ProtectSystem=strict and
    // removed when the service stops. TMPDIR could point there too, but the
    // app inherits TMPDIR, and an app running as --app-user could not write
    // its temporary files in a directory of root's.
    let runtime = host
        .env("RUNTIME_DIRECTORY")
        .and_then(|v| v.split(':').next().map(str::to_string))
        .filter(|d| !d.is_empty());
    let (tmp, named_by) = match runtime {
        Some(dir) => (PathBuf::from(dir), "RUNTIME_DIRECTORY"),
        None => (host.temp_dir(), "the temp dir"),
    };
    // A scratch image has no /tmp: without this check kuma-dp's every
    // start would fail on the missing directory until meshinit gives up on
    // it (exit 75), long after the app was started.
    if !host.is_dir(&tmp) {
        r.problems.push(Problem {
            message: format!(
                "kuma-dp's work directory is made in {named_by} '{}', which does not exist (a scratch image has no /tmp): create it (e.g. `mkdir -m 1777 /tmp` in the image), point TMPDIR at a directory, or give kuma-dp one with --kuma-dp-arg=--work-dir=DIR",
                tmp.display()
            ),
            origin: None,
        });
    }
    // A fresh, unguessable name: the directory is created at spawn time as
    // mkdtemp(3) does (another name if this one exists), mode 0700, and
    // removed at exit.
    tmp.join(format!(
        "meshinit-kuma-dp-{}-{:016x}",
        std::process::id(),
        crate::mesh::workdir::random_u64()
    ))
}
