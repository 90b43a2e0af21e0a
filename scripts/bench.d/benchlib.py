"""Helpers shared by scripts/bench and scripts/bench.d/profiles.py (stdlib only)."""
import os
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGET = os.environ.get("MESHINIT_BENCH_TARGET",
                        os.path.expanduser("~/.cache/meshinit/target"))
T0 = time.monotonic()
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg):
    print("[%6.1fs] %s" % (time.monotonic() - T0, msg), file=sys.stderr, flush=True)


def mono_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cmd_out(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


HOST = os.uname().machine + "-unknown-linux-gnu"


def build_paths():
    rel = os.path.join(TARGET, "release")
    return {"meshinit": os.path.join(rel, "meshinit"),
            "meshinit_static": os.path.join(TARGET, HOST, "release", "meshinit"),
            "app": os.path.join(rel, "meshinit-test-app"),
            "fake_dp": os.path.join(rel, "fake-kuma-dp")}


# ------------------------------------------------------------------ ELF
def linkage(path):
    """'static' or 'dynamic': whether the ELF has a PT_INTERP program header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return "?"
        e_phoff = struct.unpack_from("<Q", head, 32)[0]
        e_phentsize, e_phnum = struct.unpack_from("<HH", head, 54)
        f.seek(e_phoff)
        ph = f.read(e_phentsize * e_phnum)
    for i in range(e_phnum):
        if struct.unpack_from("<I", ph, i * e_phentsize)[0] == 3:  # PT_INTERP
            return "dynamic"
    return "static"


def crate_of(sym):
    s = sym
    for pre in ("<", "&", "mut ", "dyn ", "*const ", "*mut ", "impl "):
        while s.startswith(pre):
            s = s[len(pre):]
    # <T as core::fmt::Debug>::fmt, <[u8] as core::...>, <() as ...>: the trait's crate
    a, c = s.find(" as "), s.find("::")
    if a >= 0 and (c < 0 or a < c):
        s = s[a + 4:]
    if "::" not in s:
        return "(C / no crate)"
    return s.split("::", 1)[0].split("<", 1)[0] or "(other)"


# ------------------------------------------------------------------ /proc
def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                v = v.strip()
                if v.endswith(" kB"):
                    out[k] = int(v[:-3])
                elif v.isdigit():
                    out[k] = int(v)
    except OSError:
        pass
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == "Pss":
                    out["Pss"] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_cpu(pid):
    """(utime+stime ticks, on-CPU ns from schedstat, voluntary+involuntary switches)."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            ns = int(f.read().split()[0])
    except OSError:
        ns = None
    st = proc_status(pid)
    return ticks, ns, st.get("voluntary_ctxt_switches", 0) + st.get("nonvoluntary_ctxt_switches", 0)


# ------------------------------------------------------------------ records
class Record:
    """A record file of meshinit-test-app / fake-kuma-dp: `<mono_ns> <event> ...` lines."""

    def __init__(self, path):
        self.path = path

    def lines(self):
        try:
            with open(self.path) as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            ts, _, rest = line.partition(" ")
            if ts.isdigit():
                out.append((int(ts), rest))
        return out

    def find(self, prefix, nth=1):
        n = 0
        for ts, rest in self.lines():
            if rest.startswith(prefix):
                n += 1
                if n == nth:
                    return ts
        return None

    def wait(self, prefix, timeout=10.0, nth=1, poll=0.001):
        deadline = time.monotonic() + timeout
        while True:
            ts = self.find(prefix, nth)
            if ts is not None:
                return ts
            if time.monotonic() > deadline:
                raise TimeoutError("no '%s' (#%d) in %s" % (prefix, nth, self.path))
            time.sleep(poll)


def wait_file_text(path, text, timeout=10.0, poll=0.005):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, errors="replace") as f:
                if text in f.read():
                    return True
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("no '%s' in %s" % (text, path))
        time.sleep(poll)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signal a Popen and wait; SIGKILL (process group too) when it lingers."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
            proc.wait()
    return proc.returncode


def start(argv, env=None, log=None):
    """Starts argv in its own session (so leftovers can be killed by group)."""
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=log if log is not None else subprocess.DEVNULL,
                            start_new_session=True)


def scratch():
    return tempfile.mkdtemp(prefix="meshinit-bench-")


def plain_rss(sup_argv0, app, prefix=None, settle=0.3):
    """VmRSS/RssAnon/RssFile/Pss (kB) of a supervisor in plain mode, app idle."""
    d = scratch()
    rec = Record(os.path.join(d, "app.rec"))
    prefix = prefix if prefix is not None else [sup_argv0, "--"]
    p = start(prefix + [app, "--record", rec.path])
    try:
        rec.wait("start", timeout=10)
        time.sleep(settle)
        st = proc_status(p.pid)
    finally:
        stop(p)
        cleanup_dir(d)
    return {k: st.get(k) for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Pss")}


def cleanup_dir(d):
    for name in os.listdir(d):
        try:
            os.unlink(os.path.join(d, name))
        except OSError:
            pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def wait_exact(proc, timeout=20.0):
    """Blocking waitpid (Popen.wait with a timeout polls with sleeps of up to 50 ms,
    which would swamp a millisecond measurement); SIGKILLs the group after timeout."""
    import threading

    def kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    return proc.returncode
