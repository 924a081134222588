"""The reconciler driving a Kubernetes cluster (FakeKubernetesApiServer) through rollouts, stop, failures: the
same converge path as the local cluster, through the driver contract (docs/kubernetes.md, "The reconciler seam").
"""

import pytest

from deployer import reconcile as reconciler
from services.models import Project, Service
from services.writes import rollout_promote, service_create, service_stop, service_update
from services.writes.clusters import cluster_register
from tests.kubernetes.test_driver import IRIS, NAMESPACE, kubeconfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(fake):
    cluster_register(actor=None, name="kube", kubeconfig=kubeconfig(fake.url))
    return service_create(actor=None, project=Project.objects.get(name="default"), document=IRIS)


def _settle(service, fake, rounds=3):
    for _ in range(rounds):
        reconciler.reconcile(service.pk)
        fake.run_controllers()
    reconciler.reconcile(service.pk)
    return Service.objects.get(pk=service.pk)


def _weights(fake):
    route = fake.find("HTTPRoute", "iris-k8s")[0]
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][-1]["backendRefs"]}


def test_a_new_service_becomes_running_once_its_pods_are_ready(service, fake):
    service = _settle(service, fake)
    assert (service.phase, service.status_reason) == ("Running", "AllInstancesReady")
    assert service.instances.filter(ready=True).count() == 2


def test_a_canary_takes_its_share_once_ready_and_promotion_prunes_the_old_version(service, fake):
    _settle(service, fake)
    service_update(actor=None, service=Service.objects.get(pk=service.pk), patch={"metadata": {"cpu": 2}},
                   strategy="canary", canary_weight=20)
    service = _settle(service, fake)
    assert _weights(fake) == {"iris-k8s-v1": 80, "iris-k8s-v2": 20}
    rollout_promote(actor=None, service=service)
    service = _settle(service, fake)
    assert _weights(fake) == {"iris-k8s-v2": 100}
    assert [d["metadata"]["name"] for d in fake.find("Deployment", namespace=NAMESPACE)] == ["iris-k8s-v2"]
    assert service.phase == "Running" and service.last_rolled_out_version == 2


def test_a_version_kubernetes_cannot_run_fails_its_rollout_and_traffic_stays(service, fake):
    _settle(service, fake)
    service_update(actor=None, service=Service.objects.get(pk=service.pk),
                   patch={"storage": [{"mount_path": "/code", "git": {"repo": "https://example.test/x.git"}}]})
    service = _settle(service, fake)
    assert service.rollout["state"] == "Failed" and "git" in service.rollout["message"]
    assert _weights(fake) == {"iris-k8s-v1": 100}
    assert service.events.filter(reason="RolloutFailed").exists()


def test_stopping_scales_the_deployments_to_zero(service, fake):
    _settle(service, fake)
    service_stop(actor=None, service=Service.objects.get(pk=service.pk))
    service = _settle(service, fake)
    assert fake.find("Deployment", "iris-k8s-v1")[0]["spec"]["replicas"] == 0
    assert service.phase == "Stopped" and not fake.find("Pod")


def test_crashing_pods_make_the_service_fail_with_their_reason(service, fake):
    _settle(service, fake)
    for pod in fake.find("Pod"):
        fake.controllers.crash(pod["metadata"]["name"], reason="Error", exit_code=2)
    reconciler.reconcile(service.pk)
    service = Service.objects.get(pk=service.pk)
    assert (service.phase, service.status_reason) == ("Failed", "InstancesFailing")
    assert "Error (exit code 2)" in service.status_message


def test_an_object_the_cluster_rejects_fails_the_service_without_retrying(service, fake):
    fake.fail("PATCH", "/deployments/", status=422, field="spec.template.spec.containers[0].resources",
              message="Invalid value")
    reconciler.reconcile(service.pk)
    service = Service.objects.get(pk=service.pk)
    assert (service.phase, service.status_reason) == ("Failed", "InvalidManifest")
    assert "spec.template.spec.containers[0].resources" in service.status_message
