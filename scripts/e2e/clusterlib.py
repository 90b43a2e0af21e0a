"""Several hosts for scripts/cluster-e2e (stdlib only), on top of meshlib and nomadlib.

The suite runs in its own network namespace (meshlib.private_network()).
Inside it, each simulated host is one more network namespace, held open by
a `sleep` started with `unshare --net`, with one veth pair to a bridge in the
suite's namespace. Addresses are in 10.213.0.0/24 and exist only there: no
host namespace has a route out, the suite's namespace has only the bridge and
loopback, so no packet can leave. Programs are started in a host with
`nsenter --net=/proc/<holder>/ns/net` (it execs them: the pid is the
program's); the suite reaches a host's loopback from a thread that entered
that namespace (setns(2) changes only the calling thread).

  10.213.0.1   the suite (the bridge)     10.213.0.20  nomad (Nomad server)
  10.213.0.10  db (PostgreSQL 15)          10.213.0.21-23 client-1..3 (Nomad clients)
  10.213.0.11  cp-1 (kuma-cp)              10.213.0.30  load (client data plane, load)
  10.213.0.12  cp-2 (kuma-cp)
  10.213.0.13  lb (HAProxy: kuma-cp's dataplane server :5678)

Every holder, agent and server is started through the suite's Runner, so its
clean-up (SIGTERM, then SIGKILL) ends them, and a namespace goes away with
its last process; the bridge goes away with the suite's own namespace.
"""
import ctypes
import glob
import json
import os
import queue
import re
import shutil
import subprocess
import threading

import meshlib as M
import nomadlib as N
from meshlib import Failure, http_status, now, wait_until

SUBNET = "10.213.0"
BRIDGE = "mi-br0"
SUITE_IP = SUBNET + ".1"
HOSTS = {"db": 10, "cp-1": 11, "cp-2": 12, "lb": 13, "nomad": 20,
         "client-1": 21, "client-2": 22, "client-3": 23, "load": 30}
CLIENTS = ("client-1", "client-2", "client-3")
CP_HOSTS = ("cp-1", "cp-2")
PG_PORT = 5432
CP_DP_PORT, CP_DIAG_PORT, CP_API_PORT = 5678, 5680, 5681

_libc = ctypes.CDLL(None, use_errno=True)


def install_deps():
    """scripts/install-cluster-deps: PostgreSQL 15, HAProxy, ip/nsenter/setpriv, openssl."""
    return N.run_installer("install-cluster-deps", "PostgreSQL and HAProxy")


def run(argv, what, timeout=60, env=None, cwd=None):
    r = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    if r.returncode != 0:
        raise Failure("%s: %s exited %d:\n%s" % (what, " ".join(str(a) for a in argv), r.returncode,
                                                  r.stdout[-2000:]))
    return r.stdout


# ------------------------------------------------------------------ hosts
class Host:
    def __init__(self, name, holder, ip=None):
        self.name = name
        self.ip = ip or "%s.%d" % (SUBNET, HOSTS[name])
        self.holder = holder
        self.ns = "/proc/%d/ns/net" % holder.pid

    def argv(self, argv):
        """argv run inside this host's network namespace."""
        return ["nsenter", "--net=%s" % self.ns, "--"] + [str(a) for a in argv]

    def sh(self, *argv, what=None):
        return run(self.argv(argv), what or "%s: %s" % (self.name, argv[0]))

    def call(self, fn, *args, **kw):
        """fn(*args) in a thread inside this host's network namespace; its
        result, or its exception raised here."""
        out = queue.Queue()

        def body():
            try:
                enter(self.ns)
                out.put((True, fn(*args, **kw)))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                out.put((False, e))
        t = threading.Thread(target=body, daemon=True)
        t.start()
        ok, v = out.get()
        t.join()
        if not ok:
            raise v
        return v

    def http_status(self, url, timeout=1.0):
        return self.call(http_status, url, timeout)


def enter(ns_path):
    """setns(2) this thread into a network namespace."""
    fd = os.open(ns_path, os.O_RDONLY)
    try:
        if _libc.setns(fd, M.CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns(%s): %s" % (ns_path, os.strerror(ctypes.get_errno())))
    finally:
        os.close(fd)


def bridge_up(bridge, address):
    """A bridge in this (the suite's) namespace, address (a.b.c.d/len) on it."""
    run(["ip", "link", "add", bridge, "type", "bridge"], "the bridge")
    run(["ip", "addr", "add", address, "dev", bridge], "the bridge")
    run(["ip", "link", "set", bridge, "up"], "the bridge")


def start_holder(runner, name, argv=("unshare", "--net", "--", "sleep", "infinity"), ready=None):
    """Start the process that holds a new network namespace open (argv must
    create it) and wait, bounded, until it is in one other than ours (and
    ready() holds, when given)."""
    own = os.readlink("/proc/self/ns/net")
    holder = runner.start("netns-%s" % name, list(argv))

    def moved():
        if not holder.alive():
            raise Failure("the namespace holder of %s (%s) exited %s:\n%s" % (name, argv[0], holder.rc,
                                                                            holder.tail()))
        return os.readlink("/proc/%d/ns/net" % holder.pid) != own and (ready is None or ready())
    wait_until(moved, 10, "%s's network namespace" % name, interval=0.01)
    return holder


def plug(host, veth, bridge, prefix_len=24):
    """One veth pair: veth on the bridge here, eth0 with host.ip in host's
    namespace; eth0 and lo up there. The only route there is the link's."""
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", str(host.holder.pid)],
        "veth for %s" % host.name)
    run(["ip", "link", "set", veth, "master", bridge, "up"], "veth for %s" % host.name)
    host.sh("ip", "addr", "add", "%s/%d" % (host.ip, prefix_len), "dev", "eth0")
    host.sh("ip", "link", "set", "eth0", "up")
    host.sh("ip", "link", "set", "lo", "up")


def wait_link_up(veth, what, timeout=10):
    wait_until(lambda: "state UP" in run(["ip", "link", "show", veth], "link"), timeout, what, interval=0.05)


class Network:
    """The bridge and one namespace per host (see the module's docstring)."""

    def __init__(self, runner):
        self.runner = runner
        self.hosts = {}

    def up(self):
        bridge_up(BRIDGE, SUITE_IP + "/24")
        for name in HOSTS:
            h = Host(name, start_holder(self.runner, name))
            plug(h, "vh-%s" % name, BRIDGE)
            self.hosts[name] = h
        # Every host reaches every other through the bridge (bounded wait for
        # the links to come up).
        for name, h in self.hosts.items():
            wait_link_up("vh-%s" % h.name, "link of %s up" % name)
        return self

    def __getitem__(self, name):
        return self.hosts[name]

    def routes(self):
        """Each host's routes and the suite's: only the 10.213.0.0/24 link."""
        out = {"suite": run(["ip", "-4", "route", "show"], "routes").strip().splitlines()}
        for name, h in self.hosts.items():
            out[name] = h.sh("ip", "-4", "route", "show").strip().splitlines()
        return out


class HostLoad(M.Load):
    """meshlib's load, its worker threads inside a host's network namespace
    (the load host: its data plane's outbound listens on that host's
    loopback)."""

    def __init__(self, host, *args, **kw):
        super().__init__(*args, **kw)
        self.host = host

    def _worker(self, idx):
        enter(self.host.ns)
        super()._worker(idx)


# ------------------------------------------------------------------ PostgreSQL
class Postgres:
    """PostgreSQL 15 on host db, its own data directory (owned by the
    postgres user, who alone may run it), listening on db's address only,
    password (SCRAM) authentication for kuma-cp's user from the subnet."""

    USER, DB = "kuma", "kuma"

    def __init__(self, runner, deps, host):
        self.runner = runner
        self.bin = deps["PG_BIN_DIR"]
        self.host = host
        # Outside the suite's workdir (mode 0700, root's): postgres must
        # traverse it. Removed at clean-up (Cluster.remove_leftovers).
        self.root = tempfile_dir("meshinit-cluster-pg-")
        self.password = os.urandom(12).hex()
        self.proc = None

    def as_postgres(self, argv):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + [str(a) for a in argv]

    def start(self):
        t0 = now()
        pw = os.path.join(self.root, "pwfile")
        with open(pw, "w") as f:
            f.write(self.password + "\n")
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(pw, "postgres", "postgres")
        os.chmod(pw, 0o600)
        data = os.path.join(self.root, "data")
        run(self.as_postgres([os.path.join(self.bin, "initdb"), "-D", data, "-U", self.USER, "--pwfile", pw,
                              "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]),
            "initdb", timeout=120, cwd=self.root)
        os.remove(pw)
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write("# scripts/cluster-e2e: kuma-cp's user from the suite's subnet, with its password.\n"
                    "local all all trust\n"
                    "host %s %s %s.0/24 scram-sha-256\n" % (self.DB, self.USER, SUBNET)
                    + "host postgres %s %s.0/24 scram-sha-256\n" % (self.USER, SUBNET))
        # fsync off: a test database, thrown away at the end; it spares the
        # shared disk.
        self.proc = self.runner.start("postgres", self.host.argv(self.as_postgres([
            os.path.join(self.bin, "postgres"), "-D", data, "-c", "listen_addresses=%s" % self.host.ip,
            "-c", "port=%d" % PG_PORT, "-c", "unix_socket_directories=%s" % self.root, "-c", "fsync=off",
            "-c", "max_connections=200", "-c", "shared_buffers=32MB"])), cwd=self.root)

        def up():
            if not self.proc.alive():
                raise Failure("postgres exited %s:\n%s" % (self.proc.rc, self.proc.tail()))
            return M.port_open(PG_PORT, self.host.ip)
        wait_until(up, 60, "PostgreSQL on %s:%d" % (self.host.ip, PG_PORT))
        run(self.as_postgres([os.path.join(self.bin, "createdb"), "-h", self.root, "-p", PG_PORT, "-U", self.USER,
                              self.DB]), "createdb", cwd=self.root)
        return now() - t0

    def env(self):
        return {"KUMA_STORE_TYPE": "postgres", "KUMA_STORE_POSTGRES_HOST": self.host.ip,
                "KUMA_STORE_POSTGRES_PORT": str(PG_PORT), "KUMA_STORE_POSTGRES_USER": self.USER,
                "KUMA_STORE_POSTGRES_PASSWORD": self.password, "KUMA_STORE_POSTGRES_DB_NAME": self.DB,
                "KUMA_STORE_POSTGRES_TLS_MODE": "disable"}

    def version(self):
        return run([os.path.join(self.bin, "postgres"), "--version"], "postgres --version").strip()


def tempfile_dir(prefix):
    import tempfile
    return tempfile.mkdtemp(prefix=prefix)


# ------------------------------------------------------------------ TLS for kuma-cp
def cp_certificate(workdir, ips):
    """One CA and one server certificate (for the load balancer's and both
    instances' addresses) that both kuma-cp instances serve
    (KUMA_GENERAL_TLS_CERT_FILE/KEY_FILE): a data plane verifies whichever
    instance the load balancer hands it to with the same CA
    (--ca-cert-file). Each instance's autogenerated certificate would be
    signed by a CA of its own."""
    d = os.path.join(workdir, "cp-tls")
    os.makedirs(d, exist_ok=True)
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = os.path.join(d, "tls.key"), os.path.join(d, "tls.csr"), os.path.join(d, "tls.crt")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % ",".join(
            ["DNS:localhost", "IP:127.0.0.1"] + ["IP:%s" % ip for ip in ips]))
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_crt,
         "-days", "2", "-subj", "/CN=meshinit cluster-e2e kuma-cp CA"], "openssl (CA)")
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=kuma-control-plane"], "openssl (key)")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
         "-days", "2", "-extfile", ext], "openssl (certificate)")
    for p in (ca_key, key):
        os.chmod(p, 0o600)
    return ca_crt, crt, key


# ------------------------------------------------------------------ kuma-cp
class HostControlPlane(M.ControlPlane):
    """meshlib's kuma-cp on a host: Kuma's defaults but where noted, the
    store given (PostgreSQL, or memory for the comparison), the shared
    certificate, its API on the host's loopback (reached from a thread in
    that namespace: loopback clients are Kuma's admins)."""

    API = "http://127.0.0.1:%d" % CP_API_PORT

    def __init__(self, runner, deps, workdir, host, name, store_env, tls, lb_ip):
        ca, crt, key = tls
        cp_work = os.path.join(workdir, "%s-work" % name)
        super().__init__(runner, deps, workdir, extra_env={
            # Kuma's own default report interval (meshlib's suites use 1s):
            # the job's --drain-min is sized for what users run.
            "KUMA_DP_SERVER_HDS_INTERVAL": "5s",
            "KUMA_GENERAL_WORK_DIR": cp_work,
            "KUMA_GENERAL_TLS_CERT_FILE": crt,
            "KUMA_GENERAL_TLS_KEY_FILE": key,
            # The address the other instance reaches this one at (inter-cp).
            "KUMA_INTER_CP_CATALOG_INSTANCE_ADDRESS": host.ip,
            **store_env,
        })
        # Kuma's default (10s): meshlib shortens it for its one-host suite.
        self.env.pop("KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY", None)
        self.host = host
        self.name = name
        self.ca_cert = ca
        self.DP_SERVER = "https://%s:%d" % (lb_ip, CP_DP_PORT)
        self.instance_id = None

    def migrate(self):
        env = dict(os.environ, **self.env)
        return run(self.host.argv([self.deps["KUMA_CP_BIN"], "migrate", "up"]), "kuma-cp migrate up", env=env,
                   timeout=120)

    def launch(self):
        self.proc = self.runner.start(self.name, self.host.argv([self.deps["KUMA_CP_BIN"], "run",
                                                                 "--log-level=info"]), env=self.env)

    def start(self):
        self.launch()
        return self.wait_up()

    def wait_up(self):
        def up():
            if not self.proc.alive():
                raise Failure("%s exited with %s:\n%s" % (self.name, self.proc.rc, self.proc.tail(15)))
            st, body = self.host.http_status(self.API + "/")
            return body if st == 200 else None
        body = wait_until(up, 120, "%s's API" % self.name, interval=0.2)
        self.instance_id = json.loads(body).get("instanceId")
        wait_until(lambda: M.port_open(CP_DP_PORT, self.host.ip), 60, "%s's dataplane server" % self.name)
        # Ready as its diagnostics say (what the load balancer checks).
        wait_until(lambda: http_status("http://%s:%d/ready" % (self.host.ip, CP_DIAG_PORT))[0] == 200, 60,
                   "%s's /ready" % self.name)
        return self.proc

    def alive(self):
        return self.proc is not None and self.proc.alive()

    # The API calls of meshlib/nomadlib, made from inside the host.
    def create_mesh(self, *a, **k):
        return self.host.call(super().create_mesh, *a, **k)

    def allow(self, *a, **k):
        return self.host.call(super().allow, *a, **k)

    def mtls(self, *a, **k):
        return self.host.call(super().mtls, *a, **k)

    def policies(self, *a, **k):
        return self.host.call(super().policies, *a, **k)

    def token(self, *a, **k):
        return self.host.call(super().token, *a, **k)

    def dataplanes(self, *a, **k):
        return self.host.call(super().dataplanes, *a, **k)

    def dataplane(self, *a, **k):
        return self.host.call(super().dataplane, *a, **k)

    def service_token(self, *a, **k):
        return self.host.call(N.ControlPlane.service_token, self, *a, **k)

    def insight(self, name, mesh="default"):
        st, body = self.host.http_status("%s/meshes/%s/dataplanes+insights/%s" % (self.API, mesh, name), 2.0)
        return json.loads(body) if st == 200 else None

    def connected_to(self, name, mesh="default"):
        """The instance id of the kuma-cp a data plane's xDS stream is on
        now (its last subscription without a disconnect time), or None."""
        ins = self.insight(name, mesh)
        subs = ((ins or {}).get("dataplaneInsight") or {}).get("subscriptions") or []
        live = [s for s in subs if not s.get("disconnectTime")]
        return live[-1].get("controlPlaneInstanceId") if live else None


HAPROXY_CFG = """# scripts/cluster-e2e: TCP load balancer for kuma-cp's dataplane server.
global
  maxconn 4000
  stats socket %(sock)s mode 600 level admin
defaults
  mode tcp
  timeout connect 2s
  # xDS streams live as long as the data plane: no idle cut.
  timeout client 1h
  timeout server 1h
  # A connection refused by a dead instance is retried on the other.
  retries 3
  option redispatch
frontend kuma-dp-server
  bind %(ip)s:%(dp)d
  default_backend kuma-cp
backend kuma-cp
  # Streams are long-lived: new ones go to the instance with fewer.
  balance leastconn
  # Kuma's readiness (diagnostics server): an instance that is up but not
  # ready gets no new data plane. A dead one is marked down after 2 failed
  # checks 1s apart, and its sessions are closed so their data planes
  # reconnect now (a frozen instance would keep them open otherwise).
  option httpchk GET /ready
  http-check expect status 200
  default-server check port %(diag)d inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
%(servers)s
"""


class LoadBalancer:
    def __init__(self, runner, deps, workdir, host, backends):
        self.runner = runner
        self.bin = deps["HAPROXY_BIN"]
        self.host = host
        self.sock = os.path.join(workdir, "haproxy.sock")
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG % {"sock": self.sock, "ip": host.ip, "dp": CP_DP_PORT, "diag": CP_DIAG_PORT,
                                   "servers": "\n".join("  server %s %s:%d" % (n, ip, CP_DP_PORT)
                                                        for n, ip in backends)})
        self.proc = None

    def start(self):
        run([self.bin, "-c", "-f", self.cfg], "haproxy -c")
        self.proc = self.runner.start("haproxy", self.host.argv([self.bin, "-f", self.cfg, "-db"]))
        wait_until(lambda: self.proc.alive() and M.port_open(CP_DP_PORT, self.host.ip), 30,
                   "HAProxy on %s:%d" % (self.host.ip, CP_DP_PORT))

    def servers(self):
        """{server: status} from HAProxy's stats socket (UP, DOWN, ...)."""
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        out = {}
        for line in data.decode(errors="replace").splitlines():
            parts = line.split(",")
            if len(parts) > 17 and parts[0] == "kuma-cp" and parts[1] not in ("BACKEND", "FRONTEND"):
                out[parts[1]] = parts[17]
        return out


# ------------------------------------------------------------------ the load client
def start_client(runner, deps, cp, host, workdir, mesh="default"):
    """The load host's data plane (service `client`), through the load
    balancer, its outbound to `backend` on the load host's
    127.0.0.1:CLIENT_PORTS['outbound'] (nomadlib's ports)."""
    p = N.CLIENT_PORTS
    wd = os.path.join(workdir, "client-dp")
    os.makedirs(wd, exist_ok=True)
    dp = [deps["KUMA_DP_BIN"], "run", "--dataplane-file=%s" % os.path.join(M.HERE, "client-dp.yaml")]
    for k, v in {"mesh": mesh, "name": "client", "service": "client", "address": host.ip, "port": p["inbound"],
                 "app_port": p["app"], "outbound_port": p["outbound"]}.items():
        dp.append("--dataplane-var=%s=%s" % (k, v))
    dp += ["--cp-address=%s" % cp.DP_SERVER, "--dataplane-token-file=%s" % cp.token("client", mesh),
           "--ca-cert-file=%s" % cp.ca_cert, "--dns-enabled=false", "--work-dir=%s" % wd,
           "--binary-path=%s" % deps["ENVOY_BIN"]]
    proc = runner.start("client-kuma-dp", host.argv(dp),
                        env={"KUMA_READINESS_PORT": str(p["readiness"]), "TMPDIR": wd})

    def ready():
        if not proc.alive():
            raise Failure("the client's kuma-dp exited %s:\n%s" % (proc.rc, proc.tail()))
        return host.http_status("http://127.0.0.1:%d/ready" % p["readiness"])[0] == 200
    wait_until(ready, 90, "client kuma-dp /ready 200", interval=0.2)
    return proc, os.path.join(wd, "kuma-envoy-admin.sock")


ENDPOINT_RX = re.compile(r"::(\d+\.\d+\.\d+\.\d+:\d+)::health_flags::")


def envoy_endpoints(sock):
    """The endpoints an Envoy lists in /clusters (ip:port), any cluster."""
    st, body = M.envoy_admin(sock, "/clusters")
    if st != 200:
        raise OSError("envoy /clusters: HTTP %s" % st)
    return frozenset(ENDPOINT_RX.findall(body))


# ------------------------------------------------------------------ Nomad
SERVER_HCL = """# scripts/cluster-e2e: the Nomad server (no client).
name                 = "nomad"
data_dir             = "%(data)s"
bind_addr            = "%(ip)s"
disable_update_check = true
server {
  enabled          = true
  bootstrap_expect = 1
}
client {
  enabled = false
}
"""

CLIENT_HCL = """# scripts/cluster-e2e: a Nomad client on host %(name)s.
name                 = "%(name)s"
data_dir             = "%(data)s"
bind_addr            = "%(ip)s"
disable_update_check = true
client {
  enabled = true
  servers = ["%(server)s:4647"]
  # Allocation ports and NOMAD_IP_* come from this host's interface.
  network_interface = "eth0"
  # Three clients on one kernel: each keeps its own cgroups.
  cgroup_parent = "%(cgroup)s"
  max_kill_timeout = "60s"
  options = { "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean" }
}
plugin "raw_exec" {
  config { enabled = true }
}
"""


class ClusterAgent(N.Agent):
    """nomadlib's Agent for one agent of the cluster (the server, or a
    client) on its host: same API, CLI, clean-up; its own config, data
    directory and cgroup parent, no -dev."""

    CGROUP_PREFIX = "meshinit-e2e-"

    def __init__(self, runner, nomad_bin, workdir, host, server=None):
        super().__init__(runner, nomad_bin, workdir)
        self.host = host
        self.server = server
        self.name = host.name
        self.data_dir = os.path.join(workdir, "nomad-%s" % host.name)
        self.addr = "http://%s:4646" % host.ip
        self.node_id = None
        # Unique per run: two suites on one machine never share a cgroup.
        self.cgroup = "%s%s-%s" % (self.CGROUP_PREFIX, host.name, os.path.basename(workdir).rsplit("-", 1)[-1])

    @classmethod
    def _cgroup_dirs(cls):
        out = []
        for base in glob.glob("/sys/fs/cgroup/*/") + ["/sys/fs/cgroup/"]:
            for root in glob.glob(os.path.join(base, cls.CGROUP_PREFIX + "*")):
                if os.path.isdir(root):
                    for d, _, _ in os.walk(root):
                        out.append(d)
        return out

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        cfg = os.path.join(self.workdir, "nomad-%s.hcl" % self.name)
        tmp = os.path.join(self.workdir, "tmp")
        os.makedirs(tmp, exist_ok=True)
        with open(cfg, "w") as f:
            if self.server is None:
                f.write(SERVER_HCL % {"data": self.data_dir, "ip": self.host.ip})
            else:
                f.write(CLIENT_HCL % {"name": self.name, "data": self.data_dir, "ip": self.host.ip,
                                      "server": self.server.host.ip,
                                      "cgroup": self.cgroup})
        # TMPDIR: raw_exec tasks inherit the agent's environment, so what
        # they leave in TMPDIR (kuma-dp's kuma-dp-* folders) stays in the
        # workdir.
        self.proc = self.runner.start("nomad-%s" % self.name, self.host.argv([self.bin, "agent", "-config=%s" % cfg]),
                                      env={"TMPDIR": tmp})
        t0 = now()

        def api_up():
            if not self.proc.alive():
                raise Failure("Nomad agent %s exited (rc %s):\n%s" % (self.name, self.proc.rc, self.proc.tail()))
            return http_status(self.addr + "/v1/agent/self", 1.0)[0] == 200
        wait_until(api_up, 60, "Nomad agent %s's API" % self.name, interval=0.2)
        return now() - t0

    def remove_leftovers(self):
        """Empty cgroup folders of this agent and the alloc dirs' mounts
        (secrets/ and private dirs are tmpfs mounts while an allocation lives)."""
        removed = []
        for d in sorted(set(self._cgroup_dirs()) - self.cgroups_before, key=len, reverse=True):
            if ("/" + self.cgroup) not in d:
                continue
            try:
                os.rmdir(d)
                removed.append(d)
            except OSError:
                pass
        for m in mounts_under(self.data_dir):
            subprocess.run(["umount", "-l", m], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            removed.append(m)
        return removed

    def leftovers(self):
        left = [d for d in set(self._cgroup_dirs()) - self.cgroups_before
                if ("/" + self.cgroup) in d]
        return sorted(left + mounts_under(self.data_dir))


def mounts_under(path):
    path = os.path.realpath(path) + "/"
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                mp = line.split()[1].replace("\\040", " ")
                if mp.startswith(path):
                    out.append(mp)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def nodes(server):
    return server.api("/v1/nodes") or []


def wait_clients(server, names, timeout=90):
    """Until every client is ready with raw_exec healthy; {name: node id}."""
    def ready():
        ns = {n["Name"]: n for n in nodes(server)}
        ok = {name: ns[name]["ID"] for name in names if name in ns and ns[name]["Status"] == "ready"
              and ns[name].get("SchedulingEligibility") == "eligible"
              and (ns[name].get("Drivers") or {}).get("raw_exec", {}).get("Healthy")}
        return ok if len(ok) == len(names) else None
    return wait_until(ready, timeout, "Nomad clients %s ready with raw_exec" % (list(names),), interval=0.25)


def node_of(alloc):
    return alloc.get("NodeName") or alloc.get("NodeID")


# ------------------------------------------------------------------ timestamps
def log_times(text, message):
    """Wall-clock times (unix seconds) of meshinit's JSON log lines whose
    message is `message`."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("message") == message or rec.get("fields", {}).get("message") == message:
            t = N.rfc3339(rec.get("timestamp", ""))
            if t is not None:
                out.append(t)
    return out
