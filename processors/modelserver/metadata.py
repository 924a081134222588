"""What `GET /v2/models/<name>` reports: the platform, and the inputs and outputs a request should use.

Open Inference Protocol clients (tritonclient, generic V2 tooling) build requests from this metadata, so it
must describe what the server actually reads and answers, not merely what the model file holds:

- sklearn, xgboost, lightgbm: one matrix input `input-0` [-1, features], or, when the model knows its
  feature names, one column tensor [-1] per feature (the server reads a request of those columns by name,
  see `sends_columns`); one output `output-0` shaped as `predict` answers.
- onnx: the graph's own tensors (the server feeds and answers them by name).
- python: what the handler declares (`inputs`, `outputs`), else nothing.

kserve builds the answer from `Model.get_input_types()` / `get_output_types()` in
`DataPlane.model_metadata`, the path its REST and gRPC endpoints share; `FerryDataPlane` fills in the
`platform` that kserve leaves empty. The functions here only read attributes: no model is run.
"""

from __future__ import annotations

import copy
import json

import kserve
import numpy as np
from kserve.protocol.dataplane import DataPlane
from kserve.utils.numpy_codec import from_np_dtype

MATRIX_INPUT = "input-0"
OUTPUT = "output-0"  # what kserve's get_predict_response names the answer
V2_DATATYPES = frozenset({
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
})
ONNX_DATATYPES = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16", "tensor(bfloat16)": "BF16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64", "tensor(bool)": "BOOL", "tensor(string)": "BYTES",
}


def tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": list(shape)}


def v2_dims(shape) -> list[int]:
    """ONNX dimensions as V2 has them: a symbolic ("batch") or unknown (None) dimension is -1."""
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]


def onnx_tensors(nodes) -> list[dict]:
    """onnxruntime's NodeArg list (name, type, shape) as V2 tensors. A value that is not a tensor (a
    ZipMap's sequence of maps) or of a type V2 has no name for cannot travel over V2, so it is left out."""
    return [tensor(node.name, ONNX_DATATYPES[node.type], v2_dims(node.shape or []))
            for node in nodes if node.type in ONNX_DATATYPES]


def feature_inputs(names: list[str] | None, count: int | None, datatype: str) -> list[dict]:
    """One column [-1] per named feature, else one matrix [-1, count] (-1 when the count is unknown)."""
    if names:
        return [tensor(name, datatype, [-1]) for name in names]
    return [tensor(MATRIX_INPUT, datatype, [-1, count if count else -1])]


def sends_columns(input_names: list[str], feature_names: list[str] | None) -> bool:
    """A V2 request sends columns when it has a tensor for every feature name the metadata listed;
    anything else is read as before, its first tensor being the feature matrix."""
    return bool(feature_names) and set(feature_names) <= set(input_names)


def batch_shape(columns: int) -> list[int]:
    """What `predict` answers for a batch: one value per row, or a row of `columns` values."""
    return [-1] if columns <= 1 else [-1, columns]


# scikit-learn


def sklearn_inputs(estimator) -> list[dict]:
    """scikit-learn converts any numeric input to float64 (it records no input types)."""
    names = getattr(estimator, "feature_names_in_", None)
    names = [str(name) for name in names] if names is not None else None
    return feature_inputs(names, getattr(estimator, "n_features_in_", None), "FP64")


def sklearn_outputs(estimator) -> list[dict]:
    """`predict`'s answer: a classifier's labels (the dtype of `classes_`), a regressor's values (float64
    for the FP64 input reported); nothing for other estimators (clusterers, outlier detectors), whose
    answer scikit-learn does not describe."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator) and hasattr(estimator, "classes_"):
        return [tensor(OUTPUT, *_label_type(estimator.classes_))]
    if is_regressor(estimator):
        return [tensor(OUTPUT, "FP64", _regression_shape(_final_step(estimator)))]
    return []


def _label_type(classes) -> tuple[str, list[int]]:
    if isinstance(classes, list):  # several outputs: predict stacks one label per output into a row
        return from_np_dtype(np.array([labels[:1] for labels in classes]).dtype) or "BYTES", [-1, len(classes)]
    return from_np_dtype(np.asarray(classes).dtype) or "BYTES", [-1]


def _final_step(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _regression_shape(regressor) -> list[int]:
    """How predict answers a batch. Trees and forests say n_outputs_ (and answer (n,) for one); a linear
    model fitted on a column vector (n, 1) answers (n, 1), which its 2-D coef_ shows."""
    outputs = getattr(regressor, "n_outputs_", None)
    if outputs is not None:
        return batch_shape(int(outputs))
    coef = getattr(regressor, "coef_", None)
    if coef is not None and np.ndim(coef) == 2:
        return [-1, coef.shape[0]]
    return [-1]


# xgboost


def xgboost_inputs(booster) -> list[dict]:
    """The server builds a float32 DMatrix whatever the request sends."""
    return feature_inputs(booster.feature_names, booster.num_features(), "FP32")


def xgboost_outputs(booster) -> list[dict]:
    learner = json.loads(booster.save_config())["learner"]
    params = learner["learner_model_param"]
    shape = xgboost_output_shape(learner["objective"]["name"], int(params.get("num_class", 0)),
                                 int(params.get("num_target", 1)))
    return [tensor(OUTPUT, "FP32", shape)]


def xgboost_output_shape(objective: str, num_class: int, num_target: int) -> list[int]:
    """multi:softprob answers a probability per class; several targets a value each; everything else
    (binary:logistic's probability, multi:softmax's class, a regression) one value per row."""
    if objective == "multi:softprob" and num_class > 1:
        return [-1, num_class]
    return [-1, num_target] if num_target > 1 else [-1]


# lightgbm


def lightgbm_feature_names(names: list[str]) -> list[str] | None:
    """LightGBM names the features of a model trained without names Column_0, Column_1, ...: those are
    not names a client knows its data by."""
    return None if names == [f"Column_{index}" for index in range(len(names))] else names


def lightgbm_inputs(booster) -> list[dict]:
    return feature_inputs(lightgbm_feature_names(booster.feature_name()), booster.num_feature(), "FP64")


def lightgbm_outputs(booster) -> list[dict]:
    """Multiclass models answer a probability per class (one tree per class and iteration)."""
    return [tensor(OUTPUT, "FP64", batch_shape(booster.num_model_per_iteration()))]


# python handlers


class DeclarationError(ValueError):
    """A handler's `inputs` or `outputs` is not a list of V2 tensors."""


def declared_tensors(handler, which: str) -> list[dict]:
    """The handler's `inputs` / `outputs`: a list of {"name", "datatype", "shape"}, or a function without
    arguments returning one (called once, after load, so it may describe the loaded model). None or
    absent: nothing is declared."""
    declared = getattr(handler, which, None)
    if callable(declared):
        declared = declared()
    if declared is None:
        return []
    problem = tensor_list_problem(declared)
    if problem:
        raise DeclarationError(f"the handler's {which} {problem}")
    return [tensor(item["name"], item["datatype"], item["shape"]) for item in declared]


def tensor_list_problem(declared) -> str | None:
    """Why `declared` is not a list of V2 tensors, or None when it is."""
    if not isinstance(declared, (list, tuple)):
        return f"must be a list of tensors, not {type(declared).__name__}"
    for index, item in enumerate(declared):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return f"[{index}] must be a dict with a string name"
        if item.get("datatype") not in V2_DATATYPES:
            return f"[{index}] has datatype {item.get('datatype')!r}, not one of {', '.join(sorted(V2_DATATYPES))}"
        shape = item.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= -1 for d in shape):
            return f"[{index}] needs a shape: a list of sizes, -1 for a dimension of any size"
    return None


class DescribedModel(kserve.Model):
    """A kserve Model whose metadata is worked out once, when it loads (subclasses set these)."""

    platform = ""

    def __init__(self, name: str):
        super().__init__(name)
        self.input_types: list[dict] = []
        self.output_types: list[dict] = []

    def get_input_types(self) -> list[dict]:
        return copy.deepcopy(self.input_types)  # kserve's callers may change what they get

    def get_output_types(self) -> list[dict]:
        return copy.deepcopy(self.output_types)


class FerryDataPlane(DataPlane):
    """kserve's DataPlane, with the model's `platform` in its metadata (kserve always answers "")."""

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        return {**metadata, "platform": getattr(model, "platform", "")}


def report_platforms(server) -> None:
    """Makes a kserve ModelServer answer metadata through FerryDataPlane. Call before it serves: its
    REST routes take the dataplane when they are built."""
    server.dataplane = FerryDataPlane(model_registry=server.registered_models)
