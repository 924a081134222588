"""The rules behind V2 model metadata (processors/modelserver/metadata.py), on real fitted models in this
process: what each kind of model makes the server report."""

from __future__ import annotations

import numpy as np
import pytest

from processors.modelserver import metadata


def data(rows: int = 60, columns: int = 3):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(rows, columns))
    return features, features[:, 0] + 2 * features[:, 1]


@pytest.mark.parametrize("shape, expected", [
    ([None, 64], [-1, 64]), (["batch", 3, 224, 224], [-1, 3, 224, 224]), ([], []), ([1, -1], [1, -1]),
])
def test_symbolic_and_unknown_onnx_dimensions_are_minus_one(shape, expected):
    assert metadata.v2_dims(shape) == expected


def test_onnx_values_that_are_not_tensors_are_left_out():
    import onnxruntime
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    features, target = data()
    model = LogisticRegression().fit(features.astype(np.float32), (target > 0).astype(np.int64))
    graph = to_onnx(model, features[:1].astype(np.float32), target_opset=17)  # ZipMap on: a sequence of maps
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])

    assert metadata.onnx_tensors(session.get_inputs()) == [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]
    assert metadata.onnx_tensors(session.get_outputs()) == [
        {"name": "output_label", "datatype": "INT64", "shape": [-1]}]


@pytest.mark.filterwarnings("ignore:A column-vector y was passed")  # on purpose: such a fit answers (n, 1)
def test_a_regressor_answers_fp64_one_value_or_a_row_per_input():
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, target = data()
    two_targets = np.c_[target, -target]
    cases = [
        (make_pipeline(StandardScaler(), Ridge()).fit(features, target), [-1]),
        (RandomForestRegressor(n_estimators=2).fit(features, two_targets), [-1, 2]),
        (RandomForestRegressor(n_estimators=2).fit(features, target.reshape(-1, 1)), [-1]),  # answers (n,)
        (LinearRegression().fit(features, target.reshape(-1, 1)), [-1, 1]),  # answers (n, 1)
    ]

    for estimator, shape in cases:
        assert metadata.sklearn_outputs(estimator) == [{"name": "output-0", "datatype": "FP64", "shape": shape}]
        assert list(estimator.predict(features[:5]).shape) == [5, *shape[1:]], estimator


def test_a_classifier_answers_its_labels_type():
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.tree import DecisionTreeClassifier

    features, target = data()
    words = np.where(target > 0, "up", "down")
    numbers = (target > 0).astype(np.int64)

    assert metadata.sklearn_outputs(DecisionTreeClassifier().fit(features, words)) == [
        {"name": "output-0", "datatype": "BYTES", "shape": [-1]}]
    assert metadata.sklearn_outputs(DecisionTreeClassifier().fit(features, numbers)) == [
        {"name": "output-0", "datatype": "INT64", "shape": [-1]}]
    two = MultiOutputClassifier(DecisionTreeClassifier()).fit(features, np.c_[numbers, 1 - numbers])
    assert metadata.sklearn_outputs(two) == [{"name": "output-0", "datatype": "INT64", "shape": [-1, 2]}]


def test_estimators_that_are_neither_classifiers_nor_regressors_report_no_output():
    from sklearn.cluster import KMeans

    assert metadata.sklearn_outputs(KMeans(n_clusters=2, n_init=1).fit(data()[0])) == []


def test_sklearn_inputs_are_a_matrix_or_the_named_columns():
    import pandas as pd
    from sklearn.linear_model import Ridge

    features, target = data()
    named = Ridge().fit(pd.DataFrame(features, columns=["a", "b", "c"]), target)

    assert metadata.sklearn_inputs(Ridge().fit(features, target)) == [
        {"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}]
    assert [tensor["name"] for tensor in metadata.sklearn_inputs(named)] == ["a", "b", "c"]
    assert {tensor["shape"] == [-1] for tensor in metadata.sklearn_inputs(named)} == {True}


@pytest.mark.parametrize("objective, num_class, num_target, shape", [
    ("multi:softprob", 3, 1, [-1, 3]),
    ("multi:softmax", 3, 1, [-1]),
    ("binary:logistic", 0, 1, [-1]),
    ("reg:squarederror", 0, 2, [-1, 2]),
])
def test_xgboost_output_shape_follows_the_objective(objective, num_class, num_target, shape):
    assert metadata.xgboost_output_shape(objective, num_class, num_target) == shape


def test_xgboost_reports_what_a_saved_booster_records():
    import xgboost

    features, target = data()
    matrix = xgboost.DMatrix(features, target > 0, feature_names=["a", "b", "c"])
    booster = xgboost.train({"objective": "binary:logistic"}, matrix, 2)

    assert metadata.xgboost_inputs(booster) == [{"name": n, "datatype": "FP32", "shape": [-1]} for n in "abc"]
    assert metadata.xgboost_outputs(booster) == [{"name": "output-0", "datatype": "FP32", "shape": [-1]}]


def test_lightgbm_invented_column_names_are_not_feature_names():
    assert metadata.lightgbm_feature_names(["Column_0", "Column_1"]) is None
    assert metadata.lightgbm_feature_names(["age", "Column_1"]) == ["age", "Column_1"]


@pytest.mark.parametrize("input_names, feature_names, columns", [
    (["b", "a"], ["a", "b"], True),
    (["a", "b", "extra"], ["a", "b"], True),
    (["a"], ["a", "b"], False),  # a feature missing: read as before (the first tensor is the matrix)
    (["input-0"], None, False),
    (["a", "b"], [], False),
])
def test_a_request_sends_columns_when_it_has_a_tensor_per_feature(input_names, feature_names, columns):
    assert metadata.sends_columns(input_names, feature_names) is columns


@pytest.mark.parametrize("declared, problem", [
    ([{"name": "x", "datatype": "FP32", "shape": [-1, 3]}], None),
    ({"name": "x"}, "must be a list of tensors, not dict"),
    ([{"datatype": "FP32", "shape": [1]}], "[0] must be a dict with a string name"),
    ([{"name": "x", "datatype": "float32", "shape": [1]}], "[0] has datatype 'float32'"),
    ([{"name": "x", "datatype": "FP32", "shape": [-2]}], "[0] needs a shape"),
    ([{"name": "x", "datatype": "FP32"}], "[0] needs a shape"),
])
def test_a_handler_declaration_must_be_a_list_of_v2_tensors(declared, problem):
    found = metadata.tensor_list_problem(declared)

    assert (found or "").startswith(problem or "") and bool(found) == bool(problem), found
