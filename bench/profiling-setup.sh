# shellcheck shell=bash source-path=SCRIPTDIR
# Sourced by bench/profile.sh, bench/profile-push.sh and bench/count-fsyncs.sh: the profiling
# build (the release build with symbols), a scratch directory removed on
# exit with the server in $pid, the htpasswd file (bench / benchpw) and
# start_registry.
# BIN=<dir> measures binaries built before (another commit's, to compare):
# registry, htpasswd and examples/regbench in it.
# shellcheck source=../scripts/lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh" # free_port, wait_ready
if [ -z "${BIN:-}" ]; then
  cargo build --profile profiling --locked -p registry -p htpasswd --bins --example regbench >&2
  BIN=$PWD/target/profiling
fi
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$BIN/htpasswd" -nbB -C 5 bench benchpw > "$work/htpasswd"
# Starts the registry on a free port ($port) with that htpasswd file, its
# storage in $work/root, behind the wrapper command given (strace, say; none
# by default), and returns once it answers. $pid is what was started (the
# wrapper, when there is one).
start_registry() {
  port=$(free_port)
  REGISTRY_HTTP_ADDR=127.0.0.1:$port REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=$work/root \
    REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_PATH=$work/htpasswd REGISTRY_LOG_LEVEL=warn \
    "$@" "$BIN/registry" serve >"$work/registry.log" 2>&1 &
  pid=$!
  wait_ready "$port" /livez 20 && return
  echo "the registry's log:" >&2; cat "$work/registry.log" >&2; return 1
}
