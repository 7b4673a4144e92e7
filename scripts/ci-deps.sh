#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine. Idempotent and
# quiet when everything is already there.
#
# System tools come from apt. The Python tools (scripts/ci-requirements.txt:
# moto_server, kubernetes-validate, locust) go into a virtual environment,
# because Debian 12's system Python refuses `pip install` (PEP 668,
# EXTERNALLY-MANAGED):
#
#   CI_VENV   where the virtual environment lives (default: .venv at the
#             repository root, ignored by git; one per clone or worktree)
#   CI_PYTHON the interpreter it is made from (default: Debian's /usr/bin/python3
#             where it exists, else python3 on PATH)
#
# scripts/test.sh puts $CI_VENV/bin first on PATH; the tests look there first
# too (registry/tests/it/support/s3.rs, counter-app/tests/it/support/mod.rs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CI_VENV:-$root/.venv}
requirements=$root/scripts/ci-requirements.txt
if [ -z "${CI_PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then CI_PYTHON=/usr/bin/python3; else CI_PYTHON=python3; fi
fi

die() { echo "ci-deps: error: $*" >&2; exit 1; }

need=()
for pair in skopeo:skopeo docker-registry:docker-registry redis-server:redis-server \
    wrk:wrk busybox:busybox-static docker-compose:docker-compose openssl:openssl curl:curl \
    chromium:chromium chromedriver:chromium-driver tidy:tidy; do
  bin=${pair%%:*} pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/bin/$bin" ] || need+=("$pkg")
done
# python3 -m venv needs ensurepip, which Debian ships in python3-venv.
if ! command -v "$CI_PYTHON" >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif ! "$CI_PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "ci-deps: installing ${need[*]}"
  command -v apt-get >/dev/null 2>&1 || die "apt-get is missing; install ${need[*]} by hand"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "apt-get install ${need[*]} failed (needs root)"
fi

# --- Python tools, in the virtual environment --------------------------------
# Installed when the requirements changed since the last install (a copy is
# kept in the venv) or a tool is missing; otherwise nothing runs.
venv_ok() {
  [ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/locust" ] &&
    "$venv/bin/python" -c 'import kubernetes_validate, locust, moto' >/dev/null 2>&1
}
if ! cmp -s "$requirements" "$venv/.ci-requirements.txt" || ! venv_ok; then
  # A directory that is not a working venv (no pip, say, from a python3 -m
  # venv without python3-venv) is made again; anything else is not touched.
  if [ -e "$venv" ] && ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    [ -f "$venv/pyvenv.cfg" ] || die "$venv exists and is not a virtual environment; move it or set CI_VENV"
    echo "ci-deps: $venv is broken (no pip); making it again"
    rm -rf "$venv"
  fi
  if [ ! -e "$venv" ]; then
    echo "ci-deps: creating the virtual environment $venv ($CI_PYTHON -m venv)"
    "$CI_PYTHON" -m venv "$venv" ||
      die "$CI_PYTHON -m venv $venv failed (Debian: apt-get install python3-venv)"
  fi
  echo "ci-deps: installing $(grep -o '^[^# ]*' "$requirements" | tr '\n' ' ')into $venv (pip)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" ||
    die "pip install -r $requirements into $venv failed (see above)"
  venv_ok || die "after pip install, moto_server, locust or kubernetes_validate is still missing from $venv"
  cp "$requirements" "$venv/.ci-requirements.txt"
fi

# Debian's packages start their daemons through systemd where it exists; the
# tests start their own instances on ephemeral ports instead.
systemctl disable --now docker-registry redis-server >/dev/null 2>&1 || true
