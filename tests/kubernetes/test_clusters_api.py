"""Registering clusters, their health, and the manifests endpoints, through the REST API."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.contrib.auth import get_user_model

from services.models import Cluster, Project
from services.writes import service_create
from tests.api.conftest import api_client_for, make_member
from tests.kubernetes.test_driver import IRIS, kubeconfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api():
    return api_client_for(get_user_model().objects.create_superuser("root", password="not-used"))


@pytest.fixture
def registered(admin_api, fake):
    response = admin_api.post("/api/v2/clusters", {"ClusterName": "kube", "Kubeconfig": kubeconfig(fake.url),
                                                   "Flavor": "knative", "Settings": {"domain": "models.test"}},
                              format="json")
    assert response.status_code == 201, response.json()
    return response


def test_an_admin_registers_a_cluster_and_its_kubeconfig_is_never_shown(admin_api, registered, fake):
    body = admin_api.get("/api/v2/clusters/kube").json()
    assert (body["Kind"], body["Flavor"], body["Connection"]) == ("kubernetes", "knative", "kubeconfig")
    assert body["Settings"] == {"domain": "models.test"}
    listed = admin_api.get("/api/v2/clusters").content.decode()
    assert fake.url not in listed and "not-a-real-token" not in listed and "Kubeconfig" not in listed


def test_a_member_may_not_register_a_cluster(fake):
    api = api_client_for(make_member("mallory", "team_m"))
    response = api.post("/api/v2/clusters", {"ClusterName": "k", "Kubeconfig": kubeconfig(fake.url)}, format="json")
    assert response.status_code == 403


def test_a_broken_kubeconfig_or_setting_is_reported_by_path(admin_api):
    response = admin_api.post("/api/v2/clusters", {"ClusterName": "k", "Kubeconfig": "not: [a kubeconfig"},
                              format="json")
    assert response.status_code == 400 and response.json()["Errors"][0]["Path"] == "Kubeconfig"
    response = admin_api.post("/api/v2/clusters", {"ClusterName": "k", "InCluster": True,
                                                   "Settings": {"colour": "blue", "domain": 3}}, format="json")
    assert [e["Path"] for e in response.json()["Errors"]] == ["Settings.colour", "Settings.domain"]


def test_health_reads_the_version_and_node_capacity(admin_api, registered, fake):
    fake.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1"}, "status": {
        "capacity": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "2"},
        "allocatable": {"cpu": "15500m", "memory": "60Gi", "nvidia.com/gpu": "2"},
        "conditions": [{"type": "Ready", "status": "True"}]}})
    body = admin_api.get("/api/v2/clusters/kube/health").json()
    assert (body["Healthy"], body["ServerVersion"], body["ReadyNodes"]) == (True, "v1.30.0-fake", 1)
    assert body["Capacity"] == {"Cpu": 16.0, "MemoryMiB": 65536, "Gpu": 2}
    assert body["Allocatable"]["Cpu"] == 15.5


def test_health_of_an_unreachable_cluster_says_so(admin_api, registered, fake):
    fake.fail("GET", "/version", status=503)
    body = admin_api.get("/api/v2/clusters/kube/health").json()
    assert body["Healthy"] is False and "503" in body["Message"]


def test_the_manifests_of_a_service_and_of_a_dry_run(admin_api, registered):
    Project.objects.get_or_create(name="default")
    call_command("ferry_grant_cluster", "kube", "default", stdout=StringIO())  # dry runs need the grant too
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=IRIS)
    body = admin_api.get(f"/api/v2/services/kube/{service.name}/manifests").json()
    assert body["Namespace"] == "ferry-default" and [m["kind"] for m in body["Manifests"]] == ["Service",
                                                                                            "NetworkPolicy"]
    assert "kind: Service\n" in body["Yaml"] and "revisionName: iris-k8s-v1" in body["Yaml"]
    update = admin_api.post(f"/api/v2/services/kube/{service.name}/manifests", {"metadata": {"cpu": 2}},
                            format="json").json()
    assert "name: iris-k8s-v2" in update["Yaml"]
    assert service.versions.count() == 1  # a dry run changes nothing
    created = admin_api.post("/api/v2/manifests", {**IRIS, "name": "other"}, format="json").json()
    assert "name: other-v1" in created["Yaml"]


def test_a_local_service_has_no_manifests(admin_api):
    local = service_create(actor=None, project=Project.objects.get(name="default"),
                           document={**IRIS, "metadata": {"instance": 1}})
    response = admin_api.get(f"/api/v2/services/{local.cluster.name}/{local.name}/manifests")
    assert response.status_code == 400 and response.json()["Code"] == "NotKubernetes"
    assert Cluster.objects.filter(kind="local").exists()


def test_changing_settings_merges_them_and_reconciles_the_clusters_services(admin_api, registered):
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=IRIS)
    response = admin_api.put("/api/v2/clusters/kube", {"Flavor": "raw", "TrafficApi": "istio",
                                                       "Settings": {"gateway": "ingress/public", "domain": None}},
                             format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["Flavor"], body["TrafficApi"], body["Settings"]) == ("raw", "istio", {"gateway": "ingress/public"})
    service.refresh_from_db()
    assert service.next_reconcile_at is not None
    kinds = [m["kind"] for m in admin_api.get("/api/v2/services/kube/iris_k8s/manifests").json()["Manifests"]]
    assert kinds == ["Service", "Service", "Deployment", "DestinationRule", "VirtualService", "NetworkPolicy"]


def test_a_cluster_with_services_cannot_be_removed(admin_api, registered):
    service_create(actor=None, project=Project.objects.get(name="default"), document=IRIS)
    assert admin_api.delete("/api/v2/clusters/kube").status_code == 409
