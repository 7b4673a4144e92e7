# --- up --------------------------------------------------------------------------
phase up
"$root/compose/cluster.sh" up
eval "$("$root/compose/cluster.sh" env)"
export DOCKER_HOST DOCKER_REGISTRY REGISTRY_USER REGISTRY_PASSWORD_FILE
export DOCKER_CONFIG=$work/docker-config
[ "$(docker node ls -q | wc -l)" = 3 ] || fail "the swarm should have 3 nodes: $(docker node ls)"
[ "$(docker node ls --filter role=manager -q | wc -l)" = 1 ] || fail "1 manager expected"
