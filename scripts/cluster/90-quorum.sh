# shellcheck shell=bash
# shellcheck disable=SC2154,SC2153 # root, CLUSTER, CLUSTER_STATE: set by scripts/cluster-test.sh
# Phase quorum: a second cluster, ${CLUSTER}q, with MANAGERS=3 and no
# registry. Checks: 1 Leader and 2 Reachable managers; after the leader's
# node is killed the other two elect a new leader and answer (within 60 s).
# Removes that cluster; qcleanup=1 meanwhile tells the driver's cleanup to
# remove it if the test fails first.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

# A second, registry-less cluster of 3 managers: losing the leader leaves a
# quorum of 2, which elects a new leader and keeps serving the API.
qdocker() { # $1 node number, rest docker args
  local n=$1; shift
  docker -H "unix://$QSTATE/node$n/docker.sock" "$@"
}
QCLUSTER=${CLUSTER}q QSTATE=$CLUSTER_STATE-q
env -u DOCKER_HOST CLUSTER="$QCLUSTER" CLUSTER_STATE="$QSTATE" NODES=3 MANAGERS=3 REGISTRY=0 \
  "$root/compose/cluster.sh" up >/dev/null 2>&1 || fail "cluster.sh up with MANAGERS=3 failed"
# shellcheck disable=SC2034 # read by the driver's cleanup
qcleanup=1
managers=$(qdocker 1 node ls --format '{{.Hostname}} {{.ManagerStatus}}')
[ "$(grep -c ' Leader$' <<<"$managers")" = 1 ] && [ "$(grep -c ' Reachable$' <<<"$managers")" = 2 ] ||
  fail "MANAGERS=3: want 1 Leader and 2 Reachable managers: $managers"
host_docker kill "$QCLUSTER-node1" >/dev/null
t_q=$SECONDS
new_leader() {
  qdocker 2 node ls --format '{{.Hostname}} {{.ManagerStatus}}' 2>/dev/null |
    grep -q "^$QCLUSTER-node[23] Leader$"
}
wait_until "a new leader among the 2 remaining managers" 60 new_leader
log "MANAGERS=3: leader node 1 killed, $(qdocker 2 node ls --format '{{.Hostname}} {{.ManagerStatus}}' | grep Leader | cut -d' ' -f1) leads after $((SECONDS - t_q))s; the quorum of 2 still serves the API"
env -u DOCKER_HOST CLUSTER="$QCLUSTER" CLUSTER_STATE="$QSTATE" "$root/compose/cluster.sh" down >/dev/null 2>&1
# shellcheck disable=SC2034 # read by the driver's cleanup
qcleanup=0
