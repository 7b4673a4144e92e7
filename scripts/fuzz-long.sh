#!/usr/bin/env bash
# The long fuzzing runs docs/fuzzing.md records: each target (or the ones
# named) for FUZZ_RUNS executions (default 10 million), one after another,
# at nice 19. Starts from the committed corpus; new inputs go to
# fuzz/target/corpus/<target> (minimise them into fuzz/corpus/<target> with
# `cargo fuzz cmin`). Logs: fuzz/target/logs/<target>.log, whose last lines
# are libFuzzer's final stats. FUZZ_ARGS: more libFuzzer flags (-max_len=512).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
RUNS=${FUZZ_RUNS:-10000000}
targets=${*:-$(cargo fuzz list)}
mkdir -p target/logs
for t in $targets; do
  mkdir -p "target/corpus/$t"
  echo "== $t: $RUNS runs"
  nice -n 19 cargo fuzz run -s none "$t" "target/corpus/$t" "corpus/$t" -- \
    -runs="$RUNS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 ${FUZZ_ARGS:-} \
    >"target/logs/$t.log" 2>&1 || { tail -40 "target/logs/$t.log"; exit 1; }
  grep -E '^Done|stat::' "target/logs/$t.log"
done
