"""Every route of the API and the console, generated from the URL configuration, tried by an anonymous caller,
by a developer of another project (mallory) and by a viewer (vera), with every method, against alice's objects.

A route added later is tried too: its parameters must have a sample below, or this test fails naming it.

- anonymous: every API route answers 401, every console page sends to the login; nothing changes.
- mallory: nothing changes, and each answer is the one the same request gets for objects that do not exist
  (same status and EAS code): what is another project's is not there for her.
- vera: no write changes anything; what she may read has no secret-bearing value in it.
"""

from __future__ import annotations

import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from services.models import AccessKey, BenchmarkState, BenchmarkTask
from services.writes import access_key_create, api_token_create

from .test_project_boundaries import SECRETS, World, leaked, snapshot

pytestmark = pytest.mark.django_db
METHODS = ("get", "post", "put", "patch", "delete")
PUBLIC = ("login/", "logout/", "api/schema/", "api/docs/")  # open to all by design; no object of anyone's
SKIPPED_PREFIXES = ("admin/",)  # Django's admin: staff only, tried in test_project_boundaries


def routes(patterns=None, prefix: str = "") -> list[str]:
    """Every route as a template, e.g. "api/v2/services/<str:cluster_id>/<str:service_name>/logs"."""
    found = []
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        template = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if not template.startswith(SKIPPED_PREFIXES):
                found += routes(pattern.url_patterns, template)
        elif isinstance(pattern, URLPattern) and not template.startswith(PUBLIC):
            found.append(template.lstrip("^").rstrip("$"))
    return sorted(set(found))


class Samples:
    """Alice's objects by parameter name, and objects that do not exist, for the same routes."""

    def __init__(self, world: World):
        key, _ = access_key_create(user=world.alice, description="alice's")
        token, _ = api_token_create(user=world.alice, name="alice's")
        task = BenchmarkTask.objects.create(project=world.team_a, cluster=world.vault.cluster, service=world.vault,
                                            name="benchmark-vault-0001", task_id="eas-b-000000000001",
                                            state=BenchmarkState.COMPLETED, config={"service": {"serviceName": "vault"}})
        self.alices = {"cluster_id": "local", "service_name": "vault", "name": "vault",
                       "instance_name": "vault-v1-0", "group_name": "shop", "resource_id": "local",
                       "cluster_name": "gpu", "action": "stop", "tab": "logs", "key_id": key.access_key_id,
                       "access_key_id": key.access_key_id, "token_id": token.pk, "project_name": "team_a",
                       "task_name": task.name}
        self.missing = self.alices | {"service_name": "nosuch", "name": "nosuch", "instance_name": "nosuch-v1-0",
                                      "group_name": "nosuch", "resource_id": "nosuch", "cluster_name": "nosuch",
                                      "key_id": "FAKNOSUCH0000000000", "access_key_id": "FAKNOSUCH0000000000",
                                      "token_id": 987654, "project_name": "nosuch",
                                      "task_name": "benchmark-nosuch-0000"}

    @staticmethod
    def fill(template: str, values: dict) -> str:
        import re

        if template.startswith("api/v2/resources/"):  # a resource is a cluster: alice's is gpu (local is shared)
            values = values | {"cluster_id": values["cluster_name"], "resource_id": values["cluster_name"]}

        def value(match):
            name = match[2]
            assert name in values, f"no sample for <{name}> in route {template}: add one to Samples"
            return str(values[name])

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, template)


def clients(world: World, who: str):
    """(API client, console client): made once, before the snapshot, as making an API client mints a token."""
    return world.api(who), world.console(who)


def call(client, method: str, path: str):
    if path.startswith("/api/"):
        return getattr(client, method)(path, {} if method != "get" else None, format="json")
    return getattr(client, method)(path, {} if method == "post" else None)


def eas_code(response) -> str | None:
    try:
        return json.loads(response.content).get("Code")
    except (ValueError, AttributeError):
        return None


@pytest.fixture
def world(db, settings) -> World:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return World()


def test_the_sweep_finds_the_api_and_the_console():
    found = routes()
    assert sum(r.startswith("api/v2/") for r in found) >= 40 and sum(not r.startswith("api/") for r in found) >= 10


def test_an_anonymous_caller_gets_nothing_anywhere(world):
    (api, console), samples = clients(world, "anonymous"), Samples(world)
    before, tried = snapshot(), 0
    for template in routes():
        path = samples.fill(template, samples.alices)
        for method in METHODS:
            response = call(api if path.startswith("/api/") else console, method, path)
            tried += 1
            if path.startswith("/api/"):
                assert response.status_code == 401, (method, path, response.status_code, response.content[:200])
            else:
                assert response.status_code in (302, 405), (method, path, response.status_code)
                if response.status_code == 302:
                    assert response["Location"].startswith("/login/"), (method, path, response["Location"])
            assert not leaked(response, *SECRETS), (method, path)
    assert snapshot() == before
    print(f"\nanonymous: {tried} attempts, 0 succeeded")


def test_another_projects_developer_sees_alices_objects_as_missing_and_changes_nothing(world):
    (api, console), samples = clients(world, "mallory"), Samples(world)
    before, keys_before = snapshot(), sorted(AccessKey.objects.values_list("access_key_id", "revoked_at"))
    tried, differences = 0, []
    for template in routes():
        if not any(name in template for name in ("service_name", "instance_name", "group_name", "resource_id",
                                                   "cluster_name", "key_id", "access_key_id", "token_id",
                                                   "project_name", "task_name", "<str:name>")):
            continue  # routes without an object of alice's: her own lists, tried by test_project_boundaries
        for method in METHODS:
            client = api if template.startswith("api/") else console
            alices = call(client, method, samples.fill(template, samples.alices))
            missing = call(client, method, samples.fill(template, samples.missing))
            tried += 1
            if (alices.status_code, eas_code(alices)) != (missing.status_code, eas_code(missing)):
                differences.append((method, template, alices.status_code, eas_code(alices),
                                    missing.status_code, eas_code(missing)))
            assert not leaked(alices, *SECRETS), (method, template)
            assert snapshot() == before, (method, template)
    assert sorted(AccessKey.objects.values_list("access_key_id", "revoked_at")) == keys_before
    assert not differences, differences
    print(f"\nmallory: {tried} attempts, 0 succeeded")


def test_a_viewer_writes_nothing_and_reads_no_secret(world):
    (api, console), samples = clients(world, "vera"), Samples(world)
    before, tried = snapshot(), 0
    for template in routes():
        if "key_id" in template or "token_id" in template or "access_key_id" in template:
            continue  # alice's own credentials: tried as mallory's above (vera is another user as well)
        path = samples.fill(template, samples.alices)
        for method in METHODS:
            response = call(api if path.startswith("/api/") else console, method, path)
            tried += 1
            assert not leaked(response, *SECRETS), (method, path)
            assert snapshot() == before, (method, path, response.status_code, response.content[:300])
    print(f"\nvera: {tried} attempts, 0 succeeded")
