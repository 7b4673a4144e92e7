# shellcheck shell=bash
# Phase lab: the seed's Active/Drain lab on node 2. Checks: drain empties
# node 2 (4 replicas on the other two); active moves nothing back (watched
# for 15 s); scale 6 puts 2 tasks on node 2; back to 4, drain and active
# again, then update --force puts tasks on node 2. Defines update_done,
# which the nodeloss phase uses too.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

node2=$CLUSTER-node2
n2=$(on_node_count 2)
[ "$n2" -ge 1 ] || fail "spread should have put a task on node 2 ($(placement))"
before=$(placement)
docker node update --availability drain "$node2" >/dev/null
avail=$(docker node inspect -f '{{.Spec.Availability}}' "$node2")
[ "$avail" = drain ] || fail "node 2 availability is $avail after drain"
node2_empty_and_4() { [ "$(on_node_count 2)" = 0 ] && replicas_are 4 && [[ "$(placement)" == *"node2=0"* ]]; }
wait_until "node 2's tasks rescheduled elsewhere" 90 node2_empty_and_4
drained=$(placement)
log "drain: $before -> $drained (node inspect: $avail; node 2 runs no task)"
docker node update --availability active "$node2" >/dev/null
[ "$(docker node inspect -f '{{.Spec.Availability}}' "$node2")" = active ] || fail "node 2 not active"
# Nothing moves back: watched for 15 s (Swarm does not rebalance running
# tasks; the window is the claim, not a wait for a condition).
for _ in $(seq 15); do
  now=$(placement)
  [ "$now" = "$drained" ] || fail "after active, tasks moved: $drained -> $now"
  [ "$(on_node_count 2)" = 0 ] || fail "after active, node 2 runs a task"
  sleep 1
done
log "active: nothing moved back in 15s ($drained)"
# Scaling puts tasks on node 2 (it has the free slots).
docker service scale -d "$APP=6" >/dev/null
wait_until "6 replicas" 90 replicas_are 6
scaled=$(placement)
[[ "$scaled" == *"node2=2"* ]] || fail "scale to 6: node 2 should hold 2 ($scaled)"
log "scale 6: $scaled"
docker service scale -d "$APP=4" >/dev/null
wait_until "back to 4 replicas" 90 replicas_are 4
# Again empty node 2, then update --force spreads the tasks over it.
docker node update --availability drain "$node2" >/dev/null
wait_until "node 2 drained again" 90 node2_empty_and_4
docker node update --availability active "$node2" >/dev/null
docker service update -d --force "$APP" >/dev/null
update_done() { [ "$(update_state)" = completed ] && replicas_are 4; }
wait_until "update --force completed" 180 update_done
forced=$(placement)
[[ "$forced" != *"node2=0"* ]] || fail "update --force left node 2 empty ($forced)"
log "update --force: $drained -> $forced"
