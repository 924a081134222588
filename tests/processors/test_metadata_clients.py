"""An Open Inference Protocol client that knows nothing of a model but its name: it reads the V2 metadata
with tritonclient and builds its request from the reported names, datatypes and shapes alone. Against
Ferry's model server directly, and through Ferry's gateway (routes written to Redis as the control plane
publishes them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from sklearn.datasets import load_digits
from tritonclient.utils import triton_to_np_dtype

from tests.gateway.conftest import Routes, start_gateway


def concrete(shape: list[int], rows: int) -> list[int]:
    """The metadata's shape for a batch of `rows`: -1 is the batch dimension."""
    return [rows if dim == -1 else dim for dim in shape]


def infer_matrix(client, model: str, matrix: np.ndarray, binary: bool, headers=None) -> dict:
    """Feeds `matrix` to the model's one input and asks for every output, all as the metadata says."""
    metadata = client.get_model_metadata(model, headers=headers)
    (spec,) = metadata["inputs"]
    shape = concrete(spec["shape"], len(matrix))
    tensor = triton.InferInput(spec["name"], shape, spec["datatype"])
    tensor.set_data_from_numpy(matrix.reshape(shape).astype(triton_to_np_dtype(spec["datatype"])), binary_data=binary)
    return _infer(client, model, metadata, [tensor], len(matrix), binary, headers)


def infer_columns(client, model: str, frame: pd.DataFrame, binary: bool) -> dict:
    """Feeds each input the column of `frame` it is named after."""
    metadata = client.get_model_metadata(model)
    tensors = []
    for spec in metadata["inputs"]:
        tensor = triton.InferInput(spec["name"], concrete(spec["shape"], len(frame)), spec["datatype"])
        values = frame[spec["name"]].to_numpy().astype(triton_to_np_dtype(spec["datatype"]))
        tensor.set_data_from_numpy(values, binary_data=binary)
        tensors.append(tensor)
    return _infer(client, model, metadata, tensors, len(frame), binary, None)


def _infer(client, model, metadata, tensors, rows: int, binary: bool, headers) -> dict:
    """{output name: (datatype as answered, array)}, checked against what the metadata promised."""
    outputs = [triton.InferRequestedOutput(spec["name"], binary_data=binary) for spec in metadata["outputs"]]
    # tritonclient sends no Content-Type: the model server reads JSON bodies only when told so.
    extra = {} if binary else {"Content-Type": "application/json"}
    result = client.infer(model, tensors, outputs=outputs, headers={**(headers or {}), **extra})
    answered = {output["name"]: output for output in result.get_response()["outputs"]}
    for spec in metadata["outputs"]:
        assert answered[spec["name"]]["datatype"] == spec["datatype"]
        assert list(result.as_numpy(spec["name"]).shape) == concrete(spec["shape"], rows)
    return {name: result.as_numpy(name) for name in answered}


DIGITS = [3, 7, 42]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_client_reading_only_the_metadata_gets_the_digit_from_the_model_server(demo_servers, binary):
    digits = load_digits()
    client = triton.InferenceServerClient(url=f"127.0.0.1:{demo_servers['demo_digits'].port}")

    outputs = infer_matrix(client, "demo_digits", digits.data[DIGITS], binary)

    assert outputs["label"].ravel().tolist() == digits.target[DIGITS].tolist()
    assert outputs["probabilities"].argmax(axis=1).tolist() == digits.target[DIGITS].tolist()


def test_a_client_reading_only_the_metadata_sends_named_columns(start_server, tmp_path):
    import xgboost
    from sklearn.datasets import load_iris

    features, classes = load_iris(return_X_y=True)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    data = xgboost.DMatrix(features.astype(np.float32), classes, feature_names=names)
    xgboost.train({"objective": "multi:softmax", "num_class": 3, "max_depth": 2}, data, 5).save_model(
        tmp_path / "model.json")
    server = start_server({"name": "iris_xgb", "processor": "xgboost"}, str(tmp_path)).wait_ready()
    picks = [0, 60, 120]
    frame = pd.DataFrame(features[picks], columns=names)[list(reversed(names))]
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")

    outputs = infer_columns(client, "iris_xgb", frame, binary=True)

    assert outputs["output-0"].tolist() == classes[picks].tolist()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    running = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield running
    running.stop()


def test_a_client_reading_only_the_metadata_gets_the_digit_through_the_gateway(demo_servers, gateway):
    server = demo_servers["demo_digits"]
    routes = Routes(gateway)
    routes.put("demo_digits", [(1, 100, [{"name": "demo-digits-0", "address": f"127.0.0.1:{server.port}"}])])
    try:
        client = triton.InferenceServerClient(url=f"127.0.0.1:{gateway.port}")
        headers = {"Authorization": "token-of-demo_digits"}  # Routes.entry seals this default token
        digits = load_digits()

        through_gateway = client.get_model_metadata("demo_digits", headers=dict(headers))
        outputs = infer_matrix(client, "demo_digits", digits.data[DIGITS], binary=True, headers=headers)
    finally:
        routes.remove_all()

    direct = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}").get_model_metadata("demo_digits")
    assert through_gateway == direct
    assert outputs["label"].ravel().tolist() == digits.target[DIGITS].tolist()
