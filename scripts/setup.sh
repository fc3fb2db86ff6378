#!/usr/bin/env bash
# Set up audio-analysis in a virtual environment at <project>/.venv.
#
#   scripts/setup.sh                     what the application needs
#   scripts/setup.sh --with-test-tools   also the programs the tests drive for real
#
# System packages (portaudio headers for PyAudio; for the tests also PulseAudio,
# espeak-ng, Chromium and the mosquitto MQTT broker) are installed with apt-get when
# missing and we are root;
# otherwise the missing ones are named and the script stops.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

PYTHON="${PYTHON:-python3}"
runtime_pkgs=(portaudio19-dev)
test_pkgs=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng chromium mosquitto mosquitto-clients)
want=("${runtime_pkgs[@]}")
if [ "${1:-}" = "--with-test-tools" ]; then want+=("${test_pkgs[@]}"); fi

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

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# The test setup also installs the batch extra (Apache Beam, requirements-batch.txt), in
# the same resolver run, so that protobuf is resolved for TensorFlow and Beam together.
reqs=(-r requirements.txt)
if [ "${1:-}" = "--with-test-tools" ]; then reqs+=(-r requirements-batch.txt); fi
stamp=.venv/.requirements.sha256
want_sum="$( (cat requirements.txt requirements-batch.txt pyproject.toml; echo "${reqs[*]}") \
  | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want_sum" ]; then
  echo "setup: installing Python packages into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "${reqs[@]}"
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want_sum" > "$stamp"
fi
