"""Plain desired states for the renderer tests, from the example service files in examples/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployer.kubernetes.desired import ClusterSettings, GatewayRef, ServiceDesired, VersionDesired
from services.servicefile import validate_service_file

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
EXAMPLE_NAMES = ("bert_tfserving", "custom_container", "digits_onnx", "iris_sklearn", "triton_test")
# LLM engines' service files (tests/kubernetes/llm/): vLLM on CPU, vLLM on two GPUs, SGLang with its model on NFS.
LLM_DIR = Path(__file__).resolve().parent / "llm"
LLM_NAMES = ("chat_vllm", "chat_vllm_gpu", "chat_sglang")
# The model mesh's service files (tests/kubernetes/mesh/, docs/mesh.md): a pool, an autoscaled pool, a pool model.
MESH_DIR = Path(__file__).resolve().parent / "mesh"
MESH_NAMES = ("pool1", "pool1_autoscaled")
POOL_MODEL_NAMES = ("m1",)
# (flavor, traffic API) pairs every example is rendered in.
CLUSTER_KINDS = (("raw", "gateway-api"), ("raw", "istio"), ("knative", "gateway-api"))


def example(name: str) -> dict:
    if name in MESH_NAMES + POOL_MODEL_NAMES:
        return validate_service_file(json.loads((MESH_DIR / f"{name}.json").read_text()))
    path = (LLM_DIR if name in LLM_NAMES else EXAMPLES_DIR) / f"{name}.json"
    if not path.exists():
        pytest.skip(f"the example service files are not here ({EXAMPLES_DIR} is missing)")
    return validate_service_file(json.loads(path.read_text()))


def cluster(flavor: str = "raw", traffic_api: str = "gateway-api", **extra) -> ClusterSettings:
    # The iris example mounts a model from the node: its admin allows that root (which needs the privileged
    # Pod Security level, tenancy.pod_security_problem).
    extra.setdefault("host_path_roots", ("/srv/models",))
    extra.setdefault("pod_security", "privileged")
    return ClusterSettings(flavor=flavor, traffic_api=traffic_api, gateway=GatewayRef("ferry", "ingress"),
                           domain="models.example.test", **extra)


def desired_for(doc: dict, *, flavor: str = "raw", traffic_api: str = "gateway-api", versions=None,
                **extra) -> ServiceDesired:
    """One version at 100 % unless `versions` [(number, weight, replicas, doc)] says otherwise."""
    chosen = tuple(VersionDesired(*v) for v in versions) if versions else (
        VersionDesired(1, 100, doc["metadata"].get("instance", 1), doc),)
    settings = extra.pop("cluster", None) or cluster(flavor, traffic_api)
    extra.setdefault("autoscaler", doc.get("autoscaler"))
    return ServiceDesired(name=doc["name"], namespace="ferry-team-a", versions=chosen, cluster=settings,
                          project="team_a", group=doc["metadata"].get("group", ""), **extra)


def by_kind(manifests: list[dict], kind: str, name: str | None = None) -> dict:
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} among {[(m['kind'], m['metadata']['name']) for m in manifests]}"
    return found[0]
