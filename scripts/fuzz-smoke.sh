#!/usr/bin/env bash
# CI's fuzzing smoke test (docs/fuzzing.md): builds every target in fuzz/
# with cargo-fuzz (installed if missing; stable toolchain with
# RUSTC_BOOTSTRAP=1), replays each target's committed corpus
# (fuzz/corpus/<target>/, every input must pass), then fuzzes each target
# for FUZZ_SECONDS (default 3; the long runs are scripts/fuzz-long.sh) from that corpus. Any crash, leak or
# timeout fails the script; the input is left in fuzz/artifacts/<target>/.
# FUZZ_SKIP=1 skips it all (it takes a few minutes from scratch).
# Built without a sanitizer (-s none): the code under test is safe Rust, and
# the overflow checks and debug assertions cargo-fuzz turns on stay on.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${FUZZ_SKIP:-0}" = 1 ]; then
  echo "fuzz-smoke: skipped (FUZZ_SKIP=1)"
  exit 0
fi
SECONDS_EACH=${FUZZ_SECONDS:-3}
# A development build (no optimisation) compiles in half the time of the
# release one, and a few seconds per target need no speed: CI stays under 30
# minutes. FUZZ_BUILD=--release for the build the long runs use.
BUILD=${FUZZ_BUILD:---dev}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz-smoke: libfuzzer-sys needs a C++ compiler (apt-get install g++)" >&2
  exit 1
fi

cd fuzz
# cargo-fuzz has no --locked: check the lock file first.
cargo metadata --locked --format-version 1 >/dev/null
cargo fuzz build -s none "$BUILD"
targets=$(cargo fuzz list)
[ -n "$targets" ] || { echo "fuzz-smoke: no fuzz targets" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
  [ -d "corpus/$t" ] || { echo "fuzz-smoke: no corpus/$t" >&2; exit 1; }
  echo "fuzz-smoke: $t: replaying $(ls "corpus/$t" | wc -l) corpus inputs"
  # -runs=0: run every corpus input once, then stop.
  cargo fuzz run -s none "$BUILD" "$t" "corpus/$t" -- -runs=0
  echo "fuzz-smoke: $t: fuzzing ${SECONDS_EACH}s"
  # New inputs go to a scratch copy, not the committed corpus.
  mkdir -p "$scratch/$t"
  cp "corpus/$t"/* "$scratch/$t/"
  cargo fuzz run -s none "$BUILD" "$t" "$scratch/$t" -- -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048
done
echo "fuzz-smoke: all targets passed"
