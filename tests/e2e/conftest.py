"""A local cluster for end-to-end tests: a real node agent subprocess, real model servers, and the reconciler
driven as the beat sweep drives it (each `converge` call is one sweep pass)."""

import time

import pytest
from django.test import override_settings

from deployer.reconcile import reconcile
from processors.demo import train_demo_models
from services.models import Service
from tests.agent.kit import LocalCluster


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory):
    return train_demo_models(tmp_path_factory.mktemp("demo-models"))


@pytest.fixture
def local_cluster(tmp_path):
    cluster = LocalCluster(tmp_path, service=None)
    # The reconciler (in this process) and the agent must agree on where instances log and models are cached.
    with override_settings(VAR_DIR=cluster.var_dir):
        agent = cluster.start_agent()
        yield cluster
        for running in cluster.agents:
            if running.running():
                running.send(15)
                running.wait(60)
    leftovers = cluster.clean_up()
    assert not leftovers, f"instance processes outlived the agent: {leftovers}"
    assert agent.popen.returncode is not None


def converge(service: Service, until, timeout: float = 60.0, what: str = "the service to converge") -> Service:
    """Reconciles the way the sweep does until `until(service)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        reconcile(service.pk)
        service = Service.objects.filter(pk=service.pk).first()
        if until(service):
            return service
        if time.monotonic() > deadline:
            state = None if service is None else (service.phase, service.status_message,
                                                  list(service.instances.values_list("name", "state")))
            raise AssertionError(f"waited {timeout:g} s for {what}; last state: {state}")
        time.sleep(0.25)


@pytest.fixture
def alice_api(db):
    from tests.api.conftest import api_client_for, make_member

    return api_client_for(make_member("alice", "team_a"))
