"""Model fetching against real sources: files, a local HTTP server, and moto's S3 server."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from processors.fetch import ModelFetchError, fetch_model
from tests.processors.helpers import free_port

MODEL_BYTES = b"model weights " * 50_000  # 700 kB: several chunks


# -- local files ---------------------------------------------------------------------------------------


def test_it_uses_a_local_directory_in_place(tmp_path):
    (tmp_path / "model.onnx").write_bytes(MODEL_BYTES)

    assert fetch_model(str(tmp_path), cache_dir=tmp_path / "cache") == tmp_path
    assert fetch_model(tmp_path.as_uri(), cache_dir=tmp_path / "cache") == tmp_path


def test_it_copies_a_local_file_into_the_content_addressed_cache(tmp_path):
    source = tmp_path / "model.joblib"
    source.write_bytes(MODEL_BYTES)
    cache = tmp_path / "cache"

    model_dir = fetch_model(source.as_uri(), cache_dir=cache)

    assert [path.name for path in model_dir.iterdir()] == ["model.joblib"]
    assert (model_dir / "model.joblib").read_bytes() == MODEL_BYTES
    digest = hashlib.sha256(MODEL_BYTES).hexdigest()
    assert (cache / "sha256" / digest).read_bytes() == MODEL_BYTES


def test_it_does_not_copy_an_unchanged_local_file_again(tmp_path):
    source = tmp_path / "model.joblib"
    source.write_bytes(MODEL_BYTES)
    first = fetch_model(str(source), cache_dir=tmp_path / "cache")
    progress = []

    second = fetch_model(str(source), cache_dir=tmp_path / "cache", on_progress=lambda *done: progress.append(done))

    assert second == first
    assert progress == []


def test_it_names_a_missing_local_file(tmp_path):
    with pytest.raises(ModelFetchError, match=r"/nowhere/model.pkl: no such file or directory"):
        fetch_model("/nowhere/model.pkl", cache_dir=tmp_path / "cache")


# -- http(s) -------------------------------------------------------------------------------------------


class ModelHandler(SimpleHTTPRequestHandler):
    """Serves files, counts full downloads by path; /broken/* dies half-way, /slow/* waits first."""

    downloads: Counter

    def do_GET(self):
        if self.path.startswith("/broken/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL_BYTES)))
            self.end_headers()
            self.wfile.write(MODEL_BYTES[:100_000])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection dies before the rest
            self.close_connection = True
            return
        if self.path.startswith("/slow/"):
            time.sleep(0.5)
            self.path = self.path[len("/slow"):]
        super().do_GET()

    def send_response(self, code, message=None):
        if code == 200:
            self.downloads[self.path] += 1
        super().send_response(code, message)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (ModelHandler,), {"downloads": Counter()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.root, server.downloads = root, handler.downloads
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_it_downloads_over_http_with_progress(http_server, tmp_path):
    (http_server.root / "model.onnx").write_bytes(MODEL_BYTES)
    progress = []

    model_dir = fetch_model(f"{http_server.url}/model.onnx", cache_dir=tmp_path / "cache",
                            on_progress=lambda done, total: progress.append((done, total)))

    assert (model_dir / "model.onnx").read_bytes() == MODEL_BYTES
    assert progress[-1] == (len(MODEL_BYTES), len(MODEL_BYTES))
    assert len(progress) >= 1


def test_it_does_not_download_an_unchanged_http_file_again(http_server, tmp_path):
    (http_server.root / "model.onnx").write_bytes(MODEL_BYTES)
    url = f"{http_server.url}/model.onnx"
    first = fetch_model(url, cache_dir=tmp_path / "cache")

    second = fetch_model(url, cache_dir=tmp_path / "cache")

    assert second == first
    assert http_server.downloads["/model.onnx"] == 1


def test_it_downloads_an_http_file_again_when_it_changed(http_server, tmp_path):
    source = http_server.root / "model.onnx"
    source.write_bytes(MODEL_BYTES)
    url = f"{http_server.url}/model.onnx"
    first = fetch_model(url, cache_dir=tmp_path / "cache")
    source.write_bytes(b"new weights")
    later = time.time() + 10  # Last-Modified has a one-second resolution
    os.utime(source, (later, later))

    second = fetch_model(url, cache_dir=tmp_path / "cache")

    assert second != first
    assert (second / "model.onnx").read_bytes() == b"new weights"
    assert (first / "model.onnx").read_bytes() == MODEL_BYTES  # instances on the old model keep it


def test_it_reports_an_http_404_naming_the_url(http_server, tmp_path):
    url = f"{http_server.url}/missing.onnx"

    with pytest.raises(ModelFetchError, match=rf"{url}: the server answered 404"):
        fetch_model(url, cache_dir=tmp_path / "cache")


def test_it_reports_a_refused_connection(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/model.onnx"

    with pytest.raises(ModelFetchError, match=rf"{url}: connection refused"):
        fetch_model(url, cache_dir=tmp_path / "cache")


def test_it_leaves_nothing_in_the_cache_when_a_download_breaks_half_way(http_server, tmp_path):
    cache = tmp_path / "cache"

    with pytest.raises(ModelFetchError, match="broken/model.onnx"):
        fetch_model(f"{http_server.url}/broken/model.onnx", cache_dir=cache)

    for folder in ("sha256", "trees", "index", "tmp"):
        assert list((cache / folder).iterdir()) == [], folder


def test_it_downloads_once_when_two_threads_fetch_the_same_url(http_server, tmp_path):
    (http_server.root / "model.onnx").write_bytes(MODEL_BYTES)
    url = f"{http_server.url}/slow/model.onnx"
    results = []

    threads = [threading.Thread(target=lambda: results.append(fetch_model(url, cache_dir=tmp_path / "cache")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 2 and results[0] == results[1]
    assert (results[0] / "model.onnx").read_bytes() == MODEL_BYTES
    assert http_server.downloads["/model.onnx"] == 1


# -- s3:// and oss:// against moto's S3 server ---------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh bucket on the moto server, and credentials for it in Ferry's variables."""
    monkeypatch.setenv("FERRY_S3_ACCESS_KEY_ID", "ferry-test")
    monkeypatch.setenv("FERRY_S3_SECRET_ACCESS_KEY", "ferry-test-secret")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="ferry-test", aws_secret_access_key="ferry-test-secret")
    bucket = request.node.name.replace("_", "-")[:60].strip("-")
    client.create_bucket(Bucket=bucket)
    client.endpoint, client.bucket = s3_endpoint, bucket
    return client


def test_it_downloads_one_s3_object(s3, tmp_path):
    s3.put_object(Bucket=s3.bucket, Key="iris/model.joblib", Body=MODEL_BYTES)

    model_dir = fetch_model(f"s3://{s3.bucket}/iris/model.joblib", cache_dir=tmp_path / "cache", s3_endpoint=s3.endpoint)

    assert [path.name for path in model_dir.iterdir()] == ["model.joblib"]
    assert (model_dir / "model.joblib").read_bytes() == MODEL_BYTES


def test_it_mirrors_an_oss_prefix_file_by_file(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_S3_ENDPOINT_URL", s3.endpoint)
    files = {"1/model.savedmodel": b"graph", "1/variables/data": MODEL_BYTES, "config.pbtxt": b"name: 'm'"}
    for name, body in files.items():
        s3.put_object(Bucket=s3.bucket, Key=f"models/resnet/{name}", Body=body)
    s3.put_object(Bucket=s3.bucket, Key="models/other/ignored", Body=b"not under the prefix")
    progress = []

    model_dir = fetch_model(f"oss://{s3.bucket}/models/resnet/", cache_dir=tmp_path / "cache",
                            on_progress=lambda done, total: progress.append((done, total)))

    found = {str(path.relative_to(model_dir)): path.read_bytes() for path in model_dir.rglob("*") if path.is_file()}
    assert found == files
    total = sum(len(body) for body in files.values())
    assert progress[-1] == (total, total)


def test_it_reads_a_prefix_given_without_its_trailing_slash(s3, tmp_path):
    s3.put_object(Bucket=s3.bucket, Key="bundle/model.onnx", Body=MODEL_BYTES)

    model_dir = fetch_model(f"s3://{s3.bucket}/bundle", cache_dir=tmp_path / "cache", s3_endpoint=s3.endpoint)

    assert (model_dir / "model.onnx").read_bytes() == MODEL_BYTES


def test_it_does_not_download_unchanged_s3_objects_again(s3, tmp_path):
    s3.put_object(Bucket=s3.bucket, Key="m/a.bin", Body=MODEL_BYTES)
    s3.put_object(Bucket=s3.bucket, Key="m/b.bin", Body=b"bias")
    url, cache = f"s3://{s3.bucket}/m/", tmp_path / "cache"
    first = fetch_model(url, cache_dir=cache, s3_endpoint=s3.endpoint)
    blob = cache / "sha256" / hashlib.sha256(MODEL_BYTES).hexdigest()
    inode = blob.stat().st_ino
    s3.put_object(Bucket=s3.bucket, Key="m/b.bin", Body=b"new bias")
    progress = []

    second = fetch_model(url, cache_dir=cache, s3_endpoint=s3.endpoint, on_progress=lambda *p: progress.append(p))
    third = fetch_model(url, cache_dir=cache, s3_endpoint=s3.endpoint, on_progress=lambda *p: progress.append(p))

    assert second != first and third == second
    assert (second / "b.bin").read_bytes() == b"new bias"
    assert progress == [(len(b"new bias"), len(b"new bias"))]  # only the changed object came over
    assert blob.stat().st_ino == inode


def test_it_names_a_missing_bucket_and_a_missing_object(s3, tmp_path):
    with pytest.raises(ModelFetchError, match=r"s3://no-such-bucket-here/m.onnx: no such bucket no-such-bucket-here"):
        fetch_model("s3://no-such-bucket-here/m.onnx", cache_dir=tmp_path / "cache", s3_endpoint=s3.endpoint)
    with pytest.raises(ModelFetchError, match=rf"s3://{s3.bucket}/absent.onnx: no such object"):
        fetch_model(f"s3://{s3.bucket}/absent.onnx", cache_dir=tmp_path / "cache", s3_endpoint=s3.endpoint)
    with pytest.raises(ModelFetchError, match="no objects under this prefix"):
        fetch_model(f"s3://{s3.bucket}/empty/", cache_dir=tmp_path / "cache", s3_endpoint=s3.endpoint)


def test_it_reports_an_unreachable_s3_endpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_S3_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("FERRY_S3_SECRET_ACCESS_KEY", "y")
    endpoint = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(ModelFetchError, match=rf"cannot connect to the S3 endpoint {endpoint}"):
        fetch_model("s3://bucket/model.onnx", cache_dir=tmp_path / "cache", s3_endpoint=endpoint)


def test_it_downloads_once_when_two_processes_fetch_the_same_s3_object(s3, tmp_path):
    import subprocess
    import sys

    s3.put_object(Bucket=s3.bucket, Key="shared/model.onnx", Body=MODEL_BYTES)
    script = (
        "import sys; from pathlib import Path; from processors.fetch import fetch_model; "
        "done = []; "
        "print(fetch_model(sys.argv[1], cache_dir=Path(sys.argv[2]), s3_endpoint=sys.argv[3], "
        "on_progress=lambda d, t: done.append(d)), bool(done))"
    )
    argv = [sys.executable, "-c", script, f"s3://{s3.bucket}/shared/model.onnx", str(tmp_path / "cache"), s3.endpoint]
    root = Path(__file__).resolve().parents[2]
    processes = [subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=60)[0].split() for process in processes]

    assert [process.returncode for process in processes] == [0, 0]
    assert outputs[0][0] == outputs[1][0]
    assert sorted(output[1] for output in outputs) == ["False", "True"]  # one downloaded, one found it cached
