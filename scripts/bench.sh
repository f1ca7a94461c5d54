#!/usr/bin/env bash
# The benchmark (docs/benchmarks.md): installs asyncgw with its bench extra (Celery, matplotlib,
# py-spy and the test servers) into .venv, makes sure RabbitMQ is running, then runs bench/run.py,
# which starts SecantusDB and moto itself. Arguments go to bench/run.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

ensure_venv bench
ensure_rabbitmq

echo "== benchmark"
exec .venv/bin/python bench/run.py "$@"
