"""A real node agent (`manage.py runagent` in a subprocess) against the harness's PostgreSQL and Redis.

Tests are transactional so the agent's own database connection sees the rows they write. Every test gets
its own var dir; at the end every agent is stopped and every process carrying that var dir's mark is
killed, and the test errors if any such process was still there after the agents stopped.
"""

import pytest

from deployer.models import LocalInstance
from services.models import Project
from services.writes import service_create
from tests.agent.kit import LocalCluster


@pytest.fixture
def cluster(tmp_path):
    service = service_create(actor=None, project=Project.objects.get(name="default"), document={
        "name": "svc", "processor": "custom",
        "containers": [{"image": "x", "script": "python3 -m http.server {port}", "port": 8000}],
    })
    # The local driver has written rows of its own for this service: the tests write theirs by hand.
    LocalInstance.objects.filter(service=service).delete()
    cluster = LocalCluster(tmp_path, service)
    yield cluster
    leftovers = cluster.clean_up()
    assert not leftovers, f"instance processes outlived their agents: {leftovers}"
