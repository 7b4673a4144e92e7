#!/usr/bin/env bash
# A local multi-node Docker Swarm: Docker engines in containers on this
# machine, plus our registry serving them over TLS.
#
#   STATIC_BIN_DIR=$(scripts/static-build.sh) compose/cluster.sh up
#   eval "$(compose/cluster.sh env)"     # DOCKER_HOST=<manager>, DOCKER_REGISTRY, ...
#   compose/cluster.sh status
#   compose/cluster.sh down
#
# Environment:
#   CLUSTER         name prefix of everything it creates (counter-cluster)
#   NODES           number of nodes (3)
#   MANAGERS        how many of them are managers (1); 3 gives a raft quorum
#   STATIC_BIN_DIR  where the static `registry` and `htpasswd` binaries are
#                   (default: scripts/static-build.sh builds them)
#   CLUSTER_STATE   host directory for sockets, CA, password (/tmp/$CLUSTER)
#   REGISTRY_USER   registry user created in the htpasswd file (deployer)
#   REGISTRY        0: no registry container (nodes and swarm only)
#   REGISTRY_LOG_LEVEL, REGISTRY_LOG_FORMATTER  the registry's log (info, text)
#
# What `up` creates, all labelled io.counter.cluster=$CLUSTER (`down` removes
# exactly that, plus the state directory):
#   * the node image counter-cluster-node:<hash of its files>: the host's
#     dockerd, containerd, containerd-shim-runc-v2, runc, tini (docker-init),
#     docker-proxy, docker CLI, iptables (nft), ip, busybox and every library
#     ldd lists, `tar | docker import`. Kept by `down` (cached: a re-run with
#     the same host binaries skips the build); `docker rmi` it by hand.
#   * the registry image $CLUSTER-registry:local (FROM scratch, registry/Dockerfile)
#   * the bridge network $CLUSTER-net; containers $CLUSTER-node1..N (engines,
#     vfs storage driver, /var/lib/docker on volume $CLUSTER-nodeI-docker) and
#     $CLUSTER-registry (TLS, htpasswd, data on volume $CLUSTER-registry-data)
#
# How the registry is named. The nodes reach it by container name on the
# cluster network: $CLUSTER-registry:5000, certificate for that name from a CA
# this script makes; every node trusts the CA in
# /etc/docker/certs.d/$CLUSTER-registry:5000/ca.crt (no insecure-registries).
# The host reaches the registry only on a port published on 127.0.0.1, a
# different name, so images are not pushed from the host's engine: the host's
# docker CLI talks to the manager's engine (DOCKER_HOST, a unix socket on a
# bind mount, see `env`), which builds, pushes and deploys under the one name
# every node pulls: $CLUSTER-registry:5000/<repo>:<tag>.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# Every plain `docker` below is this machine's engine; nodes are reached by -H.
unset DOCKER_HOST DOCKER_CONTEXT

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=../scripts/lib/common.sh
. "$root/scripts/lib/common.sh" # poll, silent, build, multiarch

CLUSTER=${CLUSTER:-counter-cluster}
MANAGERS=${MANAGERS:-1}
NODES=${NODES:-3}
[ "$MANAGERS" -ge 1 ] || { echo "cluster: MANAGERS must be >= 1" >&2; exit 2; }
[ "$NODES" -ge "$MANAGERS" ] || NODES=$MANAGERS
STATE=${CLUSTER_STATE:-/tmp/$CLUSTER}
REGISTRY_USER=${REGISTRY_USER:-deployer}
LABEL=io.counter.cluster=$CLUSTER
NET=$CLUSTER-net
REG=$CLUSTER-registry
REG_PORT=5000
NODE_REPO=counter-cluster-node
UP_DONE=0

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

node_sock() { echo "$STATE/node$1/docker.sock"; }
on_node() { # $1 = node number, rest = docker args
  local n=$1; shift
  docker -H "unix://$(node_sock "$n")" "$@"
}
node_ip() {
  docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$CLUSTER-node$1"
}

# poll (scripts/lib/common.sh) with the command's output dropped, dying
# "timed out after TIMEOUTs waiting for WHAT" when it never succeeded.
wait_until() { # $1 = what, $2 = timeout seconds, rest = command
  local what=$1 timeout=$2; shift 2
  poll "$timeout" silent "$@" || die "timed out after ${timeout}s waiting for $what"
}

# --- the node image ----------------------------------------------------------
node_files() {
  # Found on PATH (Debian's docker.io has them in /usr/sbin and /usr/bin,
  # docker-ce in /usr/bin): each goes to the same path in the image.
  local bins=() name f xtables
  for name in dockerd containerd containerd-shim-runc-v2 runc docker-proxy \
    xtables-nft-multi ip busybox docker-init; do
    f=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$name") ||
      die "$name is missing (the node image is built from the host's engine; busybox: busybox-static)"
    bins+=("$f")
  done
  printf '%s\n' "${bins[@]}" "$(readlink -f "${bins[8]}")"
  # The docker CLI: the host's (static when /usr/local/bin/docker).
  readlink -f "$(command -v docker)"
  # iptables extensions are dlopen()ed: ldd does not list them.
  xtables=/usr/lib/$(multiarch)/xtables
  ls "$xtables"/*.so
  for f in "${bins[@]}" "$xtables"/*.so; do
    ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true
  done
  for f in /etc/protocols /etc/services /etc/ethertypes /etc/nsswitch.conf; do
    [ -e "$f" ] && echo "$f"
  done
}

build_node_image() {
  local files hash tag
  files=$(node_files | sort -u)
  hash=$(for f in $files; do readlink -f "$f"; done | sort -u | xargs sha256sum |
    cat - <(declare -f node_entrypoint build_node_image) | sha256sum | cut -c1-16)
  tag=$NODE_REPO:$hash
  if docker image inspect "$tag" >/dev/null 2>&1; then
    say "node image $tag (cached)"
    echo "$tag"
    return
  fi
  say "building node image $tag from the host's engine binaries"
  local rootfs
  rootfs=$(mktemp -d)
  local f
  for f in $files; do
    mkdir -p "$rootfs$(dirname "$f")"
    cp -L "$f" "$rootfs$f"
  done
  # Names the engine and the loader look for.
  cp -L "$(command -v docker-init)" "$rootfs/usr/bin/docker-init"
  mkdir -p "$rootfs/usr/bin" "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/local/bin"
  cp -L "$(command -v docker)" "$rootfs/usr/bin/docker"
  local xt
  xt=$(command -v xtables-nft-multi)
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf "$xt" "$rootfs/usr/sbin/$t"
  done
  ln -sf "$(command -v busybox)" "$rootfs/bin/sh"
  [ -e "$rootfs/sbin/ip" ] || ln -sf "$(command -v ip)" "$rootfs/sbin/ip"
  # /var/run on the tmpfs /run: pid files of a killed node (containerd.pid)
  # must not survive into its restart, where the pid means another process.
  mkdir -p "$rootfs/var"
  ln -sfn /run "$rootfs/var/run"
  mkdir -p "$rootfs/etc/docker/certs.d" "$rootfs/var/lib/docker" "$rootfs/run" \
    "$rootfs/tmp" "$rootfs/ext" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
  node_entrypoint >"$rootfs/usr/local/bin/node-entrypoint"
  chmod 755 "$rootfs/usr/local/bin/node-entrypoint"
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENTRYPOINT ["/usr/bin/docker-init", "--", "/usr/local/bin/node-entrypoint"]' \
    - "$tag" >/dev/null
  rm -rf "$rootfs"
  say "node image $tag: $(docker image inspect -f '{{.Size}}' "$tag") bytes"
  echo "$tag"
}

node_entrypoint() {
  cat <<'EOF'
#!/bin/sh
# The engine of one cluster node. /ext is a host directory: its socket is how
# the host's docker CLI reaches this engine.
set -e
exec dockerd --storage-driver=vfs -H unix:///var/run/docker.sock \
  -H unix:///ext/docker.sock "$@"
EOF
}

# --- the registry --------------------------------------------------------------
make_certs() {
  local d=$STATE/tls
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=$CLUSTER local CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$REG" \
    -keyout "$d/registry.key" -out "$d/registry.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$REG" >"$d/ext.cnf"
  openssl x509 -req -in "$d/registry.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -CAcreateserial -days 7 -extfile "$d/ext.cnf" -out "$d/registry.crt" 2>/dev/null
  # The registry runs as 65532 and must read its key; the CA key stays root's.
  mkdir -p "$STATE/registry-tls"
  cp "$d/registry.crt" "$d/registry.key" "$STATE/registry-tls/"
  chown -R 65532:65532 "$STATE/registry-tls"
  chmod 600 "$d/ca.key" "$STATE/registry-tls/registry.key"
  # What every node mounts at /etc/docker/certs.d.
  mkdir -p "$STATE/certs.d/$REG:$REG_PORT"
  cp "$d/ca.crt" "$STATE/certs.d/$REG:$REG_PORT/ca.crt"
}

start_registry() {
  local bin=${STATIC_BIN_DIR:-}
  [ -n "$bin" ] || bin=$("$root/scripts/static-build.sh")
  [ -x "$bin/registry" ] || die "$bin/registry is missing (scripts/static-build.sh)"
  [ -x "$bin/htpasswd" ] || die "$bin/htpasswd is missing (scripts/static-build.sh)"
  local ctx
  ctx=$(mktemp -d)
  cp "$bin/registry" "$ctx/"
  mkdir "$ctx/data" "$ctx/auth"
  build -q -f "$root/registry/Dockerfile" --label "$LABEL" -t "$REG:local" "$ctx" >/dev/null
  rm -rf "$ctx"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/registry-password"
  chmod 600 "$STATE/registry-password"
  mkdir -p "$STATE/auth"
  "$bin/htpasswd" -B -i -c "$STATE/auth/htpasswd" "$REGISTRY_USER" <"$STATE/registry-password" >/dev/null 2>&1
  chown -R 65532:65532 "$STATE/auth"
  docker volume create --label "$LABEL" "$REG-data" >/dev/null
  # 5000: the registry (TLS); 5001: Prometheus metrics, without auth, on
  # the cluster network and 127.0.0.1 only.
  docker run -d --name "$REG" --hostname "$REG" --label "$LABEL" --network "$NET" \
    --ip "$(cat "$STATE/prefix").250" \
    -p 127.0.0.1::5000 -p 127.0.0.1::5001 \
    -v "$REG-data:/var/lib/registry" \
    -v "$STATE/registry-tls:/tls:ro" -v "$STATE/auth:/auth:ro" \
    -e REGISTRY_HTTP_TLS_CERTIFICATE=/tls/registry.crt \
    -e REGISTRY_HTTP_TLS_KEY=/tls/registry.key \
    -e REGISTRY_METRICS_ADDR=0.0.0.0:5001 \
    -e REGISTRY_LOG_LEVEL="${REGISTRY_LOG_LEVEL:-info}" \
    -e REGISTRY_LOG_FORMATTER="${REGISTRY_LOG_FORMATTER:-text}" \
    "$REG:local" >/dev/null
  local port
  port=$(docker port "$REG" 5000/tcp | head -n1 | sed 's/.*://')
  wait_until "the registry on 127.0.0.1:$port" 30 \
    curl -fs --cacert "$STATE/tls/ca.crt" "https://127.0.0.1:$port/livez"
}

# --- nodes and swarm -------------------------------------------------------------
# Every capability but SYS_RESOURCE, which the host daemon lacks (so
# --privileged fails); 20.10 does not know BPF, PERFMON, CHECKPOINT_RESTORE.
CAPS=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
  LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK
  IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT
  SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
  MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ)

start_node() { # $1 = node number, $2 = image
  local n=$1 name=$CLUSTER-node$1
  mkdir -p "$STATE/node$n"
  local caps=() c
  for c in "${CAPS[@]}"; do caps+=(--cap-add "$c"); done
  docker volume create --label "$LABEL" "$name-docker" >/dev/null
  docker run -d --name "$name" --hostname "$name" --label "$LABEL" --network "$NET" \
    --ip "$(cat "$STATE/prefix").$((10 + n))" \
    "${caps[@]}" --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --tmpfs /run --tmpfs /tmp -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    -v "$name-docker:/var/lib/docker" -v "$STATE/node$n:/ext" \
    -v "$STATE/certs.d:/etc/docker/certs.d:ro" \
    "$2" >/dev/null
}

cmd_up() {
  command -v docker >/dev/null || die "docker is not installed"
  command -v openssl >/dev/null || die "openssl is not installed"
  if docker ps -aq --filter "label=$LABEL" | grep -q .; then
    die "cluster $CLUSTER exists already ('$0 down' first, or another CLUSTER=)"
  fi
  # A failed `up` removes what it had made, so a re-run starts clean.
  trap '[ "$UP_DONE" = 1 ] || { say "up failed: removing what it made"; cmd_down; }' EXIT
  local t0=$SECONDS image
  image=$(build_node_image)
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  echo "$NODES $MANAGERS" >"$STATE/shape"
  make_certs
  # Fixed addresses (a restarted node keeps the address it advertised to the
  # swarm): the subnet Docker picks as free, then recreated as a configured one.
  docker network create --label "$LABEL" "$NET" >/dev/null
  local subnet
  subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NET")
  docker network rm "$NET" >/dev/null
  docker network create --label "$LABEL" --subnet "$subnet" "$NET" >/dev/null
  echo "${subnet%.*/*}" >"$STATE/prefix"
  if [ "${REGISTRY:-1}" = 1 ]; then
    say "starting the registry $REG:$REG_PORT (TLS)"
    start_registry
  fi
  say "starting $NODES nodes ($MANAGERS manager(s))"
  local n
  for n in $(seq "$NODES"); do start_node "$n" "$image"; done
  for n in $(seq "$NODES"); do
    wait_until "the engine of node $n" 60 on_node "$n" version
  done
  local ip1
  ip1=$(node_ip 1)
  on_node 1 swarm init --advertise-addr "$ip1" >/dev/null
  local mtoken wtoken
  mtoken=$(on_node 1 swarm join-token -q manager)
  wtoken=$(on_node 1 swarm join-token -q worker)
  for n in $(seq 2 "$NODES"); do
    local token=$wtoken
    [ "$n" -le "$MANAGERS" ] && token=$mtoken
    on_node "$n" swarm join --advertise-addr "$(node_ip "$n")" --token "$token" "$ip1:2377" >/dev/null
  done
  wait_until "$NODES nodes Ready" 60 all_ready
  UP_DONE=1
  say "up in $((SECONDS - t0))s"
  cmd_status
  echo
  echo "Reach the manager:  eval \"\$($0 env)\"   (or: export DOCKER_HOST=unix://$(node_sock 1))"
}

all_ready() {
  [ "$(on_node 1 node ls --format '{{.Status}}' | grep -c '^Ready$')" = "$NODES" ]
}

cmd_env() {
  [ -S "$(node_sock 1)" ] || die "cluster $CLUSTER is not up ($(node_sock 1) missing)"
  local port mport
  port=$(docker port "$REG" 5000/tcp | head -n1 | sed 's/.*://')
  mport=$(docker port "$REG" 5001/tcp | head -n1 | sed 's/.*://')
  cat <<EOF
export DOCKER_HOST=unix://$(node_sock 1)
export DOCKER_REGISTRY=$REG:$REG_PORT
export REGISTRY_USER=$REGISTRY_USER
export REGISTRY_PASSWORD_FILE=$STATE/registry-password
export CLUSTER_CA=$STATE/tls/ca.crt
export CLUSTER_NETWORK=$NET
export CLUSTER_REGISTRY_HOST_URL=https://127.0.0.1:$port
export CLUSTER_REGISTRY_METRICS_URL=http://127.0.0.1:$mport/metrics
EOF
}

cmd_status() {
  if ! docker ps -aq --filter "label=$LABEL" | grep -q .; then
    echo "cluster $CLUSTER: down"
    return 0
  fi
  echo "cluster $CLUSTER: containers"
  docker ps -a --filter "label=$LABEL" --format '  {{.Names}}\t{{.Status}}\t{{.Ports}}'
  if [ -S "$(node_sock 1)" ] && on_node 1 info >/dev/null 2>&1; then
    echo "swarm (from the manager, DOCKER_HOST=unix://$(node_sock 1)):"
    on_node 1 node ls --format '  {{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}'
  fi
  local port
  if port=$(docker port "$REG" 5000/tcp 2>/dev/null | head -n1 | sed 's/.*://') && [ -n "$port" ]; then
    echo "registry: $REG:$REG_PORT for the nodes, https://127.0.0.1:$port from the host (CA $STATE/tls/ca.crt)"
  fi
}

cmd_down() {
  local ids
  ids=$(docker ps -aq --filter "label=$LABEL")
  # Stop the nodes first and wait: their engines unmount, then the volumes go
  # (-v: with the anonymous ones their images declare, e.g. the registry's).
  [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  docker network ls -q --filter "label=$LABEL" | xargs -r docker network rm >/dev/null
  docker volume ls -q --filter "label=$LABEL" | xargs -r docker volume rm >/dev/null
  docker images -q --filter "label=$LABEL" | sort -u | xargs -r docker rmi -f >/dev/null
  rm -rf "$STATE"
  say "down: removed containers, network, volumes, registry image of $CLUSTER (node image $NODE_REPO:* kept as a cache)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  node-sock) node_sock "${2:?node number}" ;;
  *) echo "usage: $0 up|down|status|env  (NODES=3 MANAGERS=1 CLUSTER=counter-cluster)" >&2; exit 2 ;;
esac
