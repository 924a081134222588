"""Demo models for `make run`, trained here from data scikit-learn ships.

- demo_iris: a LogisticRegression on the iris data set, saved with joblib (sklearn processor).
- demo_digits: a LogisticRegression on the 8x8 digits, converted to ONNX with skl2onnx (onnx processor).
- demo_chat (with FERRY_DEMO_LLM=1): a tiny Llama made offline by processors/tiny_llm.py (vllm processor).

load_iris and load_digits read files bundled in the scikit-learn wheel: nothing
is downloaded. Training takes about a second; files already present are kept.

    python -m processors.demo TARGET_DIR
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

IRIS_SAMPLE = [5.1, 3.5, 1.4, 0.2]  # the first iris in the data set: a setosa (class 0)


def train_demo_models(target_dir: Path) -> dict[str, Path]:
    """Train (or keep) the demo models and write warm-up and sample request files.

    Returns paths by key: iris_model, iris_warm_up, iris_request, digits_model,
    digits_warm_up, digits_request. Models sit each in its own directory
    (iris/, digits/), as a fetched model_path does.
    """
    target_dir = Path(target_dir)
    paths = {
        "iris_model": target_dir / "iris" / "model.joblib",
        "iris_warm_up": target_dir / "iris_warm_up.json",
        "iris_request": target_dir / "iris_request.json",
        "digits_model": target_dir / "digits" / "model.onnx",
        "digits_warm_up": target_dir / "digits_warm_up.json",
        "digits_request": target_dir / "digits_request.json",
    }
    if not paths["iris_model"].exists():
        _write_atomically(paths["iris_model"], _iris_model_bytes())
    if not paths["digits_model"].exists():
        _write_atomically(paths["digits_model"], _digits_onnx_bytes())
    iris_request = {"instances": [IRIS_SAMPLE]}
    _write_json_once(paths["iris_request"], lambda: iris_request)
    _write_json_once(paths["iris_warm_up"], lambda: [iris_request, {"instances": [[6.7, 3.0, 5.2, 2.3]]}])
    _write_json_once(paths["digits_request"], lambda: digits_v2_request(0))
    _write_json_once(paths["digits_warm_up"], lambda: [digits_v2_request(0), digits_v2_request(1)])
    return paths


def digits_v2_request(index: int) -> dict:
    """A V2 request holding the `index`-th image of load_digits as 64 FP32."""
    from sklearn.datasets import load_digits

    pixels = [float(value) for value in load_digits().data[index]]
    return {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": pixels}]}


def demo_service_files(model_paths: dict[str, Path]) -> list[dict]:
    """Service files for demo_iris (sklearn) and demo_digits (onnx)."""
    return [
        {
            "name": "demo_iris",
            "processor": "sklearn",
            "model_path": model_paths["iris_model"].parent.resolve().as_uri() + "/",
            "warm_up_data_path": model_paths["iris_warm_up"].resolve().as_uri(),
            "metadata": {"instance": 1, "cpu": 1, "memory": 512},
        },
        {
            "name": "demo_digits",
            "processor": "onnx",
            "model_path": model_paths["digits_model"].parent.resolve().as_uri() + "/",
            "warm_up_data_path": model_paths["digits_warm_up"].resolve().as_uri(),
            "metadata": {"instance": 1, "cpu": 1, "memory": 512},
        },
    ]


def demo_chat_service_file(model_dir: Path) -> dict:
    """demo_chat: the tiny LLM of processors/tiny_llm.py on the real vLLM engine (`make run` with FERRY_DEMO_LLM=1).
    6000 MB: the engine's own 3 GB and 2 GiB of KV cache."""
    return {
        "name": "demo_chat",
        "processor": "vllm",
        "model_path": Path(model_dir).resolve().as_uri() + "/",
        "processor_params": ["--max-model-len=512"],
        "metadata": {"instance": 1, "cpu": 2, "memory": 6000},
    }


def _iris_model_bytes() -> bytes:
    import io

    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, classes = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, classes)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def _digits_onnx_bytes() -> bytes:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, digits = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=2000).fit(features.astype(np.float32), digits)
    # zipmap off: probabilities as a plain tensor rather than a list of dicts, so V2 can carry them.
    onnx_model = to_onnx(
        model, features[:1].astype(np.float32), options={id(model): {"zipmap": False}}, target_opset=17
    )
    onnx_model.graph.input[0].name = _renamed_input(onnx_model)
    return onnx_model.SerializeToString()


def _renamed_input(onnx_model) -> str:
    """Name the graph's input "input" (skl2onnx calls it "X"), as the sample request does."""
    old = onnx_model.graph.input[0].name
    for node in onnx_model.graph.node:
        node.input[:] = ["input" if name == old else name for name in node.input]
    return "input"


def _write_json_once(path: Path, make_value) -> None:
    if not path.exists():
        _write_atomically(path, json.dumps(make_value(), indent=1).encode())


def make_readable_dirs(directory: Path) -> None:
    """mkdir -p, each directory it makes 0755 whatever the umask (`make run` sets 077): instances run as users
    of their own (docs/security.md) and read the demo models in place."""
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        os.chmod(made, 0o755)


def _write_atomically(path: Path, content: bytes) -> None:
    """Write through a temporary file and rename, so a crash leaves no half file
    that a later run would take as done."""
    make_readable_dirs(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as file:
        file.write(content)
    os.chmod(temporary, 0o644)  # mkstemp makes files private; models are read by other processes
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m processors.demo TARGET_DIR", file=sys.stderr)
        return 2
    paths = train_demo_models(Path(argv[0]))
    for key, path in paths.items():
        print(f"{key}: {path}")
    for service_file in demo_service_files(paths):
        print(f"service {service_file['name']}: {json.dumps(service_file)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
