"""The shared test: every console POST calls one services.writes function (the same one the REST API calls)
and writes nothing itself.

Each function of services.writes is replaced by a spy that records the call and does not call through. A view
that wrote models directly would then either not call the spy or issue INSERT/UPDATE/DELETE statements of its
own: both fail here. A POST view that is missing from the table fails too (every console URL is probed).
"""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, get_resolver, reverse

from services import writes
from services.console import urls as console_urls
from services.console.views.actions import ACTIONS, READ_ACTIONS

pytestmark = pytest.mark.django_db

SERVICE = "/services/local/echo"
WRITES = {
    # url or action -> (POST data, the services.writes function it must call)
    "start": ({}, "service_start"),
    "stop": ({}, "service_stop"),
    "restart": ({}, "service_restart"),
    "delete": ({}, "service_delete"),
    "weights": ({"weight_1": "70", "weight_2": "30"}, "version_weights_set"),
    # What a canary does is the write's decision (it refuses the fixture's rolling update: test_canary.py).
    "canary": ({"percent": "30"}, "canary_set"),
    "promote": ({}, "rollout_promote"),  # the fixture has a rolling update in progress
    "rollback": ({"number": "1"}, "version_rollback"),
    "switch": ({}, "rollout_switch"),
    "finish": ({}, "rollout_finish"),
    "mirror": ({"targets": "other", "ratio": "10"}, "mirror_set"),
    "mirror-delete": ({}, "mirror_delete"),
    "scale": ({"instances": "2"}, "service_scale"),
    "autoscaler": ({"min": "1", "max": "3", "metric": "qps", "threshold": "10"}, "autoscaler_set"),
    "autoscaler-delete": ({}, "autoscaler_delete"),
    "cron": ({"jobs": '[{"Name": "a", "Schedule": "0 0 8 * * *", "TargetSize": 2}]', "exclude_dates": ""},
             "cron_scaler_set"),
    "cron-delete": ({}, "cron_scaler_delete"),
    "instance-restart": ({"instance": "echo-v1-1"}, "service_instances_restart"),
    "/services/new/": ({"mode": "file", "project": "team_a", "text": '{"name": "other", "processor": "custom", '
                        '"containers": [{"image": "none", "script": "sleep 1", "port": 8000}]}'}, "service_create"),
    f"{SERVICE}/edit/": ({"mode": "file", "text": '{"name": "echo", "processor": "custom", '
                          '"containers": [{"image": "none", "script": "sleep 2", "port": 8000}]}'}, "service_update"),
    "/keys/access-keys/": ({"description": "ci"}, "access_key_create"),
    "/keys/access-keys/FAKE/revoke/": ({}, "access_key_revoke"),
    "/keys/tokens/": ({"name": "ci"}, "api_token_create"),
    "/keys/tokens/1/revoke/": ({}, "api_token_revoke"),
    f"{SERVICE}/benchmarks/": ({"duration": "5", "qps": "5", "concurrency": "1", "path": "", "body": "{}"},
                               "benchmark_create"),
}
# POSTs that read on demand (behind CSRF and the write role) or only remember a choice in the session.
READS = {"token": {}, "invoke": {"protocol": "eas", "body": "{}"}, "/project/": {"project": "team_a"}}
# Reads on demand whose body is JSON (the chat playground's relay; no gateway runs here, so it answers 502).
JSON_READS = {"chat": {"messages": [{"role": "user", "content": "hi"}]}}
BLUE_GREEN = {"rollout_switch", "rollout_finish"}  # arrive with the rollout work; spied even before they exist


def url_of(name: str) -> str:
    return name if name.startswith("/") else f"{SERVICE}/actions/{name}/"


@pytest.fixture
def spies(monkeypatch, echo_v2, alice):
    from services.models import AccessKey, ApiToken

    calls = []
    results = {
        "service_create": echo_v2,
        "access_key_create": (SimpleNamespace(access_key_id="FAKNEW"), "secret"),
        "api_token_create": (SimpleNamespace(name="ci", prefix="ferry_ab"), "ferry_plain"),
        "benchmark_create": SimpleNamespace(name="benchmark-echo-0000", cluster=SimpleNamespace(name="local")),
    }
    # Every URL conf module is imported before the spies go in: a view module that binds a write when it is
    # first imported (a table of actions) must bind the real one, not a spy that outlives this test.
    get_resolver().url_patterns  # noqa: B018 -- the import is the point
    for name in [*writes.__all__, *BLUE_GREEN]:
        def spy(*args, _name=name, **kwargs):
            calls.append(_name)
            return results.get(_name)
        monkeypatch.setattr(writes, name, spy, raising=False)
    AccessKey.objects.create(user=alice, access_key_id="FAKE", secret_encrypted="x")
    ApiToken.objects.create(user=alice, name="t", prefix="p", digest="d" * 64, pk=1)
    from services.models import Instance

    Instance.objects.create(service=echo_v2, version=echo_v2.versions.get(number=1), name="echo-v1-1")
    return calls


def domain_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if re.match(r"\s*(INSERT|UPDATE|DELETE)", q["sql"], re.I)
            and "django_session" not in q["sql"]]


@pytest.mark.parametrize("name", sorted(WRITES))
def test_each_console_write_calls_its_services_function_and_writes_nothing_itself(alice_client, spies, name):
    data, expected = WRITES[name]
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.post(url_of(name), data)
    assert response.status_code in (200, 302), (name, response.status_code, response.content[:500])
    assert spies == [expected], f"{name} must call services.writes.{expected}"
    assert not domain_writes(queries), f"{name} wrote to the database itself: {domain_writes(queries)}"


@pytest.mark.parametrize("name", sorted(READS))
def test_console_reads_on_demand_write_nothing(alice_client, spies, name):
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.post(url_of(name), READS[name])
    assert response.status_code in (200, 302)
    assert spies == [] and not domain_writes(queries)


@pytest.mark.parametrize("name", sorted(JSON_READS))
def test_console_json_reads_write_nothing(alice_client, spies, name):
    from django.test import override_settings

    from tests.harness.process import free_port

    with override_settings(FERRY_GATEWAY_URL=f"http://127.0.0.1:{free_port()}"), \
            CaptureQueriesContext(connection) as queries:
        response = alice_client.post(url_of(name), json.dumps(JSON_READS[name]), content_type="application/json")
        assert response.status_code == 502 and b"could not be reached" in b"".join(response.streaming_content)
    assert spies == [] and not domain_writes(queries)


def test_every_post_of_the_console_is_in_the_table(alice_client, echo):
    assert set(ACTIONS) == (set(WRITES) | set(READS) | set(JSON_READS)) & set(ACTIONS)
    assert READ_ACTIONS == (set(READS) | set(JSON_READS)) & set(ACTIONS)
    probes = {"cluster_id": "local", "name": "echo", "tab": "versions", "key_id": "FAKE", "token_id": 1,
              "action": "stop", "task_name": "benchmark-echo-0000"}
    accepting_post = set()
    for pattern in console_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        url = reverse(f"console:{pattern.name}", kwargs={k: probes[k] for k in pattern.pattern.converters})
        if alice_client.post(url, {}).status_code != 405 and "action" not in pattern.pattern.converters:
            accepting_post.add(url)
    covered = {name for name in [*WRITES, *READS] if name.startswith("/")}
    covered = {re.sub(r"/keys/(access-keys/FAKE|tokens/1)/revoke/", r"/keys/\1/revoke/", url) for url in covered}
    assert accepting_post <= covered, f"POST views missing from the table: {accepting_post - covered}"


def test_the_console_calls_the_same_functions_as_the_api():
    api_source = "\n".join(p.read_text() for p in Path("services/api/views").glob("*.py"))
    console_calls = {expected for _, expected in WRITES.values()} - BLUE_GREEN
    credentials = {"access_key_create", "access_key_revoke", "api_token_create", "api_token_revoke"}
    # service_scale is service_update of metadata.instance, which the API's UpdateService does.
    wrappers = {"service_scale"}
    missing = {name for name in console_calls - credentials - wrappers if f"writes.{name}" not in api_source}
    assert not missing, f"the API does not call {missing}: the console must not have writes of its own"
    assert console_calls <= set(writes.__all__)
