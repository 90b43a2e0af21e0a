"""Transparent-proxy workloads for the real-mesh suite (stdlib only), on top
of meshlib and clusterlib.

Each workload is a network namespace with Kuma's transparent-proxy rules in
it, written by the real `kumactl install transparent-proxy`, the way a VM or a
container with its own namespace has them. Like clusterlib's hosts, a
workload's namespace is held open by a `sleep` (started through the suite's
Runner), joined to a bridge in the suite's own namespace by one veth pair,
its address in 10.214.0.0/24 and its only route that link's: nothing is
routed out. The suite's namespace (meshlib.private_network(), required: see
Net.up) holds the bridge (10.214.0.1) and kuma-cp, whose dataplane server the
workloads reach at https://10.214.0.1:5678.

A workload also has a mount namespace of its own (private propagation), where
the holder bind-mounts, before it sleeps:
  /etc/passwd, /etc/group  the host's, plus the users `kuma-dp` (uid 5678,
                           Kuma's default, which kumactl looks up) and
                           `mesh-app` (uid 5679): the rules exempt the first;
  /etc/resolv.conf         `nameserver 10.214.0.1` (the suite's bridge, where
                           nothing answers DNS): the server kumactl's
                           --redirect-dns sends to kuma-dp, and the upstream
                           kuma-dp's DNS proxy forwards other names to;
  <root>/kuma-bin, <root>/envoy-bin  the cached Kuma and Envoy binaries,
                           which live under root's home (mode 0700) where
                           the unprivileged uids could not reach them.
Nothing of that exists outside the workload: the host's files are untouched.

iptables rules are only ever written inside a workload's namespace:
install_rules() refuses any namespace that is the suite's own, the one the
suite started in (read at import, before private_network()) or pid 1's (where
it may be read). Processes run there through
`nsenter --net --mount` (it execs them, so the Runner's pid is the program's)
and, for another uid, `setpriv --reuid --regid --clear-groups` (no
capabilities left).

Net.down() tears everything down and says what is left: each workload's
processes (its sessions), holder (so its namespaces), the veths, the bridge,
the directories; and checks that no KUMA_MESH chain exists in the suite's
namespace.
"""
import json
import os
import pwd
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import clusterlib as C
import meshlib as M
import nomadlib as N
from meshlib import Failure

SUBNET = "10.214.0"
BRIDGE = "mi-tp0"
SUITE_IP = SUBNET + ".1"
CP_DP_SERVER = "https://%s:%d" % (SUITE_IP, M.ControlPlane.DP_PORT)

# Kuma's defaults (pkg/transparentproxy/consts/consts.go, kuma-dp's DNS
# config): the exempt user, the redirect ports, Envoy's DNS listener.
KUMA_DP_USER, KUMA_DP_UID = "kuma-dp", 5678
APP_USER, APP_UID = "mesh-app", 5679
INBOUND_PORT, OUTBOUND_PORT, DNS_PORT, ENVOY_DNS_PORT = 15006, 15001, 15053, 15054
CHAIN_PREFIX = "KUMA_MESH"
VIP_CIDR = "240.0.0.0/4"  # kuma-cp's default KUMA_DNS_SERVER_CIDR
READINESS_PORT = 9902  # kuma-dp's default KUMA_READINESS_PORT; one per namespace


def install_deps():
    """scripts/install-tproxy-deps: iptables (nft and legacy), nft, ip/nsenter/setpriv, /usr/bin/python3."""
    return N.run_installer("install-tproxy-deps", "iptables and nftables")


def ns_inode(path):
    return os.stat(path).st_ino


def forbidden_namespaces():
    """Network namespaces never to write rules in: the one this process
    started in (the machine's, or its container's) and pid 1's where it may
    be read (a sandbox may deny that), besides the suite's own."""
    out = {STARTED_IN, ns_inode("/proc/self/ns/net")}
    try:
        out.add(ns_inode("/proc/1/ns/net"))
    except OSError:
        pass
    return out


# Read at import, before the suite moves into its own namespace.
STARTED_IN = ns_inode("/proc/self/ns/net")


# ------------------------------------------------------------------ DNS (stdlib)
def dns_query(server, port, name, qtype=1, timeout=1.0):
    """One UDP query (A by default) to server:port. Returns (rcode, [addresses]);
    raises OSError (refused, timed out) when nothing answers."""
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect((server, port))
        s.send(q)
        while True:
            resp = s.recv(4096)
            if len(resp) >= 12 and struct.unpack(">H", resp[:2])[0] == qid:
                break
    finally:
        s.close()
    rcode = resp[3] & 0x0F
    an = struct.unpack(">H", resp[6:8])[0]
    off = len(q)  # past the header and the question, which the answer echoes
    addrs = []
    for _ in range(an):
        # name: a pointer (0xc0..) or labels
        while resp[off] != 0 and resp[off] & 0xC0 != 0xC0:
            off += resp[off] + 1
        off += 2 if resp[off] & 0xC0 == 0xC0 else 1
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", resp[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(resp[off:off + 4]))
        elif rtype == 28 and rdlen == 16:
            addrs.append(socket.inet_ntop(socket.AF_INET6, resp[off:off + 16]))
        off += rdlen
    return rcode, addrs


# ------------------------------------------------------------------ rules
def parse_rules(save_text):
    """What `iptables-save` (either backend) says about Kuma's redirection:
    {chains, inbound_port, outbound_port, dns_port, dns_servers,
    exempt_uids, excluded_inbound_ports}. Empty chains: no redirection."""
    out = {"chains": [], "inbound_port": None, "outbound_port": None, "dns_port": None, "dns_servers": [],
           "exempt_uids": [], "excluded_inbound_ports": []}
    table = None
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table != "nat":
            continue
        if line.startswith(":" + CHAIN_PREFIX):
            out["chains"].append(line[1:].split()[0])
            continue
        if not line.startswith("-A "):
            continue
        words = shlex.split(line)
        chain = words[1]

        def arg(flag):
            return words[words.index(flag) + 1] if flag in words else None
        to = arg("--to-ports")
        if chain == CHAIN_PREFIX + "_INBOUND_REDIRECT" and to:
            out["inbound_port"] = int(to)
        elif chain == CHAIN_PREFIX + "_OUTBOUND_REDIRECT" and to:
            out["outbound_port"] = int(to)
        elif chain == "OUTPUT" and to and arg("--dport") == "53":
            out["dns_port"] = int(to)
            if arg("-d"):
                out["dns_servers"].append(arg("-d").split("/")[0])
        if "--uid-owner" in words and arg("-j") == "RETURN":
            i = words.index("--uid-owner")
            uid = words[i + 1]
            if words[i - 1] != "!" and uid not in out["exempt_uids"]:
                out["exempt_uids"].append(uid)
        if chain == CHAIN_PREFIX + "_INBOUND" and arg("-j") == "RETURN" and arg("--dport"):
            out["excluded_inbound_ports"].append(int(arg("--dport")))
    return out


# ------------------------------------------------------------------ workloads
class Workload(C.Host):
    """One workload: network + mount namespace (see the module's docstring)."""

    def __init__(self, net, name, ip, holder, root):
        super().__init__(name, holder, ip=ip)
        self.net = net
        self.mnt = "/proc/%d/ns/mnt" % holder.pid
        self.root = root
        self.kuma_bin = os.path.join(root, "kuma-bin")
        self.envoy_bin = os.path.join(root, "envoy-bin")
        self.rules_output = None

    def argv(self, argv, uid=None, gid=None):
        """argv run in this workload's network and mount namespaces, as uid
        (no capabilities) when given, else as root."""
        pre = ["nsenter", "--net=%s" % self.ns, "--mount=%s" % self.mnt, "--wd=%s" % self.root, "--"]
        if uid is not None:
            pre += ["setpriv", "--reuid=%d" % uid, "--regid=%d" % (gid if gid is not None else uid),
                    "--clear-groups", "--"]
        return pre + [str(a) for a in argv]

    def sh(self, *argv, what=None, uid=None, timeout=60):
        return C.run(self.argv(argv, uid), what or "%s: %s" % (self.name, argv[0]), timeout=timeout)

    def start(self, name, argv, uid=None, env=None):
        """A long-running process in this workload (through the suite's Runner)."""
        home = self.home(uid)
        full_env = {"HOME": home, "TMPDIR": home, "USER": pwd_name(uid)}
        full_env.update(env or {})
        proc = self.net.runner.start("%s-%s" % (self.name, name), self.argv(argv, uid), env=full_env)
        self.net.procs.append(proc)
        return proc

    def home(self, uid):
        """A directory of this workload's that uid owns (its HOME and TMPDIR)."""
        d = os.path.join(self.root, "home-%s" % ("root" if uid is None else uid))
        if not os.path.isdir(d):
            os.makedirs(d, mode=0o700)
            if uid is not None:
                os.chown(d, uid, uid)
        return d

    def file_for(self, uid, name, src=None, text=None, mode=0o600):
        """A copy of src (or text) in uid's home here, owned by uid."""
        path = os.path.join(self.home(uid), name)
        if src is not None:
            shutil.copyfile(src, path)
        else:
            with open(path, "w") as f:
                f.write(text)
        os.chmod(path, mode)
        if uid is not None:
            os.chown(path, uid, uid)
        return path

    # ---------------------------------------------------------- the rules
    def install_rules(self, kumactl, *flags):
        """`kumactl install transparent-proxy FLAGS` as root in this
        workload's namespaces; returns (seconds, its output). Refuses any
        namespace that is the suite's own or pid 1's."""
        if ns_inode(self.ns) in forbidden_namespaces():
            raise Failure("refusing to write iptables rules: %s's namespace is the suite's or the machine's" %
                          self.name)
        t = time.monotonic()
        out = self.sh(kumactl, "install", "transparent-proxy", *flags,
                      what="%s: kumactl install transparent-proxy" % self.name)
        self.rules_output = out
        return time.monotonic() - t, out

    def output(self, *argv):
        """stdout of argv run as root here (stderr apart: iptables-nft-save
        warns there when legacy tables exist, which kumactl's own probe of
        the legacy backend creates)."""
        r = subprocess.run(self.argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise Failure("%s: %s exited %d: %s" % (self.name, " ".join(argv), r.returncode, r.stderr[-1000:]))
        return r.stdout

    def iptables_save(self, legacy=False):
        return self.output("iptables-legacy-save" if legacy else "iptables-nft-save")

    def nft_ruleset(self):
        return self.output("nft", "list", "ruleset")

    def rules(self):
        """parse_rules() of this workload's nat table (nf_tables backend,
        where kumactl writes on a machine without legacy rules)."""
        return parse_rules(self.iptables_save())

    # ---------------------------------------------------------- kuma-dp
    def start_kuma_dp(self, deps, cp, dataplane_file, variables, uid=KUMA_DP_UID, embedded_dns=True,
                      dns_enabled=True, extra=(), name="kuma-dp"):
        """kuma-dp run --transparent-proxy as uid, its token and kuma-cp's CA
        copied where that uid can read them, its work dir in uid's home.
        embedded_dns: kuma-dp's own DNS proxy on :15053 (KUMA_DNS_PROXY_PORT)
        instead of CoreDNS (not shipped with the module build)."""
        vars_name = variables["name"]
        token = self.file_for(uid, "%s.token" % vars_name, src=cp.token(vars_name))
        ca = self.file_for(uid, "kuma-cp-ca.crt", src=cp.ca_cert, mode=0o644)
        dp_file = self.file_for(uid, os.path.basename(dataplane_file), src=dataplane_file, mode=0o644)
        work = os.path.join(self.home(uid), "%s-work" % name)
        os.makedirs(work, exist_ok=True)
        if uid is not None:
            os.chown(work, uid, uid)
        argv = [os.path.join(self.kuma_bin, os.path.basename(deps["KUMA_DP_BIN"])), "run",
                "--dataplane-file=%s" % dp_file,
                "--cp-address=%s" % CP_DP_SERVER,
                "--dataplane-token-file=%s" % token,
                "--ca-cert-file=%s" % ca,
                "--work-dir=%s" % work,
                "--binary-path=%s" % os.path.join(self.envoy_bin, os.path.basename(os.path.realpath(
                    deps["ENVOY_BIN"]))),
                "--transparent-proxy",
                "--dns-enabled=%s" % ("true" if dns_enabled else "false")]
        for k, v in variables.items():
            argv.append("--dataplane-var=%s=%s" % (k, v))
        argv += list(extra)
        env = {"KUMA_READINESS_PORT": str(READINESS_PORT)}
        if embedded_dns:
            env["KUMA_DNS_PROXY_PORT"] = str(DNS_PORT)
        proc = self.start(name, argv, uid=uid, env=env)
        proc.admin_sock = os.path.join(work, "kuma-envoy-admin.sock")
        return proc

    def ready(self):
        """kuma-dp's /ready here: (status, body)."""
        return self.http_status("http://127.0.0.1:%d/ready" % READINESS_PORT, 0.5)

    def dns(self, name, port=DNS_PORT, timeout=0.5):
        """A query to kuma-dp's DNS on this workload's loopback (what the
        rules send an app's lookups to), from a thread in its namespace."""
        return self.call(dns_query, "127.0.0.1", port, name, 1, timeout)


def pwd_name(uid):
    if uid is None:
        return "root"
    return {KUMA_DP_UID: KUMA_DP_USER, APP_UID: APP_USER}.get(uid, str(uid))


class Net:
    """The bridge and the workloads (see the module's docstring)."""

    def __init__(self, runner, deps, workdir):
        self.runner = runner
        self.deps = deps
        self.root = None
        self.workloads = {}
        self.procs = []  # what the workloads run, then their holders (stopped in that order)
        self.holders = []
        self.up_done = False

    def up(self):
        """The bridge. Only in a namespace of the suite's own: workloads'
        rules, addresses and kuma-cp's ports never meet the host's."""
        if ns_inode("/proc/self/ns/net") == STARTED_IN:
            raise Failure("tproxy: the suite must run in its own network namespace (meshlib.private_network())")
        # Its own directory, traversable by the workloads' unprivileged uids
        # (the suite's workdir is root's, mode 0700); removed by down().
        self.root = tempfile.mkdtemp(prefix="meshinit-tproxy-")
        os.chmod(self.root, 0o755)
        # Also when a signal ends the run (nomadlib's Runner runs these after
        # its clean-up; the namespaces, veths and bridge die with the processes
        # and the suite's own namespace).
        root = self.root
        getattr(self.runner, "after_cleanup", []).append(lambda: shutil.rmtree(root, ignore_errors=True))
        self.etc = os.path.join(self.root, "etc")
        os.makedirs(self.etc)
        os.chmod(self.etc, 0o755)
        self._etc_files()
        C.bridge_up(BRIDGE, SUITE_IP + "/24")
        self.up_done = True
        return self

    def _etc_files(self):
        with open("/etc/passwd") as f:
            passwd = f.read()
        with open("/etc/group") as f:
            group = f.read()
        for name, uid in ((KUMA_DP_USER, KUMA_DP_UID), (APP_USER, APP_UID)):
            taken = [e for e in pwd.getpwall() if e.pw_uid == uid and e.pw_name != name]
            if taken:
                raise Failure("uid %d is %s on this machine; the workloads need it for %s" % (
                    uid, taken[0].pw_name, name))
            if not any(line.startswith(name + ":") for line in passwd.splitlines()):
                passwd += "%s:x:%d:%d::/nonexistent:/usr/sbin/nologin\n" % (name, uid, uid)
            if not any(line.startswith(name + ":") for line in group.splitlines()):
                group += "%s:x:%d:\n" % (name, uid)
        for fname, text in (("passwd", passwd), ("group", group),
                            # glibc's defaults (timeout 5 s, 2 attempts): what an app sees.
                            ("resolv.conf", "# meshinit tproxy workloads: the suite's bridge; nothing answers"
                                            " DNS there\nnameserver %s\n" % SUITE_IP)):
            with open(os.path.join(self.etc, fname), "w") as f:
                f.write(text)
            os.chmod(os.path.join(self.etc, fname), 0o644)

    def add(self, name, index):
        """A workload at 10.214.0.<index>."""
        root = os.path.join(self.root, name)
        os.makedirs(root)
        os.chmod(root, 0o755)
        binds = [(os.path.join(self.etc, f), "/etc/" + f) for f in ("passwd", "group", "resolv.conf")]
        for sub, src in (("kuma-bin", os.path.dirname(self.deps["KUMA_DP_BIN"])),
                         ("envoy-bin", os.path.dirname(os.path.realpath(self.deps["ENVOY_BIN"])))):
            os.makedirs(os.path.join(root, sub))
            binds.append((src, os.path.join(root, sub)))
        ready = os.path.join(root, ".mounted")
        script = " && ".join(["mount --bind %s %s" % (src, dst) for src, dst in binds]
                             + ["touch %s" % ready, "exec sleep infinity"])
        holder = C.start_holder(self.runner, name, ["unshare", "--net", "--mount", "--propagation", "private", "--",
                                                    "sh", "-ec", script],
                                ready=lambda: os.path.exists(ready))
        self.holders.append(holder)
        w = Workload(self, name, "%s.%d" % (SUBNET, index), holder, root)
        C.plug(w, "vt-%s" % name, BRIDGE)
        # The mesh's virtual IPs (kuma-cp's KUMA_DNS_SERVER_CIDR, 240.0.0.0/4)
        # need a route: the kernel routes an app's connect() before the nat
        # OUTPUT hook redirects it to Envoy, and without one it fails with
        # "Network is unreachable" (a VM's default route covers them). On
        # the link: nothing answers there, the rules take the packets first.
        w.sh("ip", "route", "add", VIP_CIDR, "dev", "eth0")
        C.wait_link_up("vt-%s" % name, "link of %s up" % name)
        self.workloads[name] = w
        return w

    def __getitem__(self, name):
        return self.workloads[name]

    def routes(self):
        out = {"suite": C.run(["ip", "-4", "route", "show"], "routes").strip().splitlines()}
        for name, w in self.workloads.items():
            out[name] = w.sh("ip", "-4", "route", "show").strip().splitlines()
        return out

    # ---------------------------------------------------------- teardown
    def down(self, timeout=10):
        """Stop every workload process and holder, remove the veths, the
        bridge and the directories; return what is left (empty: nothing)."""
        left = []
        inodes = {}
        for name, w in self.workloads.items():
            try:
                inodes[name] = (ns_inode(w.ns), ns_inode(w.mnt))
            except OSError:
                pass
        for group in (self.procs, self.holders):
            M.stop_sessions(group)
        left += ["process %s %s" % (p.name, p.session_pids()) for p in self.procs + self.holders
                 if p.session_pids()]
        # A namespace is gone once no process holds it (bounded scan of /proc).
        deadline = time.monotonic() + timeout
        while True:
            held = holders_of({i for pair in inodes.values() for i in pair})
            if not held or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        left += ["namespace inode %s held by pid %s" % (i, p) for i, p in sorted(held.items())]
        for name in self.workloads:
            if link_exists("vt-%s" % name):
                subprocess.run(["ip", "link", "del", "vt-%s" % name], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                if link_exists("vt-%s" % name):
                    left.append("veth vt-%s" % name)
        if self.up_done and link_exists(BRIDGE):
            subprocess.run(["ip", "link", "del", BRIDGE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if link_exists(BRIDGE):
                left.append("bridge %s" % BRIDGE)
        own = subprocess.run(["iptables-nft-save"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True).stdout
        if CHAIN_PREFIX in own:
            left.append("KUMA_MESH rules in the suite's own namespace")
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        if self.root and os.path.exists(self.root):
            left.append("directory %s" % self.root)
        return left


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def holders_of(inodes):
    """{inode: pid} for each namespace inode some live process still has."""
    found = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        for kind in ("net", "mnt"):
            try:
                ino = os.stat("/proc/%s/ns/%s" % (d, kind)).st_ino
            except OSError:
                continue
            if ino in inodes:
                found[ino] = int(d)
    return found


# ------------------------------------------------------------------ the caller's log
def read_calls(proc):
    """The JSON lines tproxy_caller.py wrote so far (its Runner log)."""
    out = []
    for line in proc.text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def mono_to_suite(t):
    """A CLOCK_MONOTONIC reading (the caller's "t") on meshlib's clock (now())."""
    return t - M.T0


def first(calls, pred):
    for c in calls:
        if pred(c):
            return c
    return None
