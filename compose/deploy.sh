#!/usr/bin/env bash
# Build → push → deploy the counter app on Docker Swarm, from the private registry.
#
#   DOCKER_REGISTRY=registry.example.com:5000 REGISTRY_USER=ci \
#     compose/deploy.sh < password-file
#
# Environment (the password is never taken from the command line):
#   DOCKER_REGISTRY     registry host[:port] to push to and deploy from (required)
#   REGISTRY_USER       registry user (required)
#   REGISTRY_PASSWORD   its password; when unset, read from standard input
#   TAG                 image tag (latest); re-running with a new tag rolls the stack forward
#   STACK               stack name (counter)
#   PUBLISHED_PORT      published port of the app (80); 0 = one free port per task
#   SINGLE_NODE         1: add compose/docker-compose.swarm.single-node.yml (DNS
#                       round robin, host-mode ports, no per-node limit), for a
#                       one-node swarm or a kernel without IPVS; PUBLISHED_PORT
#                       then defaults to 0 and MAX_REPLICAS_PER_NODE to 0
#   MULTI_NODE_DNSRR    1: the same override for several nodes without IPVS,
#                       keeping MAX_REPLICAS_PER_NODE (2); PUBLISHED_PORT 0
#   PREFLIGHT           0 skips the checks before the build (swarm manager;
#                       enough Ready+Active nodes for REPLICAS under
#                       MAX_REPLICAS_PER_NODE, plus 2 for an update; IPVS in
#                       the kernel for vip/ingress, looked at when the engine
#                       is local, IPVS_CHECK=1/0 forces it on/off)
#   SMOKE               0 skips the smoke test (when the published ports are
#                       not reachable from here, as on compose/cluster.sh nodes)
#   BUILD               static (default): static binary built on the host
#                       (STATIC_BIN_DIR if set, else scripts/static-build.sh) in
#                       counter-app/Dockerfile, works offline;
#                       multistage: counter-app/Dockerfile.multistage (needs internet);
#                       none: use the local image $DOCKER_REGISTRY/counter-app:$TAG as is
#   VERSION             org.opencontainers.image.version label (the crate's version)
#   DEPLOY_TIMEOUT      seconds to wait for the replicas to be healthy (300)
#   SMOKE_HOST          host to smoke-test on (127.0.0.1)
# Everything docker-compose.swarm.yml reads (REPLICAS, HEALTH_INTERVAL,
# REDIS_IMAGE, ...) passes through.
#
# Prints one line per step; exits non-zero, saying why, when a step fails or
# the replicas are not healthy in time (a failed update is rolled back by
# Swarm: failure_action: rollback).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

die() { echo "deploy: error: $*" >&2; exit 1; }
step_no=0
step() { step_no=$((step_no + 1)); echo "==> [$step_no/6] $*"; }

: "${DOCKER_REGISTRY:?set DOCKER_REGISTRY, e.g. 127.0.0.1:5000}"
: "${REGISTRY_USER:?set REGISTRY_USER}"
TAG=${TAG:-latest}
STACK=${STACK:-counter}
BUILD=${BUILD:-static}
DEPLOY_TIMEOUT=${DEPLOY_TIMEOUT:-300}
SMOKE_HOST=${SMOKE_HOST:-127.0.0.1}
files=(-c "$here/docker-compose.swarm.yml")
if [ "${SINGLE_NODE:-0}" = 1 ]; then
  files+=(-c "$here/docker-compose.swarm.single-node.yml")
  export PUBLISHED_PORT=${PUBLISHED_PORT:-0}
  export MAX_REPLICAS_PER_NODE=${MAX_REPLICAS_PER_NODE:-0}
elif [ "${MULTI_NODE_DNSRR:-0}" = 1 ]; then
  # Several nodes without IPVS: DNS round robin and host-mode ports like a
  # single node, but the seed's placement (MAX_REPLICAS_PER_NODE=2) kept.
  files+=(-c "$here/docker-compose.swarm.single-node.yml")
  export PUBLISHED_PORT=${PUBLISHED_PORT:-0}
  SINGLE_NODE=1 # for the pre-flight checks: dnsrr + host mode
fi
export DOCKER_REGISTRY TAG PUBLISHED_PORT=${PUBLISHED_PORT:-80}
image="$DOCKER_REGISTRY/counter-app:$TAG"
service="${STACK}_app"

if [ -n "${REGISTRY_PASSWORD:-}" ]; then
  password=$REGISTRY_PASSWORD
else
  password=""
  if [ -t 0 ]; then
    # Interactive: prompt without echoing.
    IFS= read -rsp "deploy: password for $REGISTRY_USER@$DOCKER_REGISTRY: " password; echo >&2
  else
    IFS= read -r password || [ -n "$password" ] || die "no REGISTRY_PASSWORD and nothing on stdin"
  fi
  [ -n "$password" ] || die "empty password"
fi
unset REGISTRY_PASSWORD

command -v docker >/dev/null || die "docker is not installed"

# 0. Pre-flight: what would otherwise only show as replicas never healthy
# after DEPLOY_TIMEOUT. Each check stops within seconds and names the fix.
state=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null) ||
  die "cannot reach the Docker engine${DOCKER_HOST:+ at DOCKER_HOST=$DOCKER_HOST}"
case "$state" in
  "active true") ;;
  "active false") die "this engine is a swarm worker: point DOCKER_HOST at a manager" ;;
  *) die "this engine is not in a swarm: run 'docker swarm init' (see docs/deploy.md), or compose/cluster.sh up for a local multi-node one" ;;
esac
if [ "${PREFLIGHT:-1}" = 1 ]; then
  replicas=${REPLICAS:-4}
  max_per_node=${MAX_REPLICAS_PER_NODE:-2}
  if [ "${SINGLE_NODE:-0}" = 1 ]; then
    endpoint_mode=dnsrr publish_mode=host
  else
    endpoint_mode=${ENDPOINT_MODE:-vip} publish_mode=${PUBLISH_MODE:-ingress}
  fi
  nodes=$(docker node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active$' || true)
  if [ "$max_per_node" -gt 0 ]; then
    slots=$((nodes * max_per_node))
    if [ "$slots" -lt "$replicas" ]; then
      die "REPLICAS=$replicas with MAX_REPLICAS_PER_NODE=$max_per_node needs $(((replicas + max_per_node - 1) / max_per_node)) Ready+Active nodes, the swarm has $nodes: the other tasks would stay Pending for ever. Fix: add nodes (compose/cluster.sh up), or set SINGLE_NODE=1 (one node) or MAX_REPLICAS_PER_NODE=0 (no limit) or REPLICAS=$slots"
    fi
    # An update starts 2 new tasks (parallelism 2, start-first) before it
    # stops old ones: they need a free slot too, or the update hangs.
    if docker service inspect "$service" >/dev/null 2>&1 && [ "$slots" -lt $((replicas + 2)) ]; then
      die "updating $service (start-first, parallelism 2) needs $((replicas + 2)) task slots, $nodes node(s) x MAX_REPLICAS_PER_NODE=$max_per_node give $slots: the update would hang. Fix: add nodes, or set MAX_REPLICAS_PER_NODE=0 or $(((replicas + 2 + nodes - 1) / nodes)), or SINGLE_NODE=1"
    fi
  fi
  if [ "$endpoint_mode" = vip ] || [ "$publish_mode" = ingress ]; then
    # The swarm's virtual IPs and ingress mesh are IPVS in the nodes' kernel.
    # A local engine (unix socket: this machine, or nodes in containers on it
    # as with compose/cluster.sh) runs on this kernel; a remote one cannot be
    # looked at from here (IPVS_CHECK=0 skips the check).
    case "${DOCKER_HOST:-unix://}" in
      unix://*) local_engine=1 ;;
      *) local_engine=0 ;;
    esac
    if [ "${IPVS_CHECK:-$local_engine}" = 1 ] && [ ! -e /proc/net/ip_vs ]; then
      die "ENDPOINT_MODE=$endpoint_mode PUBLISH_MODE=$publish_mode need IPVS in the nodes' kernel, and this kernel has none (/proc/net/ip_vs is missing; modprobe ip_vs): virtual IPs would not route and the ingress port would refuse connections. Fix: SINGLE_NODE=1 (one node), or ENDPOINT_MODE=dnsrr PUBLISH_MODE=host PUBLISHED_PORT=0 with the override file docker-compose.swarm.single-node.yml (MULTI_NODE_DNSRR=1 sets both and keeps MAX_REPLICAS_PER_NODE)"
    fi
  fi
fi

# 1. Build ------------------------------------------------------------------
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
version=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)}
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_args=(--build-arg "VERSION=${version:-0.0.0}" --build-arg "REVISION=$revision"
  --build-arg "CREATED=$created")
case "$BUILD" in
  static)
    step "build $image (static binary, counter-app/Dockerfile)"
    bin_dir=${STATIC_BIN_DIR:-}
    if [ -z "$bin_dir" ]; then
      bin_dir=$("$root/scripts/static-build.sh")
    fi
    [ -x "$bin_dir/counter-app" ] || die "$bin_dir/counter-app is missing (scripts/static-build.sh)"
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    cp "$bin_dir/counter-app" "$ctx/"
    docker build -q -f "$root/counter-app/Dockerfile" -t "$image" \
      "${build_args[@]}" "$ctx" >/dev/null
    ;;
  multistage)
    step "build $image (counter-app/Dockerfile.multistage)"
    docker build -q -f "$root/counter-app/Dockerfile.multistage" -t "$image" \
      "${build_args[@]}" "$root" >/dev/null
    ;;
  none)
    step "use the local image $image"
    docker image inspect "$image" >/dev/null 2>&1 || die "no local image $image"
    ;;
  *) die "BUILD must be static, multistage or none, not '$BUILD'" ;;
esac
echo "    image $(docker image inspect -f '{{.Id}}' "$image" | cut -c1-19) ($(docker image inspect -f '{{.Size}}' "$image") bytes)"

# 2. Login -------------------------------------------------------------------
step "log in to $DOCKER_REGISTRY as $REGISTRY_USER"
printf '%s' "$password" | docker login --username "$REGISTRY_USER" --password-stdin \
  "$DOCKER_REGISTRY" >/dev/null || die "docker login to $DOCKER_REGISTRY failed"
unset password

# 3. Push --------------------------------------------------------------------
step "push $image"
digest=$(docker push "$image" | sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' | tail -n1)
[ -n "$digest" ] || die "docker push did not report a digest"
echo "    pushed $digest"

# 4. Deploy ------------------------------------------------------------------
step "deploy stack $STACK (docker stack deploy --with-registry-auth)"
docker stack deploy --with-registry-auth --prune "${files[@]}" "$STACK" |
  sed 's/^/    /'

# 5. Wait until every replica runs the pushed image and is healthy ------------
# Swarm reports a task "running" only after its healthcheck passed.
step "wait for the replicas of $service (timeout ${DEPLOY_TIMEOUT}s)"
deadline=$((SECONDS + DEPLOY_TIMEOUT))
last=""
while :; do
  desired=$(docker service inspect -f '{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{end}}' "$service")
  update=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}none{{end}}' "$service")
  # Tasks meant to run; their image carries the digest the deploy resolved.
  tasks=$(docker service ps --filter desired-state=running --format '{{.ID}}' "$service")
  running=0 current=0 states=""
  for t in $tasks; do
    read -r state img < <(docker inspect -f '{{.Status.State}} {{.Spec.ContainerSpec.Image}}' "$t")
    states="$states $state"
    [ "$state" = running ] && running=$((running + 1))
    if [ "$state" = running ] && [[ "$img" == *"@$digest" ]]; then
      current=$((current + 1))
    fi
  done
  line="    $current/$desired replicas healthy on $digest (update: $update; tasks:${states:- none})"
  [ "$line" != "$last" ] && echo "$line" && last=$line
  if [ "$current" = "$desired" ] && [ "$running" = "$desired" ] && [ "$update" != updating ]; then
    break
  fi
  case "$update" in
    rollback_*) die "the update failed and Swarm rolled back ($update): $(docker service inspect -f '{{.UpdateStatus.Message}}' "$service")" ;;
    paused) die "the update is paused: $(docker service inspect -f '{{.UpdateStatus.Message}}' "$service")" ;;
  esac
  if [ $SECONDS -ge $deadline ]; then
    docker service ps --no-trunc "$service" | head -n 20 >&2
    die "$service not healthy within ${DEPLOY_TIMEOUT}s"
  fi
  sleep 1
done
redis_replicas=$(docker service ls --filter "name=${STACK}_redis" --format '{{.Replicas}}')
echo "    redis: $redis_replicas"

# 6. Smoke test --------------------------------------------------------------
if [ "${SMOKE:-1}" = 0 ]; then
  step "smoke test skipped (SMOKE=0)"
  echo "deployed $image ($digest) as stack $STACK: $desired replicas healthy"
  exit 0
fi
# Through the published port; in host mode with PUBLISHED_PORT=0 every task
# has its own port, and each is tested.
step "smoke test GET / on $SMOKE_HOST"
mode=$(docker service inspect -f '{{range .Endpoint.Ports}}{{.PublishMode}}{{end}}' "$service")
urls=()
if [ "$mode" = host ]; then
  for t in $(docker service ps --filter desired-state=running --format '{{.ID}}' "$service"); do
    # The first published port (Docker lists one per address family).
    port=$(docker inspect -f '{{range .Status.PortStatus.Ports}}{{.PublishedPort}} {{end}}' "$t" | cut -d' ' -f1)
    [ -n "$port" ] && urls+=("http://$SMOKE_HOST:$port/")
  done
else
  port=$(docker service inspect -f '{{range .Endpoint.Ports}}{{.PublishedPort}}{{end}}' "$service")
  urls+=("http://$SMOKE_HOST:$port/")
fi
[ ${#urls[@]} -gt 0 ] || die "no published port found for $service"
for url in "${urls[@]}"; do
  body=$(curl -fsS --max-time 10 "$url") || die "GET $url failed"
  case "$body" in
    "Hello World! I have been seen "*) ;;
    *) die "GET $url answered: $body" ;;
  esac
  echo "    $url -> $(echo "$body" | tr '\n' ' ')"
done
echo "deployed $image ($digest) as stack $STACK: $desired replicas healthy"
