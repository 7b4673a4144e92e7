#!/usr/bin/env bash
# Pull-through cache benchmark: our registry (`REGISTRY_PROXY_REMOTEURL`)
# next to Debian's docker-registry in proxy mode (`proxy.remoteurl`, what
# registry:2 runs), same upstream (a docker-registry with its access log on),
# same client, one run.
#
#   bench/proxy.sh                  # prints the results (markdown)
#   LAYERS=3 LAYER_MIB=8 CLIENTS=20 WRK_SECONDS=10 WARM_ROUNDS=9 bench/proxy.sh
#
# Per mirror: a cold pull of one image (Docker schema2: config + LAYERS
# layers of LAYER_MIB), a warm pull, then on fresh storage CLIENTS
# concurrent cold pulls; for each, the time and what the upstream served
# (requests by kind, bytes, from its access log). Then warm manifest GETs by
# tag with wrk (p50/p99). Set UPDATE_DOCS=1 to replace the section in
# docs/benchmarks.md.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=../scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh" # free_port, wait_ready
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-3}
LAYER_MIB=${LAYER_MIB:-8}
CLIENTS=${CLIENTS:-20}
WRK_SECONDS=${WRK_SECONDS:-10}
WARM_ROUNDS=${WARM_ROUNDS:-9}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --release --locked -p registry --bins >&2
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
BIN=$TARGET/release/registry
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

distribution() { # name port extra-yaml access-log(true|false)
  local name=$1 port=$2 extra=$3 log=$4
  mkdir -p "$work/$name"
  cat >"$work/$name.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: $([ "$log" = true ] && echo false || echo true)
storage:
  filesystem:
    rootdirectory: $work/$name/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: bench-proxy
$extra
EOF
  /usr/bin/docker-registry serve "$work/$name.yml" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "$port"
}

UP_PORT=$(free_port)
distribution upstream "$UP_PORT" "" true
UPSTREAM=http://127.0.0.1:$UP_PORT

# The image: random layers, pushed POST + PUT as docker-registry accepts.
python3 - "$UPSTREAM" "$LAYERS" "$LAYER_MIB" <<'EOF'
import hashlib, json, os, sys, urllib.request
base, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def req(method, url, data=None, headers={}):
    r = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(r)
def push(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = req("POST", f"{base}/v2/bench/image/blobs/uploads/").headers["Location"]
    if loc.startswith("/"): loc = base + loc
    sep = "&" if "?" in loc else "?"
    req("PUT", f"{loc}{sep}digest={d}", data, {"Content-Type": "application/octet-stream"})
    return d
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
layers = [os.urandom(mib << 20) for _ in range(n)]
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": push(config)},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(l), "digest": push(l)} for l in layers],
}).encode()
req("PUT", f"{base}/v2/bench/image/manifests/v1", manifest,
    {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
EOF

start_theirs() { # storage-name port
  distribution "$1" "$2" "proxy:
  remoteurl: $UPSTREAM" false
}
start_ours() { # storage-name port
  mkdir -p "$work/$1"
  REGISTRY_HTTP_ADDR=127.0.0.1:$2 REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$work/$1/data \
    REGISTRY_AUTH=none REGISTRY_LOG_LEVEL=error REGISTRY_PROXY_REMOTEURL=$UPSTREAM \
    REGISTRY_STORAGE_FILESYSTEM_FSYNC=${FSYNC:-true} \
    REGISTRY_STORAGE_FILESYSTEM_DIRECTIO=${DIRECTIO:-true} \
    "$BIN" serve >"$work/$1.log" 2>&1 &
  pids+=($!)
  wait_ready "$2"
}
# docker-registry never fsyncs; ours does by default before a blob is
# acknowledged (here: before its last byte reaches the clients).
start_ours_nofsync() { FSYNC=false start_ours "$@"; }
# Blob data through the page cache (storage.filesystem.directio = false):
# what O_DIRECT costs a warm pull.
start_ours_nodirect() { DIRECTIO=false start_ours "$@"; }
# The client's floor: a server that has the image in memory already and
# only writes it out (Python's threading HTTP server; it fetches the image
# from the upstream once at start). No mirror can serve a warm pull faster
# to this client than the client can read it.
start_floor() { # storage-name port
  python3 - "$UPSTREAM" "$2" <<'PY' >"$work/$1.log" 2>&1 &
import http.server, json, socketserver, sys, urllib.request
upstream, port = sys.argv[1], int(sys.argv[2])
accept = "application/vnd.docker.distribution.manifest.v2+json"
r = urllib.request.urlopen(urllib.request.Request(f"{upstream}/v2/bench/image/manifests/v1", headers={"Accept": accept}))
manifest = r.read()
m = json.loads(manifest)
blobs = {d["digest"]: urllib.request.urlopen(f"{upstream}/v2/bench/image/blobs/{d['digest']}").read()
         for d in [m["config"]] + m["layers"]}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/v2/":
            body, ctype = b"{}", "application/json"
        elif self.path.endswith("/manifests/v1"):
            body, ctype = manifest, accept
        elif self.path.split("/")[-1] in blobs:
            body, ctype = blobs[self.path.split("/")[-1]], "application/octet-stream"
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
S(("127.0.0.1", port), H).serve_forever()
PY
  pids+=($!)
  wait_ready "$2"
}
stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# Pulls the image CLIENTS times at once from the mirror on port $1, as a
# client does (manifest by tag, then config and layers by digest, bodies
# read whole); prints the seconds the slowest took. With ROUNDS, that many
# times one after the other, printing the median.
pull() { # port clients [rounds]
  python3 - "$1" "$2" "${3:-1}" <<'EOF'
import json, statistics, sys, threading, time, urllib.request
port, clients, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}/v2/bench/image"
accept = "application/vnd.docker.distribution.manifest.v2+json"
errors = []
def one():
    try:
        r = urllib.request.urlopen(urllib.request.Request(f"{base}/manifests/v1", headers={"Accept": accept}))
        m = json.loads(r.read())
        for d in [m["config"]] + m["layers"]:
            with urllib.request.urlopen(f"{base}/blobs/{d['digest']}") as b:
                got = 0
                while chunk := b.read(1 << 20):
                    got += len(chunk)
            assert got == d["size"], (got, d["size"])
    except Exception as e:
        errors.append(repr(e))
times = []
for _ in range(rounds):
    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    if errors: sys.exit(f"pull failed: {errors[:3]}")
    times.append(time.monotonic() - start)
print(f"{statistics.median(times):.3f}")
EOF
}

# What the upstream served since line $1 of its access log:
# "manifests N, blobs N, MiB M".
served_since() {
  tail -n +"$(( $1 + 1 ))" "$work/upstream.log" | awk '
    /"(GET|HEAD) \/v2\/bench\/image\/manifests\// { m++ }
    /"GET \/v2\/bench\/image\/blobs\// { b++ }
    /"(GET|HEAD) \/v2\/bench\/image\// { split($0, q, "\""); split(q[3], f, " "); bytes += f[2] }
    END { printf "%d manifest, %d blob requests, %.1f MiB", m, b, bytes / 1048576 }'
}
log_lines() { wc -l <"$work/upstream.log"; }

rows=()
wrk_rows=()
for who in ${MIRRORS:-theirs ours ours_nofsync ours_nodirect floor}; do
  port=$(free_port)
  "start_$who" "$who-1" "$port"
  mark=$(log_lines); t=$(pull "$port" 1); rows+=("| $who | cold pull | $t s | $(served_since "$mark") |")
  mark=$(log_lines); t=$(pull "$port" 1 "$WARM_ROUNDS"); rows+=("| $who | warm pull (median of $WARM_ROUNDS) | $t s | $(served_since "$mark") |")
  if [ "$who" != floor ] && command -v wrk >/dev/null; then
    mark=$(log_lines)
    out=$(wrk -t2 -c16 -d"${WRK_SECONDS}s" --latency -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
      "http://127.0.0.1:$port/v2/bench/image/manifests/v1")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    wrk_rows+=("| $who | $rps | $p50 | $p99 | $(served_since "$mark") |")
  fi
  stop_last
  port=$(free_port)
  "start_$who" "$who-2" "$port"
  mark=$(log_lines); t=$(pull "$port" "$CLIENTS"); rows+=("| $who | $CLIENTS concurrent cold pulls | $t s | $(served_since "$mark") |")
  stop_last
done

image_mib=$(( LAYERS * LAYER_MIB ))
{
  echo "## Pull-through cache vs docker-registry's proxy mode"
  echo
  echo "Command: \`bench/proxy.sh\` (LAYERS=$LAYERS, LAYER_MIB=$LAYER_MIB, CLIENTS=$CLIENTS, WRK_SECONDS=$WRK_SECONDS, WARM_ROUNDS=$WARM_ROUNDS). Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores."
  echo "Upstream: Debian's docker-registry ($(/usr/bin/docker-registry --version 2>/dev/null | head -1)), no auth, one Docker schema2 image"
  echo "of a config and $LAYERS layers of $LAYER_MIB MiB (${image_mib} MiB). theirs: the same docker-registry in proxy mode (\`proxy.remoteurl\`);"
  echo "ours: \`REGISTRY_PROXY_REMOTEURL\` (tag_ttl 5m), with fsync (the default), without (ours_nofsync, as docker-registry, which never fsyncs), and with blob data through the page cache (ours_nodirect: \`storage.filesystem.directio = false\`). floor: no mirror, the image in a Python server's memory (what the client alone takes; its cold rows fetch nothing)."
  echo "Client: Python, manifest by tag then every blob, bodies read whole. Load average at the start: $load_at_start (other builds shared the machine)."
  echo
  echo "| mirror | run | time | upstream served |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  if [ ${#wrk_rows[@]} -gt 0 ]; then
    echo
    echo "Warm manifest GETs by tag (wrk, 2 threads, 16 connections, ${WRK_SECONDS} s):"
    echo
    echo "| mirror | requests/s | p50 | p99 | upstream served meanwhile |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${wrk_rows[@]}"
  fi
} | tee "$work/section.md"

if [ "${UPDATE_DOCS:-0}" = 1 ]; then
  python3 - "$work/section.md" docs/benchmarks.md <<'EOF'
import re, sys
section, path = open(sys.argv[1]).read(), sys.argv[2]
doc = open(path).read()
title = "## Pull-through cache vs docker-registry's proxy mode"
pattern = re.compile(re.escape(title) + r".*?(?=\n## |\Z)", re.S)
doc = pattern.sub(section.rstrip("\n") + "\n", doc) if title in doc else doc.rstrip("\n") + "\n\n" + section
open(path, "w").write(doc)
EOF
fi
