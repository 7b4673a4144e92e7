# shellcheck shell=bash
# shellcheck disable=SC2154 # root, work: set by scripts/cluster-test.sh
# Phase up: compose/cluster.sh up (3 nodes, 1 manager, our registry over
# TLS); its env exported for the phases after it (DOCKER_HOST = the
# manager's engine, DOCKER_REGISTRY, the deployer's credentials, a
# DOCKER_CONFIG of the test's own). Checks: the swarm has 3 nodes, 1 of them
# a manager.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

"$root/compose/cluster.sh" up
eval "$("$root/compose/cluster.sh" env)"
export DOCKER_HOST DOCKER_REGISTRY REGISTRY_USER REGISTRY_PASSWORD_FILE
export DOCKER_CONFIG=$work/docker-config
[ "$(docker node ls -q | wc -l)" = 3 ] || fail "the swarm should have 3 nodes: $(docker node ls)"
[ "$(docker node ls --filter role=manager -q | wc -l)" = 1 ] || fail "1 manager expected"
