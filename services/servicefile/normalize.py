"""Reshape a service file before validation and fill defaults after it.

Both steps return new dicts; the caller's document is never modified.
"""

import copy

from processors.codes import resolve_processor

from .errors import FieldError, format_path
from .schema import SERVICE_FILE_SCHEMA

# Defaults are written into the normalized file (rather than assumed later) so
# that a file that spells a default out and one that leaves it out normalize
# to the same thing, and so create no new version when one replaces the other.
METADATA_DEFAULTS = {
    "instance": 1,
    "cpu": 1,
    "memory": 1024,
    "gpu": 0,
    "resource": "",
    "enable_grpc": False,
    "enable_webservice": False,
}
POOL_MODEL_METADATA_DEFAULTS = {
    "instance": 0,
    "resource": "",
    "enable_grpc": False,
    "enable_webservice": False,
}
RPC_DEFAULTS = {
    "keepalive": 5000,
    "io_threads": 4,
    "worker_threads": 5,
    "max_queue_size": 64,
    "batching": False,
}
ROLLOUT_DEFAULTS = {"strategy": "rolling"}
CANARY_WEIGHT_DEFAULT = 10
MOUNTS_WITH_READ_ONLY = ("oss", "nfs")


def expand_dotted_keys(doc: dict) -> tuple[dict, list[FieldError]]:
    """Nest flat keys such as "rpc.keepalive" the way EAS reads them.

    EAS documents fields by dotted names ("rpc.keepalive",
    "rolling_strategy.max_surge") and accepts them written flat in the
    object that holds them. A key is only unfolded when its first part names
    an object in the schema, so an unknown "foo.bar" is still reported under
    its own name.
    """
    errors: list[FieldError] = []
    return _expand(doc, SERVICE_FILE_SCHEMA, [], errors), errors


def _expand(value: object, schema: dict, path: list, errors: list[FieldError]) -> object:
    if not isinstance(value, dict):
        return value
    properties = schema.get("properties", {})
    result = {key: item for key, item in value.items() if not _unfolds(key, properties)}
    for key, item in value.items():
        if _unfolds(key, properties):
            head, rest = key.split(".", 1)
            _put(result, head, rest, item, path, errors)
    return {
        key: _expand(item, properties[key], path + [key], errors) if key in properties else item
        for key, item in result.items()
    }


def _unfolds(key: str, properties: dict) -> bool:
    head = key.split(".", 1)[0]
    return "." in key and key not in properties and properties.get(head, {}).get("type") == "object"


def _put(result: dict, head: str, rest: str, item, path: list, errors: list) -> None:
    nested = result.get(head, {})
    if not isinstance(nested, dict) or (rest in nested and nested[rest] != item):
        where = format_path(path + [head, rest])
        errors.append(FieldError(where, f'is given twice, as "{head}.{rest}" and in "{head}"'))
        return
    result[head] = {**nested, rest: item}


def normalized(doc: dict) -> dict:
    """The validated ``doc`` with its name hoisted, processor resolved and
    defaults filled. Assumes checks passed (types are right)."""
    doc = copy.deepcopy(doc)
    metadata = doc.pop("metadata", {})
    name = doc.pop("name", None) or metadata.get("name")
    metadata.pop("name", None)  # one place for the name: the top level
    if metadata.get("pool"):
        # A model in a pool has no process: no resources or count to default, and its processor is the pool's,
        # filled in when it is written (services/writes/mesh.py).
        result = {"name": name, **doc}
        result["metadata"] = _with_metadata_defaults(metadata, POOL_MODEL_METADATA_DEFAULTS)
    else:
        result = {"name": name, **_with_processor(doc)}
        result["metadata"] = _with_metadata_defaults(metadata)
    result["rollout"] = _with_rollout_defaults(result.get("rollout", {}))
    for mount in result.get("storage", []):
        _fill_read_only(mount)
    return _in_schema_order(result)


def _in_schema_order(doc: dict) -> dict:
    """Fields in one fixed order (the schema's), whatever order they came in,
    so stored and displayed files read the same way every time."""
    order = list(SERVICE_FILE_SCHEMA["properties"])
    return {key: doc[key] for key in sorted(doc, key=order.index)}


def _with_processor(doc: dict) -> dict:
    code = doc.get("processor_code") or doc.get("processor")
    if code is None:
        # Checks let a file without a processor through only with containers
        # or with a custom processor written in Python (processor_type).
        processor = "custom" if "containers" in doc else "python"
    else:
        processor = resolve_processor(code)
    doc["processor"] = processor
    doc.pop("processor_code", None)
    if code is not None and code != processor:
        doc["processor_code"] = code
    return doc


def _with_metadata_defaults(metadata: dict, defaults: dict = METADATA_DEFAULTS) -> dict:
    filled = {**defaults, **metadata}
    filled["rpc"] = {**RPC_DEFAULTS, **metadata.get("rpc", {})}
    return filled


def _with_rollout_defaults(rollout: dict) -> dict:
    filled = {**ROLLOUT_DEFAULTS, **rollout}
    if filled["strategy"] == "canary":
        filled.setdefault("canary_weight", CANARY_WEIGHT_DEFAULT)
    return filled


def _fill_read_only(mount: dict) -> None:
    for kind in MOUNTS_WITH_READ_ONLY:
        if kind in mount:
            mount[kind].setdefault("readOnly", False)
