"""The `raw` flavor's scaling: one autoscaling/v2 HorizontalPodAutoscaler per version. Pure.

EAS strategies map to HPA metrics: `cpu` is the Resource metric (utilization %), `qps`, `gpu[util]`,
`queue[backlog]`, `concurrency` and `llm[waiting]` (an LLM engine's own queue) are Pods or External metrics
that prometheus-adapter serves from Prometheus (the seeds' HPA on ingress QPS and on GPU utilization; which
metric name, per cluster, in ClusterSettings.metrics).
Each version scales on its own: its traffic share is what its pods see.
"""

from __future__ import annotations

from autoscaler.knative import kpa_settings_from_annotations

from .desired import ServiceDesired, VersionDesired
from .meta import SERVICE_LABEL, VERSION_LABEL, dns_name, metadata, version_name
from .volumes import RenderError


def has_hpa(desired: ServiceDesired) -> bool:
    return bool(desired.running and desired.autoscaler and desired.cluster.flavor == "raw")


def hpa(desired: ServiceDesired, version: VersionDesired) -> dict:
    autoscaler = desired.autoscaler or {}
    name = version_name(desired, version.number)
    spec: dict = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        # An HPA cannot hold a Deployment at zero (HPAScaleToZero is alpha): scale to zero needs Knative.
        "minReplicas": max(1, int(autoscaler.get("min", 1))),
        "maxReplicas": max(1, int(autoscaler["max"])),
        "metrics": [_metric(desired, version, index, strategy)
                    for index, strategy in enumerate(_strategies(autoscaler))],
    }
    behavior = _behavior(autoscaler.get("behavior") or {})
    if behavior:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(desired, name, number=version.number), "spec": spec}


def _strategies(autoscaler: dict) -> list[dict]:
    """EAS strategies as they are; Knative KPA settings (`kpa`) as the equivalent per-pod target: the HPA
    sizes for target x utilization, as the KPA does (rps -> qps, concurrency -> requests in flight)."""
    if not autoscaler.get("kpa"):
        return list(autoscaler.get("scaleStrategies") or [])
    kpa = kpa_settings_from_annotations({key: str(value) for key, value in autoscaler["kpa"].items()})
    metric = "qps" if kpa.metric == "rps" else "concurrency"
    return [{"metricName": metric, "threshold": kpa.target_value}]


def quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as they are, fractions in thousandths ("0.5" -> "500m")."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{round(value * 1000)}m"


def _metric(desired: ServiceDesired, version: VersionDesired, index: int, strategy: dict) -> dict:
    name, threshold = strategy["metricName"], strategy["threshold"]
    if name == "cpu":
        # EAS's cpu threshold is a utilization percentage of the requested CPU, as the HPA's.
        return {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(round(threshold))}}}
    spec = desired.cluster.metrics.get(name)
    if spec is None:
        raise RenderError(f"autoscaler.scaleStrategies[{index}].metricName",
                          f'"{name}" has no metric configured for this cluster (settings.metrics)')
    target = {"type": "AverageValue", "averageValue": quantity(threshold * spec.scale)}
    if spec.type == "Pods":
        return {"type": "Pods", "pods": {"metric": {"name": spec.name}, "target": target}}
    labels = {**spec.selector, SERVICE_LABEL: dns_name(desired.name), VERSION_LABEL: str(version.number)}
    # AverageValue divides the external total by the pod count: EAS thresholds are per instance.
    return {"type": "External", "external": {"metric": {"name": spec.name, "selector": {"matchLabels": labels}},
                                             "target": target}}


def _behavior(behavior: dict) -> dict:
    result = {}
    for eas_key, key in (("scaleUp", "scaleUp"), ("scaleDown", "scaleDown")):
        window = (behavior.get(eas_key) or {}).get("stabilizationWindowSeconds")
        if window is not None:
            result[key] = {"stabilizationWindowSeconds": int(window)}
    return result
