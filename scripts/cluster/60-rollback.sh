# shellcheck shell=bash
# shellcheck disable=SC2154 # work, v2_spec: set by scripts/cluster-test.sh and the phases before
# Phase rollback: deploys, under load, a v3 whose healthcheck fails (its
# /counter-app is busybox: exit 127; the server runs as /counter-app-real).
# Checks: deploy.sh fails reporting Swarm's rollback; UpdateStatus reaches
# rollback_completed with 4 replicas; no request failed; the spec and every
# replica are v2 again.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

# The v3 image serves like v2, but its /counter-app (what the healthcheck
# runs) is busybox, which has no such applet: the healthcheck exits 127.
mkdir -p "$work/v3"
cp "$STATIC_BIN_DIR/counter-app" "$work/v3/counter-app-real"
cp /usr/bin/busybox "$work/v3/counter-app"
printf 'FROM scratch\nCOPY counter-app-real /counter-app-real\nCOPY counter-app /counter-app\nUSER 65532:65532\nENTRYPOINT ["/counter-app-real"]\nCMD ["serve"]\n' >"$work/v3/Dockerfile"
build -q -t "$DOCKER_REGISTRY/counter-app:v3" "$work/v3"
start_load load2
wait_until "the load client's first answers" 30 bash -c "[ \"\$(docker exec load2 busybox cat /progress 2>/dev/null | cut -d' ' -f1)\" -gt 0 ] 2>/dev/null"
if out=$(deploy TAG=v3 BUILD=none 2>&1); then
  echo "$out"
  fail "deploy of v3 (failing healthcheck) succeeded"
fi
sed 's/^/    /' <<<"$out"
grep -q 'rolled back' <<<"$out" || fail "deploy.sh v3 failed, but not by a rollback"
rolled_back() { [ "$(update_state)" = rollback_completed ] && replicas_are 4; }
wait_until "UpdateStatus.State = rollback_completed" 180 rolled_back
read -r ok failed < <(stop_load load2)
log "v3 rolled back by Swarm: $(docker service inspect -f '{{.UpdateStatus.Message}}' "$APP"); under load: $ok answered, $failed failed"
[ "$failed" = 0 ] || fail "$failed requests failed during the v3 update and rollback"
[ "$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$APP")" = "$v2_spec" ] ||
  fail "after the rollback the service spec is not v2's"
for img in $(docker service ps --filter desired-state=running --format '{{.Image}}' "$APP"); do
  [[ "$img" == *":v2" || "$img" == *":v2@"* ]] || fail "after the rollback a replica runs $img"
done
