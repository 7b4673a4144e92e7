# shellcheck shell=bash
# Phase nodeloss: kills worker 3's container (its engine and tasks at once)
# under load. Checks: the manager marks it down; 4 replicas run on the other
# nodes; the load client's count keeps rising; started again, the node is
# ready and update --force rebalances tasks onto it; Redis lost no count (it
# rose by at least the answered requests). Failed requests (sent to the dead
# tasks' addresses until Swarm saw the node down) are reported, not
# asserted zero.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

victim=3
[ "$(on_node_count $victim)" -ge 1 ] || {
  # Put tasks on it first (a fresh spread).
  docker service update -d --force "$APP" >/dev/null
  wait_until "update --force completed" 180 update_done
}
lost=$(on_node_count $victim)
[ "$lost" -ge 1 ] || fail "node $victim holds no task to lose ($(placement))"
c0=$(count_of "$(client_get app)")
start_load load3
wait_until "the load client's first answers" 30 bash -c "[ \"\$(docker exec load3 busybox cat /progress 2>/dev/null | cut -d' ' -f1)\" -gt 0 ] 2>/dev/null"
before_kill=$(placement)
t_kill=$SECONDS
host_docker kill "$CLUSTER-node$victim" >/dev/null
log "killed node $victim (held $lost task(s)); placement was $before_kill"
node_down() { [ "$(docker node inspect -f '{{.Status.State}}' "$CLUSTER-node$victim")" = down ]; }
wait_until "node $victim reported down" 120 node_down
t_down=$((SECONDS - t_kill))
rescheduled() { replicas_are 4 && [[ "$(placement)" == *"node$victim=0"* ]]; }
wait_until "4 replicas on the remaining nodes" 120 rescheduled
t_resched=$((SECONDS - t_kill))
read -r ok1 _ < <(load_progress load3) || true
wait_until "the count keeps rising" 30 bash -c "[ \"\$(docker exec load3 busybox cat /progress | cut -d' ' -f1)\" -gt $ok1 ]"
log "node $victim down after ${t_down}s, 4/4 running elsewhere after ${t_resched}s: $(placement)"
host_docker start "$CLUSTER-node$victim" >/dev/null
node_ready() { [ "$(docker node inspect -f '{{.Status.State}}' "$CLUSTER-node$victim")" = ready ]; }
wait_until "node $victim back and ready" 120 node_ready
log "node $victim ready again after $((SECONDS - t_kill))s; rebalancing with update --force"
docker service update -d --force "$APP" >/dev/null
wait_until "rebalance completed" 180 update_done
rebalanced=$(placement)
[[ "$rebalanced" != *"node$victim=0"* ]] || fail "rebalance left node $victim empty ($rebalanced)"
read -r ok failed < <(stop_load load3)
c1=$(count_of "$(client_get app)")
log "rebalanced: $rebalanced; load: $ok answered, $failed failed (requests to the lost tasks' addresses until Swarm saw the node down); count $c0 -> $c1"
[ $((c1 - c0)) -ge $((ok + 1)) ] || fail "Redis lost counts: $c0 + $ok answered + 1 > $c1"
