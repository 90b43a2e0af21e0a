#!/usr/bin/env python3
"""A mesh app that calls another mesh service by name (Python 3 stdlib only),
for the transparent-proxy workloads (scripts/e2e/tproxy.py).

    tproxy_caller.py --url http://backend.mesh/ [--interval 0.05] [--timeout 2]
                     [--term-calls-for S] [--listen HOST:PORT] [--name NAME]

From its first instant, every --interval seconds, it resolves the URL's host
the way apps do (getaddrinfo: /etc/resolv.conf, so with `--redirect-dns` the
query goes to kuma-dp's DNS through the iptables rules) and, when that
answered, sends GET to the address it got (Host: the name). Each attempt is
one JSON line on stdout:

  {"t": <CLOCK_MONOTONIC seconds>, "phase": "run"|"term",
   "dns": "ok"|"<error>", "ip": "...", "dns_ms": .., "http": 200|"<error>", "ms": ..,
   "body": "<the answer's first line>", "connection": "<its Connection header, if any>",
   "t_end": <when the attempt ended>}

CLOCK_MONOTONIC is the machine's (network namespaces do not change it), so
the suite lines these up with its own clock.

On SIGTERM it keeps calling for --term-calls-for seconds (the app that
flushes, deregisters or commits while it stops), then exits 0. With --listen
it also serves GET / -> 200 with the body "NAME\n" (--name, default
"caller"): an inbound for the mesh to reach it, whose answers say which
instance served them.
"""
import argparse
import http.client
import http.server
import json
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

term_at = None


def on_term(_sig, _frame):
    global term_at
    if term_at is None:
        term_at = time.monotonic()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = b"caller"

    def do_GET(self):
        body = self.name + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def attempt(host, port, path, timeout):
    rec = {"t": round(time.monotonic(), 4), "phase": "term" if term_at is not None else "run"}
    t0 = time.monotonic()
    try:
        # IPv4: the mesh's virtual IPs for this suite; the answer the app
        # would use first either way.
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        ip = infos[0][4][0]
        rec.update(dns="ok", ip=ip)
    except OSError as e:
        rec.update(dns="%s: %s" % (type(e).__name__, e), http="no address")
        rec["dns_ms"] = round((time.monotonic() - t0) * 1000, 1)
        rec["t_end"] = round(time.monotonic(), 4)
        return rec
    rec["dns_ms"] = round((time.monotonic() - t0) * 1000, 1)
    t1 = time.monotonic()
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        rec["body"] = r.read(64).decode(errors="replace").strip()
        rec["http"] = r.status
        if r.getheader("Connection"):
            rec["connection"] = r.getheader("Connection")
    except (OSError, http.client.HTTPException) as e:
        rec["http"] = "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
    rec["ms"] = round((time.monotonic() - t1) * 1000, 1)
    rec["t_end"] = round(time.monotonic(), 4)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--term-calls-for", type=float, default=0.0)
    ap.add_argument("--listen", default="")
    ap.add_argument("--name", default="caller")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    Handler.name = a.name.encode()
    if a.listen:
        h, _, p = a.listen.rpartition(":")
        srv = Server((h, int(p)), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    nxt = time.monotonic()
    while True:
        if term_at is not None and time.monotonic() - term_at >= a.term_calls_for:
            break
        sys.stdout.write(json.dumps(attempt(host, port, path, a.timeout)) + "\n")
        sys.stdout.flush()
        nxt += a.interval
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
