"""The API file (SPEC §2): a YAML list of APIs in Cortex's shape, validated into typed objects.

Every problem becomes one line naming the API and the field, so a bad file is fixed in one pass.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from asyncgw.errors import ConfigError
from asyncgw.units import parse_duration, parse_size
from asyncgw.webhooks import check_url_syntax

log = logging.getLogger(__name__)

Seconds = Annotated[float, BeforeValidator(parse_duration)]
Bytes = Annotated[int, BeforeValidator(parse_size)]

RESERVED_NAMES = frozenset({"healthz", "readyz", "metrics", "openapi.json", "apis"})
_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_ENDPOINT = re.compile(r"/[A-Za-z0-9][A-Za-z0-9._~-]*")
#: Cortex fields asyncgw accepts and has no use for.
CORTEX_IGNORED = frozenset(
    {
        "handler.type",
        "handler.dependencies",
        "handler.image",
        "handler.tensorflow_serving_image",
        "handler.shm_size",
        "handler.protobuf_path",
        "handler.server_side_batching",
        "handler.processes_per_replica",
        "handler.threads_per_process",
        "compute",
        "update_strategy",
        "pod",
        "node_groups",
    }
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)


class HandlerConfig(_Section):
    """``handler:`` — the user's code and how one replica runs it."""

    path: str
    config: dict[str, Any] = Field(default_factory=dict)
    python_path: str | None = None
    max_concurrency: int = Field(1, ge=1, le=10_000)
    timeout_s: Seconds = Field(15 * 60.0, alias="timeout", gt=0)
    retries: int = Field(0, ge=0, le=100)
    retry_backoff_s: Seconds = Field(10.0, alias="retry_backoff")
    env: dict[str, str] = Field(default_factory=dict)
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    type: str = "python"

    @model_validator(mode="after")
    def _python_only(self) -> HandlerConfig:
        if self.type == "tensorflow":
            raise ValueError(
                "handler.type tensorflow is not supported: asyncgw runs Python handlers only; "
                "load the model in a Python handler instead"
            )
        if self.type != "python":
            raise ValueError(f"handler.type must be python, got {self.type!r}")
        return self


class AutoscalingConfig(_Section):
    """``autoscaling:`` — Cortex's names and defaults (SPEC §9)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(100, ge=1)
    init_replicas: int | None = Field(None, ge=0)
    target_in_flight: float | None = Field(None, gt=0)
    window_s: Seconds = Field(60.0, alias="window", gt=0)
    downscale_stabilization_period_s: Seconds = Field(300.0, alias="downscale_stabilization_period")
    upscale_stabilization_period_s: Seconds = Field(60.0, alias="upscale_stabilization_period")
    max_downscale_factor: float = Field(0.75, ge=0, lt=1)
    max_upscale_factor: float = Field(1.5, gt=1)
    downscale_tolerance: float = Field(0.05, ge=0, lt=1)
    upscale_tolerance: float = Field(0.05, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not be above max_replicas")
        if self.init_replicas is not None and not (
            self.min_replicas <= self.init_replicas <= self.max_replicas
        ):
            raise ValueError("init_replicas must lie between min_replicas and max_replicas")
        return self


class WebhookConfig(_Section):
    """``webhook:`` — the API's default callback, its signing secret and its retry schedule."""

    url: str | None = None
    secret_env: str | None = None
    timeout_s: Seconds = Field(10.0, alias="timeout", gt=0)
    retry_backoff_s: Seconds = Field(5.0, alias="retry_backoff", gt=0)
    max_retry_backoff_s: Seconds = Field(600.0, alias="max_retry_backoff", gt=0)
    retry_for_s: Seconds = Field(3 * 3600.0, alias="retry_for", gt=0)

    @model_validator(mode="after")
    def _url(self) -> WebhookConfig:
        if self.url is not None:
            check_url_syntax(self.url)
        return self


class NetworkingConfig(_Section):
    """``networking:`` — where the API is served."""

    endpoint: str | None = None


class ApiConfig(_Section):
    """One ``kind: AsyncAPI`` entry of the API file."""

    name: str
    kind: Literal["AsyncAPI"] = "AsyncAPI"
    handler: HandlerConfig
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    max_payload_size_bytes: Bytes = Field(100 * 2**20, alias="max_payload_size", gt=0)
    max_queue_length: int = Field(0, ge=0)
    retention_s: Seconds = Field(7 * 86400.0, alias="retention", gt=0)
    networking: NetworkingConfig = Field(default_factory=NetworkingConfig)
    #: The folder of the API file, against which relative paths resolve.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _names(self) -> ApiConfig:
        if len(self.name) > 42 or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"name {self.name!r} must be a DNS-1035 label: lower-case letters, digits and "
                "'-', starting with a letter, at most 42 characters"
            )
        if self.name in RESERVED_NAMES:
            raise ValueError(f"name {self.name!r} is reserved")
        endpoint = self.networking.endpoint
        if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
            raise ValueError(
                f"networking.endpoint {endpoint!r} must be one path segment such as /{self.name}"
            )
        if endpoint is not None and endpoint.lstrip("/") in RESERVED_NAMES:
            raise ValueError(f"networking.endpoint {endpoint!r} is reserved")
        return self

    @property
    def endpoint(self) -> str:
        """The path segment clients use, without the slash."""
        return (self.networking.endpoint or f"/{self.name}").lstrip("/")

    @property
    def handler_path(self) -> Path:
        """The handler file, resolved against the API file's folder."""
        return (self.base_dir / self.handler.path).resolve()

    @property
    def python_path(self) -> Path:
        """The folder added to ``sys.path`` before the handler is imported."""
        return (self.base_dir / (self.handler.python_path or ".")).resolve()

    @property
    def init_replicas(self) -> int:
        a = self.autoscaling
        return a.min_replicas if a.init_replicas is None else a.init_replicas

    @property
    def target_in_flight(self) -> float:
        a = self.autoscaling
        return float(
            self.handler.max_concurrency if a.target_in_flight is None else a.target_in_flight
        )


def _ignored_fields(api: ApiConfig) -> list[str]:
    found: list[str] = []
    for section_name, section in [
        ("", api),
        ("handler.", api.handler),
        ("autoscaling.", api.autoscaling),
        ("webhook.", api.webhook),
        ("networking.", api.networking),
    ]:
        found += [section_name + k for k in (section.model_extra or {})]
    if api.handler.type == "python" and "type" in api.handler.model_fields_set:
        found.append("handler.type")
    return found


def _location(loc: tuple[int | str, ...]) -> str:
    aliases = {
        "timeout_s": "timeout",
        "retry_backoff_s": "retry_backoff",
        "window_s": "window",
        "max_payload_size_bytes": "max_payload_size",
        "retention_s": "retention",
        "max_retry_backoff_s": "max_retry_backoff",
        "retry_for_s": "retry_for",
    }
    parts = [str(aliases.get(str(p), p)) for p in loc if not str(p).startswith("function-")]
    return ".".join(parts)


def parse_apis(document: Any, source: str, base_dir: Path) -> list[ApiConfig]:
    """Validate a parsed API file; raises ``ConfigError`` with one line per problem."""
    if document is None:
        document = []
    if not isinstance(document, list):
        raise ConfigError(
            [f"{source}: expected a YAML list of APIs, got {type(document).__name__}"]
        )
    problems: list[str] = []
    apis: list[ApiConfig] = []
    for index, entry in enumerate(document):
        if not isinstance(entry, dict):
            problems.append(f"{source}: entry {index}: expected a mapping")
            continue
        label = f"api {entry.get('name')!r}" if entry.get("name") else f"entry {index}"
        kind = entry.get("kind", "AsyncAPI")
        if kind != "AsyncAPI":
            log.info("skipping %s: kind %s is not served by asyncgw", label, kind)
            continue
        try:
            api = ApiConfig.model_validate({**entry, "base_dir": base_dir})
        except ValidationError as exc:
            for err in exc.errors():
                where = _location(err["loc"])
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{source}: {label}: {where + ': ' if where else ''}{msg}")
            continue
        for name in _ignored_fields(api):
            log.warning("api %s: field %s is ignored by asyncgw", api.name, name)
        apis.append(api)
    seen_names: set[str] = set()
    seen_endpoints: set[str] = set()
    for api in apis:
        if api.name in seen_names:
            problems.append(f"{source}: api {api.name!r}: name: defined more than once")
        elif api.endpoint in seen_endpoints:
            problems.append(
                f"{source}: api {api.name!r}: networking.endpoint: /{api.endpoint} is used twice"
            )
        seen_names.add(api.name)
        seen_endpoints.add(api.endpoint)
    if problems:
        raise ConfigError(problems)
    return apis


def load_apis(path: Path) -> list[ApiConfig]:
    """Read and validate the API file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the API file: {exc.strerror}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}".replace("\n", " ")]) from None
    return parse_apis(document, str(path), path.resolve().parent)
