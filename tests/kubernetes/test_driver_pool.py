"""The model mesh through the Kubernetes driver and the fake API server: a pool's Deployment with its pods
observed as instances the placer and the gateway can reach (pod IP, the server's port); a pool model applies
nothing and observes nothing; deleting either leaves nothing of it."""

import json

import pytest

from deployer.drivers import driver_for
from services.models import Project, Service
from services.writes import service_create
from services.writes.clusters import cluster_register
from tests.kubernetes.helpers import MESH_DIR
from tests.kubernetes.test_driver import kubeconfig

pytestmark = pytest.mark.django_db
NAMESPACE = "ferry-default"


@pytest.fixture
def cluster(fake):
    return cluster_register(actor=None, name="kube", kubeconfig=kubeconfig(fake.url))


def _stored(cluster, name: str) -> Service:
    """Created as a user creates it (validated, the pool's processor given to its models), on the fake's cluster."""
    document = json.loads((MESH_DIR / f"{name}.json").read_text())
    document["metadata"]["resource"] = cluster.name
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def _apply(service):
    driver = driver_for(service.cluster)
    prepared = driver.prepare(service, None, [])
    return driver, prepared, driver.apply(service, prepared)


def test_a_pool_becomes_a_deployment_of_its_instance_count_with_a_headless_service(cluster, fake):
    pool = _stored(cluster, "pool1")
    _, prepared, created = _apply(pool)
    assert sorted(created) == ["Deployment/pool1-v1", "NetworkPolicy/pool1-ingress", "Secret/pool1-token",
                               "Service/pool1"]
    assert prepared.expected == 2 and prepared.versions == frozenset({1})
    (deployment,) = fake.find("Deployment", namespace=NAMESPACE)
    assert (deployment["metadata"]["name"], deployment["spec"]["replicas"]) == ("pool1-v1", 2)
    assert fake.find("Service", "pool1", api_version="v1")[0]["spec"]["clusterIP"] == "None"
    assert not fake.find("Service", api_version="serving.knative.dev/v1")


def test_observe_reports_the_pools_pods_with_their_addresses(cluster, fake):
    pool = _stored(cluster, "pool1")
    driver, _, _ = _apply(pool)
    fake.run_controllers()
    instances = driver.observe(pool).instances
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in fake.find("Pod", namespace=NAMESPACE)}
    assert len(pods) == 2
    assert {(i.name, i.host, i.port, i.version, i.ready) for i in instances} == {
        (name, ip, 8080, 1, True) for name, ip in pods.items()}


def test_a_pool_on_a_knative_cluster_is_the_same_plain_deployment(cluster, fake):
    cluster.flavor = "knative"
    cluster.save(update_fields=["flavor"])
    pool = _stored(cluster, "pool1_autoscaled")
    _, prepared, created = _apply(pool)
    assert "Deployment/pool1-autoscaled-v1" in created and "HorizontalPodAutoscaler/pool1-autoscaled-v1" in created
    assert not fake.find("Service", api_version="serving.knative.dev/v1")
    assert prepared.expected == 2  # the HPA's minimum, as on a raw cluster (Knative could have promised 0)


def test_a_pool_model_applies_nothing_observes_nothing_and_deletes_at_once(cluster, fake):
    _stored(cluster, "pool1")  # a model names a pool that exists
    model = _stored(cluster, "m1")
    driver, prepared, created = _apply(model)
    assert created == [] and prepared.expected == 0
    assert not fake.find("Namespace") and not fake.find("Secret") and not fake.find("Deployment")
    assert driver.observe(model).instances == []
    assert driver.delete(model) is True


def test_deleting_a_pool_removes_its_objects_and_pods(cluster, fake):
    pool = _stored(cluster, "pool1")
    driver, _, _ = _apply(pool)
    fake.run_controllers()
    assert fake.find("Pod", namespace=NAMESPACE)
    assert driver.delete(pool) is True  # the fake's owner cascade takes the pods with their Deployment at once
    for kind in ("Deployment", "Service", "NetworkPolicy", "Secret", "Pod"):
        assert not fake.find(kind, namespace=NAMESPACE), kind
    assert fake.find("Namespace")  # the project's, shared with its other services
