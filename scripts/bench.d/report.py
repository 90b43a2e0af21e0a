"""Renders BENCHMARKS.md from the JSON that scripts/bench collects."""

PEERS = ["tini", "tini-static", "dumb-init", "catatonit"]
SUBJECTS = ["meshinit", "meshinit-static"]


def f_kb(v):
    return "–" if v is None else ("%.0f kB" % v)


def f_us(v):
    if v is None:
        return "–"
    if abs(v) >= 10000:
        return "%.1f ms" % (v / 1000)
    if abs(v) >= 1000:
        return "%.2f ms" % (v / 1000)
    return "%.0f µs" % v


def f_s(v):
    return "–" if v is None else "%.3f s" % v


def f_ms(v):
    return "–" if v is None else "%.1f ms" % v


def f_bytes(v):
    if v is None:
        return "–"
    if v >= 1 << 20:
        return "%.2f MiB" % (v / (1 << 20))
    return "%.0f KiB" % (v / 1024)


def ratio(m, best):
    if m is None or best in (None, 0):
        return "–"
    return "%.2fx" % (m / best)


def best_peer(vals, tools):
    """(name, value) of the lowest value among the peers present."""
    cand = [(vals.get(p), p) for p in PEERS if p in tools and vals.get(p) is not None]
    if not cand:
        return None, None
    v, p = min(cand)
    return p, v


def rows(doc):
    """Main table: (scenario, unit formatter, {tool: value})."""
    r = doc["results"]
    out = []
    if "size" in r:
        out.append(("Binary size (file)", f_bytes, {k: v["bytes"] for k, v in r["size"].items()}))
    if "rss" in r:
        out.append(("RSS, plain mode (VmRSS)", f_kb, {k: v["VmRSS"] for k, v in r["rss"].items()}))
        out.append(("  of which anonymous (RssAnon)", f_kb, {k: v["RssAnon"] for k, v in r["rss"].items()}))
        out.append(("  proportional (Pss)", f_kb, {k: v["Pss"] for k, v in r["rss"].items()}))
    if "idle" in r:
        secs = r["idle"]["seconds"]
        rr = r["idle"]["rows"]
        out.append(("CPU while idle %.0fs (utime+stime ticks)" % secs, lambda v: "–" if v is None else "%d" % v,
                    {k: v["ticks"] for k, v in rr.items() if k in doc["tools"]}))
        out.append(("  wake-ups while idle (context switches)", lambda v: "–" if v is None else "%d" % v,
                    {k: v["switches"] for k, v in rr.items() if k in doc["tools"]}))
    if "startup" in r:
        out.append(("Startup: exec of supervisor → exec of app, overhead", f_us,
                    {k: v["exec_over_us"] for k, v in r["startup"].items() if k in doc["tools"]}))
        out.append(("  `SUP -- /bin/true` wall minus `/bin/true`", f_us,
                    {k: v["true_over_us"] for k, v in r["startup"].items() if k in doc["tools"]}))
    if "startup_rt" in r:
        out.append(("  exec → exec overhead, SCHED_FIFO", f_us,
                    {k: v["exec_over_us"] for k, v in r["startup_rt"].items() if k in doc["tools"]}))
        out.append(("  `/bin/true` wall overhead, SCHED_FIFO", f_us,
                    {k: v["true_over_us"] for k, v in r["startup_rt"].items() if k in doc["tools"]}))
    if "hyperfine" in r:
        out.append(("  same, hyperfine -N medians", f_us,
                    {k: v for k, v in r["hyperfine"].items() if k in doc["tools"]}))
    if "signal" in r:
        out.append(("Signal forwarding latency, SIGUSR1 (median)", f_us,
                    {k: v["median_us"] for k, v in r["signal"].items() if k in doc["tools"]}))
        out.append(("  p90", f_us, {k: v["p90_us"] for k, v in r["signal"].items() if k in doc["tools"]}))
    if "signal_rt" in r:
        out.append(("  median, SCHED_FIFO", f_us,
                    {k: v["median_us"] for k, v in r["signal_rt"].items() if k in doc["tools"]}))
        out.append(("  p90, SCHED_FIFO", f_us,
                    {k: v["p90_us"] for k, v in r["signal_rt"].items() if k in doc["tools"]}))
    if "stop" in r:
        out.append(("Plain stop: SIGTERM → supervisor exited", f_us,
                    {k: v["median_us"] for k, v in r["stop"].items()}))
    if "stop_rt" in r:
        out.append(("  same, SCHED_FIFO", f_us, {k: v["median_us"] for k, v in r["stop_rt"].items()}))
    if "reap" in r:
        n = doc["args"].get("orphans", 10000)
        out.append(("Reaping %d orphans as PID 1 (wall)" % n, f_s, {k: v["wall_s"] for k, v in r["reap"].items()}))
        out.append(("  CPU of the whole tree (user+sys)", f_s, {k: v["cpu_s"] for k, v in r["reap"].items()}))
    if "callgrind" in r:
        cg = r["callgrind"]
        fmt = lambda v: "–" if v is None else "{:,.0f}".format(v)  # noqa: E731
        rr = cg["rows"]
        out.append(("Instructions: `SUP -- /bin/true` (callgrind)", fmt, {k: v["true"] for k, v in rr.items()}))
        out.append(("Instructions per forwarded SIGUSR1 (%d sent)" % cg["signals"], fmt,
                    {k: v["per_signal"] for k, v in rr.items()}))
        out.append(("Instructions per reaped orphan as PID 1 (%d)" % cg["orphans"], fmt,
                    {k: v["per_orphan"] for k, v in rr.items()}))
    return out


def targets(doc):
    """[(target, subject, measured, verdict)]."""
    r = doc["results"]
    subs = [t for t in SUBJECTS if t in doc["tools"]]
    out = []

    def verdict(ok):
        return "**pass**" if ok else "**MISS**"
    if "rss" in r and r["rss"].get("tini", {}).get("VmRSS"):
        t = r["rss"]["tini"]["VmRSS"]
        limit = 1.5 * t
        for sub in subs:
            m = r["rss"].get(sub, {}).get("VmRSS")
            if m:
                out.append(("RSS plain mode ≤ 1.5x tini's (%s)" % f_kb(limit), sub,
                            "%s = %.2fx tini" % (f_kb(m), m / t) +
                            ("" if m <= limit else "; over by %s" % f_kb(m - limit)), verdict(m <= limit)))
    if "rss_full" in r:
        for sub in subs:
            x = r["rss_full"].get(sub)
            if x and x.get("VmRSS"):
                m = x["VmRSS"]
                out.append(("RSS with probe, status endpoint and proxy ≤ 4 MiB (4096 kB)", sub,
                            "%s (peak %s)" % (f_kb(m), f_kb(x.get("VmHWM"))) +
                            ("" if m <= 4096 else "; over by %s" % f_kb(m - 4096)), verdict(m <= 4096)))
    if "idle" in r:
        for sub in subs:
            m = r["idle"]["rows"].get(sub)
            if m:
                out.append(("No CPU while idle without probes (%.0f s)" % r["idle"]["seconds"], sub,
                            "%d ticks, %s on CPU, %d wake-ups" % (m["ticks"], f_us(m["cpu_us"]), m["switches"]),
                            verdict(m["ticks"] == 0)))
    for key, tag in (("startup", ""), ("startup_rt", ", SCHED_FIFO")):
        for sub in subs:
            m = r.get(key, {}).get(sub, {}).get("exec_over_us")
            if m is not None:
                out.append(("Startup overhead ≤ 2 ms" + tag, sub, f_us(m), verdict(m <= 2000)))
    for key, tag in (("signal", ""), ("signal_rt", ", SCHED_FIFO")):
        if key in r and r[key].get("tini", {}).get("median_us"):
            t = r[key]["tini"]["median_us"]
            for sub in subs:
                m = r[key].get(sub, {}).get("median_us")
                if m is not None:
                    out.append(("Signal forwarding latency ≤ 1.2x tini's (%s)%s" % (f_us(1.2 * t), tag), sub,
                                "%s = %.2fx tini" % (f_us(m), m / t), verdict(m <= 1.2 * t)))
    if "reap" in r and r["reap"].get("tini", {}).get("wall_s"):
        t = r["reap"]["tini"]["wall_s"]
        for sub in subs:
            m = r["reap"].get(sub, {}).get("wall_s")
            if m is not None:
                out.append(("Reaping %s orphans ≤ 1.2x tini's (%s)" % (
                    "{:,}".format(doc["args"].get("orphans", 10000)), f_s(1.2 * t)), sub,
                    "%s = %.2fx tini" % (f_s(m), m / t), verdict(m <= 1.2 * t)))
    out.extend(lean_targets(doc, subs, verdict))
    if "listen" in r and r["listen"].get("n"):
        L = r["listen"]
        out.append(("App listening → kuma-dp spawned ≤ 150 ms (defaults; worst of %d runs)" % L["n"], "meshinit",
                    "median %s, min %s, max %s" % (f_ms(L["median_ms"]), f_ms(L["min_ms"]), f_ms(L["max_ms"])),
                    verdict(L["max_ms"] <= 150)))
    if "shutdown" in r and r["shutdown"].get("n"):
        S = r["shutdown"]
        out.append(("Shutdown overhead beyond drain 1 s + grace 1 s < 50 ms", "meshinit",
                    "median %s, worst %s (of %d)" % (f_ms(S["overhead_ms"]), f_ms(S["max_overhead_ms"]), S["n"]),
                    verdict(S["max_overhead_ms"] < 50)))
        dev = S["summary_max_dev_ms"]
        if S["summary_n"]:
            worst = max(v for v in dev.values() if v is not None)
            out.append(("Each shutdown phase within 100 ms of its configured time (summary line)", "meshinit",
                        "worst deviation: drain %s, grace %s, app stop %s" % (
                            f_ms(dev["drain"]), f_ms(dev["grace"]), f_ms(dev["app_stop"])),
                        verdict(worst <= 100)))
    return out


def lean_targets(doc, subs, verdict):
    """Issue 24's targets: as lean as the leanest init."""
    r = doc["results"]
    out = []
    tools = doc["tools"]
    for key, tag in (("startup", ""), ("startup_rt", ", SCHED_FIFO")):
        for field, what in (("exec_over_us", "exec → exec"), ("true_over_us", "`SUP -- /bin/true` wall")):
            vals = {k: v.get(field) for k, v in r.get(key, {}).items()}
            peer, b = best_peer(vals, tools)
            for sub in subs:
                m = vals.get(sub)
                if m is not None and b:
                    out.append(("Start-up (%s) ≤ 1.1x the best peer's (%s, %s)%s" % (what, peer, f_us(b), tag), sub,
                                "%s = %.2fx" % (f_us(m), m / b), verdict(m <= 1.1 * b)))
    for key, tag in (("signal", ""), ("signal_rt", ", SCHED_FIFO")):
        for field, what in (("median_us", "median"), ("p90_us", "p90")):
            vals = {k: v.get(field) for k, v in r.get(key, {}).items()}
            peer, b = best_peer(vals, tools)
            for sub in subs:
                m = vals.get(sub)
                if m is not None and b:
                    out.append(("Signal forwarding latency, %s ≤ 1.1x the best peer's (%s, %s)%s" % (
                        what, peer, f_us(b), tag), sub, "%s = %.2fx" % (f_us(m), m / b), verdict(m <= 1.1 * b)))
    rows = r.get("callgrind", {}).get("rows", {})
    tini = rows.get("tini", {})
    for field, what, limit in (("true", "`SUP -- /bin/true`", 3), ("per_signal", "per forwarded signal", 5),
                               ("per_orphan", "per reaped orphan", 5)):
        t = tini.get(field)
        for sub in subs:
            m = rows.get(sub, {}).get(field)
            if m is not None and t:
                out.append(("Instructions %s ≤ %dx tini's (%s)" % (what, limit, "{:,.0f}".format(limit * t)), sub,
                            "{:,.0f} = {:.2f}x tini".format(m, m / t), verdict(m <= limit * t)))
    t = r.get("rss", {}).get("tini", {}).get("VmRSS")
    for sub in subs:
        m = r.get("rss", {}).get(sub, {}).get("VmRSS")
        if m and t:
            out.append(("RSS plain mode ≤ tini's (%s)" % f_kb(t), sub, "%s = %.2fx tini" % (f_kb(m), m / t),
                        verdict(m <= t)))
    size = r.get("size", {}).get("meshinit-static", {}).get("bytes")
    if size:
        out.append(("Static binary ≤ 2 MiB", "meshinit-static", f_bytes(size), verdict(size <= 2 << 20)))
    return out


def render(doc):
    m = doc["machine"]
    tools = [t for t in SUBJECTS + PEERS if t in doc["tools"]]
    subs = [t for t in SUBJECTS if t in doc["tools"]]
    L = []
    L.append("# Benchmarks: meshinit against tini, dumb-init and catatonit\n")
    L.append("Generated by `scripts/bench` on %s in %.0f s. Do not edit by hand: rerun the script.\n"
             % (doc["date"], doc["elapsed_s"]))
    L.append("## Machine\n")
    L.append("| | |\n|---|---|")
    L.append("| CPU | %s |" % m["cpu"])
    L.append("| Cores | %s |" % m["cores"])
    L.append("| Kernel | %s |" % m["kernel"])
    L.append("| OS | %s |" % m["os"])
    L.append("| Rust | %s |" % m["rustc"])
    L.append("| Load average before / after | %s / %s |" % (m["load_before"], m["load_after"]))
    L.append("")
    L.append("## Tools\n")
    L.append("| Tool | Version | Binary | Linkage |\n|---|---|---|---|")
    sizes = doc["results"].get("size", {})
    for t in tools:
        info = doc["tools"][t]
        L.append("| %s | %s | `%s` | %s |" % (t, info["version"], info["path"],
                                              sizes.get(t, {}).get("linkage", "–")))
    L.append("")
    L.append("Peers are invoked as `tini -s --`, `tini-static -s --`, `dumb-init --` and "
             "`catatonit --` (`-s`: tini is a subreaper like meshinit and catatonit when not PID 1); "
             "as PID 1 (reaping) without flags. meshinit runs in plain init mode "
             "(`meshinit -- APP`) unless a row says otherwise. "
             "`best peer` is the lowest of the four peer binaries.\n")

    L.append("## Targets\n")
    L.append("| Target | Binary | Measured | Verdict |\n|---|---|---|---|")
    for t, sub, meas, v in targets(doc):
        L.append("| %s | %s | %s | %s |" % (t, sub, meas, v))
    L.append("")

    L.append("## Results (medians)\n")
    L.append("| Scenario | " + " | ".join(tools) + " | best peer | " +
             " | ".join("%s / best" % t for t in subs) + " |")
    L.append("|---|" + "---:|" * len(tools) + "---|" + "---:|" * len(subs))
    for name, fmt, vals in rows(doc):
        bp, bv = best_peer(vals, tools)
        cells = [fmt(vals.get(t)) for t in tools]
        L.append("| %s | %s | %s | %s |" % (name, " | ".join(cells), bp or "–",
                                             " | ".join(ratio(vals.get(t), bv) for t in subs)))
    L.append("")
    r = doc["results"]
    base = r.get("startup", {}).get("(no supervisor)")
    direct = r.get("signal", {}).get("(no supervisor)")
    if base or direct:
        L.append("Baselines without a supervisor: app exec → its first record %s; `/bin/true` spawn+wait %s; "
                 "SIGUSR1 sent straight to the app → read %s.\n" % (
                     f_us(base and base["exec_us"]), f_us(base and base["true_us"]),
                     f_us(direct and direct["median_us"])))

    if "idle" in r and "meshinit (probe, status, proxy)" in r["idle"]["rows"]:
        x = r["idle"]["rows"]["meshinit (probe, status, proxy)"]
        L.append("Idle with a TCP probe (default liveness period 5 s), the status endpoint and fake-kuma-dp "
                 "running, meshinit used %d ticks, %s on CPU, %d wake-ups in %.0f s (probes are expected to "
                 "cost CPU; the target applies without them).\n" % (x["ticks"], f_us(x["cpu_us"]),
                                                                    x["switches"], r["idle"]["seconds"]))
    if "rss_full" in r:
        L.append("### meshinit with probe, status endpoint and proxy\n")
        L.append("`meshinit --probe-tcp 127.0.0.1:APP --probe-period 1s --status-listen 127.0.0.1:PORT "
                 "--cp-address … --kuma-dp fake-kuma-dp --dataplane-file dp.yaml --dataplane-var name=bench "
                 "-- meshinit-test-app --listen 127.0.0.1:APP`, measured 1.5 s after \"service running and ready\", "
                 "after `/status` and `/ready` requests and at least one liveness probe (medians):\n")
        L.append("| Binary | VmRSS | peak (VmHWM) | RssAnon | RssFile | Pss | runs |\n|---|---:|---:|---:|---:|---:|---:|")
        for sub in subs:
            x = r["rss_full"].get(sub)
            if x and x.get("VmRSS"):
                L.append("| %s | %s | %s | %s | %s | %s | %d |" % (
                    sub, f_kb(x["VmRSS"]), f_kb(x["VmHWM"]), f_kb(x["RssAnon"]), f_kb(x["RssFile"]),
                    f_kb(x["Pss"]), x["n"]))
        L.append("")
    if "listen" in r and r["listen"].get("n"):
        x = r["listen"]
        L.append("### App listening → kuma-dp spawned\n")
        L.append("Default settings (probe from the Dataplane's servicePort, startup period 100 ms); the app starts "
                 "listening after a random 0–300 ms so the probe phase is sampled evenly. fake-kuma-dp's `start` "
                 "record minus the app's `listening` record: median %s, min %s, max %s over %d runs. The wait "
                 "is bounded by the probe period (100 ms) plus one connect and one fork/exec.\n" % (
                     f_ms(x["median_ms"]), f_ms(x["min_ms"]), f_ms(x["max_ms"]), x["n"]))
    if "shutdown" in r and r["shutdown"].get("n"):
        x = r["shutdown"]
        L.append("### Shutdown (issue 4)\n")
        L.append("`meshinit --kuma-dp fake-kuma-dp --kuma-dp-arg=--drain-time=1s --app-grace-delay 1s … -- "
                 "meshinit-test-app --listen …`, SIGTERM once kuma-dp is ready. Medians of %d runs, from the "
                 "CLOCK_MONOTONIC records of the app and fake-kuma-dp:\n" % x["n"])
        L.append("| Step | Median |\n|---|---:|")
        L.append("| SIGTERM → kuma-dp gets SIGTERM | %s |" % f_ms(x["to_dp_term_ms"]))
        L.append("| kuma-dp drain (configured 1 s) | %s |" % f_ms(x["drain_ms"]))
        L.append("| kuma-dp exit → app gets SIGTERM (grace, configured 1 s) | %s |" % f_ms(x["grace_ms"]))
        L.append("| app SIGTERM → app dead | %s |" % f_ms(x["app_stop_ms"]))
        L.append("| app dead → meshinit exited | %s |" % f_ms(x["after_app_ms"]))
        L.append("| **SIGTERM → meshinit exited** | **%s** (overhead %s, worst %s) |" % (
            f_ms(x["total_ms"]), f_ms(x["overhead_ms"]), f_ms(x["max_overhead_ms"])))
        L.append("")
        if x.get("summary_line"):
            L.append("meshinit's own summary line (one run): `%s`; worst deviation from the configured "
                     "times over %d runs: drain %s, grace %s, app stop %s (the line has 10 ms resolution).\n" % (
                         x["summary_line"], x["summary_n"], f_ms(x["summary_max_dev_ms"]["drain"]),
                         f_ms(x["summary_max_dev_ms"]["grace"]), f_ms(x["summary_max_dev_ms"]["app_stop"])))

    prof = doc.get("profiles")
    if prof:
        L.append("## Release profile variants\n")
        L.append("Built by `scripts/bench --profiles` on %s (%s) without touching Cargo.toml: `cargo build --release` "
                 "with `CARGO_PROFILE_RELEASE_*` overrides (static: `RUSTFLAGS=\"-C target-feature=+crt-static\"` "
                 "and `--target x86_64-unknown-linux-gnu`) into a separate target dir. RSS is plain mode, "
                 "median of %d runs; instructions are callgrind's count for `meshinit -- /bin/true` in a fresh "
                 "PID namespace (start-up and exit, load-independent).\n" % (prof["date"], prof["rustc"], prof["reps"]))
        L.append("| Variant | Settings | Size | Linkage | VmRSS | RssAnon | Instructions, `-- /bin/true` | Build time |")
        L.append("|---|---|---:|---|---:|---:|---:|---:|")
        cur = next((v for v in prof["variants"] if v["name"] == "current" and "size" in v), None)
        for v in prof["variants"]:
            if "size" not in v:
                L.append("| %s | %s | build failed | | | | | |" % (v["name"], v["desc"]))
                continue
            d = ""
            if cur and v is not cur:
                d = " (%+.0f%%)" % (100.0 * (v["size"] - cur["size"]) / cur["size"])
            ins = v.get("instructions")
            di = ""
            if ins and cur and cur.get("instructions") and v is not cur:
                di = " (%+.0f%%)" % (100.0 * (ins - cur["instructions"]) / cur["instructions"])
            dr = ""
            if cur and v is not cur:
                dr = " (%+.0f kB)" % (v["rss_kb"] - cur["rss_kb"])
            L.append("| %s | %s | %s%s | %s | %s%s | %s | %s%s | %.0f s |" % (
                v["name"], v["desc"], f_bytes(v["size"]), d, v["linkage"], f_kb(v["rss_kb"]), dr,
                f_kb(v["rss_anon_kb"]), "–" if not ins else "{:,}".format(ins), di, v["build_s"]))
        L.append("")
        crates = next((v.get("crates") for v in prof["variants"] if v.get("crates")), None)
        if crates:
            total = sum(crates.values())
            L.append("Code size per crate (function symbols of the `strip=false` build, `nm -S`; "
                     "after LTO inlining, so approximate):\n")
            L.append("| Crate | Code | Share |\n|---|---:|---:|")
            for k, v in sorted(crates.items(), key=lambda kv: -kv[1])[:14]:
                L.append("| %s | %s | %.0f%% |" % (k, f_bytes(v), 100.0 * v / total))
            L.append("")
        notes = doc.get("profile_notes")
        if notes:
            L.append(notes + "\n")
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("analysis.md",):
        path = os.path.join(here, name)
        if os.path.exists(path):
            with open(path) as f:
                L.append(f.read().rstrip() + "\n")
    L.append(METHOD)
    L.append("Durations of this run: " + ", ".join("%s %.0f s" % kv for kv in doc.get("durations", {}).items())
             + ".\n")
    return "\n".join(L)


METHOD = """## Method

- One run of `scripts/bench` measures every tool on the same machine. Within each scenario the tools are
  run in a fresh random order every round, so drifting background load hits all of them alike; the tables
  show medians. The machine has 2 cores and may be busy: latency figures are noisier than sizes and RSS.
- The supervised program is `meshinit-test-app` (tests/bin/test_app.rs), which records events with
  CLOCK_MONOTONIC nanosecond timestamps; kuma-dp is `fake-kuma-dp` (tests/bin/fake_kuma_dp.rs).
- **RSS**: `VmRSS` (and `RssAnon`, `Pss`) from `/proc/PID/status` and `smaps_rollup` of the supervisor 0.3 s
  after the app recorded `start`. VmRSS counts resident pages of the binary and of shared libraries, so a
  dynamically linked supervisor carries about 1 MB of libc text that other processes share; Pss divides
  shared pages by their users; RssAnon is the supervisor's own heap and stacks.
- **Idle CPU**: all supervisors run at the same time; utime+stime (clock ticks, `/proc/PID/stat`), on-CPU
  time (`/proc/PID/schedstat`) and voluntary+involuntary context switches over the window, after 1 s settling.
- **Startup**: Python takes CLOCK_MONOTONIC right before `posix_spawn` of `SUP -- meshinit-test-app`
  and reads the app's `start` record; the same without a supervisor is the baseline, and the overhead is
  the difference of medians. This is exec of the supervisor to the app's first instruction of its own,
  including the supervisor's own start-up (dynamic loading, argument parsing, signal setup, fork/exec).
  The second row times `SUP -- /bin/true` to its exit, so it includes the supervisor's exit path too;
  hyperfine (`-N`, no shell) gives the same comparison without alternation.
- **Signal forwarding**: SIGUSR1 to the supervisor's pid at time t0 (CLOCK_MONOTONIC), latency = the app's
  `signal USR1` record timestamp − t0; the app reads signals from a signalfd in its main loop. Several
  signals per run, 10–20 ms apart. "(no supervisor)" sends the signal straight to the app.
- **SCHED_FIFO rows**: the same scenario again with the harness, supervisor and app under `SCHED_FIFO`
  priority 10 (inherited through fork/exec), so that other work on the machine (builds) cannot delay their
  wake-ups. This isolates what the supervisor itself costs; the normal rows show what a loaded host gives.
- **Plain stop**: SIGTERM to the supervisor until `waitpid` returns; the app dies on SIGTERM.
- **Reaping**: `unshare --pid --fork --mount-proc SUP -- meshinit-test-app --orphans 10000 --exit-code 0`;
  the app double-forks 10,000 short-lived grandchildren that are re-parented to the supervisor (PID 1).
  Wall time from Popen to wait4; the CPU row is the rusage of the whole tree (includes the app's forks).
- **Callgrind** (when valgrind is installed): instructions executed by the supervisor process alone
  (`--trace-children=no`), which do not depend on machine load.
- Targets are those of issue 7; "ratio" targets compare with Debian's `/usr/bin/tini` (dynamically linked,
  like meshinit). `tini-static` is shown for reference.
"""


def summary(doc):
    out = ["", "Targets:"]
    for t, sub, meas, v in targets(doc):
        out.append("  %-5s %-16s %s: %s" % (v.replace("*", ""), sub, t, meas))
    out.append("")
    return "\n".join(out)
