# shellcheck shell=bash
# Phase update: v1 -> v2 by deploy.sh (start-first, 2 at a time) under a
# load client on the overlay (one request after the other to app). Checks:
# no request failed, some were answered, every replica runs v2. Sets
# v2_spec, the service's image, for the rollback phase.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

start_load load1
wait_until "the load client's first answers" 30 bash -c "[ \"\$(docker exec load1 busybox cat /progress 2>/dev/null | cut -d' ' -f1)\" -gt 0 ] 2>/dev/null"
deploy TAG=v2 VERSION=2.0.0 | sed 's/^/    /'
read -r ok failed < <(stop_load load1)
log "v1 -> v2 under load: $ok requests answered, $failed failed"
[ "$failed" = 0 ] || fail "$failed requests failed during the rolling update"
[ "$ok" -gt 0 ] || fail "the load client got no answer"
for img in $(docker service ps --filter desired-state=running --format '{{.Image}}' "$APP"); do
  [[ "$img" == *":v2" || "$img" == *":v2@"* ]] || fail "a replica runs $img, not v2"
done
# shellcheck disable=SC2034 # read by the rollback phase
v2_spec=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$APP")
