"""Creating and editing from the form and from a pasted or uploaded service file: the API's validation, errors
shown where they belong, and nothing written when anything is wrong."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from services.models import Service

from .conftest import IDLE_FILE

pytestmark = pytest.mark.django_db


def form_data(**overrides) -> dict:
    data = {"mode": "form", "project": "team_a", "name": "echo_form", "cluster": "", "processor": "custom",
            "instances": "1", "cpu": "1", "memory": "256", "image": "none", "script": "sleep 600", "port": "8000"}
    return {**data, **overrides}


def test_it_creates_a_service_from_the_form(alice_client):
    response = alice_client.post("/services/new/", form_data())
    assert response.status_code == 302 and response["Location"] == "/services/local/echo_form/"
    service = Service.objects.get(name="echo_form")
    assert service.project.name == "team_a" and service.spec["containers"][0]["script"] == "sleep 600"
    assert {k: service.spec["metadata"][k] for k in ("instance", "cpu", "memory")} == {"instance": 1, "cpu": 1, "memory": 256}


def test_form_errors_sit_beside_their_fields_and_nothing_is_created(alice_client):
    response = alice_client.post("/services/new/", form_data(name="Bad-Name", instances="-2"))
    html = response.content.decode()
    assert response.status_code == 422 and not Service.objects.exists()
    name_field = html[html.index('data-field="name"'):html.index('data-field="cluster"')]
    assert "lowercase letters, digits and underscores" in name_field and 'aria-invalid="true"' in name_field
    instances_field = html[html.index('data-field="instances"'):html.index('data-field="cpu"')]
    assert "must be an integer &gt;= 0" in instances_field


def test_it_creates_a_service_from_a_pasted_file(alice_client):
    text = json.dumps({**IDLE_FILE, "name": "pasted"})
    response = alice_client.post("/services/new/", {"mode": "file", "project": "team_a", "text": text})
    assert response.status_code == 302 and Service.objects.filter(name="pasted").exists()


def test_it_creates_a_service_from_an_uploaded_file(alice_client):
    upload = SimpleUploadedFile("svc.json", json.dumps({**IDLE_FILE, "name": "uploaded"}).encode(), "application/json")
    response = alice_client.post("/services/new/", {"mode": "file", "project": "team_a", "text": "", "upload": upload})
    assert response.status_code == 302 and Service.objects.filter(name="uploaded").exists()


def test_file_errors_are_listed_by_json_path_beside_their_lines(alice_client):
    bad = {"name": "pasted", "processor": "custom", "containers": [{"image": "none", "port": 70000}],
           "metadata": {"instance": -1, "colour": "blue"}}
    response = alice_client.post("/services/new/", {"mode": "file", "project": "team_a", "text": json.dumps(bad)})
    html = response.content.decode()
    assert response.status_code == 422 and not Service.objects.exists()
    for path in ("containers[0].port", "metadata.instance", "metadata"):
        assert f'<code class="path">{path}</code>' in html
    bad_lines = [line for line in html.split("<li") if 'class="bad"' in line]
    assert any("&quot;instance&quot;: -1" in line and "metadata.instance: must be an integer" in line for line in bad_lines)
    assert json.dumps(bad) in html or "&quot;colour&quot;" in html  # the pasted text is kept to fix it


def test_invalid_json_says_where(alice_client):
    response = alice_client.post("/services/new/", {"mode": "file", "project": "team_a", "text": '{"name": "x",}'})
    assert response.status_code == 422 and "not valid JSON" in response.content.decode() and "line 1" in response.content.decode()
    assert not Service.objects.exists()


def test_a_duplicate_name_is_refused_in_place(alice_client, echo):
    response = alice_client.post("/services/new/", form_data(name="echo"))
    assert response.status_code == 422 and "already exists" in response.content.decode()
    assert Service.objects.count() == 1


def test_editing_the_file_makes_a_new_version_and_bad_edits_change_nothing(alice_client, echo):
    url = "/services/local/echo/edit/?mode=file"
    assert "sleep 600" in alice_client.get(url).content.decode()
    changed = {**IDLE_FILE, "containers": [{"image": "none", "script": "sleep 601", "port": 8000}]}
    assert alice_client.post(url, {"mode": "file", "text": json.dumps(changed)}).status_code == 302
    assert echo.versions.count() == 2

    broken = {**changed, "metadata": {"instance": "two"}}
    response = alice_client.post(url, {"mode": "file", "text": json.dumps(broken)})
    assert response.status_code == 422 and "metadata.instance" in response.content.decode()
    echo.refresh_from_db()
    assert echo.versions.count() == 2 and echo.instance_count == 1


def test_editing_common_fields_merges_them(alice_client, echo):
    response = alice_client.post("/services/local/echo/edit/", {
        "mode": "form", "processor": "custom", "instances": "3", "cpu": "1", "memory": "512", "image": "none",
        "script": "sleep 600", "port": "8000"})
    assert response.status_code == 302
    echo.refresh_from_db()
    assert echo.instance_count == 3 and echo.spec["metadata"]["memory"] == 512 and echo.versions.count() == 2
