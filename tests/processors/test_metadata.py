"""V2 model metadata (`GET /v2/models/<name>`) of every built-in processor, from real model servers over HTTP:
what each reports, that it describes what the server reads and answers, and that an Open Inference Protocol
client (tritonclient) can build its requests from it alone, directly and through Ferry's gateway."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from sklearn.datasets import load_digits, load_iris
from tritonclient.utils import triton_to_np_dtype

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DECLARING_HANDLER = """
    INPUT_WIDTH = None

    def load(model_dir):
        global INPUT_WIDTH
        INPUT_WIDTH = 3  # what a handler learns from its model

    inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]

    def outputs():
        return [{"name": "scores", "datatype": "FP32", "shape": [-1, INPUT_WIDTH]}]

    def predict(body):
        rows = len(body["inputs"][0]["data"])
        return {"outputs": [{"name": "scores", "datatype": "FP32", "shape": [rows, 3], "data": [0.5] * (rows * 3)}]}
"""
PLAIN_HANDLER = """
    def predict(body):
        return [1, 2]
"""


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    features, classes = load_iris(return_X_y=True)
    return pd.DataFrame(features, columns=IRIS_COLUMNS), classes


def train_named_sklearn(directory) -> None:
    """A pipeline fitted on a DataFrame (so it knows its feature names) with text labels."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, classes = iris_frame()
    names = np.array(["setosa", "versicolor", "virginica"])[classes]
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(frame, names),
                directory / "model.joblib")


def train_named_xgboost(directory) -> None:
    import xgboost

    frame, classes = iris_frame()
    data = xgboost.DMatrix(frame.to_numpy(np.float32), classes, feature_names=IRIS_COLUMNS)
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2}, data, 5)
    booster.save_model(directory / "model.json")


def train_lightgbm(directory) -> None:
    import lightgbm

    features, classes = load_iris(return_X_y=True)
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 4, "verbose": -1, "min_data_in_leaf": 5}
    lightgbm.train(params, lightgbm.Dataset(features, classes, params={"verbose": -1}), 5).save_model(
        str(directory / "model.txt"))


def write_handler(directory, code: str) -> None:
    (directory / "handler.py").write_text(textwrap.dedent(code))


MODELS = {  # name -> (processor, how to make its model directory)
    "sk_named": ("sklearn", train_named_sklearn),
    "xgb_named": ("xgboost", train_named_xgboost),
    "lgb_plain": ("lightgbm", train_lightgbm),
    "handler_declaring": ("python", lambda directory: write_handler(directory, DECLARING_HANDLER)),
    "handler_plain": ("python", lambda directory: write_handler(directory, PLAIN_HANDLER)),
}


@pytest.fixture(scope="module")
def servers(demo_servers, start_server, tmp_path_factory):
    """The demo servers, and a server per MODELS entry; all started at once, then waited for together."""
    started = dict(demo_servers)
    for name, (processor, make) in MODELS.items():
        directory = tmp_path_factory.mktemp(name)
        make(directory)
        if processor == "python":
            service_file = {"name": name, "processor": "python", "processor_entry": "handler.py",
                            "processor_path": f"file://{directory}"}
            started[name] = start_server(service_file, None)
        else:
            started[name] = start_server({"name": name, "processor": processor}, str(directory))
    for server in started.values():
        server.wait_ready()
    return started


def tensors(*specs) -> list[dict]:
    return [{"name": name, "datatype": datatype, "shape": shape} for name, datatype, shape in specs]


EXPECTED = {
    "demo_digits": ("onnxruntime_onnx", tensors(("input", "FP32", [-1, 64])),
                    tensors(("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 10]))),
    "demo_iris": ("sklearn", tensors(("input-0", "FP64", [-1, 4])), tensors(("output-0", "INT64", [-1]))),
    "sk_named": ("sklearn", tensors(*((name, "FP64", [-1]) for name in IRIS_COLUMNS)),
                 tensors(("output-0", "BYTES", [-1]))),
    "xgb_named": ("xgboost", tensors(*((name, "FP32", [-1]) for name in IRIS_COLUMNS)),
                  tensors(("output-0", "FP32", [-1, 3]))),
    "lgb_plain": ("lightgbm", tensors(("input-0", "FP64", [-1, 4])), tensors(("output-0", "FP64", [-1, 3]))),
    "handler_declaring": ("python", tensors(("text", "BYTES", [-1])), tensors(("scores", "FP32", [-1, 3]))),
    "handler_plain": ("python", [], []),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_it_reports_the_platform_inputs_and_outputs_of_each_processor(servers, name):
    platform, inputs, outputs = EXPECTED[name]

    response = servers[name].get(f"/v2/models/{name}")

    assert response.status_code == 200, response.text
    assert {key: response.json()[key] for key in ("name", "platform", "inputs", "outputs")} == {
        "name": name, "platform": platform, "inputs": inputs, "outputs": outputs}


def v2_request_from_metadata(metadata: dict, frame: pd.DataFrame) -> dict:
    """A V2 JSON request built from the metadata alone: a matrix input takes every column of `frame`, a
    column input ([-1]) the column of its name."""
    inputs = []
    for spec in metadata["inputs"]:
        values = frame[spec["name"]].to_numpy() if spec["shape"] == [-1] else frame.to_numpy()
        shape = [len(frame) if dim == -1 else dim for dim in spec["shape"]]
        data = values.astype(triton_to_np_dtype(spec["datatype"])).reshape(shape)
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape,
                       "data": data.ravel().tolist()})
    return {"inputs": inputs}


def conforms(output: dict, spec: dict, rows: int) -> bool:
    expected_shape = [rows if dim == -1 else dim for dim in spec["shape"]]
    return (output["name"], output["datatype"], output["shape"]) == (spec["name"], spec["datatype"], expected_shape)


@pytest.mark.parametrize("name, frame", [
    ("demo_iris", iris_frame()[0].iloc[[0, 60, 120]]),
    ("sk_named", iris_frame()[0].iloc[[0, 60, 120]]),
    ("xgb_named", iris_frame()[0].iloc[[0, 60, 120]]),
    ("lgb_plain", iris_frame()[0].iloc[[0, 60, 120]]),
    ("demo_digits", pd.DataFrame(load_digits().data[[5, 6]])),
])
def test_a_request_built_from_the_metadata_gets_outputs_as_the_metadata_describes(servers, name, frame):
    metadata = servers[name].get(f"/v2/models/{name}").json()

    response = servers[name].post(f"/v2/models/{name}/infer", json=v2_request_from_metadata(metadata, frame))

    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert len(outputs) == len(metadata["outputs"])
    assert all(conforms(output, spec, len(frame)) for output, spec in zip(outputs, metadata["outputs"])), outputs


def test_named_features_are_read_by_name_whatever_their_order(servers):
    frame, classes = iris_frame()
    rows = frame.iloc[[0, 60, 120]]
    shuffled = rows[list(reversed(IRIS_COLUMNS))]  # columns sent in another order than the model's

    sklearn = servers["sk_named"].post("/v2/models/sk_named/infer", json=v2_columns(shuffled, "FP64"))
    xgboost = servers["xgb_named"].post("/v2/models/xgb_named/infer", json=v2_columns(shuffled, "FP32"))

    assert sklearn.json()["outputs"][0]["data"] == ["setosa", "versicolor", "virginica"]
    probabilities = np.reshape(xgboost.json()["outputs"][0]["data"], (3, 3))
    assert probabilities.argmax(axis=1).tolist() == classes[[0, 60, 120]].tolist()


def test_a_named_xgboost_booster_still_takes_a_plain_matrix(servers):
    """xgboost refuses a DMatrix without the names its booster has: the server gives them to the matrix."""
    frame, classes = iris_frame()

    response = servers["xgb_named"].post("/v1/models/xgb_named:predict",
                                         json={"instances": frame.iloc[[0, 60, 120]].to_numpy().tolist()})

    assert response.status_code == 200, response.text
    assert np.argmax(response.json()["predictions"], axis=1).tolist() == classes[[0, 60, 120]].tolist()


def v2_columns(frame: pd.DataFrame, datatype: str) -> dict:
    return {"inputs": [{"name": column, "datatype": datatype, "shape": [len(frame)],
                        "data": frame[column].tolist()} for column in frame.columns]}


def test_a_handler_declaring_something_wrong_stops_the_server_naming_it(tmp_path):
    write_handler(tmp_path, """
        inputs = [{"name": "x", "datatype": "FLOAT", "shape": [-1]}]

        def predict(body):
            return body
    """)

    finished = subprocess.run(
        [sys.executable, "-m", "processors.modelserver", "--model-name", "m", "--processor", "python",
         "--handler", str(tmp_path / "handler.py"), "--http-port", "0"],
        capture_output=True, text=True, timeout=60,
    )

    assert finished.returncode == 1
    assert "inputs [0] has datatype 'FLOAT'" in finished.stderr
