"""Credentials at the gateway: the service token, plain or Bearer, and the EAS SDK signature (from any time
zone, over a sub-path, and not replayable after its window).

Signatures are made here the way eas-prediction's PredictClient.generate_singaure makes them, not with the
gateway's own code: the Date is the client's local time labelled GMT."""

import base64
import hashlib
import hmac
import json
import socket
import time
from email.utils import formatdate

from tests.agent.kit import wait_for

from .conftest import Routes, call, start_gateway

BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def local_date(hours_east: float, seconds_off: float = 0.0) -> str:
    """What the SDK writes on a machine whose time zone is `hours_east` of UTC."""
    return formatdate(time.time() + hours_east * 3600 + seconds_off, usegmt=True)


def signed(token: str, service: str, body: bytes = BODY, *, content_type: str = "application/json",
           date: str | None = None, content_md5: str | None = None, resource: str | None = None) -> dict:
    """`resource`: what is signed, /api/predict/<service> unless given (the SDK signs /api/predict/ + the
    service name it was given, which may carry a sub-path and a query)."""
    date = date or formatdate(usegmt=True)
    md5 = hashlib.md5(body).hexdigest()  # noqa: S324
    message = f"POST\n{md5}\n{content_type}\n{date}\n{resource or f'/api/predict/{service}'}"
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


def test_it_accepts_signatures_dated_in_any_time_zone_and_refuses_dates_beyond_them(gateway, routes, echo):
    backends = echo("i")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("i")])])
    token, path = f"token-of-{name}", f"/api/predict/{name}"

    # Shanghai, Los Angeles (standard and summer time), Kolkata, Kathmandu, Kiribati, Baker Island.
    for hours in (8, -8, -7, 5.5, 5.75, 14, -12):
        status, _, body = call(gateway, path, body=BODY, headers=signed(token, name, date=local_date(hours)))
        assert status == 200, (hours, body)
    status, _, body = call(gateway, path, body=BODY, headers=signed(token, name, date=local_date(8, 600)))
    assert status == 200, body  # a clock ten minutes off
    for hours in (15, -13):
        status, _, body = call(gateway, path, body=BODY, headers=signed(token, name, date=local_date(hours)))
        assert status == 401 and "away from the gateway's clock in every time zone" in message(body), body
    assert backends.counts()["i"] == 8


def test_it_checks_a_signature_over_the_sub_path_and_query_the_sdk_was_given(gateway, routes, echo):
    backends = echo("i")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("i")])])
    token, path = f"token-of-{name}", f"/api/predict/{name}/v1/chat/completions"

    for resource in (path, f"{path}?x=1", f"/api/predict/{name}"):
        status, _, body = call(gateway, f"{path}?x=1", body=BODY, headers=signed(token, name, resource=resource))
        assert status == 200 and json.loads(body)["path"] == "/v1/chat/completions", (resource, body)
    status, _, body = call(gateway, f"{path}?x=1", body=BODY,
                           headers=signed(token, name, resource=f"/api/predict/{name}/elsewhere"))
    assert status == 401 and "bad signature" in message(body)


def test_it_refuses_a_signature_replayed_after_its_window_but_not_a_repeat_within_it(tmp_path, echo):
    """With a 4 s skew, a request signed in UTC+8 four seconds ahead stays inside the band for about 8 s,
    while the memory refuses it 4 s after its first use: the refusal in between can only be the memory's."""
    skew = 4
    strict = start_gateway(tmp_path, FERRY_GATEWAY_SIGNATURE_MAX_SKEW=str(skew))
    table = Routes(strict)
    try:
        backends = echo("i")
        name = table.unique()
        table.put(name, [(1, 100, [backends.instance("i")])])
        path, headers = f"/api/predict/{name}", signed(f"token-of-{name}", name, date=local_date(8, skew))
        first_use = time.monotonic()
        assert call(strict, path, body=BODY, headers=headers)[0] == 200
        assert call(strict, path, body=BODY, headers=headers)[0] == 200  # the same request again at once

        refused = wait_for(lambda: (answer := call(strict, path, body=BODY, headers=headers))[0] != 200 and answer,
                           timeout=15, what="the replay to be refused")
        assert refused[0] == 401 and message(refused[2]).startswith("replayed request"), refused
        assert time.monotonic() - first_use > skew
        # Another request signed by the same client in the same second is fine.
        other = b'{"instances": [[6.0, 3.0, 4.8, 1.8]]}'
        status, _, body = call(strict, path, body=other,
                               headers=signed(f"token-of-{name}", name, other, date=headers["Date"]))
        assert status == 200, body
    finally:
        table.remove_all()
        strict.stop()


def _headers_then_body(gateway, name: str, token: str, between) -> tuple[int, bytes]:
    """Sends a request's headers (the gateway checks the token then), calls `between()`, then sends the body;
    returns the answer's status and body."""
    head = (f"POST /api/predict/{name} HTTP/1.1\r\nHost: gw\r\nAuthorization: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as client:
        client.sendall(head + BODY[:5])
        between()
        client.sendall(BODY[5:])
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_token_accepted_with_the_headers_serves_the_body_sent_after_them(gateway, routes, echo):
    backends = echo("i")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("i")])])
    status, _ = _headers_then_body(gateway, name, f"token-of-{name}", lambda: time.sleep(0.2))
    assert status == 200 and backends.counts() == {"i": 1}


def test_a_token_replaced_while_the_body_comes_is_checked_again_with_the_body(gateway, routes, echo):
    """precheck accepts the token from the headers and hands its route to prepare; when the route was replaced
    meanwhile (a new token), the old token must not serve the request."""
    backends = echo("i")
    name = routes.unique()
    routes.put(name, [(1, 100, [backends.instance("i")])])
    status, answer = _headers_then_body(
        gateway, name, f"token-of-{name}",
        lambda: routes.publish(routes.entry(name, [(1, 100, [backends.instance("i")])], token="the-new-token")))
    assert status == 401, answer
    assert "token" in message(answer)
    assert backends.counts() == {}  # nothing reached the instance
