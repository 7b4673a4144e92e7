#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine. Idempotent and
# quiet when everything is already there.
set -euo pipefail

need=()
for pair in skopeo:skopeo docker-registry:docker-registry redis-server:redis-server \
    wrk:wrk busybox:busybox-static docker-compose:docker-compose openssl:openssl curl:curl; do
  bin=${pair%%:*} pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/bin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "ci-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# moto's server mode is the S3-compatible server the S3 tests start.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "ci-deps: installing moto[server] from PyPI"
  python3 -m pip install -q --disable-pip-version-check 'moto[server]==5.2.5' 2>&1 | grep -v 'as the .root. user' || true
  command -v moto_server >/dev/null 2>&1 || { hash -r; command -v moto_server >/dev/null; }
fi
# The deploy tests validate compose/k8s offline against the Kubernetes schemas
# that kubernetes-validate ships; bench/swarm/run.sh drives Locust.
if ! python3 -c 'import kubernetes_validate, locust' >/dev/null 2>&1; then
  echo "ci-deps: installing kubernetes-validate and locust (pip)"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
    kubernetes-validate==1.37.0 locust==2.47.0
fi
# Debian's packages start their daemons through systemd where it exists; the
# tests start their own instances on ephemeral ports instead.
systemctl disable --now docker-registry redis-server >/dev/null 2>&1 || true
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-gnu || true
