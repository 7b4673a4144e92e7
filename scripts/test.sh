#!/usr/bin/env bash
# Runs every test: installs the tools the tests drive (skopeo, Debian's
# docker-registry, redis-server, wrk; moto, locust, kubernetes-validate),
# builds the static binaries the image tests put into FROM scratch images,
# then the whole cargo test suite including the tests marked #[ignore] (those
# need Docker and the static binaries).
# The Python tools (moto_server, locust, kubernetes-validate) live in the
# virtual environment ci-deps.sh makes, $CI_VENV (default .venv here); its
# bin/ goes first on PATH for everything below.
set -euo pipefail
cd "$(dirname "$0")/.."

export CI_VENV=${CI_VENV:-$PWD/.venv}
./scripts/ci-deps.sh
export PATH="$CI_VENV/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
STATIC_BIN_DIR=$(./scripts/static-build.sh)
export STATIC_BIN_DIR
# The multi-node swarm (3 engines in containers, our registry over TLS):
# deploy with the seed's placement, the Active/Drain lab, rolling update under
# load, automatic rollback, node loss. Cleans up after itself; prints each
# phase's duration (about 4 minutes alone). It mostly waits on engines, so it
# runs alongside the cargo suites below (its own names, networks and ports);
# its output is printed when it ends, and every path out of this script waits
# for it, so a failure elsewhere never leaves a half-torn-down cluster.
cluster_log=$(mktemp)
./scripts/cluster-test.sh >"$cluster_log" 2>&1 &
cluster_pid=$!
cluster_done() {
  local rc=0
  wait "$cluster_pid" || rc=$?
  echo "--- scripts/cluster-test.sh (exit $rc)"
  cat "$cluster_log"
  rm -f "$cluster_log"
  return "$rc"
}
trap 'trap - EXIT; cluster_done || true' EXIT
cargo test --workspace --locked -- --include-ignored
# The protocol suites again with every test registry on S3 (moto) instead of
# disk: one suite, both backends.
# Each name filters the one test binary by module (`smoke::` and so on).
REGISTRY_TEST_STORAGE=s3 cargo test -p registry --locked --test it -- \
  smoke:: conformance_pull:: conformance_push:: \
  conformance_discovery:: conformance_management:: \
  bad_input:: auth_basic:: skopeo:: \
  policies_immutable:: policies_delete:: policies_reload:: \
  listing:: metadata_cache:: policies_retention:: policies_quota::
# The fuzz targets (fuzz/, docs/fuzzing.md): build, replay the committed
# corpus, fuzz each briefly. FUZZ_SKIP=1 skips it.
./scripts/fuzz-smoke.sh
trap - EXIT
cluster_done
