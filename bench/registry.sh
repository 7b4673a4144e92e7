#!/usr/bin/env bash
# Registry benchmark: our registry next to Debian's docker-registry
# (CNCF Distribution 2.8, what registry:2 runs), same machine, same client,
# same run, both with Basic auth against the same bcrypt htpasswd file.
#
#   bench/registry.sh            # prints results, rewrites the section in docs/benchmarks.md
#   BIG_MIB=512 HUGE_MIB=2048 MANY=256 REPEAT=3 S3=1 bench/registry.sh
#
# Measures: push of one large blob docker-style (POST, one streamed PATCH,
# PUT) and its pull; 1 MiB blobs pushed at concurrency 16; manifest GET by
# tag at 32 connections (wrk); peak RSS; RSS growth while pushing and
# pulling a HUGE_MIB blob.
set -euo pipefail
cd "$(dirname "$0")/.."
BIG_MIB=${BIG_MIB:-512}
HUGE_MIB=${HUGE_MIB:-2048}
MANY=${MANY:-256}
WRK_SECONDS=${WRK_SECONDS:-10}
REPEAT=${REPEAT:-3}

./scripts/ci-deps.sh >&2
# moto_server (S3=1) lives in the virtual environment ci-deps.sh makes.
export PATH="${CI_VENV:-$PWD/.venv}/bin:$PATH"
cargo build --release --locked -p registry -p htpasswd --bins --example bench_client >&2
BIN=$PWD/target/release
CLIENT=$BIN/examples/bench_client
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

USER_=bench PASS=benchpw
# bcrypt cost 5: what `htpasswd -B` (Apache) and registry:2's docs produce.
"$BIN/htpasswd" -nbB -C 5 "$USER_" "$PASS" > "$work/htpasswd"
AUTH="Authorization: Basic $(printf '%s:%s' "$USER_" "$PASS" | base64 -w0)"
ACCEPT="Accept: application/vnd.docker.distribution.manifest.v2+json"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$1/v2/" && return 0; sleep 0.05; done; echo "server on $1 did not start" >&2; return 1; }
kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }

start_ours() {
  local port=$1 root=$2
  REGISTRY_STORAGE_FILESYSTEM_DIRECTIO=${DIRECTIO:-true} REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$root \
    REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd REGISTRY_LOG_LEVEL=warn \
    "$BIN/registry" serve >"$work/ours.log" 2>&1 &
  echo $!
}
start_ours_buffered() { DIRECTIO=false start_ours "$@"; }
# S3: both registries on one moto server (PyPI moto, S3-compatible), a bucket
# each.
S3_ENDPOINT=
start_moto() {
  local port; port=$(free_port)
  moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  pids+=($!)
  S3_ENDPOINT=http://127.0.0.1:$port
  for _ in $(seq 200); do curl -sf -o /dev/null "$S3_ENDPOINT/moto-api/" && return 0; sleep 0.05; done
  echo "moto did not start" >&2; return 1
}
start_ours_s3() {
  local port=$1
  curl -sf -X PUT "$S3_ENDPOINT/ours" >/dev/null
  REGISTRY_STORAGE=s3 REGISTRY_STORAGE_S3_BUCKET=ours REGISTRY_STORAGE_S3_REGIONENDPOINT=$S3_ENDPOINT \
    REGISTRY_STORAGE_S3_ACCESSKEY=bench REGISTRY_STORAGE_S3_SECRETKEY=bench REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true \
    REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd \
    REGISTRY_LOG_LEVEL=warn "$BIN/registry" serve >"$work/ours_s3.log" 2>&1 &
  echo $!
}
start_theirs_s3() {
  local port=$1
  curl -sf -X PUT "$S3_ENDPOINT/theirs" >/dev/null
  cat > "$work/theirs_s3.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  s3: {accesskey: bench, secretkey: bench, region: us-east-1, regionendpoint: $S3_ENDPOINT, bucket: theirs, forcepathstyle: true, secure: false, v4auth: true}
  redirect: {disable: true}
http: {addr: 127.0.0.1:$port}
auth: {htpasswd: {realm: bench, path: $work/htpasswd}}
YML
  env -u AWS_CA_BUNDLE /usr/bin/docker-registry serve "$work/theirs_s3.yml" >"$work/theirs_s3.log" 2>&1 &
  echo $!
}
start_theirs() {
  local port=$1 root=$2
  cat > "$work/theirs.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $root}}
http: {addr: 127.0.0.1:$port}
auth: {htpasswd: {realm: bench, path: $work/htpasswd}}
YML
  /usr/bin/docker-registry serve "$work/theirs.yml" >"$work/theirs.log" 2>&1 &
  echo $!
}

# median KEY JSON...: the median of one field over JSON result lines.
median() {
  local key=$1; shift
  python3 -c 'import json,statistics,sys; print(statistics.median(json.loads(l)[sys.argv[1]] for l in sys.argv[2:]))' "$key" "$@"
}

declare -A R
run_one() {
  local who=$1 port pid root
  port=$(free_port); root=$work/$who-data; mkdir -p "$root"
  pid=$("start_$who" "$port" "$root"); pids+=("$pid")
  wait_ready "$port"
  local base=http://127.0.0.1:$port
  echo "== $who (pid $pid)" >&2
  # Push/pull and the many-blobs push REPEAT times each (new blobs every
  # time); the median goes in the table, since disk and VM noise move single
  # runs by ±30%.
  local big=() many=() rps i
  for i in $(seq "$REPEAT"); do
    big+=("$("$CLIENT" "$base" "$USER_" "$PASS" big "$BIG_MIB" "$i")")
    many+=("$("$CLIENT" "$base" "$USER_" "$PASS" many "$MANY" 16 "$((10 + i))")")
  done
  "$CLIENT" "$base" "$USER_" "$PASS" image bench/app latest >/dev/null
  local rpss=()
  for i in $(seq "$REPEAT"); do
    rpss+=("{\"rps\": $(wrk -t2 -c32 -d"${WRK_SECONDS}s" -H "$AUTH" -H "$ACCEPT" "$base/v2/bench/app/manifests/latest" \
        | awk '/Requests\/sec/ {print $2}')}")
  done
  rps=$(median rps "${rpss[@]}")
  local peak; peak=$(kb "$pid" VmHWM)
  # What the memory is now: mapped files (the binary's code, libraries) and
  # anonymous (heap, stacks).
  local split; split="$(( $(kb "$pid" RssFile) / 1024 )) + $(( $(kb "$pid" RssAnon) / 1024 ))"
  # RSS growth across one huge push and pull: reset the peak, measure again.
  local before; before=$(kb "$pid" VmRSS)
  echo 5 > "/proc/$pid/clear_refs"
  local huge; huge=$("$CLIENT" "$base" "$USER_" "$PASS" big "$HUGE_MIB" 3)
  local after; after=$(kb "$pid" VmHWM)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  R[$who.push]=$(median push_mib_s "${big[@]}")
  R[$who.pull]=$(median pull_mib_s "${big[@]}")
  R[$who.many]=$(median blobs_s "${many[@]}")
  R[$who.rps]=$rps
  R[$who.peak]=$((peak / 1024))
  R[$who.growth]=$(( (after - before) / 1024 ))
  R[$who.split]=$split
  echo "$who: ${big[*]} ${many[*]} manifest_rps=$rps (${rpss[*]}) peak_rss_mib=${R[$who.peak]} huge_growth_mib=${R[$who.growth]} ($huge)" >&2
}

configs=(theirs ours ours_buffered)
for c in "${configs[@]}"; do run_one "$c"; done
if [ "${S3:-1}" = 1 ]; then
  start_moto
  configs+=(theirs_s3 ours_s3)
  run_one theirs_s3
  run_one ours_s3
fi

ratio() { python3 -c "a=float('$1'); b=float('$2'); print(f'{a/b:.1f}x' if b else 'n/a')"; }
declare -A LABEL=([theirs]="docker-registry, disk" [ours]="ours, disk" [ours_buffered]="ours, disk, O_DIRECT off" \
  [theirs_s3]="docker-registry, S3 (moto)" [ours_s3]="ours, S3 (moto)")
declare -A BASE=([theirs]=theirs [ours]=theirs [ours_buffered]=theirs [theirs_s3]=theirs_s3 [ours_s3]=theirs_s3)
row() {
  local title=$1 key=$2 line="| $1 |"
  for c in "${configs[@]}"; do
    local v=${R[$c.$key]} b=${R[${BASE[$c]}.$key]}
    if [ "$c" = "${BASE[$c]}" ] || [ "$key" = growth ] || [ "$key" = split ]; then line+=" $v |"; else line+=" $v ($(ratio "$v" "$b")) |"; fi
  done
  echo "$line"
}
header="| measure |"; sep="|---|"
for c in "${configs[@]}"; do header+=" ${LABEL[$c]} |"; sep+="---|"; done
section=$(cat <<MD
## Registry vs Debian's docker-registry (registry:2)

Command: \`bench/registry.sh\` (BIG_MIB=$BIG_MIB, HUGE_MIB=$HUGE_MIB, MANY=$MANY,
REPEAT=$REPEAT, wrk ${WRK_SECONDS}s). Every throughput figure is the median
of REPEAT runs (new blobs each time). Measured $(date -u +%Y-%m-%d) on $(nproc) cores,
$(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); the client, wrk and
(for S3) moto share the two cores with the server under test. Every server
uses Basic auth against the same bcrypt (cost 5) htpasswd file. On disk, both
fsync what they write before acknowledging it (ours by default; docker-registry
2.8 too: strace shows an fsync of the upload's data file at the end of each
PATCH and of every link it writes). Ours runs with its defaults (blob data by
\`O_DIRECT\`) and again with \`storage.filesystem.directio = false\` (blob data
through the page cache, as docker-registry does). On S3 both talk to one moto server (Python), which limits both S3
columns. Ratios in brackets are against docker-registry on the same storage.

$header
$sep
$(row "push ${BIG_MIB} MiB blob (POST, PATCH, PUT), MiB/s" push)
$(row "pull the same blob, MiB/s" pull)
$(row "push ${MANY} × 1 MiB blobs at concurrency 16, blobs/s" many)
$(row "manifest GET by tag, Basic auth, 32 connections, req/s" rps)
$(row "peak RSS over the runs above, MiB" peak)
$(row "RSS after them: file-backed + anonymous, MiB" split)
$(row "RSS growth while pushing and pulling a ${HUGE_MIB} MiB blob, MiB" growth)
MD
)
echo "$section"
doc=${BENCH_DOC:-docs/benchmarks.md}
[ -f "$doc" ] || printf '# Benchmarks\n' > "$doc"
python3 - "$doc" "$section" <<'PY'
import sys, re
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
start, end = "<!-- registry-bench:start -->", "<!-- registry-bench:end -->"
block = f"{start}\n{section}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
