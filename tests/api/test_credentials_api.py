"""The Ferry-extension credential endpoints: whoami, AccessKeys and API tokens."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from services.models import AccessKey, ApiToken, Project, ProjectMembership, ProjectRole
from services.writes.credentials import access_key_create, api_token_create

pytestmark = pytest.mark.django_db


def client_of(user) -> APIClient:
    """Authenticated the way API clients are: with a real bearer token."""
    _, plaintext = api_token_create(user=user, name="test client")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob")


def test_it_tells_who_is_calling_and_in_which_projects(alice):
    default = Project.objects.get_or_create(name=settings.FERRY_DEFAULT_PROJECT)[0]
    ProjectMembership.objects.create(project=default, user=alice, role=ProjectRole.VIEWER)
    ProjectMembership.objects.create(project=Project.objects.create(name="vision"), user=alice, role="owner")

    response = client_of(alice).get("/api/v2/ferry/whoami")

    assert response.status_code == 200
    body = response.json()
    assert body["UserName"] == "alice"
    assert {"Name": "vision", "Role": "owner"} in body["Projects"]
    assert {"Name": settings.FERRY_DEFAULT_PROJECT, "Role": "viewer"} in body["Projects"]
    assert body["RequestId"] == response["x-acs-request-id"]


def test_it_returns_a_new_access_key_secret_once_and_never_lists_it(alice):
    client = client_of(alice)

    created = client.post("/api/v2/ferry/accesskeys", {"Description": "laptop"}, format="json").json()
    listed = client.get("/api/v2/ferry/accesskeys")

    assert created["AccessKeyId"].startswith("FAK") and len(created["AccessKeyId"]) == 20
    assert created["AccessKeyId"][3:].isalnum() and created["AccessKeyId"].isupper()
    assert created["AccessKeySecret"] and created["RequestId"]
    assert created["AccessKeySecret"] not in AccessKey.objects.get().secret_encrypted
    assert created["AccessKeySecret"] not in listed.content.decode()
    assert listed.json()["AccessKeys"] == [
        {
            "AccessKeyId": created["AccessKeyId"],
            "Description": "laptop",
            "CreateTime": created["CreateTime"],
            "LastUsedTime": None,
            "ExpireTime": None,
            "Scope": "read-write",
            "Status": "Active",
        }
    ]
    assert listed.json()["RequestId"]


def test_it_creates_an_access_key_without_a_body(alice):
    response = client_of(alice).post("/api/v2/ferry/accesskeys")

    assert response.status_code == 200
    assert response.json()["Description"] == ""


def test_it_revokes_an_access_key_and_lists_it_after_the_active_ones(alice):
    client = client_of(alice)
    older, _ = access_key_create(user=alice)
    newer, _ = access_key_create(user=alice)

    response = client.delete(f"/api/v2/ferry/accesskeys/{newer.access_key_id}")
    listed = client.get("/api/v2/ferry/accesskeys").json()["AccessKeys"]

    assert response.status_code == 200
    assert newer.access_key_id in response.json()["Message"]
    assert [(key["AccessKeyId"], key["Status"]) for key in listed] == [
        (older.access_key_id, "Active"),
        (newer.access_key_id, "Revoked"),
    ]


def test_it_does_not_let_one_user_revoke_anothers_access_key(alice, bob):
    bobs_key, _ = access_key_create(user=bob)

    response = client_of(alice).delete(f"/api/v2/ferry/accesskeys/{bobs_key.access_key_id}")

    assert response.status_code == 404
    assert set(response.json()) >= {"Code", "Message", "RequestId"}
    bobs_key.refresh_from_db()
    assert bobs_key.revoked_at is None


def test_it_returns_a_new_token_once_and_lists_only_its_prefix(alice):
    client = client_of(alice)

    created = client.post("/api/v2/ferry/tokens", {"Name": "deploy"}, format="json").json()
    listed = client.get("/api/v2/ferry/tokens")

    assert created["Token"].startswith("ferry_")
    assert created["Prefix"] == created["Token"][:8]
    assert created["Token"] not in listed.content.decode()
    deploy = next(token for token in listed.json()["Tokens"] if token["Name"] == "deploy")
    assert deploy == {
        "Id": created["Id"],
        "Name": "deploy",
        "Prefix": created["Prefix"],
        "CreateTime": created["CreateTime"],
        "LastUsedTime": None,
        "ExpireTime": None,
        "Scope": "read-write",
        "Status": "Active",
    }
    assert "Token" not in deploy


def test_it_stores_only_a_digest_of_a_token(alice):
    created = client_of(alice).post("/api/v2/ferry/tokens", {"Name": "deploy"}, format="json").json()

    stored = ApiToken.objects.get(pk=created["Id"])
    assert created["Token"] not in (stored.digest, stored.prefix, stored.name)


def test_it_requires_a_name_for_a_token(alice):
    response = client_of(alice).post("/api/v2/ferry/tokens", {}, format="json")

    assert response.status_code == 400
    assert response.json()["Code"] == "InvalidParameter"
    assert "Name" in response.json()["Message"]


def test_it_revokes_a_token_so_it_no_longer_authenticates(alice):
    token, plaintext = api_token_create(user=alice, name="doomed")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert client_of(alice).delete(f"/api/v2/ferry/tokens/{token.pk}").status_code == 200

    assert client.get("/api/v2/ferry/whoami").status_code == 401


def test_it_does_not_let_one_user_revoke_anothers_token(alice, bob):
    bobs_token, _ = api_token_create(user=bob, name="bob's")

    response = client_of(alice).delete(f"/api/v2/ferry/tokens/{bobs_token.pk}")

    assert response.status_code == 404
    bobs_token.refresh_from_db()
    assert bobs_token.revoked_at is None


def test_it_requires_credentials_for_every_credential_endpoint():
    anonymous = APIClient()

    for path in ("/api/v2/ferry/whoami", "/api/v2/ferry/accesskeys", "/api/v2/ferry/tokens"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["Code"] == "Unauthorized"
