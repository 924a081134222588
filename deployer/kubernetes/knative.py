"""The `knative` flavor: one Knative Service per Ferry service. Pure.

- The template is the newest desired version, as a *named* revision (`<service>-v<N>`): Ferry's immutable
  versions are Knative's immutable revisions, and older versions stay addressable by their names.
- The traffic block carries the weights (canary, blue-green) with a tag per version (`v<N>`), so every
  version has its own URL (`v<N>-<service>.<namespace>.<domain>`), even at 0 %.
- The scaling policy becomes `autoscaling.knative.dev/*` annotations (seeds 001); `features` entries with
  that prefix override them (window, panic window and threshold, target utilization, ...).
"""

from __future__ import annotations

import math

from autoscaler.knative import PREFIX, kpa_settings_from_annotations

from . import llm
from .desired import DEFAULT_METRICS, ServiceDesired, VersionDesired
from .meta import dns_name, metadata, version_labels, version_name, version_tag
from .pod import pod_annotations, pod_spec
from .traffic import request_timeout_seconds
from .volumes import RenderError

KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
CONCURRENCY_FEATURE = "ferry.dev/container-concurrency"


def knative_service(desired: ServiceDesired) -> dict:
    if desired.mirror and desired.mirror.ratio:
        raise RenderError("mirror", "Knative has no request mirroring; mirror on a cluster of flavor raw")
    newest = desired.newest
    doc = newest.service_file
    annotations = {**pod_annotations(desired, newest, knative=True), **autoscaling_annotations(desired, newest)}
    spec = pod_spec(desired, newest, knative=True)
    # An engine batches: no containerConcurrency unless the file sets one (a hard limit would hold requests
    # in the queue-proxy that the engine would have run in its batch).
    concurrency = container_concurrency(doc)
    if concurrency:
        spec["containerConcurrency"] = concurrency
    if llm.is_llm(doc):
        spec.update(llm.knative_timeouts(doc))
        annotations.update(_engine_annotations(desired, doc, annotations))
    else:
        # Seeds 001: about 1.2 x the longest request, so requests in flight finish before a pod goes away.
        spec["timeoutSeconds"] = max(1, math.ceil(request_timeout_seconds(doc) * 1.2))
    template = {"metadata": {"name": version_name(desired, newest.number),
                             "labels": version_labels(desired, newest.number),
                             "annotations": dict(sorted(annotations.items()))},
                "spec": spec}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": metadata(desired, dns_name(desired.name)),
            "spec": {"template": template, "traffic": traffic(desired)}}


def _engine_annotations(desired: ServiceDesired, doc: dict, annotations: dict[str, str]) -> dict[str, str]:
    """A long load must not fail the revision (Knative's progress deadline is 10 minutes), and when it scales
    on concurrency without a target, the target is the engine's batch size (processor_params)."""
    result = {llm.KNATIVE_PROGRESS_DEADLINE: f"{llm.progress_deadline_seconds(doc)}s"}
    batch = llm.batch_size(doc)
    on_concurrency = annotations.get(f"{PREFIX}metric", "concurrency") == "concurrency"
    if desired.autoscaler and batch and on_concurrency and f"{PREFIX}target" not in annotations:
        result[f"{PREFIX}target"] = str(batch)
    return result


def container_concurrency(doc: dict) -> int:
    """metadata.container_concurrency, or the older feature switch that set it before the field existed."""
    given = (doc.get("metadata") or {}).get("container_concurrency")
    return int(given if given is not None else (doc.get("features") or {}).get(CONCURRENCY_FEATURE) or 0)


def traffic(desired: ServiceDesired) -> list[dict]:
    versions = sorted(desired.versions, key=lambda v: v.number)
    percents = _summing_to_100({v.number: v.weight for v in versions}, desired.newest.number)
    return [{"revisionName": version_name(desired, v.number), "latestRevision": False,
             "percent": percents[v.number], "tag": version_tag(v.number)} for v in versions]


def autoscaling_annotations(desired: ServiceDesired, version: VersionDesired) -> dict[str, str]:
    autoscaler = desired.autoscaler
    if not autoscaler:
        # A fixed instance count: Knative keeps exactly that many.
        count = str(version.replicas)
        result = {f"{PREFIX}min-scale": count, f"{PREFIX}max-scale": count, f"{PREFIX}initial-scale": count}
    else:
        result = _policy(autoscaler, version)
    overrides = {key: str(value) for key, value in (version.service_file.get("features") or {}).items()
                 if key.startswith(PREFIX)}
    result.update(overrides)
    checked = dict(result)
    if checked.get(f"{PREFIX}class") == HPA_CLASS:
        # HPA-class metrics (cpu %, GPU usage) are not KPA's; check only the bounds and windows.
        checked.pop(f"{PREFIX}metric", None)
        checked.pop(f"{PREFIX}target", None)
    try:
        kpa_settings_from_annotations(checked)  # the same ranges Ferry's own KPA enforces
    except ValueError as exc:
        given = ", ".join(sorted(overrides)) or "the scaling policy"
        raise RenderError("features", f"{exc} (given: {given})") from None
    return result


def _policy(autoscaler: dict, version: VersionDesired) -> dict[str, str]:
    low, high = int(autoscaler.get("min", 1)), int(autoscaler["max"])
    result = {f"{PREFIX}min-scale": str(low), f"{PREFIX}max-scale": str(high),
              f"{PREFIX}initial-scale": str(max(low, 1, min(high, version.replicas)))}
    strategies = autoscaler.get("scaleStrategies") or []
    if autoscaler.get("kpa"):
        # The service file's KPA settings already use Knative's annotation names.
        result[f"{PREFIX}class"] = KPA_CLASS
        result.update({key: _annotation_value(value) for key, value in autoscaler["kpa"].items()})
    elif strategies:
        # A Knative revision scales on one metric: the first strategy decides (docs/kubernetes.md).
        result.update(_metric(strategies[0]))
    behavior = autoscaler.get("behavior") or {}
    delay = (behavior.get("scaleDown") or {}).get("stabilizationWindowSeconds")
    if delay:
        result[f"{PREFIX}scale-down-delay"] = f"{int(delay)}s"
    on_zero = behavior.get("onZero") or {}
    if on_zero.get("scaleDownGracePeriodSeconds"):
        result[f"{PREFIX}scale-to-zero-pod-retention-period"] = f"{int(on_zero['scaleDownGracePeriodSeconds'])}s"
    if on_zero.get("scaleUpActivationReplicas"):
        result[f"{PREFIX}activation-scale"] = str(int(on_zero["scaleUpActivationReplicas"]))
    return result


def _annotation_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _metric(strategy: dict) -> dict[str, str]:
    name, threshold = strategy["metricName"], f"{float(strategy['threshold']):g}"
    if name == "qps":
        return {f"{PREFIX}class": KPA_CLASS, f"{PREFIX}metric": "rps", f"{PREFIX}target": threshold}
    if name == "cpu":
        return {f"{PREFIX}class": HPA_CLASS, f"{PREFIX}metric": "cpu", f"{PREFIX}target": threshold}
    if name == "gpu[util]":
        # Knative's HPA class takes any other metric name as a Pods metric (served by prometheus-adapter).
        return {f"{PREFIX}class": HPA_CLASS, f"{PREFIX}metric": "container_gpu_usage",
                f"{PREFIX}target": f"{float(strategy['threshold']) / 100:g}"}
    if name == "llm[waiting]":
        # The engine's own queue is no KPA metric: a Pods metric of the HPA class, as for GPU utilization.
        return {f"{PREFIX}class": HPA_CLASS, f"{PREFIX}metric": DEFAULT_METRICS["llm[waiting]"].name,
                f"{PREFIX}target": threshold}
    # queue[backlog], concurrency: requests per instance is what KPA's concurrency measures.
    return {f"{PREFIX}class": KPA_CLASS, f"{PREFIX}metric": "concurrency", f"{PREFIX}target": threshold}


def _summing_to_100(weights: dict[int, int], newest: int) -> dict[int, int]:
    """Knative rejects a traffic block that does not sum to 100; Ferry's weights do once anything serves,
    and before that (nothing has traffic yet) the newest version takes it all."""
    total = sum(weights.values())
    if total == 100:
        return weights
    if total == 0:
        return {number: 100 if number == newest else 0 for number in weights}
    top = max(weights, key=lambda n: (weights[n], n))
    return {**weights, top: weights[top] + 100 - total}
