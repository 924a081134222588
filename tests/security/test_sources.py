"""Model sources an attacker writes into a service file: a real HTTP server on loopback (allowed by
FERRY_FETCH_ALLOWED_NETWORKS, as the test harness sets it, or refused when a test clears it), real files and
symlinks, and the control plane's own fetch policy (deployer.launches.fetch_policy, built from settings).

Every refused attempt asserts that nothing was read: the server logged no request for what it must not serve,
and the model cache holds no file."""

import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from deployer.launches import fetch_policy
from deployer.reconcile import reconcile
from processors.fetch import ModelFetchError, fetch_model
from services.models import Event, Project
from services.services import service_create

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


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


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
