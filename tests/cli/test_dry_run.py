"""`--dry-run` prints what a service renders to on a Kubernetes cluster, and creates or changes nothing."""

import pytest
import yaml

from services.models import Cluster, ClusterGrant, Project, Service

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

IRIS = {"name": "iris_k8s", "processor": "sklearn", "model_path": "s3://models/iris/",
        "metadata": {"instance": 2, "cpu": 1, "memory": 1024, "resource": "kube"}}


@pytest.fixture
def kube_cluster():
    cluster = Cluster.objects.create(name="kube", kind="kubernetes", flavor="raw")
    for project in Project.objects.all():  # an administrator's grant (docs/security.md)
        ClusterGrant.objects.create(project=project, cluster=cluster)
    return cluster


def test_it_prints_the_manifests_of_a_create_and_creates_nothing(ferry, kube_cluster):
    result = ferry.ok("create", ferry.file("iris.json", IRIS), "--dry-run")
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {"Deployment", "Service"} <= set(kinds)
    assert not Service.objects.filter(name="iris_k8s").exists()


def test_it_prints_the_manifests_of_a_modify_and_changes_nothing(ferry, kube_cluster):
    ferry.ok("create", ferry.file("iris.json", IRIS), "--no-wait")
    service = Service.objects.get(name="iris_k8s")
    before = (service.generation, service.versions.count())
    result = ferry.ok("modify", "kube/iris_k8s", "-D", "metadata.cpu=2", "--dry-run", "-o", "json")
    body = yaml.safe_load(result.stdout)
    deployment = next(m for m in body["Manifests"] if m["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] in ("2", 2)
    service.refresh_from_db()
    assert (service.generation, service.versions.count()) == before
