"""The built-in model server as an EAS instance: predictions on `POST /` (what the gateway sends once it has
stripped /api/predict/<service>) and, for direct connections, under /api/predict/<service>[/<rest>] served as
`/<rest>`; credentials checked there as the gateway checks them. A real server process with a service token."""

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
from tests.processors.helpers import demo_iris_server

TOKEN = "t0ken-of-demo-iris"
BODY = json.dumps({"instances": [IRIS_SAMPLE]}).encode()


@pytest.fixture(scope="module")
def iris(demo_models, tmp_path_factory):
    with demo_iris_server(demo_models, tmp_path_factory, TOKEN) as server:
        yield server


def sdk_headers(resource: str, body: bytes = BODY, hours_east: float = 8) -> dict:
    """What eas-prediction sends from a machine `hours_east` of UTC: local time labelled GMT, signed with the
    resource /api/predict/<the service name it was given>."""
    date = formatdate(time.time() + hours_east * 3600, usegmt=True)
    md5 = hashlib.md5(body).hexdigest()  # noqa: S324
    message = f"POST\n{md5}\napplication/octet-stream\n{date}\n{resource}"
    signature = base64.b64encode(hmac.new(TOKEN.encode(), message.encode(), hashlib.sha1).digest()).decode()
    return {"Authorization": f"EAS {signature}", "Date": date, "Content-MD5": md5,
            "Content-Type": "application/octet-stream"}


def test_it_answers_eas_predictions_on_the_root_with_the_token(iris):
    answer = iris.post("/", data=BODY, headers={"Authorization": TOKEN})
    assert answer.status_code == 200 and answer.json() == {"predictions": [0]}, answer.text
    refused = iris.post("/", data=BODY)
    assert refused.status_code == 401 and "missing Authorization header" in refused.json()["error"]
    # Probes and kserve's own routes stay open.
    assert iris.get("/").status_code == 200
    assert iris.get("/v2/health/ready").status_code == 200


def test_it_serves_direct_connections_under_the_eas_path_signed_from_any_time_zone(iris):
    for hours in (8, -7, 5.5, 0):
        headers = sdk_headers("/api/predict/demo_iris", hours_east=hours)
        for _ in range(2):  # the same signed request twice at once: not a replay
            answer = iris.post("/api/predict/demo_iris", data=BODY, headers=headers)
            assert answer.status_code == 200 and answer.json() == {"predictions": [0]}, (hours, answer.text)

    path = "/api/predict/demo_iris/v1/models/demo_iris:predict"
    answer = iris.post(path, data=BODY, headers=sdk_headers(path))
    assert answer.status_code == 200 and answer.json() == {"predictions": [0]}, answer.text
    ready = requests.get(iris.url("/api/predict/demo_iris/v2/models/demo_iris/ready"),
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text

    far = iris.post("/api/predict/demo_iris", data=BODY, headers=sdk_headers("/api/predict/demo_iris", hours_east=15))
    assert far.status_code == 401 and "every time zone" in far.json()["error"]
    elsewhere = iris.post(path, data=BODY, headers=sdk_headers("/api/predict/demo_iris/elsewhere"))
    assert elsewhere.status_code == 401 and "bad signature" in elsewhere.json()["error"]
    assert iris.post("/api/predict/demo_iris/v1/models/demo_iris:predict", data=BODY).status_code == 401


def test_it_answers_404_under_the_eas_path_of_another_service(iris):
    answer = iris.post("/api/predict/demo_digits", data=BODY, headers={"Authorization": TOKEN})
    assert answer.status_code == 404 and "serves demo_iris, not demo_digits" in answer.json()["error"]
