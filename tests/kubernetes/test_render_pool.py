"""The model mesh on Kubernetes (deployer/kubernetes/pool.py): a pool is plain Deployments every pod of which
the placer and the gateway address themselves, on every kind of cluster; a pool model renders nothing."""

from dataclasses import replace

import pytest

from deployer.kubernetes.pool import is_pool, is_pool_model
from deployer.kubernetes.render import render
from deployer.kubernetes.volumes import RenderError
from services.servicefile.mesh import is_pool as file_is_pool
from services.servicefile.mesh import pool_name
from tests.kubernetes.helpers import CLUSTER_KINDS, by_kind, cluster, desired_for, example
from tests.kubernetes.schemas import validate


def _pool(**extra):
    return desired_for(example("pool1"), **extra)


@pytest.mark.parametrize(("flavor", "api"), CLUSTER_KINDS)
def test_a_pool_model_renders_nothing_on_any_cluster(flavor, api):
    assert render(desired_for(example("m1"), flavor=flavor, traffic_api=api)) == []


@pytest.mark.parametrize(("flavor", "api"), CLUSTER_KINDS)
def test_a_pool_renders_the_same_plain_objects_on_every_kind_of_cluster(flavor, api):
    """No Knative Service (its activator would stand between the placer and the pods and its autoscaler
    could take a pool with loaded models to zero), no per-version Service, no route."""
    manifests = render(_pool(flavor=flavor, traffic_api=api))
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("Service", "pool1"), ("Deployment", "pool1-v1"), ("NetworkPolicy", "pool1-ingress")]
    assert manifests == render(_pool())
    for manifest in manifests:
        validate(manifest)


def test_the_deployment_runs_the_instance_count_of_empty_model_servers():
    deployment = by_kind(render(_pool()), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    assert server["image"] == "ferry/runtime:0.1.0"
    assert server["args"] == ["python", "-m", "processors.modelserver", "--pool", "--model-name", "pool1",
                              "--processor", "sklearn", "--http-port", "8080", "--host", "0.0.0.0"]
    assert server["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert server["resources"] == {"requests": {"cpu": "1", "memory": "2048Mi"},
                                   "limits": {"cpu": "1", "memory": "2048Mi"}}
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert "initContainers" not in pod  # nothing to fetch before it starts: models come with each load


def test_the_pool_server_gets_its_token_a_model_cache_and_the_clusters_fetch_policy():
    settings = cluster(fetch_allowed_networks=("10.1.0.0/16",), fetch_max_bytes=1000, fetch_timeout_seconds=60.0,
                       runtime_image="registry.test/ferry:2")
    pod = by_kind(render(_pool(cluster=settings)), "Deployment")["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    env = {item["name"]: item.get("value") or item.get("valueFrom") for item in server["env"]}
    assert env == {"FERRY_MODEL_CACHE_DIR": "/var/cache/ferry/models",
                   "FERRY_FETCH_ALLOWED_NETWORKS": "10.1.0.0/16", "FERRY_FETCH_MAX_BYTES": "1000",
                   "FERRY_FETCH_TIMEOUT_SECONDS": "60",
                   "FERRY_SERVICE_TOKEN": {"secretKeyRef": {"name": "pool1-token", "key": "token"}}}
    assert server["image"] == "registry.test/ferry:2"
    assert server["envFrom"] == [{"secretRef": {"name": "ferry-model-credentials", "optional": True}}]
    assert {"name": "model-cache", "mountPath": "/var/cache/ferry/models"} in server["volumeMounts"]
    assert {"name": "model-cache", "emptyDir": {}} in pod["volumes"]


def test_the_model_cache_is_the_clusters_shared_volume_when_it_has_one():
    pod = by_kind(render(_pool(cluster=cluster(model_cache_pvc="models"))), "Deployment")["spec"]["template"]["spec"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models"}} in pod["volumes"]


def test_the_pool_pods_meet_the_restricted_pod_security_standard():
    pod = by_kind(render(_pool()), "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True and context["runAsUser"] == 10001


def test_the_headless_service_selects_every_pod_of_the_pool():
    service = by_kind(render(_pool()), "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"app.kubernetes.io/managed-by": "ferry", "ferry.dev/service": "pool1"}
    assert service["spec"]["ports"][0]["port"] == 8080


def test_only_ferrys_namespace_reaches_the_server_and_monitoring_its_metrics():
    policy = by_kind(render(_pool(cluster=cluster(ingress_namespaces=("istio-system",)))), "NetworkPolicy")
    rules = [(rule["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"],
              [port["port"] for port in rule["ports"]]) for rule in policy["spec"]["ingress"]]
    assert rules == [(["ferry-system"], [8080]), (["monitoring"], [8080])]
    assert policy["spec"]["podSelector"]["matchLabels"]["ferry.dev/service"] == "pool1"


@pytest.mark.parametrize("flavor", ["raw", "knative"])
def test_an_autoscaled_pool_gets_an_hpa_on_its_deployment_on_either_flavor(flavor):
    manifests = render(desired_for(example("pool1_autoscaled"), flavor=flavor))
    deployment, hpa = by_kind(manifests, "Deployment"), by_kind(manifests, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]  # the HPA's field
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_a_pool_in_the_middle_of_an_update_has_a_deployment_per_version_under_one_headless_service():
    doc = example("pool1")
    newer = {**doc, "metadata": {**doc["metadata"], "memory": 4096}}
    manifests = render(desired_for(doc, versions=[(1, 0, 2, doc), (2, 100, 1, newer)]))
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("Service", "pool1"), ("Deployment", "pool1-v1"), ("Deployment", "pool1-v2"), ("NetworkPolicy", "pool1-ingress")]
    assert [by_kind(manifests, "Deployment", f"pool1-v{n}")["spec"]["replicas"] for n in (1, 2)] == [2, 1]


def test_a_stopped_pool_keeps_its_deployment_at_zero():
    assert by_kind(render(_pool(running=False)), "Deployment")["spec"]["replicas"] == 0


def test_a_pool_without_a_processor_is_refused_naming_the_field():
    doc = {key: value for key, value in example("pool1").items() if key != "processor"}
    with pytest.raises(RenderError) as caught:
        render(replace(_pool(), versions=(replace(_pool().newest, service_file=doc),)))
    assert caught.value.path == "processor"


@pytest.mark.parametrize("processor", ["vllm", "python"])
def test_an_adapter_or_python_pool_is_refused_naming_the_processor(processor):
    doc = {**example("pool1"), "processor": processor, "model_path": "oss://bucket/base/"}
    with pytest.raises(RenderError) as caught:
        render(replace(_pool(), versions=(replace(_pool().newest, service_file=doc),)))
    assert caught.value.path == "processor" and "local cluster only" in str(caught.value)


def test_a_pool_feature_kubernetes_would_not_accept_is_refused_by_name():
    doc = {**example("pool1"), "features": {"sidecar.istio.io/inject": "false"}}
    with pytest.raises(RenderError) as caught:
        render(desired_for(doc))
    assert caught.value.path == "features.sidecar.istio.io/inject"


@pytest.mark.parametrize("name", ["pool1", "pool1_autoscaled", "m1", "iris_sklearn"])
def test_the_renderer_tells_pools_and_their_models_apart_as_the_service_files_do(name):
    """pool.py keeps its own reading (the renderers import no Django app's code); it must agree with the owner."""
    doc = example(name)
    assert (is_pool(doc), is_pool_model(doc)) == (file_is_pool(doc), bool(pool_name(doc)))
