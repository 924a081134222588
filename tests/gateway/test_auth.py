"""Credentials at the gateway: the service token, plain or Bearer, and the EAS SDK signature.

Signatures are made here the way eas-prediction's PredictClient.generate_singaure makes them, not with the
gateway's own code."""

import base64
import hashlib
import hmac
import json
from email.utils import formatdate

from .conftest import call

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def signed(token: str, service: str, body: bytes = BODY, *, content_type: str = "application/json",
           date: str | None = None, content_md5: str | None = None) -> dict:
    date = date or formatdate(usegmt=True)
    md5 = hashlib.md5(body).hexdigest()  # noqa: S324
    message = f"POST\n{md5}\n{content_type}\n{date}\n/api/predict/{service}"
    signature = base64.b64encode(hmac.new(token.encode(), message.encode(), hashlib.sha1).digest()).decode()
    return {"Authorization": f"EAS {signature}", "Date": date, "Content-Type": content_type,
            "Content-MD5": content_md5 or md5}


def message(body: bytes) -> str:
    return json.loads(body)["message"]


def test_it_accepts_the_token_plain_bearer_or_signed(gateway, routes, echo):
    backends = echo("i")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("i")])])
    token = f"token-of-{name}"
    assert call(gateway, f"/api/predict/{name}", body=BODY, headers={"Authorization": token})[0] == 200
    assert call(gateway, f"/api/predict/{name}", body=BODY, headers={"Authorization": f"Bearer {token}"})[0] == 200
    assert call(gateway, f"/api/predict/{name}", body=BODY, headers=signed(token, name))[0] == 200
    assert call(gateway, f"/v2/models/{name}/infer", body=BODY, headers=signed(token, name))[0] == 200
    # The instance gets the service's own token, not the client's signature.
    status, _, answer = call(gateway, f"/api/predict/{name}", body=BODY, headers=signed(token, name))
    assert json.loads(answer)["authorization"] == token


def test_it_answers_401_with_a_clear_message_for_missing_or_wrong_credentials(gateway, routes, echo):
    backends = echo("i")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("i")])])
    token = f"token-of-{name}"
    path = f"/api/predict/{name}"

    status, headers, body = call(gateway, path, body=BODY)
    assert status == 401 and "missing Authorization header" in message(body)
    assert headers["content-type"] == "application/json"

    status, _, body = call(gateway, path, body=BODY, headers={"Authorization": "not-the-token"})
    assert status == 401 and "wrong token" in message(body)

    status, _, body = call(gateway, path, body=BODY, headers=signed("not-the-token", name))
    assert status == 401 and "bad signature" in message(body)

    status, _, body = call(gateway, path, body=BODY + b" ", headers=signed(token, name, content_md5=None)
                           | {"Content-MD5": hashlib.md5(BODY + b" ").hexdigest()})  # noqa: S324
    assert status == 401 and "bad signature" in message(body)  # the body changed after signing

    status, _, body = call(gateway, path, body=BODY, headers=signed(token, name, content_md5="0" * 32))
    assert status == 401 and "Content-MD5 does not match the body" in message(body)

    status, _, body = call(gateway, path, body=BODY, headers=signed(token, name, date="Mon, 01 Jan 2024 00:00:00 GMT"))
    assert status == 401 and "away from the gateway's clock" in message(body)

    status, _, body = call(gateway, path, body=BODY, headers=signed(token, name, date="yesterday"))
    assert status == 401 and "unreadable Date header" in message(body)

    # The token of another service opens nothing here.
    other = routes.unique()
    routes.put(other, [(1, 100, [backends.instance("i")])])
    assert call(gateway, path, body=BODY, headers={"Authorization": f"token-of-{other}"})[0] == 401
    assert backends.counts()["i"] == 0  # nothing refused reached the instance
