#!/usr/bin/env bash
# Registry benchmark: our registry next to Debian's docker-registry
# (CNCF Distribution 2.8, what registry:2 runs), same machine, same client
# (regbench: registry/examples/regbench), same run, both with Basic auth
# against the same bcrypt htpasswd file.
#
#   bench/registry.sh            # prints results, rewrites the section in docs/benchmarks.md
#                                # and docs/benchmarks/registry.json
#   SIZES=64,512 HUGE_MIB=2048 REPEAT=3 WRK_SECONDS=5 STORMS=16,64 S3=1 bench/registry.sh
#
# regbench measures (medians of REPEAT runs): pushes docker-style,
# monolithic and chunked; pulls; 256 x 1 MiB pushed and pulled at
# concurrency 16; request rates by wrk at 32 connections (GET /v2/,
# manifests by tag and digest, blob HEAD, a 1,000-tag list, catalog); pull
# storms of STORMS new clients (per-client p50/p99/max, server CPU-seconds
# per pull, bytes the server read per blob byte served). This script adds
# peak RSS and RSS growth while pushing and pulling a HUGE_MIB blob. Runs on
# a busy machine (CPU not idle before a scenario) are marked in the table.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=../scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh" # free_port, wait_ready
cd "$(dirname "$0")/.."
SIZES=${SIZES:-64,512}
HUGE_MIB=${HUGE_MIB:-2048}
WRK_SECONDS=${WRK_SECONDS:-5}
REPEAT=${REPEAT:-3}
STORMS=${STORMS:-16,64}

[ -n "${RENDER_FROM:-}" ] || ./scripts/ci-deps.sh >&2
# moto_server (S3=1) lives in the virtual environment ci-deps.sh makes.
export PATH="${CI_VENV:-$PWD/.venv}/bin:$PATH"
# NO_BUILD=1: measure the binaries already in target/release.
[ -n "${RENDER_FROM:-}" ] || [ "${NO_BUILD:-0}" = 1 ] || cargo build --release --locked -p registry -p htpasswd --bins --example regbench --example floor_registry >&2
BIN=$PWD/target/release
BENCH=$BIN/examples/regbench
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

USER_=bench PASS=benchpw
# bcrypt cost 5: what `htpasswd -B` (Apache) and registry:2's docs produce.
"$BIN/htpasswd" -nbB -C 5 "$USER_" "$PASS" > "$work/htpasswd"

kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }

start_ours() {
  local port=$1 root=$2
  REGISTRY_STORAGE_FILESYSTEM_DIRECTIO=${DIRECTIO:-true} REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$root \
    REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd REGISTRY_LOG_LEVEL=warn \
    "$BIN/registry" serve >"$work/ours.log" 2>&1 &
  echo $!
}
start_ours_buffered() { DIRECTIO=false start_ours "$@"; }
# The client's ceiling: upload bodies read and dropped, pulls sent from one
# buffer; no auth, no hashing (registry/examples/floor_registry.rs). Pushes and pulls
# only.
start_floor() {
  "$BIN/examples/floor_registry" "127.0.0.1:$1" >"$work/floor.log" 2>&1 &
  echo $!
}
# The metadata cache off (every request reads storage, as before it existed).
start_ours_nocache() { REGISTRY_STORAGE_CACHE_TTL=0s start_ours "$@"; }
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

declare -A R
# regbench's --only for a config: ONLY, or everything ("" matches every
# scenario); the floor answers pushes and pulls only.
only_for() {
  if [ "$1" = floor ]; then echo "${ONLY:-push_,pull_}"; else echo "${ONLY:-}"; fi
}
run_one() {
  local who=$1 port pid root
  port=$(free_port); root=$work/$who-data; mkdir -p "$root"
  pid=$("start_$who" "$port" "$root"); pids+=("$pid")
  wait_ready "$port"
  local base=http://127.0.0.1:$port
  echo "== $who (pid $pid)" >&2
  "$BENCH" --url "$base" --user "$USER_" --password "$PASS" --pid "$pid" --repeat "$REPEAT" \
    --sizes "$SIZES" --storms "$STORMS" --wrk-seconds "$WRK_SECONDS" --only "$(only_for "$who")" > "$work/$who.json"
  local peak; peak=$(kb "$pid" VmHWM)
  # What the memory is now: mapped files (the binary's code, libraries) and
  # anonymous (heap, stacks).
  local split; split="$(( $(kb "$pid" RssFile) / 1024 )) + $(( $(kb "$pid" RssAnon) / 1024 ))"
  # RSS growth across one huge push and pull: reset the peak, measure again.
  local before; before=$(kb "$pid" VmRSS)
  echo 5 > "/proc/$pid/clear_refs"
  "$BENCH" --url "$base" --user "$USER_" --password "$PASS" --repeat 1 --seed 7 --sizes "$HUGE_MIB" \
    --only "push_${HUGE_MIB}m_streamed,pull_${HUGE_MIB}m" > "$work/$who-huge.json"
  local after; after=$(kb "$pid" VmHWM)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '{"peak_rss_mib": %s, "rss_split": "%s", "huge_growth_mib": %s}\n' \
    "$((peak / 1024))" "$split" "$(( (after - before) / 1024 ))" > "$work/$who-rss.json"
}

# CONFIGS: which servers, in table order (ratios are against the first):
# theirs ours ours_buffered ours_nocache floor. ONLY: regbench's --only.
# RENDER_FROM=<dir>: no measuring, only the table, from an earlier run's
# JSON files kept in <dir> (<config>.json, -huge.json, -rss.json).
read -r -a configs <<<"${CONFIGS:-theirs ours ours_buffered ours_nocache floor}"
if [ -n "${RENDER_FROM:-}" ]; then
  work=$RENDER_FROM; trap - EXIT
else
  for c in "${configs[@]}"; do run_one "$c"; done
fi
if [ "${S3:-0}" = 1 ] && [ -z "${RENDER_FROM:-}" ]; then
  start_moto
  configs+=(theirs_s3 ours_s3)
  run_one theirs_s3
  run_one ours_s3
fi

doc=${BENCH_DOC:-docs/benchmarks.md}
mark=${MARK:-registry-bench}
json_out=${BENCH_JSON:-docs/benchmarks/$mark.json}
mkdir -p "$(dirname "$json_out")"
[ -f "$doc" ] || printf '# Benchmarks\n' > "$doc"
machine="$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)"
theirs_version=$(/usr/bin/docker-registry --version 2>/dev/null | head -1 || echo unknown)
ours_version="$(git describe --always --dirty 2>/dev/null || echo unknown)"
command_line="SIZES=$SIZES HUGE_MIB=$HUGE_MIB REPEAT=$REPEAT WRK_SECONDS=$WRK_SECONDS STORMS=$STORMS S3=${S3:-0}${CONFIGS:+ CONFIGS=\"$CONFIGS\"}${ONLY:+ ONLY=$ONLY}${MARK:+ MARK=$MARK} bench/registry.sh"
python3 - "$doc" "$json_out" "$work" "$machine" "$theirs_version" "$ours_version" "$command_line" "$mark" "${configs[@]}" <<'PY'
import json, re, sys, datetime
doc, json_out, work, machine, theirs_v, ours_v, cmdline, mark, *configs = sys.argv[1:]
label = {"theirs": "docker-registry, disk", "ours": "ours, disk", "ours_buffered": "ours, disk, O_DIRECT off",
         "ours_nocache": "ours, disk, metadata cache off", "floor": "floor: stores nothing, no auth, no hashing",
         "theirs_s3": "docker-registry, S3 (moto)", "ours_s3": "ours, S3 (moto)"}
base = {c: configs[0] for c in configs}
if "theirs_s3" in configs:
    base.update({"theirs_s3": "theirs_s3", "ours_s3": "theirs_s3"})
data = {}
for c in configs:
    d = json.load(open(f"{work}/{c}.json"))["results"]
    d.update(json.load(open(f"{work}/{c}-huge.json"))["results"])
    d["rss"] = json.load(open(f"{work}/{c}-rss.json"))
    data[c] = d
names = {
    "rate_v2": "GET /v2/ (auth only), req/s",
    "rate_manifest_tag_get": "manifest GET by tag, req/s",
    "rate_manifest_tag_head": "manifest HEAD by tag, req/s",
    "rate_manifest_digest_get": "manifest GET by digest, req/s",
    "rate_manifest_digest_head": "manifest HEAD by digest, req/s",
    "rate_blob_head": "blob HEAD, req/s",
    "rate_tags_list_1000": "tags list, 1,000 tags, req/s",
    "rate_catalog": "catalog, req/s",
    "push_1m_x256_c16": "push 256 x 1 MiB at concurrency 16, blobs/s",
    "pull_1m_x256_c16": "pull 256 x 1 MiB at concurrency 16, blobs/s",
}
def title(k):
    if k in names: return names[k]
    m = re.match(r"push_(\d+)m_(\w+)", k)
    if m: return f"push {m.group(1)} MiB, {m.group(2)}, MiB/s"
    m = re.match(r"pull_(\d+)m", k)
    if m: return f"pull {m.group(1)} MiB, MiB/s"
    return k
def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"
busy_seen = False
def cell(c, k, field="median", higher_is_better=True):
    global busy_seen
    r = data[c].get(k)
    if not isinstance(r, dict) or field not in r:
        return "n/a"
    v = r[field]
    s = fmt(v)
    if r.get("busy"):
        s += " †"; busy_seen = True
    b = data[base[c]].get(k)
    if c != base[c] and isinstance(b, dict) and b.get(field):
        ratio = v / b[field] if higher_is_better else b[field] / v if v else float("nan")
        s += f" ({ratio:.1f}x)"
    return s
keys = [k for k in data[configs[0]] if k not in ("rss",) and not k.startswith("storm_")]
order = lambda k: (0 if k.startswith("push") else 1 if k.startswith("pull") else 2, k)
rows = []
head = "| measure | " + " | ".join(label[c] for c in configs) + " |"
rows.append(head)
rows.append("|---|" + "---|" * len(configs))
for k in sorted(keys, key=order):
    rows.append(f"| {title(k)} | " + " | ".join(cell(c, k) for c in configs) + " |")
storms = sorted({k for c in configs for k in data[c] if k.startswith("storm_")}, key=lambda k: int(k.split("_")[1]))
for k in storms:
    n = k.split("_")[1]
    for field, what, better in [("p50", "per-client time p50, s", False), ("p99", "p99, s", False), ("max", "max, s", False),
                                ("cpu_seconds_per_pull", "server CPU-seconds per pull", False),
                                ("read_bytes_per_blob_byte", "bytes read from storage per blob byte served", False)]:
        rows.append(f"| pull storm, {n} clients: {what} | " + " | ".join(cell(c, k, field, better) for c in configs) + " |")
for field, what in [("peak_rss_mib", "peak RSS over the runs above, MiB"), ("rss_split", "RSS after them: file-backed + anonymous, MiB"),
                    ("huge_growth_mib", "RSS growth while pushing and pulling the huge blob, MiB")]:
    # The floor stores nothing: its RSS says nothing about a registry.
    rows.append(f"| {what} | " + " | ".join("n/a" if c == "floor" else str(data[c]["rss"][field]) for c in configs) + " |")
today = datetime.date.today().isoformat()
repeat = json.load(open(f"{work}/{configs[0]}.json"))["repeat"]
extra_configs = "".join(text for c, text in [
    ("ours_buffered", ", again with `storage.filesystem.directio = false`"),
    ("ours_nocache", ", again with the metadata cache off (`storage.cache.ttl = \"0s\"`)"),
    ("floor", "; the floor is registry/examples/floor_registry.rs, which keeps only lengths and serves a pull from one buffer: "
              "what the client, loopback and the shared cores leave to any server")] if c in configs)
busy_note = ("\n\n† measured while the machine was busy (more than 25 % of its CPU not idle before the scenario, "
             "with the server idle): compare columns of this run only.") if busy_seen else ""
section = f"""## Registry vs Debian's docker-registry (registry:2)

Command: `{cmdline}`, measured {today} on {machine}.
Versions: ours `{ours_v}`; theirs `{theirs_v}`. Client: `regbench`
(registry/examples/regbench; medians of {repeat} runs each; JSON with every run:
[benchmarks/{mark}.json](benchmarks/{mark}.json)); the client, wrk and (for S3) moto share the
cores with the server under test. Every server uses Basic auth against the same bcrypt (cost 5) htpasswd
file. On disk both fsync what they acknowledge (ours: docs/storage.md, "Which writes are fsynced";
docker-registry 2.8 fsyncs each PATCH's data and every link). Ours runs with its defaults (blob data by
`O_DIRECT`){extra_configs}. Pushes: streamed = docker's POST, one
streamed PATCH, PUT; monolithic = POST, PUT with the body; chunked = 16 MiB PATCHes with Content-Range.
Pull storm: new clients at once, each as `docker pull` does (challenge, credentials, index, manifest,
config, three 4 MiB layers three at a time); CPU and reads from `/proc/<pid>` (`rchar`). Pulls read the
blob pushed just before, {repeat} times: the first read of it, then reads of a blob the server has read
before. Ratios in
brackets are against docker-registry on the same storage (for times: theirs / ours, so higher is better
too).

""" + "\n".join(rows) + busy_note
print(section)
text = open(doc).read()
start, end = f"<!-- {mark}:start -->", f"<!-- {mark}:end -->"
block = f"{start}\n{section}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(doc, "w").write(text)
json.dump({"date": today, "machine": machine, "command": cmdline, "versions": {"ours": ours_v, "docker-registry": theirs_v},
           "configs": {c: data[c] for c in configs}}, open(json_out, "w"), indent=1)
PY
