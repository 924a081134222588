"""The init container's model fetcher applies the control plane's fetch policy inside the pod.

`python -m deployer.kubernetes.fetchmodel` runs as a real subprocess, as the pod runs it, against real HTTP
servers on loopback. Every attempt to reach an address the policy refuses (loopback, the cloud's metadata
address, private networks, through a redirect too), to read a local file, or to take more than the limit
exits non-zero with a message saying why, and leaves the pod's model directory empty; where a server stands
behind the refused address, it asserts the server was never asked. The rendered init container carries the
cluster's policy (its settings, else the control plane's FERRY_FETCH_*), and its exact arguments run.
"""

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployer.kubernetes.render import render
from services.models import ClusterGrant, Project
from services.writes.clusters import cluster_register
from tests.api.conftest import api_client_for, make_member
from tests.kubernetes.conftest import fake  # noqa: F401 -- fixture
from tests.kubernetes.helpers import cluster, desired_for
from tests.kubernetes.test_driver import kubeconfig

REPO = Path(__file__).resolve().parents[2]
MODEL = b"onnx-bytes"  # 10 bytes


class _Handler(BaseHTTPRequestHandler):
    redirects: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 -- the http.server API
        self.server.hits.append(self.path)
        target = self.server.redirects.get(self.path)
        if target:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(MODEL)))
        self.end_headers()
        self.wfile.write(MODEL)

    def log_message(self, *args):
        pass


def _server(host: str, redirects: dict[str, str] | None = None):
    server = ThreadingHTTPServer((host, 0), _Handler)
    server.hits, server.redirects = [], redirects or {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers():
    other = _server("127.0.0.2")  # loopback too, but not in 127.0.0.1/32
    other_url = f"http://127.0.0.2:{other.server_address[1]}"
    main = _server("127.0.0.1", {"/to-private/model.onnx": "http://10.255.255.1/model.onnx",
                                 "/to-metadata/model.onnx": "http://169.254.169.254/latest/meta-data/",
                                 "/to-other-loopback/model.onnx": f"{other_url}/model.onnx",
                                 "/to-ipv6-loopback/model.onnx": "http://[::1]:9/model.onnx"})
    yield main, f"http://127.0.0.1:{main.server_address[1]}", other
    for server in (main, other):
        server.shutdown()
        server.server_close()


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "deployer.kubernetes.fetchmodel", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


NON_PUBLIC = "non-public address"
# (what the attempt is, extra arguments, the path on the main server or a full URL, what the refusal says).
ATTEMPTS = [
    ("loopback by default", [], "/model.onnx", NON_PUBLIC),
    ("localhost by name", [], "http://localhost:{port}/model.onnx", NON_PUBLIC),
    ("IPv6 loopback", [], "http://[::1]:{port}/model.onnx", NON_PUBLIC),
    ("the metadata address", [], "http://169.254.169.254/latest/meta-data/", NON_PUBLIC),
    ("a private address", [], "http://10.0.0.1/model.onnx", NON_PUBLIC),
    ("a redirect to a private address", ["--allow-network", "127.0.0.1/32"], "/to-private/model.onnx", NON_PUBLIC),
    ("a redirect to the metadata address", ["--allow-network", "127.0.0.1/32"], "/to-metadata/model.onnx",
     NON_PUBLIC),
    ("a redirect to a loopback address not listed", ["--allow-network", "127.0.0.1/32"],
     "/to-other-loopback/model.onnx", NON_PUBLIC),
    ("a redirect to IPv6 loopback", ["--allow-network", "127.0.0.1/32"], "/to-ipv6-loopback/model.onnx",
     NON_PUBLIC),
    ("more than the size limit", ["--allow-network", "127.0.0.0/8", "--max-bytes", "5"], "/model.onnx",
     "size limit"),
    ("a file URL", ["--allow-network", "127.0.0.0/8"], "file:///etc/passwd", "never fetched in a pod"),
    ("a node path", ["--allow-network", "127.0.0.0/8"], "/etc/passwd", "never fetched in a pod"),
    ("an S3 endpoint at the metadata address", ["--s3-endpoint", "http://169.254.169.254"], "s3://bucket/model",
     NON_PUBLIC),
]


@pytest.mark.parametrize(("what", "extra", "source", "says"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_a_source_the_policy_refuses_is_never_fetched(servers, tmp_path, what, extra, source, says):
    main, base, other = servers
    on_main = source.startswith(("/model", "/to-"))
    url = f"{base}{source}" if on_main else source.replace("{port}", str(main.server_address[1]))
    target = tmp_path / "models"
    target.mkdir()
    done = _run("--cache", str(tmp_path / "cache"), *extra, "--fetch", url, str(target))
    assert done.returncode == 1, (what, done.stdout, done.stderr)
    assert says in done.stderr, done.stderr
    assert list(target.iterdir()) == []
    assert other.hits == []  # the loopback server behind a refused redirect was never asked
    if not extra:
        assert main.hits == []  # refused before connecting, not after reading


def test_a_listed_network_is_fetched_and_redirects_within_it_too(servers, tmp_path):
    _, base, other = servers
    done = _run("--cache", str(tmp_path / "cache"), "--allow-network", "127.0.0.0/8", "--max-bytes", "10",
                "--timeout-seconds", "30", "--fetch", f"{base}/to-other-loopback/model.onnx", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / "model.onnx").read_bytes() == MODEL and other.hits == ["/model.onnx"]


@pytest.mark.parametrize("args", [["--allow-network", "everything"], ["--max-bytes", "0"],
                                  ["--timeout-seconds", "-1"]])
def test_a_malformed_policy_argument_stops_the_pod(tmp_path, args):
    done = _run("--cache", str(tmp_path / "cache"), *args, "--fetch", "http://models.test/m", str(tmp_path / "m"))
    assert done.returncode == 2 and "fetchmodel:" in done.stderr
    assert not (tmp_path / "m").exists()


def _init(manifests: list[dict]) -> dict:
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return init


def _doc(url: str) -> dict:
    return {"name": "fetch_me", "processor": "onnx", "model_path": url,
            "metadata": {"instance": 1, "cpu": 1, "memory": 512}}


@pytest.mark.parametrize("allowed", [(), ("127.0.0.0/8",)])
def test_the_rendered_init_container_runs_under_the_clusters_policy(servers, tmp_path, allowed):
    """The init container's own arguments, with the pod's directories moved to tmp_path, run as the pod would."""
    _, base, _ = servers
    init = _init(render(desired_for(_doc(f"{base}/model.onnx"), cluster=cluster(fetch_allowed_networks=allowed))))
    assert init["command"] == ["python", "-m", "deployer.kubernetes.fetchmodel"]
    args = [str(tmp_path / a.lstrip("/")) if a.startswith("/mnt/") else a for a in init["args"]]
    done = _run(*args)
    target = tmp_path / "mnt" / "models"
    if allowed:
        assert done.returncode == 0, done.stderr
        assert (target / "model.onnx").read_bytes() == MODEL
    else:
        assert done.returncode == 1 and NON_PUBLIC in done.stderr
        assert not target.exists() or list(target.iterdir()) == []


@pytest.mark.django_db
def test_the_dry_run_shows_the_clusters_fetch_policy_else_the_control_planes(fake, settings):  # noqa: F811
    settings.FERRY_FETCH_ALLOWED_NETWORKS = ["192.168.7.0/24"]
    settings.FERRY_FETCH_MAX_BYTES = 1234
    settings.FERRY_FETCH_TIMEOUT_SECONDS = 99
    own = {"fetch_allowed_networks": ["10.8.0.0/16"], "fetch_max_bytes": 1048576, "fetch_timeout_seconds": 60}
    project = Project.objects.get_or_create(name="team_f")[0]
    for name, given in (("withown", own), ("withdefaults", {})):
        ClusterGrant.objects.create(project=project, cluster=cluster_register(
            actor=None, name=name, kubeconfig=kubeconfig(fake.url), settings=given))
    developer = api_client_for(make_member("dev_f", "team_f"))
    found = {}
    for name in ("withown", "withdefaults"):
        document = {**_doc("http://models.test/model.onnx"), "metadata": {**_doc("")["metadata"], "resource": name}}
        body = developer.post("/api/v2/manifests?WorkspaceId=team_f", document, format="json").json()
        found[name] = _init(body["Manifests"])["args"]
    assert found["withown"][2:8] == ["--allow-network", "10.8.0.0/16", "--max-bytes", "1048576",
                                     "--timeout-seconds", "60"]
    assert found["withdefaults"][2:8] == ["--allow-network", "192.168.7.0/24", "--max-bytes", "1234",
                                          "--timeout-seconds", "99"]
    assert not fake.find("Deployment")
