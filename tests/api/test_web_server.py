"""The web server as `make run`, docker compose and Kubernetes run it (gunicorn with config/gunicorn.conf.py),
driven by the official EAS SDK and raw HTTP: keep-alive that outlives a polling client, and every error it
can produce in EAS's JSON shape {"Code", "Message", "RequestId"} (the SDK cannot parse an HTML page)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time

import pytest
from alibabacloud_eas20210701 import models as eas_models
from Tea.exceptions import TeaException

from services.writes import api_token_create
from tests.agent import kit
from tests.agent.kit import REPO, wait_for
from tests.api.conftest import close_sdk_connections, make_member, sdk_with_token
from tests.harness.process import free_port

# Real commits (the SDK calls a live server); serialized_rollback restores the default project and cluster.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
BODY_LIMIT = 64 * 1024
SERVICE_FILE = {"name": "poll_me", "processor": "sklearn", "model_path": "/models/iris.joblib",
                "metadata": {"instance": 0}}


@pytest.fixture(scope="module")
def web_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """gunicorn on a free port against the test database, started once for the module."""
    from django.conf import settings

    port = free_port()
    log = tmp_path_factory.mktemp("web") / "gunicorn.log"
    env = {**__import__("os").environ, "DATABASE_URL": kit.test_database_url(), "DJANGO_SECRET_KEY": settings.SECRET_KEY,
           "FERRY_ENCRYPTION_KEY": settings.FERRY_ENCRYPTION_KEY, "CELERY_TASK_ALWAYS_EAGER": "false",
           "FERRY_MAX_REQUEST_BODY_BYTES": str(BODY_LIMIT), "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi",
                                   "--bind", f"127.0.0.1:{port}"], cwd=REPO, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _answers(port), 30, f"gunicorn on port {port} (log: {log})")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _answers(port: int) -> bool:
    try:
        return request(f"127.0.0.1:{port}", "GET", "/api/v2/services")[0] == 401
    except OSError:
        return False


def request(address: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def raw_exchange(address: str, data: bytes) -> tuple[int, str, bytes]:
    """Sends bytes as they are (a request http.client would refuse to write) and reads the answer."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


def assert_eas_error(status: int, content_type: str, body: bytes, expected_status: int, code: str) -> dict:
    assert status == expected_status, (status, body[:300])
    assert content_type.startswith("application/json"), (content_type, body[:300])
    error = json.loads(body)
    assert set(error) >= {"Code", "Message", "RequestId"} and error["Code"] == code and error["RequestId"], error
    return error


@pytest.fixture
def alice_token():
    alice = make_member("alice", "team_a")
    return api_token_create(user=alice, name="sdk")[1]


@pytest.fixture
def sdk(web_server, alice_token):
    yield sdk_with_token(f"http://{web_server}", alice_token)
    close_sdk_connections()


def test_it_keeps_an_sdk_polling_every_2_s_connected_for_a_minute(sdk):
    """gunicorn's default keep-alive (2 s) closed idle connections just as a 2 s poller reused them."""
    sdk.create_service(eas_models.CreateServiceRequest(body=json.dumps(SERVICE_FILE)))
    failures, polls, deadline = [], 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            assert sdk.describe_service("local", "poll_me").body.service_name == "poll_me"
            polls += 1
        except Exception as exc:  # noqa: BLE001 -- every failure counts, whatever its kind
            failures.append(repr(exc))
        time.sleep(2)
    assert failures == [] and polls >= 25, (polls, failures)


def test_it_answers_an_unknown_path_with_a_json_404(web_server):
    status, content_type, body = request(web_server, "GET", "/api/v2/no/such/thing")
    error = assert_eas_error(status, content_type, body, 404, "NotFound")
    assert "GET /api/v2/no/such/thing" in error["Message"]


def test_it_answers_an_eas_operation_ferry_lacks_with_501_naming_it(web_server, sdk):
    status, content_type, body = request(web_server, "GET", "/api/v2/gateways")
    assert "ListGateway" in assert_eas_error(status, content_type, body, 501, "NotImplemented")["Message"]
    with pytest.raises(TeaException) as raised:  # the SDK reads the code and message instead of failing to parse
        sdk.develop_service("local", "poll_me", eas_models.DevelopServiceRequest())
    assert raised.value.code == "NotImplemented" and "DevelopService" in raised.value.message


def test_it_answers_501_for_an_eas_operation_on_a_path_ferry_serves_with_other_methods(web_server, alice_token):
    """POST /api/v2/resources is CreateResource; Ferry serves only GET (ListResources) there."""
    status, content_type, body = request(web_server, "POST", "/api/v2/resources", b"{}",
                                         {"Authorization": f"Bearer {alice_token}", "Content-Type": "application/json"})
    assert "CreateResource" in assert_eas_error(status, content_type, body, 501, "NotImplemented")["Message"]


def test_it_answers_a_method_no_operation_has_with_a_json_405(web_server, alice_token):
    status, content_type, body = request(web_server, "PATCH", "/api/v2/services",
                                         headers={"Authorization": f"Bearer {alice_token}"})
    assert_eas_error(status, content_type, body, 405, "MethodNotAllowed")


def test_it_answers_a_body_over_the_limit_with_a_json_413_and_creates_nothing(web_server, alice_token, sdk):
    big = json.dumps({**SERVICE_FILE, "name": "too_big", "model_config": "x" * (BODY_LIMIT + 1)}).encode()
    status, content_type, body = request(web_server, "POST", "/api/v2/services", big,
                                         {"Authorization": f"Bearer {alice_token}", "Content-Type": "application/json"})
    assert str(BODY_LIMIT) in assert_eas_error(status, content_type, body, 413, "RequestEntityTooLarge")["Message"]
    assert sdk.list_services(eas_models.ListServicesRequest()).body.total_count == 0


def test_it_answers_a_host_it_does_not_serve_with_a_json_400(web_server):
    status, content_type, body = request(web_server, "GET", "/api/v2/services", headers={"Host": "evil.example"})
    assert "evil.example" in assert_eas_error(status, content_type, body, 400, "BadRequest")["Message"]


def test_it_answers_requests_gunicorn_refuses_itself_in_json(web_server):
    status, content_type, body = raw_exchange(web_server, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_eas_error(status, content_type, body, 414, "UriTooLong")
    status, content_type, body = raw_exchange(web_server, b"NOT A REQUEST\r\n\r\n")
    assert_eas_error(status, content_type, body, 400, "BadRequest")


def test_the_console_keeps_its_html_pages(web_server):
    status, content_type, _ = request(web_server, "GET", "/no-such-page/")
    assert status == 404 and content_type.startswith("text/html")
