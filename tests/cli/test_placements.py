"""`ferry placements`: the model mesh's placement of a pool and of a model in it, from the live API
(GET .../placements). The placer's rows are made here directly, after the services exist."""

from datetime import UTC, datetime

import pytest

from cli.commands.mesh import size_text
from services.models import Instance, ModelPlacement, Project
from services.writes import service_create

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

POOL = {"name": "pool1", "processor": "sklearn", "metadata": {"type": "ModelPool", "instance": 2}}


@pytest.fixture
def mesh(alice):
    project = Project.objects.get(name="team_a")
    pool = service_create(actor=alice, project=project, document=dict(POOL))
    m1, m2 = (service_create(actor=alice, project=project, document={"name": name, "model_path": f"/tmp/{name}",
                                                                     "metadata": {"pool": "pool1"}})
              for name in ("m1", "m2"))
    # The instances are the test's own: the slots the create's reconcile mirrored (never started) go.
    Instance.objects.filter(service=pool).delete()
    version = pool.versions.get(number=1)
    first, second = (Instance.objects.create(service=pool, version=version, name=f"pool1-{n}", ready=True,
                                             state="Running") for n in range(2))
    used = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
    for model, instance, state, memory in ((m1, first, "Loaded", 300 * 2**20), (m2, first, "Loaded", 200 * 2**20),
                                           (m1, second, "Failed", 0)):
        ModelPlacement.objects.create(pool=pool, instance=instance, version=model.versions.get(number=1),
                                      key=f"{model.name}-v1", state=state, memory_bytes=memory, requests=7,
                                      reason=f"placed {model.name}", last_used_at=used if state == "Loaded" else None)
    return pool


def rows(text: str) -> list[list[str]]:
    """A table's lines split on its column gaps (three spaces or more), header first."""
    return [[cell for cell in line.split("   ") if cell.strip()] for line in text.splitlines() if line.strip()]


def test_a_pool_prints_its_copies_and_its_instances_memory(ferry, mesh):
    text = ferry.ok("placements", "pool1").stdout
    copies, instances = text.split("\n\n")

    table = [[cell.strip() for cell in row] for row in rows(copies)]
    assert table[0] == ["MODEL", "VERSION", "INSTANCE", "STATE", "MEMORY", "REQUESTS", "LAST USED", "WHY"]
    assert table[1] == ["m1", "v1", "pool1-0", "Loaded", "300 MiB", "7", "2026-12-01T10:00:05Z", "placed m1"]
    assert table[2] == ["m1", "v1", "pool1-1", "Failed", "0", "7", "-", "placed m1"]
    assert table[3][:4] == ["m2", "v1", "pool1-0", "Loaded"]
    assert [[cell.strip() for cell in row] for row in rows(instances)] == [
        ["INSTANCE", "READY", "MODEL MEMORY", "MODELS"], ["pool1-0", "yes", "500 MiB", "m1-v1, m2-v1"],
        ["pool1-1", "yes", "0", "-"]]
    wide = rows(ferry.ok("placements", "pool1", "-o", "wide").stdout.split("\n\n")[0])
    assert "KEY" in [c.strip() for c in wide[0]] and "LOADED" in [c.strip() for c in wide[0]]

    body = ferry.json("placements", "pool1")
    assert body["Pool"] == "pool1" and len(body["Placements"]) == 3 and "RequestId" not in body


def test_a_model_prints_its_pool_and_its_copies(ferry, mesh):
    result = ferry.ok("placements", "m1")
    lines = result.stdout.splitlines()
    assert lines[0] == "m1 is in pool pool1."
    table = [[cell.strip() for cell in row] for row in rows("\n".join(lines[1:]))]
    assert table[0] == ["VERSION", "INSTANCE", "STATE", "MEMORY", "REQUESTS", "LAST USED", "WHY"]
    assert [row[:3] for row in table[1:]] == [["v1", "pool1-0", "Loaded"], ["v1", "pool1-1", "Failed"]]
    assert ferry.json("placements", "local/m2")["Instances"] == []


def test_a_service_outside_the_mesh_is_an_error_naming_it(ferry, alice, iris_file):
    ferry.ok("create", ferry.file("iris.json", iris_file), "--no-wait")
    result = ferry("placements", "demo_iris")
    assert result.returncode == 1
    assert "NotInModelMesh" in result.stderr and "demo_iris" in result.stderr and result.stdout == ""
    missing = ferry("placements", "nothing_here")
    assert missing.returncode == 1 and "nothing_here" in missing.stderr


def test_sizes_read_as_a_person_reads_them():
    assert [size_text(n) for n in (None, 0, 512, 1536, 300 * 2**20, 12 * 2**30)] == [
        "0", "0", "512 B", "1.5 KiB", "300 MiB", "12 GiB"]
