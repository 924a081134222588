"""Kubernetes pods are tenant-safe: what a developer of a project writes into a service file, and what an admin
writes into a cluster's registration, cannot give a pod the node's files, a privileged context, a chosen
annotation or the command line of Ferry's host.

Attempts go through the REST API (a developer of a project the cluster is granted to, or an admin for cluster
registration) against the fake Kubernetes API server; each asserts the refusal (status and the field it
names) and that nothing changed: no service, no new version, no changed file, no object applied. Safe output
is asserted on the rendered manifests of every example, validated against the real schemas."""

import base64
import json

import pytest
import yaml
from django.contrib.auth import get_user_model

from deployer.drivers import driver_for
from deployer.kubernetes.desired import ClusterSettings
from deployer.kubernetes.render import namespace_manifest, render
from deployer.kubernetes.tenancy import annotation_allowed
from deployer.kubernetes.volumes import RenderError
from deployer.reconcile import reconcile
from services.encryption import encrypt
from services.models import Cluster, ClusterGrant, Project, Service
from services.selectors import service_token
from services.writes.clusters import cluster_register, cluster_update
from tests.api.conftest import api_client_for, make_member
from tests.kubernetes.conftest import fake  # noqa: F401 -- fixture
from tests.kubernetes.helpers import CLUSTER_KINDS, EXAMPLE_NAMES, desired_for, example
from tests.kubernetes.schemas import validate
from tests.kubernetes.test_driver import kubeconfig

pytestmark = pytest.mark.django_db
ROOT = "/srv/models"
GOOD = {"name": "iris_pod", "processor": "sklearn", "model_path": f"file://{ROOT}/iris/model.joblib",
        "metadata": {"resource": "kube", "instance": 1, "cpu": 1, "memory": 512}}

# (field the refusal names, the service file's change): the node's files through hostPath.
HOST_PATHS = [
    ("model_path", {"model_path": "file:///"}),
    ("model_path", {"model_path": "file:///etc/kubernetes/admin.conf"}),
    ("model_path", {"model_path": "/var/run/docker.sock"}),
    ("model_path", {"model_path": "/run/containerd/containerd.sock"}),
    ("model_path", {"model_path": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
    ("model_path", {"model_path": "/var/lib/kubelet/pods"}),
    ("model_path", {"model_path": f"file://{ROOT}/../../etc/shadow"}),
    ("model_path", {"model_path": f"{ROOT}/iris/../../../proc/1/environ"}),
    ("model_path", {"model_path": f"file://{ROOT}/%2e%2e/%2e%2e/etc/passwd"}),
    ("model_path", {"model_path": f"{ROOT}-other/model.joblib"}),
    ("model_path", {"model_path": "srv/models/iris/model.joblib"}),
    ("processor_path", {"processor_path": "file:///root/.ssh"}),
    ("warm_up_data_path", {"warm_up_data_path": "/dev/sda"}),
]
# Annotations that would change what the pod may do, or who it is.
ANNOTATIONS = [
    "sidecar.istio.io/inject",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "container.apparmor.security.beta.kubernetes.io/server",
    "seccomp.security.alpha.kubernetes.io/pod",
    "k8s.aliyun.com/eci-ram-role-name",
    "iam.amazonaws.com/role",
    "cluster-autoscaler.kubernetes.io/safe-to-evict",
    "kubectl.kubernetes.io/default-container",
]
# Kubeconfigs that run a command or read a file of Ferry's host: the entry the refusal names.
KUBECONFIG_ENTRIES = [
    ("users[0].user.exec", {"user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                              "command": "sh", "args": ["-c", "touch {marker}"]}}}),
    ("users[0].user.auth-provider", {"user": {"auth-provider": {"name": "gcp", "config": {
        "cmd-path": "sh", "cmd-args": "-c 'touch {marker}'"}}}}),
    ("users[0].user.tokenFile", {"user": {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}),
    ("users[0].user.client-certificate", {"user": {"client-certificate": "/etc/ssl/cert.pem",
                                           "client-key": "/etc/ssl/key.pem"}}),
    ("clusters[0].cluster.certificate-authority", {"cluster": {"certificate-authority": "/etc/ssl/ca.pem"}}),
]
# Cluster settings an admin may not save: (the setting named, settings).
CLUSTER_SETTINGS = [
    ("Settings.host_path_roots", {"host_path_roots": ["/"], "pod_security": "privileged"}),
    ("Settings.host_path_roots", {"host_path_roots": ["/var/lib/kubelet"], "pod_security": "privileged"}),
    ("Settings.host_path_roots", {"host_path_roots": ["/var"], "pod_security": "privileged"}),
    ("Settings.host_path_roots", {"host_path_roots": ["/srv/../etc"], "pod_security": "privileged"}),
    ("Settings.host_path_roots", {"host_path_roots": ["srv/models"], "pod_security": "privileged"}),
    ("Settings.host_path_roots", {"host_path_roots": "/srv/models", "pod_security": "privileged"}),
    ("Settings.pod_security", {"host_path_roots": [ROOT]}),
    ("Settings.pod_security", {"pod_security": "none"}),
]
ATTEMPTS = {"host paths at create": len(HOST_PATHS), "host paths at update": len(HOST_PATHS),
            "annotations at create": len(ANNOTATIONS), "annotations at update": len(ANNOTATIONS),
            "nfs under restricted": 1, "host path after the roots changed": 1,
            "kubeconfig at register": len(KUBECONFIG_ENTRIES), "kubeconfig at update": len(KUBECONFIG_ENTRIES),
            "kubeconfig stored before the rule": 1, "cluster settings": len(CLUSTER_SETTINGS)}


@pytest.fixture
def kube(fake):  # noqa: F811 -- the fixture imported above
    cluster = cluster_register(actor=None, name="kube", kubeconfig=kubeconfig(fake.url),
                               settings={"host_path_roots": [ROOT], "pod_security": "privileged"})
    project, _ = Project.objects.get_or_create(name="team_k")
    ClusterGrant.objects.get_or_create(project=project, cluster=cluster)
    return cluster


@pytest.fixture
def developer(kube):
    return api_client_for(make_member("dev_k", "team_k"))


@pytest.fixture
def admin():
    return api_client_for(get_user_model().objects.create_superuser("root_k", password="not-used"))


def _create(api, document: dict):
    return api.post("/api/v2/services?WorkspaceId=team_k", document, format="json")


def _paths(response) -> list[str]:
    return [error["Path"] for error in response.json().get("Errors", [])]


@pytest.mark.parametrize(("field", "change"), HOST_PATHS)
def test_a_host_path_outside_the_admins_roots_is_refused_at_create(developer, field, change):
    response = _create(developer, {**GOOD, **change})
    assert response.status_code == 400 and field in _paths(response), response.json()
    assert not Service.objects.filter(name=GOOD["name"]).exists()


@pytest.fixture
def existing(developer):
    response = _create(developer, GOOD)
    assert response.status_code in (200, 201, 202), response.json()
    return Service.objects.get(name=GOOD["name"])


def _unchanged(service: Service) -> None:
    fresh = Service.objects.get(pk=service.pk)
    assert fresh.spec == service.spec and fresh.versions.count() == 1 and fresh.generation == service.generation


@pytest.mark.parametrize(("field", "change"), HOST_PATHS)
def test_a_host_path_outside_the_admins_roots_is_refused_at_update(developer, existing, field, change):
    response = developer.put(f"/api/v2/services/kube/{existing.name}", change, format="json")
    assert response.status_code == 400 and field in _paths(response), response.json()
    _unchanged(existing)


@pytest.mark.parametrize("key", ANNOTATIONS)
def test_a_feature_outside_the_allow_list_is_refused_by_name_at_create(developer, key):
    response = _create(developer, {**GOOD, "features": {key: "x"}})
    assert response.status_code == 400 and f"features.{key}" in _paths(response), response.json()
    assert not Service.objects.filter(name=GOOD["name"]).exists()


@pytest.mark.parametrize("key", ANNOTATIONS)
def test_a_feature_outside_the_allow_list_is_refused_by_name_at_update(developer, existing, key):
    response = developer.put(f"/api/v2/services/kube/{existing.name}", {"features": {key: "x"}}, format="json")
    assert response.status_code == 400 and f"features.{key}" in _paths(response), response.json()
    _unchanged(existing)


def test_nfs_is_refused_where_the_namespace_enforces_restricted(fake, developer):  # noqa: F811
    strict = cluster_register(actor=None, name="strict", kubeconfig=kubeconfig(fake.url))
    ClusterGrant.objects.create(project=Project.objects.get(name="team_k"), cluster=strict)
    document = {**GOOD, "model_path": "http://models.test/iris/model.joblib", "metadata": {
        **GOOD["metadata"], "resource": "strict"}, "storage": [
        {"mount_path": "/data", "nfs": {"server": "10.0.0.5", "path": "/export"}}]}
    response = _create(developer, document)
    assert response.status_code == 400 and "storage[0].nfs" in _paths(response), response.json()
    assert not Service.objects.filter(name=GOOD["name"]).exists()


def test_a_host_path_stored_before_the_roots_changed_is_never_applied(fake, kube, existing):  # noqa: F811
    cluster_update(actor=None, cluster=kube, settings={"host_path_roots": None, "pod_security": None})
    reconcile(existing.pk)
    existing.refresh_from_db()
    assert not fake.find("Deployment") and not fake.find("Service", namespace="ferry-team-k")
    assert existing.phase == "Failed" and "model_path" in existing.events.order_by("-pk").first().message


@pytest.mark.parametrize(("entry", "user_or_cluster"), KUBECONFIG_ENTRIES)
def test_a_kubeconfig_that_reaches_into_ferrys_host_is_refused(fake, admin, tmp_path, entry,  # noqa: F811
                                                              user_or_cluster):
    marker = tmp_path / "ran"
    document = _hostile_kubeconfig(fake.url, user_or_cluster, marker)
    response = admin.post("/api/v2/clusters", {"ClusterName": "hostile", "Kubeconfig": document}, format="json")
    assert response.status_code == 400 and _paths(response) == ["Kubeconfig"], response.json()
    assert entry in response.json()["Message"]
    assert not Cluster.objects.filter(name="hostile").exists() and not marker.exists()


@pytest.mark.parametrize(("entry", "user_or_cluster"), KUBECONFIG_ENTRIES)
def test_a_kubeconfig_that_reaches_into_ferrys_host_is_refused_on_update(fake, admin, kube, tmp_path, entry,  # noqa: F811
                                                                        user_or_cluster):
    before = kube.kubeconfig_encrypted
    marker = tmp_path / "ran"
    response = admin.put("/api/v2/clusters/kube", {"Kubeconfig": _hostile_kubeconfig(fake.url, user_or_cluster,
                                                                                      marker)}, format="json")
    assert response.status_code == 400 and entry in response.json()["Message"], response.json()
    kube.refresh_from_db()
    assert kube.kubeconfig_encrypted == before and not marker.exists()


def test_a_kubeconfig_stored_before_the_rule_never_runs_its_command(fake, tmp_path):  # noqa: F811
    marker = tmp_path / "ran"
    document = _hostile_kubeconfig(fake.url, KUBECONFIG_ENTRIES[0][1], marker)
    cluster = Cluster.objects.create(name="old", kind="kubernetes", flavor="raw", traffic_api="gateway-api",
                                     settings={}, kubeconfig_encrypted=encrypt(document))
    from deployer.drivers.base import PermanentError

    with pytest.raises(PermanentError, match=r"users\[0\]\.user\.exec"):
        driver_for(cluster).api.list("v1", "Pod", "default")
    assert not marker.exists()


@pytest.mark.parametrize(("path", "settings"), CLUSTER_SETTINGS)
def test_cluster_settings_that_would_open_the_node_are_refused(admin, fake, path, settings):  # noqa: F811
    response = admin.post("/api/v2/clusters", {"ClusterName": "roots", "Kubeconfig": kubeconfig(fake.url),
                                               "Settings": settings}, format="json")
    assert response.status_code == 400 and path in _paths(response), response.json()
    assert not Cluster.objects.filter(name="roots").exists()


# -- safe output --------------------------------------------------------------------------------------------
def _pod_specs(manifests: list[dict]):
    for manifest in manifests:
        if manifest["kind"] == "Deployment" or manifest["apiVersion"].startswith("serving.knative.dev"):
            yield manifest["spec"]["template"]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
@pytest.mark.parametrize(("flavor", "api"), CLUSTER_KINDS)
def test_every_rendered_pod_is_restricted_and_valid(name, flavor, api):
    manifests = render(desired_for(example(name), flavor=flavor, traffic_api=api))
    for manifest in manifests:
        validate(manifest)
    templates = list(_pod_specs(manifests))
    assert templates
    for template in templates:
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False
        if flavor == "raw":
            assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True
            assert context["runAsUser"] > 0 and context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert all("value" not in item for item in container.get("env", []) if item["name"] == "FERRY_SERVICE_TOKEN")
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                assert volume["hostPath"]["path"].startswith(ROOT + "/")
                assert volume["hostPath"]["type"] in ("File", "Directory")
                mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", [])
                          if m["name"] == volume["name"]]
                assert mounts and all(m.get("readOnly") for m in mounts)
        for key in (template["metadata"].get("annotations") or {}):
            assert annotation_allowed(key) or key.startswith(("alibabacloud.com/", "k8s.aliyun.com/eci-use-specs"))


def test_built_in_servers_read_only_their_root_with_a_tmp_and_the_token_from_the_secret():
    template = next(_pod_specs(render(desired_for(example("iris_sklearn")))))
    server = template["spec"]["containers"][0]
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in server["volumeMounts"]
    (token,) = [item for item in server["env"] if item["name"] == "FERRY_SERVICE_TOKEN"]
    assert token == {"name": "FERRY_SERVICE_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": "iris-sklearn-token", "key": "token"}}}


def test_without_roots_a_node_path_does_not_render():
    no_roots = ClusterSettings(flavor="raw", traffic_api="gateway-api")
    with pytest.raises(RenderError) as refused:
        render(desired_for(example("iris_sklearn"), cluster=no_roots))
    assert refused.value.path == "model_path"


@pytest.mark.parametrize("level", ["restricted", "baseline", "privileged"])
def test_the_namespaces_ferry_creates_carry_pod_security_labels(level):
    namespace = namespace_manifest("ferry-team-k", "team_k", level)
    validate(namespace)
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == level
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_ferrys_own_namespace_enforces_restricted():
    from tests.kubernetes.test_platform import _documents

    (namespace,) = [d for _, d in _documents() if d["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for _, document in _documents():
        if document["kind"] in ("Deployment", "Job"):
            spec = document["spec"]["template"]["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            for container in spec["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_token_reaches_the_cluster_only_in_its_secret(fake, kube, developer, existing):  # noqa: F811
    reconcile(existing.pk)
    token = service_token(existing)
    (secret,) = fake.find("Secret", "iris-pod-token")
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    (deployment,) = fake.find("Deployment")
    assert token not in json.dumps(deployment)
    (namespace,) = fake.find("Namespace", "ferry-team-k")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    shown = developer.get(f"/api/v2/services/kube/{existing.name}/manifests").content.decode()
    assert token not in shown and "iris-pod-token" in shown  # the reference, never the value


def _hostile_kubeconfig(url: str, user_or_cluster: dict, marker) -> str:
    text = json.dumps(user_or_cluster).replace("{marker}", str(marker))
    extra = json.loads(text)
    cluster = {"server": url, **extra.get("cluster", {})}
    user = extra.get("user") or {"token": "not-a-real-token"}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": user}],
    })


def test_the_attempts_are_counted():
    """docs/security.md gives this count; none of them succeeds (every test above asserts the refusal)."""
    assert sum(ATTEMPTS.values()) == 63
