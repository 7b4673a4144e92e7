"""Turns the outputs of bench/counter/run.sh into the "Counter app" section of
docs/benchmarks.md. Called by run.sh with its results in the environment."""

import datetime
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
HEADING = "## Counter app"
WORK = os.environ["WORK"]

TARGET_RATIO = 10.0
TARGET_P99_MS = 5.0
TARGET_RSS_MB = 10.0


def to_ms(value):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"unknown latency {value!r}")
    n, unit = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def seconds(duration):
    """wrk's duration syntax: 15s, 2m, 1h (a bare number is seconds)."""
    m = re.fullmatch(r"([0-9.]+)([smh]?)", duration)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_wrk(name):
    text = open(os.path.join(WORK, f"{name}.wrk")).read()
    rps = float(re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M).group(1))
    avg = to_ms(re.search(r"^\s+Latency\s+(\S+)", text, re.M).group(1))
    pct = {p: to_ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    total = int(re.search(r"^\s+(\d+) requests in", text, re.M).group(1))
    socket = re.search(r"Socket errors: (.*)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = []
    if socket:
        errors.append("socket errors: " + socket.group(1))
    if non2xx:
        errors.append(f"{non2xx.group(1)} non-2xx")
    return {
        "rps": rps,
        "avg": avg,
        "p50": pct["50"],
        "p99": pct["99"],
        "total": total,
        "errors": "; ".join(errors) or "none",
        "raw": text.strip(),
        "busy": int(open(os.path.join(WORK, f"{name}.busy")).read().strip()),
        "others": other_cpu_seconds(name),
    }


# Our own processes during a run; everything else is "other work".
OURS = ("wrk", "redis-server", "counter-app", "gunicorn", "procstat.py")


def other_cpu_seconds(name):
    """CPU seconds used during the wrk run by processes that are not part of
    the benchmark (processes that started and ended within it are missed)."""

    def load(suffix):
        snap = {}
        for line in open(os.path.join(WORK, f"{name}.{suffix}")):
            pid, ticks, proc, *args = line.split(" ", 3)
            snap[pid] = (int(ticks), proc, " ".join(args))
        return snap

    before, after = load("cpu-before"), load("cpu-after")
    hz = os.sysconf("SC_CLK_TCK")
    by_name = {}
    for pid, (ticks, proc, args) in after.items():
        if any(o in proc or o in args for o in OURS):
            continue
        used = ticks - before.get(pid, (0, "", ""))[0]
        if used > 0:
            by_name[proc] = by_name.get(proc, 0) + used / hz
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:3]
    return sum(by_name.values()), ", ".join(f"{n} {s:.1f} s" for n, s in top) or "none"


def run(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception as exc:  # a missing tool only leaves a blank in the report
        return f"unknown ({exc})"


def machine():
    cpu = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "redis": run(["/usr/bin/redis-server", "--version"]),
        "wrk": run(["wrk", "--version"]).split(" Copyright")[0],
        "python": platform.python_version(),
        "rustc": run(["rustc", "--version"]),
        "pip": subprocess.run(
            [os.path.join(os.environ["VENV"], "bin", "pip"), "freeze"],
            capture_output=True,
            text=True,
        ).stdout.split(),
    }


def verdict(ok):
    return "met" if ok else "**missed**"


def section():
    flask, app = parse_wrk("flask"), parse_wrk("counter-app")
    m = machine()
    ratio = app["rps"] / flask["rps"]
    rss_idle = int(os.environ["RSS_IDLE"]) / 1024
    rss_after = int(os.environ["RSS_AFTER"]) / 1024
    rss_peak = int(os.environ["RSS_PEAK"]) / 1024
    try:
        redis_bench = open(os.path.join(WORK, "redis-benchmark.txt")).read().strip()
    except OSError:
        redis_bench = ""
    wrk_cmd = (
        f"wrk -t{os.environ['THREADS']} -c{os.environ['CONNECTIONS']} "
        f"-d{os.environ['DURATION']} --latency http://127.0.0.1:<port>/"
    )
    workers = os.environ["GUNICORN_WORKERS"]
    pins = ", ".join(p for p in m["pip"] if p.lower().split("==")[0] in ("flask", "gunicorn", "redis"))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def row(name, r):
        return (
            f"| {name} | {r['rps']:,.0f} | {r['avg']:.2f} ms | {r['p50']:.2f} ms "
            f"| {r['p99']:.2f} ms | {r['total']:,} | {r['errors']} |"
        )

    lines = [
        HEADING,
        "",
        f"Measured {date} with `bench/counter/run.sh` (written by it; rerun it to refresh).",
        "",
        "What runs: one local `redis-server` (no persistence); the original Flask app",
        f"(`bench/counter/flask_ref/`, the seed's code) under gunicorn with {workers} sync workers",
        ("(2 × cores + 1, gunicorn's advice)" if int(workers) == 2 * os.cpu_count() + 1 else "(set by GUNICORN_WORKERS)")
        + "; then counter-app's static release binary, the one the image ships.",
        "Each gets a warm-up of " + os.environ["WARMUP"] + ", then",
        f"`{wrk_cmd}` on GET / (every request is one Redis INCR).",
        "wrk, Redis and the server share the same cores; only one server runs at a time.",
        "Other work on the machine skews results; the script waits for a quiet machine before",
        f"each run. CPU busy in the second before the run: Flask {flask['busy']}%, counter-app"
        f" {app['busy']}%; CPU time taken by other processes during the run (of"
        f" {os.cpu_count() * seconds(os.environ['DURATION']):.0f} core-seconds): Flask"
        f" {flask['others'][0]:.1f} s ({flask['others'][1]}), counter-app"
        f" {app['others'][0]:.1f} s ({app['others'][1]}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem']} RAM, Linux {m['kernel']};",
        f"{m['redis']}; {m['wrk']}; Python {m['python']} ({pins}); {m['rustc']}.",
        "",
        "| server | requests/s | avg latency | p50 | p99 | requests | errors |",
        "|---|---:|---:|---:|---:|---:|---|",
        row(f"Flask + gunicorn ({workers} workers)", flask),
        row("counter-app", app),
        "",
        "| target (issue 5) | measured | |",
        "|---|---|---|",
        f"| ≥ 10× Flask's requests/s | {ratio:.1f}× | {verdict(ratio >= TARGET_RATIO)} |",
        f"| p99 ≤ 5 ms | {app['p99']:.2f} ms | {verdict(app['p99'] <= TARGET_P99_MS)} |",
        f"| idle RSS < 10 MB | {rss_idle:.1f} MiB after start; {rss_after:.1f} MiB idle after the load "
        f"(peak {rss_peak:.1f} MiB during it) | {verdict(max(rss_idle, rss_after) * 1.048576 < TARGET_RSS_MB)} |",
        "",
    ]
    if redis_bench:
        lines += [
            f"For scale, Redis alone (`redis-benchmark -t incr -n 500000 -c {os.environ['CONNECTIONS']}`,"
            " unpipelined) on the same run: " + redis_bench.replace("INCR: ", "") + ".",
            "",
        ]
    lines += [
        "<details><summary>Raw wrk output</summary>",
        "",
        "Flask + gunicorn:",
        "",
        "```",
        flask["raw"],
        "```",
        "",
        "counter-app:",
        "",
        "```",
        app["raw"],
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def replace_section(doc, new):
    """Replaces our section (up to the next '## ' heading) and keeps the others."""
    if not doc.strip():
        doc = "# Benchmarks\n\n"
    lines = doc.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip() == HEADING), None)
    if start is None:
        return doc.rstrip("\n") + "\n\n" + new
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
    )
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + new + ("\n" + tail if tail else "")


def main():
    new = section()
    print(new)
    if os.environ.get("WRITE_DOC", "1") != "1":
        return
    doc = open(DOC).read() if os.path.exists(DOC) else ""
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write(replace_section(doc, new))
    print(f"wrote {os.path.relpath(DOC, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
