"""Nomad helpers for scripts/nomad-e2e (stdlib only), on top of meshlib.

Ports (all on 127.0.0.1), chosen apart from the other suites (mesh-e2e uses
kuma-cp's defaults 5676-5685 and 27000-27099):
  29600-29699  this suite's own listeners:
                 kuma-cp: 29676 (MADS), 29678 (dataplane server), 29680
                 (diagnostics), 29681 (API), 29682 (API https), 29683
                 (inter-cp); Nomad: 29646 (HTTP), 29647 (RPC), 29648 (Serf);
                 the load client's data plane: 29611-29615
  29700-29799  Nomad's dynamic port range for the allocations
"""
import calendar
import glob
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time

import meshlib as M
from meshlib import Failure, Unavailable, http, http_status, now, say, wait_until

NOMAD_HTTP, NOMAD_RPC, NOMAD_SERF = 29646, 29647, 29648
DYN_MIN, DYN_MAX = 29700, 29799
CP_PORTS = {"mads": 29676, "dp": 29678, "diag": 29680, "api": 29681, "api_https": 29682, "intercp": 29683}
CLIENT_PORTS = {"app": 29611, "inbound": 29612, "readiness": 29613, "outbound": 29615}


def run_installer(script, what):
    """Run an installer printing KEY=VALUE lines; exit 3 means unavailable."""
    r = subprocess.run([os.path.join(M.SCRIPTS, script)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode == 3:
        raise Unavailable("%s: %s" % (what, (r.stderr.strip().splitlines() or ["unavailable"])[-1]))
    if r.returncode != 0:
        raise Failure("scripts/%s failed (exit %d):\n%s" % (script, r.returncode, r.stderr[-2000:]))
    out = {}
    for line in r.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = shlex.split(v)[0] if v else ""
    return out


def install_tini():
    """tini from Debian (the baseline's plain init), installed once."""
    path = shutil.which("tini")
    if path:
        return path
    if not shutil.which("apt-get"):
        raise Unavailable("tini is not installed and there is no apt-get to install it")
    say("installing tini from Debian (apt-get install tini)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "tini"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        # The package lists may be missing on a fresh machine.
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "tini"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    path = shutil.which("tini")
    if not path:
        raise Unavailable("apt-get install tini failed:\n%s" % r.stdout[-1000:])
    return path


# ------------------------------------------------------------------ kuma-cp
class ControlPlane(M.ControlPlane):
    """meshlib's kuma-cp on this suite's ports, its APIs on 127.0.0.1 only.
    kuma-cp 2.14.3 has no setting for the interface of its dataplane,
    diagnostics and inter-cp servers: those listen on every interface."""

    API_PORT = CP_PORTS["api"]
    DP_PORT = CP_PORTS["dp"]
    API = "http://127.0.0.1:%d" % API_PORT
    DP_SERVER = "https://127.0.0.1:%d" % DP_PORT
    PORTS = tuple(CP_PORTS.values())

    def __init__(self, runner, deps, workdir):
        super().__init__(runner, deps, workdir, extra_env={
            "KUMA_API_SERVER_HTTP_PORT": str(CP_PORTS["api"]),
            "KUMA_API_SERVER_HTTP_INTERFACE": "127.0.0.1",
            "KUMA_API_SERVER_HTTPS_PORT": str(CP_PORTS["api_https"]),
            "KUMA_API_SERVER_HTTPS_INTERFACE": "127.0.0.1",
            "KUMA_DP_SERVER_PORT": str(CP_PORTS["dp"]),
            "KUMA_DIAGNOSTICS_SERVER_PORT": str(CP_PORTS["diag"]),
            "KUMA_INTER_CP_SERVER_PORT": str(CP_PORTS["intercp"]),
            "KUMA_MONITORING_ASSIGNMENT_SERVER_PORT": str(CP_PORTS["mads"]),
            # Nothing here scrapes metrics.
            "KUMA_MONITORING_ASSIGNMENT_SERVER_ENABLED": "false",
        })

    def service_token(self, service, mesh="default"):
        """A dataplane token without a name, bound to kuma.io/service=service:
        what one token for every allocation of a Nomad job needs (each
        allocation's Dataplane name is only known once it is placed)."""
        st, body = http("POST", self.API + "/tokens/dataplane",
                        {"mesh": mesh, "tags": {"kuma.io/service": [service]}})
        if st != 200 or not body.strip():
            raise Failure("token for service %s: HTTP %s" % (service, st))
        path = os.path.join(self.workdir, "%s-service.token" % service)
        with open(path, "w") as f:
            f.write(body.strip())
        os.chmod(path, 0o600)
        return path, body.strip()


def start_client(runner, deps, cp, workdir, mesh="default"):
    """The load client's data plane (service `client`), outbound to `backend`
    on 127.0.0.1:CLIENT_PORTS['outbound']."""
    p = CLIENT_PORTS
    wd = os.path.join(workdir, "client-dp")
    os.makedirs(wd, exist_ok=True)
    dp = [deps["KUMA_DP_BIN"], "run", "--dataplane-file=%s" % os.path.join(M.HERE, "client-dp.yaml")]
    for k, v in {"mesh": mesh, "name": "client", "service": "client", "address": "127.0.0.1", "port": p["inbound"],
                 "app_port": p["app"], "outbound_port": p["outbound"]}.items():
        dp.append("--dataplane-var=%s=%s" % (k, v))
    dp += ["--cp-address=%s" % cp.DP_SERVER, "--dataplane-token-file=%s" % cp.token("client", mesh),
           "--ca-cert-file=%s" % cp.ca_cert, "--dns-enabled=false", "--work-dir=%s" % wd,
           "--binary-path=%s" % deps["ENVOY_BIN"]]
    # kuma-dp leaves an empty kuma-dp-NNN folder in TMPDIR: keep it in the workdir.
    proc = runner.start("client-kuma-dp", dp, env={"KUMA_READINESS_PORT": str(p["readiness"]), "TMPDIR": wd})
    wait_until(lambda: http_status("http://127.0.0.1:%d/ready" % p["readiness"])[0] == 200, 90,
               "client kuma-dp /ready 200")
    return proc, os.path.join(wd, "kuma-envoy-admin.sock")


# ------------------------------------------------------------------ processes
def start_time(pid):
    """Field 22 of /proc/<pid>/stat: with the pid, names one process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Runner(M.Runner):
    """meshlib's Runner, plus processes that left the sessions it started:
    Nomad runs each task's executor in a session of its own (setsid), and an
    executor outlives its agent by design. Such processes are recorded (pid
    and start time, so a reused pid is never hit) and stopped at clean-up,
    before the sessions."""

    def __init__(self, workdir):
        super().__init__(workdir)
        self.adopted = {}
        # Run first (the agent's own shutdown), and after the processes are gone, also when a signal ends the
        # suite (meshlib's handler calls cleanup() and exits).
        self.before_cleanup = []
        self.after_cleanup = []

    def adopt(self, pids):
        for p in pids:
            st = start_time(p)
            if st is not None:
                self.adopted.setdefault(p, st)

    def adopted_alive(self):
        return [p for p, st in self.adopted.items() if start_time(p) == st
                and (M._proc_stat(p) or {}).get("state") != "Z"]

    def cleanup(self):
        if not self._cleaned:
            for fn in self.before_cleanup:
                fn()
            for sig, bound in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                for p in self.adopted_alive():
                    try:
                        os.kill(p, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + bound
                while time.monotonic() < deadline and self.adopted_alive():
                    time.sleep(0.05)
        first = not self._cleaned
        super().cleanup()
        if first:
            for fn in self.after_cleanup:
                fn()

    def leftovers(self):
        left = super().leftovers()
        alive = self.adopted_alive()
        if alive:
            left.append(("processes below the Nomad agent", alive))
        return left


# ------------------------------------------------------------------ Nomad agent
AGENT_HCL = """# Nomad dev agent for scripts/nomad-e2e: loopback only, this suite's ports.
bind_addr            = "127.0.0.1"
disable_update_check = true
ports {
  http = %(http)d
  rpc  = %(rpc)d
  serf = %(serf)d
}
client {
  min_dynamic_port = %(dmin)d
  max_dynamic_port = %(dmax)d
  # The default cap is 30s, which the shipped job's kill_timeout fits; the
  # fixed-30s-drain comparison needs more.
  max_kill_timeout = "60s"
  options = { "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean" }
}
plugin "raw_exec" {
  config { enabled = true }
}
"""

class Agent:
    def __init__(self, runner, nomad_bin, workdir):
        self.runner = runner
        self.bin = nomad_bin
        self.workdir = workdir
        self.addr = "http://127.0.0.1:%d" % NOMAD_HTTP
        self.proc = None
        # What existed before: only what this agent creates is removed.
        self.tmp_before = set(glob.glob("/tmp/NomadClient*")) | set(glob.glob("/tmp/NomadServer*"))
        self.cgroups_before = set(self._cgroup_dirs())
        runner.before_cleanup.append(self.stop_process)
        runner.after_cleanup.append(self.remove_leftovers)

    @staticmethod
    def _cgroup_dirs():
        out = []
        for base in glob.glob("/sys/fs/cgroup/*/") + ["/sys/fs/cgroup/"]:
            for name in ("nomad", "nomad.slice"):
                root = os.path.join(base, name)
                if os.path.isdir(root):
                    for d, _, _ in os.walk(root):
                        out.append(d)
        return out

    def start(self):
        busy = [p for p in (NOMAD_HTTP, NOMAD_RPC, NOMAD_SERF) if not M.port_free(p)]
        if busy:
            raise Failure("ports %s are in use on 127.0.0.1 (this suite's range is 29600-29799)" % busy)
        cfg = os.path.join(self.workdir, "agent.hcl")
        with open(cfg, "w") as f:
            f.write(AGENT_HCL % {"http": NOMAD_HTTP, "rpc": NOMAD_RPC, "serf": NOMAD_SERF,
                                 "dmin": DYN_MIN, "dmax": DYN_MAX})
        self.proc = self.runner.start("nomad-agent", [self.bin, "agent", "-dev", "-config=%s" % cfg])
        t0 = now()

        def node_ready():
            if not self.proc.alive():
                raise Failure("the Nomad agent exited (rc %s):\n%s" % (self.proc.rc, self.proc.tail()))
            st, body = http_status(self.addr + "/v1/nodes", 1.0)
            if st != 200:
                return None
            nodes = json.loads(body)
            return [n for n in nodes if n.get("Status") == "ready"
                    and (n.get("Drivers") or {}).get("raw_exec", {}).get("Healthy")]
        nodes = wait_until(node_ready, 60, "a ready Nomad node with raw_exec", interval=0.2)
        self.node_id = nodes[0]["ID"]
        return now() - t0

    def api(self, path, method="GET", body=None, timeout=3.0):
        st, text = http(method, self.addr + path, body, timeout=timeout)
        if st != 200:
            raise Failure("Nomad %s %s: HTTP %s %s" % (method, path, st, text[:300]))
        return json.loads(text) if text.strip() else None

    def cli(self, *args, check=True, timeout=60):
        r = subprocess.run([self.bin] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout,
                           env=dict(os.environ, NOMAD_ADDR=self.addr))
        if check and r.returncode != 0:
            raise Failure("nomad %s: exit %d\n%s%s" % (" ".join(str(a) for a in args), r.returncode,
                                                      r.stdout[-1500:], r.stderr[-1500:]))
        return r

    def allocs(self, job):
        return self.api("/v1/job/%s/allocations?all=true" % job) or []

    def alloc(self, alloc_id):
        return self.api("/v1/allocation/%s" % alloc_id)

    def checks(self, alloc_id):
        st, body = http_status(self.addr + "/v1/client/allocation/%s/checks" % alloc_id, 1.0)
        return json.loads(body) if st == 200 and body.strip() else {}

    def deployment(self, job):
        st, body = http_status(self.addr + "/v1/job/%s/deployment" % job, 2.0)
        return json.loads(body) if st == 200 and body.strip() not in ("", "null") else None

    def job_version(self, job):
        return self.api("/v1/job/%s" % job)["Version"]

    def wait_rolled(self, job, version, timeout):
        """Until the deployment of `version` succeeded and every allocation
        of an older version is terminal. Returns the deployment."""
        def done():
            d = self.deployment(job)
            if d is None or d.get("JobVersion") != version:
                return None
            if d["Status"] in ("failed", "cancelled"):
                raise Failure("deployment %s of version %d: %s (%s)" % (
                    d["ID"][:8], version, d["Status"], d.get("StatusDescription")))
            if d["Status"] != "successful":
                return None
            old = [a for a in self.allocs(job) if a["JobVersion"] < version
                   and a["ClientStatus"] not in ("complete", "failed", "lost")]
            return None if old else d
        return wait_until(done, timeout, "deployment of %s version %d" % (job, version), interval=0.25)

    def wait_stopped(self, job, timeout):
        def done():
            live = [a for a in self.allocs(job) if a["ClientStatus"] not in ("complete", "failed", "lost")]
            return not live
        wait_until(done, timeout, "every allocation of %s to stop" % job, interval=0.25)

    def adopt_descendants(self):
        """Record the agent's descendants (executors, tasks) for clean-up."""
        if self.proc is not None and self.proc.alive():
            self.runner.adopt(M.descendants(self.proc.pid))

    def stop_process(self):
        """SIGINT: the agent's own clean shutdown. Its descendants are
        recorded first: whatever of them outlives it is stopped by the
        runner's clean-up."""
        if self.proc is not None and self.proc.alive():
            self.adopt_descendants()
            self.proc.signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except Failure:
                self.proc.kill_session(signal.SIGKILL)

    def stop(self):
        """Stop the agent, then remove what a dev agent leaves: empty nomad
        cgroup folders and /tmp/NomadClient*."""
        self.stop_process()
        return self.remove_leftovers()

    def remove_leftovers(self):
        removed = []
        for d in sorted(set(self._cgroup_dirs()) - self.cgroups_before, key=len, reverse=True):
            try:
                os.rmdir(d)
                removed.append(d)
            except OSError:
                pass
        for d in (set(glob.glob("/tmp/NomadClient*")) | set(glob.glob("/tmp/NomadServer*"))) - self.tmp_before:
            # Secrets and task dirs may still be tmpfs mounts if the agent died.
            subprocess.run(["umount", "-R", "-l", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        return removed

    def leftovers(self):
        left = [d for d in set(self._cgroup_dirs()) - self.cgroups_before]
        left += [d for d in (set(glob.glob("/tmp/NomadClient*")) | set(glob.glob("/tmp/NomadServer*")))
                 - self.tmp_before]
        return sorted(left)


def rfc3339(ts):
    """Nomad's RFC 3339 nanosecond timestamps -> unix seconds (float)."""
    if not ts or ts.startswith("0001-"):
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", ts)
    if not m:
        return None
    base = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    frac = float("0." + m.group(2)) if m.group(2) else 0.0
    off = 0
    if m.group(3) != "Z":
        sign = 1 if m.group(3)[0] == "+" else -1
        off = sign * (int(m.group(3)[1:3]) * 3600 + int(m.group(3)[4:6]) * 60)
    return base + frac - off


def ports_of(alloc):
    """{label: port} that Nomad allocated, and the host IPs."""
    shared = ((alloc.get("AllocatedResources") or {}).get("Shared") or {})
    return ({p["Label"]: p["Value"] for p in shared.get("Ports") or []},
            {p["Label"]: p.get("HostIP") for p in shared.get("Ports") or []})


def task_events(alloc, task="backend"):
    st = (alloc.get("TaskStates") or {}).get(task) or {}
    return [(e["Time"] / 1e9, e["Type"], e) for e in st.get("Events") or []]


class AllocWatcher:
    """Polls a job's allocations (wall clock, unix seconds): for each, its
    Nomad check results, meshinit's /ready and the deployment health Nomad
    recorded."""

    def __init__(self, agent, job, interval=0.3):
        self.agent = agent
        self.job = job
        self.interval = interval
        self.lock = threading.Lock()
        self.info = {}  # alloc id -> dict
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _entry(self, a):
        e = self.info.get(a["ID"])
        if e is None:
            e = {"id": a["ID"], "version": a["JobVersion"], "seen": time.time(), "checks": [],
                 "ready": [], "status_port": None, "healthy": None}
            self.info[a["ID"]] = e
        return e

    def _run(self):
        while not self.stop_evt.is_set():
            try:
                self.agent.adopt_descendants()
                for a in self.agent.allocs(self.job):
                    with self.lock:
                        e = self._entry(a)
                        e["client_status"] = a["ClientStatus"]
                        e["version"] = a["JobVersion"]
                        ds = a.get("DeploymentStatus") or {}
                        if ds.get("Healthy") is not None and e["healthy"] is None:
                            e["healthy"] = (ds["Healthy"], rfc3339(ds.get("Timestamp")), time.time())
                        e["stub"] = a
                    if a["ClientStatus"] != "running":
                        continue
                    if e["status_port"] is None:
                        ports, _ = ports_of(self.agent.alloc(a["ID"]))
                        e["status_port"] = ports.get("status")
                    t = time.time()
                    for r in self.agent.checks(a["ID"]).values():
                        v = (r.get("Status"), r.get("StatusCode"), (r.get("Output") or "").strip()[:80])
                        with self.lock:
                            if not e["checks"] or e["checks"][-1][1] != v:
                                e["checks"].append((t, v))
                    if e["status_port"]:
                        st, body = http_status("http://127.0.0.1:%d/ready" % e["status_port"], 0.5)
                        v = (st, body.strip()[:40])
                        with self.lock:
                            if not e["ready"] or e["ready"][-1][1] != v:
                                e["ready"].append((time.time(), v))
            except Exception:  # noqa: BLE001 - keep polling through agent hiccups
                pass
            self.stop_evt.wait(self.interval)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_evt.set()
        self.thread.join(5)

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.info))


# ------------------------------------------------------------------ processes and sockets
def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def find_procs(root_pid, pred):
    return [p for p in M.descendants(root_pid) if pred(cmdline(p))]


def listening_sockets(pids):
    """(proto, local address, pid, name) of every listening TCP socket and
    bound UDP socket held by pids."""
    inodes = {}
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                m = re.match(r"socket:\[(\d+)\]", target)
                if m:
                    inodes[m.group(1)] = pid
        except OSError:
            continue
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open("/proc/net/%s" % proto) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if proto.startswith("tcp") and state != "0A":  # LISTEN
                continue
            if proto.startswith("udp") and state != "07":
                continue
            if inode not in inodes:
                continue
            hexip, hexport = local.split(":")
            port = int(hexport, 16)
            if len(hexip) == 8:
                ip = ".".join(str(int(hexip[i:i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                words = [hexip[i:i + 8] for i in range(0, 32, 8)]
                raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
                ip = str(ipaddress.IPv6Address(raw))
            pid = inodes[inode]
            out.append((proto, "%s:%d" % (ip, port), pid, os.path.basename((cmdline(pid) or ["?"])[0])))
    return sorted(set(out))


# ------------------------------------------------------------------ job files
def hcl_args(hcl):
    """The quoted strings and bare references of the job's `args = [ ... ]`
    (what tests/deploy.rs reads too)."""
    start = hcl.index("args = [") + len("args = [")
    out, i = [], start
    while True:
        while hcl[i] in " \n,":
            i += 1
        if hcl[i] == "#":
            i = hcl.index("\n", i)
        elif hcl[i] == '"':
            j = hcl.index('"', i + 1)
            out.append(hcl[i + 1:j])
            i = j + 1
        elif hcl[i] == "]":
            return out, start, i + 1
        else:
            j = i
            while hcl[j] not in ",\n ":
                j += 1
            out.append("${%s}" % hcl[i:j])
            i = j


def replace_once(text, old, new, what):
    n = text.count(old)
    if n != 1:
        raise Failure("deriving the %s job: %r occurs %d times in the shipped job (expected once)" % (
            what, old, n))
    return text.replace(old, new)


# meshinit's flags that take a value and have no kuma-dp counterpart.
MESHINIT_VALUE_FLAGS = {"--drain-timeout", "--drain-min", "--drain-idle", "--app-grace-delay",
                        "--app-stop-timeout", "--shutdown-budget", "--status-listen", "--log-format",
                        "--log-level"}


def plain_init_job(shipped, tini, start_script):
    """The shipped job with meshinit swapped for tini: tini -g starts a shell
    that starts the app, waits for its health URL, then execs kuma-dp with
    the very flags meshinit would give it; on the kill signal tini sends it
    to the whole process group (app, kuma-dp and its Envoy) at once. The
    check polls kuma-dp's own /ready (there is no meshinit /ready)."""
    args, a0, a1 = hcl_args(shipped)
    dp_bin, dp_flags, probe, app = None, [], None, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            app = args[i + 1:]
            break
        if a == "--kuma-dp":
            dp_bin = args[i + 1]
            i += 2
        elif a in ("--cp-address", "--dataplane-file", "--dataplane-var", "--dataplane-token-file"):
            dp_flags.append("%s=%s" % (a, args[i + 1]))
            i += 2
        elif a.startswith("--kuma-dp-arg="):
            dp_flags.append(a[len("--kuma-dp-arg="):])
            i += 1
        elif a == "--probe-http":
            probe = args[i + 1]
            i += 2
        elif a in MESHINIT_VALUE_FLAGS:
            i += 2
        else:
            raise Failure("deriving the plain-init job: unknown meshinit flag %r in the shipped job" % a)
    if not (dp_bin and probe and app):
        raise Failure("deriving the plain-init job: no --kuma-dp, --probe-http or app in the shipped job")
    new_args = ["-s", "-g", "--", "/bin/bash", start_script, probe, str(len(app))] + app + \
        [dp_bin, "run"] + dp_flags
    quoted = ",\n          ".join(json.dumps(a) for a in new_args)
    job = shipped[:a0] + "\n          " + quoted + ",\n        ]" + shipped[a1:]
    job = replace_once(job, 'command = var.meshinit_binary', 'command = "%s"' % tini, "plain-init")
    job = replace_once(job, 'port     = "status"', 'port     = "readiness"', "plain-init")
    return job


def fixed_drain_job(shipped):
    """The shipped job with kuma-dp's default drain time (30s) waited out in
    full: meshinit's idle drain off, its timeouts and kill_timeout raised to
    fit (worst case 40s + 10s = 50s)."""
    job = shipped
    for old, new in (('"--kuma-dp-arg=--drain-time=10s"', '"--kuma-dp-arg=--drain-time=30s"'),
                     ('"--drain-min", "8s",', '"--drain-until-idle=false",'),
                     ('"--drain-timeout", "15s"', '"--drain-timeout", "40s"'),
                     ('"--shutdown-budget", "30s"', '"--shutdown-budget", "55s"'),
                     ('kill_timeout = "30s"', 'kill_timeout = "55s"')):
        job = replace_once(job, old, new, "fixed-drain")
    return job
