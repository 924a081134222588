"""platform/kubernetes/: the manifests that deploy Ferry itself validate against the real schemas, kustomize
lists them all, and the RBAC rules grant exactly what the driver uses."""

from pathlib import Path

import yaml

from deployer.kubernetes.apply import MANAGED_KINDS
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
