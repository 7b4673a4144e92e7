#!/usr/bin/env bash
# Load test across the nodes of a local cluster (compose/cluster.sh, 3 nodes):
# the counter stack as compose/deploy.sh deploys it (MULTI_NODE_DNSRR=1: the
# seed's placement, DNS round robin), 1 vs 4 replicas, wrk on the cluster's
# overlay network (Debian's wrk and its libraries in a scratch image, on the
# manager), its threads spread over the tasks' own addresses
# (bench/cluster/multi.lua). CPU accounting as bench/swarm/run.sh does it,
# over a window inside each run. Prints a Markdown table on stdout
# (docs/benchmarks.md, "Load across nodes").
#
#   STATIC_BIN_DIR=$(scripts/static-build.sh) bench/cluster/load.sh > /tmp/load.md
#
# Settings: WRK_SECONDS (15: the measured CPU window; wrk runs 8 s longer, so
# its req/s cover the window and a little more; 1 s warm-up before it), CPU_LIMITS ("0.50": per-replica limit, 0 = none).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/lib/common.sh
. "$root/scripts/lib/common.sh" # build, poll, multiarch
WRK_SECONDS=${WRK_SECONDS:-15}
CPU_LIMITS=${CPU_LIMITS:-"0.50"}
: "${STATIC_BIN_DIR:?set STATIC_BIN_DIR (scripts/static-build.sh)}"
export STATIC_BIN_DIR
export CLUSTER=${CLUSTER:-cload$$}
work=$(mktemp -d)
cpu=$root/bench/swarm/cpu.py
say() { echo "load: $*" >&2; }
cleanup() {
  set +e
  env -u DOCKER_HOST "$root/compose/cluster.sh" down >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

env -u DOCKER_HOST NODES=3 MANAGERS=1 "$root/compose/cluster.sh" up >/dev/null 2>"$work/up.log" ||
  { cat "$work/up.log" >&2; exit 1; }
eval "$(env -u DOCKER_HOST "$root/compose/cluster.sh" env)"
export DOCKER_HOST DOCKER_CONFIG=$work/docker-config

# Images on the manager: Redis (pushed: the stack pulls it) and wrk (local).
"$root/scripts/host-image-context.sh" "$work/redis" --redis
build -q -t "$DOCKER_REGISTRY/redis:7-host" "$work/redis"
"$root/scripts/host-image-context.sh" "$work/wrk" /usr/bin/wrk
cp "$here/multi.lua" "$work/wrk/rootfs/multi.lua"
ma=$(multiarch)
printf 'FROM scratch\nCOPY rootfs/ /\nENV LD_LIBRARY_PATH=/lib/%s:/usr/lib/%s\nENTRYPOINT ["/usr/bin/wrk"]\n' "$ma" "$ma" >"$work/wrk/Dockerfile"
build -q -t cluster-wrk "$work/wrk"
docker login -u "$REGISTRY_USER" --password-stdin "$DOCKER_REGISTRY" <"$REGISTRY_PASSWORD_FILE" >/dev/null 2>&1
docker push -q "$DOCKER_REGISTRY/redis:7-host" >/dev/null

deploy() { # $1 APP_CPU_LIMIT
  REGISTRY_PASSWORD=$(cat "$REGISTRY_PASSWORD_FILE") STACK=counter TAG=bench \
    MULTI_NODE_DNSRR=1 SMOKE=0 REDIS_IMAGE="$DOCKER_REGISTRY/redis:7-host" \
    HEALTH_INTERVAL=2s UPDATE_DELAY=1s UPDATE_MONITOR=2s APP_CPU_LIMIT=$1 RUST_LOG=warn \
    "$root/compose/deploy.sh" >"$work/deploy.log" 2>&1 || { cat "$work/deploy.log" >&2; exit 1; }
}
addrs() { # the running tasks' overlay addresses
  for t in $(docker service ps -q --filter desired-state=running counter_app); do
    docker inspect -f '{{range .NetworksAttachments}}{{if eq .Network.Spec.Name "counter_default"}}{{range .Addresses}}{{.}} {{end}}{{end}}{{end}}' "$t"
  done | tr ' ' '\n' | sed 's#/.*##' | grep . | tr '\n' ' '
}
running_is() { # $1 replicas: that many tasks running, and no others meant to run
  [ "$(docker service ps --filter desired-state=running --format '{{.CurrentState}}' counter_app | grep -c '^Running')" = "$1" ] &&
    [ "$(docker service ps -q --filter desired-state=running counter_app | wc -l)" = "$1" ]
}
scale() { # $1 replicas
  docker service scale -d "counter_app=$1" >/dev/null
  poll 120 running_is "$1" || { say "scale to $1 timed out"; exit 1; }
}
placement() {
  docker service ps --filter desired-state=running --format '{{.Node}}' counter_app |
    sed "s/^$CLUSTER-//" | sort | uniq -c | awk '{printf "%s%s×%s", (NR>1?", ":""), $2, $1}'
}

echo "| CPU limit per replica | replicas (nodes) | wrk req/s | p50 / p99 | errors | CPU in a window of ~${WRK_SECONDS} s inside the run (core-s; 2 cores) |"
echo "|---|---|---:|---|---|---|"
for limit in $CPU_LIMITS; do
  say "deploy with APP_CPU_LIMIT=$limit"
  deploy "$limit"
  for n in 1 4; do
    scale "$n"
    a=$(addrs)
    say "$n replicas ($(placement)): $a"
    docker run --rm --network counter_default -e ADDRS="$a" cluster-wrk \
      -t4 -c64 -d3s -s /multi.lua http://app:8000/ >/dev/null
    # wrk runs longer than the window, which must lie inside it (taking a
    # snapshot of /proc takes a while on a busy machine).
    docker run -d --name wrk --network counter_default -e ADDRS="$a" cluster-wrk \
      -t4 -c64 -d$((WRK_SECONDS + 8))s --latency -s /multi.lua http://app:8000/ >/dev/null
    sleep 1 # warm-up inside the run, then the measured window
    python3 "$cpu" snap "$work/cpu.before"
    w0=$(date +%s.%N)
    sleep "$WRK_SECONDS"
    python3 "$cpu" snap "$work/cpu.after"
    window=$(python3 -c "print(round($(date +%s.%N) - $w0, 1))")
    [ "$(docker inspect -f '{{.State.Running}}' wrk)" = true ] ||
      { say "wrk ended before the measured window did"; exit 1; }
    docker wait wrk >/dev/null
    docker logs wrk >"$work/wrk.out" 2>&1
    docker rm wrk >/dev/null
    c="window ${window} s: $(python3 "$cpu" diff "$work/cpu.before" "$work/cpu.after" - "$window")"
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
    p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
    errors=$(grep -E 'Socket errors|Non-2xx' "$work/wrk.out" | tr -s ' ' | paste -sd';' || true)
    echo "| $limit | $n ($(placement)) | $rps | $p50 / $p99 | ${errors:-none} | $c |"
  done
done
