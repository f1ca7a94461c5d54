"""The API file (SPEC §2) and the settings built from the environment."""

from __future__ import annotations

import copy
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from asyncgw.config import ApiConfig, load_apis, parse_apis
from asyncgw.errors import ConfigError
from asyncgw.settings import Settings

SOURCE = "apis.yaml"


def api(name: str = "iris", **fields: Any) -> dict[str, Any]:
    """A minimal valid AsyncAPI entry, with ``fields`` merged in (sections merged one level)."""
    entry: dict[str, Any] = {"name": name, "kind": "AsyncAPI", "handler": {"path": "handler.py"}}
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(entry.get(key), dict):
            entry[key] = {**entry[key], **value}
        else:
            entry[key] = value
    return entry


def problems_of(document: Any, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_apis(document, SOURCE, base_dir)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- defaults -------------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    [a] = parse_apis([api()], SOURCE, tmp_path)
    assert isinstance(a, ApiConfig)
    assert a.name == "iris"
    assert a.handler.max_concurrency == 1
    assert a.handler.timeout_s == 900.0
    assert a.handler.retries == 0
    assert a.handler.retry_backoff_s == 10.0
    assert a.handler.config == {}
    assert a.handler.env == {}
    assert a.handler.log_level is None
    assert a.max_payload_size_bytes == 100 * 2**20
    assert a.max_queue_length == 0
    assert a.retention_s == 7 * 86400.0
    assert a.endpoint == "iris"
    assert a.webhook.url is None
    assert a.autoscaling.min_replicas == 1
    assert a.autoscaling.max_replicas == 100
    assert a.init_replicas == 1
    assert a.target_in_flight == 1.0
    assert a.autoscaling.window_s == 60.0
    assert a.autoscaling.downscale_stabilization_period_s == 300.0
    assert a.autoscaling.upscale_stabilization_period_s == 60.0
    assert a.autoscaling.max_downscale_factor == 0.75
    assert a.autoscaling.max_upscale_factor == 1.5
    assert a.autoscaling.downscale_tolerance == 0.05
    assert a.autoscaling.upscale_tolerance == 0.05
    assert a.handler_path == (tmp_path / "handler.py").resolve()
    assert a.python_path == tmp_path.resolve()


@pytest.mark.parametrize(
    ("fields", "init_replicas", "target_in_flight"),
    [
        ({"autoscaling": {"min_replicas": 3}}, 3, 1.0),
        ({"autoscaling": {"min_replicas": 0}}, 0, 1.0),
        ({"handler": {"max_concurrency": 4}}, 1, 4.0),
        ({"handler": {"max_concurrency": 4}, "autoscaling": {"target_in_flight": 2.5}}, 1, 2.5),
        ({"autoscaling": {"min_replicas": 2, "init_replicas": 5}}, 5, 1.0),
    ],
)
def test_derived_defaults(
    tmp_path: Path, fields: dict[str, Any], init_replicas: int, target_in_flight: float
) -> None:
    [a] = parse_apis([api(**fields)], SOURCE, tmp_path)
    assert a.init_replicas == init_replicas
    assert a.target_in_flight == target_in_flight


def test_units_and_overrides(tmp_path: Path) -> None:
    entry = api(
        handler={
            "max_concurrency": 8,
            "timeout": "1h30m",
            "retries": 3,
            "retry_backoff": "250ms",
            "config": {"model": "m.pt"},
            "env": {"A": "1"},
            "log_level": "debug",
        },
        max_payload_size="1Gi",
        max_queue_length=50,
        retention="2d",
        networking={"endpoint": "/flowers"},
        webhook={"url": "https://example.com/hook", "secret_env": "IRIS_SECRET"},
        autoscaling={"window": "2m", "max_replicas": 7},
    )
    [a] = parse_apis([entry], SOURCE, tmp_path)
    assert a.handler.max_concurrency == 8
    assert a.handler.timeout_s == 5400.0
    assert a.handler.retries == 3
    assert a.handler.retry_backoff_s == 0.25
    assert a.handler.config == {"model": "m.pt"}
    assert a.handler.env == {"A": "1"}
    assert a.handler.log_level == "debug"
    assert a.max_payload_size_bytes == 2**30
    assert a.max_queue_length == 50
    assert a.retention_s == 2 * 86400.0
    assert a.endpoint == "flowers"
    assert a.webhook.url == "https://example.com/hook"
    assert a.webhook.secret_env == "IRIS_SECRET"
    assert a.autoscaling.window_s == 120.0
    assert a.autoscaling.max_replicas == 7
    assert a.target_in_flight == 8.0


@pytest.mark.parametrize("name", ["a", "iris", "iris-v2", "a" * 42, "x1-2-y"])
def test_good_names(tmp_path: Path, name: str) -> None:
    [a] = parse_apis([api(name)], SOURCE, tmp_path)
    assert a.name == name
    assert a.endpoint == name


def test_empty_document_is_no_apis(tmp_path: Path) -> None:
    assert parse_apis(None, SOURCE, tmp_path) == []
    assert parse_apis([], SOURCE, tmp_path) == []


# --- one line per bad field -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "label", "needles"),
    [
        pytest.param(
            api("Bad_Name"), "api 'Bad_Name'", ["name 'Bad_Name'", "DNS-1035"], id="name-case"
        ),
        pytest.param(api("9lives"), "api '9lives'", ["name '9lives'"], id="name-digit"),
        pytest.param(api("iris-"), "api 'iris-'", ["name 'iris-'"], id="name-dash"),
        pytest.param(api("a" * 43), f"api '{'a' * 43}'", ["42"], id="name-too-long"),
        pytest.param(api("metrics"), "api 'metrics'", ["name 'metrics' is reserved"], id="metrics"),
        pytest.param(api("healthz"), "api 'healthz'", ["reserved"], id="healthz"),
        pytest.param(api("apis"), "api 'apis'", ["reserved"], id="apis"),
        pytest.param(
            api(handler={"max_concurrency": 0}),
            "api 'iris'",
            ["handler.max_concurrency:"],
            id="max_concurrency-0",
        ),
        pytest.param(
            api(handler={"timeout": "soon"}),
            "api 'iris'",
            ["handler.timeout:", "soon"],
            id="timeout-soon",
        ),
        pytest.param(
            api(handler={"timeout": 0}), "api 'iris'", ["handler.timeout:"], id="timeout-0"
        ),
        pytest.param(
            api(handler={"retries": -1}), "api 'iris'", ["handler.retries:"], id="retries"
        ),
        pytest.param(
            api(handler={"retry_backoff": "later"}),
            "api 'iris'",
            ["handler.retry_backoff:"],
            id="retry_backoff",
        ),
        pytest.param(
            api(handler={"log_level": "verbose"}),
            "api 'iris'",
            ["handler.log_level:"],
            id="log_level",
        ),
        pytest.param(
            api(handler={"config": "not-a-mapping"}),
            "api 'iris'",
            ["handler.config:"],
            id="config-not-mapping",
        ),
        pytest.param(
            api(handler={"type": "tensorflow"}),
            "api 'iris'",
            ["handler.type tensorflow is not supported", "Python handler"],
            id="tensorflow",
        ),
        pytest.param(
            api(handler={"type": "java"}),
            "api 'iris'",
            ["handler.type must be python"],
            id="type-java",
        ),
        pytest.param(
            {"name": "iris", "handler": {"max_concurrency": 2}},
            "api 'iris'",
            ["handler.path:", "required"],
            id="missing-handler-path",
        ),
        pytest.param(
            {"name": "iris"}, "api 'iris'", ["handler:", "required"], id="missing-handler"
        ),
        pytest.param(
            api(autoscaling={"min_replicas": 5, "max_replicas": 2}),
            "api 'iris'",
            ["autoscaling", "min_replicas must not be above max_replicas"],
            id="min-above-max",
        ),
        pytest.param(
            api(autoscaling={"min_replicas": 1, "max_replicas": 5, "init_replicas": 9}),
            "api 'iris'",
            ["autoscaling", "init_replicas"],
            id="init-outside",
        ),
        pytest.param(
            api(autoscaling={"min_replicas": -1}),
            "api 'iris'",
            ["autoscaling.min_replicas:"],
            id="min-negative",
        ),
        pytest.param(
            api(autoscaling={"max_upscale_factor": 1}),
            "api 'iris'",
            ["autoscaling.max_upscale_factor:"],
            id="upscale-factor",
        ),
        pytest.param(
            api(autoscaling={"window": "often"}),
            "api 'iris'",
            ["autoscaling.window:"],
            id="window",
        ),
        pytest.param(
            api(max_payload_size="lots"),
            "api 'iris'",
            ["max_payload_size:", "lots"],
            id="max_payload_size",
        ),
        pytest.param(
            api(max_payload_size=0), "api 'iris'", ["max_payload_size:"], id="max_payload_size-0"
        ),
        pytest.param(
            api(max_queue_length=-1), "api 'iris'", ["max_queue_length:"], id="max_queue_length"
        ),
        pytest.param(api(retention="forever"), "api 'iris'", ["retention:"], id="retention"),
        pytest.param(
            api(networking={"endpoint": "/a/b"}),
            "api 'iris'",
            ["networking.endpoint '/a/b'", "one path segment"],
            id="endpoint-two-segments",
        ),
        pytest.param(
            api(networking={"endpoint": "iris"}),
            "api 'iris'",
            ["networking.endpoint 'iris'"],
            id="endpoint-no-slash",
        ),
        pytest.param(
            api(networking={"endpoint": "/metrics"}),
            "api 'iris'",
            ["networking.endpoint '/metrics'", "reserved"],
            id="endpoint-reserved",
        ),
        pytest.param(
            api(kind="AsyncAPI", name=None),
            "entry 0",
            ["name:"],
            id="missing-name",
        ),
    ],
)
def test_bad_field_gives_one_line(
    tmp_path: Path, entry: dict[str, Any], label: str, needles: list[str]
) -> None:
    if entry.get("name") is None:
        entry = {k: v for k, v in entry.items() if k != "name"}
    [line] = problems_of([entry], tmp_path)
    assert line.startswith(f"{SOURCE}: {label}: ")
    for needle in needles:
        assert needle.lower() in line.lower()
    assert "\n" not in line


def test_retention_infinite_is_refused(tmp_path: Path) -> None:
    # An infinite retention passes validation today, then every submit fails computing
    # expires_at (timedelta(seconds=inf) overflows): a bad file must be refused at start.
    [line] = problems_of([api(retention="inf")], tmp_path)
    assert "retention" in line


def test_retry_backoff_nan_is_refused(tmp_path: Path) -> None:
    [line] = problems_of([api(handler={"retry_backoff": "nan"})], tmp_path)
    assert "handler.retry_backoff" in line


def test_absurd_size_is_one_line_not_a_crash(tmp_path: Path) -> None:
    [line] = problems_of([api(max_payload_size="1" + "0" * 400)], tmp_path)
    assert "max_payload_size" in line


def test_duplicate_names(tmp_path: Path) -> None:
    document = [
        api("iris", networking={"endpoint": "/one"}),
        api("iris", networking={"endpoint": "/two"}),
    ]
    assert problems_of(document, tmp_path) == [
        f"{SOURCE}: api 'iris': name: defined more than once"
    ]


def test_duplicate_names_with_default_endpoints_report_the_name(tmp_path: Path) -> None:
    problems = problems_of([api("iris"), api("iris")], tmp_path)
    assert f"{SOURCE}: api 'iris': name: defined more than once" in problems
    assert all(p.startswith(f"{SOURCE}: api 'iris': ") for p in problems)


@pytest.mark.parametrize(
    "document",
    [
        [
            api("first", networking={"endpoint": "/shared"}),
            api("second", networking={"endpoint": "/shared"}),
        ],
        [api("shared"), api("second", networking={"endpoint": "/shared"})],
    ],
    ids=["explicit", "default-vs-explicit"],
)
def test_duplicate_endpoints(tmp_path: Path, document: list[dict[str, Any]]) -> None:
    assert problems_of(document, tmp_path) == [
        f"{SOURCE}: api 'second': networking.endpoint: /shared is used twice"
    ]


def test_several_problems_at_once(tmp_path: Path) -> None:
    document = [
        api("good"),
        api(
            "one",
            handler={"max_concurrency": 0, "timeout": "soon"},
            autoscaling={"min_replicas": 5, "max_replicas": 2},
        ),
        api("Two"),
        "not a mapping",
        api("good", networking={"endpoint": "/good-again"}),
    ]
    problems = problems_of(document, tmp_path)
    assert len(problems) == 6
    assert any("api 'one': handler.max_concurrency:" in p for p in problems)
    assert any("api 'one': handler.timeout:" in p for p in problems)
    assert any("api 'one': autoscaling:" in p and "min_replicas" in p for p in problems)
    assert any("api 'Two': name 'Two'" in p for p in problems)
    assert any("entry 3: expected a mapping" in p for p in problems)
    assert any("api 'good': name: defined more than once" in p for p in problems)
    assert all(p.startswith(f"{SOURCE}: ") for p in problems)


@pytest.mark.parametrize("document", [{"name": "iris"}, "iris", 42], ids=["dict", "str", "int"])
def test_non_list_document(tmp_path: Path, document: Any) -> None:
    [line] = problems_of(document, tmp_path)
    assert "expected a YAML list of APIs" in line
    assert type(document).__name__ in line


# --- Cortex compatibility -------------------------------------------------------------------


def test_other_kinds_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="asyncgw.config")
    document = [
        {"name": "rt", "kind": "RealtimeAPI", "handler": {"type": "python", "path": "p.py"}},
        {"name": "batch", "kind": "BatchAPI", "handler": {"type": "tensorflow"}},
        {"name": "task", "kind": "TaskAPI", "definition": {"path": "t.py"}},
        api("iris"),
    ]
    apis = parse_apis(document, SOURCE, tmp_path)
    assert [a.name for a in apis] == ["iris"]
    messages = [r.getMessage() for r in caplog.records]
    for name, kind in [("rt", "RealtimeAPI"), ("batch", "BatchAPI"), ("task", "TaskAPI")]:
        assert any(name in m and kind in m for m in messages), messages


def test_only_other_kinds_gives_no_apis(tmp_path: Path) -> None:
    assert parse_apis([{"name": "rt", "kind": "RealtimeAPI"}], SOURCE, tmp_path) == []


@pytest.mark.parametrize(
    ("fields", "ignored"),
    [
        ({"handler": {"dependencies": {"pip": "requirements.txt"}}}, "handler.dependencies"),
        ({"handler": {"image": "quay.io/cortexlabs/python-handler-cpu"}}, "handler.image"),
        ({"handler": {"shm_size": "1Gi"}}, "handler.shm_size"),
        ({"handler": {"type": "python"}}, "handler.type"),
        ({"compute": {"cpu": 1, "mem": "2G"}}, "compute"),
        ({"update_strategy": {"max_surge": "25%"}}, "update_strategy"),
    ],
)
def test_cortex_fields_are_accepted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fields: dict[str, Any], ignored: str
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncgw.config")
    [a] = parse_apis([api(**fields)], SOURCE, tmp_path)
    assert a.name == "iris"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(ignored in m and "iris" in m for m in warnings), warnings


def test_plain_file_logs_no_ignored_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncgw.config")
    parse_apis([api()], SOURCE, tmp_path)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


CORTEX_FILE = """\
# a Cortex 0.35 AsyncAPI file, unchanged
- name: iris-classifier
  kind: AsyncAPI
  handler:
    type: python
    path: handlers/handler.py
    dependencies:
      pip: requirements.txt
    config:
      bucket: cortex-examples
      key: sklearn/iris-classifier/model.pkl
    env:
      MODEL_NAME: iris
    log_level: info
    shm_size: 1Gi
  compute:
    cpu: 1
    mem: 2G
  autoscaling:
    min_replicas: 1
    max_replicas: 5
  update_strategy:
    max_surge: 25%
    max_unavailable: 25%
  networking:
    endpoint: /iris-classifier
- name: text-generator
  kind: RealtimeAPI
  handler:
    type: python
    path: generator.py
"""


def test_load_cortex_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="asyncgw.config")
    path = write(tmp_path / "project" / "cortex.yaml", CORTEX_FILE)
    [a] = load_apis(path)
    assert a.name == "iris-classifier"
    assert a.endpoint == "iris-classifier"
    assert a.handler.config == {
        "bucket": "cortex-examples",
        "key": "sklearn/iris-classifier/model.pkl",
    }
    assert a.handler.env == {"MODEL_NAME": "iris"}
    assert a.handler.log_level == "info"
    assert a.autoscaling.max_replicas == 5
    assert a.handler_path == (tmp_path / "project" / "handlers" / "handler.py").resolve()
    assert a.python_path == (tmp_path / "project").resolve()
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for name in ["handler.dependencies", "handler.shm_size", "compute", "update_strategy"]:
        assert name in warnings
    infos = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert "text-generator" in infos and "RealtimeAPI" in infos


# --- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handler_path", "python_path", "expected_handler", "expected_python_path"),
    [
        ("handler.py", None, "conf/handler.py", "conf"),
        ("src/h.py", None, "conf/src/h.py", "conf"),
        ("../code/h.py", "../code", "code/h.py", "code"),
        ("h.py", "lib", "conf/h.py", "conf/lib"),
    ],
)
def test_relative_paths_resolve_against_the_api_file_folder(
    tmp_path: Path,
    handler_path: str,
    python_path: str | None,
    expected_handler: str,
    expected_python_path: str,
) -> None:
    handler: dict[str, Any] = {"path": handler_path}
    if python_path is not None:
        handler["python_path"] = python_path
    path = tmp_path / "conf" / "asyncgw.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump([{"name": "iris", "kind": "AsyncAPI", "handler": handler}]))
    [a] = load_apis(path)
    assert a.handler_path == (tmp_path / expected_handler).resolve()
    assert a.python_path == (tmp_path / expected_python_path).resolve()


def test_absolute_handler_path_is_kept(tmp_path: Path) -> None:
    target = (tmp_path / "elsewhere" / "h.py").resolve()
    path = write(
        tmp_path / "conf" / "asyncgw.yaml",
        f"""\
        - name: iris
          handler:
            path: {target}
        """,
    )
    [a] = load_apis(path)
    assert a.handler_path == target


def test_load_apis_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "- name: [unclosed\n  handler: {\n")
    with pytest.raises(ConfigError) as info:
        load_apis(path)
    [line] = info.value.problems
    assert line.startswith(f"{path}: not valid YAML")
    assert "\n" not in line


def test_load_apis_mapping_document(tmp_path: Path) -> None:
    path = write(tmp_path / "map.yaml", "name: iris\nhandler:\n  path: h.py\n")
    with pytest.raises(ConfigError) as info:
        load_apis(path)
    assert info.value.problems == [f"{path}: expected a YAML list of APIs, got dict"]


def test_load_apis_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_apis(path)
    [line] = info.value.problems
    assert line.startswith(f"{path}: cannot read the API file")


def test_load_apis_empty_file(tmp_path: Path) -> None:
    assert load_apis(write(tmp_path / "empty.yaml", "")) == []


def test_load_apis_problems_name_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "asyncgw.yaml",
        """\
        - name: iris
          handler:
            path: h.py
            max_concurrency: 0
          retention: forever
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_apis(path)
    assert sorted(info.value.problems) == sorted(
        [
            f"{path}: api 'iris': handler.max_concurrency: "
            "Input should be greater than or equal to 1",
            f"{path}: api 'iris': retention: "
            "expected a duration like 30s, 15m or 2h, got 'forever'",
        ]
    )


def test_parse_apis_does_not_modify_input(tmp_path: Path) -> None:
    document = [api(handler={"config": {"a": [1]}})]
    before = copy.deepcopy(document)
    parse_apis(document, SOURCE, tmp_path)
    assert document == before


# --- settings -------------------------------------------------------------------------------

GOOD_FILE = """\
- name: iris
  handler:
    path: h.py
- name: other
  handler:
    path: o.py
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write(tmp_path / "asyncgw.yaml", GOOD_FILE)


def test_settings_defaults(tmp_path: Path, config_file: Path) -> None:
    data = tmp_path / "data"
    env = {"ASYNCGW_CONFIG": str(config_file), "ASYNCGW_DATA_DIR": str(data)}
    s = Settings.from_env(env)
    root = data.resolve()
    assert s.config_path == config_file
    assert [a.name for a in s.apis] == ["iris", "other"]
    assert s.queue_url == "memory://"
    assert s.store_url == f"sqlite:///{root}/asyncgw.db"
    assert s.storage_url == f"file://{root}/blobs"
    assert s.grace_period_s == 30.0
    assert s.log_level == "INFO"
    assert s.env == env


def test_settings_default_data_dir(config_file: Path) -> None:
    s = Settings.from_env({"ASYNCGW_CONFIG": str(config_file)})
    root = Path(".asyncgw").resolve()
    assert s.store_url == f"sqlite:///{root}/asyncgw.db"
    assert s.storage_url == f"file://{root}/blobs"


def test_settings_overrides(tmp_path: Path, config_file: Path) -> None:
    env = {
        "ASYNCGW_CONFIG": str(config_file),
        "ASYNCGW_QUEUE_URL": "amqp://guest:guest@rabbit:5672/",
        "ASYNCGW_STORE_URL": "mongodb://mongo:27017/asyncgw",
        "ASYNCGW_STORAGE_URL": "s3://bucket/prefix",
        "ASYNCGW_GRACE_PERIOD": "2m",
        "ASYNCGW_LOG_LEVEL": "debug",
    }
    s = Settings.from_env(env)
    assert s.queue_url == "amqp://guest:guest@rabbit:5672/"
    assert s.store_url == "mongodb://mongo:27017/asyncgw"
    assert s.storage_url == "s3://bucket/prefix"
    assert s.grace_period_s == 120.0
    assert s.log_level == "DEBUG"


def test_settings_keyword_paths_win_over_env(tmp_path: Path, config_file: Path) -> None:
    env = {"ASYNCGW_CONFIG": str(tmp_path / "absent.yaml"), "ASYNCGW_DATA_DIR": "/nowhere"}
    s = Settings.from_env(env, config_path=config_file, data_dir=tmp_path / "d")
    assert s.config_path == config_file
    assert s.store_url == f"sqlite:///{(tmp_path / 'd').resolve()}/asyncgw.db"


def test_settings_problems_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path / "asyncgw.yaml",
        """\
        - name: iris
          handler:
            path: h.py
            timeout: soon
        """,
    )
    env = {
        "ASYNCGW_CONFIG": str(path),
        "ASYNCGW_GRACE_PERIOD": "a while",
        "ASYNCGW_LOG_LEVEL": "loud",
    }
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith("ASYNCGW_GRACE_PERIOD:") and "a while" in p for p in problems)
    assert any(p.startswith("ASYNCGW_LOG_LEVEL:") and "LOUD" in p.upper() for p in problems)
    assert any("api 'iris': handler.timeout:" in p for p in problems)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ASYNCGW_GRACE_PERIOD", "-5s"),
        ("ASYNCGW_GRACE_PERIOD", ""),
        ("ASYNCGW_LOG_LEVEL", "trace"),
        ("ASYNCGW_LOG_LEVEL", ""),
    ],
)
def test_settings_bad_variable(config_file: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"ASYNCGW_CONFIG": str(config_file), variable: value})
    [line] = info.value.problems
    assert line.startswith(f"{variable}: ")


def test_settings_missing_config_file_reported_with_env_problems(tmp_path: Path) -> None:
    env = {"ASYNCGW_CONFIG": str(tmp_path / "absent.yaml"), "ASYNCGW_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    problems = info.value.problems
    assert len(problems) == 2
    assert any("absent.yaml" in p and "cannot read" in p for p in problems)


def test_settings_api_lookup(config_file: Path) -> None:
    s = Settings.from_env({"ASYNCGW_CONFIG": str(config_file)})
    assert s.api("other").name == "other"
    assert s.api("iris").handler.path == "h.py"


def test_settings_unknown_api_lists_known(config_file: Path) -> None:
    s = Settings.from_env({"ASYNCGW_CONFIG": str(config_file)})
    with pytest.raises(ConfigError) as info:
        s.api("nope")
    [line] = info.value.problems
    assert "'nope'" in line
    assert "iris, other" in line
    assert str(config_file) in line


def test_settings_unknown_api_with_no_apis(tmp_path: Path) -> None:
    s = Settings.from_env({"ASYNCGW_CONFIG": str(write(tmp_path / "a.yaml", "[]\n"))})
    assert s.apis == ()
    with pytest.raises(ConfigError, match="none"):
        s.api("iris")
