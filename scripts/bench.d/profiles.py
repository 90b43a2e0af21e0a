#!/usr/bin/env python3
"""Release-profile variants of meshinit: binary size and plain-mode RSS.

Run by `scripts/bench --profiles` (slow: one full release build per variant).
Cargo.toml is never edited: each variant is `cargo build --release` with
CARGO_PROFILE_RELEASE_* overrides (and RUSTFLAGS for the static variants)
into a separate target dir. Results go to scripts/bench.d/profiles.json,
which `scripts/bench` folds into BENCHMARKS.md.
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402

TARGET = os.environ.get("MESHINIT_BENCH_PROFILE_TARGET",
                        os.path.expanduser("~/.cache/meshinit/bench-target"))
HOST = "x86_64-unknown-linux-gnu"

# name, description, env overrides, static (crt-static via RUSTFLAGS + --target)
VARIANTS = [
    ("current", "Cargo.toml as is: lto=fat, codegen-units=1, strip, panic=abort, opt-level=3", {}, False),
    ("lto=false", "no LTO (local thin LTO only)", {"CARGO_PROFILE_RELEASE_LTO": "false"}, False),
    ("lto=thin", "thin LTO", {"CARGO_PROFILE_RELEASE_LTO": "thin"}, False),
    ("cgu=16", "codegen-units=16", {"CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16"}, False),
    ("strip=false", "symbols kept", {"CARGO_PROFILE_RELEASE_STRIP": "false"}, False),
    ("panic=unwind", "unwinding panics", {"CARGO_PROFILE_RELEASE_PANIC": "unwind"}, False),
    ("opt=s", "opt-level=s", {"CARGO_PROFILE_RELEASE_OPT_LEVEL": "s"}, False),
    ("opt=z", "opt-level=z", {"CARGO_PROFILE_RELEASE_OPT_LEVEL": "z"}, False),
    ("static", "current + static glibc (-C target-feature=+crt-static)", {}, True),
    ("opt=s+static", "opt-level=s + static glibc", {"CARGO_PROFILE_RELEASE_OPT_LEVEL": "s"}, True),
]


def build(name, env_over, static):
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = TARGET
    env.update(env_over)
    cmd = ["cargo", "build", "--release", "--bin", "meshinit"]
    out = os.path.join(TARGET, "release", "meshinit")
    if static:
        env["RUSTFLAGS"] = (env.get("RUSTFLAGS", "") + " -C target-feature=+crt-static").strip()
        cmd += ["--target", HOST]
        out = os.path.join(TARGET, HOST, "release", "meshinit")
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.monotonic() - t0
    if r.returncode != 0:
        B.say("build %s failed:\n%s" % (name, r.stderr[-2000:]))
        return None, secs
    dest = variant_path(name)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy2(out, dest)
    return dest, secs


def crate_sizes(binary):
    """Text bytes per crate, from an unstripped binary (nm -C -S)."""
    r = subprocess.run(["nm", "-C", "-S", "--size-sort", binary], capture_output=True, text=True)
    sizes = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4 or parts[2] not in "tTwW":
            continue
        size = int(parts[1], 16)
        sym = parts[3]
        crate = B.crate_of(sym)
        sizes[crate] = sizes.get(crate, 0) + size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def variant_path(name):
    return os.path.join(TARGET, "variants", name.replace("=", "-").replace("+", "-"), "meshinit")


def instructions(binary):
    """callgrind instruction count of `binary -- /bin/true` in a fresh PID namespace
    (so the /proc walk at exit sees a handful of processes, as in a container)."""
    if not shutil.which("valgrind"):
        return None
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "valgrind", "--tool=callgrind",
                        "--callgrind-out-file=/dev/null", binary, "--", "/bin/true"],
                       capture_output=True, text=True, timeout=120)
    import re
    m = re.search(r"Collected : (\d+)", r.stderr)
    return int(m.group(1)) if m else None


def main(reps=5, only=None, build_them=True):
    B.say("profile variants into %s (%s)" % (TARGET, "one full build each" if build_them else "measure only"))
    paths = B.build_paths()
    results = []
    old = {}
    path = os.path.join(HERE, "profiles.json")
    if not build_them and os.path.exists(path):
        with open(path) as f:
            old = {v["name"]: v for v in json.load(f)["variants"]}
    for name, desc, env_over, static in VARIANTS:
        if only and name not in only:
            continue
        if build_them:
            B.say("building %s ..." % name)
            binary, secs = build(name, env_over, static)
        else:
            binary = variant_path(name)
            secs = old.get(name, {}).get("build_s", 0)
            if not os.path.exists(binary):
                continue
        if not binary:
            results.append({"name": name, "desc": desc, "error": "build failed"})
            continue
        rss = [B.plain_rss(binary, paths["app"]) for _ in range(reps)]
        row = {
            "name": name, "desc": desc, "env": env_over, "static": static,
            "build_s": round(secs, 1),
            "size": os.path.getsize(binary),
            "linkage": B.linkage(binary),
            "rss_kb": B.median([r["VmRSS"] for r in rss]),
            "rss_anon_kb": B.median([r["RssAnon"] for r in rss]),
            "pss_kb": B.median([r["Pss"] for r in rss]),
            "instructions": instructions(binary),
        }
        if name == "strip=false":
            row["crates"] = crate_sizes(binary)
        B.say("  %s: %d bytes, RSS %d kB (anon %d kB), build %.0fs" % (
            name, row["size"], row["rss_kb"], row["rss_anon_kb"], secs))
        results.append(row)
    doc = {"date": (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) if build_them
                    else json.load(open(path))["date"].split(", re-measured")[0] + ", re-measured " + time.strftime("%H:%M UTC", time.gmtime())),
           "rustc": B.cmd_out(["rustc", "--version"]),
           "reps": reps, "variants": results}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    B.say("wrote %s" % path)
    return doc


if __name__ == "__main__":
    argv = sys.argv[1:]
    measure_only = "--measure-only" in argv
    argv = [a for a in argv if a != "--measure-only"]
    main(only=argv or None, build_them=not measure_only)
