"""Ferry's built-in model server, run as real processes and called over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris

from processors.demo import IRIS_SAMPLE, digits_v2_request

SETOSA = 0


def test_it_answers_v1_predict_with_the_iris_class(demo_servers):
    response = demo_servers["demo_iris"].post("/v1/models/demo_iris:predict", json={"instances": [IRIS_SAMPLE]})

    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [SETOSA]}


def test_it_classifies_a_batch_of_iris_flowers_like_the_data_set_labels(demo_servers):
    features, classes = load_iris(return_X_y=True)
    picks = [0, 60, 120]  # one of each class
    body = {"instances": features[picks].tolist()}

    response = demo_servers["demo_iris"].post("/v1/models/demo_iris:predict", json=body)

    assert response.json()["predictions"] == classes[picks].tolist()


def test_it_answers_v2_infer_with_the_digit_of_a_digits_image(demo_servers):
    digits = load_digits()
    index = 42

    response = demo_servers["demo_digits"].post("/v2/models/demo_digits/infer", json=digits_v2_request(index))

    assert response.status_code == 200, response.text
    outputs = {output["name"]: output for output in response.json()["outputs"]}
    assert outputs["label"]["data"] == [int(digits.target[index])]
    assert outputs["probabilities"]["shape"] == [1, 10]


def test_it_answers_eas_predict_calls_with_v1_or_v2_bodies(demo_servers):
    iris, digits = demo_servers["demo_iris"], demo_servers["demo_digits"]

    v1 = iris.post("/api/predict/demo_iris", data=json.dumps({"instances": [IRIS_SAMPLE]}))  # no JSON content type
    v2 = digits.post("/api/predict/demo_digits", json=digits_v2_request(0))

    assert v1.status_code == 200, v1.text
    assert v1.json() == {"predictions": [SETOSA]}
    assert v2.status_code == 200, v2.text
    assert {output["name"]: output["data"] for output in v2.json()["outputs"]}["label"] == [0]


def test_it_answers_400_to_a_body_the_model_cannot_use(demo_servers):
    iris = demo_servers["demo_iris"]

    wrong_width = iris.post("/v1/models/demo_iris:predict", json={"instances": [[1.0, 2.0]]})
    not_json = iris.post("/api/predict/demo_iris", data=b"\x00not json")

    assert wrong_width.status_code == 400
    assert "4 features" in wrong_width.json()["error"]
    assert not_json.status_code == 400
    assert "JSON" in not_json.json()["error"]


def test_it_answers_404_for_another_model_name(demo_servers):
    response = demo_servers["demo_iris"].post("/v1/models/demo_digits:predict", json={"instances": [IRIS_SAMPLE]})

    assert response.status_code == 404


def test_it_exposes_prometheus_metrics_per_model(demo_servers):
    iris = demo_servers["demo_iris"]
    iris.post("/v1/models/demo_iris:predict", json={"instances": [IRIS_SAMPLE]})

    response = iris.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'request_predict_seconds_count{model_name="demo_iris"}' in response.text


def test_it_reports_the_model_as_ready_under_the_service_name(demo_servers):
    response = demo_servers["demo_digits"].get("/v2/models/demo_digits/ready")

    assert response.status_code == 200
    assert response.json()["ready"] is True


def test_it_serves_an_xgboost_booster(start_server, tmp_path):
    import xgboost

    features, labels = _two_class_data()
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 2}, xgboost.DMatrix(features, labels), 5)
    booster.save_model(tmp_path / "model.json")
    expected = booster.predict(xgboost.DMatrix(features[:3]))

    server = start_server({"name": "xgb_test", "processor": "xgboost"}, str(tmp_path)).wait_ready()
    response = server.post("/v1/models/xgb_test:predict", json={"instances": features[:3].tolist()})

    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["predictions"], expected, atol=1e-6)


def test_it_serves_a_lightgbm_booster(start_server, tmp_path):
    import lightgbm

    features, labels = _two_class_data()
    dataset = lightgbm.Dataset(features, labels, params={"verbose": -1})
    booster = lightgbm.train({"objective": "binary", "num_leaves": 4, "verbose": -1, "min_data_in_leaf": 5}, dataset, 5)
    booster.save_model(str(tmp_path / "model.txt"))
    expected = booster.predict(features[:3])

    server = start_server({"name": "lgb_test", "processor": "lightgbm"}, str(tmp_path)).wait_ready()
    response = server.post("/v2/models/lgb_test/infer", json=_v2_body(features[:3]))

    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["outputs"][0]["data"], expected, atol=1e-9)


WARM_UP_HANDLER = """
    import json, time
    from pathlib import Path

    calls = None

    def load(model_dir):
        global calls
        calls = Path(model_dir) / "calls.txt"

    def preprocess(body):
        return body["instances"][0] if "instances" in body else body["inputs"][0]["data"]

    def predict(data):
        time.sleep(0.4)  # a slow warm-up, so that a too-early ready would be seen
        with calls.open("a") as file:
            file.write(json.dumps(data) + "\\n")
        return sum(data)
"""


def test_it_becomes_ready_only_after_every_warm_up_request_ran(start_server, tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(WARM_UP_HANDLER))
    warm_up = [{"instances": [[1, 2]]}, {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [3, 4]}]},
               {"instances": [[5, 6]]}]
    (tmp_path / "warm_up.json").write_text(json.dumps(warm_up))
    service_file = {"name": "warm", "processor": "python", "processor_entry": "app.py",
                    "warm_up_data_path": f"file://{tmp_path}/warm_up.json"}

    server = start_server(service_file, str(tmp_path))
    probes_before_ready = 0
    while not server.is_ready():
        assert server.process.poll() is None, server.output()
        probes_before_ready += 1
        time.sleep(0.02)
    calls_when_ready = (tmp_path / "calls.txt").read_text().splitlines()

    assert probes_before_ready > 0
    assert calls_when_ready == ["[1, 2]", "[3, 4]", "[5, 6]"]
    response = server.post("/api/predict/warm", json={"instances": [[10, 20]]})
    assert response.json() == {"predictions": 30}


CLASS_HANDLER = """
    import numpy as np

    class Handler:
        def load(self, model_dir):
            self.scale = 2.0

        def predict(self, body):
            if isinstance(body, bytes):
                return body.upper()
            if "inputs" in body:
                return np.array(body["inputs"][0]["data"]) * self.scale
            return {"doubled": [value * self.scale for value in body["instances"]]}
"""


def test_it_serves_a_handler_class_over_v1_v2_and_raw_bytes(start_server, tmp_path):
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "handler.py").write_text(textwrap.dedent(CLASS_HANDLER))
    service_file = {"name": "doubler", "processor": "python", "processor_entry": "handler.py",
                    "processor_path": f"file://{code_dir}"}

    server = start_server(service_file, None).wait_ready()
    v1 = server.post("/v1/models/doubler:predict", json={"instances": [1, 2]})
    v2 = server.post("/v2/models/doubler/infer", json=_v2_body(np.array([[1.5, 2.5]])))
    raw = server.post("/api/predict/doubler", data=b"hello", headers={"Content-Type": "text/plain"})

    assert v1.json() == {"doubled": [2.0, 4.0]}
    assert v2.json()["outputs"][0]["data"] == [3.0, 5.0]
    assert raw.content == b"HELLO"


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--processor", "sklearn", "--model-dir", "/nonexistent/iris"], "/nonexistent/iris does not exist"),
        (["--processor", "python", "--handler", "/nonexistent/app.py"], "/nonexistent/app.py does not exist"),
    ],
)
def test_it_exits_non_zero_naming_a_missing_model_or_handler(arguments, expected):
    finished = subprocess.run(
        [sys.executable, "-m", "processors.modelserver", "--model-name", "m", "--http-port", "0", *arguments],
        capture_output=True, text=True, timeout=60,
    )

    assert finished.returncode == 1
    assert expected in finished.stderr


def test_it_exits_non_zero_when_a_warm_up_request_fails(demo_models):
    bad_warm_up = demo_models["iris_model"].parent.parent / "bad_warm_up.json"
    bad_warm_up.write_text(json.dumps([{"instances": [[1.0]]}]))

    finished = subprocess.run(
        [sys.executable, "-m", "processors.modelserver", "--model-name", "m", "--processor", "sklearn",
         "--model-dir", str(demo_models["iris_model"].parent), "--warmup-file", str(bad_warm_up), "--http-port", "0"],
        capture_output=True, text=True, timeout=60,
    )

    assert finished.returncode == 1
    assert "warm-up request 0 failed" in finished.stderr


def _two_class_data():
    rng = np.random.default_rng(7)
    features = rng.normal(size=(200, 4)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.float32)
    return features, labels


def _v2_body(rows: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.astype(np.float32).ravel().tolist()}]}
