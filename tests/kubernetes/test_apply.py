"""Apply, prune, conflicts and API errors, against FakeKubernetesApiServer through the real client."""

import pytest

from deployer.drivers.base import PermanentError, TransientError
from deployer.kubernetes.apply import apply_manifests, delete_all, managed_objects
from deployer.kubernetes.desired import VersionDesired
from deployer.kubernetes.meta import service_selector
from deployer.kubernetes.render import render
from tests.kubernetes.conftest import api_for_url
from tests.kubernetes.fake_apiserver import FakeKubernetesApiServer
from tests.kubernetes.helpers import desired_for, example

NAMESPACE = "ferry-team-a"


def _apply(api, desired):
    return apply_manifests(api, render(desired), namespace=NAMESPACE, selector=service_selector(desired.name))


def _names(fake, kind, api_version=None):
    return [o["metadata"]["name"] for o in fake.find(kind, namespace=NAMESPACE, api_version=api_version)]


def test_it_creates_every_rendered_object_and_a_second_apply_changes_nothing(fake, api):
    desired = desired_for(example("iris_sklearn"))
    first = _apply(api, desired)
    assert first.created == first.applied == ["Service/iris-sklearn", "Service/iris-sklearn-v1",
                                              "Deployment/iris-sklearn-v1", "HTTPRoute/iris-sklearn",
                                              "NetworkPolicy/iris-sklearn-ingress"]
    versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in fake.objects.values()}
    second = _apply(api, desired)
    assert second.created == [] and second.pruned == []
    assert {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in fake.objects.values()} == versions
    deployment = fake.find("Deployment", "iris-sklearn-v1")[0]
    assert [entry["manager"] for entry in deployment["metadata"]["managedFields"]] == ["ferry"]


def test_it_prunes_a_version_that_is_no_longer_desired_and_leaves_others_alone(fake, api):
    doc = example("iris_sklearn")
    _apply(api, desired_for(doc, versions=[(1, 90, 2, doc), (2, 10, 1, doc)]))
    _apply(api, desired_for(example("digits_onnx")))  # another service in the same namespace
    fake.put_object({"apiVersion": "apps/v1", "kind": "Deployment",  # made by a controller from Ferry's labels
                     "metadata": {"name": "iris-sklearn-v1-deployment", "namespace": NAMESPACE,
                                  "labels": {"app.kubernetes.io/managed-by": "ferry",
                                             "ferry.dev/service": "iris-sklearn"},
                                  "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u"}]},
                     "spec": {}})
    result = _apply(api, desired_for(doc, versions=[(2, 100, 2, doc)]))
    assert result.pruned == ["Deployment/iris-sklearn-v1", "Service/iris-sklearn-v1"]
    assert sorted(_names(fake, "Deployment")) == ["digits-onnx-v1", "iris-sklearn-v1-deployment", "iris-sklearn-v2"]
    route = fake.find("HTTPRoute", "iris-sklearn")[0]
    assert [b["name"] for b in route["spec"]["rules"][-1]["backendRefs"]] == ["iris-sklearn-v2"]


def test_it_leaves_replicas_to_the_hpa_that_owns_them(fake, api):
    desired = desired_for(example("bert_tfserving"))
    _apply(api, desired)
    fake.update_fields("apps/v1", "Deployment", "bert-tfserving-v1", NAMESPACE, {("spec", "replicas"): 7},
                       manager="horizontal-pod-autoscaler")
    _apply(api, desired)
    deployment = fake.find("Deployment", "bert-tfserving-v1")[0]
    assert deployment["spec"]["replicas"] == 7
    assert fake.find("HorizontalPodAutoscaler", "bert-tfserving-v1")[0]["spec"]["maxReplicas"] == 10


def test_it_takes_back_a_field_someone_else_changed(fake, api):
    desired = desired_for(example("iris_sklearn"))
    _apply(api, desired)
    fake.update_fields("apps/v1", "Deployment", "iris-sklearn-v1", NAMESPACE, {("spec", "replicas"): 9},
                       manager="kubectl-edit")
    _apply(api, desired)
    assert fake.find("Deployment", "iris-sklearn-v1")[0]["spec"]["replicas"] == 2


def test_it_drops_a_field_it_no_longer_renders(fake, api):
    doc = example("iris_sklearn")
    with_shm = {**doc, "metadata": {**doc["metadata"], "shm_size": 1}}

    def volumes():
        spec = fake.find("Deployment", "iris-sklearn-v1")[0]["spec"]["template"]["spec"]
        return [volume["name"] for volume in spec["volumes"]]

    _apply(api, desired_for(with_shm))
    assert volumes() == ["model", "dshm", "tmp"]  # tmp: the runtime image's read-only root needs a /tmp
    _apply(api, desired_for(doc))
    assert volumes() == ["model", "tmp"]


def test_it_retries_conflicts_and_server_errors_then_succeeds(fake, api):
    fake.fail("PATCH", "/deployments/", status=409, times=1)
    fake.fail("GET", "/services", status=503, times=1)
    result = _apply(api, desired_for(example("iris_sklearn")))
    assert "Deployment/iris-sklearn-v1" in result.applied
    assert fake.find("Deployment", "iris-sklearn-v1")


def test_it_gives_up_on_a_persistent_server_error_as_transient(fake, api):
    fake.fail("PATCH", "/deployments/", status=500, times=10)
    with pytest.raises(TransientError, match="500"):
        _apply(api, desired_for(example("iris_sklearn")))


def test_it_turns_a_rejected_object_into_a_permanent_error_naming_the_field(fake, api):
    desired = desired_for(example("iris_sklearn"))
    manifests = render(desired)
    manifests[2]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": {"bad": 1}}}
    fake.requests.clear()
    with pytest.raises(PermanentError) as caught:
        apply_manifests(api, manifests, namespace=NAMESPACE, selector=service_selector(desired.name))
    assert caught.value.reason == "InvalidManifest"
    assert "spec.template.spec.containers.0.resources.limits.cpu" in caught.value.message
    assert "Deployment iris-sklearn-v1" in caught.value.message
    assert sum(1 for method, path in fake.requests if method == "PATCH" and "deployments" in path) == 1  # not retried


def test_it_names_what_to_install_when_the_cluster_lacks_knative(tmp_path):
    with FakeKubernetesApiServer(installed=("gateway-api",)) as fake:
        api = api_for_url(fake.url, tmp_path)
        with pytest.raises(PermanentError, match="install Knative Serving") as caught:
            _apply(api, desired_for(example("iris_sklearn"), flavor="knative"))
        assert caught.value.reason == "MissingApi"


def test_it_reports_an_unreachable_server_as_transient(tmp_path):
    with FakeKubernetesApiServer() as fake:
        url = fake.url
    api = api_for_url(url, tmp_path)
    with pytest.raises(TransientError, match="unreachable"):
        api.list("v1", "Pod", NAMESPACE)


def test_it_deletes_everything_of_a_service_and_its_pods_with_it(fake, api):
    desired = desired_for(example("iris_sklearn"))
    _apply(api, desired)
    _apply(api, desired_for(example("digits_onnx")))
    fake.run_controllers()
    assert len(fake.find("Pod", namespace=NAMESPACE)) == 3
    assert delete_all(api, namespace=NAMESPACE, selector=service_selector(desired.name)) is True
    assert not managed_objects(api, namespace=NAMESPACE, selector=service_selector(desired.name))
    assert [p["metadata"]["labels"]["ferry.dev/service"] for p in fake.find("Pod")] == ["digits-onnx"]


def test_it_switches_flavor_by_pruning_the_other_flavors_objects(fake, api):
    doc = example("iris_sklearn")
    _apply(api, desired_for(doc))
    result = _apply(api, desired_for(doc, flavor="knative"))
    assert set(result.pruned) == {"HTTPRoute/iris-sklearn", "Deployment/iris-sklearn-v1", "Service/iris-sklearn",
                                  "Service/iris-sklearn-v1"}
    assert _names(fake, "Service", "serving.knative.dev/v1") == ["iris-sklearn"]


def test_a_knative_canary_keeps_both_revisions_serving(fake, api):
    doc = example("iris_sklearn")
    _apply(api, desired_for(doc, flavor="knative"))
    fake.run_controllers()
    changed = {**doc, "metadata": {**doc["metadata"], "cpu": 2}}
    desired = desired_for(doc, flavor="knative", versions=[(1, 80, 2, doc), (2, 20, 1, changed)])
    _apply(api, desired)
    fake.run_controllers()
    service = fake.find("Service", "iris-sklearn", api_version="serving.knative.dev/v1")[0]
    assert [(t["revisionName"], t["percent"]) for t in service["spec"]["traffic"]] == [
        ("iris-sklearn-v1", 80), ("iris-sklearn-v2", 20)]
    assert service["status"]["conditions"][0]["status"] == "True"
    assert sorted(_names(fake, "Revision")) == ["iris-sklearn-v1", "iris-sklearn-v2"]
    versions = sorted(p["metadata"]["labels"]["ferry.dev/version"] for p in fake.find("Pod"))
    assert versions == ["1", "1", "2"]


def test_pod_logs_come_back_line_by_line(fake, api):
    _apply(api, desired_for(example("iris_sklearn")))
    fake.run_controllers()
    pod = fake.find("Pod")[0]["metadata"]["name"]
    fake.logs[(NAMESPACE, pod)] = ["loading model", "listening on 8080"]
    assert list(api.pod_logs(NAMESPACE, pod, container="server", follow=True)) == ["loading model",
                                                                                  "listening on 8080"]


def test_version_objects_are_reused_by_name_across_reconciles(fake, api):
    doc = example("iris_sklearn")
    _apply(api, desired_for(doc, versions=[(3, 100, 1, doc)]))
    uid = fake.find("Deployment", "iris-sklearn-v3")[0]["metadata"]["uid"]
    _apply(api, desired_for(doc, versions=[(3, 100, 4, doc)]))
    deployment = fake.find("Deployment", "iris-sklearn-v3")[0]
    assert deployment["metadata"]["uid"] == uid and deployment["spec"]["replicas"] == 4
    assert VersionDesired  # the desired data type the renderers take
