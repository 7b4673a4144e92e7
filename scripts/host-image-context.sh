#!/usr/bin/env bash
# Writes a FROM scratch build context of host binaries: each binary and every
# library ldd lists for it under DIR/rootfs, at their host paths. With
# `--redis` instead of binaries: Debian's redis-server and redis-cli, a /data
# owned by 65532, and the Dockerfile that runs them (the Redis image the
# Swarm tests and benchmarks push, since no image can be pulled here).
#
#   scripts/host-image-context.sh DIR /usr/bin/wrk
#   scripts/host-image-context.sh DIR --redis && docker build -t IMAGE DIR
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh" # multiarch
dir=${1:?usage: host-image-context.sh DIR (--redis | BINARY...)}
shift
redis=0
if [ "${1:-}" = --redis ]; then
  redis=1
  set -- /usr/bin/redis-server /usr/bin/redis-cli
fi
[ $# -gt 0 ] || { echo "host-image-context: no binaries" >&2; exit 1; }
mkdir -p "$dir/rootfs"
for b in "$@"; do
  for f in "$b" $(ldd "$b" | grep -o '/[^ ]*'); do
    mkdir -p "$dir/rootfs$(dirname "$f")"
    cp -L "$f" "$dir/rootfs$f"
  done
done
if [ "$redis" = 1 ]; then
  mkdir -p "$dir/data"
  ma=$(multiarch)
  cat >"$dir/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/
ENV LD_LIBRARY_PATH=/lib/$ma:/usr/lib/$ma:/lib:/usr/lib
WORKDIR /data
USER 65532:65532
CMD ["redis-server", "--protected-mode", "no"]
DOCKERFILE
fi
