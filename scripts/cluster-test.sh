#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The multi-node Swarm end to end, on a local cluster from compose/cluster.sh
# (3 nodes: 1 manager, 2 workers; engines in containers; our registry over
# TLS). scripts/test.sh runs it after the cargo tests; alone:
#
#   STATIC_BIN_DIR=/path/to/static/bins scripts/cluster-test.sh
#
# KEEP=1 leaves the cluster up when the test fails (CLUSTER=... cluster.sh down).
#
# Phases (each timed, summary at the end), one file each under
# scripts/cluster/ (NN-<phase>.sh: what it checks in its header) but down,
# which is the EXIT trap's; sourced in this order into this shell, they
# share its variables, the helpers of scripts/cluster/helpers.sh and
# scripts/lib/common.sh, its set -euo pipefail and its traps.
#   up        compose/cluster.sh up
#   images    Redis (host's redis-server, FROM scratch) built on the manager,
#             pushed to our registry; anonymous pull from a worker refused
#   deploy    compose/deploy.sh v1: the seed's stack (4 replicas, 2 per node,
#             spread, limits, healthchecks, start-first + rollback) with DNS
#             round robin and host-mode ports (no IPVS here)
#   lab       the seed's Active/Drain lab: drain, active (nothing moves back),
#             scale and update --force put tasks on the node again
#   update    v1 -> v2 under load from a client on the overlay: no failed request
#   rollback  v3 with a failing healthcheck: Swarm rolls back to v2 by itself
#   nodeloss  kill a worker: tasks rescheduled in bounded time, count keeps
#             rising, nothing lost in Redis; node back, rebalance
#   mirror    our registry as a pull-through cache of the cluster's one; two
#             workers with registry-mirrors in daemon.json pull a Docker Hub
#             name through it (miss, then hit)
#   quorum    a second cluster with MANAGERS=3: kill the leader, the other two
#             elect a new one and keep serving
#   down      compose/cluster.sh down: nothing of the test left behind
#
# Fails (non-zero, "cluster-test: FAIL: ...") on the first broken assertion.
# What the kernel here cannot do (IPVS: virtual IPs, ingress mesh) is probed
# and reported, and the rest runs without it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

export CLUSTER=${CLUSTER:-ctest$$}
export CLUSTER_STATE=${CLUSTER_STATE:-/tmp/$CLUSTER}
export NODES=3 MANAGERS=1
: "${STATIC_BIN_DIR:?set STATIC_BIN_DIR to the static binaries (scripts/static-build.sh)}"
export STATIC_BIN_DIR
STACK=counter
APP=${STACK}_app
OVERLAY=${STACK}_default
work=$(mktemp -d)
t_start=$SECONDS
phases=()
phase_name="" phase_t0=0

log() { echo "[cluster-test $(printf '%5d' $((SECONDS - t_start)))s] $*"; }
fail() {
  echo "cluster-test: FAIL: $*" >&2
  docker service ps --no-trunc "$APP" 2>/dev/null | head -n 30 >&2 || true
  exit 1
}
phase() {
  [ -n "$phase_name" ] && phases+=("$phase_name $((SECONDS - phase_t0))")
  phase_name=$1 phase_t0=$SECONDS
  log "=== phase $1"
}
summary() {
  [ -n "$phase_name" ] && phases+=("$phase_name $((SECONDS - phase_t0))")
  phase_name=""
  echo "cluster-test: phase durations (s):"
  local p
  for p in "${phases[@]}"; do echo "  $p"; done
  echo "  total $((SECONDS - t_start))"
}

cleanup() {
  local rc=$?
  set +e
  [ -n "$phase_name" ] && phases+=("$phase_name $((SECONDS - phase_t0))")
  phase_name="down" phase_t0=$SECONDS
  if [ "$rc" != 0 ] && [ "${KEEP:-0}" = 1 ]; then
    echo "cluster-test: KEEP=1: cluster $CLUSTER left up for a look ($root/compose/cluster.sh down with CLUSTER=$CLUSTER)" >&2
    exit $rc
  fi
  "$root/compose/cluster.sh" down >/dev/null 2>&1
  # shellcheck disable=SC2153 # QCLUSTER, QSTATE: set by the quorum phase with qcleanup=1
  [ "${qcleanup:-0}" = 1 ] && env -u DOCKER_HOST CLUSTER="$QCLUSTER" CLUSTER_STATE="$QSTATE" \
    "$root/compose/cluster.sh" down >/dev/null 2>&1
  rm -rf "$work"
  local left
  local c
  left=$(for c in "$CLUSTER" "${CLUSTER}q"; do
    host_docker ps -aq --filter "label=io.counter.cluster=$c"
    host_docker network ls -q --filter "label=io.counter.cluster=$c"
    host_docker volume ls -q --filter "label=io.counter.cluster=$c"
  done)
  [ -z "$left" ] || { echo "cluster-test: FAIL: left behind: $left" >&2; rc=1; }
  summary
  exit $rc
}
# shellcheck source=lib/common.sh
. "$root/scripts/lib/common.sh"
# shellcheck source=cluster/helpers.sh
. "$root/scripts/cluster/helpers.sh"
trap cleanup EXIT
# Names the file, which may be a phase's: $LINENO counts in the file it is in.
trap 'echo "cluster-test: FAIL: ${BASH_SOURCE[0]##*/} line $LINENO: $BASH_COMMAND exited non-zero" >&2' ERR

for cluster_phase in 10-up 20-images 30-deploy 40-lab 50-update 60-rollback 70-nodeloss 80-mirror 90-quorum; do
  phase "${cluster_phase#*-}"
  # shellcheck source=/dev/null
  . "$root/scripts/cluster/$cluster_phase.sh"
done
log "all assertions passed"
