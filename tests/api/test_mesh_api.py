"""DescribeServicePlacements (GET .../placements, Ferry's own): where the model mesh has loaded each model, seen
from a pool and from a model in it; the placer's rows are made here directly (the placer has tests of its own)."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from services.models import Instance, ModelPlacement, Project
from services.selectors.mesh import placements_of
from services.writes import service_create

from .conftest import api_client_for, make_member

pytestmark = pytest.mark.django_db

POOL = {"name": "pool1", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 2}}
LOADED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
USED_AT = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)


def placements_path(name: str) -> str:
    return f"/api/v2/services/local/{name}/placements"


@pytest.fixture
def mesh(alice):
    project = Project.objects.get(name="team_a")
    pool = service_create(actor=alice, project=project, document=dict(POOL))
    models = [service_create(actor=alice, project=project, document={"name": name, "model_path": f"/tmp/{name}",
                                                                     "metadata": {"pool": "pool1"}})
              for name in ("m1", "m2")]
    version = pool.versions.get(number=1)
    instances = [Instance.objects.create(service=pool, version=version, name=f"pool1-{n}", ready=n == 0,
                                         state="Running" if n == 0 else "Pending") for n in range(2)]
    return pool, models, instances


def place(pool, model, instance, state="Loaded", memory=0, **fields) -> ModelPlacement:
    version = model.versions.get(number=1)
    return ModelPlacement.objects.create(pool=pool, instance=instance, version=version,
                                         key=f"{model.name}-v{version.number}", state=state, memory_bytes=memory,
                                         **fields)


def test_a_pool_shows_every_copy_and_what_its_instances_hold(alice_api, mesh):
    pool, (m1, m2), (first, second) = mesh
    place(pool, m1, first, memory=300, requests=12, reason="first request for m1-v1", loaded_at=LOADED_AT,
          last_used_at=USED_AT)
    place(pool, m1, second, state="Loading", memory=300, reason="m1-v1 is busy: a second copy")
    place(pool, m2, first, memory=200, requests=3, reason="first request for m2-v1", loaded_at=LOADED_AT)
    place(pool, m2, second, state="Failed", memory=0, reason="load failed: out of memory")

    response = alice_api.get(placements_path("pool1"))

    assert response.status_code == 200
    body = response.json()
    assert body["Pool"] == "pool1" and body["RequestId"]
    assert body["Placements"][0] == {
        "Model": "m1", "Version": 1, "Key": "m1-v1", "Instance": "pool1-0", "State": "Loaded", "MemoryBytes": 300,
        "Requests": 12, "Reason": "first request for m1-v1", "LoadedAt": "2026-12-01T09:30:00Z",
        "LastUsedAt": "2026-12-01T10:00:05Z"}
    assert [(p["Key"], p["Instance"], p["State"]) for p in body["Placements"]] == [
        ("m1-v1", "pool1-0", "Loaded"), ("m1-v1", "pool1-1", "Loading"),
        ("m2-v1", "pool1-0", "Loaded"), ("m2-v1", "pool1-1", "Failed")]
    assert body["Placements"][1]["LoadedAt"] == "" and body["Placements"][3]["Reason"] == "load failed: out of memory"
    # A failed copy holds nothing: the second instance counts only the copy still loading.
    assert body["Instances"] == [
        {"Name": "pool1-0", "Ready": True, "ModelMemoryBytes": 500, "Models": ["m1-v1", "m2-v1"]},
        {"Name": "pool1-1", "Ready": False, "ModelMemoryBytes": 300, "Models": ["m1-v1"]}]


def test_a_model_in_a_pool_shows_its_own_copies_and_its_pool(alice_api, mesh):
    pool, (m1, m2), (first, second) = mesh
    place(pool, m1, second, memory=300, reason="first request for m1-v1")
    place(pool, m2, first, memory=200)

    body = alice_api.get(placements_path("m1")).json()

    assert body["Pool"] == "pool1" and body["Instances"] == []
    assert [(p["Model"], p["Key"], p["Instance"], p["MemoryBytes"]) for p in body["Placements"]] == [
        ("m1", "m1-v1", "pool1-1", 300)]
    assert alice_api.get(placements_path("m2")).json()["Placements"][0]["Instance"] == "pool1-0"


def test_a_pool_with_nothing_loaded_lists_its_instances_empty(alice_api, mesh):
    body = alice_api.get(placements_path("pool1")).json()
    assert body["Placements"] == []
    assert [(i["Name"], i["ModelMemoryBytes"], i["Models"]) for i in body["Instances"]] == [
        ("pool1-0", 0, []), ("pool1-1", 0, [])]


def test_describe_service_names_the_pool_of_a_model_in_one(alice_api, mesh):
    assert alice_api.get("/api/v2/services/local/m1").json()["Pool"] == "pool1"
    assert "Pool" not in alice_api.get("/api/v2/services/local/pool1").json()


def test_a_service_outside_the_mesh_is_refused_by_name(alice_api, alice):
    service_create(actor=alice, project=Project.objects.get(name="team_a"),
                   document={"name": "plain", "processor": "sklearn", "model_path": "/tmp/plain"})

    response = alice_api.get(placements_path("plain"))

    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "NotInModelMesh" and "plain" in body["Message"] and body["RequestId"]


def test_another_projects_user_gets_not_found_and_a_viewer_reads(bob_api, mesh):
    pool, (m1, _), (first, _) = mesh
    place(pool, m1, first, memory=300)

    refused = bob_api.get(placements_path("pool1"))
    assert refused.status_code == 404 and refused.json()["Code"] == "ServiceNotFound"
    assert bob_api.get(placements_path("m1")).status_code == 404

    viewer = api_client_for(make_member("vera", "team_a", role="viewer"))
    response = viewer.get(placements_path("pool1"))
    assert response.status_code == 200 and response.json()["Placements"][0]["Key"] == "m1-v1"


def test_the_reads_do_not_grow_with_the_copies(mesh):
    pool, (m1, m2), (first, second) = mesh
    place(pool, m1, first)

    def queries(service) -> int:
        with CaptureQueriesContext(connection) as captured:
            placements_of(service)
        return len(captured)

    few_pool, few_model = queries(pool), queries(m1)
    place(pool, m1, second)
    place(pool, m2, first)
    place(pool, m2, second)
    assert (queries(pool), queries(m1)) == (few_pool, few_model)


def test_the_openapi_schema_documents_it(alice_api):
    schema = alice_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v2/services/{cluster_id}/{service_name}/placements"]["get"]
    assert operation["operationId"] == "DescribeServicePlacements" and "NotInModelMesh" in operation["description"]
