# --- rolling update under load --------------------------------------------------------------
phase update
start_load load1
poll "the load client's first answers" 30 bash -c "[ \"\$(docker exec load1 busybox cat /progress 2>/dev/null | cut -d' ' -f1)\" -gt 0 ] 2>/dev/null"
deploy TAG=v2 VERSION=2.0.0 | sed 's/^/    /'
read -r ok failed < <(stop_load load1)
log "v1 -> v2 under load: $ok requests answered, $failed failed"
[ "$failed" = 0 ] || fail "$failed requests failed during the rolling update"
[ "$ok" -gt 0 ] || fail "the load client got no answer"
for img in $(docker service ps --filter desired-state=running --format '{{.Image}}' "$APP"); do
  [[ "$img" == *":v2" || "$img" == *":v2@"* ]] || fail "a replica runs $img, not v2"
done
v2_spec=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$APP")
