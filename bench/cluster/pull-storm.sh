#!/usr/bin/env bash
# Pull storm: every node of a local cluster (compose/cluster.sh) pulls a new
# image version at once, as a global service does. Measured from the
# registry's side: its Prometheus metrics (requests and bytes by route and
# status, before/after) and its access log (one line per request: the blob
# GETs grouped by size, which tells the layer from the config: the log names
# routes, not digests), and the time until every node runs the new version.
# Prints a Markdown report on stdout (docs/benchmarks.md, "Pull storm").
#
#   STATIC_BIN_DIR=$(scripts/static-build.sh) bench/cluster/pull-storm.sh > /tmp/storm.md
#
# Settings: SIZES ("3 5": node counts), LAYER_MIB (32: a random layer added
# to the counter-app image, so the blob bytes dominate), ROUNDS (2: v1 then v2
# per cluster; the v2 round is the storm of a new version over a running
# service, v1 the first deploy). Everything it creates is removed at the end
# (cluster.sh down), the node image cache aside.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/lib/common.sh
. "$root/scripts/lib/common.sh" # build, poll
SIZES=${SIZES:-"3 5"}
LAYER_MIB=${LAYER_MIB:-32}
: "${STATIC_BIN_DIR:?set STATIC_BIN_DIR (scripts/static-build.sh)}"
export STATIC_BIN_DIR
export CLUSTER=${CLUSTER:-pstorm$$}
work=$(mktemp -d)
say() { echo "pull-storm: $*" >&2; }
cleanup() {
  set +e
  env -u DOCKER_HOST "$root/compose/cluster.sh" down >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

metrics() { curl -fsS "$CLUSTER_REGISTRY_METRICS_URL"; }
# "method route status" -> value, for registry_http_requests_total; and route
# -> bytes for registry_http_response_bytes_total.
parse() {
  python3 -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"(registry_http_requests_total|registry_http_response_bytes_total)\{([^}]*)\} (\S+)", line)
    if not m:
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(2)))
    key = " ".join(labels.get(k, "-") for k in ("method", "route", "status")) if m.group(1).startswith("registry_http_requests") else "bytes " + labels.get("route", "-")
    print(f"{key}\t{float(m.group(3)):.0f}")
'
}
diff_metrics() { # before after
  python3 - "$1" "$2" <<'EOF'
import sys
def load(p):
    d = {}
    for line in open(p):
        k, v = line.rstrip("\n").split("\t")
        d[k] = float(v)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(b):
    n = b[k] - a.get(k, 0)
    if n:
        print(f"{k}\t{n:.0f}")
EOF
}

all_run() { # $1 image, $2 nodes: a task of storm runs $1 on each node
  [ "$(docker service ps --filter desired-state=running --format '{{.Image}} {{.CurrentState}}' storm |
    grep -c "^$1.* Running" || true)" = "$2" ]
}
storm() { # $1 nodes, $2 tag, $3 service exists (0/1)
  local nodes=$1 tag=$2 image=$DOCKER_REGISTRY/storm:$2
  mkdir -p "$work/img"
  cp "$STATIC_BIN_DIR/counter-app" "$work/img/"
  head -c $((LAYER_MIB * 1024 * 1024)) /dev/urandom >"$work/img/payload"
  printf 'FROM scratch\nCOPY counter-app /counter-app\nCOPY payload /payload\nENV REDIS_HOST=none\nENTRYPOINT ["/counter-app"]\nCMD ["serve"]\n' >"$work/img/Dockerfile"
  build -q -t "$image" "$work/img" || exit 1
  docker push -q "$image" >/dev/null
  # The manager has the image already (it built it): the storm is the others.
  metrics | parse >"$work/before"
  local since
  since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
  local t0
  t0=$(date +%s.%N)
  if [ "$3" = 0 ]; then
    docker service create -d -q --with-registry-auth --mode global --update-parallelism 0 --name storm \
      --no-healthcheck "$image" >/dev/null
  else
    docker service update -d -q --with-registry-auth --image "$image" storm >/dev/null
  fi
  POLL_INTERVAL=0.2 poll 300 all_run "$image" "$nodes" ||
    { docker service ps --no-trunc storm >&2; say "not all nodes run $image"; exit 1; }
  local t1
  t1=$(date +%s.%N)
  metrics | parse >"$work/after"
  local secs
  secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
  echo "#### $nodes nodes, $tag ($([ "$3" = 0 ] && echo "global service created" || echo "service updated to a new image"))"
  echo
  echo "All $nodes nodes running it after **${secs} s** (the manager had the image from its own build; $((nodes - 1)) nodes pulled)."
  echo
  echo "Registry metrics, difference over the storm:"
  echo
  echo '| method | route | status | requests |'
  echo '|---|---|---|---|'
  diff_metrics "$work/before" "$work/after" | grep -v '^bytes' |
    awk -F'\t' '{split($1, k, " "); printf "| %s | %s | %s | %s |\n", k[1], k[2], k[3], $2}'
  echo
  echo '| route | response bytes |'
  echo '|---|---|'
  diff_metrics "$work/before" "$work/after" | sed -n 's/^bytes //p' |
    awk -F'\t' '{printf "| %s | %s |\n", $1, $2}'
  echo
  echo "Access log, blob GETs grouped by size (layer ${LAYER_MIB} MiB + binary layer + config):"
  echo
  echo '| bytes_out | GETs | status |'
  echo '|---|---|---|'
  env -u DOCKER_HOST docker logs --since "$since" "$CLUSTER-registry" 2>&1 | python3 -c '
import json, sys, collections
c = collections.Counter()
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    f = e.get("fields", e)
    if e.get("target") != "access" or f.get("route") != "blob" or f.get("method") != "GET":
        continue
    c[(int(f.get("bytes_out", 0)), f.get("status"))] += 1
for (size, status), n in sorted(c.items(), reverse=True):
    print(f"| {size} | {n} | {status} |")
'
  echo
}

echo "### Pull storm (bench/cluster/pull-storm.sh, $(date -u +%Y-%m-%d))"
echo
for nodes in $SIZES; do
  say "cluster of $nodes nodes"
  env -u DOCKER_HOST NODES=$nodes MANAGERS=1 REGISTRY_LOG_FORMATTER=json "$root/compose/cluster.sh" up >/dev/null 2>"$work/up.log" ||
    { cat "$work/up.log" >&2; exit 1; }
  eval "$(env -u DOCKER_HOST "$root/compose/cluster.sh" env)"
  export DOCKER_CONFIG=$work/docker-config
  docker login -u "$REGISTRY_USER" --password-stdin "$DOCKER_REGISTRY" <"$REGISTRY_PASSWORD_FILE" >/dev/null 2>&1
  storm "$nodes" v1 0
  storm "$nodes" v2 1
  unset DOCKER_HOST
  "$root/compose/cluster.sh" down >/dev/null 2>&1
done
