#!/usr/bin/env bash
# Which fsyncs a push costs: the registry runs under strace while regbench
# pushes 256 blobs of 1 MiB docker-style (POST, one streamed PATCH, PUT),
# 16 at a time; every fsync is sorted by what it flushed (the path strace
# names) and counted per blob. docs/storage.md lists what each is for.
#
#   bench/count-fsyncs.sh
#   REPEAT=3 bench/count-fsyncs.sh     # more blobs: new prefix directories
#                                      # weigh less
#
# Needs strace (apt-get install strace). Builds `--profile profiling`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-1}
command -v strace >/dev/null || { echo "count-fsyncs.sh: needs strace (apt-get install strace)" >&2; exit 1; }
. bench/profiling-setup.sh
start_registry strace -f -qq -y -e trace=fsync,fdatasync -o "$work/trace"
tracer=$pid
# The registry, not strace: strace does not pass SIGTERM on.
pid=$(pgrep -P "$tracer")
"$BIN/examples/regbench" --url "http://127.0.0.1:$port" --user bench --password benchpw \
  --repeat "$REPEAT" --sizes 1 --only push_1m_x256_c16 >"$work/out.json"
# The trace is whole once strace has exited.
kill "$pid"; wait "$tracer" || true; pid=
python3 - "$work/trace" "$work/root" $((256 * REPEAT)) <<'PY'
import collections, re, sys
trace, root, blobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
v2 = "/docker/registry/v2/"
kinds = [
    # (what, pattern on the path below docker/registry/v2/), first match wins
    ("chunk data, end of the PATCH", r"repositories/.*/_uploads/[^/]+/chunks/"),
    ("digest directory, after the rename into it", r"^blobs/sha256/[0-9a-f]{2}/[0-9a-f]{64}$"),
    ("prefix directory, for a new digest directory", r"^blobs/sha256/[0-9a-f]{2}$"),
    ("blobs/sha256, for a new prefix directory", r"^blobs(/sha256)?$"),
    ("link file data, before its rename", r"/_layers/sha256/[0-9a-f]{64}/link#"),
    ("link directory, after the rename", r"/_layers/sha256/[0-9a-f]{64}$"),
    ("_layers/sha256, for a new link directory", r"/_layers(/sha256)?$"),
]
counts = collections.Counter()
for line in open(trace):
    # A call another thread interrupted is printed "<unfinished ...>" and
    # "resumed" later: count its first line.
    m = re.search(r"f(?:data)?sync\(\d+<([^>]*)>", line)
    if not m:
        continue
    path = m.group(1)
    rel = path.split(v2, 1)[1] if v2 in path else path
    other = re.sub(r"#\d+$", "#<n>", re.sub(r"[0-9a-f]{64}", "<digest>", rel))
    other = re.sub(r"_uploads/[^/]+", "_uploads/<id>", other)
    what = next((k for k, p in kinds if re.search(p, rel)), f"other: {other}")
    counts[what] += 1
total = sum(counts.values())
print(f"fsyncs: {total} for {blobs} blobs pushed docker-style, {total / blobs:.2f} per blob")
for what, n in counts.most_common():
    print(f"  {n / blobs:5.2f} per blob  {what}")
PY
