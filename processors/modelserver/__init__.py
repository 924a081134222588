"""Ferry's built-in model server, on KServe's `kserve` package.

Serves one model per process for the sklearn, xgboost, lightgbm, onnx and
python processors: KServe V1 (`/v1/models/<name>:predict`), Open Inference
Protocol V2 (`/v2/models/<name>/infer`, `/v2/health/ready`), EAS-style
`POST /api/predict/<name>`, and Prometheus metrics at `/metrics`.

Run it with `python -m processors.modelserver --help`; see docs/processors.md.
This package's __init__ imports nothing heavy, so `--help` stays fast.
"""
