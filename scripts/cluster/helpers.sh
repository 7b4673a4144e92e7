# shellcheck shell=bash
# shellcheck disable=SC2154,SC2153 # root, NODES: set by scripts/cluster-test.sh
# The Swarm helpers of scripts/cluster-test.sh's phases, sourced by it after
# scripts/lib/common.sh (poll; build, used by the phases) and its own log,
# fail and phase; APP, OVERLAY, STACK, CLUSTER_STATE and the registry's
# DOCKER_* variables are the driver's. Defines functions and GET only:
# sourcing runs nothing.

# wait_until WHAT TIMEOUT CMD [ARG...]: poll (scripts/lib/common.sh) that
# fails the test, "timed out after TIMEOUTs: WHAT", when CMD has not
# succeeded within TIMEOUT seconds. CMD's output is shown.
wait_until() {
  local what=$1 timeout=$2; shift 2
  poll "$timeout" "$@" || fail "timed out after ${timeout}s: $what"
}

host_docker() { env -u DOCKER_HOST docker "$@"; } # this machine's engine
node_no() { echo "${1##*-node}"; } # counter name -> number
on_node() { local n=$1; shift; docker -H "unix://$CLUSTER_STATE/node$n/docker.sock" "$@"; }

# "node1=2 node2=1 node3=1": running tasks of the app per node (all nodes listed).
placement() {
  local out="" n c
  local nodes
  nodes=$(docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' "$APP" |
    awk '$2 == "Running" {print $1}')
  for n in $(seq "$NODES"); do
    c=$(grep -c "^$CLUSTER-node$n\$" <<<"$nodes" || true)
    out="$out node$n=$c"
  done
  echo "${out# }"
}
running_count() {
  docker service ps --filter desired-state=running --format '{{.CurrentState}}' "$APP" | grep -c '^Running' || true
}
on_node_count() { # $1 node number: app containers running on that node's engine
  on_node "$1" ps -q --filter "label=com.docker.swarm.service.name=$APP" | wc -l
}
replicas_are() { [ "$(running_count)" = "$1" ] && [ "$(docker service ps --filter desired-state=running -q "$APP" | wc -l)" = "$1" ]; }
update_state() { docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}none{{end}}' "$APP"; }

deploy() { # env assignments...; deploy.sh against the manager
  env "$@" DOCKER_REGISTRY="$DOCKER_REGISTRY" REGISTRY_USER="$REGISTRY_USER" \
    REGISTRY_PASSWORD="$(cat "$REGISTRY_PASSWORD_FILE")" STACK="$STACK" \
    MULTI_NODE_DNSRR=1 SMOKE=0 REDIS_IMAGE="$DOCKER_REGISTRY/redis:7-host" \
    STATIC_BIN_DIR="$STATIC_BIN_DIR" HEALTH_INTERVAL=2s UPDATE_DELAY=2s UPDATE_MONITOR=6s \
    DEPLOY_TIMEOUT=180 RUST_LOG=warn "$root/compose/deploy.sh"
}

# One HTTP/1.0 GET / through `nc -e`: the request is written, then the
# response read until the server closes. (Piping the request into nc makes nc
# half-close the connection at the end of its input; hyper drops a connection
# whose client half-closed, so remote replicas, slower to answer than local
# ones, often sent nothing back.)
GET='printf "GET / HTTP/1.0\r\n\r\n"; cat >&2'

# GET / of each of "$@" (hosts or IPs) in turn, from one throwaway client on
# the overlay; prints each body line "seen N times" and "Served by". A new
# container's first packets to a remote task can be lost while the overlay
# learns its address, so each target is retried (10 s) until it answers.
client_get() {
  docker run --rm --network "$OVERLAY" -e GET="$GET" cluster-client sh -c '
    for h in "$@"; do
      i=0
      while :; do
        r=$(timeout 5 nc -w 3 "$h" 8000 -e sh -c "$GET" 2>&1)
        case "$r" in *" 200 "*) break ;; esac
        i=$((i + 1)); [ $i -lt 20 ] || { echo "NO ANSWER from $h: $r"; exit 1; }
        sleep 0.5
      done
      echo "$r" | grep -e "seen" -e "Served by" | tr -d "\r" | tr "\n" " "; echo
    done' client "$@"
}
# The load client: one request after the other to `app`, counting each.
start_load() { # $1 container name
  docker run -d --name "$1" --network "$OVERLAY" -e GET="$GET" cluster-client sh -c '
    ok=0; fail=0
    while [ ! -e /stop ]; do
      r=$(timeout 5 nc -w 3 app 8000 -e sh -c "$GET" 2>&1 | head -n 1)
      case "$r" in
        *" 200 "*) ok=$((ok + 1)) ;;
        *) fail=$((fail + 1)); echo "FAIL $(date +%T) [$r]" ;;
      esac
      echo "$ok $fail" >/progress.new && mv /progress.new /progress
    done
    echo "RESULT $ok $fail"' >/dev/null
}
load_progress() { docker exec "$1" busybox cat /progress 2>/dev/null || echo "0 0"; }
stop_load() { # $1 name; prints "ok fail"
  docker exec "$1" busybox touch /stop
  docker wait "$1" >/dev/null
  docker logs "$1" 2>&1 | grep '^FAIL' | head -n 20 >&2 || true
  docker logs "$1" 2>&1 | sed -n 's/^RESULT //p'
  docker rm "$1" >/dev/null
}
count_of() { sed -n 's/.*seen \([0-9]*\) times.*/\1/p' <<<"$1"; }
