"""The Kubernetes manifests in k8s/, checked with the ecosystem's own tools: `kubectl kustomize`
builds them, kubernetes-asyncio's models read them, and the kmock emulator accepts them from the
same client library the scaler uses. asyncgw's own loader reads the API file they ship."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from kmock import resource as kmock_resource
from kubernetes_asyncio import client

from asyncgw.config import ApiConfig, parse_apis
from asyncgw.units import parse_duration
from scaler.kubernetes import KubernetesTarget

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"

#: Every kind the deployment ships, with the kubernetes-asyncio model that reads it.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}
#: Objects that others refer to are created first, as `kubectl apply` would need.
CREATE_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
]
#: What the scaler may do, and nothing more: (apiGroup, resource, verb).
SCALER_GRANTS = {
    ("apps", resource, verb)
    for resource in ("deployments", "deployments/scale")
    for verb in ("get", "list", "patch")
}
COMPONENT = "app.kubernetes.io/component"


# --- building -------------------------------------------------------------------------------


def kustomize(path: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds from ``path``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: the Kubernetes manifests cannot be checked")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    return kustomize(OVERLAY)


# --- reading the built objects ---------------------------------------------------------------


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
    return found[0]


def deployments(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    return [
        obj
        for obj in of_kind(objects, "Deployment")
        if obj["spec"]["template"]["metadata"]["labels"].get(COMPONENT) == component
    ]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return result


def all_containers(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(deployment):
            yield deployment["metadata"]["name"], container


def environment(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container sees from envFrom (ConfigMaps, Secrets) and plain env values,
    resolving the references against the built objects, as the kubelet would."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            secret = named(objects, "Secret", source["secretRef"]["name"])
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def api_file_path(objects: list[dict[str, Any]], deployment: dict[str, Any]) -> str:
    """ASYNCGW_CONFIG of the deployment's first container."""
    return environment(objects, containers(deployment)[0])["ASYNCGW_CONFIG"]


def mounted_file(objects: list[dict[str, Any]], deployment: dict[str, Any], path: str) -> str:
    """The text of the file at ``path`` inside the pod, from the ConfigMap mounted there."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in containers(deployment)[0].get("volumeMounts", []):
        folder = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).parent == folder and "configMap" in volumes[mount["name"]]:
            configmap = named(objects, "ConfigMap", volumes[mount["name"]]["configMap"]["name"])
            key = PurePosixPath(path).name
            assert key in configmap["data"], f"{path}: no key {key} in {configmap['metadata']}"
            text: str = configmap["data"][key]
            return text
    raise AssertionError(f"{deployment['metadata']['name']}: nothing mounted at {path}")


def apis(objects: list[dict[str, Any]]) -> list[ApiConfig]:
    """The APIs of the API file the gateway reads, validated by asyncgw's own loader."""
    gateway = deployments(objects, "gateway")[0]
    path = api_file_path(objects, gateway)
    text = mounted_file(objects, gateway, path)
    return parse_apis(yaml.safe_load(text), path, Path(path).parent)


# --- the files and the build ------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])
    assert len(files) >= 7, files
    for path in files:
        documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert documents, f"{path} is empty"


@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "overlay-example"])
def test_kustomize_builds(folder: Path) -> None:
    objects = kustomize(folder)
    assert {(obj["apiVersion"], obj["kind"]) for obj in objects} == set(MODELS)


def test_kinds(built: list[dict[str, Any]]) -> None:
    assert {(obj["apiVersion"], obj["kind"]) for obj in built} == set(MODELS)
    counts = {kind: len(of_kind(built, kind)) for _, kind in MODELS}
    assert counts["Namespace"] == 1
    assert counts["Service"] == 1
    assert counts["Role"] == counts["RoleBinding"] == counts["ServiceAccount"] == 1
    namespace = of_kind(built, "Namespace")[0]["metadata"]["name"]
    for obj in built:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]


async def test_objects_deserialise_into_kubernetes_models(built: list[dict[str, Any]]) -> None:
    """Each object reads into its kubernetes-asyncio model (required fields, types) and writes
    back unchanged, so no field is misspelt or unknown to the Kubernetes API."""

    class Response:  # what ApiClient.deserialize reads: the body as JSON text in `.data`
        def __init__(self, obj: dict[str, Any]) -> None:
            self.data = json.dumps(obj)

    async with client.ApiClient(client.Configuration()) as api:
        for obj in built:
            model = api.deserialize(Response(obj), MODELS[obj["apiVersion"], obj["kind"]])
            assert model.metadata.name == obj["metadata"]["name"]
            assert api.sanitize_for_serialization(model) == obj, obj["metadata"]["name"]


def test_images_come_from_the_overlay(built: list[dict[str, Any]]) -> None:
    for _, container in all_containers(kustomize(BASE)):
        assert container["image"] == "asyncgw:0.1.0"
    for name, container in all_containers(built):
        assert container["image"] == "registry.example.com/asyncgw:0.1.0", name


# --- what the services need -------------------------------------------------------------------


def test_api_file_is_valid_and_its_handlers_are_in_the_image(built: list[dict[str, Any]]) -> None:
    found = apis(built)
    assert {api.name for api in found} == {"iris", "shout", "checksum", "count"}
    for api in found:
        # The Dockerfile copies examples/ to /app/examples.
        relative = api.handler_path.relative_to("/app/examples")
        assert (ROOT / "examples" / relative).is_file(), api.handler_path
    # Every service reads the same API file.
    for deployment in of_kind(built, "Deployment"):
        path = api_file_path(built, deployment)
        assert mounted_file(built, deployment, path) == mounted_file(
            built, deployments(built, "gateway")[0], path
        )


def test_one_worker_deployment_per_api(built: list[dict[str, Any]]) -> None:
    workers = {obj["metadata"]["name"]: obj for obj in deployments(built, "worker")}
    assert set(workers) == {f"asyncgw-worker-{api.name}" for api in apis(built)}
    for api in apis(built):
        worker = workers[f"asyncgw-worker-{api.name}"]
        (container,) = containers(worker)
        assert container["args"] == ["worker", "--api", api.name]
        # Left to the scaler: re-applying the manifests must not reset the replica count.
        assert "replicas" not in worker["spec"]


def test_termination_grace_period_exceeds_the_workers_grace_period(
    built: list[dict[str, Any]],
) -> None:
    for deployment in [*deployments(built, "worker"), *deployments(built, "gateway")]:
        env = environment(built, containers(deployment)[0])
        grace = parse_duration(env.get("ASYNCGW_GRACE_PERIOD", "30s"))
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_backend_settings_are_filled_in(built: list[dict[str, Any]]) -> None:
    schemes = {
        "ASYNCGW_QUEUE_URL": "amqp://",
        "ASYNCGW_STORE_URL": "mongodb://",
        "ASYNCGW_STORAGE_URL": "s3://",
    }
    for name, container in all_containers(built):
        env = environment(built, container)
        for variable, scheme in schemes.items():
            assert env[variable].startswith(scheme), (name, variable)
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            assert env[variable], (name, variable)
        assert env["ASYNCGW_LOG_LEVEL"] in {"DEBUG", "INFO", "WARNING", "ERROR"}


def test_gateway_probes_service_and_resources(built: list[dict[str, Any]]) -> None:
    (gateway,) = deployments(built, "gateway")
    (container,) = containers(gateway)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080}
    assert container["args"][0] == "gateway"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports.get(container[probe]["httpGet"]["port"]) == 8080, probe

    (service,) = of_kind(built, "Service")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, "http")]

    for name, each in all_containers(built):
        requests = each["resources"]["requests"]
        assert {"cpu", "memory"} <= set(requests), name


def test_scaler_role_grants_only_scaling_deployments(built: list[dict[str, Any]]) -> None:
    (role,) = of_kind(built, "Role")
    grants = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no URLs, no names
        grants |= {
            (group, resource, verb)
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    assert grants == SCALER_GRANTS

    (binding,) = of_kind(built, "RoleBinding")
    (account,) = of_kind(built, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]

    (scaler,) = deployments(built, "scaler")
    pod = scaler["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert scaler["spec"]["replicas"] == 1
    (container,) = containers(scaler)
    assert container["args"] == ["scaler"]
    env = {var["name"]: var for var in container["env"]}
    assert env["ASYNCGW_SCALER_TARGET"]["value"] == "kubernetes"
    assert env["ASYNCGW_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_pods_carry_prometheus_scrape_annotations(built: list[dict[str, Any]]) -> None:
    expected_port = {"gateway": 8080, "worker": 9090, "scaler": 9090}
    for deployment in of_kind(built, "Deployment"):
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        port = int(annotations["prometheus.io/port"])
        assert port == expected_port[template["metadata"]["labels"][COMPONENT]]
        declared = {p["containerPort"] for c in containers(deployment) for p in c["ports"]}
        assert port in declared, deployment["metadata"]["name"]


def test_pods_run_as_non_root(built: list[dict[str, Any]]) -> None:
    for deployment in of_kind(built, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        # Only the scaler talks to the Kubernetes API.
        is_scaler = deployment["spec"]["template"]["metadata"]["labels"][COMPONENT] == "scaler"
        assert pod["automountServiceAccountToken"] is is_scaler
        # Service links would add ASYNCGW_GATEWAY_* variables next to asyncgw's own settings.
        assert pod["enableServiceLinks"] is False
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True


# --- applying them ----------------------------------------------------------------------------


async def test_objects_apply_to_the_kubernetes_emulator(
    kmock: Any, built: list[dict[str, Any]]
) -> None:
    """Create every object through kubernetes-asyncio on kmock, read each back, then scale every
    API's worker Deployment with the scaler's own Kubernetes target."""
    configuration = client.Configuration(host=str(kmock.url).rstrip("/"))
    ordered = sorted(built, key=lambda obj: CREATE_ORDER.index(obj["kind"]))
    async with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        namespace = of_kind(built, "Namespace")[0]["metadata"]["name"]
        calls = {
            "ConfigMap": (core.create_namespaced_config_map, core.read_namespaced_config_map),
            "Secret": (core.create_namespaced_secret, core.read_namespaced_secret),
            "Service": (core.create_namespaced_service, core.read_namespaced_service),
            "ServiceAccount": (
                core.create_namespaced_service_account,
                core.read_namespaced_service_account,
            ),
            "Deployment": (apps.create_namespaced_deployment, apps.read_namespaced_deployment),
            "Role": (rbac.create_namespaced_role, rbac.read_namespaced_role),
            "RoleBinding": (rbac.create_namespaced_role_binding, rbac.read_namespaced_role_binding),
        }
        for obj in ordered:
            name = obj["metadata"]["name"]
            if obj["kind"] == "Namespace":
                # kmock 0.8 reads /api/v1/namespaces[/NAME] as a namespace scope, not as the
                # namespaces resource, and answers 500: store it through kmock's own API instead.
                kmock.objects[kmock_resource("v1", "namespaces"), None, name] = obj
                assert kmock.objects[kmock_resource("v1", "namespaces"), None, name] == obj
                continue
            create, fetch = calls[obj["kind"]]
            await create(namespace, obj)
            read = await fetch(name, namespace)
            assert api.sanitize_for_serialization(read) == obj, name

        listed = await apps.list_namespaced_deployment(namespace)
        assert {d.metadata.name for d in listed.items} == {
            d["metadata"]["name"] for d in of_kind(built, "Deployment")
        }

        # The scaler's own Kubernetes target, on the namespace the scaler pod is given.
        (scaler,) = deployments(built, "scaler")
        field = {v["name"]: v for v in containers(scaler)[0]["env"]}["ASYNCGW_NAMESPACE"]
        assert field["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        target = KubernetesTarget(scaler["metadata"]["namespace"], configuration=configuration)
        await target.open()
        try:
            for api_config in apis(built):
                # No spec.replicas in the manifest: Kubernetes starts it at 1, kmock at none.
                assert await target.replicas(api_config) in {0, 1}
                await target.scale(api_config, 3)
                assert await target.replicas(api_config) == 3
                name = f"asyncgw-worker-{api_config.name}"
                deployment = await apps.read_namespaced_deployment(name, namespace)
                assert deployment.spec.replicas == 3
                assert deployment.spec.template.spec.containers[0].args[-1] == api_config.name
        finally:
            await target.close()
