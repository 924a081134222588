"""The model mesh on Kubernetes (docs/mesh.md): what a pool and a pool model render to. Pure.

A pool (`metadata.type: ModelPool`) runs N copies of Ferry's own model server in pool mode: they start with
no model, and the control plane's placer loads and unloads models on each of them through the V2 model
repository API. So the placer and Ferry's gateway must address every pod by itself, and a pool must never
be scaled to zero by someone who does not know which models it holds. That rules out a Knative Service (its
activator and queue-proxy stand between callers and pods, and its autoscaler scales on requests it sees),
and a per-version Service or HTTPRoute (they spread requests over pods whatever each has loaded). On either
flavor a pool is:

- per version, a plain apps/v1 Deployment `<name>-v<N>` with the instance count as replicas (left to the HPA
  when the pool has an autoscaler: hpa.py targets the same Deployment, on either flavor);
- one headless Service `<name>` (clusterIP None) over all its pods: DNS answers every pod's address;
- its NetworkPolicy, admitting Ferry's own namespace (the gateway and the placer) on the server's port, and
  the monitoring namespaces on the metrics port. No ingress gateway routes to a pool's pods.

A pool model (`metadata.pool: <pool>`) has no process of its own: its versions are loaded into the pool's
pods, so it renders nothing (and the driver applies nothing for it, not even its token's Secret).
"""

from __future__ import annotations

from processors.codes import LLM_PROCESSORS
from processors.registry import FERRY_RUNTIME_IMAGE

from .desired import ServiceDesired, VersionDesired
from .meta import dns_name, metadata, selector_labels, version_labels, version_name
from .netpol import ingress_rule, policy_name
from .pod import (
    CONTAINER,
    RUNTIME_UID,
    TMP_VOLUME,
    checked_file,
    cluster_pod_fields,
    container_security,
    grace_period,
    metrics_endpoint,
    pod_annotations,
    resources,
)
from .token import token_env
from .volumes import FETCH_SECRET, RenderError

# As services/servicefile/mesh.py reads a service file (is_pool, pool_name); not imported, so the renderers stay
# standalone (tests/kubernetes/test_render_pool.py checks that both agree).
MODEL_POOL = "ModelPool"
POOL_PORT = 8080
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# Where the pool server keeps the models it fetches when told to load one (load body `model_uri`).
MODEL_CACHE_VOLUME = "model-cache"
MODEL_CACHE_DIR = "/var/cache/ferry/models"
MODEL_CACHE_ENV = "FERRY_MODEL_CACHE_DIR"
# The fetch policy the pool server applies to its own fetches, under the control plane's setting names.
FETCH_ENV = ("FERRY_FETCH_ALLOWED_NETWORKS", "FERRY_FETCH_MAX_BYTES", "FERRY_FETCH_TIMEOUT_SECONDS")


def is_pool(doc: dict) -> bool:
    meta = doc.get("metadata")
    return isinstance(meta, dict) and meta.get("type") == MODEL_POOL


def is_pool_model(doc: dict) -> bool:
    meta = doc.get("metadata")
    return isinstance(meta, dict) and bool(meta.get("pool"))


def mesh_role(desired: ServiceDesired) -> str:
    """"pool", "pool-model" or "" (any other service), from the newest version's file: a service cannot
    become or stop being either (its file would not validate), so every version agrees."""
    if not desired.versions:
        return ""
    doc = desired.newest.service_file
    return "pool" if is_pool(doc) else "pool-model" if is_pool_model(doc) else ""


def pool_has_hpa(desired: ServiceDesired) -> bool:
    """Unlike hpa.has_hpa, on both flavors: a pool is a plain Deployment on a Knative cluster too."""
    return bool(desired.running and desired.autoscaler)


def render_pool(desired: ServiceDesired) -> list[dict]:
    from .hpa import hpa  # hpa.py imports pod.py, as this module does; kept beside its only use

    manifests = [headless_service(desired)]
    for version in sorted(desired.versions, key=lambda v: v.number):
        manifests.append(pool_deployment(desired, version))
        if pool_has_hpa(desired):
            manifests.append(hpa(desired, version))
    manifests.append(pool_network_policy(desired))
    return manifests


def pool_command(desired: ServiceDesired, doc: dict) -> list[str]:
    """The same command the local cluster starts a pool instance with: a model server with no model."""
    return ["python", "-m", "processors.modelserver", "--pool", "--model-name", desired.name,
            "--processor", doc.get("processor") or "", "--http-port", str(POOL_PORT), "--host", "0.0.0.0"]


def pool_deployment(desired: ServiceDesired, version: VersionDesired) -> dict:
    doc = version.service_file
    if not doc.get("processor"):
        raise RenderError("processor", "a pool names the processor its model server loads models with")
    if doc.get("processor") in LLM_PROCESSORS:
        raise RenderError("processor", f"an adapter pool ({doc['processor']}: LoRA adapters loaded at run time) runs "
                                       "on the local cluster only for now; on Kubernetes deploy the adapters as "
                                       "--lora-modules of an LLM service")
    if doc.get("processor") == "python":
        raise RenderError("processor", "a python pool (each model's own handler loaded at run time) runs on the "
                                       "local cluster only for now: its server would have to fetch the handlers")
    spec: dict = {}
    if not desired.running:
        spec["replicas"] = 0
    elif not pool_has_hpa(desired):
        spec["replicas"] = version.replicas
    # With an HPA, replicas stays out of the applied configuration: the HPA owns the field (raw.py does the same).
    annotations = pod_annotations(desired, version, knative=False)
    template_meta: dict = {"labels": version_labels(desired, version.number)}
    if annotations:
        template_meta["annotations"] = dict(sorted(annotations.items()))
    spec.update({
        "selector": {"matchLabels": {**selector_labels(desired), "ferry.dev/version": str(version.number)}},
        # One new pod at a time and none taken away first: the placer loads models onto the new pod before
        # an old one, with its models, goes.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "revisionHistoryLimit": 2,
        "template": {"metadata": template_meta, "spec": _pod_spec(desired, version)},
    })
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(desired, version_name(desired, version.number), number=version.number),
            "spec": spec}


def headless_service(desired: ServiceDesired) -> dict:
    """`<name>`: no virtual IP and no load balancing, only the addresses of the pool's pods (ready ones; the
    placer and the gateway learn them from Ferry's observed instances, this is for anyone else)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(desired, dns_name(desired.name)),
            "spec": {"clusterIP": "None", "selector": selector_labels(desired),
                     "ports": [{"name": "http", "port": POOL_PORT, "targetPort": "http", "protocol": "TCP",
                                "appProtocol": "http"}]}}


def pool_network_policy(desired: ServiceDesired) -> dict:
    """Only Ferry's namespace (the placer loads and unloads, the gateway forwards) reaches the server; the
    monitoring namespaces reach its metrics port. Neither the ingress gateway nor Knative carries traffic to
    a pool, so `ingress_namespaces` are not admitted."""
    cluster = desired.cluster
    rules = []
    if cluster.ferry_namespace:
        rules.append(ingress_rule([cluster.ferry_namespace], [POOL_PORT]))
    scraped = sorted({e[0] for e in (metrics_endpoint(v.service_file) for v in desired.versions) if e})
    if scraped and cluster.monitoring_namespaces:
        rules.append(ingress_rule(list(dict.fromkeys(cluster.monitoring_namespaces)), scraped))
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(desired, policy_name(desired)),
            "spec": {"podSelector": {"matchLabels": selector_labels(desired)}, "policyTypes": ["Ingress"],
                     "ingress": rules}}


def _pod_spec(desired: ServiceDesired, version: VersionDesired) -> dict:
    doc = checked_file(desired, version, knative=False)
    cluster = desired.cluster
    cache = ({"persistentVolumeClaim": {"claimName": cluster.model_cache_pvc}} if cluster.model_cache_pvc
             else {"emptyDir": {}})
    spec: dict = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "fsGroup": RUNTIME_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(desired, version)],
        "volumes": [{"name": MODEL_CACHE_VOLUME, **cache}, {"name": TMP_VOLUME, "emptyDir": {}}],
        "terminationGracePeriodSeconds": grace_period(doc) + cluster.drain_seconds,
    }
    return spec | cluster_pod_fields(cluster)


def _container(desired: ServiceDesired, version: VersionDesired) -> dict:
    doc = version.service_file
    cluster = desired.cluster

    def check(path: str) -> dict:
        return {"httpGet": {"path": path, "port": "http"}}

    return {
        "name": CONTAINER,
        "image": cluster.runtime_image or FERRY_RUNTIME_IMAGE,
        "args": pool_command(desired, doc),
        "ports": [{"name": "http", "containerPort": POOL_PORT, "protocol": "TCP"}],
        "env": [*_fetch_env(desired), token_env(desired)],
        # Object-store credentials for the models it fetches, as the fetch-model init container takes them.
        "envFrom": [{"secretRef": {"name": FETCH_SECRET, "optional": True}}],
        "resources": resources(doc.get("metadata") or {}),
        "volumeMounts": [{"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_DIR},
                         {"name": TMP_VOLUME, "mountPath": "/tmp"}],
        "securityContext": container_security(read_only_root=True, uid=RUNTIME_UID),
        # An empty server is ready at once; loads come later and answer for themselves, so no startup probe.
        "readinessProbe": {**check(READY_PATH), "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**check(LIVE_PATH), "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", f"sleep {cluster.drain_seconds}"]}}},
    }


def _fetch_env(desired: ServiceDesired) -> list[dict]:
    """Where the server caches the models it fetches, and the cluster's fetch policy for those fetches (the
    same limits the fetch-model init container gets as flags, volumes.fetch_policy_args)."""
    cluster = desired.cluster
    env = [{"name": MODEL_CACHE_ENV, "value": MODEL_CACHE_DIR}]
    networks, max_bytes, timeout = FETCH_ENV
    if cluster.fetch_allowed_networks:
        env.append({"name": networks, "value": ",".join(cluster.fetch_allowed_networks)})
    if cluster.fetch_max_bytes is not None:
        env.append({"name": max_bytes, "value": str(cluster.fetch_max_bytes)})
    if cluster.fetch_timeout_seconds is not None:
        env.append({"name": timeout, "value": f"{cluster.fetch_timeout_seconds:g}"})
    return env
