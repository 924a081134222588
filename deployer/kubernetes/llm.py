"""LLM engines (`vllm`, `sglang`) on Kubernetes: what their pods need beyond any processor's. Pure.

An engine loads gigabytes before it answers, batches many requests at once, streams tokens for minutes, and
keeps its own load on /metrics. So its pod differs from other processors' in these ways (docs/kubernetes.md,
"LLM engines"):

- Image and command: the engine's official image, its program named (`vllm serve`, `python3 -m
  sglang.launch_server`), the model at the path the args name (`model_dir`), served under the service's name;
  without a GPU, vLLM's CPU image; SGLang's images need one and say so.
- GPUs: `metadata.gpu` is `nvidia.com/gpu` (pod.resources, as for every processor) and, above one, the
  engine's tensor parallelism over them (unless processor_params set it).
- Shared memory: /dev/shm is a memory-backed emptyDir (the engine's processes exchange tensors through it),
  `metadata.shm_size` GB, else a default bounded by the memory limit it counts against.
- Probes: a startup probe on /health that allows a 30-minute load, so liveness and readiness never kill or
  count against an engine that is still loading; then readiness and liveness on /health.
- Time: a request (a stream) may last `rpc.keepalive`, 10 minutes when the file leaves EAS's 5 s; Knative's
  revision timeouts, the routes' timeouts and a raw pod's termination grace follow; the progress deadline
  allows an hour to pull, fetch and load.
- Files: the image's user is replaced by an unprivileged one (restricted Pod Security), so the engine's home
  and caches are an emptyDir, and the model never comes from a hub (HF_HUB_OFFLINE).
"""

from __future__ import annotations

import math

from processors.codes import LLM_PROCESSORS
from processors.registry import PROCESSORS

# How long an engine may take from start to a healthy /health: loading weights, compiling, warming up.
LOAD_SECONDS = 30 * 60
STARTUP_PERIOD_SECONDS = 10
# The longest one request (a stream) may last when rpc.keepalive does not say: Knative's default
# max-revision-timeout-seconds, so a default cluster accepts it.
REQUEST_SECONDS = 600
# Knative revision / raw Deployment progress: pulling a large image, fetching the model, then the load.
PROGRESS_DEADLINE_SECONDS = 60 * 60
# services.servicefile's default rpc.keepalive (not imported: the renderers stay standalone).
EAS_DEFAULT_KEEPALIVE_MS = 5000
DEFAULT_SHM_MIB = 2048
ENGINE_HOME = "/home/engine"
HOME_VOLUME = "engine-home"
SHM_VOLUME = "dshm"
KNATIVE_PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"

# Flags Ferry sets itself (where probes, routes and the OpenAI `model` point); a file may not move them.
_FERRY_FLAGS = {
    "vllm": ("--port", "--host", "--served-model-name", "--model"),
    "sglang": ("--port", "--host", "--served-model-name", "--model-path", "--model"),
}
_TENSOR_PARALLEL = {"vllm": ("--tensor-parallel-size", "-tp"),
                    "sglang": ("--tensor-parallel-size", "--tp-size", "--tp")}
# How many requests the engine batches at once: what a Knative concurrency target should be near.
_BATCH = {"vllm": ("--max-num-seqs",), "sglang": ("--max-running-requests",)}


def is_llm(doc: dict) -> bool:
    return (doc.get("processor") or "") in LLM_PROCESSORS


def has_gpu(doc: dict) -> bool:
    """A whole card (`gpu`) or a share of one (`gpu_memory`, ACK cGPU)."""
    metadata = doc.get("metadata") or {}
    return bool(metadata.get("gpu") or metadata.get("gpu_memory"))


def llm_problems(doc: dict) -> list[tuple[str, str]]:
    """Every (field, message) that keeps an engine's service file from running as asked on Kubernetes."""
    if not is_llm(doc):
        return []
    processor = doc["processor"]
    metadata = doc.get("metadata") or {}
    problems = []
    if not doc.get("model_path"):
        problems.append(("model_path", f"the {processor} processor serves the model at model_path (an http(s), "
                                       "s3 or oss URL fetched before the engine starts, a path on the node, or a "
                                       "path inside one of the file's storage mounts); pods never download from "
                                       "a model hub"))
    if processor == "sglang" and not has_gpu(doc):
        problems.append(("metadata.gpu", "the sglang processor's official images need an NVIDIA GPU: set "
                                         "metadata.gpu (or gpu_memory), or serve the model with the vllm "
                                         "processor, whose CPU image needs none"))
    params = list(doc.get("processor_params") or [])
    for index, param in enumerate(params):
        flag = param.split("=", 1)[0]
        if flag in _FERRY_FLAGS[processor]:
            problems.append((f"processor_params[{index}]",
                             f"{flag} is set by Ferry: the engine listens on 0.0.0.0:{PROCESSORS[processor].port}, "
                             "where probes and routes point, serves the model at model_path under the "
                             "service's name (the OpenAI `model`)"))
    if metadata.get("rdma"):
        problems.append(("metadata.rdma", "RDMA between engine instances is not rendered on Kubernetes: an engine "
                                          "runs in one pod, over the GPUs of metadata.gpu"))
    shm, memory = metadata.get("shm_size"), metadata.get("memory")
    if shm and memory and shm * 1024 >= memory:
        problems.append(("metadata.shm_size", f"{shm} GB of shared memory count against the memory limit of "
                                              f"{memory} MB and would take all of it; give less, or more memory"))
    given = _param(params, _TENSOR_PARALLEL[processor])
    gpus = int(metadata.get("gpu") or 0)
    if given and given[1].isdigit() and gpus and int(given[1]) > gpus:
        problems.append((f"processor_params[{given[0]}]", f"tensor parallelism over {given[1]} GPUs needs "
                                                          f"metadata.gpu of at least {given[1]}, not {gpus}"))
    return problems


def engine_image(processor: str, doc: dict) -> str:
    info = PROCESSORS[processor]
    return info.image if has_gpu(doc) or not info.cpu_image else info.cpu_image


def engine_args(processor: str, doc: dict) -> list[str]:
    """What Ferry adds to the registry's args for this file: tensor parallelism over every GPU it asks for."""
    gpus = int((doc.get("metadata") or {}).get("gpu") or 0)
    if gpus > 1 and not _param(doc.get("processor_params") or [], _TENSOR_PARALLEL[processor]):
        return [f"--tensor-parallel-size={gpus}"]
    return []


def engine_env(processor: str, doc: dict) -> dict[str, str]:
    """Defaults a user's containers[0].env may override, name by name."""
    env = {
        "HOME": ENGINE_HOME,
        "XDG_CACHE_HOME": f"{ENGINE_HOME}/.cache",
        # The uid Ferry runs the image as has no passwd entry; torch asks for a user name (getpass).
        "USER": "engine",
        "HF_HUB_OFFLINE": "1",
    }
    if processor == "vllm":
        env["VLLM_NO_USAGE_STATS"] = "1"
        memory = (doc.get("metadata") or {}).get("memory")
        if not has_gpu(doc) and memory:
            # vLLM on CPU keeps its KV cache in RAM, 4 GiB unless told: a quarter of the memory limit instead.
            env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(memory) // 4 // 1024))
    return env


def home_volume() -> tuple[dict, dict]:
    """(volume, mount) of the engine's writable home: caches of compiled kernels, never the model."""
    return {"name": HOME_VOLUME, "emptyDir": {}}, {"name": HOME_VOLUME, "mountPath": ENGINE_HOME}


def default_shm() -> str:
    return f"{DEFAULT_SHM_MIB // 1024}Gi"


def shm_volume(doc: dict) -> tuple[dict, dict]:
    """(volume, mount) of /dev/shm when the file gives no shm_size: 2 GiB, or half the memory limit below 4 GB
    (memory-backed pages count against it)."""
    memory = (doc.get("metadata") or {}).get("memory")
    size = f"{int(memory) // 2}Mi" if memory and int(memory) // 2 < DEFAULT_SHM_MIB else default_shm()
    return ({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size}},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"})


def probes(check) -> dict:
    """`check()` makes a fresh httpGet on /health. The startup probe holds the others off for LOAD_SECONDS."""
    return {
        "readinessProbe": {**check(), "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3},
        # A busy engine may answer /health late: a minute of failures before a restart, not 30 s.
        "livenessProbe": {**check(), "periodSeconds": 10, "timeoutSeconds": 10, "failureThreshold": 6},
        "startupProbe": {**check(), "periodSeconds": STARTUP_PERIOD_SECONDS, "timeoutSeconds": 5,
                         "failureThreshold": math.ceil(LOAD_SECONDS / STARTUP_PERIOD_SECONDS)},
    }


def request_seconds(doc: dict) -> int:
    """rpc.keepalive (ms) when the file sets it, else REQUEST_SECONDS. A normalized file always holds a
    keepalive: EAS's default of 5 s, which any stream outlasts, is read as "not said"."""
    keepalive = ((doc.get("metadata") or {}).get("rpc") or {}).get("keepalive")
    if not keepalive or int(keepalive) == EAS_DEFAULT_KEEPALIVE_MS:
        return REQUEST_SECONDS
    return max(1, math.ceil(int(keepalive) / 1000))


def knative_timeouts(doc: dict) -> dict[str, int]:
    """The revision's three timeouts, all the request time: a queued request or a non-streamed completion
    sends nothing until it is done, and a stream may pause; set explicitly, so a cluster's lower defaults
    (config-defaults) cannot cut them. No 1.2 factor as for other processors: Knative refuses more than its
    max-revision-timeout-seconds (600 unless an operator raised it)."""
    seconds = request_seconds(doc)
    return {"timeoutSeconds": seconds, "responseStartTimeoutSeconds": seconds, "idleTimeoutSeconds": seconds}


def grace_seconds(doc: dict) -> int:
    """How long a stopping engine may finish its streams: metadata.eas.termination_grace_period when the file
    sets it, else as long as a stream may last (the engine exits sooner when it has none)."""
    given = ((doc.get("metadata") or {}).get("eas") or {}).get("termination_grace_period")
    return int(given) if given is not None else request_seconds(doc)


def progress_deadline_seconds(doc: dict) -> int:
    rolling = (doc.get("metadata") or {}).get("rolling_strategy") or {}
    return int(rolling.get("progress_deadline_seconds") or PROGRESS_DEADLINE_SECONDS)


def batch_size(doc: dict) -> int | None:
    """The most requests the engine runs at once, when processor_params say."""
    given = _param(doc.get("processor_params") or [], _BATCH[doc["processor"]])
    return int(given[1]) if given and given[1].isdigit() and int(given[1]) > 0 else None


def _param(params: list[str], names: tuple[str, ...]) -> tuple[int, str] | None:
    """(index, value) of the first of `names` in `params`, written `--flag=value` or `--flag`, `value`."""
    for index, param in enumerate(params):
        flag, equals, value = param.partition("=")
        if flag in names:
            if equals:
                return index, value
            return index, params[index + 1] if index + 1 < len(params) else ""
    return None
