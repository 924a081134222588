"""Who may reach a service's pods on a Kubernetes cluster: the NetworkPolicy Ferry renders with every service.

Third-party model servers and custom containers answer anyone who reaches them, so the policy is their door.
Services are created through the REST API by a developer and reconciled onto the fake Kubernetes API server
(it validates every object against the real schemas and plays the Deployment / Knative controllers, so the pods
are the ones the rendered templates make). `admits` below reads the applied policies by the rules of the
NetworkPolicy API (a pod no policy selects is open to all; a selected pod admits what one of its policies'
ingress rules admits, by source namespace and port), so each attempt asserts a connection is refused by what is
on the server. Cluster settings that would break the policy are refused by name, with nothing stored.
"""

import pytest
from django.contrib.auth import get_user_model

from deployer.kubernetes.netpol import NAMESPACE_NAME_LABEL
from deployer.reconcile import reconcile
from services.models import Cluster, ClusterGrant, Project, Service
from services.writes.catalog import service_delete
from services.writes.clusters import cluster_register
from tests.api.conftest import api_client_for, make_member
from tests.kubernetes.conftest import fake  # noqa: F401 -- fixture
from tests.kubernetes.test_driver import kubeconfig

pytestmark = pytest.mark.django_db
CUSTOM = {"name": "echo_net", "containers": [{"image": "python:3.11-slim", "script": "python app.py", "port": 8000}],
          "metadata": {"resource": "kube", "instance": 1, "cpu": 1, "memory": 512}}
OTHER = {**CUSTOM, "name": "echo_other"}
HOME, OTHER_HOME = "ferry-team-n", "ferry-team-o"

# (source namespace, port) of a connection to the custom container of team_n on a raw cluster: all refused.
RAW_ATTEMPTS = [
    (OTHER_HOME, 8000),        # another project's pods
    ("default", 8000),
    ("kube-system", 8000),
    (HOME, 8000),              # another pod of the same project's namespace, not the data plane
    ("monitoring", 8000),      # a custom container renders no scrape port: Prometheus has nothing to reach
    ("istio-system", 22),      # the ingress gateway, on a port that is not the server's
    ("istio-system", 9090),
    ("ferry-system", 8080),
    ("knative-serving-fake", 8000),  # a namespace named like an admitted one
]
# The same service on a Knative cluster: the queue-proxy is the door; the server itself is never reachable.
KNATIVE_ATTEMPTS = [
    (OTHER_HOME, 8012), (OTHER_HOME, 8000), ("default", 8012), ("default", 9090), ("ferry-system", 9090),
    ("monitoring", 8012), ("knative-serving", 8000), ("istio-system", 8000),
]
# Cluster settings an admin may not save: (the setting named, settings).
BAD_SETTINGS = [
    ("Settings.ingress_namespaces", {"ingress_namespaces": "istio-system"}),
    ("Settings.ingress_namespaces", {"ingress_namespaces": ["Istio_System"]}),
    ("Settings.ingress_namespaces", {"ingress_namespaces": ["*"]}),
    ("Settings.ingress_namespaces", {"ingress_namespaces": [""]}),
    ("Settings.ingress_namespaces", {"ingress_namespaces": ["a" * 64]}),
    ("Settings.ingress_namespaces", {"ingress_namespaces": [7]}),
    ("Settings.ferry_namespace", {"ferry_namespace": ""}),
    ("Settings.ferry_namespace", {"ferry_namespace": "../kube-system"}),
    ("Settings.ferry_namespace", {"ferry_namespace": ["ferry-system"]}),
    ("Settings.monitoring_namespaces", {"monitoring_namespaces": ["monitoring", "-bad"]}),
    ("Settings.fetch_allowed_networks", {"fetch_allowed_networks": ["everything"]}),
    ("Settings.fetch_allowed_networks", {"fetch_allowed_networks": "0.0.0.0/0"}),
    ("Settings.fetch_max_bytes", {"fetch_max_bytes": -1}),
    ("Settings.fetch_max_bytes", {"fetch_max_bytes": 1.5}),
    ("Settings.fetch_timeout_seconds", {"fetch_timeout_seconds": 0}),
]
ATTEMPTS = {"raw connections": len(RAW_ATTEMPTS), "knative connections": len(KNATIVE_ATTEMPTS),
            "settings at register": len(BAD_SETTINGS), "settings at update": len(BAD_SETTINGS)}


def admits(fake, pod: dict, source_namespace: str, port: int) -> bool:  # noqa: F811
    """Whether the NetworkPolicies on the server let a pod of `source_namespace` connect to `pod` on `port`."""
    labels = pod["metadata"].get("labels") or {}
    policies = [p for p in fake.find("NetworkPolicy", namespace=pod["metadata"]["namespace"])
                if _matches(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"].get("policyTypes", [])]
    if not policies:
        return True
    source_labels = {NAMESPACE_NAME_LABEL: source_namespace}
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            ports = [entry["port"] for entry in rule.get("ports") or []]
            if ports and port not in ports:
                continue
            for peer in rule.get("from") or [{}]:
                if set(peer) == {"namespaceSelector"} and _matches(peer["namespaceSelector"], source_labels):
                    return True
                if not peer:
                    return True
    return False


def _matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        present = labels.get(expression["key"])
        if expression["operator"] == "In" and present not in expression["values"]:
            return False
        if expression["operator"] != "In":
            raise AssertionError(f"the test reads only In expressions, not {expression}")
    return True


def _cluster(fake, name="kube", flavor="raw", **settings):  # noqa: F811
    cluster = cluster_register(actor=None, name=name, kubeconfig=kubeconfig(fake.url), flavor=flavor,
                               settings=settings)
    for project in ("team_n", "team_o"):
        ClusterGrant.objects.get_or_create(project=Project.objects.get_or_create(name=project)[0], cluster=cluster)
    return cluster


def _serve(fake, document: dict, project: str, member: str) -> Service:  # noqa: F811
    developer = api_client_for(make_member(member, project))
    response = developer.post(f"/api/v2/services?WorkspaceId={project}", document, format="json")
    assert response.status_code in (200, 201, 202), response.json()
    service = Service.objects.get(name=document["name"])
    reconcile(service.pk)
    fake.run_controllers()
    return service


def _pods(fake, namespace: str) -> list[dict]:  # noqa: F811
    pods = fake.find("Pod", namespace=namespace)
    assert pods, f"no pod in {namespace}"
    return pods


@pytest.fixture
def raw(fake):  # noqa: F811
    _cluster(fake)
    return _serve(fake, CUSTOM, "team_n", "dev_n"), _serve(fake, OTHER, "team_o", "dev_o")


@pytest.mark.parametrize(("source", "port"), RAW_ATTEMPTS)
def test_a_connection_from_outside_the_data_plane_is_refused(fake, raw, source, port):  # noqa: F811
    for pod in _pods(fake, HOME):
        assert not admits(fake, pod, source, port)


def test_the_data_plane_and_ferry_reach_the_server_port_only(fake, raw):  # noqa: F811
    (pod,) = _pods(fake, HOME)
    assert all(admits(fake, pod, source, 8000) for source in ("knative-serving", "istio-system", "ferry-system"))
    (policy,) = fake.find("NetworkPolicy", namespace=HOME)
    assert policy["metadata"]["name"] == "echo-net-ingress"
    assert [entry["port"] for rule in policy["spec"]["ingress"] for entry in rule["ports"]] == [8000]


def test_each_service_has_its_own_policy_selecting_exactly_its_pods(fake, raw):  # noqa: F811
    (mine,) = fake.find("NetworkPolicy", namespace=HOME)
    (theirs,) = fake.find("NetworkPolicy", namespace=OTHER_HOME)
    assert theirs["metadata"]["name"] == "echo-other-ingress"
    every_pod = fake.find("Pod")
    assert len(every_pod) == 2
    for policy in (mine, theirs):
        selected = [p["metadata"]["name"] for p in every_pod
                    if p["metadata"]["namespace"] == policy["metadata"]["namespace"]
                    and _matches(policy["spec"]["podSelector"], p["metadata"]["labels"])]
        service = policy["spec"]["podSelector"]["matchLabels"]["ferry.dev/service"]
        assert selected == [p["metadata"]["name"] for p in every_pod
                            if p["metadata"]["labels"].get("ferry.dev/service") == service]
        assert len(selected) == 1


def test_the_admitted_namespaces_are_exactly_the_clusters_settings(fake):  # noqa: F811
    _cluster(fake, ingress_namespaces=["envoy-gateway-system"], ferry_namespace="ferry-ops",
             monitoring_namespaces=["prom"])
    _serve(fake, CUSTOM, "team_n", "dev_n")
    (policy,) = fake.find("NetworkPolicy", namespace=HOME)
    admitted = {value for rule in policy["spec"]["ingress"] for peer in rule["from"]
                for expression in peer["namespaceSelector"]["matchExpressions"] for value in expression["values"]}
    assert admitted == {"envoy-gateway-system", "ferry-ops"}  # a custom container has no scrape port
    (pod,) = _pods(fake, HOME)
    assert admits(fake, pod, "envoy-gateway-system", 8000) and not admits(fake, pod, "istio-system", 8000)
    assert not admits(fake, pod, "prom", 8000)


def test_a_scraped_server_admits_the_monitoring_namespace_on_its_metrics_port_only(fake):  # noqa: F811
    _cluster(fake, monitoring_namespaces=["prom"])
    _serve(fake, {"name": "triton_net", "processor": "triton", "model_path": "http://models.test/repository.tar",
                  "metadata": CUSTOM["metadata"]}, "team_n", "dev_n")
    (deployment,) = fake.find("Deployment", namespace=HOME)
    metrics = int(deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
    serving = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert metrics != serving
    (pod,) = _pods(fake, HOME)
    assert admits(fake, pod, "prom", metrics) and not admits(fake, pod, "prom", serving)
    assert admits(fake, pod, "istio-system", serving) and not admits(fake, pod, "istio-system", metrics)
    assert not admits(fake, pod, "monitoring", metrics) and not admits(fake, pod, "default", metrics)


@pytest.mark.parametrize(("source", "port"), KNATIVE_ATTEMPTS)
def test_on_knative_only_the_activator_and_gateway_reach_the_queue_proxy(fake, source, port):  # noqa: F811
    _cluster(fake, flavor="knative")
    _serve(fake, CUSTOM, "team_n", "dev_n")
    pods = _pods(fake, HOME)
    assert not any(admits(fake, pod, source, port) for pod in pods)
    assert all(admits(fake, pod, "knative-serving", 8012) and admits(fake, pod, "knative-serving", 9090)
               for pod in pods)


def test_the_dry_run_shows_the_policy_and_applies_nothing(fake):  # noqa: F811
    _cluster(fake)
    developer = api_client_for(make_member("dev_n", "team_n"))
    body = developer.post("/api/v2/manifests?WorkspaceId=team_n", CUSTOM, format="json").json()
    (policy,) = [m for m in body["Manifests"] if m["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"]["ferry.dev/service"] == "echo-net"
    assert "kind: NetworkPolicy" in body["Yaml"] and not fake.find("NetworkPolicy")


def test_deleting_the_service_deletes_its_policy_and_no_other(fake, raw):  # noqa: F811
    mine, _ = raw
    service_delete(actor=None, service=mine)
    reconcile(mine.pk)
    reconcile(mine.pk)
    assert not Service.objects.filter(pk=mine.pk).exists()
    assert not fake.find("NetworkPolicy", namespace=HOME) and not fake.find("Pod", namespace=HOME)
    assert [p["metadata"]["name"] for p in fake.find("NetworkPolicy")] == ["echo-other-ingress"]


@pytest.fixture
def admin():
    return api_client_for(get_user_model().objects.create_superuser("root_n", password="not-used"))


def _paths(response) -> list[str]:
    return [error["Path"] for error in response.json().get("Errors", [])]


@pytest.mark.parametrize(("path", "settings"), BAD_SETTINGS)
def test_a_malformed_network_or_fetch_setting_is_refused_by_name(admin, fake, path, settings):  # noqa: F811
    response = admin.post("/api/v2/clusters", {"ClusterName": "badnet", "Kubeconfig": kubeconfig(fake.url),
                                               "Settings": settings}, format="json")
    assert response.status_code == 400 and path in _paths(response), response.json()
    assert not Cluster.objects.filter(name="badnet").exists()


@pytest.mark.parametrize(("path", "settings"), BAD_SETTINGS)
def test_a_malformed_network_or_fetch_setting_is_refused_on_update(admin, fake, path, settings):  # noqa: F811
    cluster = _cluster(fake, ingress_namespaces=["istio-system"])
    response = admin.put("/api/v2/clusters/kube", {"Settings": settings}, format="json")
    assert response.status_code == 400 and path in _paths(response), response.json()
    cluster.refresh_from_db()
    assert cluster.settings == {"ingress_namespaces": ["istio-system"]}
