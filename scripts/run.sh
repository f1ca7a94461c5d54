#!/usr/bin/env bash
# Run asyncgw with no servers: installs it into .venv (once), then starts `asyncgw up` with the
# example APIs on http://127.0.0.1:8080. Extra arguments go to `asyncgw up` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv 2>/dev/null || {
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
        "$PYTHON" -m venv .venv
    }
fi
if ! .venv/bin/python -c "import asyncgw" 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e .
fi
exec .venv/bin/asyncgw up --config examples/asyncgw.yaml "$@"
