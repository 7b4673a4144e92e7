# Sourced by bench/profile.sh, bench/profile-push.sh and bench/count-fsyncs.sh: the profiling
# build (the release build with symbols), a scratch directory removed on
# exit with the server in $pid, the htpasswd file (bench / benchpw) and
# start_registry.
# BIN=<dir> measures binaries built before (another commit's, to compare):
# registry, htpasswd and examples/regbench in it.
if [ -z "${BIN:-}" ]; then
  cargo build --profile profiling --locked -p registry -p htpasswd --bins --example regbench >&2
  BIN=$PWD/target/profiling
fi
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
"$BIN/htpasswd" -nbB -C 5 bench benchpw > "$work/htpasswd"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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
  for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$port/livez" && return; sleep 0.05; done
  echo "the registry did not answer; its log:" >&2; cat "$work/registry.log" >&2; return 1
}
