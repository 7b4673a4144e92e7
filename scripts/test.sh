#!/usr/bin/env bash
# Runs every test: installs the system tools the tests drive (skopeo, Debian's
# docker-registry, redis-server, wrk), builds the static binaries the image
# tests put into FROM scratch images, then the whole cargo test suite including
# the tests marked #[ignore] (those need Docker and the static binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ci-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
STATIC_BIN_DIR=$(./scripts/static-build.sh)
export STATIC_BIN_DIR
cargo test --workspace --locked -- --include-ignored
