#!/usr/bin/env bash
# Web UI render times: a repository with 1,000 tags (each its own image)
# and 10,000 more repositories, release build; prints the table docs/ui.md
# quotes (registry/tests/it/ui_bench.rs). Times are measured at the client over
# loopback, so they include the transfer.
#
#   bench/ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked -p registry --test it -- --ignored --nocapture ui_bench:: 2>&1 |
  grep -E '^\||^filled|test result'
