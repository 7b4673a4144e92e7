"""CPU accounting for the Swarm benchmark, so each figure says what the
machine's cores were busy with during the run.

  cpu.py snap FILE                 save the CPU ticks of every process and the machine's
  cpu.py run FILE -- CMD ARGS...   run CMD, save its (and its children's) CPU seconds
  cpu.py diff BEFORE AFTER LOADGEN_FILE SECONDS
                                   (LOADGEN_FILE "-": the wrk/locust processes seen in
                                   both snapshots, for a load generator in a container)
                                   one line: machine busy %, core-seconds of the load
                                   generator, counter-app, redis, docker-proxy, the
                                   docker daemons, and everything else (other builds...)
"""

import os
import resource
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")


def snapshot():
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if not argv0:
            continue
        ticks[pid] = (os.path.basename(argv0.decode(errors="replace")),
                      int(fields[11]) + int(fields[12]))
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return ticks, sum(cpu), cpu[3] + cpu[4]


def save(path):
    ticks, total, idle = snapshot()
    with open(path, "w") as f:
        f.write(f"total {total} {idle}\n")
        for pid, (name, t) in ticks.items():
            f.write(f"{pid} {t} {name}\n")


def load(path):
    procs = {}
    with open(path) as f:
        _, total, idle = f.readline().split()
        for line in f:
            pid, t, name = line.rstrip("\n").split(" ", 2)
            procs[pid] = (name, int(t))
    return procs, int(total), int(idle)


def group(name):
    if name.startswith("counter-app"):
        return "counter-app"
    if name.startswith("redis-server"):
        return "redis"
    if name == "docker-proxy":
        return "docker-proxy"
    if name.startswith(("dockerd", "containerd")):
        return "dockerd+containerd"
    return None


def diff(before, after, loadgen_file, seconds):
    b, btotal, bidle = load(before)
    a, atotal, aidle = load(after)
    ticks = max(1, atotal - btotal)  # all cores, in ticks
    busy_core_s = (ticks - (aidle - bidle)) / TICK
    if loadgen_file == "-":
        # The load generator runs in a container (bench/cluster/load.sh):
        # its processes, by name, in both snapshots.
        loadgen = sum(max(0, t - b.get(pid, (name, 0))[1]) / TICK
                      for pid, (name, t) in a.items() if name in ("wrk", "locust"))
    else:
        with open(loadgen_file) as f:
            loadgen = float(f.read())
    groups = {"counter-app": 0.0, "redis": 0.0, "docker-proxy": 0.0, "dockerd+containerd": 0.0}
    others = {}
    for pid, (name, t) in a.items():
        used = max(0, t - b.get(pid, (name, 0))[1]) / TICK
        g = group(name)
        if g:
            groups[g] += used
        elif name not in ("wrk", "locust") and not name.startswith("python"):
            others[name] = others.get(name, 0) + used
    known = loadgen + sum(groups.values())
    other = max(0.0, busy_core_s - known)
    top = ", ".join(n for n, s in sorted(others.items(), key=lambda kv: -kv[1])[:3] if s >= 0.2)
    cores = os.cpu_count()
    parts = [f"load generator {loadgen:.1f}"] + [f"{g} {s:.1f}" for g, s in groups.items()]
    parts.append(f"other {other:.1f}" + (f" ({top})" if top and other >= 0.5 else ""))
    print(f"busy {100 * busy_core_s / (cores * float(seconds)):.0f}% of {cores} cores; "
          f"core-s: " + ", ".join(parts))


def run(out, cmd):
    code = subprocess.call(cmd)
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        f.write(f"{r.ru_utime + r.ru_stime:.2f}\n")
    sys.exit(code)


if __name__ == "__main__":
    if sys.argv[1] == "snap":
        save(sys.argv[2])
    elif sys.argv[1] == "run":
        assert sys.argv[3] == "--"
        run(sys.argv[2], sys.argv[4:])
    else:
        diff(*sys.argv[2:6])
