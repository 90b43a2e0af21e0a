#!/bin/bash
# The baseline's start for scripts/nomad-e2e, run under a plain init
# (`tini -s -g -- /bin/bash plain-init-start.sh ...`):
#
#   plain-init-start.sh HEALTH_URL N APP ARGS(N words) KUMA-DP ARGS...
#
# Starts the app, waits until HEALTH_URL answers (so the start matches
# meshinit's app-first start), then becomes kuma-dp (exec). No signal
# handling of its own: the plain init sends the kill signal to the whole
# process group (app, kuma-dp and Envoy) at once, which is the baseline.
set -u
url=$1
n=$2
shift 2
app=("${@:1:$n}")
shift "$n"
"${app[@]}" &
app_pid=$!
# Bounded wait (60 s) for the app's health URL.
for _ in $(seq 1 600); do
  if ! kill -0 "$app_pid" 2>/dev/null; then
    echo "plain-init-start: the app exited before it was healthy" >&2
    exit 1
  fi
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url" 2>/dev/null; then
    echo "plain-init-start: app healthy, starting kuma-dp" >&2
    exec "$@"
  fi
  sleep 0.1
done
echo "plain-init-start: the app was not healthy within 60s" >&2
kill "$app_pid"
exit 1
