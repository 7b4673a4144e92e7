#!/usr/bin/env bash
# Load test of the counter stack on this machine's single-node swarm: 1 vs 4
# replicas, with wrk (capacity) and Locust headless (100 and 500 users, at the
# seed's pace and without think time). Prints a Markdown report on stdout;
# the numbers in docs/benchmarks.md ("Swarm deploy") come from it.
#
#   STATIC_BIN_DIR=$(scripts/static-build.sh) bench/swarm/run.sh > /tmp/swarm-bench.md
#
# What it sets up (and removes at the end): the registry (host binary on
# 127.0.0.1, htpasswd), a Redis image built from the host's redis-server, the
# stack deployed by compose/deploy.sh with SINGLE_NODE=1 (DNS round robin,
# host-mode ports: this kernel has no IPVS, so there is no ingress mesh to
# balance; wrk and Locust spread their connections over the tasks' ports
# themselves, as dnsrr clients do). Needs wrk and locust (scripts/ci-deps.sh installs both).
#
# Settings: CPU_LIMITS (default "0.50 0": the seed's per-replica limit, then
# none; "0.10" shows a replica throttled by its limit), WRK_SECONDS (15),
# LOCUST_SECONDS (60), CLOSED_SECONDS (30), SEED_PACE (1: also the Locust runs
# at the seed's pace, 100 and 500 users, for the first limit; 0: skip them).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/lib/common.sh
. "$root/scripts/lib/common.sh" # free_port

CPU_LIMITS=${CPU_LIMITS:-"0.50 0"}
WRK_SECONDS=${WRK_SECONDS:-15}
LOCUST_SECONDS=${LOCUST_SECONDS:-60}
CLOSED_SECONDS=${CLOSED_SECONDS:-30}
SEED_PACE=${SEED_PACE:-1}
bin=${STATIC_BIN_DIR:-$("$root/scripts/static-build.sh")}
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
# locust lives in the virtual environment scripts/ci-deps.sh makes.
export PATH="${CI_VENV:-$root/.venv}/bin:$PATH"
python3 -c 'import locust' 2>/dev/null || { echo "locust is missing: run scripts/ci-deps.sh (installs it into ${CI_VENV:-$root/.venv})" >&2; exit 1; }
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] ||
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null

work=$(mktemp -d)
stack=cbench$$
redis_image=cbench-redis:$$
registry_pid=""
say() { echo "bench: $*" >&2; }
cleanup() {
  set +e
  docker stack rm "$stack" >/dev/null 2>&1
  for _ in $(seq 120); do
    [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ] && break
    sleep 0.5
  done
  docker volume ls -q --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker volume rm >/dev/null
  for _ in $(seq 60); do
    [ -z "$(docker network ls -q --filter "label=com.docker.stack.namespace=$stack")" ] && break
    sleep 0.5
  done
  # Every image of the pushed repository (redeploys leave the previous one
  # referenced by digest), then the Redis image.
  docker images -q "127.0.0.1:$port/counter-app" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1
  docker rmi -f "$redis_image" >/dev/null 2>&1
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Registry on 127.0.0.1 with one user.
port=$(free_port)
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" | "$bin/htpasswd" -B -i -c "$work/htpasswd" bench >/dev/null
REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$work/data \
  REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd REGISTRY_LOG_LEVEL=warn \
  "$bin/registry" serve >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/livez" >/dev/null && break; sleep 0.1; done

# Redis image: Debian's redis-server and redis-cli with their libraries.
ctx=$work/redis
"$root/scripts/host-image-context.sh" "$ctx" --redis
docker build -q -t "$redis_image" "$ctx" >/dev/null

deploy() { # $1 = APP_CPU_LIMIT
  printf '%s\n' "$password" | DOCKER_CONFIG=$work/docker DOCKER_REGISTRY=127.0.0.1:$port \
    REGISTRY_USER=bench TAG=bench STACK=$stack SINGLE_NODE=1 REDIS_IMAGE=$redis_image \
    STATIC_BIN_DIR=$bin HEALTH_INTERVAL=2s UPDATE_DELAY=1s UPDATE_MONITOR=2s \
    APP_CPU_LIMIT=$1 RUST_LOG=warn "$root/compose/deploy.sh" >"$work/deploy.log" 2>&1 ||
    { cat "$work/deploy.log" >&2; exit 1; }
}

scale() { # $1 = replicas; prints the tasks' host ports
  docker service scale "${stack}_app=$1" >/dev/null 2>&1
  local ports=""
  for _ in $(seq 300); do
    ports=""
    local n=0
    for t in $(docker service ps -q --filter desired-state=running "${stack}_app"); do
      # The first published port (Docker lists one per address family, and
      # they can differ).
      read -r state p _ < <(docker inspect -f '{{.Status.State}} {{range .Status.PortStatus.Ports}}{{.PublishedPort}} {{end}}' "$t")
      [ "$state" = running ] && n=$((n + 1)) && ports="$ports $p"
    done
    [ "$n" = "$1" ] && break
    sleep 0.5
  done
  echo $ports
}

# Waits (up to 2 minutes) for a second in which the machine is < 25% busy, so
# another build does not eat into the measurement; the CPU column shows what
# else ran anyway.
quiet() {
  python3 -c '
import time
def busy():
    with open("/proc/stat") as f:
        c = [int(x) for x in f.readline().split()[1:]]
    return sum(c), c[3] + c[4]
deadline = time.time() + 120
while time.time() < deadline:
    t0, i0 = busy(); time.sleep(1); t1, i1 = busy()
    if 1 - (i1 - i0) / max(1, t1 - t0) < 0.25:
        break
'
}
cpu_before() { quiet; python3 "$here/cpu.py" snap "$work/cpu.before"; }
cpu_after() { python3 "$here/cpu.py" snap "$work/cpu.after"; python3 "$here/cpu.py" diff "$work/cpu.before" "$work/cpu.after" "$work/loadgen.cpu" "$1"; }
measured() { python3 "$here/cpu.py" run "$work/loadgen.cpu" -- "$@"; }

run_wrk() { # $1 ports
  PORTS="$1" wrk -t4 -c64 -d3s -s "$here/multi.lua" "http://127.0.0.1:${1%% *}/" >/dev/null
  cpu_before
  PORTS="$1" measured wrk -t4 -c64 -d"${WRK_SECONDS}s" --latency -s "$here/multi.lua" \
    "http://127.0.0.1:${1%% *}/" >"$work/wrk.out"
  local cpu; cpu=$(cpu_after "$WRK_SECONDS")
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
  errors=$(grep -E 'Socket errors|Non-2xx' "$work/wrk.out" | tr -s ' ' | paste -sd';' || true)
  echo "| wrk -t4 -c64 -d${WRK_SECONDS}s | $rps | - | $p50 | $p99 | ${errors:-none} | $cpu |"
}

run_locust() { # $1 ports, $2 users, $3 seconds, $4 WAIT_MAX (0 = no think time)
  local targets="" p
  for p in $1; do targets="$targets,http://127.0.0.1:$p"; done
  cpu_before
  TARGETS=${targets#,} WAIT_MAX=$4 measured python3 -m locust -f "$root/compose/locustfile.py" --headless \
    -u "$2" -r 50 -t "${3}s" --host "http://127.0.0.1:${1%% *}" --only-summary \
    --csv "$work/locust" --json-file "$work/locust" >"$work/locust.log" 2>&1 || true
  local cpu; cpu=$(cpu_after "$3")
  # Rates and percentiles from the CSV's Aggregated row (its last snapshot,
  # about a second before the end); request and failure counts from the
  # final JSON statistics.
  python3 - "$work/locust_stats.csv" "$work/locust.json" "$2" "$3" "$4" "$cpu" <<'EOF'
import csv, json, sys
path, json_path, users, secs, wait_max, cpu = sys.argv[1:]
rows = {r["Name"]: r for r in csv.DictReader(open(path))}
a = rows["Aggregated"]
final = json.load(open(json_path))
a["Request Count"] = sum(e["num_requests"] for e in final)
a["Failure Count"] = sum(e["num_failures"] for e in final)
pace = "no think time" if float(wait_max) <= 0 else "think 1-2 s"
print(f"| locust -u {users} -r 50 -t {secs}s ({pace}) | {float(a['Requests/s']):.1f} | "
      f"{float(a['Average Response Time']):.1f} ms | {a['50%']} ms | {a['99%']} ms | "
      f"{a['Failure Count']} of {a['Request Count']} | {cpu} |")
EOF
}

echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(uname -r);"
echo "Docker $(docker version -f '{{.Server.Version}}'), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), locust $(python3 -m locust --version 2>&1 | awk '{print $2}'); $(date -u '+%Y-%m-%d %H:%M UTC')."
for limit in $CPU_LIMITS; do
  say "deploying with APP_CPU_LIMIT=$limit"
  deploy "$limit"
  for replicas in 1 4; do
    ports=$(scale "$replicas")
    say "limit $limit, $replicas replicas on ports $ports"
    echo
    echo "### CPU limit per replica: $([ "$limit" = 0 ] && echo none || echo "$limit"), $replicas replica(s)"
    echo
    echo "| load | requests/s | avg | p50 | p99 | errors | CPU during the run |"
    echo "|---|---:|---:|---:|---:|---|---|"
    run_wrk "$ports"
    run_locust "$ports" 100 "$CLOSED_SECONDS" 0
    if [ "$SEED_PACE" = 1 ] && [ "$limit" = "${CPU_LIMITS%% *}" ]; then
      run_locust "$ports" 100 "$LOCUST_SECONDS" 2
      run_locust "$ports" 500 "$LOCUST_SECONDS" 2
    fi
  done
done
