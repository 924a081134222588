"""The service page's "Model mesh" panel in a real browser: a pool's copies and its instances' memory, a model's
copies with its pool as a link, the placer's decisions, and a copy placed while the page is open appearing without
a reload (the panel polls). The placer's rows are made here directly, after the services exist (the placer has
tests of its own; nothing reconciles these services afterwards: no agent, no sweep)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from services.models import Instance, ModelPlacement, Project, ProjectMembership
from services.writes import event_record, service_create

from .conftest import IDLE_FILE, log_in, signed_in

POOL = {"name": "pool1", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 2}}
POLLED = 15_000  # ms: a few of the panel's polls


def member(username: str, role: str):
    user = get_user_model().objects.create_user(username, password="a-long-test-password")
    ProjectMembership.objects.create(user=user, project=Project.objects.get(name="default"), role=role)
    return user


def make_mesh(actor):
    project = Project.objects.get(name="default")
    pool = service_create(actor=actor, project=project, document=dict(POOL))
    models = [service_create(actor=actor, project=project, document={"name": name, "model_path": f"/tmp/{name}",
                                                                     "metadata": {"pool": "pool1"}})
              for name in ("m1", "m2")]
    # The instances are the test's own: the slots the create's reconcile mirrored (never started) go.
    Instance.objects.filter(service=pool).delete()
    version = pool.versions.get(number=1)
    instances = [Instance.objects.create(service=pool, version=version, name=f"pool1-{n}", ready=True,
                                         state="Running") for n in range(2)]
    return pool, models, instances


def place(pool, model, instance, **fields) -> ModelPlacement:
    return ModelPlacement.objects.create(pool=pool, instance=instance, version=model.versions.get(number=1),
                                         key=f"{model.name}-v1", **fields)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_viewer_sees_the_placement_follow_it_live_and_go_from_pool_to_model(browser_page):
    page = browser_page
    member("vera", "viewer")
    pool, (m1, m2), (first, second) = make_mesh(member("alice", "developer"))
    place(pool, m1, first, state="Loaded", memory_bytes=300 * 2**20, requests=12, reason="first request for m1-v1",
          loaded_at=timezone.now(), last_used_at=timezone.now() - timedelta(minutes=3))
    for service in (pool, m1):
        event_record(service=service, reason="LoadedModel", message="Loaded m1-v1 on pool1-0: first request")

    log_in(page, "vera", "a-long-test-password")
    page.goto("/services/local/pool1/")
    panel = page.get_by_role("region", name="Model mesh")
    row = panel.locator('#mesh-table tr[data-key="m1-v1"][data-instance="pool1-0"]')
    expect(row).to_contain_text("Loaded")
    expect(row).to_contain_text("300.0 MB")
    expect(row).to_contain_text("first request for m1-v1")
    expect(row).to_contain_text("3 minutes ago")
    expect(panel.locator('#mesh-instances tr[data-instance="pool1-0"]')).to_contain_text("m1-v1")
    expect(panel.locator('#mesh-instances tr[data-instance="pool1-1"]')).to_contain_text("0 bytes")
    expect(panel.locator('li[data-reason="LoadedModel"]')).to_contain_text("Loaded m1-v1 on pool1-0")

    # The placer loads a second model while the page is open: the panel shows it without a reload.
    place(pool, m2, second, state="Loading", memory_bytes=200 * 2**20, reason="first request for m2-v1")
    loading = panel.locator('#mesh-table tr[data-key="m2-v1"][data-instance="pool1-1"]')
    expect(loading).to_contain_text("Loading", timeout=POLLED)
    expect(panel.locator('#mesh-instances tr[data-instance="pool1-1"]')).to_contain_text("200.0 MB", timeout=POLLED)
    ModelPlacement.objects.filter(key="m2-v1").update(state="Loaded")
    expect(loading).to_contain_text("Loaded", timeout=POLLED)

    row.get_by_role("link", name="m1").click()
    page.wait_for_url("**/services/local/m1/")
    panel = page.get_by_role("region", name="Model mesh")
    expect(panel.locator("#mesh-pool")).to_contain_text("In pool pool1")
    expect(panel.locator('#mesh-table tr[data-key="m1-v1"]')).to_contain_text("pool1-0")
    expect(panel.locator("#mesh-table tbody tr")).to_have_count(1)  # m2's copy is not m1's
    expect(panel.locator('li[data-reason="LoadedModel"]')).to_have_count(1)
    panel.get_by_role("link", name="pool1").click()
    page.wait_for_url("**/services/local/pool1/")


@pytest.mark.django_db
def test_the_panel_is_only_on_mesh_services_and_answers_its_own_poll(alice, alice_client):
    project = Project.objects.get(name="team_a")
    service_create(actor=alice, project=project, document=dict(IDLE_FILE))
    service_create(actor=alice, project=project, document=dict(POOL))
    service_create(actor=alice, project=project, document={"name": "m1", "model_path": "/tmp/m1",
                                                           "metadata": {"pool": "pool1"}})

    assert "Model mesh" not in alice_client.get("/services/local/echo/").content.decode()
    assert "No model is loaded yet" in alice_client.get("/services/local/pool1/").content.decode()
    assert "Not loaded anywhere" in alice_client.get("/services/local/m1/").content.decode()
    polled = alice_client.get("/services/local/pool1/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="mesh-part")
    html = polled.content.decode()
    assert polled.status_code == 200 and html.lstrip().startswith('<div id="mesh-part"') and "<nav" not in html
    assert alice_client.get("/services/local/echo/", HTTP_HX_REQUEST="true",
                            HTTP_HX_TARGET="mesh-part").status_code == 404
    outsider = signed_in(get_user_model().objects.create_user("mallory"))
    assert outsider.get("/services/local/pool1/", HTTP_HX_REQUEST="true",
                        HTTP_HX_TARGET="mesh-part").status_code == 404
