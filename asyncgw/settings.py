"""One typed settings object per service, built once at start from the environment and the API
file, then passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asyncgw.config import ApiConfig, load_apis
from asyncgw.errors import ConfigError
from asyncgw.units import parse_duration

DEFAULT_DATA_DIR = Path(".asyncgw")


def embedded_urls(data_dir: Path) -> dict[str, str]:
    """Backend URLs of the embedded mode, keeping everything below ``data_dir``."""
    root = data_dir.resolve()
    return {
        "queue_url": "memory://",
        "store_url": f"sqlite:///{root / 'asyncgw.db'}",
        "storage_url": f"file://{root / 'blobs'}",
    }


@dataclass(frozen=True)
class Settings:
    """Everything a service reads at start."""

    config_path: Path
    apis: tuple[ApiConfig, ...]
    queue_url: str
    store_url: str
    storage_url: str
    grace_period_s: float = 30.0
    log_level: str = "INFO"
    #: ``ASYNCGW_WEBHOOK_ALLOW_PRIVATE=1``: webhooks may target loopback and private networks.
    webhook_allow_private: bool = False
    #: ``ASYNCGW_NAMESPACE``: where the scaler finds the worker Deployments.
    namespace: str = "default"
    #: ``ASYNCGW_SCALER_TARGET``: ``kubernetes`` (``asyncgw scaler``) or ``local`` (``up``).
    scaler_target: str = "kubernetes"
    #: ``ASYNCGW_SCALER_INTERVAL``: time between autoscaling ticks.
    scaler_interval_s: float = 10.0
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def api(self, name: str) -> ApiConfig:
        """The API called ``name``; ``ConfigError`` when the API file has none."""
        for api in self.apis:
            if api.name == name:
                return api
        known = ", ".join(a.name for a in self.apis) or "none"
        raise ConfigError([f"{self.config_path}: no API named {name!r} (APIs: {known})"])

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        config_path: Path | None = None,
        data_dir: Path | None = None,
    ) -> Settings:
        """Read ``ASYNCGW_*`` variables and the API file; all problems are raised at once."""
        env = dict(os.environ if env is None else env)
        path = config_path or Path(env.get("ASYNCGW_CONFIG", "asyncgw.yaml"))
        data = data_dir or Path(env.get("ASYNCGW_DATA_DIR", str(DEFAULT_DATA_DIR)))
        urls = embedded_urls(data)
        problems: list[str] = []
        grace = 30.0
        try:
            grace = parse_duration(env.get("ASYNCGW_GRACE_PERIOD", "30s"))
        except ValueError as exc:
            problems.append(f"ASYNCGW_GRACE_PERIOD: {exc}")
        interval = 10.0
        try:
            interval = parse_duration(env.get("ASYNCGW_SCALER_INTERVAL", "10s"))
        except ValueError as exc:
            problems.append(f"ASYNCGW_SCALER_INTERVAL: {exc}")
        target = env.get("ASYNCGW_SCALER_TARGET", "kubernetes")
        if target not in {"kubernetes", "local"}:
            problems.append(f"ASYNCGW_SCALER_TARGET: expected kubernetes or local, got {target}")
        level = env.get("ASYNCGW_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            problems.append(
                f"ASYNCGW_LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR, got {level}"
            )
        apis: list[ApiConfig] = []
        try:
            apis = load_apis(path)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return cls(
            config_path=path,
            apis=tuple(apis),
            queue_url=env.get("ASYNCGW_QUEUE_URL", urls["queue_url"]),
            store_url=env.get("ASYNCGW_STORE_URL", urls["store_url"]),
            storage_url=env.get("ASYNCGW_STORAGE_URL", urls["storage_url"]),
            grace_period_s=grace,
            log_level=level,
            webhook_allow_private=env.get("ASYNCGW_WEBHOOK_ALLOW_PRIVATE", "") in {"1", "true"},
            namespace=env.get("ASYNCGW_NAMESPACE", "default"),
            scaler_target=target,
            scaler_interval_s=interval,
            env=env,
        )
