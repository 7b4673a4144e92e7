#!/usr/bin/env bash
# Builds the release binaries statically linked (glibc, crt-static) so they run
# in FROM scratch images. Prints the directory that holds them.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" --bins >&2
# Where cargo put them: CARGO_TARGET_DIR (relative to here) or ./target.
dir=${CARGO_TARGET_DIR:-target}
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
echo "$dir/$target/release"
