"""An instance's address is never a credential: Ferry's model server (a real process, started as the node
agent starts it, with its service token in the environment) refuses every inference, metadata and model
repository route without the service's token, with a wrong one, and with another service's token plainly,
as Bearer or as an EAS signature; probes stay open and say nothing but alive or ready. Through a real
gateway, the caller's right token still reaches the answer (the gateway sends the instance its token).

Each refused attempt asserts the 401, that the answer holds nothing of the model, and, at the end, that the
model is still loaded and answers the right token (unload and load changed nothing)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from email.utils import formatdate

import pytest
import requests

from processors.demo import IRIS_SAMPLE
from tests.gateway.conftest import call, gateway, routes  # noqa: F401 -- fixtures
from tests.processors.conftest import demo_models  # noqa: F401 -- fixture
from tests.processors.helpers import ServerProcess, demo_iris_server

TOKEN = "token-of-demo-iris-0123456789"
OTHER_TOKEN = "token-of-another-service-9876"
V1_BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()
V2_BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                  "data": IRIS_SAMPLE}]}).encode()

# (method, path, body): every route of the server that is not a probe.
ROUTES = [
    ("POST", "/v1/models/demo_iris:predict", V1_BODY),
    ("GET", "/v1/models/demo_iris", b""),
    ("GET", "/v1/models", b""),
    ("POST", "/v2/models/demo_iris/infer", V2_BODY),
    ("POST", "/v2/models/demo_iris/versions/1/infer", V2_BODY),
    ("GET", "/v2/models/demo_iris", b""),
    ("GET", "/v2/models/demo_iris/ready", b""),
    ("GET", "/v2", b""),
    ("POST", "/v2/repository/models/demo_iris/unload", b""),
    ("POST", "/v2/repository/models/demo_iris/load", b""),
    ("POST", "/v2/repository/index", b"{}"),
    ("POST", "/", V1_BODY),
    ("POST", "/api/predict/demo_iris", V1_BODY),
    ("POST", "/api/predict/demo_iris/v1/models/demo_iris:predict", V1_BODY),
    ("POST", "/api/predict/demo_iris/v2/models/demo_iris/infer", V2_BODY),
    ("POST", "/api/predict/demo_iris/v2/repository/models/demo_iris/unload", b""),
    ("GET", "/openapi.json", b""),
    ("GET", "/docs", b""),
]


def _signed(token: str, body: bytes, resource: str = "/api/predict/demo_iris") -> dict:
    date = formatdate(time.time(), usegmt=True)
    message = f"POST\n{hashlib.md5(body).hexdigest()}\napplication/json\n{date}\n{resource}"  # noqa: S324
    signature = base64.b64encode(hmac.new(token.encode(), message.encode(), hashlib.sha1).digest()).decode()
    return {"Authorization": f"EAS {signature}", "Date": date, "Content-Type": "application/json"}


# name -> headers: what a caller without the token can send.
CREDENTIALS = {
    "none": lambda body: {},
    "empty": lambda body: {"Authorization": ""},
    "wrong": lambda body: {"Authorization": "wrong"},
    "another service's token": lambda body: {"Authorization": OTHER_TOKEN},
    "another service's token as Bearer": lambda body: {"Authorization": f"Bearer {OTHER_TOKEN}"},
    "signed with another service's token": lambda body: _signed(OTHER_TOKEN, body),
    "the token as a prefix": lambda body: {"Authorization": TOKEN[:-1]},
}
ATTEMPTS = len(ROUTES) * len(CREDENTIALS) + 2  # + the gateway's two refusals below
# What a refused answer must not hold: anything of the model or its predictions.
LEAKS = ("predictions", "outputs", "platform", "sklearn", "inputs", "demo_iris\", \"ready\"")


@pytest.fixture(scope="module")
def iris(demo_models, tmp_path_factory):  # noqa: F811
    with demo_iris_server(demo_models, tmp_path_factory, TOKEN) as server:
        yield server


def _send(server: ServerProcess, method: str, path: str, body: bytes, headers: dict) -> requests.Response:
    return requests.request(method, server.url(path), data=body or None,
                            headers={"Content-Type": "application/json", **headers}, timeout=30)


def _still_serving(server: ServerProcess) -> None:
    ready = _send(server, "GET", "/v2/models/demo_iris/ready", b"", {"Authorization": TOKEN})
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
    answer = _send(server, "POST", "/v1/models/demo_iris:predict", V1_BODY, {"Authorization": TOKEN})
    assert answer.status_code == 200 and answer.json() == {"predictions": [0]}, answer.text


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_refuses_a_caller_without_the_services_token(iris, method, path, body, credential):
    answer = _send(iris, method, path, body, CREDENTIALS[credential](body))
    assert answer.status_code == 401, (answer.status_code, answer.text)
    assert not any(leak in answer.text for leak in LEAKS), answer.text
    _still_serving(iris)


def test_the_process_command_line_holds_no_token(iris):
    with open(f"/proc/{iris.process.pid}/cmdline", "rb") as cmdline:
        assert TOKEN.encode() not in cmdline.read()


@pytest.mark.parametrize("path", ["/", "/v2/health/live", "/v2/health/ready"])
def test_probes_stay_open_and_say_nothing_of_the_model(iris, path):
    answer = requests.get(iris.url(path), timeout=10)
    assert answer.status_code == 200 and "demo_iris" not in answer.text and len(answer.content) < 64, answer.text


@pytest.mark.parametrize(("method", "path", "body"), [r for r in ROUTES if "repository" not in r[1]
                                                      and r[1] not in ("/openapi.json", "/docs")])
def test_the_right_token_opens_every_inference_and_metadata_route(iris, method, path, body):
    expected = 501 if "/versions/" in path else 200  # past the door, kserve has no model versions
    for headers in ({"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}"}):
        answer = _send(iris, method, path, body, headers)
        assert answer.status_code == expected, (path, answer.status_code, answer.text)
    if method == "POST" and path.startswith("/api/predict/demo_iris") and path.count("/") == 3:
        assert _send(iris, method, path, body, _signed(TOKEN, body)).status_code == 200


def test_through_the_gateway_the_right_token_is_served_and_others_are_not(iris, gateway, routes):  # noqa: F811
    routes.put("demo_iris", [(1, 100, [{"name": "demo-iris-1", "address": f"127.0.0.1:{iris.port}"}])],
               token=TOKEN)
    for path, body in (("/api/predict/demo_iris", V1_BODY), ("/v1/models/demo_iris:predict", V1_BODY),
                       ("/v2/models/demo_iris/infer", V2_BODY)):
        status, _, answer = call(gateway, path, body=body, headers={"Authorization": TOKEN,
                                                                   "Content-Type": "application/json"})
        assert status == 200, (path, status, answer)
    status, _, answer = call(gateway, "/api/predict/demo_iris", body=V1_BODY, headers={"Authorization": OTHER_TOKEN})
    assert status == 401 and b"predictions" not in answer
    status, _, answer = call(gateway, "/v2/models/demo_iris/infer", body=V2_BODY, headers={})
    assert status == 401 and b"outputs" not in answer
    _still_serving(iris)


def test_the_attempts_are_counted():
    """docs/security.md gives this count; every test above asserts the refusal of each."""
    assert ATTEMPTS == 128
