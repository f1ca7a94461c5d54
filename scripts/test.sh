#!/usr/bin/env bash
# The whole test suite: creates .venv, installs asyncgw with its test extras, makes sure RabbitMQ
# is running, then runs ruff, mypy --strict and pytest. SecantusDB (MongoDB protocol) and moto (S3)
# are started by the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_venv test
ensure_rabbitmq

echo "== promtool"
# Debian's prometheus package brings promtool, which lints our metrics and alert rules.
command -v promtool >/dev/null 2>&1 || apt_install --no-install-recommends prometheus

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== mypy --strict"
.venv/bin/mypy

echo "== pytest"
.venv/bin/pytest -p no:cacheprovider "$@"
