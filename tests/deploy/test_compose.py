"""docker-compose.yml and the Dockerfile: the single-machine stack on RabbitMQ, MongoDB and MinIO,
and the one image every asyncgw service runs. No Docker engine is needed: the files are read as
Compose and Docker read them (YAML with merge keys; Dockerfile instructions with continuations)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from asyncgw.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
ASYNCGW_SERVICES = ("gateway", "worker")
BACKENDS = ("rabbitmq", "mongo", "minio")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, in either of Compose's two spellings."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    value = service["command"]
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart", "no") == "no"


def test_services(services: dict[str, dict[str, Any]]) -> None:
    assert {*BACKENDS, *ASYNCGW_SERVICES} <= set(services)
    init = [name for name, s in services.items() if name not in BACKENDS and one_shot(s)]
    assert len(init) == 1, f"expected one bucket-creating one-shot service, found {init}"
    assert "minio" in services[init[0]]["image"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert services["mongo"]["image"].startswith("mongo:")
    assert "minio/minio" in services["minio"]["image"]


def test_the_bucket_of_the_storage_url_is_created(services: dict[str, dict[str, Any]]) -> None:
    (init,) = [s for name, s in services.items() if name not in BACKENDS and one_shot(s)]
    bucket = urlsplit(environment(services["gateway"])["ASYNCGW_STORAGE_URL"]).netloc
    steps = " ".join([*init.get("entrypoint", []), *init.get("command", [])])
    assert "mb" in steps.split() and f"/{bucket}" in steps, steps
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                parse_duration(check[key])
    tests = {
        name: " ".join(s["healthcheck"]["test"])
        for name, s in services.items()
        if "healthcheck" in s
    }
    assert "rabbitmq-diagnostics" in tests["rabbitmq"] and "ping" in tests["rabbitmq"]
    assert "mongosh" in tests["mongo"] and "ping" in tests["mongo"]
    assert "mc ready" in tests["minio"] or "/minio/health/" in tests["minio"]
    # The slim image has no curl: the gateway is checked with Python's urllib.
    assert "python" in tests["gateway"] and "127.0.0.1:8080/healthz" in tests["gateway"]


def test_gateway_publishes_8080(services: dict[str, dict[str, Any]]) -> None:
    published = [str(port) for port in services["gateway"]["ports"]]
    assert any(port.endswith("8080:8080") for port in published), published
    assert command(services["gateway"])[0] == "gateway"
    assert "--port" not in command(services["gateway"]) or "8080" in command(services["gateway"])


def test_asyncgw_services_point_at_the_compose_services(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ASYNCGW_SERVICES:
        env = environment(services[name])
        queue = urlsplit(env["ASYNCGW_QUEUE_URL"])
        assert (queue.scheme, queue.hostname) == ("amqp", "rabbitmq"), name
        user = services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"]
        assert queue.username == user, "guest may only connect from localhost"
        store = urlsplit(env["ASYNCGW_STORE_URL"])
        assert (store.scheme, store.hostname) == ("mongodb", "mongo"), name
        assert urlsplit(env["ASYNCGW_STORAGE_URL"]).scheme == "s3", name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        minio = services["minio"]["environment"]
        assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]


def test_worker_runs_the_iris_api(services: dict[str, dict[str, Any]]) -> None:
    assert command(services["worker"]) == ["worker", "--api", "iris"]
    config = environment(services["worker"])["ASYNCGW_CONFIG"]
    # The image bakes examples/ in at /app/examples.
    relative = Path(config).relative_to("/app/examples")
    apis = yaml.safe_load((ROOT / "examples" / relative).read_text())
    assert "iris" in {api["name"] for api in apis}


def test_stops_are_graceful(services: dict[str, dict[str, Any]]) -> None:
    for name in ASYNCGW_SERVICES:
        grace = parse_duration(environment(services[name]).get("ASYNCGW_GRACE_PERIOD", "30s"))
        # Compose's default is 10 s, after which it kills the worker mid-request.
        assert parse_duration(services[name]["stop_grace_period"]) > grace, name


def test_startup_waits_for_healthy_backends(services: dict[str, dict[str, Any]]) -> None:
    for name in ASYNCGW_SERVICES:
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for backend in BACKENDS:
            assert depends[backend]["condition"] == "service_healthy", (name, backend)
        (init,) = [s for s in depends if s not in BACKENDS]
        assert depends[init]["condition"] == "service_completed_successfully"


def test_asyncgw_services_run_the_projects_image(services: dict[str, dict[str, Any]]) -> None:
    for name in ASYNCGW_SERVICES:
        assert services[name]["image"] == "asyncgw:0.1.0"
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").is_file()


# --- the Dockerfile ---------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends with a continuation"
    return result


def last_stage() -> list[tuple[str, str]]:
    found = instructions()
    start = max(i for i, (word, _) in enumerate(found) if word == "FROM")
    return found[start:]


def test_dockerfile_bases_on_python_311() -> None:
    bases = [args.split()[0] for word, args in instructions() if word == "FROM"]
    assert bases and all(base.startswith("python:3.11") for base in bases), bases


def test_dockerfile_installs_the_project_with_pip() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    assert any("pip install ." in run for run in runs), runs
    copied = " ".join(args for word, args in instructions() if word == "COPY")
    for needed in ("pyproject.toml", "README.md", "asyncgw", "worker", "scaler"):
        assert needed in copied, needed


def test_dockerfile_runs_asyncgw_as_a_non_root_user() -> None:
    stage = last_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "the final image runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    # Numeric, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
    assert user.isdigit()
    (entrypoint,) = [args for word, args in stage if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["asyncgw"]


def test_dockerfile_bakes_in_the_example_handlers() -> None:
    copies = [args.split() for word, args in last_stage() if word == "COPY"]
    assert any(
        c[-2].rstrip("/") == "examples" and c[-1].startswith("/app/examples") for c in copies
    )
    env = " ".join(args for word, args in last_stage() if word == "ENV")
    assert "ASYNCGW_CONFIG=/app/examples/asyncgw.yaml" in env


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".asyncgw", ".mypy_cache", ".ruff_cache", ".pytest_cache"} <= ignored
    assert "**/__pycache__" in ignored
    # Nothing the image build copies may be ignored.
    for needed in ("pyproject.toml", "README.md", "asyncgw", "worker", "scaler", "examples"):
        assert needed not in ignored, needed
