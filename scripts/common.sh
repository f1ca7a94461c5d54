# Shared by scripts/test.sh and scripts/bench.sh: a virtual environment with the project installed,
# and a RabbitMQ that accepts AMQP connections. Source it from the repository's root.

PYTHON=${PYTHON:-python3}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_ready=
apt_install() {
    if [ -z "$apt_ready" ]; then as_root apt-get update -qq; apt_ready=1; fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# ensure_venv EXTRA: .venv with asyncgw installed, editable, with its EXTRA dependencies.
ensure_venv() {
    echo "== python environment"
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv; "$PYTHON" -m venv .venv; }
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[$1]"
}

ensure_rabbitmq() {
    echo "== rabbitmq"
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        apt_install rabbitmq-server
    fi
    if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        # Erlang's schedulers busy-wait by default; on a small machine that costs half a core.
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+sbwt none +sbwtdcpu none +sbwtdio none" \
            as_root rabbitmq-server -detached
        # -detached returns before the node registers, and await_startup gives up at once on an
        # unregistered node: wait for it to answer ping first.
        for _ in $(seq 1 120); do
            rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
            sleep 1
        done
    fi
    timeout 120 rabbitmqctl -q await_startup
    # A node can answer ping while its AMQP listener is stuck: check what the tests will use.
    if ! timeout 60 .venv/bin/python -c '
import asyncio, aio_pika
async def main():
    connection = await asyncio.wait_for(aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/"), 30)
    await connection.close()
asyncio.run(main())'; then
        echo "RabbitMQ runs but does not accept AMQP connections on 127.0.0.1:5672 (guest/guest)" >&2
        exit 1
    fi
}
