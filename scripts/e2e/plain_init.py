#!/usr/bin/env python3
"""Baseline for the rollout test: a plain init like tini -g or dumb-init.

    plain_init.py --probe-http URL -- APP ARGS... ::: KUMA-DP ARGS...

Starts the app, waits until URL answers 2xx (so the start is the same as
meshinit's), starts kuma-dp, and on SIGTERM/SIGINT sends the signal to
BOTH children at once, as a plain init that signals every child does.
Then it waits for both and exits with the app's status. Stdlib only.
"""
import signal
import subprocess
import sys
import time
import urllib.request


def log(msg):
    print("plain-init: %s" % msg, flush=True)


def main():
    argv = sys.argv[1:]
    probe = None
    while argv and argv[0] != "--":
        if argv[0] == "--probe-http":
            probe = argv[1]
            argv = argv[2:]
        else:
            sys.exit("plain_init: unknown option %s" % argv[0])
    argv = argv[1:]
    if ":::" not in argv:
        sys.exit("plain_init: usage: plain_init.py --probe-http URL -- APP ... ::: KUMA-DP ...")
    i = argv.index(":::")
    app_cmd, dp_cmd = argv[:i], argv[i + 1:]

    children = []
    stopping = {"t": None}

    def on_signal(signum, _frame):
        if stopping["t"] is None:
            stopping["t"] = time.monotonic()
        log("got signal %d, forwarding to all %d children at once" % (signum, len(children)))
        for p in children:
            try:
                p.send_signal(signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    app = subprocess.Popen(app_cmd)
    children.append(app)
    if probe:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stopping["t"] is None:
            if app.poll() is not None:
                log("app exited before it was healthy: %s" % app.returncode)
                return 1
            try:
                with urllib.request.urlopen(probe, timeout=1) as r:
                    if 200 <= r.status < 300:
                        break
            except Exception:
                pass
            time.sleep(0.05)
        else:
            if stopping["t"] is None:
                log("app not healthy in time")
                app.kill()
                return 1
    log("app healthy, starting kuma-dp")
    dp = subprocess.Popen(dp_cmd)
    children.append(dp)

    app_rc = None
    while True:
        if app_rc is None and app.poll() is not None:
            app_rc = app.returncode
            log("app exited with %s" % app_rc)
        if dp.poll() is not None and app_rc is not None:
            log("kuma-dp exited with %s" % dp.returncode)
            break
        if dp.poll() is not None and stopping["t"] is None:
            log("kuma-dp exited unexpectedly with %s; stopping app" % dp.returncode)
            on_signal(signal.SIGTERM, None)
        if app_rc is not None and stopping["t"] is None:
            log("app exited on its own; stopping kuma-dp")
            on_signal(signal.SIGTERM, None)
        time.sleep(0.02)
    if stopping["t"] is not None:
        log("shutdown took %.2fs" % (time.monotonic() - stopping["t"]))
    if app_rc is None:
        return 1
    return app_rc if app_rc >= 0 else 128 - app_rc


if __name__ == "__main__":
    sys.exit(main())
