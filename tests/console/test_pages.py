"""The console's pages through Django's test client: what each shows, who may do what, when polling stops."""

import re

import pytest

from services.models import Service

pytestmark = pytest.mark.django_db

TABS = ["versions", "scaling", "monitoring", "logs", "events", "instances", "invoke", "file"]
HTMX = {"HTTP_HX_REQUEST": "true"}


def page(client, url, **extra):
    response = client.get(url, **extra)
    assert response.status_code in (200, 286), (url, response.status_code)
    return response.content.decode()


def test_it_lists_services_with_status_instances_and_endpoint(alice_client, echo):
    html = page(alice_client, "/")
    assert 'data-service="echo"' in html and "/api/predict/echo" in html
    assert "0 / 1" in html  # ready / desired: no agent runs here


def test_it_filters_the_list_and_answers_htmx_with_the_table_only(alice_client, echo):
    assert 'data-service="echo"' not in page(alice_client, "/?q=nothing")
    fragment = page(alice_client, "/?q=ech", HTTP_HX_TARGET="service-table", **HTMX)
    assert fragment.lstrip().startswith('<div id="service-table"') and "<html" not in fragment
    assert 'id="service-summary" hx-swap-oob="true"' in fragment  # the counter above the table follows


def test_polling_goes_on_while_a_service_moves_and_stops_with_286_at_rest(alice_client, echo):
    moving = alice_client.get("/", HTTP_HX_TARGET="service-table", **HTMX)
    assert moving.status_code == 200 and 'hx-trigger="every 2s"' in moving.content.decode()

    Service.objects.filter(pk=echo.pk).update(phase="Stopped", desired_state="stopped",
                                              observed_generation=echo.generation)
    still = alice_client.get("/", HTTP_HX_TARGET="service-table", **HTMX)
    assert still.status_code == 286 and "hx-trigger" not in still.content.decode()
    status = alice_client.get("/services/local/echo/", HTTP_HX_TARGET="service-status", **HTMX)
    assert status.status_code == 286 and "hx-trigger" not in status.content.decode()
    assert 'id="tab-count-events" hx-swap-oob="true"' in status.content.decode()


def test_every_tab_renders_for_a_developer(alice_client, echo_v2):
    for tab in ["", *TABS]:
        html = page(alice_client, f"/services/local/echo/{tab + '/' if tab else ''}")
        assert "<h1>echo</h1>" in html
    versions = page(alice_client, "/services/local/echo/versions/")
    assert 'id="canary-percent"' in versions and "Promote v2" in versions and "Roll back to v1" in versions


def test_blue_green_buttons_wait_for_the_rollout_functions(alice_client, echo_v2, monkeypatch):
    from services import writes

    page(alice_client, "/")  # loads the URL conf (the API views name these functions) before they go
    for name in ("rollout_switch", "rollout_finish"):
        monkeypatch.delattr(writes, name, raising=False)
    html = page(alice_client, "/services/local/echo/versions/")
    assert re.search(r'<button type="button" class="secondary" disabled[^>]*title="arrives with blue-green rollouts"'
                     r'>Switch to green', html)

    monkeypatch.setattr(writes, "rollout_finish", lambda **kwargs: None, raising=False)
    monkeypatch.setattr(writes, "rollout_switch", lambda **kwargs: None, raising=False)
    html = page(alice_client, "/services/local/echo/versions/")
    assert "/actions/switch/" in html and "Finish rollout</button>" in html


def test_the_events_tab_says_who_acted_and_nothing_for_the_reconciler(alice_client, echo):
    from deployer.reconcile import reconcile

    assert alice_client.post("/services/local/echo/actions/stop/").status_code in (200, 302)
    reconcile(echo.pk)  # the reconciler's own events name nobody
    html = page(alice_client, "/services/local/echo/events/")
    entries = dict(re.findall(r'<li class="event [^"]*" data-reason="(\w+)">(.*?)</li>', html, re.S))
    for reason in ("CreatedService", "StopRequested"):
        assert '<span class="muted small event-actor">by alice</span>' in entries[reason], entries[reason]
    by_ferry = set(echo.events.filter(actor="").values_list("reason", flat=True))
    assert by_ferry and by_ferry <= set(entries)
    assert not any("event-actor" in entries[reason] for reason in by_ferry)


def test_a_viewer_sees_no_write_controls_and_may_not_post(viewer_client, echo):
    for tab in ["", "versions", "scaling", "instances", "invoke"]:
        html = page(viewer_client, f"/services/local/echo/{tab + '/' if tab else ''}")
        assert "/actions/" not in html and "Reveal access token" not in html
    assert "New service" not in page(viewer_client, "/")
    response = viewer_client.post("/services/local/echo/actions/stop/")
    assert response.status_code == 403
    assert viewer_client.post("/services/local/echo/actions/token/").status_code == 403
    assert viewer_client.get("/services/new/").status_code == 403


def test_what_is_not_yours_is_not_found(echo, db):
    from tests.api.conftest import make_member
    from tests.console.conftest import signed_in

    stranger = signed_in(make_member("mallory", "team_b"))
    assert stranger.get("/services/local/echo/").status_code == 404
    assert stranger.post("/services/local/echo/actions/stop/").status_code == 404
    assert 'data-service="echo"' not in page(stranger, "/")


def test_the_token_is_shown_only_on_a_post(alice_client, echo):
    from services.selectors import service_token

    secret = service_token(echo)
    assert secret not in page(alice_client, "/services/local/echo/")
    assert alice_client.get("/services/local/echo/actions/token/").status_code == 405
    revealed = alice_client.post("/services/local/echo/actions/token/", **HTMX).content.decode()
    assert secret in revealed and revealed.lstrip().startswith('<div id="token-box"')


def test_the_project_switcher_narrows_the_list(alice_client, alice, echo):
    from services.models import Project, ProjectMembership

    other = Project.objects.create(name="team_c")
    ProjectMembership.objects.create(user=alice, project=other, role="owner")
    alice_client.post("/project/", {"project": "team_c", "next": "/"})
    assert 'data-service="echo"' not in page(alice_client, "/")
    alice_client.post("/project/", {"project": "team_a", "next": "/"})
    assert 'data-service="echo"' in page(alice_client, "/")
    alice_client.post("/project/", {"project": "not_mine", "next": "https://elsewhere.example/"})
    assert 'data-service="echo"' in page(alice_client, "/")  # unknown project: back to all


def test_the_clusters_page_shows_capacity_and_services(alice_client, echo):
    html = page(alice_client, "/clusters/")
    assert "local" in html and "cores requested" in html and 'href="/services/local/echo/"' in html


def test_an_access_key_secret_is_shown_once(alice_client, alice):
    created = alice_client.post("/keys/access-keys/", {"description": "laptop"})
    html = created.content.decode()
    key_id = re.search(r'id="new-key-id">(FAK\w+)<', html).group(1)
    secret = re.search(r'id="new-key-secret" class="code" readonly value="([^"]+)"', html).group(1)
    assert created["Cache-Control"] == "no-store"
    later = page(alice_client, "/keys/")
    assert key_id in later and secret not in later
    alice_client.post(f"/keys/access-keys/{key_id}/revoke/")
    assert alice.access_keys.get().revoked_at is not None


def test_someone_elses_credential_cannot_be_revoked_from_the_console(alice_client, viewer):
    from services.writes import access_key_create, api_token_create

    key, _ = access_key_create(user=viewer)
    token, _ = api_token_create(user=viewer, name="vera's")
    assert alice_client.post(f"/keys/access-keys/{key.access_key_id}/revoke/").status_code == 404
    assert alice_client.post(f"/keys/tokens/{token.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    token.refresh_from_db()
    assert key.revoked_at is None and token.revoked_at is None
    page_of_alice = page(alice_client, "/keys/")
    assert key.access_key_id not in page_of_alice and "vera&#x27;s" not in page_of_alice


def test_a_new_api_token_is_shown_once(alice_client, alice):
    created = alice_client.post("/keys/tokens/", {"name": "laptop"})
    plaintext = re.search(r'id="new-token-value" class="code" readonly value="([^"]+)"',
                          created.content.decode()).group(1)
    assert plaintext.startswith("ferry_") and created["Cache-Control"] == "no-store"
    assert plaintext not in page(alice_client, "/keys/")
    token = alice.api_tokens.get()
    assert alice_client.post(f"/keys/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_logs_download_is_plain_text(alice_client, echo):
    response = alice_client.get("/services/local/echo/logs/download/?since=all")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert 'attachment; filename="echo-' in response["Content-Disposition"]


@pytest.mark.parametrize("url", ["/", "/services/new/", "/services/new/?mode=file", "/clusters/", "/keys/",
                                 "/services/local/echo/", *[f"/services/local/echo/{tab}/" for tab in TABS]])
def test_pages_load_nothing_from_another_host(alice_client, echo, url):
    html = page(alice_client, url)
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', html), "pages must load nothing from a CDN"
    assert "/static/django_htmx/htmx-2.min.js" in html


def test_the_scaling_tab_shows_the_autoscalers_latest_decision(alice_client, echo):
    import json

    import redis
    from django.conf import settings

    from contracts.scaling_records import DECISION_KEY

    client = redis.Redis.from_url(settings.REDIS_URL)
    record = {"time": 0, "current": 1, "desired": 3, "reason": "qps 30.0 per instance > threshold 10 → 3",
              "panicking": False, "stable": None, "panic": None}
    client.set(DECISION_KEY.format(cluster="local", service=echo.name), json.dumps(record))
    try:
        html = alice_client.get(f"/services/{echo.cluster.name}/{echo.name}/scaling/").content.decode()
    finally:
        client.delete(DECISION_KEY.format(cluster="local", service=echo.name))
    assert 'id="autoscaler-decision"' in html and "1 → 3" in html and "threshold 10" in html
