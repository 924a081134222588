"""platform/kubernetes/: the manifests that deploy Ferry itself validate against the real schemas, kustomize
lists them all, the RBAC rules grant exactly what the driver uses, and the gateway reads the routes the
workers seal."""

import os
from pathlib import Path
from unittest import mock

import yaml

from deployer.kubernetes.apply import MANAGED_KINDS
from gateway.config import _cluster
from tests.kubernetes.schemas import validate

PLATFORM = Path(__file__).resolve().parents[2] / "platform" / "kubernetes"
# (group, resource) -> verbs the driver needs beyond the managed kinds' full set.
OBSERVED = {("", "namespaces"): {"get", "create", "patch"}, ("", "pods"): {"get", "list", "delete"},
            ("", "pods/log"): {"get"}, ("", "events"): {"list"}, ("", "nodes"): {"list"}}
MANAGED_VERBS = {"get", "list", "create", "patch", "delete"}
PLURALS = {"HTTPRoute": "httproutes", "VirtualService": "virtualservices", "DestinationRule": "destinationrules",
           "Service": "services", "Secret": "secrets", "HorizontalPodAutoscaler": "horizontalpodautoscalers", "Deployment": "deployments",
           "NetworkPolicy": "networkpolicies"}


def _documents():
    kustomization = yaml.safe_load((PLATFORM / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((PLATFORM / name).read_text()):
            if document:
                yield name, document


def test_kustomize_lists_every_manifest_file():
    listed = set(yaml.safe_load((PLATFORM / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in PLATFORM.glob("*.yaml")} - {"kustomization.yaml"}


def test_every_platform_manifest_validates():
    kinds = []
    for _, document in _documents():
        validate(document)
        kinds.append(document["kind"])
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Secret", "Deployment",
            "Service"} <= set(kinds)


def test_web_worker_and_beat_run_as_the_ferry_service_account():
    deployments = {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == "Deployment"}
    for name in ("ferry-web", "ferry-worker", "ferry-beat"):
        spec = deployments[name]["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == "ferry" and spec["securityContext"]["runAsNonRoot"] is True
    assert deployments["ferry-beat"]["spec"]["replicas"] == 1


def test_rbac_grants_exactly_the_kinds_ferry_manages():
    (role,) = [d for _, d in _documents() if d["kind"] == "ClusterRole"]
    granted = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    wanted = dict(OBSERVED)
    for api_version, kind in MANAGED_KINDS:
        group = api_version.split("/")[0] if "/" in api_version else ""
        wanted[(group, PLURALS[kind])] = MANAGED_VERBS
    assert granted == wanted


def _deployments() -> dict:
    return {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == "Deployment"}


def test_the_gateway_serves_this_clusters_routes_from_redis_on_every_address():
    """The data plane in the cluster (docs/mesh.md, Kubernetes): what routes pool models to the pods that
    have them loaded. It asks for nothing of the Kubernetes API or the database."""
    gateway = _deployments()["ferry-gateway"]
    pod = gateway["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "gateway"]
    env = {item["name"]: item.get("value") or item["valueFrom"] for item in container["env"]}
    assert env["FERRY_GATEWAY_HOST"] == "0.0.0.0" and env["FERRY_GATEWAY_PORT"] == "8080"
    assert env["REDIS_URL"].startswith("redis://:$(REDIS_PASSWORD)@ferry-redis:6379/")
    assert env["FERRY_ROUTE_KEY"] == {"secretKeyRef": {"name": "ferry-secrets", "key": "FERRY_ROUTE_KEY"}}
    # The name must be one the gateway accepts (it exits on any other).
    with mock.patch.dict(os.environ, {"FERRY_GATEWAY_CLUSTER": env["FERRY_GATEWAY_CLUSTER"]}):
        assert _cluster() == env["FERRY_GATEWAY_CLUSTER"] != "local"
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    assert all(source.get("secretRef") is None for source in container.get("envFrom", []))  # no database, no keys
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (service,) = [d for _, d in _documents() if d["kind"] == "Service" and d["metadata"]["name"] == "ferry-gateway"]
    assert service["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_every_pod_that_seals_or_reads_routes_shares_one_route_key():
    """The workers seal each route's token with FERRY_ROUTE_KEY and the gateway checks callers with it: a key
    per pod (the default, a file in its own emptyDir) would make every token look wrong to the gateway."""
    (secret,) = [d for _, d in _documents() if d["kind"] == "Secret" and d["metadata"]["name"] == "ferry-secrets"]
    assert "FERRY_ROUTE_KEY" in secret["stringData"]
    for name in ("ferry-web", "ferry-worker", "ferry-beat"):
        (container,) = _deployments()[name]["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "ferry-secrets"}} in container["envFrom"], name
