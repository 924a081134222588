"""The model mesh's two kinds of service file (docs/mesh.md), checked field by field.

- A pool: `"metadata": {"type": "ModelPool", "instance": N, "memory": MB}` with one of POOL_PROCESSORS. Its
  instances start with no model; the models that name it are loaded into them on demand. It has no model of
  its own, and its placement settings are `model_mesh`.
- A pool model: `"metadata": {"pool": "<pool>"}` with a `model_path` (in a python pool, its handler as
  `processor_path` + `processor_entry`, with or without a model_path). It has no process of its own, so what
  shapes or counts a process (resources, containers, an autoscaler, ...) belongs in the pool's file and is
  refused here by name rather than accepted and ignored. Its processor is the pool's (checked against the pool
  when the file is written: services/writes/mesh.py).
"""

from collections.abc import Iterator

from .errors import FieldError

MODEL_POOL = "ModelPool"
# The built-in model server loads and unloads these through the V2 model-repository API (processors/modelserver).
POOL_PROCESSORS = ("sklearn", "xgboost", "lightgbm", "onnx", "python")
# An adapter pool: the vLLM engine serves its own model_path (the base model) and loads its models' LoRA
# adapters at run time (vLLM's dynamic LoRA loading); a request names the adapter's service in `model`.
ADAPTER_POOL_PROCESSORS = ("vllm",)
# What model_mesh may say only for one kind of pool.
ADAPTER_POOL_SETTINGS = ("max_adapters", "max_lora_rank")
MODEL_POOL_SETTINGS = ("model_memory",)
# The adapter ranks vLLM accepts (--max-lora-rank).
LORA_RANKS = (8, 16, 32, 64, 128, 256)

# What a pool model may not set, and why: each belongs to the pool (or makes no sense without a process).
NOT_FOR_POOL_MODELS = {
    "containers": "its instances are the pool's",
    "processor_type": "the processor is the pool's (in a python pool, give processor_path and processor_entry)",
    "processor_params": "the pool's instances are started once for every model",
    "warm_up_data_path": "the pool's instances are started once for every model",
    "storage": "the pool's instances are started once for every model",
    "autoscaler": "the pool scales on the load of all its models: give the autoscaler to the pool",
    "model_mesh": "placement settings are the pool's",
    "metadata.instance": "a pool model has no instances of its own; the pool places it (give instance to the pool)",
    "metadata.cpu": "resources are the pool's",
    "metadata.memory": "resources are the pool's",
    "metadata.gpu": "resources are the pool's",
    "metadata.container_concurrency": "the pool's instances are shared by its models",
    "metadata.type": "a model in a pool is a standard service",
}


# What a pool model's file may spell out for "none" (its normalized file has instance 0).
SPELLED_OUT_NONE = (0, "")


def check_mesh(doc: dict) -> Iterator[FieldError]:
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if metadata.get("type") == MODEL_POOL:
        yield from _pool_errors(doc, metadata)
    elif "model_mesh" in doc:
        yield FieldError("model_mesh", f'applies only to a pool (metadata.type "{MODEL_POOL}")')
    if metadata.get("pool") is not None:
        yield from _pool_model_errors(doc)


def is_pool(doc: dict) -> bool:
    metadata = doc.get("metadata")
    return isinstance(metadata, dict) and metadata.get("type") == MODEL_POOL


def pool_name(doc: dict) -> str:
    """The pool a model is served by; "" for any other service."""
    metadata = doc.get("metadata")
    return (metadata.get("pool") or "") if isinstance(metadata, dict) else ""


def is_adapter_pool(doc: dict) -> bool:
    return is_pool(doc) and doc.get("processor") in ADAPTER_POOL_PROCESSORS


def _pool_errors(doc: dict, metadata: dict) -> Iterator[FieldError]:
    processor = doc.get("processor")
    kinds = POOL_PROCESSORS + ADAPTER_POOL_PROCESSORS
    if "containers" in doc or processor not in kinds:
        yield FieldError("processor", f"a pool runs one of {', '.join(kinds)} (the processors whose server loads "
                                      f"and unloads models, or LoRA adapters, on demand), not "
                                      f"{processor or 'containers'}")
        return
    adapters = processor in ADAPTER_POOL_PROCESSORS
    if adapters and doc.get("model_path") is None:
        yield FieldError("model_path", f"is required: the base model the {processor} engine serves and its "
                                       "models (LoRA adapters) adapt")
    if not adapters and doc.get("model_path") is not None:
        yield FieldError("model_path", "a pool has no model of its own: give model_path to each model, with "
                                       'metadata.pool naming this pool')
    if metadata.get("pool") is not None:
        yield FieldError("metadata.pool", "a pool cannot be in another pool")
    mesh = doc.get("model_mesh") if isinstance(doc.get("model_mesh"), dict) else {}
    for name in (MODEL_POOL_SETTINGS if adapters else ADAPTER_POOL_SETTINGS):
        if name in mesh:
            kind = "an adapter pool (vllm)" if not adapters else f"a pool of {', '.join(POOL_PROCESSORS)} models"
            yield FieldError(f"model_mesh.{name}", f"applies only to {kind}")
    if adapters and "max_lora_rank" in mesh and mesh["max_lora_rank"] not in LORA_RANKS:
        yield FieldError("model_mesh.max_lora_rank", f"must be one of {', '.join(map(str, LORA_RANKS))}")


def _pool_model_errors(doc: dict) -> Iterator[FieldError]:
    if doc.get("model_path") is None and doc.get("processor_path") is None:
        yield FieldError("model_path", "is required: it is what the pool loads (in a python pool, processor_path "
                                       "with processor_entry may hold all of it)")
    metadata = doc.get("metadata") or {}
    for path, why in NOT_FOR_POOL_MODELS.items():
        head, _, tail = path.partition(".")
        present = (tail in metadata and metadata[tail] not in SPELLED_OUT_NONE) if tail else head in doc
        if present:
            yield FieldError(path, f"cannot be set on a model in a pool: {why}")
