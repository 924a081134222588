"""The built-in processors as kserve Models: sklearn, xgboost, lightgbm, onnx.

Each loads one model file from the model directory and turns a request into a
numpy array: V1 `{"instances": [[...], ...]}` -> `{"predictions": [...]}`, V2
(Open Inference Protocol) InferRequest -> InferResponse. Frameworks are
imported when a model loads, so a server imports only the one it serves.

What `GET /v2/models/<name>` reports for each is worked out at load (metadata.py).
A model that knows its feature names (scikit-learn fitted on a DataFrame, a named xgboost or LightGBM
booster) lists one input per feature, and reads a V2 request of those tensors as columns by name.

Predictions run in a thread pool (rpc.worker_threads threads), not on the
event loop, so a slow prediction does not stall health checks or /metrics.
"""

from __future__ import annotations

import abc

import asyncio
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype, to_np_dtype
from kserve.utils.utils import generate_uuid, get_predict_input, get_predict_response

from . import metadata
from .batching import BatchPart
from .metadata import DescribedModel
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


class FerryModel(DescribedModel):
    """A model read from one file. Subclasses set `extensions` and `platform`, and implement `read(path)`
    (which also sets `input_types` and `output_types`) and `run(inputs) -> ndarray`."""

    extensions: tuple[str, ...] = ()
    batches_any_rank = False  # tabular models take a 2-D matrix; a graph may take any rank, batch axis first

    def __init__(self, name: str, *, model_dir: str, model_entry: str | None, executor: Executor):
        super().__init__(name)
        self.model_dir = model_dir
        self.model_entry = model_entry
        self.executor = executor
        self.model_file: Path | None = None
        self.columns: list[str] | None = None  # the feature names, when the model knows them
        self.batcher = None  # a batching.Batcher when rpc.batching is on

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

    def run_columns(self, columns: dict[str, np.ndarray]):
        """Predicts for a batch sent as one tensor per feature: the matrix in the model's feature order."""
        return self.run(np.column_stack([columns[name] for name in self.columns]))

    async def predict(self, payload, headers=None, response_headers=None):
        if self.batcher is not None:
            return await self.batcher.predict(payload)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.predict_now, payload)

    # What batching.Batcher needs of a model.
    def batch_part(self, payload) -> BatchPart | None:
        """The request ready to join a batch, or None when it must run alone (named feature columns, a
        DataFrame, text, not 2-D). Raises InvalidInput for a body that cannot be read."""
        payload = as_json_request(payload, self.name)
        if self._columns(payload) is not None or _is_dataframe(payload):
            return None
        inputs = _predict_input(payload)
        if not isinstance(inputs, np.ndarray) or inputs.dtype.kind not in "biuf":
            return None
        if inputs.ndim != 2 and not (self.batches_any_rank and inputs.ndim >= 1):
            return None
        name = payload.inputs[0].name if isinstance(payload, InferRequest) else None
        return BatchPart(payload, (name, inputs.dtype.str, inputs.shape[1:]), inputs)

    def run_batch(self, inputs: np.ndarray):
        return self.run(inputs)

    def batch_answer(self, payload, output):
        return get_predict_response(payload, _answerable(output), self.name)

    def predict_now(self, payload: dict | InferRequest) -> dict | InferResponse:
        """Answer one decoded request (V1 dict or V2 InferRequest) in this thread."""
        payload = as_json_request(payload, self.name)
        columns = self._columns(payload)
        inputs = _predict_input(payload) if columns is None else None
        try:
            result = self.run(inputs) if columns is None else self.run_columns(columns)
        except (ValueError, TypeError) as error:  # wrong shape or type: the caller's mistake
            raise InvalidInput(f"the model could not use the input: {error}") from error
        return get_predict_response(payload, _answerable(result), self.name)

    def _columns(self, payload) -> dict[str, np.ndarray] | None:
        if not isinstance(payload, InferRequest):
            return None
        if not metadata.sends_columns([tensor.name for tensor in payload.inputs], self.columns):
            return None
        return {tensor.name: _column(tensor) for tensor in payload.inputs if tensor.name in self.columns}


def _answerable(result):
    """Text labels (a classifier fitted on strings answers a numpy str array) as objects: kserve writes
    BYTES tensors from object arrays only."""
    if isinstance(result, np.ndarray) and result.dtype.kind == "U":
        return result.astype(object)
    return result


def _is_dataframe(payload) -> bool:
    parameters = payload.parameters if isinstance(payload, InferRequest) else None
    return bool(parameters) and str(getattr(parameters.get("content_type"), "string_param",
                                            parameters.get("content_type"))) == "pd"


def _column(tensor: InferInput) -> np.ndarray:
    """One feature's values; text as str, as the model was fitted on (the binary protocol gives bytes)."""
    try:
        values = tensor.as_numpy().reshape(-1)
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"unreadable input {tensor.name}: {error}") from error
    if tensor.datatype == "BYTES":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return values


def _predict_input(payload):
    try:
        return get_predict_input(payload)
    except (ValueError, TypeError, KeyError) as error:
        raise InvalidInput(f"unreadable input: {error}") from error


class SklearnModel(FerryModel):
    """A scikit-learn estimator (or pipeline) saved with joblib or pickle; serves `predict`."""

    extensions = (".joblib", ".pkl", ".pickle")
    platform = "sklearn"

    def read(self, path: Path) -> None:
        import joblib  # joblib reads plain pickles too

        self.estimator = joblib.load(path)
        self.input_types = metadata.sklearn_inputs(self.estimator)
        self.output_types = metadata.sklearn_outputs(self.estimator)
        names = getattr(self.estimator, "feature_names_in_", None)
        self.columns = [str(name) for name in names] if names is not None else None

    def run(self, inputs):
        return self.estimator.predict(inputs)

    def run_columns(self, columns):
        # A DataFrame, as it was fitted on: columns keep their own types (text next to numbers).
        import pandas

        return self.estimator.predict(pandas.DataFrame({name: columns[name] for name in self.columns}))


class XGBoostModel(FerryModel):
    """An xgboost Booster saved with `save_model` (.json, .ubj) or in the old binary format (.bst)."""

    extensions = (".json", ".ubj", ".bst")
    platform = "xgboost"

    def read(self, path: Path) -> None:
        import xgboost

        self.booster = xgboost.Booster(model_file=str(path))
        self.booster.set_param({"nthread": 1})
        self._dmatrix = xgboost.DMatrix
        self.input_types = metadata.xgboost_inputs(self.booster)
        self.output_types = metadata.xgboost_outputs(self.booster)
        self.columns = self.booster.feature_names

    def run(self, inputs):
        matrix = np.asarray(inputs, dtype=np.float32)
        # A booster with feature names refuses a DMatrix without them; a matrix of the right width is
        # taken to be in the booster's order, as it is for a booster without names.
        names = self.columns if matrix.ndim == 2 and matrix.shape[1] == len(self.columns or ()) else None
        return self.booster.predict(self._dmatrix(matrix, feature_names=names))


class LightGBMModel(FerryModel):
    """A LightGBM Booster saved with `save_model` (text format)."""

    extensions = (".txt", ".lgb")
    platform = "lightgbm"

    def read(self, path: Path) -> None:
        import lightgbm

        self.booster = lightgbm.Booster(model_file=str(path))
        self.input_types = metadata.lightgbm_inputs(self.booster)
        self.output_types = metadata.lightgbm_outputs(self.booster)
        self.columns = metadata.lightgbm_feature_names(self.booster.feature_name())

    def run(self, inputs):
        return self.booster.predict(np.asarray(inputs), num_threads=1)


class OnnxModel(FerryModel):
    """An ONNX graph run by onnxruntime on the CPU. V1 feeds the instances to the
    first input and answers the first output; V2 feeds inputs by name (or the
    first input) and answers every output under its ONNX name."""

    extensions = (".onnx",)
    batches_any_rank = True
    platform = "onnxruntime_onnx"  # Triton's name for the same

    def read(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one prediction per worker thread; no oversubscription
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_types = metadata.onnx_tensors(self.session.get_inputs())
        self.output_types = metadata.onnx_tensors(self.session.get_outputs())
        # Each input's numpy type, to cast JSON numbers to what the graph expects.
        types = {tensor["name"]: to_np_dtype(tensor["datatype"]) for tensor in self.input_types}
        self.inputs = {node.name: types.get(node.name) or np.float32 for node in self.session.get_inputs()}
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
        return self._v2_response(payload, outputs)

    def batch_part(self, payload):
        """V1 as the other processors (the first input, the first output); V2 when it feeds one input,
        batched on that input's first axis (every output is cut back on its first axis)."""
        payload = as_json_request(payload, self.name)
        if not isinstance(payload, InferRequest):
            return super().batch_part(payload)
        try:
            feeds = self._feeds(payload)
        except (ValueError, TypeError) as error:
            raise InvalidInput(f"unreadable input: {error}") from error
        if len(feeds) != 1 or len(self.inputs) != 1:
            return None
        (name, inputs), = feeds.items()
        if inputs.ndim < 1:
            return None
        return BatchPart(payload, ("v2", name, inputs.dtype.str, inputs.shape[1:]), inputs)

    def run_batch(self, inputs):
        name, dtype = next(iter(self.inputs.items()))
        return self.session.run(None, {name: np.asarray(inputs, dtype=dtype)})

    def batch_answer(self, payload, output):
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, output)
        return super().batch_answer(payload, output[0])  # V1: the first output, as run() answers

    def _v2_response(self, payload: InferRequest, outputs) -> InferResponse:
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
