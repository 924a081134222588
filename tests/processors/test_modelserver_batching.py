"""Server-side batching (metadata.rpc.batching) in Ferry's model server, run as real processes.

Model calls are counted by the server's own `ferry_batch_size` histogram on /metrics (one observation per
call of the model, its value the requests served by it). Each batched server waits long for a batch
(BATCH_WAIT_MS), so requests sent together meet in one batch whatever the machine's speed; a batch that
fills up goes at once, so only the tests that show the timeout wait for it.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris

from processors.demo import demo_service_files
from processors.fetch import fetch_model
from processors.modelserver import DEFAULT_MAX_BATCH_TIMEOUT_MS
from processors.registry import local_launch

BATCH_ROWS = 8
BATCH_WAIT_MS = 3000


@pytest.fixture(scope="module")
def batched(demo_models, start_server, tmp_path_factory):
    """demo_iris (sklearn) and demo_digits (onnx) with batching on: up to BATCH_ROWS rows per call."""
    cache_dir = tmp_path_factory.mktemp("model-cache")
    servers = {}
    for service_file in demo_service_files(demo_models):
        model_dir = fetch_model(service_file["model_path"], cache_dir=cache_dir)
        service_file = {**service_file, "warm_up_data_path": None,  # a warm-up of one would wait for BATCH_WAIT_MS
                        "metadata": {**service_file["metadata"], "rpc": {
                            "batching": True, "max_batch_size": BATCH_ROWS, "max_batch_timeout": BATCH_WAIT_MS}}}
        servers[service_file["name"]] = start_server(service_file, str(model_dir))
    for server in servers.values():
        server.wait_ready()
    return servers


def model_calls(server, model: str) -> tuple[int, int]:
    """(model calls, requests served by them) so far, from the server's /metrics."""
    text = server.get("/metrics").text

    def value(series: str) -> int:
        found = re.search(rf'^{series}{{model="{model}"}} ([0-9.e+]+)$', text, re.MULTILINE)
        return int(float(found.group(1))) if found else 0

    return value("ferry_batch_size_count"), value("ferry_batch_size_sum")


def send_together(server, calls: list[tuple[str, dict]]) -> list:
    """POST every (path, kwargs) at once, each on its own connection; the responses in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: server.post(call[0], **call[1]), calls))


def iris_rows(count: int, start: int = 0) -> list[list[float]]:
    features, _ = load_iris(return_X_y=True)
    picks = [(start + 37 * i) % len(features) for i in range(count)]
    return features[picks].tolist()


def digits_v2(rows: list[list[float]]) -> dict:
    return {"inputs": [{"name": "input", "shape": [len(rows), 64], "datatype": "FP32",
                        "data": [value for row in rows for value in row]}]}


def test_concurrent_v1_requests_share_one_model_call_and_each_gets_its_own_rows(batched, demo_servers):
    iris = batched["demo_iris"]
    bodies = [{"instances": [row]} for row in iris_rows(BATCH_ROWS)]
    calls_before, served_before = model_calls(iris, "demo_iris")

    answers = send_together(iris, [("/v1/models/demo_iris:predict", {"json": body}) for body in bodies])

    alone = [demo_servers["demo_iris"].post("/v1/models/demo_iris:predict", json=body).json() for body in bodies]
    assert [answer.status_code for answer in answers] == [200] * BATCH_ROWS
    assert [answer.json() for answer in answers] == alone
    calls, served = model_calls(iris, "demo_iris")
    assert (calls - calls_before, served - served_before) == (1, BATCH_ROWS)


def test_v2_and_eas_bodies_of_several_rows_get_their_own_outputs_with_their_shape(batched, demo_servers):
    digits = batched["demo_digits"]
    images = load_digits().data.tolist()
    requests = [digits_v2(images[0:3]), digits_v2(images[3:4]), digits_v2(images[4:8])]  # 3 + 1 + 4 = 8 rows
    paths = ["/v2/models/demo_digits/infer", "/api/predict/demo_digits", "/v2/models/demo_digits/infer"]
    calls_before, _ = model_calls(digits, "demo_digits")

    answers = send_together(digits, [(path, {"json": body}) for path, body in zip(paths, requests)])

    assert [answer.status_code for answer in answers] == [200, 200, 200], [a.text for a in answers]
    assert model_calls(digits, "demo_digits")[0] - calls_before == 1
    for path, body, answer in zip(paths, requests, answers):
        expected = demo_servers["demo_digits"].post(path, json=body).json()["outputs"]
        outputs = {output["name"]: output for output in answer.json()["outputs"]}
        rows = body["inputs"][0]["shape"][0]
        assert outputs["label"]["shape"] == [rows]
        assert outputs["probabilities"]["shape"] == [rows, 10]
        for output in expected:
            assert np.allclose(outputs[output["name"]]["data"], output["data"])


def test_the_timeout_sends_a_partial_batch(batched):
    iris = batched["demo_iris"]
    calls_before, served_before = model_calls(iris, "demo_iris")

    answer = iris.post("/api/predict/demo_iris", json={"instances": iris_rows(2)})  # 2 rows of 8: never full

    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    calls, served = model_calls(iris, "demo_iris")
    assert (calls - calls_before, served - served_before) == (1, 1)


def test_max_batch_size_splits_the_requests_into_calls_of_at_most_that_many_rows(batched, demo_servers):
    iris = batched["demo_iris"]
    bodies = [{"instances": iris_rows(4, start=i)} for i in range(4)]  # 16 rows: two full calls of 8
    calls_before, served_before = model_calls(iris, "demo_iris")

    answers = send_together(iris, [("/v1/models/demo_iris:predict", {"json": body}) for body in bodies])

    alone = [demo_servers["demo_iris"].post("/v1/models/demo_iris:predict", json=body).json() for body in bodies]
    assert [answer.json() for answer in answers] == alone
    calls, served = model_calls(iris, "demo_iris")
    assert (calls - calls_before, served - served_before) == (2, 4)


def test_a_request_that_cannot_join_fails_alone_and_the_others_are_answered(batched, demo_servers):
    iris = batched["demo_iris"]
    good = [{"instances": [row]} for row in iris_rows(BATCH_ROWS, start=5)]
    calls = [("/v1/models/demo_iris:predict", {"json": body}) for body in good]
    calls.insert(3, ("/v1/models/demo_iris:predict", {"json": {"instances": [[1.0, 2.0]]}}))  # 2 features of 4
    calls.insert(6, ("/api/predict/demo_iris", {"data": b"\x00not json"}))

    answers = send_together(iris, calls)

    wrong_width, not_json = answers.pop(3), answers.pop(5)
    assert wrong_width.status_code == 400 and "4 features" in wrong_width.json()["error"]
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    alone = [demo_servers["demo_iris"].post("/v1/models/demo_iris:predict", json=body).json() for body in good]
    assert [answer.json() for answer in answers] == alone


def test_without_batching_every_request_is_its_own_model_call(demo_servers):
    iris = demo_servers["demo_iris"]
    bodies = [{"instances": [row]} for row in iris_rows(4)]

    answers = send_together(iris, [("/v1/models/demo_iris:predict", {"json": body}) for body in bodies])

    assert [answer.status_code for answer in answers] == [200] * 4
    assert "ferry_batch_size_count" not in iris.get("/metrics").text


def test_a_local_service_with_batching_is_launched_with_the_flags_and_batches(batched, demo_models):
    service_file = next(f for f in demo_service_files(demo_models) if f["name"] == "demo_iris")
    service_file["metadata"]["rpc"] = {"batching": True, "max_batch_size": BATCH_ROWS}

    argv = local_launch(service_file, service_name="demo_iris", model_dir="/models/iris", python="python").argv

    assert argv[argv.index("--max-batch-size") + 1] == str(BATCH_ROWS)
    assert argv[argv.index("--max-batch-timeout-ms") + 1] == str(DEFAULT_MAX_BATCH_TIMEOUT_MS)
    server = batched["demo_iris"]
    server.output()  # flushes the log
    assert f"batching requests: up to {BATCH_ROWS} rows per model call" in server.log_path.read_text()


def _boosters(framework: str, directory):
    """A small two-class booster saved in `directory`, and its own predict."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.float32)
    if framework == "xgboost":
        import xgboost

        booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2}, xgboost.DMatrix(features, labels), 5)
        booster.save_model(directory / "model.json")
        return features, lambda rows: booster.predict(xgboost.DMatrix(rows))
    import lightgbm

    booster = lightgbm.train({"objective": "binary", "num_leaves": 4, "verbose": -1, "min_data_in_leaf": 5},
                             lightgbm.Dataset(features, labels, params={"verbose": -1}), 5)
    booster.save_model(str(directory / "model.txt"))
    return features, booster.predict


def _v2(rows: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_boosters_batch_v1_v2_and_eas_requests_and_each_gets_its_own_rows(framework, start_server, tmp_path):
    features, predict = _boosters(framework, tmp_path)
    name = f"{framework}_batched"
    service_file = {"name": name, "processor": framework, "metadata": {"rpc": {
        "batching": True, "max_batch_size": 6, "max_batch_timeout": BATCH_WAIT_MS}}}
    server = start_server(service_file, str(tmp_path)).wait_ready()
    # V1 and EAS V1 bodies meet in one full call (2 + 4 rows); the V2 ones, FP32 tensors, in another (3 + 3).
    chunks = [features[0:2], features[2:6], features[6:9], features[9:12]]
    calls = [(f"/v1/models/{name}:predict", {"json": {"instances": chunks[0].tolist()}}),
             (f"/api/predict/{name}", {"data": json.dumps({"instances": chunks[1].tolist()})}),
             (f"/v2/models/{name}/infer", {"json": _v2(chunks[2])}),
             (f"/api/predict/{name}", {"json": _v2(chunks[3])})]

    answers = send_together(server, calls)

    assert [answer.status_code for answer in answers] == [200] * 4, [answer.text for answer in answers]
    for chunk, answer in zip(chunks[:2], answers[:2]):
        assert np.allclose(answer.json()["predictions"], predict(chunk), atol=1e-6)
    for chunk, answer in zip(chunks[2:], answers[2:]):
        assert answer.json()["outputs"][0]["shape"] == [3]
        assert np.allclose(answer.json()["outputs"][0]["data"], predict(chunk), atol=1e-6)
    assert model_calls(server, name) == (2, 4)
