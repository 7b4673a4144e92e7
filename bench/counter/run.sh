#!/usr/bin/env bash
# Benchmark of the counter app against the original Flask app, in one run on
# this machine: one local redis-server, then the Flask reference app under
# gunicorn, then counter-app's static release binary (the one the image ships),
# each loaded with `wrk -t2 -c64 -d15s --latency` on GET /. Also measures
# counter-app's idle RSS, and redis-benchmark INCR for scale.
#
# Writes the "Counter app" section of docs/benchmarks.md (WRITE_DOC=0 to only
# print). Not a test: numbers depend on the machine, so nothing here fails on
# a missed target; the section says which targets were met.
#
# Usage: bench/counter/run.sh            (from anywhere; needs root for apt)
# Knobs: DURATION=15s CONNECTIONS=64 THREADS=2 WARMUP=3s GUNICORN_WORKERS=<2*cores+1>
#        QUIET_WAIT=120 (seconds to wait for other work on the machine to stop)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=../../scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh" # free_port, poll, silent

cd "$(dirname "$0")/../.."
root=$PWD
here=$root/bench/counter

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-3s}
# gunicorn's documented starting point for sync workers: 2 x cores + 1.
GUNICORN_WORKERS=${GUNICORN_WORKERS:-$((2 * $(nproc) + 1))}
WRITE_DOC=${WRITE_DOC:-1}
QUIET_WAIT=${QUIET_WAIT:-120}
VENV=${BENCH_VENV:-$HOME/.cache/counter-app-bench/venv}

log() { echo "bench: $*" >&2; }

# --- tools -------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v curl >/dev/null || need+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x "$VENV/bin/pip" ]; then
  log "creating $VENV for the Flask reference app"
  python3 -m venv "$VENV"
fi
# Pinned versions; a no-op (no download) when they are already installed.
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$here/flask_ref/requirements.txt"

# --- the binary under test: exactly what the image ships ----------------------
target=x86_64-unknown-linux-gnu
log "building counter-app (static release)"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -q -p counter-app --target "$target"
bin=$root/target/$target/release/counter-app

# --- processes, cleaned up on any exit ---------------------------------------
work=$(mktemp -d)
pids=()
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT

# Polls until the command succeeds (poll, every 0.05 s, its output
# dropped), for at most 20 s.
wait_until() {
  local what=$1
  shift
  POLL_INTERVAL=0.05 poll 20 silent "$@" && return 0
  log "timed out waiting for $what"
  return 1
}

# Percent of CPU time not idle over one second: other work on the machine
# (a build, another benchmark) skews everything, so the report shows it.
cpu_busy_pct() {
  local a b
  read -r -a a < <(head -1 /proc/stat)
  sleep 1
  read -r -a b < <(head -1 /proc/stat)
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  local idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(((total - idle) * 100 / (total > 0 ? total : 1)))
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# Waits (up to QUIET_WAIT seconds) for three quiet seconds in a row, so other
# people's builds on this shared machine disturb the measurement less.
wait_quiet() {
  local quiet=0 busy=100 waited=0
  while [ "$quiet" -lt 3 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    busy=$(cpu_busy_pct)
    waited=$((waited + 1))
    if [ "$busy" -lt 10 ]; then quiet=$((quiet + 1)); else quiet=0; fi
  done
  echo "$busy"
}

run_wrk() {
  local name=$1 url=$2
  local busy
  log "$name: waiting for a quiet machine"
  busy=$(wait_quiet)
  echo "$busy" >"$work/$name.busy"
  [ "$busy" -lt 10 ] || log "WARNING: the machine was ${busy}% busy before $name's run; results will be skewed"
  log "$name: warm-up $WARMUP"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
  log "$name: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $url"
  python3 "$here/procstat.py" >"$work/$name.cpu-before"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" | tee "$work/$name.wrk" >&2
  python3 "$here/procstat.py" >"$work/$name.cpu-after"
}

redis_port=$(free_port)
/usr/bin/redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --logfile "$work/redis.log" &
pids+=($!)
wait_until redis redis-cli -p "$redis_port" ping

# --- Flask reference ----------------------------------------------------------
flask_port=$(free_port)
(
  cd "$here/flask_ref"
  REDIS_HOST=127.0.0.1 REDIS_PORT=$redis_port exec "$VENV/bin/gunicorn" \
    --workers "$GUNICORN_WORKERS" --bind "127.0.0.1:$flask_port" \
    --error-logfile "$work/gunicorn.log" app:app
) &
flask_pid=$!
pids+=("$flask_pid")
wait_until "flask" curl -fsS "http://127.0.0.1:$flask_port/"
run_wrk flask "http://127.0.0.1:$flask_port/"
stop_pid "$flask_pid"

# --- counter-app --------------------------------------------------------------
app_port=$(free_port)
LISTEN_ADDR=127.0.0.1:$app_port REDIS_HOST=127.0.0.1 REDIS_PORT=$redis_port \
  RUST_LOG=warn "$bin" >"$work/app.log" 2>&1 &
app_pid=$!
pids+=("$app_pid")
wait_until "counter-app" env LISTEN_ADDR="127.0.0.1:$app_port" "$bin" healthcheck
curl -fsS "http://127.0.0.1:$app_port/" >/dev/null
rss_idle=$(rss_kib "$app_pid")
run_wrk counter-app "http://127.0.0.1:$app_port/"
rss_after=$(rss_kib "$app_pid")
rss_peak=$(hwm_kib "$app_pid")
stop_pid "$app_pid"

# --- Redis alone, for scale ---------------------------------------------------
log "redis-benchmark INCR, $CONNECTIONS clients, unpipelined"
redis-benchmark -p "$redis_port" -t incr -n 500000 -c "$CONNECTIONS" -q 2>/dev/null |
  tr '\r' '\n' | grep -E '^INCR: [0-9.]+ requests per second' | tail -1 >"$work/redis-benchmark.txt" || true

# --- report -------------------------------------------------------------------
export WORK=$work RSS_IDLE=$rss_idle RSS_AFTER=$rss_after RSS_PEAK=$rss_peak
export DURATION CONNECTIONS THREADS WARMUP GUNICORN_WORKERS WRITE_DOC VENV BIN=$bin
python3 "$here/report.py"
