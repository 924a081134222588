"""People, projects and credentials for API tests, plus the official EAS SDK pointed at a live server."""

import json
from pathlib import Path

import pytest
from alibabacloud_eas20210701.client import Client as EasClient
from alibabacloud_tea_openapi import models as open_api_models
from darabonba.core import DaraCore
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from services.models import Cluster, ClusterGrant, Project, ProjectMembership
from services.writes import access_key_create, api_token_create

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def example_files() -> list[Path]:
    return sorted(EXAMPLES_DIR.glob("*.json"))


def example(name: str) -> dict:
    return json.loads((EXAMPLES_DIR / name).read_text())


def make_member(username: str, project_name: str, role: str = "developer"):
    user = get_user_model().objects.create_user(username, password="not-used-in-tests")
    project, _ = Project.objects.get_or_create(name=project_name)
    ProjectMembership.objects.create(user=user, project=project, role=role)
    # An administrator grants clusters to projects (docs/security.md); test projects get the local one.
    ClusterGrant.objects.get_or_create(project=project, cluster=Cluster.objects.get(name="local"))
    return user


def api_client_for(user) -> APIClient:
    _, token = api_token_create(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def alice(db):
    return make_member("alice", "team_a")


@pytest.fixture
def bob(db):
    return make_member("bob", "team_b")


@pytest.fixture
def alice_api(alice) -> APIClient:
    return api_client_for(alice)


@pytest.fixture
def bob_api(bob) -> APIClient:
    return api_client_for(bob)


def sdk_with_token(live_server_url: str, token: str) -> EasClient:
    endpoint = live_server_url.removeprefix("http://")
    return EasClient(open_api_models.Config(bearer_token=token, endpoint=endpoint, protocol="http"))


def sdk_with_access_key(live_server_url: str, key_id: str, secret: str) -> EasClient:
    endpoint = live_server_url.removeprefix("http://")
    return EasClient(open_api_models.Config(access_key_id=key_id, access_key_secret=secret,
                                            endpoint=endpoint, protocol="http"))


def close_sdk_connections() -> None:
    """The SDK pools HTTP connections across clients; an open one keeps a live-server thread (and its
    database connection) alive past the test, which blocks dropping the test database."""
    for session in DaraCore._sessions.values():
        session.close()
    DaraCore._sessions.clear()


@pytest.fixture(params=["bearer", "access_key"])
def alice_sdk(request, live_server, alice) -> EasClient:
    """The official SDK as alice, once with bearer credentials and once with an AccessKey pair."""
    if request.param == "bearer":
        _, token = api_token_create(user=alice, name="sdk")
        yield sdk_with_token(live_server.url, token)
    else:
        key, secret = access_key_create(user=alice, description="sdk")
        yield sdk_with_access_key(live_server.url, key.access_key_id, secret)
    close_sdk_connections()
