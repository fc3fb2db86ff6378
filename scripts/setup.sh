#!/usr/bin/env bash
# Set up audio-analysis in a virtual environment at <project>/.venv, from the lock.
#
#   scripts/setup.sh                     what the application needs (requirements.lock)
#   scripts/setup.sh --with-test-tools   also the test tools and the batch extra
#                                        (requirements-dev.lock), and the programs the
#                                        tests drive for real
#   -v                                   show pip's own output (otherwise kept in
#                                        .venv/setup.log, shown when a step fails)
#
# The locks pin every distribution with its hashes (`make lock` regenerates them from
# requirements*.txt), so a fresh setup installs what was tested, not the newest releases.
# Distributions in .venv that the lock does not name are removed.
#
# System packages (portaudio headers for PyAudio; for the tests also PulseAudio,
# espeak-ng, Chromium and the mosquitto MQTT broker) are installed with apt-get when
# missing and we are root; otherwise the missing ones are named and the script stops.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

with_tests=0
verbose=0
for arg in "$@"; do
  case "$arg" in
    --with-test-tools) with_tests=1 ;;
    -v|--verbose) verbose=1 ;;
    *) echo "setup: unknown argument: $arg (use --with-test-tools, -v)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-python3}"
runtime_pkgs=(portaudio19-dev)
test_pkgs=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng chromium mosquitto mosquitto-clients)
want=("${runtime_pkgs[@]}")
if [ "$with_tests" = 1 ]; then want+=("${test_pkgs[@]}"); fi

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: install them first, e.g.: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# The locks are resolved for CPython >= 3.11 (httpx2, matplotlib 3.11 and others need it).
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: $PYTHON is $("$PYTHON" --version 2>&1 || echo missing); the locked setup needs" \
       "Python >= 3.11 (choose one with PYTHON=python3.11 scripts/setup.sh)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

lock=requirements.lock
if [ "$with_tests" = 1 ]; then lock=requirements-dev.lock; fi
stamp=.venv/.requirements.sha256
sum_of() { (cat "$1" pyproject.toml; echo "$1") | sha256sum | cut -d' ' -f1; }
# The dev lock holds the runtime lock (it is its constraint), so a venv set up for the
# tests already satisfies the runtime setup.
if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$(sum_of "$lock")" ] ||
   [ "$(cat "$stamp")" = "$(sum_of requirements-dev.lock)" ]; }; then
  exit 0
fi

log=.venv/setup.log
: > "$log"
quietly() {
  # Runs one pip step; its output goes to the terminal only with -v (this machine's or a
  # user's pip configuration can print pages of warnings that say nothing about the setup).
  if [ "$verbose" = 1 ]; then "$@"; return; fi
  if ! "$@" >>"$log" 2>&1; then
    echo "setup: failed: $*" >&2
    tail -n 30 "$log" >&2
    echo "setup: the whole output is in $log (or run scripts/setup.sh -v)" >&2
    exit 1
  fi
}
echo "setup: installing the locked Python packages ($lock) into .venv (first run takes a few minutes)"
quietly .venv/bin/python -m pip install --require-hashes -r "$lock"
# Build with the locked setuptools (no isolated build environment fetching the newest).
quietly .venv/bin/python -m pip install --no-deps --no-build-isolation -e .
strays="$(.venv/bin/python scripts/check_lock.py "$lock" --strays)"
if [ -n "$strays" ]; then
  echo "setup: removing packages the lock does not name: $strays"
  # shellcheck disable=SC2086
  quietly .venv/bin/python -m pip uninstall -y $strays
fi
quietly .venv/bin/python scripts/check_lock.py "$lock"
sum_of "$lock" > "$stamp"
