# Sourced by bench/profile.sh, bench/profile-push.sh and bench/count-fsyncs.sh: the profiling
# build (the release build with symbols), a scratch directory removed on
# exit with the server in $pid, and the htpasswd file (bench / benchpw).
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
