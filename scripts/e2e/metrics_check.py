"""Issue 17 in the real mesh: kuma-dp scrapes meshinit's /metrics (MeshMetric
policy, Prometheus backend, meshinit's status endpoint as an application) and
serves meshinit's series on the data plane's own Prometheus endpoint; after a
rollout the next instance reports the drain of the one it replaced
(--state-file), equal to that instance's summary line.

run(mesh, checks) returns the line
  metrics: N meshinit series read through kuma-dp, last drain D s (summary line: D2 s)
"""
import json
import os
import re
import signal

import meshlib as M
from meshlib import Failure, say, wait_until, http_status

INSTANCE = 5  # its own ports: base+51..55, and base+56 for kuma-dp's Prometheus endpoint
SAMPLE_RX = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
LABEL_RX = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus_port(mesh):
    return mesh.ports(INSTANCE)["outbound"] + 1


def parse(text):
    """{(name, frozenset(labels)): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE_RX.match(line.strip())
        if not m:
            raise Failure("kuma-dp's Prometheus endpoint served a line no parser takes: %r" % line)
        labels = frozenset((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                           for k, v in LABEL_RX.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def meshinit_series(series):
    return {k: v for k, v in series.items() if k[0].startswith("meshinit_")}


def find(series, name, **labels):
    for (n, ls), v in series.items():
        if n == name and set(labels.items()) <= set(ls):
            return v
    return None


def scrape_kuma_dp(mesh):
    """kuma-dp's merged endpoint (not meshinit's own): {series: value}."""
    st, body = http_status("http://127.0.0.1:%d/metrics" % prometheus_port(mesh), timeout=2.0)
    if st != 200:
        return {}
    return parse(body)


def apply_policy(mesh):
    p = mesh.ports(INSTANCE)
    name = "backend-%d" % INSTANCE
    policy = {
        "type": "MeshMetric", "mesh": mesh.mesh, "name": "meshinit-%s" % name,
        "spec": {
            # One data plane per policy: on this loopback host every
            # instance needs its own Prometheus port and status port.
            "targetRef": {"kind": "Dataplane", "name": name},
            "default": {
                "applications": [{"name": "meshinit", "address": "127.0.0.1",
                                  "port": p["status"], "path": "/metrics"}],
                "backends": [{"type": "Prometheus",
                              "prometheus": {"port": prometheus_port(mesh), "path": "/metrics"}}],
            },
        },
    }
    st, body = M.http("PUT", "%s/meshes/%s/meshmetrics/%s" % (mesh.cp.API, mesh.mesh, policy["name"]), policy)
    if st not in (200, 201):
        raise Failure("creating MeshMetric: HTTP %s %s" % (st, body))
    return policy


def wait_series(mesh, proc, pred, what, timeout=60):
    found = {}

    def ok():
        if not proc.alive():
            raise Failure("backend-%d meshinit exited (rc %s):\n%s" % (INSTANCE, proc.rc, proc.tail()))
        try:
            series = meshinit_series(scrape_kuma_dp(mesh))
        except OSError:
            return False
        if pred(series):
            found.update(series)
            return True
        return False
    wait_until(ok, timeout, what, interval=0.2)
    return found


def run(mesh, checks):
    name = "backend-%d" % INSTANCE
    for port in list(mesh.ports(INSTANCE).values()) + [prometheus_port(mesh)]:
        if not M.port_free(port):
            raise Failure("port %d in use on 127.0.0.1 (set MESH_E2E_PORT_BASE)" % port)
    policy = apply_policy(mesh)
    say("MeshMetric %s: %s" % (policy["name"], json.dumps(policy["spec"])))
    state = os.path.join(mesh.workdir, "%s.last-shutdown" % name)
    extra = ("--state-file", state)

    first = mesh.start_backend_meshinit(INSTANCE, extra=extra)
    mesh.wait_backend_ready(INSTANCE)
    series = wait_series(mesh, first, lambda s: find(s, "meshinit_phase", phase="running") == 1.0,
                         "meshinit's series on %s's Prometheus endpoint (:%d)" % (name, prometheus_port(mesh)))
    labels = dict(next(iter(series))[1])
    # The names docs/metrics.md's PromQL uses, counters included (kuma-dp
    # re-exports them through OpenTelemetry without adding suffixes).
    checks.ok(labels.get("dataplane") == name and labels.get("mesh") == mesh.mesh
              and find(series, "meshinit_ready") == 1.0 and find(series, "meshinit_proxy_up") == 1.0
              and find(series, "meshinit_proxy_starts_total") == 1.0
              and find(series, "meshinit_proxy_restarts_total") == 0.0,
              "kuma-dp serves meshinit's series on its own Prometheus endpoint, with its labels",
              "%d meshinit series, e.g. labels %s" % (len(series), sorted(labels.items())))

    # The rollout: SIGTERM, the drain (idle after --drain-min), grace, exit.
    first.signal(signal.SIGTERM)
    first.wait(60)
    sd = M.parse_shutdown_line(first.text())
    if not checks.ok(sd is not None and first.rc == 0, "%s: rollout with a shutdown summary line" % name,
                     sd["line"] if sd else "no summary line:\n" + first.tail()):
        return None
    wait_until(lambda: mesh.cp.dataplane(name) is None, 30, "%s to leave kuma-cp" % name)

    # The next instance on the same state file reports that drain, through kuma-dp.
    second = mesh.start_backend_meshinit(INSTANCE, tag="-next", extra=extra)
    mesh.wait_backend_ready(INSTANCE)
    series = wait_series(mesh, second, lambda s: find(s, "meshinit_last_shutdown_phase_seconds",
                                                      phase="drain") is not None,
                         "the last shutdown on %s's Prometheus endpoint" % name)
    drain = find(series, "meshinit_last_shutdown_phase_seconds", phase="drain")
    n = len(series)
    checks.ok(n >= 10 and abs(drain - sd["drain"]) <= 0.1
              and find(series, "meshinit_last_shutdown_drain_end", reason="idle") == 1.0,
              "the next instance reports the drain of the one it replaced, as its summary line said",
              "%d meshinit series; last drain %.3fs, summary line %.2fs, ended: idle" % (n, drain, sd["drain"]))
    second.signal(signal.SIGTERM)
    second.wait(60)
    return "metrics: %d meshinit series read through kuma-dp, last drain %.3f s (summary line: %.2f s)" % (
        n, drain, sd["drain"])
