"""What the renderers make of traffic, scaling, resources, storage and scheduling; every object rendered
here is also checked against the real schemas."""

import pytest

from deployer.kubernetes.desired import ClusterSettings, MirrorDesired
from deployer.kubernetes.render import render
from deployer.kubernetes.volumes import RenderError
from tests.kubernetes.helpers import by_kind, cluster, desired_for, example
from tests.kubernetes.schemas import validate


def _render(desired):
    manifests = render(desired)
    for manifest in manifests:
        validate(manifest)
    return manifests


def _with(doc, **metadata):
    return {**doc, "metadata": {**doc["metadata"], **metadata}}


def _canary(flavor="raw", traffic_api="gateway-api", **extra):
    doc = example("iris_sklearn")
    return desired_for(doc, flavor=flavor, traffic_api=traffic_api,
                       versions=[(1, 90, 2, doc), (2, 10, 1, _with(doc, cpu=2))], **extra)


def test_a_canary_splits_the_httproute_by_weight_and_keeps_an_endpoint_per_version():
    route = by_kind(_render(_canary()), "HTTPRoute")
    weighted = route["spec"]["rules"][-1]
    assert [(b["name"], b["weight"]) for b in weighted["backendRefs"]] == [("iris-sklearn-v1", 90),
                                                                           ("iris-sklearn-v2", 10)]
    by_header = {rule["matches"][0]["headers"][0]["value"]: rule["backendRefs"][0]["name"]
                 for rule in route["spec"]["rules"] if rule["name"].startswith("version-")}
    assert by_header == {"1": "iris-sklearn-v1", "2": "iris-sklearn-v2"}
    assert route["spec"]["hostnames"] == ["iris-sklearn.ferry-team-a.models.example.test"]
    assert {p["kind"] for p in route["spec"]["parentRefs"]} == {"Service", "Gateway"}


def test_a_canary_on_istio_is_a_virtual_service_over_destination_rule_subsets():
    manifests = _render(_canary(traffic_api="istio"))
    rule = by_kind(manifests, "DestinationRule")
    assert [(s["name"], s["labels"]) for s in rule["spec"]["subsets"]] == [("v1", {"ferry.dev/version": "1"}),
                                                                          ("v2", {"ferry.dev/version": "2"})]
    weighted = by_kind(manifests, "VirtualService")["spec"]["http"][-1]
    assert [(r["destination"]["subset"], r["weight"]) for r in weighted["route"]] == [("v1", 90), ("v2", 10)]


@pytest.mark.parametrize("traffic_api", ["gateway-api", "istio"])
def test_a_mirror_copies_the_ratio_to_the_target_service(traffic_api):
    manifests = _render(_canary(traffic_api=traffic_api, mirror=MirrorDesired(("shadow_model",), 25)))
    if traffic_api == "istio":
        weighted = by_kind(manifests, "VirtualService")["spec"]["http"][-1]
        assert weighted["mirror"]["host"] == "shadow-model.ferry-team-a.svc.cluster.local"
        assert weighted["mirrorPercentage"] == {"value": 25.0}
    else:
        mirror = by_kind(manifests, "HTTPRoute")["spec"]["rules"][-1]["filters"][0]
        assert mirror == {"type": "RequestMirror", "requestMirror": {
            "backendRef": {"group": "", "kind": "Service", "name": "shadow-model", "port": 80}, "percent": 25}}


def test_mirroring_to_several_targets_uses_istios_mirrors_list():
    manifests = _render(_canary(traffic_api="istio", mirror=MirrorDesired(("a", "b"), 5)))
    weighted = by_kind(manifests, "VirtualService")["spec"]["http"][-1]
    assert [m["destination"]["host"].split(".")[0] for m in weighted["mirrors"]] == ["a", "b"]


def test_knative_has_no_mirroring_and_says_so():
    with pytest.raises(RenderError, match="Knative has no request mirroring"):
        render(_canary(flavor="knative", mirror=MirrorDesired(("a",), 5)))


def test_a_knative_canary_names_revisions_and_tags_each_version():
    service = by_kind(_render(_canary(flavor="knative")), "Service")
    assert service["spec"]["template"]["metadata"]["name"] == "iris-sklearn-v2"
    assert service["spec"]["traffic"] == [
        {"revisionName": "iris-sklearn-v1", "latestRevision": False, "percent": 90, "tag": "v1"},
        {"revisionName": "iris-sklearn-v2", "latestRevision": False, "percent": 10, "tag": "v2"}]


def test_blue_green_at_zero_percent_is_still_routed_by_tag_and_knative_traffic_sums_to_100():
    doc = example("iris_sklearn")
    desired = desired_for(doc, flavor="knative", versions=[(1, 0, 1, doc), (2, 0, 1, _with(doc, cpu=2))])
    traffic = by_kind(_render(desired), "Service")["spec"]["traffic"]
    assert [(t["tag"], t["percent"]) for t in traffic] == [("v1", 0), ("v2", 100)]


def test_knative_autoscaling_annotations_follow_the_scaling_policy_and_features_override():
    doc = example("iris_sklearn")
    doc = {**doc, "features": {"autoscaling.knative.dev/window": "40s",
                               "autoscaling.knative.dev/panic-threshold-percentage": "150.0",
                               "ferry.dev/container-concurrency": "4"}}
    autoscaler = {"min": 0, "max": 5, "scaleStrategies": [{"metricName": "qps", "threshold": 20}],
                  "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120},
                               "onZero": {"scaleUpActivationReplicas": 2}}}
    service = by_kind(_render(desired_for(doc, flavor="knative", autoscaler=autoscaler)), "Service")
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    prefix = "autoscaling.knative.dev/"
    assert {k[len(prefix):]: v for k, v in annotations.items() if k.startswith(prefix)} == {
        "class": "kpa.autoscaling.knative.dev", "metric": "rps", "target": "20", "min-scale": "0",
        "max-scale": "5", "initial-scale": "2", "scale-down-delay": "120s", "activation-scale": "2",
        "window": "40s", "panic-threshold-percentage": "150.0"}
    assert service["spec"]["template"]["spec"]["containerConcurrency"] == 4
    assert service["spec"]["template"]["spec"]["timeoutSeconds"] == 6  # 1.2 x rpc.keepalive 5 s


def test_knative_cpu_scaling_uses_the_hpa_class():
    autoscaler = {"min": 1, "max": 3, "scaleStrategies": [{"metricName": "cpu", "threshold": 70}]}
    annotations = by_kind(_render(desired_for(example("iris_sklearn"), flavor="knative", autoscaler=autoscaler)),
                          "Service")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/class"] == "hpa.autoscaling.knative.dev"
    assert annotations["autoscaling.knative.dev/metric"] == "cpu"


def test_an_out_of_range_knative_feature_is_a_named_error():
    doc = {**example("iris_sklearn"), "features": {"autoscaling.knative.dev/window": "2s"}}
    with pytest.raises(RenderError, match="autoscaling.knative.dev/window"):
        render(desired_for(doc, flavor="knative"))


def test_the_hpa_scales_on_cpu_qps_and_gpu_utilization():
    autoscaler = {"min": 0, "max": 8, "scaleStrategies": [
        {"metricName": "cpu", "threshold": 80}, {"metricName": "qps", "threshold": 12.5},
        {"metricName": "gpu[util]", "threshold": 50}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}
    hpa = by_kind(_render(desired_for(example("iris_sklearn"), autoscaler=autoscaler)), "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)
    cpu, qps, gpu = hpa["spec"]["metrics"]
    assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert qps["external"]["metric"]["selector"]["matchLabels"] == {"ferry.dev/service": "iris-sklearn",
                                                                   "ferry.dev/version": "1"}
    assert qps["external"]["target"] == {"type": "AverageValue", "averageValue": "12500m"}
    assert gpu == {"type": "Pods", "pods": {"metric": {"name": "container_gpu_usage"},
                                            "target": {"type": "AverageValue", "averageValue": "500m"}}}
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    deployment = by_kind(_render(desired_for(example("iris_sklearn"), autoscaler=autoscaler)), "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it


def test_a_stopped_service_keeps_its_deployments_at_zero_and_knative_renders_nothing():
    doc = example("iris_sklearn")
    stopped = _render(desired_for(doc, running=False, autoscaler={"min": 1, "max": 2, "scaleStrategies": [
        {"metricName": "cpu", "threshold": 50}]}))
    assert by_kind(stopped, "Deployment")["spec"]["replicas"] == 0
    assert not [m for m in stopped if m["kind"] == "HorizontalPodAutoscaler"]
    assert render(desired_for(doc, flavor="knative", running=False)) == []


def test_resources_include_gpus_shared_gpu_memory_disk_and_shm():
    doc = _with(example("iris_sklearn"), gpu=2, gpu_memory=3, gpu_core_percentage=30, disk="30Gi", shm_size=4,
                cpu=0.5)
    spec = by_kind(_render(desired_for(doc)), "Deployment")["spec"]["template"]["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "1024Mi", "ephemeral-storage": "30Gi"}
    assert resources["limits"]["nvidia.com/gpu"] == "2" and resources["limits"]["aliyun.com/gpu-mem"] == "3"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in spec["volumes"]


def test_eci_burst_features_and_cluster_scheduling_pass_through():
    doc = _with(example("iris_sklearn"), resource_burstable=True)
    doc = {**doc, "cloud": {"computing": {"instance_type": "ecs.gn6i-c4g1.xlarge"}},
           "features": {"k8s.aliyun.com/eci-image-cache": "true"}, "labels": {"team": "search"}}
    settings = cluster(node_selector={"pool": "gpu"}, tolerations=({"key": "gpu", "operator": "Exists",
                                                                    "effect": "NoSchedule"},),
                       pod_annotations={"sidecar.istio.io/inject": "true"})
    desired = desired_for(doc, cluster=settings, labels={"team": "search", "bad label": "x"})
    template = by_kind(_render(desired), "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"]["alibabacloud.com/burst-resource"] == "eci"
    assert template["metadata"]["annotations"]["k8s.aliyun.com/eci-use-specs"] == "ecs.gn6i-c4g1.xlarge"
    assert template["metadata"]["annotations"]["k8s.aliyun.com/eci-image-cache"] == "true"
    assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    assert template["metadata"]["labels"]["team"] == "search" and "bad label" not in template["metadata"]["labels"]
    assert template["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert template["spec"]["tolerations"][0]["key"] == "gpu"


def test_nfs_is_a_volume_on_raw_and_the_nfs_csi_driver_on_knative():
    nfs = {"server": "10.0.0.5", "path": "/export", "readOnly": True}
    doc = {**example("iris_sklearn"), "storage": [{"mount_path": "/data", "nfs": nfs}]}
    raw = by_kind(_render(desired_for(doc)), "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "storage-0", "nfs": {"server": "10.0.0.5", "path": "/export", "readOnly": True}} in raw
    knative = by_kind(_render(desired_for(doc, flavor="knative")), "Service")["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in knative if v["name"] == "storage-0")["csi"]["driver"] == "nfs.csi.k8s.io"


def test_a_model_cache_pvc_is_shared_by_the_fetcher():
    settings = cluster(model_cache_pvc="models-dataset")
    deployment = by_kind(_render(desired_for(example("digits_onnx"), cluster=settings)), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models-dataset"}} in spec["volumes"]
    assert spec["initContainers"][0]["args"][-2:] == ["http://127.0.0.1:9000/models/digits.onnx", "/mnt/models"]


def test_an_unsupported_mount_is_a_named_error():
    doc = {**example("iris_sklearn"), "storage": [{"mount_path": "/code", "git": {"repo": "https://git/x"}}]}
    with pytest.raises(RenderError, match=r"storage\[0\].*git"):
        render(desired_for(doc))


def test_a_restart_request_rolls_raw_pods_only():
    desired = desired_for(example("iris_sklearn"), restart_token="2026-11-21T10:00:00+00:00")
    template = by_kind(_render(desired), "Deployment")["spec"]["template"]
    assert template["metadata"]["annotations"]["ferry.dev/restarted-at"] == "2026-11-21T10:00:00+00:00"


def test_cluster_settings_reject_an_unknown_flavor():
    with pytest.raises(ValueError, match="flavor"):
        ClusterSettings(flavor="nomad")


def test_kpa_settings_in_the_service_file_become_knative_annotations_and_an_hpa_target():
    autoscaler = {"min": 1, "max": 4, "kpa": {"autoscaling.knative.dev/metric": "rps",
                                              "autoscaling.knative.dev/target": 50,
                                              "autoscaling.knative.dev/window": "30s"}}
    doc = example("iris_sklearn")
    annotations = by_kind(_render(desired_for(doc, flavor="knative", autoscaler=autoscaler)),
                          "Service")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert (annotations["autoscaling.knative.dev/metric"], annotations["autoscaling.knative.dev/target"],
            annotations["autoscaling.knative.dev/window"]) == ("rps", "50", "30s")
    hpa = by_kind(_render(desired_for(doc, autoscaler=autoscaler)), "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "ferry_service_qps"
    assert metric["external"]["target"]["averageValue"] == "35"  # 50 rps x 70 % utilization


def test_a_mirror_target_in_another_namespace_is_addressed_there():
    desired = _canary(mirror=MirrorDesired(("ferry-team-b/shadow",), 10))
    backend = by_kind(_render(desired), "HTTPRoute")["spec"]["rules"][-1]["filters"][0]["requestMirror"]["backendRef"]
    assert (backend["namespace"], backend["name"]) == ("ferry-team-b", "shadow")
    weighted = by_kind(_render(_canary(traffic_api="istio", mirror=MirrorDesired(("ferry-team-b/shadow",), 10))),
                       "VirtualService")["spec"]["http"][-1]
    assert weighted["mirror"]["host"] == "shadow.ferry-team-b.svc.cluster.local"
