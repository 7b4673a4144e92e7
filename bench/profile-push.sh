#!/usr/bin/env bash
# Where a push's time goes: `perf record` on the registry while regbench
# runs one push scenario, then the functions that took the
# server's CPU (self time, top 15) and the server's CPU-seconds per GiB.
# Unlike bench/profile.sh (instructions per request, under callgrind), this
# samples real time on real I/O, so run it on an idle machine.
#
#   bench/profile-push.sh                              # push 512 MiB, streamed
#   SCENARIO=push_512m_chunked bench/profile-push.sh
#   SCENARIO=push_64m_monolithic REPEAT=5 bench/profile-push.sh
#   SCENARIO=push_1m_x256_c16 bench/profile-push.sh     # 256 blobs, 16 at a time
#
# Needs perf (apt-get install linux-perf). Builds `--profile profiling`
# (the release build with symbols).
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${SCENARIO:-push_512m_streamed}
REPEAT=${REPEAT:-3}
command -v perf >/dev/null || { echo "profile-push.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
. bench/profiling-setup.sh
start_registry
case $SCENARIO in push_[0-9]*m_*) ;; *) echo "profile-push.sh: SCENARIO is push_<MiB>m_<style> or push_1m_x256_c16" >&2; exit 2 ;; esac
size=$(sed -E 's/^push_([0-9]+)m.*/\1/' <<<"$SCENARIO")
# push_1m_x256_c16: 256 blobs a run.
count=$(sed -nE 's/.*_x([0-9]+).*/\1/p' <<<"$SCENARIO"); count=${count:-1}
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
perf record -F 999 -p "$pid" -o "$work/perf.data" 2>"$work/perf.err" &
perf_pid=$!
sleep 0.5
"$BIN/examples/regbench" --url "http://127.0.0.1:$port" --user bench --password benchpw \
  --repeat "$REPEAT" --sizes "$size" --only "$SCENARIO" >"$work/out.json"
kill -INT "$perf_pid"; wait "$perf_pid" || true
after=$(cpu)
ticks=$(getconf CLK_TCK)
python3 - "$work/out.json" "$before" "$after" "$ticks" "$size" "$REPEAT" "$count" <<'PY'
import json, os, sys
out, before, after, ticks, size, repeat, count = sys.argv[1:]
res = json.load(open(out))["results"]
for k, v in res.items():
    print(f"{k}: median {v['median']:.0f} {v['unit']} (runs {', '.join(f'{r:.0f}' for r in v['runs'])})")
gib = int(size) * int(repeat) * int(count) / 1024
cpu = (float(after) - float(before)) / float(ticks)
# The timed part of the runs (the client makes its data before each).
timed = sum((int(count) if v["unit"] == "blobs/s" else int(size)) / r for v in res.values() for r in v["runs"])
print(f"server CPU: {cpu:.2f} s for {gib:.2f} GiB moved ({cpu / gib:.2f} CPU-s per GiB); "
      f"over the {timed:.1f} s the pushes took, {cpu / timed:.2f} of the {os.cpu_count()} cores on average")
PY
echo "server CPU by function (self time, share of all samples):"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep '%' | sed -E 's/ +/ /g; s/ - - $//' | cut -c1-110 | head -15 || true
