# shellcheck shell=bash
# shellcheck disable=SC2154 # work: set by scripts/cluster-test.sh
# Phase mirror: our registry as a Docker Engine registry-mirror. Checks:
# workers 2 and 3, with registry-mirrors in daemon.json, pull a Docker Hub
# name through a pull-through cache of the cluster's registry and get the
# image the manager pushed; the cache's access log shows misses and hits.
# Removes the mirror and the daemon.json files at the end.
# Sourced by scripts/cluster-test.sh, which times it as a phase.

# A second registry from the same image on the cluster network: a pull-through
# cache (token mode, anonymous pulls, as a daemon's mirror needs) whose
# Docker Hub upstream is the cluster's registry. Workers 2 and 3 get
# registry-mirrors in daemon.json (reloaded on SIGHUP, no restart), then pull
# a Docker Hub name (redis:7-host = docker.io/library/redis:7-host). These
# engines have no route to Docker Hub, so a pull that succeeds came through
# the mirror: node 2's fills the cache (cache=miss), node 3's is served from
# it (cache=hit), and both get the image the manager pushed.
MIRROR=$CLUSTER-mirror
docker tag "$DOCKER_REGISTRY/redis:7-host" "$DOCKER_REGISTRY/library/redis:7-host"
docker push -q "$DOCKER_REGISTRY/library/redis:7-host" >/dev/null
mdir=$work/mirror
mkdir -p "$mdir/tls" "$CLUSTER_STATE/certs.d/$MIRROR:5000"
tls=$CLUSTER_STATE/tls
openssl req -newkey rsa:2048 -nodes -subj "/CN=$MIRROR" -keyout "$mdir/tls/mirror.key" \
  -out "$mdir/mirror.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$MIRROR" >"$mdir/ext.cnf"
openssl x509 -req -in "$mdir/mirror.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 1 -extfile "$mdir/ext.cnf" -out "$mdir/tls/mirror.crt" 2>/dev/null
cp "$tls/ca.crt" "$mdir/tls/ca.crt"
cp "$tls/ca.crt" "$CLUSTER_STATE/certs.d/$MIRROR:5000/ca.crt"
cat >"$mdir/tls/config.toml" <<TOML
[http]
addr = "0.0.0.0:5000"
[http.tls]
certificate = "/mirror/mirror.crt"
key = "/mirror/mirror.key"
[storage.filesystem]
rootdirectory = "/var/lib/registry"
[auth]
mode = "token"
[auth.htpasswd]
path = "/auth/htpasswd"
[auth.token]
signing_key = "/var/lib/registry/token-signing-key.pem"
[acl]
anonymous = ["pull"]
[[proxy.upstreams]]
prefix = "docker.io"
url = "https://$DOCKER_REGISTRY"
ca_file = "/mirror/ca.crt"
library = true
docker_mirror = true
username = "$REGISTRY_USER"
password = "$(cat "$REGISTRY_PASSWORD_FILE")"
TOML
chown -R 65532:65532 "$mdir/tls"
host_docker run -d --name "$MIRROR" --hostname "$MIRROR" --label "io.counter.cluster=$CLUSTER" \
  --network "$CLUSTER-net" --ip "$(cat "$CLUSTER_STATE/prefix").249" \
  -v "$mdir/tls:/mirror:ro" -e REGISTRY_LOG_FORMATTER=json \
  "$CLUSTER-registry:local" serve /mirror/config.toml >/dev/null
mirror_up() {
  [ "$(host_docker inspect -f '{{.State.Running}}' "$MIRROR" 2>/dev/null)" = true ] ||
    fail "the mirror exited: $(host_docker logs --tail 20 "$MIRROR" 2>&1)"
  # The config names the TLS listener: without it the probe would speak
  # plain HTTP to it.
  host_docker exec "$MIRROR" /registry healthcheck /mirror/config.toml >/dev/null 2>&1
}
wait_until "the mirror answers" 30 mirror_up
want_id=$(docker image inspect -f '{{.Id}}' "$DOCKER_REGISTRY/redis:7-host")
for n in 2 3; do
  host_docker exec "$CLUSTER-node$n" sh -c \
    "echo '{\"registry-mirrors\": [\"https://$MIRROR:5000\"]}' >/etc/docker/daemon.json && kill -HUP \$(cat /var/run/docker.pid)"
  has_mirror() { on_node "$n" info --format '{{json .RegistryConfig.Mirrors}}' | grep -q "$MIRROR:5000"; }
  wait_until "node $n reloaded registry-mirrors" 20 has_mirror
  on_node "$n" pull -q redis:7-host >/dev/null || fail "node $n: docker pull redis:7-host through the mirror failed: $(host_docker logs --tail 20 "$MIRROR" 2>&1)"
  got=$(on_node "$n" image inspect -f '{{.Id}}' redis:7-host)
  [ "$got" = "$want_id" ] || fail "node $n pulled $got through the mirror, the manager pushed $want_id"
done
mlog=$(host_docker logs "$MIRROR" 2>&1)
misses=$(grep -c '"cache":"miss"' <<<"$mlog" || true)
hits=$(grep -c '"cache":"hit"' <<<"$mlog" || true)
[ "$misses" -ge 1 ] && [ "$hits" -ge 1 ] || fail "the mirror's access log should show node 2's misses and node 3's hits (miss=$misses hit=$hits): $(tail -n 20 <<<"$mlog")"
log "registry-mirrors: nodes 2 and 3 pulled redis:7-host (docker.io) through $MIRROR: image $want_id; mirror log: $misses misses, $hits hits"
host_docker rm -f -v "$MIRROR" >/dev/null # -v: its image declares a volume
for n in 2 3; do
  host_docker exec "$CLUSTER-node$n" sh -c 'rm -f /etc/docker/daemon.json && kill -HUP $(cat /var/run/docker.pid)'
done
