# shellcheck shell=bash
# shellcheck disable=SC2154 # root, work: set by scripts/cluster-test.sh
# Phase images: builds on the manager's engine the test client (the host's
# busybox in a scratch image, not pushed: cluster-client) and Redis from the
# host's redis-server and redis-cli (scripts/host-image-context.sh), pushed
# to our registry over TLS. Checks: an anonymous pull from worker 2 is
# refused for lack of credentials (the TLS handshake passes).
# Sourced by scripts/cluster-test.sh, which times it as a phase.

# The test client (busybox nc; busybox wget segfaults in scratch images), on
# the manager only: it is not part of the stack.
mkdir -p "$work/client"
cp /usr/bin/busybox "$work/client/"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n' >"$work/client/Dockerfile"
build -q -t cluster-client "$work/client"
# Redis from the host's redis-server and redis-cli and their libraries, as
# bench/swarm/run.sh builds it; pushed to our registry like every stack image.
ctx=$work/redis
"$root/scripts/host-image-context.sh" "$ctx" --redis
build -q -t "$DOCKER_REGISTRY/redis:7-host" "$ctx"
docker login -u "$REGISTRY_USER" --password-stdin "$DOCKER_REGISTRY" <"$REGISTRY_PASSWORD_FILE" >/dev/null
docker push -q "$DOCKER_REGISTRY/redis:7-host" >/dev/null
log "pushed $DOCKER_REGISTRY/redis:7-host from the manager's engine (TLS, CA in certs.d)"

# Anonymous pull from a worker: refused by the registry (the TLS handshake
# passes: the error is about credentials, not the certificate).
if out=$(host_docker exec "$CLUSTER-node2" docker pull "$DOCKER_REGISTRY/redis:7-host" 2>&1); then
  fail "an anonymous pull from node 2 succeeded: $out"
fi
grep -qi 'no basic auth credentials\|unauthorized\|authentication required' <<<"$out" ||
  fail "anonymous pull from node 2 failed, but not for lack of credentials: $out"
log "anonymous pull from node 2 refused: $(tail -n1 <<<"$out")"
