#!/usr/bin/env bash
# Token auth benchmark: what token verification costs per request, and
# manifest GET by tag at 32 connections (wrk) in token mode next to Basic
# mode, same binary, same storage, same bcrypt htpasswd file.
#
#   bench/token.sh          # prints results, rewrites the "Token auth" section of docs/benchmarks.md
#   WRK_SECONDS=20 ROUNDS=3 bench/token.sh
#
# Each round runs Basic then token mode; the table reports the median round
# of each (the client shares the two cores with the server).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=../scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh" # free_port, wait_ready
cd "$(dirname "$0")/.."
WRK_SECONDS=${WRK_SECONDS:-10}
ROUNDS=${ROUNDS:-3}

./scripts/ci-deps.sh >&2
cargo build --release --locked -p registry -p htpasswd --bins --example bench_client --example token_bench >&2
BIN=$PWD/target/release
CLIENT=$BIN/examples/bench_client
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

USER_=bench PASS=benchpw
"$BIN/htpasswd" -nbB -C 5 "$USER_" "$PASS" > "$work/htpasswd"
ACCEPT="Accept: application/vnd.docker.distribution.manifest.v2+json"
BASIC="Authorization: Basic $(printf '%s:%s' "$USER_" "$PASS" | base64 -w0)"

# 1. Verification cost, ES256 (the generated default), RS256, EdDSA.
openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa2048.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/ed25519.pem" 2>/dev/null
verify_json=$(cd "$work" && "$BIN/examples/token_bench" rsa2048.pem ed25519.pem)
echo "$verify_json" >&2

root=$work/storage
printf '[auth.token]\nsigning_key = "%s"\n' "$work/token-key.pem" > "$work/config.toml"
start() { # mode port
  REGISTRY_CONFIG_FILE=$work/config.toml REGISTRY_HTTP_ADDR=127.0.0.1:$2 REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$root \
    REGISTRY_AUTH=$1 REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd REGISTRY_LOG_LEVEL=warn \
    "$BIN/registry" serve >>"$work/registry.log" 2>&1 &
  pid=$!
  wait_ready "$2" /livez
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
wrk_rps() { # header url
  wrk -t2 -c32 -d"${WRK_SECONDS}s" -H "$1" -H "$ACCEPT" "$2" | tee -a "$work/wrk.txt" | awk '/Requests\/sec/ {print $2}'
}

# The image, pushed once in Basic mode.
port=$(free_port); start htpasswd "$port"
"$CLIENT" "http://127.0.0.1:$port" "$USER_" "$PASS" image bench/app latest >/dev/null
stop

basic=() token=()
for round in $(seq "$ROUNDS"); do
  port=$(free_port); start htpasswd "$port"
  url=http://127.0.0.1:$port/v2/bench/app/manifests/latest
  test "$(curl -s -o /dev/null -w '%{http_code}' -H "$BASIC" -H "$ACCEPT" "$url")" = 200
  basic+=("$(wrk_rps "$BASIC" "$url")")
  stop

  port=$(free_port); start token "$port"
  url=http://127.0.0.1:$port/v2/bench/app/manifests/latest
  tok=$(curl -s -u "$USER_:$PASS" "http://127.0.0.1:$port/auth/token?service=registry&scope=repository:bench/app:pull" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  BEARER="Authorization: Bearer $tok"
  test "$(curl -s -o /dev/null -w '%{http_code}' -H "$BEARER" -H "$ACCEPT" "$url")" = 200
  token+=("$(wrk_rps "$BEARER" "$url")")
  stop
  echo "round $round: basic ${basic[-1]} req/s, token ${token[-1]} req/s" >&2
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mb=$(median "${basic[@]}"); mt=$(median "${token[@]}")
ratio=$(python3 -c "print(f'{float(\"$mt\")/float(\"$mb\")*100:.0f}%')")
rows=$(echo "$verify_json" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("| {alg} ({key}) | {token_bytes} | {full_us:.1f} | {cached_us:.2f} |".format(**r))')

section=$(cat <<MD
## Token auth

Command: \`bench/token.sh\` (WRK_SECONDS=$WRK_SECONDS, ROUNDS=$ROUNDS). Measured
$(date -u +%Y-%m-%d) on $(nproc) cores, $(uname -r); wrk and the server share
the cores. Release build, one process at a time.

Token verification (\`registry/examples/token_bench.rs\`, µs per call, one
thread). *Full* is the whole check (header, key by \`kid\`, signature,
\`iss\`/\`aud\`/\`exp\`/\`nbf\`, claims): what the first request with a token
costs. *Cached* is what every later request with the same token costs (the
verified token is remembered until it expires, keyed by its SHA-256).

| algorithm (key) | token bytes | full verify, µs | cached, µs |
|---|---:|---:|---:|
$rows

Manifest GET by tag (\`wrk -t2 -c32 -d${WRK_SECONDS}s\`), the same image and
storage, bcrypt (cost 5) htpasswd; Basic mode with the successful-login cache,
token mode with one ES256 token from the built-in endpoint. Median of
$ROUNDS rounds (each: Basic, then token).

| mode | req/s (median) | all rounds |
|---|---:|---|
| Basic (htpasswd) | $mb | ${basic[*]} |
| token (ES256 bearer) | $mt | ${token[*]} |
| token / Basic | $ratio | |
MD
)
echo "$section"
doc=docs/benchmarks.md
[ -f "$doc" ] || printf '# Benchmarks\n' > "$doc"
python3 - "$doc" "$section" <<'PY'
import sys, re
path, section = sys.argv[1], sys.argv[2]
text = open(path).read()
start, end = "<!-- token-bench:start -->", "<!-- token-bench:end -->"
block = f"{start}\n{section}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
