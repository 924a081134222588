"""Ferry's built-in model server, on KServe's `kserve` package.

Serves one model per process for the sklearn, xgboost, lightgbm, onnx and
python processors: KServe V1 (`/v1/models/<name>:predict`), Open Inference
Protocol V2 (`/v2/models/<name>/infer`, `/v2/health/ready`), EAS-style
`POST /api/predict/<name>`, and Prometheus metrics at `/metrics`.

Run it with `python -m processors.modelserver --help`; see docs/processors.md.
This package's __init__ imports nothing heavy, so `--help` stays fast.
"""

# Server-side batching (metadata.rpc.batching) when the file gives no max_batch_size / max_batch_timeout:
# EAS documents no defaults for these, so these are Ferry's (docs/service-files.md). Plain constants, so the
# launchers and the service-file checks read them without importing the server.
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_MAX_BATCH_TIMEOUT_MS = 10
# The processors whose server batches: those of the built-in server that feed a model one array.
BATCHING_PROCESSORS = ("sklearn", "xgboost", "lightgbm", "onnx")
