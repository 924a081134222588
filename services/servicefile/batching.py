"""Server-side batching (EAS `metadata.rpc.batching`, `max_batch_size`, `max_batch_timeout`): who may use it.

Ferry's built-in model server batches for the processors that feed a model one array
(processors/modelserver/batching.py). Every other server either batches on its own, with its own settings,
or cannot; each is refused by name with the reason, so a file never deploys believing it batches when it
does not. The schema has checked the types and ranges already (max_batch_size >= 1, max_batch_timeout >= 0).
"""

from collections.abc import Iterator

from processors.codes import resolve_processor
from processors.modelserver import BATCHING_PROCESSORS

from .errors import FieldError
from .mesh import is_pool, pool_name

BATCHING = "metadata.rpc.batching"

# Why each processor that cannot take metadata.rpc.batching does not.
CANNOT_BATCH = {
    "python": "a python processor's handler is called once per request; batch inside your handler if it can",
    "custom": "Ferry cannot batch for your own container; batch inside your server",
    "vllm": "vLLM batches concurrent requests on its own (continuous batching); remove it",
    "sglang": "SGLang batches concurrent requests on its own (continuous batching); remove it",
    "triton": "Triton has its own dynamic batcher: set dynamic_batching in the model's config.pbtxt; remove it",
    "tfserving": "TensorFlow Serving batches on its own: give --enable_batching and --batching_parameters_file "
                 "in processor_params; remove it",
    "torchserve": "TorchServe batches on its own: set the model's batch_size and max_batch_delay; remove it",
    "mlserver": "MLServer batches on its own: set max_batch_size and max_batch_time in model-settings.json; "
                "remove it",
    "pmml": "the PMML server does not batch",
}


def check_batching(doc: dict) -> Iterator[FieldError]:
    metadata = doc.get("metadata")
    rpc = metadata.get("rpc") if isinstance(metadata, dict) else None
    if not isinstance(rpc, dict):
        return
    if rpc.get("batching") is not True:
        for field in ("max_batch_size", "max_batch_timeout"):
            if field in rpc:
                yield FieldError(f"metadata.rpc.{field}", f"applies only when {BATCHING} is true")
        return
    reason = _cannot_batch(doc)
    if reason:
        yield FieldError(BATCHING, f"true is not accepted: {reason}")


def _cannot_batch(doc: dict) -> str | None:
    if is_pool(doc) or pool_name(doc):
        return ("a model pool's server does not batch (each loaded model would need its own batcher); "
                "deploy the model as its own service to batch")
    processor = _processor(doc)
    if processor in BATCHING_PROCESSORS:
        return None
    if processor in CANNOT_BATCH:
        return f"the {processor} processor cannot use it: {CANNOT_BATCH[processor]}"
    return None  # an unknown processor: check_processor reports it


def _processor(doc: dict) -> str | None:
    for field in ("processor", "processor_code"):
        code = doc.get(field)
        if isinstance(code, str) and code:
            try:
                return resolve_processor(code)
            except ValueError:
                return None
    if doc.get("processor_type") == "python":
        return "python"
    return "custom" if "containers" in doc else None
