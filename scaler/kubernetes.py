"""The Kubernetes scale target: reads and merge-patches ``deployments/<name>/scale`` through
kubernetes-asyncio. Only this module talks to the Kubernetes API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.config import ConfigException

from asyncgw.config import ApiConfig
from asyncgw.errors import BackendUnavailable

log = logging.getLogger(__name__)


def deployment_name(api: str) -> str:
    """The worker Deployment of an API."""
    return f"asyncgw-worker-{api}"


class KubernetesTarget:
    """Scales ``asyncgw-worker-<api>`` Deployments in ``namespace``."""

    def __init__(
        self,
        namespace: str,
        *,
        configuration: Any = None,
        name_of: Callable[[str], str] = deployment_name,
    ) -> None:
        self.namespace = namespace
        self.name_of = name_of
        self._configuration = configuration
        self._client: Any = None
        self._apps: Any = None

    async def open(self) -> None:
        """Connect with the given configuration, else in-cluster, else the kubeconfig."""
        configuration = self._configuration
        if configuration is None:
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                await config.load_kube_config(client_configuration=configuration)
        self._client = client.ApiClient(configuration)
        self._apps = client.AppsV1Api(self._client)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def replicas(self, api: ApiConfig) -> int:
        name = self.name_of(api.name)
        try:
            scale = await self._apps.read_namespaced_deployment_scale(name, self.namespace)
        except (ApiException, aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable("kubernetes", f"reading {name}/scale: {_reason(exc)}") from exc
        return int(scale.spec.replicas or 0)

    async def scale(self, api: ApiConfig, replicas: int) -> None:
        name = self.name_of(api.name)
        try:
            await self._apps.patch_namespaced_deployment_scale(
                name,
                self.namespace,
                {"spec": {"replicas": replicas}},
                _content_type="application/merge-patch+json",
            )
        except (ApiException, aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(
                "kubernetes", f"patching {name}/scale: {_reason(exc)}"
            ) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__
