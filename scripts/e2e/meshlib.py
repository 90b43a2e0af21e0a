"""Shared helpers for scripts/mesh-e2e and scripts/mesh-demo (stdlib only).

Processes are started in their own session (setsid) so that everything they
spawn (meshinit -> app, kuma-dp -> Envoy) can be found and stopped by session
id, even when a child moved to its own process group. Cleanup() stops every
session this module started, SIGTERM first, SIGKILL after a bound.
"""
import atexit
import ctypes
import fcntl
import http.client as httpclient
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)
REPO = os.path.dirname(SCRIPTS)

T0 = time.monotonic()


def now():
    return time.monotonic() - T0


_print_lock = threading.Lock()
QUIET = False


def say(msg):
    with _print_lock:
        print("[%7.2fs] %s" % (now(), msg), flush=True)


def in_ci():
    """CI as every test of meshinit reads it (scripts/lib/ci.sh, tests/common
    in_ci): set, and not empty, "false" or "0". Under CI what cannot run
    fails; elsewhere it is a loud skip."""
    ci = os.environ.get("CI", "")
    return ci not in ("", "false", "0")


class Unavailable(Exception):
    """The real components cannot be had on this machine (install-mesh-deps exit 3)."""


class Failure(Exception):
    pass


# ------------------------------------------------------------------ waiting
def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a truthy value (returned) or timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling tolerates errors
            last_exc = e
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.0fs waiting for %s%s" % (
                timeout, what, (" (last error: %s)" % last_exc) if last_exc else ""))
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Like the servers that will bind it: TIME_WAIT leftovers do not count.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http(method, url, body=None, timeout=3.0, headers=None):
    """Return (status, body_text). Connection errors raise OSError."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def http_status(url, timeout=1.0):
    try:
        return http("GET", url, timeout=timeout)
    except (OSError, httpclient.HTTPException):
        return None, ""


# ------------------------------------------------------------------ processes
def _proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    # comm may contain spaces/parens: split after the last ')'
    rest = s[s.rindex(")") + 2:].split()
    # rest[0]=state, [1]=ppid, [2]=pgrp, [3]=session
    return {"state": rest[0], "ppid": int(rest[1]), "pgrp": int(rest[2]), "sid": int(rest[3])}


def pids_in_session(sid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _proc_stat(int(d))
        if st and st["sid"] == sid and st["state"] != "Z":
            out.append(int(d))
    return out


def comm(pid):
    """A process's name as the kernel has it (/proc/PID/comm), or None."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def children(pid, name=None):
    """Live children of pid (named `name`, if given), in pid order."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st and st["ppid"] == pid and st["state"] != "Z" and (name is None or comm(int(d)) == name):
                out.append(int(d))
    return sorted(out)


def descendants(pid):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(int(d))
            if st:
                children.setdefault(st["ppid"], []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


class Proc:
    def __init__(self, name, argv, log_path, env, cwd):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab", buffering=0)
        self.t_start = now()
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid
        self.sid = self.pid
        self.t_exit = None
        self.rc = None
        self.seen = set()  # pids seen in the session (for the cleanup check)

    def poll(self):
        if self.rc is None:
            rc = self.popen.poll()
            if rc is not None:
                self.rc = rc
                self.t_exit = now()
        return self.rc

    def alive(self):
        return self.poll() is None

    def session_pids(self):
        ps = pids_in_session(self.sid)
        self.seen.update(ps)
        return ps

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill_session(self, sig):
        for p in self.session_pids():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise Failure("%s did not exit within %.0fs" % (self.name, timeout))
            time.sleep(0.02)
        return self.rc

    def text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_log(self, regex, timeout, what=None):
        rx = re.compile(regex)

        def pred():
            m = rx.search(self.text())
            if m:
                return m
            if not self.alive():
                raise Failure("%s exited (rc %s) before logging %r" % (self.name, self.rc, regex))
            return None
        return wait_until(pred, timeout, what or "%s to log %r" % (self.name, regex))

    def tail(self, n=40):
        lines = self.text().splitlines()
        return "\n".join("    | " + l for l in lines[-n:])


def stop_sessions(procs, term_bound=5.0, kill_bound=5.0):
    """Stop every session of procs: SIGTERM, then SIGKILL what is left after
    term_bound seconds; bounded waits."""
    live = [p for p in procs if p.session_pids()]
    for p in live:
        p.kill_session(signal.SIGTERM)
        # A process a scenario stopped (SIGSTOP: a frozen Envoy or kuma-cp)
        # would hold the TERM pending until SIGKILL: let it run.
        p.kill_session(signal.SIGCONT)
    for sig, bound in ((None, term_bound), (signal.SIGKILL, kill_bound)):
        if sig is not None:
            for p in live:
                if p.session_pids():
                    p.kill_session(sig)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline and any(p.session_pids() for p in live):
            time.sleep(0.05)
    for p in procs:
        p.poll()


class Runner:
    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []
        self._cleaned = False
        atexit.register(self.cleanup)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum, _frame):
        say("interrupted by signal %d: cleaning up" % signum)
        self.cleanup()
        os._exit(128 + signum)

    def start(self, name, argv, env=None, cwd=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        log_path = os.path.join(self.workdir, "%s.log" % name)
        p = Proc(name, [str(a) for a in argv], log_path, full_env, cwd or self.workdir)
        self.procs.append(p)
        with open(os.path.join(self.workdir, "%s.cmd" % name), "w") as f:
            f.write(" ".join(shlex.quote(a) for a in p.argv) + "\n")
            for k, v in sorted((env or {}).items()):
                f.write("# env %s=%s\n" % (k, v))
        return p

    def cleanup(self):
        """Stop every session started: SIGTERM, then SIGKILL after 5 s."""
        if self._cleaned:
            return
        self._cleaned = True
        stop_sessions(self.procs)
        left = [(p.name, p.session_pids()) for p in self.procs if p.session_pids()]
        if left:
            print("cleanup: processes still running: %s" % left, file=sys.stderr, flush=True)

    def leftovers(self):
        return [(p.name, p.session_pids()) for p in self.procs if p.session_pids()]


# ------------------------------------------------------------------ deps and build
def install_deps():
    """Run scripts/install-mesh-deps; return its KEY=VALUE lines as a dict."""
    t = time.monotonic()
    r = subprocess.run([os.path.join(SCRIPTS, "install-mesh-deps")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode == 3:
        reason = [l for l in r.stderr.splitlines() if "kuma" in l.lower()][-3:]
        raise Unavailable("\n".join(reason) or "kuma-cp/kuma-dp unavailable")
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise Failure("scripts/install-mesh-deps failed (exit %d)" % r.returncode)
    deps = {}
    for line in r.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            deps[k] = shlex.split(v)[0] if v else ""
    for k in ("ENVOY_BIN", "KUMA_CP_BIN", "KUMA_DP_BIN"):
        if not os.access(deps.get(k, ""), os.X_OK):
            raise Failure("install-mesh-deps did not provide %s" % k)
    deps["_seconds"] = time.monotonic() - t
    return deps


def build_meshinit():
    """cargo build --release with a target dir outside the checkout."""
    if os.environ.get("MESHINIT_BIN"):
        return os.environ["MESHINIT_BIN"], 0.0
    cache = os.environ.get("MESHINIT_CACHE", os.path.expanduser("~/.cache/meshinit"))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(cache, "target"))
    t = time.monotonic()
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    r = subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "meshinit"],
                       cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        raise Failure("cargo build --release failed")
    exe = os.path.join(target, "release", "meshinit")
    if not os.access(exe, os.X_OK):
        raise Failure("no meshinit binary at %s" % exe)
    return exe, time.monotonic() - t


# ------------------------------------------------------------------ network
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def private_network():
    """Move this process (and everything it starts from now on) into a new
    network namespace that has only a loopback interface, and bring it up.

    Why: kuma-cp binds its dp server, monitoring, diagnostics and inter-cp
    ports on every interface with no setting to change that (only the API
    server has KUMA_API_SERVER_HTTP_INTERFACE), and its ports are fixed, so
    two suites on one host collide. In a private namespace every listener is
    reachable from this suite alone, and ports never clash. Call it after
    everything that needs the network (install_deps, build_meshinit).

    Returns a word for the log: "private" or why the host's network is used
    (needs root or user namespaces; MESH_E2E_HOST_NETWORK=1 opts out)."""
    if os.environ.get("MESH_E2E_HOST_NETWORK") == "1":
        return "host (MESH_E2E_HOST_NETWORK=1)"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if in_ci():
            raise Failure("cannot create a private network namespace: %s" % os.strerror(err))
        return "host (unshare(CLONE_NEWNET): %s; kuma-cp's ports are open on every interface)" % (
            os.strerror(err))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14s", b"lo", 0, b"\0" * 14)
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b"\0" * 14))
    finally:
        s.close()
    return "private (a network namespace with only loopback)"


# ------------------------------------------------------------------ control plane
class ControlPlane:
    API_PORT = 5681
    DP_PORT = 5678
    API = "http://127.0.0.1:%d" % API_PORT
    DP_SERVER = "https://127.0.0.1:%d" % DP_PORT
    # Checked free before kuma-cp starts, so a busy one is named, not found
    # later as "kuma-cp exited".
    PORTS = (DP_PORT, API_PORT)

    def __init__(self, runner, deps, workdir, extra_env=None):
        self.runner = runner
        self.deps = deps
        self.workdir = workdir
        self.env = {
            "KUMA_ENVIRONMENT": "universal",
            "KUMA_MODE": "zone",
            "KUMA_STORE_TYPE": "memory",
            # No default mesh: the suite creates it without default policies
            # (MeshRetry etc. would hide failures of a careless rollout).
            "KUMA_DEFAULTS_SKIP_MESH_CREATION": "true",
            # Faster health propagation (HDS report interval, default 5s)
            # and deregistration (default 10s) keep the suite short.
            "KUMA_DP_SERVER_HDS_INTERVAL": os.environ.get("MESH_E2E_HDS_INTERVAL", "1s"),
            "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY": "2s",
            "KUMA_GENERAL_WORK_DIR": os.path.join(workdir, "kuma-cp-work"),
            "KUMA_DIAGNOSTICS_SERVER_PORT": "5680",
            # Its inter-CP address is otherwise guessed from a non-loopback
            # interface, and the suite's private network has none.
            "KUMA_INTER_CP_CATALOG_INSTANCE_ADDRESS": "127.0.0.1",
            "KUMA_API_SERVER_HTTP_INTERFACE": "127.0.0.1",
            "KUMA_API_SERVER_HTTPS_INTERFACE": "127.0.0.1",
        }
        self.env.update(extra_env or {})
        self.proc = None
        # kuma-cp autogenerates a self-signed server certificate (for
        # localhost and every local IP) in its work dir; kuma-dp verifies the
        # CP with it (--ca-cert-file), no --skip-verify needed.
        self.ca_cert = os.path.join(self.env["KUMA_GENERAL_WORK_DIR"], "kuma-cp.crt")

    def start(self):
        busy = [p for p in self.PORTS if not port_free(p)]
        if busy:
            raise Failure("ports %s are in use on 127.0.0.1: is another kuma-cp running?" % busy)
        self.proc = self.runner.start("kuma-cp", [self.deps["KUMA_CP_BIN"], "run", "--log-level=info"],
                                      env=self.env)
        def up():
            if not self.proc.alive():
                raise Failure("kuma-cp exited with %s:\n%s" % (self.proc.rc, self.proc.tail(10)))
            return http_status(self.API + "/")[0] == 200
        wait_until(up, 90, "kuma-cp API on :%d" % self.API_PORT)
        wait_until(lambda: port_open(self.DP_PORT), 30, "kuma-cp dp server on :%d" % self.DP_PORT)
        return self.proc

    # The suite's mesh is a production one: mutual TLS with a builtin CA
    # (kuma-cp issues every data plane its certificate, Envoy refuses
    # plaintext on inbounds) and, since a mesh with mTLS denies all traffic
    # without a MeshTrafficPermission, one permission that lets the client
    # service reach the backend service and nothing else.
    CA_BACKEND = "ca-1"
    PERMISSION = "client-to-backend"

    def create_mesh(self, name="default", mtls=True):
        mesh = {"type": "Mesh", "name": name, "skipCreatingInitialPolicies": ["*"]}
        if mtls:
            mesh["mtls"] = {"enabledBackend": self.CA_BACKEND,
                            "backends": [{"name": self.CA_BACKEND, "type": "builtin"}]}
        st, body = http("PUT", "%s/meshes/%s" % (self.API, name), mesh)
        if st not in (200, 201):
            raise Failure("creating mesh %s: HTTP %s %s" % (name, st, body))
        return self.policies(name)

    def allow(self, src, dst, mesh="default", name=None):
        """A MeshTrafficPermission: service src may reach service dst."""
        name = name or self.PERMISSION
        st, body = http("PUT", "%s/meshes/%s/meshtrafficpermissions/%s" % (self.API, mesh, name), {
            "type": "MeshTrafficPermission", "mesh": mesh, "name": name,
            "spec": {"targetRef": {"kind": "MeshService", "name": dst},
                     "from": [{"targetRef": {"kind": "MeshService", "name": src},
                               "default": {"action": "Allow"}}]}})
        if st not in (200, 201):
            raise Failure("creating MeshTrafficPermission %s: HTTP %s %s" % (name, st, body))
        return name

    def mtls(self, mesh="default"):
        """(enabled backend name, its type) as kuma-cp holds the mesh."""
        st, body = http("GET", "%s/meshes/%s" % (self.API, mesh))
        if st != 200:
            raise Failure("GET mesh %s: HTTP %s" % (mesh, st))
        m = (json.loads(body).get("mtls") or {})
        enabled = m.get("enabledBackend")
        kinds = {b.get("name"): b.get("type") for b in m.get("backends") or []}
        return enabled, kinds.get(enabled)

    def policies(self, mesh="default"):
        """Names of policies present in mesh (to report which were on)."""
        found = {}
        for kind in ("meshretries", "meshtimeouts", "meshcircuitbreakers", "meshhealthchecks",
                     "meshtrafficpermissions"):
            st, body = http_status("%s/meshes/%s/%s" % (self.API, mesh, kind))
            if st == 200:
                try:
                    items = json.loads(body).get("items") or []
                except ValueError:
                    items = []
                if items:
                    found[kind] = [i.get("name") for i in items]
        return found

    def token(self, name, mesh="default"):
        st, body = http("POST", self.API + "/tokens/dataplane", {"name": name, "mesh": mesh})
        if st != 200 or not body.strip():
            raise Failure("token for %s: HTTP %s %s" % (name, st, body[:200]))
        path = os.path.join(self.workdir, "%s.token" % name)
        with open(path, "w") as f:
            f.write(body.strip())
        os.chmod(path, 0o600)
        return path

    def dataplanes(self, mesh="default"):
        st, body = http("GET", "%s/meshes/%s/dataplanes" % (self.API, mesh))
        if st != 200:
            raise Failure("GET dataplanes: HTTP %s" % st)
        return {i["name"]: i for i in json.loads(body).get("items", [])}

    def dataplane(self, name, mesh="default"):
        st, body = http_status("%s/meshes/%s/dataplanes/%s" % (self.API, mesh, name))
        if st == 200:
            return json.loads(body)
        if st == 404:
            return None
        raise OSError("GET dataplane %s: HTTP %s" % (name, st))


# ------------------------------------------------------------------ load client
class Load:
    """Bounded closed-loop HTTP load: `workers` threads, each with a
    keep-alive connection, paced to `rate` requests/s in total. Every non-2xx
    answer and every connection error counts as a failure."""

    def __init__(self, port, rate=250, workers=5, path="/", timeout=5.0, max_requests=200000,
                 address="127.0.0.1", host_header="backend"):
        # address: where the workers connect (a client data plane's outbound
        # on loopback; with transparent proxying a service's virtual IP, which
        # the rules hand to Envoy); host_header: the Host they send.
        self.port = port
        self.address = address
        self.host_header = host_header
        self.rate = rate
        self.workers = workers
        self.path = path
        self.timeout = timeout
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.total = 0
        self.failed = 0
        self.by_backend = {}
        self.first_ok = {}  # backend -> time of its first 2xx answer
        self.last_ok = {}  # backend -> time of its last 2xx answer
        self.ok_at = {}  # backend -> [time each of its 2xx answers was asked for]
        self.errors = []  # (t, what)
        self.error_spans = []  # (t sent, t failed, what): which failures were in flight at a moment
        self.stop_evt = threading.Event()
        self.threads = []

    def _one(self, conn):
        t = now()
        try:
            conn.request("GET", self.path, headers={"Host": self.host_header})
            r = conn.getresponse()
            body = r.read().decode(errors="replace")
            ok = 200 <= r.status < 300
            what = "HTTP %d %s" % (r.status, body.strip()[:160]) if not ok else body.strip().split(" ")[0]
            reuse = not r.will_close
        except (OSError, httpclient.HTTPException) as e:
            ok, what, reuse = False, "%s: %s" % (type(e).__name__, e), False
        with self.lock:
            self.total += 1
            if ok:
                self.by_backend[what] = self.by_backend.get(what, 0) + 1
                self.first_ok.setdefault(what, t)
                self.last_ok[what] = t
                self.ok_at.setdefault(what, []).append(t)
            else:
                self.failed += 1
                self.errors.append((t, what))
                self.error_spans.append((t, now(), what))
        return reuse

    def _worker(self, idx):
        period = self.workers / float(self.rate)
        nxt = time.monotonic() + period * idx / self.workers
        conn = None
        while not self.stop_evt.is_set():
            with self.lock:
                if self.total >= self.max_requests:
                    break
            if conn is None:
                conn = httpclient.HTTPConnection(self.address, self.port, timeout=self.timeout)
            if not self._one(conn):
                conn.close()
                conn = None
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                self.stop_evt.wait(delay)
            else:
                nxt = time.monotonic()
        if conn is not None:
            conn.close()

    def start(self):
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(self.timeout + 2)

    def snapshot(self):
        with self.lock:
            return self.total, self.failed

    def wait_total(self, n, timeout):
        wait_until(lambda: self.snapshot()[0] >= n, timeout, "%d requests sent" % n, interval=0.02)

    def answers(self, backend, after=float("-inf"), before=float("inf")):
        """Times (when each was sent) of the 2xx answers from backend in
        [after, before): a backend's share of the load over time."""
        with self.lock:
            return [t for t in self.ok_at.get(backend, ()) if after <= t < before]

    def errors_between(self, after=float("-inf"), before=float("inf")):
        with self.lock:
            return [(t, what) for t, what in self.errors if after <= t < before]


class UnixHTTPConnection(httpclient.HTTPConnection):
    def __init__(self, path, timeout=2.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def envoy_admin(sock_path, path):
    """GET path from an Envoy admin API on a Unix socket (kuma-dp's default)."""
    c = UnixHTTPConnection(sock_path)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


XDS_CHANGE_STATS = ("listener_manager.listener_added", "listener_manager.listener_modified",
                    "listener_manager.listener_removed", "cluster_manager.cluster_added",
                    "cluster_manager.cluster_modified", "cluster_manager.cluster_removed")


def xds_changes(sock_path):
    st, body = envoy_admin(sock_path, "/stats?filter=_manager")
    if st != 200:
        raise OSError("envoy admin /stats: HTTP %s" % st)
    total = 0
    for line in body.splitlines():
        k, _, v = line.partition(": ")
        if k in XDS_CHANGE_STATS:
            total += int(v)
    return total


def wait_xds_quiet(sock_path, quiet=3.0, timeout=40.0):
    """Wait until an Envoy got no listener/cluster change for `quiet` seconds
    (kuma-cp keeps reshaping outbounds for a few seconds after it starts:
    MeshService generation, VIPs). Returns seconds waited."""
    t0 = time.monotonic()
    last = xds_changes(sock_path)
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() - t0 > timeout:
            raise Failure("Envoy config kept changing for %.0fs" % timeout)
        time.sleep(0.2)
        cur = xds_changes(sock_path)
        if cur != last:
            last, since = cur, time.monotonic()
    return time.monotonic() - t0


class ValueWatcher:
    """Poll fn() in a thread and record (t, value) each time the value changes.
    An exception counts as the value None, or (keep_on_error) as no change."""

    def __init__(self, fn, interval=0.05, keep_on_error=False):
        self.fn = fn
        self.interval = interval
        self.keep_on_error = keep_on_error
        self.changes = []
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        last = object()
        while not self.stop_evt.is_set():
            try:
                cur = self.fn()
            except Exception:  # noqa: BLE001 - keep polling
                cur = last if self.keep_on_error else None
            if cur != last:
                self._record(now(), cur)
                last = cur
            self.stop_evt.wait(self.interval)

    def _record(self, t, value):
        self.changes.append((t, value))

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_evt.set()
        self.thread.join(2)

    def first(self, pred, after=0.0):
        """Time of the first recorded value satisfying pred, or None."""
        for t, v in self.changes:
            if t >= after and pred(v):
                return t
        return None

    def describe(self, t0=0.0):
        return ", ".join("%+.2fs %s" % (t - t0, v) for t, v in self.changes)


class ReadyWatcher(ValueWatcher):
    """Poll a /ready URL in a thread and record (t, status, body) changes."""

    def __init__(self, url, interval=0.05):
        super().__init__(lambda: self._get(url), interval)

    @staticmethod
    def _get(url):
        st, body = http_status(url, timeout=0.5)
        return st, body.strip()

    def _record(self, t, value):
        # (t, status, body): what the suite and the demo read.
        self.changes.append((t, value[0], value[1]))

    def describe(self, t0=0.0):
        return ", ".join("%+.2fs %s%s" % (t - t0, st if st else "no answer",
                                          (" %s" % body) if body else "")
                         for t, st, body in self.changes)


class PresenceWatcher(ValueWatcher):
    """Poll a predicate (e.g. "Dataplane X exists in kuma-cp") in a thread and
    record when its value changes; a failed poll changes nothing."""

    def __init__(self, pred, interval=0.1):
        super().__init__(lambda: bool(pred()), interval, keep_on_error=True)

    def first(self, value, after=0.0):
        return super().first(lambda v: v == value, after)


SHUTDOWN_RX = re.compile(
    r"shutdown: drain ([\d.]+)s, grace ([\d.]+)s, app stop ([\d.]+)s, total ([\d.]+)s, exit (-?\d+)")


def parse_shutdown_line(text):
    m = None
    for m in SHUTDOWN_RX.finditer(text):
        pass
    if not m:
        return None
    return {"drain": float(m.group(1)), "grace": float(m.group(2)), "app_stop": float(m.group(3)),
            "total": float(m.group(4)), "exit": int(m.group(5)), "line": m.group(0)}


IDLE_RX = re.compile(
    r"inbound idle after draining ([\d.]+)s \(at most (\d+) connections, (\d+) requests during the drain\)")
NO_STATS_RX = re.compile(r"cannot read Envoy's inbound stats; the drain lasts kuma-dp's drain time")


def parse_idle_line(text):
    """meshinit's idle-drain decision: {connections, requests (the busiest load
    seen during the drain), drained, line} or None."""
    m = IDLE_RX.search(text)
    if not m:
        return None
    return {"connections": int(m.group(2)), "requests": int(m.group(3)),
            "drained": float(m.group(1)), "line": m.group(0)}


# ------------------------------------------------------------------ the scenario
def env_duration(name, default):
    v = os.environ.get(name, default)
    m = re.fullmatch(r"([\d.]+)(ms|s)?", v)
    if not m:
        raise Failure("%s=%r: use e.g. 3s or 500ms" % (name, v))
    return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


# kuma_dp_flags(drain_time=DEFAULT): leave kuma-dp's --drain-time at its default (30 s).
DEFAULT = object()


def fmt_d(seconds):
    return ("%gs" % round(seconds, 3))


class Mesh:
    """kuma-cp + backends + a client data plane on loopback."""

    def __init__(self, runner, deps, meshinit, workdir, port_base=None, drain_time=None,
                 grace=None, mesh="default", drain_min=None):
        self.runner = runner
        self.deps = deps
        self.meshinit = meshinit
        self.workdir = workdir
        self.mesh = mesh
        self.base = int(port_base or os.environ.get("MESH_E2E_PORT_BASE", "27000"))
        self.drain_time = drain_time if drain_time is not None else env_duration("MESH_E2E_DRAIN_TIME", "6s")
        self.grace = grace if grace is not None else env_duration("MESH_E2E_GRACE", "1s")
        # meshinit --drain-min: above the time the control plane needs to
        # withdraw an endpoint from the client (+2.1..3.4 s with the 1 s HDS
        # interval set below), below kuma-dp's drain time.
        self.drain_min = drain_min if drain_min is not None else env_duration("MESH_E2E_DRAIN_MIN", "4s")
        self.cp = ControlPlane(runner, deps, workdir)
        self.tokens = {}
        self.backends = {}

    # ports: backend i -> base+10*i+{1 app, 2 inbound, 3 readiness, 4 meshinit status}
    #        client    -> base+{1 (nothing), 2 inbound, 3 readiness, 5 outbound}
    def ports(self, i):
        b = self.base + 10 * i
        return {"app": b + 1, "inbound": b + 2, "readiness": b + 3, "status": b + 4, "outbound": b + 5}

    def check_ports(self, n_backends=2, slots=None):
        busy = []
        for i in (slots if slots is not None else range(0, n_backends + 1)):
            for k, p in self.ports(i).items():
                if not port_free(p):
                    busy.append(p)
        if busy:
            raise Failure("ports in use on 127.0.0.1: %s (set MESH_E2E_PORT_BASE)" % busy)

    def token(self, name):
        if name not in self.tokens:
            self.tokens[name] = self.cp.token(name, self.mesh)
        return self.tokens[name]

    def kuma_dp_flags(self, name, workdir, drain_time=None):
        """kuma-dp flags every instance gets (besides template and vars).
        drain_time: None for the suite's, DEFAULT for kuma-dp's own (30 s)."""
        os.makedirs(workdir, exist_ok=True)
        if drain_time is None:
            drain_time = self.drain_time
        flags = [
            "--cp-address=%s" % ControlPlane.DP_SERVER,
            "--dataplane-token-file=%s" % self.token(name),
            "--ca-cert-file=%s" % self.cp.ca_cert,
            "--dns-enabled=false",
            "--work-dir=%s" % workdir,
            "--binary-path=%s" % self.deps["ENVOY_BIN"],
        ]
        if drain_time is not DEFAULT:
            flags.append("--drain-time=%s" % fmt_d(drain_time))
        return flags

    def backend_vars(self, i):
        p = self.ports(i)
        return {"mesh": self.mesh, "name": "backend-%d" % i, "address": "127.0.0.1",
                "port": p["inbound"], "app_port": p["app"], "instance": i}

    def app_argv(self, i, startup_delay=0.0, app_extra=()):
        argv = [sys.executable, os.path.join(HERE, "backend.py"), "--port", self.ports(i)["app"],
                "--name", "backend-%d" % i]
        if startup_delay:
            argv += ["--startup-delay", startup_delay]
        return argv + list(app_extra)

    def meshinit_argv(self, i, startup_delay=0.0, tag="", drain_time=None, template="backend-dp.yaml",
                      extra=(), app_extra=()):
        """meshinit's command line for backend i. drain_time: None for the
        suite's kuma-dp --drain-time, DEFAULT for kuma-dp's own 30 s."""
        p = self.ports(i)
        name = "backend-%d" % i
        argv = [self.meshinit,
                "--probe-http", "http://127.0.0.1:%d/healthz" % p["app"],
                "--kuma-dp", self.deps["KUMA_DP_BIN"],
                "--cp-address", ControlPlane.DP_SERVER,
                "--dataplane-file", os.path.join(HERE, template),
                "--dataplane-token-file", self.token(name)]
        for k, v in self.backend_vars(i).items():
            argv += ["--dataplane-var", "%s=%s" % (k, v)]
        for f in self.kuma_dp_flags(name, os.path.join(self.workdir, name + tag + "-dp"), drain_time):
            if f.startswith(("--cp-address=", "--dataplane-token-file=")):
                continue
            argv.append("--kuma-dp-arg=%s" % f)
        argv += ["--proxy-ready-url", "http://127.0.0.1:%d/ready" % p["readiness"],
                 # Above kuma-dp's drain time (30 s by default).
                 "--drain-timeout", fmt_d(max(30.0, 10.0 + (
                     30.0 if drain_time is DEFAULT else self.drain_time if drain_time is None else drain_time))),
                 "--drain-min", fmt_d(self.drain_min),
                 "--app-grace-delay", fmt_d(self.grace),
                 "--app-stop-timeout", "10s",
                 "--status-listen", "127.0.0.1:%d" % p["status"],
                 "--log-format", "text"]
        argv += list(extra)
        argv += ["--"] + self.app_argv(i, startup_delay, app_extra)
        return argv

    def start_backend_meshinit(self, i, startup_delay=0.0, tag="", drain_time=None,
                               template="backend-dp.yaml", extra=(), app_extra=()):
        p = self.ports(i)
        name = "backend-%d" % i
        argv = self.meshinit_argv(i, startup_delay, tag, drain_time, template, extra, app_extra)
        proc = self.runner.start("%s%s-meshinit" % (name, tag), argv,
                                 env={"KUMA_READINESS_PORT": str(p["readiness"])})
        self.backends[i] = proc
        return proc

    def start_backend_plain(self, i, tag=""):
        """Baseline: app and kuma-dp under a plain init that signals both."""
        p = self.ports(i)
        name = "backend-%d" % i
        dp = [self.deps["KUMA_DP_BIN"], "run",
              "--dataplane-file=%s" % os.path.join(HERE, "backend-dp.yaml")]
        for k, v in self.backend_vars(i).items():
            dp.append("--dataplane-var=%s=%s" % (k, v))
        dp += self.kuma_dp_flags(name, os.path.join(self.workdir, name + tag + "-dp"))
        argv = [sys.executable, os.path.join(HERE, "plain_init.py"),
                "--probe-http", "http://127.0.0.1:%d/healthz" % p["app"], "--"] \
            + self.app_argv(i) + [":::"] + dp
        proc = self.runner.start("%s%s-plain-init" % (name, tag), argv,
                                 env={"KUMA_READINESS_PORT": str(p["readiness"])})
        self.backends[i] = proc
        return proc

    # The slot of ports(i) an intruder data plane uses (see start_client).
    INTRUDER = 9

    def start_client(self, name="client", slot=0):
        """A data plane of service `name` with an outbound to the backend
        service on ports(slot)["outbound"]. The suite's client is slot 0; an
        intruder (a service the permission does not name) uses INTRUDER."""
        p = self.ports(slot)
        dp = [self.deps["KUMA_DP_BIN"], "run",
              "--dataplane-file=%s" % os.path.join(HERE, "client-dp.yaml")]
        for k, v in {"mesh": self.mesh, "name": name, "service": name, "address": "127.0.0.1",
                     "port": p["inbound"], "app_port": p["app"],
                     "outbound_port": p["outbound"]}.items():
            dp.append("--dataplane-var=%s=%s" % (k, v))
        workdir = os.path.join(self.workdir, "%s-dp" % name)
        if slot == 0:
            self.client_workdir = workdir
        dp += self.kuma_dp_flags(name, workdir)
        proc = self.runner.start("%s-kuma-dp" % name, dp,
                                 env={"KUMA_READINESS_PORT": str(p["readiness"])})
        wait_until(lambda: http_status("http://127.0.0.1:%d/ready" % p["readiness"])[0] == 200,
                   90, "%s kuma-dp /ready 200" % name)
        return proc

    def wait_client_config_settled(self):
        sock = os.path.join(self.client_workdir, "kuma-envoy-admin.sock")
        return wait_xds_quiet(sock)

    def ready_url(self, i):
        return "http://127.0.0.1:%d/ready" % self.ports(i)["readiness"]

    def outbound(self, slot=0):
        return self.ports(slot)["outbound"]

    def get_via_mesh(self, timeout=2.0, slot=0):
        st, body = http_status("http://127.0.0.1:%d/" % self.outbound(slot), timeout=timeout)
        return st, body.strip()

    def wait_routes_to(self, names, timeout=60):
        """Send requests through the client until every name has answered."""
        seen = set()

        def pred():
            st, body = self.get_via_mesh()
            if st == 200:
                seen.add(body.split(" ")[0])
            return set(names) <= seen
        wait_until(pred, timeout, "traffic through the mesh to reach %s (seen %s)" % (sorted(names), seen),
                   interval=0.02)
        return seen

    def inbound_state(self, name):
        """The state kuma-cp holds for a Dataplane's first inbound: None
        (not registered), or its `state` (Ready / NotReady; a missing state
        means ready)."""
        dp = self.cp.dataplane(name, self.mesh)
        if dp is None:
            return None
        inb = ((dp.get("networking") or {}).get("inbound") or [{}])[0]
        if inb.get("state"):
            return inb["state"]
        health = inb.get("health")
        if health is not None:
            return "Ready" if health.get("ready") else "NotReady"
        return "Ready"

    def wait_backend_ready(self, i, timeout=90):
        wait_until(lambda: http_status(self.ready_url(i))[0] == 200, timeout,
                   "backend-%d kuma-dp /ready 200" % i)
