#!/usr/bin/env python3
"""Demo backend for the real-mesh suite and demo (Python 3 stdlib only).

    backend.py --port PORT --name NAME [--host 127.0.0.1] [--startup-delay S]
               [--health-file PATH]

GET /        -> 200 "NAME\n" (plus the request count)
GET /healthz, /health -> 200 "ok\n"; with --health-file, while PATH exists and
               holds a status code (e.g. 500), that code and "unhealthy\n"
               instead, while / keeps serving: an app whose health check
               fails (a lost database) while its port is open. The knob is a
               file, not an HTTP endpoint, so nothing that reaches the app
               through the mesh can turn it.
anything else-> 404

Like most apps it exits promptly on SIGTERM/SIGINT (status 0): it does not
wait for connections, so requests still routed to it afterwards fail.
It speaks HTTP/1.1 with keep-alive, as a proxy's connection pool expects.
"""
import argparse
import http.server
import os
import signal
import socketserver
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "meshinit-e2e-backend/1"

    def _send(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _health_code(self):
        """200, or the code written in --health-file while it exists."""
        path = self.server.health_file
        if not path:
            return 200
        try:
            with open(path) as f:
                text = f.read().strip()
        except FileNotFoundError:
            return 200
        try:
            return int(text)
        except ValueError:
            return 500  # a file being written, or one with no code: unhealthy

    def do_GET(self):
        if self.path in ("/healthz", "/health"):
            code = self._health_code()
            self._send(code, "ok\n" if code == 200 else "unhealthy\n")
        elif self.path == "/" or self.path.startswith("/?"):
            with self.server.lock:
                self.server.count += 1
                n = self.server.count
            self._send(200, "%s %d\n" % (self.server.name, n))
        else:
            self._send(404, "not found\n")

    do_HEAD = do_GET

    def log_message(self, fmt, *args):  # keep logs quiet; one line per 1000
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="backend")
    ap.add_argument("--startup-delay", type=float, default=0.0,
                    help="seconds to wait before listening (a slow start)")
    ap.add_argument("--health-file", default=None,
                    help="while this file exists, /health and /healthz answer the status code it holds")
    args = ap.parse_args()

    def on_term(signum, _frame):
        # Exit at once, as most apps do: no drain of open connections.
        print("backend %s: got signal %d, exiting now (served %d requests)"
              % (args.name, signum, getattr(srv, "count", 0) if srv else 0), flush=True)
        os._exit(0)

    srv = None
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.startup_delay > 0:
        print("backend %s: starting in %.1fs" % (args.name, args.startup_delay), flush=True)
        time.sleep(args.startup_delay)
    srv = Server((args.host, args.port), Handler)
    srv.name = args.name
    srv.health_file = args.health_file
    srv.count = 0
    srv.lock = threading.Lock()
    print("backend %s: listening on %s:%d (pid %d)" % (args.name, args.host, args.port, os.getpid()),
          flush=True)
    srv.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    sys.exit(main())
