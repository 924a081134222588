"""The init container's fetcher, run as the pod runs it (a subprocess), on a real HTTP server on loopback."""

import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.onnx").write_bytes(b"onnx-bytes")
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run(*args):
    # The test's server is on loopback, which the fetch policy refuses unless listed (tests/security/
    # test_kubernetes_network.py shows the refusals).
    return subprocess.run([sys.executable, "-m", "deployer.kubernetes.fetchmodel", "--allow-network", "127.0.0.0/8",
                           *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_it_fetches_a_url_into_the_pods_model_directory(model_server, tmp_path):
    done = _run("--cache", str(tmp_path / "cache"), "--fetch", f"{model_server}/model.onnx", str(tmp_path / "models"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "model.onnx").read_bytes() == b"onnx-bytes"


def test_it_fails_with_the_url_and_cause_when_the_model_is_missing(model_server, tmp_path):
    done = _run("--cache", str(tmp_path / "cache"), "--fetch", f"{model_server}/missing.onnx", str(tmp_path / "m"))
    assert done.returncode == 1
    assert "missing.onnx" in done.stderr and "404" in done.stderr
