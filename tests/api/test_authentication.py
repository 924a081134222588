"""API authentication, exercised the way clients really call: the official EAS SDK over HTTP to a live server.

Negative cases sign with the SDK's own signer (`Utils.get_authorization`), then break one thing.
"""

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
from alibabacloud_eas20210701.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils
from darabonba.runtime import RuntimeOptions
from django.utils import timezone

from services.api.authentication import AccessKeySignatureAuthentication
from services.models import AccessKey, ApiToken
from services.writes.credentials import access_key_create, access_key_revoke, api_token_create, api_token_revoke

from .conftest import close_sdk_connections

WHOAMI = "/api/v2/ferry/whoami"
TOKENS = "/api/v2/ferry/tokens"
ALGORITHM = "ACS3-HMAC-SHA256"

# Live-server tests need real commits. serialized_rollback restores what migrations created (the default project,
# the local cluster) and keeps flushes from re-creating content types that other such tests then restore.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="unused-password")


@pytest.fixture
def alice_key(alice) -> tuple[AccessKey, str]:
    return access_key_create(user=alice, description="laptop")


@pytest.fixture
def alice_token(alice) -> tuple[ApiToken, str]:
    return api_token_create(user=alice, name="ci")


@pytest.fixture
def sdk_client(live_server):
    """The official client against the live server.

    The SDK keeps HTTP connections alive in a process-wide pool; a kept-alive connection pins a live-server
    thread and its database connection past the test, so the pool is closed afterwards.
    """
    yield lambda **credentials: _sdk_client(live_server, **credentials)
    close_sdk_connections()


def _sdk_client(live_server, **credentials) -> Client:
    endpoint = urlsplit(live_server.url).netloc
    return Client(open_api_models.Config(endpoint=endpoint, protocol="http", **credentials))


def sdk_call(client: Client, method: str, pathname: str, *, query: dict | None = None, body=None) -> dict:
    """Any ROA operation through the SDK's real request pipeline (signing, encoding, error mapping)."""
    params = open_api_models.Params(
        action="FerryTest", version="2021-07-01", protocol="HTTP", pathname=pathname, method=method,
        auth_type="AK", style="ROA", req_body_type="json", body_type="json",
    )
    request = open_api_models.OpenApiRequest(query=query, body=body)
    return client.call_api(params, request, RuntimeOptions())


def signed_request(live_server, method: str, path: str, *, key_id: str, secret: str, query: dict | None = None,
                   body: bytes = b"", sent_body: bytes | None = None, sent_query: dict | None = None,
                   date: str | None = None, nonce: str | None = None,
                   unsigned: tuple[str, ...] = ()) -> requests.Response:
    """Signs like the SDK (same signer function), then sends with `requests`.

    `sent_body` and `sent_query` tamper with the request after signing; `unsigned` leaves headers out of it.
    """
    headers = {
        "host": urlsplit(live_server.url).netloc,
        "x-acs-version": "2021-07-01",
        "x-acs-action": "FerryTest",
        "x-acs-date": date or Utils.get_timestamp(),
        "x-acs-signature-nonce": nonce or Utils.get_nonce(),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "accept": "application/json",
    }
    if body:
        headers["content-type"] = "application/json; charset=utf-8"
    signed = {name: value for name, value in headers.items() if name not in unsigned}
    dara_request = SimpleNamespace(pathname=path, method=method, query=query or {}, headers=signed)
    authorization = Utils.get_authorization(dara_request, ALGORITHM, headers["x-acs-content-sha256"], key_id, secret)
    return requests.request(
        method,
        live_server.url + path,
        params=query if sent_query is None else sent_query,
        headers={**headers, "Authorization": authorization},
        data=body if sent_body is None else sent_body,
        timeout=10,
    )


def sign_whoami(live_server, key: tuple[AccessKey, str], **kwargs) -> requests.Response:
    access_key, secret = key
    return signed_request(live_server, "GET", WHOAMI, key_id=access_key.access_key_id, secret=secret, **kwargs)


def assert_unauthorized(response: requests.Response, *words: str) -> dict:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["Code"] == "Unauthorized"
    for word in words:
        assert word in body["Message"]
    return body


# --- AccessKey signatures through the official SDK ---------------------------------------------------------


def test_it_accepts_the_official_sdk_signing_a_get_with_awkward_query_params(sdk_client, alice_key):
    access_key, secret = alice_key
    client = sdk_client(access_key_id=access_key.access_key_id, access_key_secret=secret)

    query = {"Filter": "a b+c/d?&=ü 模型", "PageSize": "10", "Empty": "", "Tilde~": "~*'()"}
    answer = sdk_call(client, "GET", WHOAMI, query=query)

    assert answer["statusCode"] == 200
    assert answer["body"]["UserName"] == "alice"
    assert answer["body"]["RequestId"]


def test_it_accepts_the_official_sdk_signing_a_post_with_a_json_body(sdk_client, alice, alice_key):
    access_key, secret = alice_key
    client = sdk_client(access_key_id=access_key.access_key_id, access_key_secret=secret)

    answer = sdk_call(client, "POST", TOKENS, body={"Name": "deploy bot ü"})

    assert answer["body"]["Name"] == "deploy bot ü"
    assert answer["body"]["Token"].startswith("ferry_")
    assert ApiToken.objects.get(user=alice, name="deploy bot ü")


def test_it_records_when_an_access_key_was_last_used(live_server, alice_key):
    assert sign_whoami(live_server, alice_key).status_code == 200

    alice_key[0].refresh_from_db()
    assert alice_key[0].last_used_at is not None


def test_it_reports_a_wrong_secret_to_the_sdk_as_an_eas_error(sdk_client, alice_key):
    access_key, _ = alice_key
    client = sdk_client(access_key_id=access_key.access_key_id, access_key_secret="not-the-secret")

    with pytest.raises(ClientException) as raised:
        sdk_call(client, "GET", WHOAMI)

    assert raised.value.status_code == 401
    assert raised.value.code == "Unauthorized"
    assert raised.value.request_id


# --- AccessKey signatures: each thing that must fail ---------------------------------------------------------


def test_it_rejects_a_signature_made_with_the_wrong_secret(live_server, alice_key):
    wrong_secret = "x" * 40

    body = assert_unauthorized(sign_whoami(live_server, (alice_key[0], wrong_secret)), "signature does not match")

    assert wrong_secret not in json.dumps(body)
    assert alice_key[1] not in json.dumps(body)


def test_it_rejects_a_body_changed_after_signing(live_server, alice_key):
    access_key, secret = alice_key
    response = signed_request(
        live_server, "POST", TOKENS, key_id=access_key.access_key_id, secret=secret,
        body=b'{"Name": "harmless"}', sent_body=b'{"Name": "evil"}',
    )

    assert_unauthorized(response, "x-acs-content-sha256")
    assert not ApiToken.objects.exists()


def test_it_rejects_a_changed_query_param(live_server, alice_key):
    response = sign_whoami(live_server, alice_key, query={"PageSize": "10"}, sent_query={"PageSize": "1000"})

    assert_unauthorized(response, "signature does not match")


def test_it_rejects_a_request_signed_twenty_minutes_ago(live_server, alice_key):
    stale = (datetime.now(UTC) - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert_unauthorized(sign_whoami(live_server, alice_key, date=stale), "x-acs-date", "stale")


def test_it_rejects_a_date_that_is_not_utc_iso_8601(live_server, alice_key):
    assert_unauthorized(sign_whoami(live_server, alice_key, date="Sat, 21 Nov 2026 20:55:47 GMT"), "ISO 8601")


def test_it_rejects_a_replayed_nonce(live_server, alice_key):
    nonce = uuid.uuid4().hex
    assert sign_whoami(live_server, alice_key, nonce=nonce).status_code == 200

    assert_unauthorized(sign_whoami(live_server, alice_key, nonce=nonce), "replay")


def test_it_does_not_spend_a_nonce_on_a_request_that_failed_verification(live_server, alice_key):
    nonce = uuid.uuid4().hex
    assert_unauthorized(sign_whoami(live_server, (alice_key[0], "forged-secret"), nonce=nonce))

    assert sign_whoami(live_server, alice_key, nonce=nonce).status_code == 200


def test_it_requires_the_nonce_to_be_signed(live_server, alice_key):
    response = sign_whoami(live_server, alice_key, unsigned=("x-acs-signature-nonce",))

    assert_unauthorized(response, "must be signed", "x-acs-signature-nonce")


def test_it_rejects_a_revoked_access_key(live_server, alice_key):
    access_key_revoke(access_key=alice_key[0])

    assert_unauthorized(sign_whoami(live_server, alice_key), "revoked")


def test_it_rejects_an_unknown_access_key(live_server, alice_key):
    response = sign_whoami(live_server, (SimpleNamespace(access_key_id="FAKNOSUCHKEY00000000"), "whatever"))

    assert_unauthorized(response, "FAKNOSUCHKEY00000000", "does not exist")


def test_it_rejects_the_access_key_of_an_inactive_user(live_server, alice, alice_key):
    alice.is_active = False
    alice.save()

    assert_unauthorized(sign_whoami(live_server, alice_key), "inactive")


# --- Bearer tokens -------------------------------------------------------------------------------------------


def test_it_accepts_a_bearer_token_in_the_authorization_header(live_server, alice_token):
    response = requests.get(live_server.url + WHOAMI, headers={"Authorization": f"Bearer {alice_token[1]}"})

    assert response.status_code == 200
    assert response.json()["UserName"] == "alice"


def test_it_accepts_the_official_sdks_bearer_token_credentials(sdk_client, alice_token):
    client = sdk_client(bearer_token=alice_token[1])

    answer = sdk_call(client, "GET", WHOAMI, query={"PageSize": "5"})

    assert answer["body"]["UserName"] == "alice"


def test_it_rejects_an_unknown_bearer_token(live_server, alice_token):
    response = requests.get(live_server.url + WHOAMI, headers={"x-acs-bearer-token": "ferry_not-a-real-token"})

    assert_unauthorized(response, "not valid")


def test_it_rejects_a_revoked_bearer_token(live_server, alice_token):
    api_token_revoke(token=alice_token[0])

    response = requests.get(live_server.url + WHOAMI, headers={"Authorization": f"Bearer {alice_token[1]}"})

    assert_unauthorized(response, "revoked")


def test_it_records_token_use_at_most_once_a_minute(live_server, alice_token):
    token, plaintext = alice_token
    recently = timezone.now() - timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recently)

    requests.get(live_server.url + WHOAMI, headers={"Authorization": f"Bearer {plaintext}"})
    token.refresh_from_db()
    assert token.last_used_at == recently

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recently - timedelta(minutes=1))
    requests.get(live_server.url + WHOAMI, headers={"Authorization": f"Bearer {plaintext}"})
    token.refresh_from_db()
    assert token.last_used_at > recently


# --- No credentials ------------------------------------------------------------------------------------------


def test_it_answers_401_with_an_eas_error_body_when_there_are_no_credentials(live_server):
    response = requests.get(live_server.url + WHOAMI)

    assert response.status_code == 401
    body = response.json()
    assert set(body) >= {"Code", "Message", "RequestId"}
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    assert response.headers["WWW-Authenticate"]


# --- The canonical path, as servers hand it to Django ---------------------------------------------------------


def signed_factory_request(rf, key: tuple[AccessKey, str], encoded_path: str, **meta):
    """A request for a percent-encoded path, signed over that path as the SDK signs its `pathname`."""
    access_key, secret = key
    headers = {
        "host": "ferry.example",
        "x-acs-date": Utils.get_timestamp(),
        "x-acs-signature-nonce": Utils.get_nonce(),
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    dara_request = SimpleNamespace(pathname=encoded_path, method="GET", query={}, headers=headers)
    headers["Authorization"] = Utils.get_authorization(
        dara_request, ALGORITHM, headers["x-acs-content-sha256"], access_key.access_key_id, secret
    )
    return rf.get(encoded_path, headers=headers, **meta)


def test_it_verifies_a_percent_encoded_path_when_the_server_passes_only_the_decoded_one(rf, alice_key):
    request = signed_factory_request(rf, alice_key, "/api/v2/services/local/%E6%A8%A1%E5%9E%8B%20v1")

    user, credential = AccessKeySignatureAuthentication().authenticate(request)

    assert (user.username, credential) == ("alice", alice_key[0])


def test_it_verifies_the_raw_path_when_the_server_passes_it(rf, alice_key):
    path = "/api/v2/services/local/a%2Fb"  # an encoded slash survives only in the raw URI (gunicorn's RAW_URI)
    request = signed_factory_request(rf, alice_key, path, RAW_URI=path)

    user, _ = AccessKeySignatureAuthentication().authenticate(request)

    assert user.username == "alice"


def test_it_rejects_a_malformed_signature_header_without_crashing(live_server):
    authorization = f"{ALGORITHM} Credential=FAKX,SignedHeaders=host,Signature=zz"
    response = requests.get(live_server.url + WHOAMI, headers={"Authorization": authorization})

    assert_unauthorized(response, "Malformed Authorization header")
