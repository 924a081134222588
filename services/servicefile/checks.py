"""Rules that span several fields, checked after (and beside) the schema.

Each check reads the document defensively: a value of the wrong type has
already been reported by the schema, so here it is skipped, not re-reported.
"""

import json
from collections.abc import Callable, Iterator

from autoscaler import kpa_settings_from_annotations  # the same reading the scaler uses
from processors.codes import LLM_PROCESSORS, PROCESSORS_NEEDING_A_MODEL, resolve_processor

from .asynchronous import ASYNC, check_async
from .batching import check_batching
from .errors import FieldError, format_path
from .mesh import MODEL_POOL, check_mesh, is_pool, pool_name

LOCATION_FIELDS = ("model_path", "processor_path", "warm_up_data_path")
LOCATION_SCHEMES = ("file", "http", "https", "s3", "oss")
LOCATION_HINT = "an absolute path, file://, http://, https://, s3:// or oss://"
PROBES = ("startup_check", "liveness_check", "readiness_check")
PROBE_HANDLERS = ("http_get", "tcp_socket", "exec")
STORAGE_SOURCES = ("oss", "nfs", "git", "image", "empty_dir")
PERCENT_METRICS = ("cpu", "gpu[util]")
# Measured from an LLM engine's own metrics (its waiting queue): a service without an engine has none.
LLM_METRICS = ("llm[waiting]",)

Check = Callable[[dict], Iterator[FieldError]]


def cross_field_errors(doc: dict) -> list[FieldError]:
    checks: tuple[Check, ...] = (
        check_name,
        check_processor,
        check_locations,
        check_containers,
        check_storage,
        check_autoscaler,
        check_rollout,
        check_mesh,
        check_batching,
        check_async,
        check_not_supported_yet,
    )
    return [error for check in checks for error in check(doc)]


def check_name(doc: dict) -> Iterator[FieldError]:
    top, inner = doc.get("name"), _object(doc, "metadata").get("name")
    if top is None and inner is None:
        yield FieldError("name", "is required (give name or metadata.name)")
    elif isinstance(top, str) and isinstance(inner, str) and top != inner:
        yield FieldError(
            "metadata.name", f'"{inner}" differs from name "{top}"; give the name once'
        )


def check_processor(doc: dict) -> Iterator[FieldError]:
    processor, problems = _resolved_processor(doc)
    yield from problems
    if pool_name(doc) or is_pool(doc):  # the pool's processor serves its models' files: services/servicefile/mesh.py
        return
    has_containers = "containers" in doc
    if processor == "custom" and not has_containers:
        yield FieldError("containers", 'is required by processor "custom"')
    elif processor not in (None, "custom") and has_containers:
        yield FieldError(
            "containers",
            f'cannot be combined with processor "{doc.get("processor")}": '
            "a service runs either a processor or its own containers",
        )
    yield from _custom_processor_errors(doc, processor, has_containers)
    yield from _model_errors(doc, processor)


def _resolved_processor(doc: dict) -> tuple[str | None, list[FieldError]]:
    """The Ferry processor named by processor (and processor_code, which
    Ferry writes into normalized files and must agree with it)."""
    resolved, problems = {}, []
    for field in ("processor", "processor_code"):
        code = doc.get(field)
        if isinstance(code, str) and code:
            try:
                resolved[field] = resolve_processor(code)
            except ValueError as error:
                problems.append(FieldError(field, str(error)))
    if len(resolved) == 2 and resolved["processor"] != resolved["processor_code"]:
        problems.append(
            FieldError(
                "processor_code",
                f'"{doc["processor_code"]}" is a {resolved["processor_code"]} code '
                f'but processor is "{doc["processor"]}"',
            )
        )
    return resolved.get("processor", resolved.get("processor_code")), problems


def _custom_processor_errors(doc: dict, processor, has_containers: bool) -> Iterator[FieldError]:
    kind = doc.get("processor_type")
    if kind in ("cpp", "java"):
        yield FieldError(
            "processor_type", f'"{kind}" is not supported: Ferry runs custom processors in Python'
        )
    elif kind == "python" and not doc.get("processor_entry"):
        yield FieldError("processor_entry", 'is required when processor_type is "python"')
    named = any(field in doc for field in ("processor", "processor_code", "processor_type"))
    if not named and not has_containers:
        yield FieldError(
            "processor",
            'is required: name a processor, give processor_type "python" for your own '
            "processor code, or give containers",
        )


def _model_errors(doc: dict, processor) -> Iterator[FieldError]:
    if doc.get("model_path") is not None:
        return
    if processor in PROCESSORS_NEEDING_A_MODEL:
        yield FieldError("model_path", f'is required by processor "{processor}"')
    elif processor == "triton" and not _names_model_repository(doc.get("processor_params")):
        yield FieldError(
            "model_path",
            'is required by processor "triton" unless processor_params gives --model-repository',
        )


def _names_model_repository(params) -> bool:
    if not isinstance(params, list):
        return False
    return any(
        isinstance(param, str) and param.split("=", 1)[0] == "--model-repository"
        for param in params
    )


def check_locations(doc: dict) -> Iterator[FieldError]:
    for field in LOCATION_FIELDS:
        value = doc.get(field)
        if isinstance(value, str) and value:
            problem = location_problem(value)
            if problem:
                yield FieldError(field, problem)


def location_problem(location: str) -> str | None:
    """Why Ferry could not fetch from ``location``, or None if it can."""
    if location.startswith("/"):
        return None
    scheme, separator, _ = location.partition("://")
    if not separator:
        return f"must be {LOCATION_HINT}"
    if scheme.lower() not in LOCATION_SCHEMES:
        return f'has unsupported scheme "{scheme}://"; use {LOCATION_HINT}'
    return None


def check_containers(doc: dict) -> Iterator[FieldError]:
    for index, container in _objects(doc, "containers"):
        here = ["containers", index]
        if "script" in container and "command" in container:
            yield FieldError(
                format_path(here + ["command"]), "cannot be given together with script"
            )
        if index == 0 and "port" not in container:
            yield FieldError(
                format_path(here + ["port"]), "is required: the port the server listens on"
            )
        yield from _probe_errors(container, here)
        yield from _repeated_env_names(container, here)


def _probe_errors(container: dict, here: list) -> Iterator[FieldError]:
    for probe in PROBES:
        if isinstance(container.get(probe), dict):
            handlers = [handler for handler in PROBE_HANDLERS if handler in container[probe]]
            if len(handlers) != 1:
                yield FieldError(
                    format_path(here + [probe]),
                    "must have exactly one of: " + ", ".join(PROBE_HANDLERS),
                )


def _repeated_env_names(container: dict, here: list) -> Iterator[FieldError]:
    seen = set()
    for index, variable in _objects(container, "env"):
        name = variable.get("name")
        if isinstance(name, str) and name in seen:
            yield FieldError(format_path(here + ["env", index, "name"]), f'"{name}" is given twice')
        seen.add(name)


def check_storage(doc: dict) -> Iterator[FieldError]:
    used_by: dict[str, int] = {}
    for index, mount in _objects(doc, "storage"):
        sources = [source for source in STORAGE_SOURCES if source in mount]
        if len(sources) != 1:
            yield FieldError(
                format_path(["storage", index]),
                "must have exactly one of: " + ", ".join(STORAGE_SOURCES),
            )
        path = mount.get("mount_path")
        if isinstance(path, str) and path in used_by:
            yield FieldError(
                format_path(["storage", index, "mount_path"]),
                f'"{path}" is already used by storage[{used_by[path]}]',
            )
        used_by.setdefault(path, index)


def check_autoscaler(doc: dict) -> Iterator[FieldError]:
    scaler = _object(doc, "autoscaler")
    low, high = scaler.get("min"), scaler.get("max")
    if _is_integer(low) and _is_integer(high) and low > high:
        yield FieldError("autoscaler.min", f"must not be greater than max ({high})")
    if scaler and "scaleStrategies" not in scaler and "kpa" not in scaler:
        yield FieldError("autoscaler", "give scaleStrategies (the EAS metric scaler) or kpa (Knative's KPA)")
    if "scaleStrategies" in scaler and "kpa" in scaler:
        yield FieldError("autoscaler.kpa", "use either scaleStrategies or kpa, not both")
    yield from _kpa_problems(scaler.get("kpa"))
    metrics_seen = set()
    for index, strategy in _objects(scaler, "scaleStrategies"):
        here = ["autoscaler", "scaleStrategies", index]
        metric, threshold = strategy.get("metricName"), strategy.get("threshold")
        if metric in PERCENT_METRICS and _is_number(threshold) and threshold > 100:
            yield FieldError(
                format_path(here + ["threshold"]), f'must be <= 100 for "{metric}" (a percentage)'
            )
        if isinstance(metric, str) and metric in metrics_seen:
            yield FieldError(format_path(here + ["metricName"]), f'"{metric}" is given twice')
        metrics_seen.add(metric)
        if metric in LLM_METRICS and not _is_llm(doc):
            yield FieldError(format_path(here + ["metricName"]),
                             f'"{metric}" is the queue of an LLM engine: only services whose processor is one of '
                             f'{", ".join(sorted(LLM_PROCESSORS))} have one; use qps or concurrency')


def _is_llm(doc: dict) -> bool:
    return _resolved_processor(doc)[0] in LLM_PROCESSORS  # an unknown processor is check_processor's to report


def _kpa_problems(kpa: object) -> Iterator[FieldError]:
    if not isinstance(kpa, dict):
        return
    try:
        kpa_settings_from_annotations({key: str(value) for key, value in kpa.items()})
    except ValueError as exc:
        yield FieldError("autoscaler.kpa", str(exc))


def check_rollout(doc: dict) -> Iterator[FieldError]:
    rollout = _object(doc, "rollout")
    if "canary_weight" in rollout and rollout.get("strategy", "rolling") != "canary":
        yield FieldError("rollout.canary_weight", 'applies only when strategy is "canary"')


# EAS settings Ferry does not do yet. Accepting one and ignoring it would let a file that relies on it
# deploy and behave differently from EAS, so each is refused by name until it works.
NOT_SUPPORTED_YET = {
    "metadata.type": f'typed services other than "{MODEL_POOL}" (a model mesh pool, docs/mesh.md) and "{ASYNC}" '
                     "(a queue service, docs/async.md) are not supported yet; remove it to deploy a standard "
                     "service",
    "metadata.workload_type": "workload types other than the default service are not supported yet; remove it",
    "metadata.rpc.rate_limit": "per-instance rate limits are not supported yet; remove it or set it to 0",
    "metadata.resource_rebalancing": "resource rebalancing is not supported; remove it or set it to false",
}
# The values that mean "off", which a file may spell out.
OFF_VALUES = {"metadata.rpc.rate_limit": (0,),
              "metadata.resource_rebalancing": (False,), "metadata.type": ("", MODEL_POOL, ASYNC), "metadata.workload_type": ("",)}


def check_not_supported_yet(doc: dict) -> Iterator[FieldError]:
    for path, reason in NOT_SUPPORTED_YET.items():
        found, value = _lookup(doc, path.split("."))
        if found and not any(value == off and type(value) is type(off) for off in OFF_VALUES.get(path, ())):
            yield FieldError(path, f"{json.dumps(value)} is not accepted: {reason}")


def _lookup(doc: dict, keys: list[str]) -> tuple[bool, object]:
    value: object = doc
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _object(doc: dict, key: str) -> dict:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _objects(doc: dict, key: str) -> Iterator[tuple[int, dict]]:
    """(index, item) for the object items of the list at ``key``."""
    items = doc.get(key)
    if isinstance(items, list):
        yield from ((index, item) for index, item in enumerate(items) if isinstance(item, dict))


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
