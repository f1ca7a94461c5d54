"""``asyncgw scaler`` as a process: it reads the queue of the production stack, patches the
worker Deployment on the kmock emulator through a kubeconfig, keeps going past an API whose
Deployment is missing, and stops gracefully."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import yaml
from kmock import KubernetesEmulator

from tests.e2e.stack import Proc, Stack, submit

NAMESPACE = "asyncgw-e2e"
DEPLOYMENTS = "apps/v1/deployments"


def replicas(kmock: KubernetesEmulator, name: str) -> int:
    obj = kmock.objects[DEPLOYMENTS, NAMESPACE, name]
    return int(obj.get("spec", {}).get("replicas", 0))  # type: ignore[union-attr]


async def test_scaler_process_scales_the_deployment_up_from_zero(
    stack: Stack,
    http: aiohttp.ClientSession,
    api_name: str,
    kmock: KubernetesEmulator,
    tmp_path: Path,
) -> None:
    name = f"asyncgw-worker-{api_name}"
    kmock.objects[DEPLOYMENTS, NAMESPACE, name] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"replicas": 0},
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url)}}],
                "users": [{"name": "test", "user": {"token": "test"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }
        )
    )
    stack.env.update(
        KUBECONFIG=str(kubeconfig),
        ASYNCGW_NAMESPACE=NAMESPACE,
        ASYNCGW_SCALER_INTERVAL="0.2s",
        KUBERNETES_SERVICE_HOST="",  # not in a cluster: use the kubeconfig
    )
    stack.add_api(api_name, "echo", autoscaling={"min_replicas": 0, "max_replicas": 3})
    stack.add_api(f"{api_name}-bin", "echo", autoscaling={"min_replicas": 0})  # no Deployment
    await stack.gateway()
    metrics_port = __import__("tests.servers", fromlist=["free_port"]).free_port()
    scaler = stack._start(["scaler", "--metrics-port", str(metrics_port)], "scaler")
    try:
        await check_scaler(stack, http, api_name, kmock, name, metrics_port, scaler)
    finally:
        if scaler.process.poll() is None:  # before the emulator shuts down
            scaler.process.kill()
            scaler.process.wait()


async def check_scaler(
    stack: Stack,
    http: aiohttp.ClientSession,
    api_name: str,
    kmock: KubernetesEmulator,
    name: str,
    metrics_port: int,
    scaler: Proc,
) -> None:
    await scaler.wait_for_output("scaling 2 APIs", 60)
    for _ in range(3):
        await submit(http, f"{stack.base_url}/{api_name}", json={})
    deadline = time.monotonic() + 30
    while replicas(kmock, name) == 0:
        assert time.monotonic() < deadline, scaler.output()
        await asyncio.sleep(0.05)
    assert replicas(kmock, name) == 1  # scale from zero: one replica, on the next tick
    assert "scale from zero" in scaler.output()
    # The API without a Deployment is reported and left alone; the other one went on.
    assert f"asyncgw-worker-{api_name}-bin/scale" in scaler.output()
    async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
        text = await answer.text()
    assert f'asyncgw_replicas{{api="{api_name}",kind="desired"}} 1.0' in text
    assert f'asyncgw_scaler_metrics_up{{api="{api_name}-bin"}} 0.0' in text
    assert scaler.stop() == 0
    assert "scaler stopped" in scaler.output()
