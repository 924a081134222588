"""The Kubernetes driver end to end: a cluster registered with a kubeconfig pointing at
FakeKubernetesApiServer, services created and reconciled through Ferry's own code paths."""

import pytest
import yaml

from deployer.drivers import driver_for
from deployer.drivers.base import PermanentError
from deployer.reconcile import reconcile
from services.models import Event, Project, Service
from services.writes import service_create, service_delete
from services.writes.clusters import cluster_register

pytestmark = pytest.mark.django_db
NAMESPACE = "ferry-default"
IRIS = {"name": "iris_k8s", "processor": "sklearn", "model_path": "http://models.test/iris/model.joblib",
        "metadata": {"resource": "kube", "instance": 2, "cpu": 1, "memory": 512}}


def kubeconfig(url: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ferry"}}],
        "users": [{"name": "ferry", "user": {"token": "not-a-real-token"}}],
    })


@pytest.fixture
def cluster(fake):
    return cluster_register(actor=None, name="kube", kubeconfig=kubeconfig(fake.url))


@pytest.fixture
def service(cluster):
    return service_create(actor=None, project=Project.objects.get(name="default"), document=IRIS)


def test_it_stores_the_kubeconfig_encrypted(cluster, fake):
    assert fake.url not in cluster.kubeconfig_encrypted and "token" not in cluster.kubeconfig_encrypted


def test_a_reconcile_applies_the_service_into_the_projects_namespace(service, fake):
    reconcile(service.pk)
    assert [n["metadata"]["name"] for n in fake.find("Namespace")] == [NAMESPACE]
    assert [d["metadata"]["name"] for d in fake.find("Deployment", namespace=NAMESPACE)] == ["iris-k8s-v1"]
    deployment = fake.find("Deployment", "iris-k8s-v1")[0]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["initContainers"][0]["name"] == "fetch-model"


def test_observed_pods_become_instances_and_cluster_events_reach_the_timeline_once(service, fake):
    reconcile(service.pk)
    fake.run_controllers()
    pod = fake.find("Pod")[0]["metadata"]["name"]
    fake.controllers.event(NAMESPACE, "Pod", pod, "FailedMount", "MountVolume.SetUp failed")
    reconcile(service.pk)
    reconcile(service.pk)
    instances = list(service.instances.order_by("name"))
    assert [(i.version.number, i.ready, i.state) for i in instances] == [(1, True, "Running")] * 2
    assert {i.name for i in instances} == {p["metadata"]["name"] for p in fake.find("Pod")}
    warnings = Event.objects.filter(service=service, reason="FailedMount")
    assert [(e.type, e.instance_name) for e in warnings] == [("Warning", pod)]


def test_restarting_an_instance_deletes_its_pod(service, fake):
    reconcile(service.pk)
    fake.run_controllers()
    pod = fake.find("Pod")[0]["metadata"]["name"]
    driver_for(service.cluster).restart_instance(service, pod)
    assert pod not in {p["metadata"]["name"] for p in fake.find("Pod")}
    fake.run_controllers()
    assert len(fake.find("Pod")) == 2


def test_deleting_the_service_removes_everything_then_the_rows(service, fake):
    reconcile(service.pk)
    fake.run_controllers()
    service_delete(actor=None, service=service)
    reconcile(service.pk)
    assert not Service.objects.filter(pk=service.pk).exists()
    assert not fake.find("Deployment") and not fake.find("Pod") and not fake.find("HTTPRoute")
    assert fake.find("Namespace")  # shared by the project's other services


def test_an_object_the_api_server_rejects_is_a_permanent_error(service, fake):
    fake.fail("PATCH", "/deployments/", status=422, field="spec.template.spec.containers[0].image",
              message="Required value")
    driver = driver_for(service.cluster)
    with pytest.raises(PermanentError) as caught:
        driver.apply(service, driver.prepare(service, None, []))
    assert caught.value.reason == "InvalidManifest"
    assert "spec.template.spec.containers[0].image" in caught.value.message


def test_logs_are_the_pods_logs(service, fake):
    reconcile(service.pk)
    fake.run_controllers()
    pod = fake.find("Pod")[0]["metadata"]["name"]
    fake.logs[(NAMESPACE, pod)] = ["Loaded model iris_k8s", "Serving on 0.0.0.0:8080"]
    assert list(driver_for(service.cluster).logs(service, pod, None, False)) == ["Loaded model iris_k8s",
                                                                                 "Serving on 0.0.0.0:8080"]


def test_a_cluster_without_a_connection_leaves_its_services_waiting(db):
    from services.models import Cluster

    assert driver_for(Cluster.objects.create(name="unconnected", kind="kubernetes")) is None
