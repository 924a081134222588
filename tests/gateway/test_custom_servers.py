"""A custom server written for EAS behind the gateway: Python's http.server (eas_custom_server.py) deployed as
a custom container service on the local cluster, run by a real node agent, called through a real gateway.
EAS hands such a server `/api/predict/<service>/<rest>` as `/<rest>`, and it may answer in HTTP/1.0 with a
body that ends when it closes the connection."""

import json
import shlex
import sys
from pathlib import Path

import pytest

from services.selectors import service_token

from .conftest import call, converge, eas_sdk, load, statuses
from .test_clients import create, routed, running

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
SERVER = Path(__file__).with_name("eas_custom_server.py")


def custom_service(name: str) -> dict:
    script = f"exec {shlex.quote(sys.executable)} {shlex.quote(str(SERVER))}"
    return {"name": name, "processor": "custom", "metadata": {"instance": 1},
            "containers": [{"image": "none", "script": script, "port": 8000}]}


def test_a_custom_server_gets_the_sub_path_and_its_http_1_0_answers_are_relayed(local_cluster, gateway, eas_python):
    service = converge(create(custom_service("custom_paths")), running, what="custom_paths Running")
    routed(gateway, service)
    token = service_token(service)
    auth = {"Authorization": token}

    status, _, body = call(gateway, "/api/predict/custom_paths/some/path?x=1", body=b'{"a": 1}', headers=auth)
    assert status == 200, body
    assert json.loads(body) == {"path": "/some/path?x=1", "method": "POST", "body": '{"a": 1}',
                                "authorization": token}
    status, _, body = call(gateway, "/api/predict/custom_paths", body=b"hi", headers=auth)
    assert status == 200 and json.loads(body)["path"] == "/", body

    # A close-delimited body larger than any single read arrives intact, relayed as it comes (chunked: its
    # length is known only at the end).
    size = 300_001
    status, headers, body = call(gateway, f"/api/predict/custom_paths/big?bytes={size}", method="GET", headers=auth)
    assert status == 200 and len(body) == size and body == (b"0123456789" * 30_001)[:size]
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers

    # HEAD: the instance's headers, its Content-Length, no body; 204 and 304: no body, no invented length.
    status, headers, body = call(gateway, "/api/predict/custom_paths/anything", method="HEAD", headers=auth)
    assert (status, headers["content-length"], body) == (200, "12345", b"")
    status, headers, body = call(gateway, "/api/predict/custom_paths/empty", method="GET", headers=auth)
    assert (status, body, headers["etag"]) == (204, b"", '"v1"') and "content-length" not in headers
    status, headers, body = call(gateway, "/api/predict/custom_paths/unchanged", method="GET", headers=auth)
    assert (status, body, headers["etag"]) == (304, b"", '"v1"') and "content-length" not in headers

    # Each answer closed its connection: none is reused for the next request.
    results = load(gateway.port, "/api/predict/custom_paths/again", requests=60, threads=3, headers=auth)
    assert statuses(results) == {200: 60}

    # eas-prediction with a service name carrying a sub-path and a query signs that whole path.
    answers = eas_sdk(eas_python, "gateway", f"127.0.0.1:{gateway.port}", "custom_paths/v1/chat?x=1", token,
                      '{"q": 1}', count=2, tz="Asia/Shanghai")
    assert [json.loads(a)["path"] for a in answers] == ["/v1/chat?x=1"] * 2
