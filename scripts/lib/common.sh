# shellcheck shell=bash
# Helpers shared by the shell scripts of scripts/, compose/ and bench/, one
# copy of each. Sourced, never run; the path is taken relative to the
# sourcing file, e.g. from bench/x.sh:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
#
# Sourcing it only defines functions: it sets no shell option, trap or
# global variable, so the caller's `set -euo pipefail` and traps hold as
# they were. Each function keeps its own variables local, returns a status
# instead of exiting, and prints its failure (if any) on stderr, so the
# caller decides what a failure does (under set -e an unchecked one ends
# the script).

# poll TIMEOUT CMD [ARG...]
# Runs CMD until it exits 0: at once, then again every POLL_INTERVAL
# seconds (0.5 when unset), until TIMEOUT whole seconds (bash's SECONDS)
# have passed; returns 0 as soon as CMD succeeds, 1 on timeout. Prints
# nothing itself: CMD's output is the caller's (wrap CMD in `silent` to
# drop it), and the caller says what timed out, in its own words:
#   poll 60 replicas_are 4 || fail "timed out after 60s: 4 replicas running"
# CMD runs as an `until` condition, so set -e does not end the script when
# it fails; an `exit` inside CMD (say a check that gives up early) does.
poll() {
  local timeout=$1; shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep "${POLL_INTERVAL:-0.5}"
  done
}

# silent CMD [ARG...]
# Runs CMD with its stdout and stderr dropped; its exit status is silent's.
# For probes polled until they succeed, whose failures are expected noise.
silent() { "$@" >/dev/null 2>&1; }

# free_port
# Prints a TCP port on 127.0.0.1 that was free a moment ago (the kernel's
# pick for a bind to port 0). Another process may take it before the caller
# binds it: good enough for test and benchmark servers on this machine.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_ready PORT [PATH [TIMEOUT]]
# Waits until an HTTP server on 127.0.0.1:PORT answers GET PATH (/v2/ when
# not given) with any status (a 401 counts: the server is up), trying every
# 0.05 s for TIMEOUT seconds (10). Returns 1 after "server on PORT did not
# start" on stderr when it never answered.
wait_ready() {
  local port=$1 path=${2:-/v2/} timeout=${3:-10}
  POLL_INTERVAL=0.05 poll "$timeout" curl -s -o /dev/null "http://127.0.0.1:$port$path" && return 0
  echo "server on $port did not start" >&2
  return 1
}

# build DOCKER-BUILD-ARGS...
# `docker build` that prints nothing when it works: its stdout (the image
# id, with -q) is dropped, and its stderr (the legacy builder's deprecation
# notice) is shown, on stderr, only when the build fails (status 1).
build() {
  local err
  err=$(docker build "$@" 2>&1 >/dev/null) || { echo "$err" >&2; return 1; }
}

# multiarch
# Prints this machine's Debian multiarch tuple (x86_64-linux-gnu,
# aarch64-linux-gnu, ...): the directory name under /lib and /usr/lib where
# its libraries are, for images built from the host's binaries. Asked of
# dpkg-architecture when dpkg-dev is installed; else read from where ldd
# finds the C library of a binary every machine has (/bin/sh); else
# `uname -m`-linux-gnu. (`gcc -print-multiarch` needs gcc, often absent.)
multiarch() {
  local t
  if command -v dpkg-architecture >/dev/null 2>&1 &&
    t=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null) && [ -n "$t" ]; then
    echo "$t"
    return
  fi
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)"
  t=$(ldd /bin/sh 2>/dev/null | grep -o '/lib/[^/]*-linux-[^/]*/' | head -n 1) || t=
  t=${t#/lib/}
  t=${t%/}
  if [ -n "$t" ]; then
    echo "$t"
    return
  fi
  echo "$(uname -m)-linux-gnu"
}
