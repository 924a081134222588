"""API credentials through the real API: scopes (read-only may only read), expiry, no credential creating a more
powerful one, and revocation cascading to every credential made with the revoked one. Each refused attempt
asserts its status and that no credential or service was created or changed."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from services.models import AccessKey, ApiToken, Cluster, ClusterGrant, Project, ProjectMembership, Service
from services.writes import api_token_create

pytestmark = pytest.mark.django_db
SERVICE = {"name": "creds_probe", "processor": "custom", "metadata": {"instance": 0},
           "containers": [{"image": "none", "script": "sleep 600", "port": 8000}]}


@pytest.fixture
def user():
    user = get_user_model().objects.create_user("cred_dev", password="unused")
    project = Project.objects.create(name="cred_team")
    ProjectMembership.objects.create(user=user, project=project, role="developer")
    ClusterGrant.objects.create(project=project, cluster=Cluster.objects.get(name="local"))
    return user


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def mint(client: APIClient, **body) -> tuple[int, dict]:
    response = client.post("/api/v2/ferry/tokens", {"Name": "child", **body}, format="json")
    return response.status_code, response.json()


def counts() -> tuple:
    return ApiToken.objects.count(), AccessKey.objects.count(), Service.objects.count()


def test_a_read_only_token_reads_and_cannot_write(user):
    _, plaintext = api_token_create(user=user, name="ro", scope="read-only")
    client = client_with(plaintext)
    assert client.get("/api/v2/services").status_code == 200
    before = counts()
    response = client.post("/api/v2/services", SERVICE, format="json")
    assert response.status_code == 403 and "read-only" in response.json()["Message"]
    assert counts() == before


# (name, the parent's scope and expiry in seconds (None: none), what the child asks, the status expected)
MINT_ATTEMPTS = [
    ("read_only_mints_read_write", "read-only", None, {"Scope": "read-write"}, 403),
    ("read_only_mints_read_only", "read-only", None, {"Scope": "read-only"}, 403),  # a POST: read-only cannot
    ("expiring_mints_longer_lived", "read-write", 3600, {"ExpiresInSeconds": 7200}, 403),
    ("read_only_mints_access_key", "read-only", None, {"Scope": "read-write", "_access_key": True}, 403),
    ("expiring_mints_access_key_longer_lived", "read-write", 3600, {"ExpiresInSeconds": 7200, "_access_key": True},
     403),
]


@pytest.mark.parametrize(("name", "scope", "lifetime", "asked", "status"), MINT_ATTEMPTS,
                         ids=[a[0] for a in MINT_ATTEMPTS])
def test_a_credential_cannot_mint_a_more_powerful_one(name, scope, lifetime, asked, status, user):
    expires_at = timezone.now() + timedelta(seconds=lifetime) if lifetime else None
    _, plaintext = api_token_create(user=user, name="parent", scope=scope, expires_at=expires_at)
    client = client_with(plaintext)
    before = counts()
    body = {key: value for key, value in asked.items() if not key.startswith("_")}
    path = "/api/v2/ferry/accesskeys" if asked.get("_access_key") else "/api/v2/ferry/tokens"
    response = client.post(path, {"Name": "child", **body}, format="json")
    assert response.status_code == status, response.content
    assert counts() == before


def test_a_minted_credential_inherits_its_parents_expiry_and_scope(user):
    expires_at = timezone.now() + timedelta(hours=1)
    _, plaintext = api_token_create(user=user, name="parent", expires_at=expires_at)
    status, body = mint(client_with(plaintext))
    assert status == 200, body
    child = ApiToken.objects.get(pk=body["Id"])
    assert child.expires_at == expires_at and child.scope == "read-write" and body["ExpireTime"]


def test_an_expired_token_is_refused(user):
    token, plaintext = api_token_create(user=user, name="old", expires_at=timezone.now() + timedelta(seconds=60))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    client = client_with(plaintext)
    before = counts()
    assert client.get("/api/v2/services").status_code == 401
    assert client.post("/api/v2/services", SERVICE, format="json").status_code == 401
    status, _ = mint(client)
    assert status == 401
    assert counts() == before


def test_revoking_a_credential_revokes_what_was_minted_from_it(user):
    _, root_plaintext = api_token_create(user=user, name="root")
    root_client = client_with(root_plaintext)
    status, child = mint(root_client)
    assert status == 200
    child_client = client_with(child["Token"])
    status, grandchild = mint(child_client)
    assert status == 200
    key = child_client.post("/api/v2/ferry/accesskeys", {"Description": "minted"}, format="json").json()
    grandchild_client = client_with(grandchild["Token"])
    assert grandchild_client.get("/api/v2/services").status_code == 200

    root_id = ApiToken.objects.get(name="root").pk
    assert root_client.delete(f"/api/v2/ferry/tokens/{root_id}").status_code == 200

    before = counts()
    for client in (child_client, grandchild_client):
        assert client.get("/api/v2/services").status_code == 401
        assert client.post("/api/v2/services", SERVICE, format="json").status_code == 401
    assert AccessKey.objects.get(access_key_id=key["AccessKeyId"]).revoked_at is not None
    assert counts() == before


def test_a_signed_in_users_own_credential_is_not_revoked_with_an_unrelated_one(user):
    _, first = api_token_create(user=user, name="first")
    _, second = api_token_create(user=user, name="second")
    first_client = client_with(first)
    first_client.delete(f"/api/v2/ferry/tokens/{ApiToken.objects.get(name='first').pk}")
    assert client_with(second).get("/api/v2/services").status_code == 200


ATTEMPTS = (["read_only_writes_a_service"] + [f"mint:{a[0]}" for a in MINT_ATTEMPTS]
            + ["expired:read", "expired:write", "expired:mint"]
            + ["revoked_child:read", "revoked_child:write", "revoked_grandchild:read", "revoked_grandchild:write"])


# The rules live in the write (services/writes/credentials.py), which the API and the console both call: checked
# on the write itself, with the request's credential passed as `minted_by`.

def test_a_minted_credential_takes_its_parents_scope_unless_given_one(user):
    from services.writes import access_key_create

    parent, _ = api_token_create(user=user, name="parent", scope="read-only")
    child, _ = api_token_create(user=user, name="child", minted_by=parent)
    key, _ = access_key_create(user=user, minted_by=parent)
    assert (child.scope, child.minted_by_token, key.scope, key.minted_by_token) == ("read-only", parent,
                                                                                    "read-only", parent)
    assert api_token_create(user=user, name="from a session")[0].scope == "read-write"


def test_the_write_refuses_a_read_write_child_of_a_read_only_parent(user):
    from services.errors import Forbidden
    from services.writes import access_key_create

    parent, _ = api_token_create(user=user, name="parent", scope="read-only")
    before = counts()
    with pytest.raises(Forbidden) as refused:
        access_key_create(user=user, scope="read-write", minted_by=parent)
    assert refused.value.code == "CredentialTooPowerful" and refused.value.message.startswith("Scope:")
    assert counts() == before


def test_only_a_credential_can_mint_one(user):
    before = counts()
    with pytest.raises(TypeError, match="minted_by"):
        api_token_create(user=user, name="child", minted_by=user)
    assert counts() == before


def test_the_revoke_lookup_finds_only_the_users_own_credentials(user):
    from services.errors import NotFound
    from services.selectors import access_key_of, api_token_of
    from services.writes import access_key_create, api_token_revoke

    other = get_user_model().objects.create_user("cred_other", password="unused")
    token, _ = api_token_create(user=user, name="mine")
    key, _ = access_key_create(user=user)
    api_token_revoke(token=token)
    assert api_token_of(user, token.pk) == token  # revoked, still found: revoking again is a no-op
    assert access_key_of(user, key.access_key_id) == key
    with pytest.raises(NotFound) as missing_token:
        api_token_of(other, token.pk)
    with pytest.raises(NotFound) as missing_key:
        access_key_of(other, key.access_key_id)
    assert (missing_token.value.code, missing_key.value.code) == ("TokenNotFound", "AccessKeyNotFound")
    assert key.access_key_id in missing_key.value.message
