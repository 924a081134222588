"""Project boundaries in the control plane's API and console (docs/security.md, "Project boundaries").

Each attempt is what a developer of another project (mallory, team_m), a viewer (vera, team_a) or an anonymous
caller would try, through the real REST API (DRF's test client, bearer tokens) or the console (Django's test
client). Every attempt asserts its status AND that nothing changed or leaked (the state snapshot, or the secret
not in the answer). `ATTEMPTS` lists them, so docs/security.md can count them; each has a positive control
(the owner doing the same succeeds), so a check that refuses everything would fail these tests too.
"""

import json
from io import StringIO
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from deployer.routing import route_entry
from services.models import ApiToken, Cluster, ClusterGrant, Instance, Project, Service
from services.writes import api_token_create, mirror_set, service_create, service_delete
from tests.api.conftest import api_client_for, make_member

pytestmark = pytest.mark.django_db

# Values that must never reach mallory, vera or an anonymous caller.
ENV_SECRET = "env-secret-0b5e"
GIT_SECRET = "git-secret-77aa"
DOCKER_SECRET = "docker-secret-91cc"
URL_SECRET = "url-secret-4d2f"
LOG_SECRET = "alice-log-line-5e1d"
MALLORY_LOG_SECRET = "mallory-log-line-c3a0"
SECRETS = (ENV_SECRET, GIT_SECRET, DOCKER_SECRET, URL_SECRET)


def custom_file(name: str, **extra) -> dict:
    """A service the reconciler accepts without a model; no agent runs here, so its instances never start."""
    return {"name": name, "processor": "custom",
            "containers": [{"image": "none", "script": "sleep 600", "port": 8000}],
            "metadata": {"instance": 1, **extra.pop("metadata", {})}, **extra}


SECRET_FILE = custom_file(
    "vault", containers=[{"image": "none", "script": "sleep 600", "port": 8000,
                          "env": [{"name": "API_KEY", "value": ENV_SECRET}]}],
    storage=[{"mount_path": "/code", "git": {"repo": "https://example.test/a.git", "username": "alice",
                                             "password": GIT_SECRET}}],
    dockerAuth=DOCKER_SECRET, warm_up_data_path=f"https://alice:{URL_SECRET}@example.test/warm.json")


class World:
    """alice (developer, team_a) owns `vault` and `front`; vera views team_a; mallory develops team_m; the
    cluster `gpu` is granted to team_a only; each of vault and mallory's `tools` has an instance with a log."""

    def __init__(self):
        self.alice = make_member("alice", "team_a")
        self.vera = make_member("vera", "team_a", role="viewer")
        self.mallory = make_member("mallory", "team_m")
        self.nobody = get_user_model().objects.create_user("nobody", password="not-used")
        self.team_a, self.team_m = Project.objects.get(name="team_a"), Project.objects.get(name="team_m")
        self.gpu = Cluster.objects.create(name="gpu", kind="kubernetes")
        ClusterGrant.objects.create(project=self.team_a, cluster=self.gpu)
        self.vault = service_create(actor=self.alice, project=self.team_a, document=SECRET_FILE)
        self.front = service_create(actor=self.alice, project=self.team_a,
                                    document=custom_file("front", metadata={"group": "shop"}))
        self.tools = service_create(actor=self.mallory, project=self.team_m, document=custom_file("tools"))
        self.vault_instance = self._instance(self.vault, "vault-v1-0", LOG_SECRET)
        self.tools_instance = self._instance(self.tools, "tools-v1-0", MALLORY_LOG_SECRET)

    @staticmethod
    def _instance(service, name: str, line: str) -> Instance:
        instance = Instance.objects.create(service=service, version=service.versions.get(number=1), name=name)
        log = Path(settings.VAR_DIR) / "instances" / name / "instance.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"2026-01-01T00:00:00Z {line}\n")
        return instance

    def api(self, who: str) -> APIClient:
        return APIClient() if who == "anonymous" else api_client_for(getattr(self, who))

    def console(self, who: str) -> Client:
        client = Client()
        if who != "anonymous":
            client.force_login(getattr(self, who))
        return client


@pytest.fixture
def world(db, settings) -> World:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # users only to look up
    return World()


def snapshot() -> list:
    """Everything an attempt could change: services (desired state, group, mirror, labels...), grants, instances."""
    services = [(s.name, s.project_id, s.cluster_id, s.generation, s.group, s.traffic_state, s.group_weight,
                 json.dumps(s.mirror, sort_keys=True), json.dumps(s.labels, sort_keys=True), s.desired_state,
                 s.deletion_requested_at, json.dumps(s.spec, sort_keys=True), s.versions.count())
                for s in Service.objects.order_by("name")]
    grants = sorted(ClusterGrant.objects.values_list("project_id", "cluster_id"))
    instances = sorted(Instance.objects.values_list("name", "restart_requested_at"))
    tokens = sorted(ApiToken.objects.values_list("pk", "revoked_at"))
    return [services, grants, instances, tokens]


def leaked(response, *secrets) -> list[str]:
    body = response.content.decode(errors="replace")
    return [secret for secret in secrets if secret in body]


# ---------------------------------------------------------------------------------------------------------------
# The API: (id, who, method, path, body or query, expected status, secrets that must not appear)
API_ATTEMPTS = [
    # 1. Clusters are granted to projects.
    ("deploy-ungranted", "mallory", "post", "/api/v2/services",
     custom_file("intruder", metadata={"resource": "gpu"}), 400, ()),
    ("deploy-nonexistent-cluster", "mallory", "post", "/api/v2/services",
     custom_file("intruder", metadata={"resource": "nosuch"}), 400, ()),
    ("clone-to-ungranted", "mallory", "post", "/api/v2/services/local/tools/clone",
     {"name": "intruder", "metadata": {"resource": "gpu"}}, 400, ()),
    ("move-to-ungranted", "mallory", "put", "/api/v2/services/local/tools", {"metadata": {"resource": "gpu"}},
     400, ()),
    ("dry-run-on-ungranted", "mallory", "post", "/api/v2/manifests",
     custom_file("intruder", metadata={"resource": "gpu"}), 400, ()),
    ("describe-ungranted-cluster", "mallory", "get", "/api/v2/clusters/gpu", None, 404, ("kubernetes",)),
    ("health-of-ungranted-cluster", "mallory", "get", "/api/v2/clusters/gpu/health", None, 404, ()),
    ("update-ungranted-cluster", "mallory", "put", "/api/v2/clusters/gpu", {"Flavor": "knative"}, 404, ()),
    ("delete-ungranted-cluster", "mallory", "delete", "/api/v2/clusters/gpu", None, 404, ()),
    ("describe-ungranted-resource", "mallory", "get", "/api/v2/resources/gpu/gpu", None, 404, ()),
    ("services-of-ungranted-resource", "mallory", "get", "/api/v2/resources/gpu/gpu/services", None, 404, ()),
    ("cluster-list-anonymous", "anonymous", "get", "/api/v2/clusters", None, 401, ("gpu",)),
    ("machine-spec-anonymous", "anonymous", "get", "/api/v2/public/instance_types", None, 401, ()),
    # 2. InstanceName names an instance of that very service.
    ("log-of-another-projects-instance", "alice", "get", "/api/v2/services/local/vault/logs",
     {"InstanceName": "tools-v1-0"}, 404, (MALLORY_LOG_SECRET,)),
    ("log-by-relative-path", "alice", "get", "/api/v2/services/local/vault/logs",
     {"InstanceName": "../tools-v1-0"}, 404, (MALLORY_LOG_SECRET,)),
    ("log-by-deeper-path", "vera", "get", "/api/v2/services/local/vault/logs",
     {"InstanceName": "vault-v1-0/../tools-v1-0"}, 404, (MALLORY_LOG_SECRET,)),
    ("log-viewer-other-instance", "vera", "get", "/api/v2/services/local/vault/logs",
     {"InstanceName": "tools-v1-0"}, 404, (MALLORY_LOG_SECRET,)),
    ("log-of-another-projects-service", "mallory", "get", "/api/v2/services/local/vault/logs",
     {"InstanceName": "vault-v1-0"}, 404, (LOG_SECRET,)),
    ("log-anonymous", "anonymous", "get", "/api/v2/services/local/vault/logs", {"InstanceName": "vault-v1-0"},
     401, (LOG_SECRET,)),
    ("diagnose-foreign-instance", "alice", "get", "/api/v2/services/local/vault/instances/tools-v1-0/diagnosis",
     None, 404, (MALLORY_LOG_SECRET,)),
    ("containers-of-foreign-instance", "alice", "get",
     "/api/v2/services/local/vault/instances/tools-v1-0/containers", None, 404, ("sleep 600",)),
    ("restart-foreign-instance", "alice", "delete", "/api/v2/services/local/vault/instances",
     {"InstanceList": "tools-v1-0"}, 404, ()),
    ("restart-instance-of-another-project", "mallory", "delete", "/api/v2/services/local/vault/instances",
     {"InstanceList": "vault-v1-0"}, 404, ()),
    # 3. Groups and mirrors stay inside their project.
    ("join-foreign-group-on-create", "mallory", "post", "/api/v2/services",
     custom_file("shop_b", metadata={"group": "shop"}), 400, ()),
    ("join-foreign-group-on-update", "mallory", "put", "/api/v2/services/local/tools", {"metadata": {"group": "shop"}},
     400, ()),
    ("shadow-group-with-service", "mallory", "post", "/api/v2/services", custom_file("shop"), 400, ()),
    ("group-named-like-foreign-service", "mallory", "put", "/api/v2/services/local/tools",
     {"metadata": {"group": "vault"}}, 400, ()),
    ("mirror-to-foreign-service", "mallory", "post", "/api/v2/services/local/tools/mirror",
     {"Target": ["vault"], "Ratio": 50}, 400, ()),
    ("describe-foreign-group", "mallory", "get", "/api/v2/groups/local/shop", None, 404, ("front",)),
    # 4. What is not yours is not found (the same answer as what does not exist: test_not_found_is_the_same).
    ("describe-foreign-service", "mallory", "get", "/api/v2/services/local/vault", None, 404, SECRETS),
    ("update-foreign-service", "mallory", "put", "/api/v2/services/local/vault", {"metadata": {"instance": 0}},
     404, ()),
    ("delete-foreign-service", "mallory", "delete", "/api/v2/services/local/vault", None, 404, ()),
    ("clone-foreign-service", "mallory", "post", "/api/v2/services/local/vault/clone", {"name": "stolen"}, 404,
     SECRETS),
    ("describe-foreign-anonymous", "anonymous", "get", "/api/v2/services/local/vault", None, 401, SECRETS),
    # 5. Viewers never see secret-bearing fields.
    ("viewer-describe-service", "vera", "get", "/api/v2/services/local/vault", None, 200, SECRETS),
    ("viewer-list-services", "vera", "get", "/api/v2/services", None, 200, SECRETS),
    ("viewer-list-versions", "vera", "get", "/api/v2/services/local/vault/versions", None, 200, SECRETS),
    ("viewer-resource-services", "vera", "get", "/api/v2/resources/local/local/services", None, 200, SECRETS),
    ("viewer-manifests", "vera", "get", "/api/v2/services/local/vault/manifests", None, 403, SECRETS),
    ("viewer-clone-to-read", "vera", "post", "/api/v2/services/local/vault/clone", {"name": "copy"}, 403, SECRETS),
    # 6. Label keys are data, never ORM lookups.
    ("label-filter-operator", "alice", "get", "/api/v2/services", {"Label": json.dumps({"a__regex": ".*"})}, 200,
     ("vault", "front")),
    ("label-filter-path", "alice", "get", "/api/v2/services", {"Label": json.dumps({"name__startswith": "v"})}, 200,
     ("vault", "front")),
    ("label-filter-bad-key", "alice", "get", "/api/v2/services", {"Label": json.dumps({"a b') OR 1=1": "x"})}, 400,
     ("vault",)),
    ("label-set-bad-key", "alice", "put", "/api/v2/services/local/vault/label", {"Labels": {"$where": "x"}}, 400, ()),
    ("label-set-path-key", "alice", "put", "/api/v2/services/local/vault/label", {"Labels": {"../x": "x"}}, 400, ()),
    ("label-on-foreign-service", "mallory", "put", "/api/v2/services/local/vault/label", {"Labels": {"a": "b"}},
     404, ()),
]


def call(client: APIClient, method: str, path: str, data):
    if method == "get":
        return client.get(path, data or {})
    if method == "delete":  # EAS operations take DELETE's parameters in the query
        return client.delete(f"{path}?{urlencode(data)}" if data else path)
    return getattr(client, method)(path, data, format="json")


@pytest.mark.parametrize("attempt", API_ATTEMPTS, ids=[a[0] for a in API_ATTEMPTS])
def test_api_attempt_is_refused_and_changes_nothing(world, attempt):
    _, who, method, path, data, status, secrets = attempt
    client = world.api(who)
    before = snapshot()
    response = call(client, method, path, data)
    assert response.status_code == status, response.content
    assert leaked(response, *secrets) == []
    assert snapshot() == before


def test_the_owner_does_what_the_attempts_could_not(world):
    """Positive controls: the checks refuse what is foreign, not everything."""
    alice = world.api("alice")
    log = alice.get("/api/v2/services/local/vault/logs", {"InstanceName": "vault-v1-0"})
    assert log.status_code == 200 and LOG_SECRET in log.content.decode()
    described = alice.get("/api/v2/services/local/vault").json()
    assert all(secret in described["ServiceConfig"] for secret in SECRETS)  # developers see their file
    assert alice.get("/api/v2/clusters/gpu").status_code == 200
    assert alice.get("/api/v2/services/local/vault/instances/vault-v1-0/containers").status_code == 200
    assert alice.put("/api/v2/services/local/vault/label", {"Labels": {"ferry.dev/tier": "gold"}},
                     format="json").status_code == 200
    listed = alice.get("/api/v2/services", {"Label": json.dumps({"ferry.dev/tier": "gold"})}).json()
    assert [s["ServiceName"] for s in listed["Services"]] == ["vault"]
    created = alice.post("/api/v2/services", custom_file("shop_a", metadata={"group": "shop"}), format="json")
    assert created.status_code == 202, created.content


def test_a_grant_opens_the_cluster_and_a_revocation_closes_it(world):
    mallory = world.api("mallory")
    assert "gpu" not in [c["ClusterName"] for c in mallory.get("/api/v2/clusters").json()["Clusters"]]
    call_command("ferry_grant_cluster", "gpu", "team_m", stdout=StringIO())
    assert "gpu" in [c["ClusterName"] for c in mallory.get("/api/v2/clusters").json()["Clusters"]]
    created = mallory.post("/api/v2/services", custom_file("gpu_job", metadata={"resource": "gpu"}), format="json")
    assert created.status_code == 202, created.content
    call_command("ferry_grant_cluster", "gpu", "team_m", "--revoke", stdout=StringIO())
    refused = mallory.post("/api/v2/services", custom_file("gpu_job2", metadata={"resource": "gpu"}), format="json")
    assert refused.status_code == 400 and refused.json()["Code"] == "ClusterNotGranted"
    assert not Service.objects.filter(name="gpu_job2").exists()


def test_refusals_name_only_the_projects_own_clusters(world):
    mallory = world.api("mallory")
    ungranted = mallory.post("/api/v2/services", custom_file("x", metadata={"resource": "gpu"}), format="json")
    missing = mallory.post("/api/v2/services", custom_file("x", metadata={"resource": "nosuch"}), format="json")
    assert (ungranted.json()["Code"], missing.json()["Code"]) == ("ClusterNotGranted", "ClusterNotGranted")
    assert ungranted.json()["Message"].replace("gpu", "?") == missing.json()["Message"].replace("nosuch", "?")
    assert "(granted: local)" in ungranted.json()["Message"]
    for who in ("mallory", "nobody"):
        listed = world.api(who).get("/api/v2/clusters").json()["Clusters"]
        assert "gpu" not in [c["ClusterName"] for c in listed]
        assert "gpu" not in [r["ClusterId"] for r in world.api(who).get("/api/v2/resources").json()["Resources"]]


def test_host_cpu_and_memory_only_for_projects_granted_the_cluster(world):
    assert world.api("nobody").get("/api/v2/public/instance_types").json()["InstanceMetas"] == []
    assert world.api("nobody").get("/api/v2/clusters").json()["Clusters"] == []
    assert len(world.api("mallory").get("/api/v2/public/instance_types").json()["InstanceMetas"]) == 1
    page = world.console("nobody").get("/clusters/")
    assert page.status_code == 200 and "local" not in page.content.decode().split("<main", 1)[-1]


def test_not_found_is_the_same_for_another_projects_service_and_for_none(world):
    mallory = world.api("mallory")
    for suffix, method, data in (("", "get", None), ("/logs", "get", None), ("/start", "put", {}),
                                 ("/mirror", "get", None), ("/versions", "get", None)):
        foreign = call(mallory, method, f"/api/v2/services/local/vault{suffix}", data)
        absent = call(mallory, method, f"/api/v2/services/local/vaulx{suffix}", data)
        assert foreign.status_code == absent.status_code == 404
        assert foreign.json()["Code"] == absent.json()["Code"]
        assert foreign.json()["Message"].replace("vault", "?") == absent.json()["Message"].replace("vaulx", "?")
    foreign_cluster = mallory.get("/api/v2/clusters/gpu").json()
    absent_cluster = mallory.get("/api/v2/clusters/gpx").json()
    assert (foreign_cluster["Code"], foreign_cluster["Message"].replace("gpu", "?")) == (
        absent_cluster["Code"], absent_cluster["Message"].replace("gpx", "?"))


# ---------------------------------------------------------------------------------------------------------------
# Groups and mirrors, checked when the route is published (what the gateway gets), not only when set.

def test_a_foreign_member_stored_in_a_group_is_not_published_in_it(world):
    """A row set before the checks existed (or by a race): mallory's tools says group "shop" and grouping."""
    Service.objects.filter(pk=world.tools.pk).update(group="shop", traffic_state="grouping", group_weight=100)
    tools = Service.objects.get(pk=world.tools.pk)
    assert route_entry(tools, "t").group == ""
    assert route_entry(Service.objects.get(pk=world.front.pk), "t").group == "shop"
    mallory = world.api("mallory")
    before = snapshot()
    response = mallory.put("/api/v2/services/local/tools/release",
                                        {"Weight": 100, "TrafficState": "grouping"}, format="json")
    assert response.status_code == 400 and response.json()["Code"] == "GroupNotOwned"
    assert snapshot() == before


def test_a_group_name_is_per_cluster_as_each_clusters_gateway_is(world):
    """Positive control: on a cluster of its own, team_m's group "shop" is its own and is published."""
    edge = Cluster.objects.create(name="edge", kind="kubernetes")
    ClusterGrant.objects.create(project=world.team_m, cluster=edge)
    created = world.api("mallory").post("/api/v2/services", custom_file(
        "shop_edge", metadata={"resource": "edge", "group": "shop"}), format="json")
    assert created.status_code == 202, created.content
    assert route_entry(Service.objects.get(name="shop_edge"), "t").group == "shop"
    assert route_entry(Service.objects.get(pk=world.front.pk), "t").group == "shop"


def test_a_deleted_mirror_target_is_not_replaced_by_a_same_named_service(world):
    target = service_create(actor=world.alice, project=world.team_a, document=custom_file("shadow"))
    mirror_set(actor=world.alice, service=world.vault, targets=["shadow"], ratio=50)
    vault = Service.objects.get(pk=world.vault.pk)
    assert route_entry(vault, "t").to_dict()["mirror"] == {"targets": ["shadow"], "ratio": 50}
    service_delete(actor=world.alice, service=target)
    Service.objects.filter(pk=target.pk).delete()  # the finalizer's end: the row is gone
    service_create(actor=world.mallory, project=world.team_m, document=custom_file("shadow"))
    assert route_entry(Service.objects.get(pk=world.vault.pk), "t").mirror.targets == ()
    # ...and the same holds once alice makes a new "shadow" of her own: a new target is set, not inherited.
    assert Service.objects.get(pk=world.vault.pk).mirror["targets"] == ["shadow"]


def test_a_mirror_stored_by_name_only_resolves_within_its_project(world):
    Service.objects.filter(pk=world.vault.pk).update(mirror={"targets": ["tools", "front"], "ratio": 10})
    assert route_entry(Service.objects.get(pk=world.vault.pk), "t").to_dict()["mirror"] == {"targets": ["front"], "ratio": 10}


# ---------------------------------------------------------------------------------------------------------------
# The console: every URL that takes an id checks the object is the user's (404), and viewers see masks.
CONSOLE_ATTEMPTS = [
    ("page-of-foreign-service", "mallory", "get", "/services/local/vault/", {}, 404, SECRETS),
    ("file-tab-of-foreign-service", "mallory", "get", "/services/local/vault/file/", {}, 404, SECRETS),
    ("logs-tab-of-foreign-service", "mallory", "get", "/services/local/vault/logs/", {}, 404, (LOG_SECRET,)),
    ("logs-download-of-foreign-service", "mallory", "get", "/services/local/vault/logs/download/", {}, 404,
     (LOG_SECRET,)),
    ("edit-of-foreign-service", "mallory", "get", "/services/local/vault/edit/", {}, 404, SECRETS),
    ("delete-foreign-service", "mallory", "post", "/services/local/vault/actions/delete/", {}, 404, ()),
    ("token-of-foreign-service", "mallory", "post", "/services/local/vault/actions/token/", {}, 404, ()),
    ("foreign-instance-in-own-logs", "alice", "get", "/services/local/vault/logs/", {"instance": "tools-v1-0"}, 404,
     (MALLORY_LOG_SECRET,)),
    ("foreign-instance-in-own-download", "alice", "get", "/services/local/vault/logs/download/",
     {"instance": "../tools-v1-0"}, 404, (MALLORY_LOG_SECRET,)),
    ("restart-foreign-instance", "alice", "post", "/services/local/vault/actions/instance-restart/",
     {"instance": "tools-v1-0"}, 404, ()),
    ("revoke-anothers-token", "mallory", "post", "/keys/tokens/{alice_token}/revoke/", {}, 404, ()),
    ("viewer-file-tab", "vera", "get", "/services/local/vault/file/", {}, 200, SECRETS),
    ("viewer-edit", "vera", "get", "/services/local/vault/edit/", {}, 403, SECRETS),
    ("viewer-token", "vera", "post", "/services/local/vault/actions/token/", {}, 403, ()),
    ("ungranted-cluster-on-clusters-page", "mallory", "get", "/clusters/", {}, 200, ("gpu",)),
    ("ungranted-cluster-in-create-form", "mallory", "get", "/services/new/", {}, 200, ('value="gpu"',)),
    ("anonymous-page", "anonymous", "get", "/services/local/vault/", {}, 302, SECRETS),
    ("anonymous-action", "anonymous", "post", "/services/local/vault/actions/delete/", {}, 302, ()),
]


@pytest.mark.parametrize("attempt", CONSOLE_ATTEMPTS, ids=[a[0] for a in CONSOLE_ATTEMPTS])
def test_console_attempt_is_refused_and_changes_nothing(world, attempt):
    _, who, method, path, data, status, secrets = attempt
    alice_token, _ = api_token_create(user=world.alice, name="console-test")
    before = snapshot()
    response = getattr(world.console(who), method)(path.format(alice_token=alice_token.pk), data)
    assert response.status_code == status, response.content[:300]
    assert leaked(response, *secrets) == []
    assert snapshot() == before


def test_the_console_shows_the_owner_what_it_hides_from_others(world):
    alice = world.console("alice")
    page = alice.get("/services/local/vault/file/").content.decode()
    assert ENV_SECRET in page and DOCKER_SECRET in page
    logs = alice.get("/services/local/vault/logs/", {"instance": "vault-v1-0", "since": "all"})
    assert logs.status_code == 200 and LOG_SECRET in logs.content.decode()
    assert 'value="gpu"' in alice.get("/services/new/").content.decode()


ATTEMPTS = [a[0] for a in API_ATTEMPTS] + [a[0] for a in CONSOLE_ATTEMPTS] + [
    "foreign-member-published-in-group", "foreign-member-released-grouping", "deleted-mirror-target-renamed",
    "mirror-by-name-to-foreign-service", "ungranted-cluster-after-revoke", "not-found-differs-by-existence",
    "nobody-reads-host-size",
]
