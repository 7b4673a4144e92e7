#!/usr/bin/env bash
# Where a request's time goes: instruction counts per request under
# callgrind (counts instructions, not seconds, so a loaded machine does not
# change them), for the requests a pull makes first, with the metadata cache
# off (`storage.cache.ttl = 0s`: every request reads storage, as before the
# cache) and on (the default).
#
#   bench/profile.sh                 # prints a table and the top functions per case
#   N=500 bench/profile.sh
#
# Builds `--profile profiling` (the release build with symbols). Collection
# is switched on only around the N requests (callgrind_control -i), after a
# warm-up, so start-up and the push that fills the registry do not count.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300}
command -v valgrind >/dev/null || { echo "profile.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
. bench/profiling-setup.sh

declare -A IR
profile() { # name ttl
  local name=$1 ttl=$2 port; port=$(free_port)
  REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$work/$name \
    REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd REGISTRY_LOG_LEVEL=warn REGISTRY_STORAGE_CACHE_TTL=$ttl \
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$name.out" \
    "$BIN/registry" serve >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$port/livez" && break; sleep 0.1; done
  local base=http://127.0.0.1:$port
  # The image: an index over a manifest (regbench's setup, via its rate scenario).
  "$BIN/examples/regbench" --url "$base" --user bench --password benchpw --repeat 1 --only rate_v2 \
    --wrk-seconds 1 >/dev/null 2>&1 || true
  local digest
  digest=$(curl -s -u bench:benchpw -H 'Accept: application/vnd.oci.image.index.v1+json' \
    -D - -o /dev/null "$base/v2/bench/app/manifests/latest" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
  local layer
  layer=$(curl -s -u bench:benchpw -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$base/v2/bench/app/manifests/amd64" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
  local -a cases=(
    "manifest_tag_get GET /v2/bench/app/manifests/latest"
    "manifest_tag_head HEAD /v2/bench/app/manifests/latest"
    "manifest_digest_get GET /v2/bench/app/manifests/$digest"
    "manifest_digest_head HEAD /v2/bench/app/manifests/$digest"
    "blob_head HEAD /v2/bench/app/blobs/$layer"
    "tags_list_1000 GET /v2/bench/tags/tags/list"
    "v2 GET /v2/"
  )
  for c in "${cases[@]}"; do
    read -r what method path <<<"$c"
    local urls=() head=()
    [ "$method" = HEAD ] && head=(-I)
    for _ in $(seq "$N"); do urls+=("$base$path"); done
    # Warm-up (connections, caches), then N requests on one keep-alive connection.
    curl -s "${head[@]}" -u bench:benchpw -H 'Accept: application/vnd.oci.image.index.v1+json' -o /dev/null "${urls[@]:0:20}"
    callgrind_control -z "$pid" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    curl -s "${head[@]}" -u bench:benchpw -H 'Accept: application/vnd.oci.image.index.v1+json' -o /dev/null "${urls[@]}"
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$name-$what" "$pid" >/dev/null
    local file; file=$(ls -t "$work/$name.out"* | head -1)
    local total; total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); t=$1} END {print t}')
    IR[$name.$what]=$(( total / N ))
    echo "== $name $what: $(( total / N )) instructions per request" >&2
    callgrind_annotate --inclusive=yes "$file" 2>/dev/null | grep -v '^-' | sed -n '/file:function/,$p' | head -25 > "$work/$name-$what.top" || true
    cp "$work/$name-$what.top" "${PROFILE_OUT:-/tmp}/profile-$name-$what.txt"
    # The raw callgrind file too, for callgrind_annotate with other options.
    cp "$file" "${PROFILE_OUT:-/tmp}/profile-$name-$what.callgrind"
    # Self cost: where the instructions are spent, not whose futures nest.
    callgrind_annotate "$file" 2>/dev/null | grep -v '^-' | sed -n '/file:function/,$p' | head -40 \
      > "${PROFILE_OUT:-/tmp}/profile-$name-$what.self.txt" || true
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
# PROFILES="cached": only that run (its table column stays empty).
for p in ${PROFILES:-uncached cached}; do
  case $p in uncached) profile uncached 0s ;; cached) profile cached 1s ;; esac
done
echo
echo "| request ($N on one connection, Basic auth) | cache off (ttl 0s) | cache on (ttl 1s) | ratio |"
echo "|---|---:|---:|---:|"
for what in manifest_tag_get manifest_tag_head manifest_digest_get manifest_digest_head blob_head tags_list_1000 v2; do
  a=${IR[uncached.$what]:-0} b=${IR[cached.$what]:-0}
  echo "| $what | $a | $b | $(python3 -c "print(f'{$a/$b:.1f}x' if $b else 'n/a')") |"
done
echo
echo "Top inclusive functions per case: ${PROFILE_OUT:-/tmp}/profile-*.txt"
