"""The demo models `make run` deploys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from processors.demo import demo_service_files, train_demo_models
from services.servicefile import validate_service_file


def test_it_writes_models_warm_up_and_request_files(demo_models):
    assert demo_models["iris_model"].name == "model.joblib"
    assert demo_models["digits_model"].name == "model.onnx"
    assert json.loads(demo_models["iris_request"].read_text()) == {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    digits = json.loads(demo_models["digits_request"].read_text())["inputs"][0]
    assert (digits["shape"], digits["datatype"], len(digits["data"])) == ([1, 64], "FP32", 64)
    assert isinstance(json.loads(demo_models["iris_warm_up"].read_text()), list)


def test_it_keeps_models_that_are_already_there(demo_models):
    before = demo_models["iris_model"].stat().st_mtime_ns

    again = train_demo_models(demo_models["iris_model"].parent.parent)

    assert again == demo_models
    assert demo_models["iris_model"].stat().st_mtime_ns == before


def test_it_gives_valid_service_files_for_the_demo_services(demo_models):
    files = [validate_service_file(service_file) for service_file in demo_service_files(demo_models)]

    assert [(f["name"], f["processor"]) for f in files] == [("demo_iris", "sklearn"), ("demo_digits", "onnx")]
    assert all(f["model_path"].startswith("file://") for f in files)


def test_it_prints_what_it_wrote(demo_models):
    root = Path(__file__).resolve().parents[2]
    target = demo_models["iris_model"].parent.parent

    finished = subprocess.run([sys.executable, "-m", "processors.demo", str(target)], cwd=root,
                              capture_output=True, text=True, timeout=60)

    assert finished.returncode == 0, finished.stderr
    assert f"iris_model: {demo_models['iris_model']}" in finished.stdout
    assert "service demo_digits:" in finished.stdout
