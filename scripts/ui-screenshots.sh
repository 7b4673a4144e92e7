#!/usr/bin/env bash
# Regenerates the web UI's screenshots in docs/ui/ (shown in docs/ui.md):
# the browser test (registry/tests/it/ui_browser.rs) fills a registry with
# skopeo pushes and saves a 1024 px wide PNG of each page it visits, through
# the same WebDriver session (headless Chromium) that checks them.
#
#   scripts/ui-screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ci-deps.sh >&2
out=$PWD/docs/ui
mkdir -p "$out"
UI_SCREENSHOTS=$out cargo test --locked -p registry --test it -- --ignored --exact ui_browser::ui_in_a_real_browser
ls -l "$out"/*.png
