"""Model sources an attacker writes into a service file: a real HTTP server on loopback (allowed by
FERRY_FETCH_ALLOWED_NETWORKS, as the test harness sets it, or refused when a test clears it), real files and
symlinks, and the control plane's own fetch policy (deployer.fetches.fetch_policy, built from settings).

Every refused attempt asserts that nothing was read: the server logged no request for what it must not serve,
and the model cache holds no file."""

import contextlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from deployer.fetches import fetch_policy
from deployer.reconcile import reconcile
from processors.fetch import ModelFetchError, fetch_model
from services.models import Event, Project
from services.writes import service_create

MODEL = b"model weights " * 64
INTERNAL_SECRET = "internal-admin-password-42"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 -- the standard library's name
        self.server.seen.append(self.path)
        if self.path == "/model.onnx":
            self._answer(200, MODEL)
        elif self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/internal":  # what an internal admin page would answer
            self._answer(500, f"<h1>Admin</h1> password: {INTERNAL_SECRET}".encode())
        elif self.path == "/big-declared.onnx":
            self._answer(200, b"x" * 50_000)
        elif self.path == "/big-chunked.onnx":  # no Content-Length: only counting what arrives stops it
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"x" * 1000)
        elif self.path == "/slow.onnx":  # a byte at a time, for longer than the time limit
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
        else:
            self._answer(404, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def loopback_source():
    """The HTTP server of these attempts, on a free loopback port; `seen` lists the paths asked for."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server():
    with loopback_source() as httpd:
        yield httpd


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def fetch(url: str, cache: Path) -> Path:
    return fetch_model(url, cache_dir=cache, policy=fetch_policy())


def nothing_cached(cache: Path) -> bool:
    folders = [cache / folder for folder in ("sha256", "trees", "index")]
    return not any(any(folder.iterdir()) for folder in folders if folder.exists())


# -- what is allowed -------------------------------------------------------------------------------------------


def test_a_loopback_server_allowed_by_setting_is_fetched(server, cache, settings):
    settings.FERRY_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    assert (fetch(f"{server.url}/model.onnx", cache) / "model.onnx").read_bytes() == MODEL


def test_a_file_under_a_root_is_fetched(tmp_path, cache, settings):
    root = tmp_path / "models"
    root.mkdir()
    (root / "model.onnx").write_bytes(MODEL)
    settings.FERRY_FILE_SOURCE_ROOTS = [root]
    assert (fetch((root / "model.onnx").as_uri(), cache) / "model.onnx").read_bytes() == MODEL
    assert fetch(root.as_uri(), cache) == root  # a directory is used in place


# -- network attempts ------------------------------------------------------------------------------------------

# (name, the URL's path and host from the server's address, the networks allowed)
NETWORK_ATTEMPTS = [
    ("loopback_without_allow", "{url}/model.onnx", []),
    ("localhost_name_without_allow", "http://localhost:{port}/model.onnx", []),
    ("ipv4_mapped_ipv6_loopback", "http://[::ffff:127.0.0.1]:{port}/model.onnx", []),
    ("metadata_address", "http://169.254.169.254/latest/meta-data/iam/security-credentials/", ["127.0.0.1/32"]),
    ("private_rfc1918", "http://10.0.0.1/model.onnx", ["127.0.0.1/32"]),
    ("ipv6_loopback", "http://[::1]:{port}/model.onnx", ["127.0.0.1/32"]),
    ("redirect_to_metadata", "{url}/redirect?to=http://169.254.169.254/latest/meta-data/", ["127.0.0.1/32"]),
    ("redirect_to_other_loopback", "{url}/redirect?to=http://127.0.0.2:{port}/model.onnx", ["127.0.0.1/32"]),
    ("redirect_to_file", "{url}/redirect?to=file:///etc/passwd", ["127.0.0.1/32"]),
]


@pytest.mark.parametrize(("name", "template", "allowed"), NETWORK_ATTEMPTS, ids=[a[0] for a in NETWORK_ATTEMPTS])
def test_a_non_public_address_is_refused(name, template, allowed, server, cache, settings):
    settings.FERRY_FETCH_ALLOWED_NETWORKS = allowed
    url = template.format(url=server.url, port=server.server_address[1])
    started = time.monotonic()
    with pytest.raises(ModelFetchError) as raised:
        fetch(url, cache)
    assert time.monotonic() - started < 5  # refused before connecting, not after a timeout
    message = str(raised.value)
    assert "non-public address" in message or "not http(s)" in message
    assert "/model.onnx" not in server.seen[1:] and server.seen.count("/model.onnx") == 0
    assert nothing_cached(cache)


@pytest.mark.django_db
def test_an_internal_servers_answer_is_not_repeated(server, settings):
    """Allowed to reach an internal host (by a broad allow list, say), the service fails naming the status
    only: the body of what answered reaches neither its events nor its status."""
    settings.FERRY_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    document = {"name": "sources_probe", "processor": "sklearn", "model_path": f"{server.url}/internal",
                "metadata": {"instance": 1}}
    service = service_create(actor=None, project=Project.objects.get(name="default"), document=document)
    reconcile(service.pk)
    service.refresh_from_db()
    assert service.status_reason == "ModelFetchFailed"
    assert "500" in service.status_message
    seen = [service.status_message, *Event.objects.filter(service=service).values_list("message", flat=True)]
    assert not any(INTERNAL_SECRET in text or "Admin" in text for text in seen)
    assert "/internal" in server.seen


# -- local attempts ---------------------------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path, settings):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("not for instances")
    (root / "link_to_secret.txt").symlink_to(outside / "secret.txt")
    (root / "linked_dir").symlink_to(outside)
    (root / "model_dir").mkdir()
    (root / "model_dir" / "weights").symlink_to(outside / "secret.txt")
    settings.FERRY_FILE_SOURCE_ROOTS = [root]
    return root, outside


LOCAL_ATTEMPTS = [
    ("dotdot_escape", lambda root, var: f"file://{root}/../outside/secret.txt"),
    ("bare_path_dotdot_escape", lambda root, var: f"{root}/../outside/secret.txt"),
    ("symlinked_file_escape", lambda root, var: f"file://{root}/link_to_secret.txt"),
    ("symlinked_directory_escape", lambda root, var: f"file://{root}/linked_dir/secret.txt"),
    ("directory_holding_an_escaping_symlink", lambda root, var: f"file://{root}/model_dir/"),
    ("outside_every_root", lambda root, var: "file:///etc/passwd"),
    ("var_secret_key_inside_a_root", lambda root, var: f"file://{var}/secret-key"),
    ("var_itself_inside_a_root", lambda root, var: f"file://{var}/"),
    ("a_root_holding_var", lambda root, var: f"file://{var.parent}/"),
]


@pytest.mark.parametrize(("name", "make_url"), LOCAL_ATTEMPTS, ids=[a[0] for a in LOCAL_ATTEMPTS])
def test_a_local_path_outside_the_roots_or_into_var_is_refused(name, make_url, roots, cache, settings):
    root, _ = roots
    var = Path(os.path.realpath(settings.VAR_DIR))
    (var / "secret-key").write_text("the key that decrypts every stored secret")
    if name.startswith(("var_", "a_root")):
        settings.FERRY_FILE_SOURCE_ROOTS = [root, var.parent]  # a root that contains var/
    with pytest.raises(ModelFetchError) as raised:
        fetch(make_url(root, var), cache)
    assert "FERRY_FILE_SOURCE_ROOTS" in str(raised.value) or "data directory" in str(raised.value)
    assert nothing_cached(cache)


# -- limits -----------------------------------------------------------------------------------------------------

LIMIT_ATTEMPTS = [
    ("oversized_declared_body", "/big-declared.onnx", "size limit"),
    ("oversized_chunked_body", "/big-chunked.onnx", "size limit"),
    ("slow_server", "/slow.onnx", "time limit"),
]


@pytest.mark.parametrize(("name", "path", "limit"), LIMIT_ATTEMPTS, ids=[a[0] for a in LIMIT_ATTEMPTS])
def test_a_fetch_past_its_limits_stops_naming_the_limit(name, path, limit, server, cache, settings):
    settings.FERRY_FETCH_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.FERRY_FETCH_MAX_BYTES = 10_000
    settings.FERRY_FETCH_TIMEOUT_SECONDS = 1.5
    started = time.monotonic()
    with pytest.raises(ModelFetchError, match=limit) as raised:
        fetch(f"{server.url}{path}", cache)
    assert time.monotonic() - started < 5
    assert "FERRY_FETCH_" in str(raised.value)
    assert nothing_cached(cache)
    assert not any((cache / "tmp").iterdir())  # the partial download is gone too


def test_a_local_file_over_the_size_limit_is_refused(tmp_path, cache, settings):
    (tmp_path / "big.bin").write_bytes(b"x" * 20_000)
    settings.FERRY_FILE_SOURCE_ROOTS = [tmp_path]
    settings.FERRY_FETCH_MAX_BYTES = 10_000
    with pytest.raises(ModelFetchError, match="size limit"):
        fetch((tmp_path / "big.bin").as_uri(), cache)
    assert nothing_cached(cache)


ATTEMPTS = ([f"network:{a[0]}" for a in NETWORK_ATTEMPTS] + [f"local:{a[0]}" for a in LOCAL_ATTEMPTS]
            + [f"limit:{a[0]}" for a in LIMIT_ATTEMPTS] + ["limit:local_oversized", "leak:internal_body"])


# -- S3 credentials: the project's own, never the platform's -------------------------------------------------


class _S3Recorder(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that records which access key signed each request, and denies them all."""

    def log_message(self, *args):
        pass

    def _deny(self):
        authorization = self.headers.get("Authorization", "")
        self.server.signers.append(authorization.split("Credential=", 1)[1].split("/", 1)[0]
                                   if "Credential=" in authorization else None)
        body = b"<Error><Code>AccessDenied</Code><Message>denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _deny  # noqa: N815 -- the standard library's names


@pytest.fixture
def s3_recorder(monkeypatch):
    monkeypatch.setenv("FERRY_S3_ACCESS_KEY_ID", "PLATFORMKEY")
    monkeypatch.setenv("FERRY_S3_SECRET_ACCESS_KEY", "platform-secret")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _S3Recorder)
    httpd.daemon_threads = True
    httpd.signers = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _owner_client(username: str, project: Project):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from services.models import ProjectMembership
    from services.writes import api_token_create

    user = get_user_model().objects.create_user(username, password="unused")
    ProjectMembership.objects.create(user=user, project=project, role="owner" if "owner" in username else "developer")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t')[1]}")
    return client


def _s3_service(project: Project, name: str, endpoint: str):
    from services.models import Cluster, ClusterGrant

    ClusterGrant.objects.get_or_create(project=project, cluster=Cluster.objects.get(name="local"))
    document = {"name": name, "processor": "sklearn", "model_path": "oss://their-bucket/model.joblib",
                "oss_endpoint": endpoint, "metadata": {"instance": 1}}
    service = service_create(actor=None, project=project, document=document)
    reconcile(service.pk)
    service.refresh_from_db()
    return service


@pytest.mark.django_db
def test_a_service_reads_buckets_with_its_projects_key_never_the_platforms(s3_recorder, settings):
    endpoint = f"http://127.0.0.1:{s3_recorder.server_address[1]}"
    with_key, without_key = Project.objects.create(name="with_key"), Project.objects.create(name="without_key")
    owner = _owner_client("with_key_owner", with_key)
    response = owner.put("/api/v2/ferry/projects/with_key/storagecredentials",
                         {"AccessKeyId": "PROJECTKEY", "AccessKeySecret": "project-secret"}, format="json")
    assert response.status_code == 200, response.content
    with_key.refresh_from_db()
    assert "project-secret" not in with_key.storage_secret_encrypted
    assert "project-secret" not in owner.get("/api/v2/ferry/projects/with_key/storagecredentials").content.decode()

    service = _s3_service(with_key, "s3_with_key", endpoint)
    assert service.status_reason == "ModelFetchFailed"
    assert set(s3_recorder.signers) == {"PROJECTKEY"}

    s3_recorder.signers.clear()
    service = _s3_service(without_key, "s3_without_key", endpoint)
    assert service.status_reason == "ModelFetchFailed"
    assert s3_recorder.signers and set(s3_recorder.signers) == {None}  # unsigned: no key at all


# (name, who, method, body, status)
STORAGE_CREDENTIAL_ATTEMPTS = [
    ("developer_sets_the_key", "with_key_dev", "put", {"AccessKeyId": "EVIL", "AccessKeySecret": "x"}, 403),
    ("developer_removes_the_key", "with_key_dev", "delete", None, 403),
    ("other_projects_owner_reads_the_key", "other_owner", "get", None, 404),
    ("other_projects_owner_sets_the_key", "other_owner", "put", {"AccessKeyId": "EVIL", "AccessKeySecret": "x"}, 404),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "who", "method", "body", "status"), STORAGE_CREDENTIAL_ATTEMPTS,
                         ids=[a[0] for a in STORAGE_CREDENTIAL_ATTEMPTS])
def test_only_the_projects_owner_sets_its_storage_key(name, who, method, body, status):
    from services.writes.credentials import project_storage_credentials_set

    project = Project.objects.create(name="with_key")
    project_storage_credentials_set(project=project, access_key_id="PROJECTKEY", secret="project-secret")
    client = _owner_client(who, project if who.startswith("with_key") else Project.objects.create(name="other"))
    before = Project.objects.filter(pk=project.pk).values_list("storage_access_key_id",
                                                               "storage_secret_encrypted").get()
    response = getattr(client, method)("/api/v2/ferry/projects/with_key/storagecredentials", body, format="json")
    assert response.status_code == status, response.content
    assert "PROJECTKEY" not in response.content.decode()
    after = Project.objects.filter(pk=project.pk).values_list("storage_access_key_id", "storage_secret_encrypted").get()
    assert after == before


ATTEMPTS += ["s3:platform_key_for_a_project_bucket"] + [f"storage_key:{a[0]}" for a in STORAGE_CREDENTIAL_ATTEMPTS]
