"""The built-in processors as kserve Models: sklearn, xgboost, lightgbm, onnx.

Each loads one model file from the model directory and turns a request into a
numpy array: V1 `{"instances": [[...], ...]}` -> `{"predictions": [...]}`, V2
(Open Inference Protocol) InferRequest -> InferResponse. Frameworks are
imported when a model loads, so a server imports only the one it serves.

Predictions run in a thread pool (rpc.worker_threads threads), not on the
event loop, so a slow prediction does not stall health checks or /metrics.
"""

from __future__ import annotations

import abc

import asyncio
from concurrent.futures import Executor
from pathlib import Path

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid, get_predict_input, get_predict_response

from .protocol import as_json_request


class ModelFileError(Exception):
    """The model directory does not hold one model file this processor reads."""


def find_model_file(model_dir: str, model_entry: str | None, extensions: tuple[str, ...]) -> Path:
    """The model file: `model_entry` inside `model_dir`, or else the one file in
    it (searched recursively) whose name ends with one of `extensions`.
    `model_dir` may also be the model file itself."""
    root = Path(model_dir)
    if not root.exists():
        raise ModelFileError(f"model directory {root} does not exist")
    if root.is_file():
        return root
    if model_entry:
        entry = root / model_entry
        if not entry.is_file():
            raise ModelFileError(f"model_entry {model_entry} is not a file in {root}")
        return entry
    found = sorted(path for path in root.rglob("*") if path.is_file() and path.name.endswith(extensions))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise ModelFileError(
            f"{root} holds {what} model files ending with {', '.join(extensions)}; "
            "exactly one is needed, or name it with model_entry"
        )
    return found[0]


class FerryModel(kserve.Model):
    """A model read from one file. Subclasses set `extensions` and implement
    `read(path)` and `run(inputs) -> ndarray`."""

    extensions: tuple[str, ...] = ()

    def __init__(self, name: str, *, model_dir: str, model_entry: str | None, executor: Executor):
        super().__init__(name)
        self.model_dir = model_dir
        self.model_entry = model_entry
        self.executor = executor
        self.model_file: Path | None = None

    def load(self) -> bool:
        self.model_file = find_model_file(self.model_dir, self.model_entry, self.extensions)
        self.read(self.model_file)
        self.ready = True
        return self.ready

    @abc.abstractmethod
    def read(self, path: Path) -> None:
        """Loads the model file (each processor knows its format)."""

    @abc.abstractmethod
    def run(self, inputs: np.ndarray):
        """Predicts for a batch of inputs."""

    async def predict(self, payload, headers=None, response_headers=None):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.predict_now, payload)

    def predict_now(self, payload: dict | InferRequest) -> dict | InferResponse:
        """Answer one decoded request (V1 dict or V2 InferRequest) in this thread."""
        payload = as_json_request(payload, self.name)
        inputs = _predict_input(payload)
        try:
            result = self.run(inputs)
        except (ValueError, TypeError) as error:  # wrong shape or type: the caller's mistake
            raise InvalidInput(f"the model could not use the input: {error}") from error
        return get_predict_response(payload, result, self.name)


def _predict_input(payload):
    try:
        return get_predict_input(payload)
    except (ValueError, TypeError, KeyError) as error:
        raise InvalidInput(f"unreadable input: {error}") from error


class SklearnModel(FerryModel):
    """A scikit-learn estimator (or pipeline) saved with joblib or pickle; serves `predict`."""

    extensions = (".joblib", ".pkl", ".pickle")

    def read(self, path: Path) -> None:
        import joblib  # joblib reads plain pickles too

        self.estimator = joblib.load(path)

    def run(self, inputs):
        return self.estimator.predict(inputs)


class XGBoostModel(FerryModel):
    """An xgboost Booster saved with `save_model` (.json, .ubj) or in the old binary format (.bst)."""

    extensions = (".json", ".ubj", ".bst")

    def read(self, path: Path) -> None:
        import xgboost

        self.booster = xgboost.Booster(model_file=str(path))
        self.booster.set_param({"nthread": 1})
        self._dmatrix = xgboost.DMatrix

    def run(self, inputs):
        return self.booster.predict(self._dmatrix(np.asarray(inputs, dtype=np.float32)))


class LightGBMModel(FerryModel):
    """A LightGBM Booster saved with `save_model` (text format)."""

    extensions = (".txt", ".lgb")

    def read(self, path: Path) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_file=str(path))

    def run(self, inputs):
        return self.booster.predict(np.asarray(inputs), num_threads=1)


# ONNX tensor element types -> numpy, for casting JSON numbers to what the graph expects.
_ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
    "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}


class OnnxModel(FerryModel):
    """An ONNX graph run by onnxruntime on the CPU. V1 feeds the instances to the
    first input and answers the first output; V2 feeds inputs by name (or the
    first input) and answers every output under its ONNX name."""

    extensions = (".onnx",)

    def read(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one prediction per worker thread; no oversubscription
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {node.name: _ONNX_DTYPES.get(node.type, np.float32) for node in self.session.get_inputs()}
        self.output_names = [node.name for node in self.session.get_outputs()]

    def run(self, inputs):
        name, dtype = next(iter(self.inputs.items()))
        return self.session.run(self.output_names[:1], {name: np.asarray(inputs, dtype=dtype)})[0]

    def predict_now(self, payload):
        payload = as_json_request(payload, self.name)
        if not isinstance(payload, InferRequest):
            return super().predict_now(payload)
        try:
            outputs = self.session.run(None, self._feeds(payload))
        except Exception as error:  # onnxruntime raises its own types for bad shapes and types
            raise InvalidInput(f"the model could not use the input: {error}") from error
        infer_outputs = []
        for name, value in zip(self.output_names, outputs):
            output = InferOutput(name=name, shape=list(value.shape), datatype=from_np_dtype(value.dtype))
            output.set_data_from_numpy(value, binary_data=False)
            infer_outputs.append(output)
        return InferResponse(
            response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=infer_outputs
        )

    def _feeds(self, request: InferRequest) -> dict:
        by_name = {tensor.name: tensor for tensor in request.inputs if tensor.name in self.inputs}
        if not by_name:  # unnamed or differently named: the first tensor feeds the first input
            by_name = {next(iter(self.inputs)): request.inputs[0]}
        return {name: tensor.as_numpy().astype(self.inputs[name]) for name, tensor in by_name.items()}


BUILTIN_MODELS: dict[str, type[FerryModel]] = {
    "sklearn": SklearnModel,
    "xgboost": XGBoostModel,
    "lightgbm": LightGBMModel,
    "onnx": OnnxModel,
}
