"""How each Ferry processor runs: a local command, or a Kubernetes image.

A *processor* is how an instance serves requests (DESIGN §5). This module is
data plus small pure functions, with no Django, so the node agent, the
reconciler and the Kubernetes driver share one table:

- `local_launch(service_file, ...)` -> the command the node agent starts for an
  instance on this host, or `ProcessorUnavailable` saying why it cannot run here
  and what to install;
- `local_pool_launch(service_file, ...)` -> the command of one instance of a pool
  service (the model mesh): a built-in model server that starts with no model;
- `kubernetes_image(processor)`, `inference_protocol(processor)`,
  `metrics_path(processor)` -> what a Kubernetes driver needs.

The literal "{port}" in a LocalLaunch's argv and env is replaced by the node
agent with the port it picked for the instance.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

PORT = "{port}"
BUILTIN_PROCESSORS = frozenset({"sklearn", "xgboost", "lightgbm", "onnx", "python"})
# The processors whose model server can run as a pool (load and unload models on demand).
POOL_PROCESSORS = BUILTIN_PROCESSORS
FERRY_RUNTIME_IMAGE = "ferry/runtime:0.1.0"
# Where a Kubernetes driver mounts the fetched model in the container.
KUBERNETES_MODEL_DIR = "/mnt/models"
# The project root: `python -m processors.modelserver` must import Ferry's
# packages even when Ferry is not pip-installed into the interpreter.
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)

DEFAULT_GRACE_PERIOD_SECONDS = 30
BUILTIN_READY_TIMEOUT_SECONDS = 120
EXTERNAL_READY_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class LocalLaunch:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    health_path: str
    ready_timeout_seconds: int
    grace_period_seconds: int


class ProcessorUnavailable(Exception):
    """The processor cannot run on this host. `reason` is CamelCase (for the
    service's events and conditions); the message says why and what to install."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ProcessorInfo:
    """Everything about one processor that is data. `image_args` may contain
    "{service}" (the service name) and "{model_dir}" (KUBERNETES_MODEL_DIR)."""

    image: str | None  # None: the service file's containers[0].image
    image_args: tuple[str, ...]
    port: int  # HTTP port in the container
    health_path: str
    protocol: str  # "v1+v2" (KServe V1 and Open Inference V2), "v2", "tfserving", "torchserve", "openai", "custom"
    metrics_path: str | None
    metrics_port: int | None  # None: the serving port
    # The program the container runs, when Ferry names it rather than trusting the image's entrypoint
    # (args are then `image_args`); () keeps the image's own.
    command: tuple[str, ...] = ()
    # The image for an instance that asks for no GPU (metadata.gpu / gpu_memory), when it differs.
    cpu_image: str | None = None


_BUILTIN_ARGS = (
    "python", "-m", "processors.modelserver", "--model-name", "{service}",
    "--processor", "{processor}", "--model-dir", "{model_dir}", "--http-port", "8080",
    "--host", "0.0.0.0",
)

PROCESSORS: dict[str, ProcessorInfo] = {
    **{
        name: ProcessorInfo(FERRY_RUNTIME_IMAGE, _BUILTIN_ARGS, 8080, "/v2/health/ready", "v1+v2", "/metrics", None)
        for name in sorted(BUILTIN_PROCESSORS)
    },
    "triton": ProcessorInfo(
        "nvcr.io/nvidia/tritonserver:24.08-py3",
        ("tritonserver", "--model-repository={model_dir}", "--http-port=8000"),
        8000, "/v2/health/ready", "v2", "/metrics", 8002,
    ),
    "tfserving": ProcessorInfo(
        "tensorflow/serving:2.17.0",
        ("--model_name={service}", "--model_base_path={model_dir}", "--rest_api_port=8501"),
        8501, "/v1/models/{service}", "tfserving", None, None,
    ),
    "torchserve": ProcessorInfo(
        "pytorch/torchserve:0.12.0-cpu",
        ("torchserve", "--foreground", "--model-store={model_dir}", "--models=all", "--ncs", "--disable-token-auth"),
        8080, "/ping", "torchserve", "/metrics", 8082,
    ),
    "mlserver": ProcessorInfo(
        "seldonio/mlserver:1.6.1", ("mlserver", "start", "{model_dir}"),
        8080, "/v2/health/ready", "v2", "/metrics", 8082,
    ),
    "pmml": ProcessorInfo(
        "kserve/pmmlserver:v0.15.0", ("--model_name={service}", "--model_dir={model_dir}", "--http_port=8080"),
        8080, "/v2/health/ready", "v1+v2", "/metrics", None,
    ),
    # The engines' official images; the model is served under the service's name, so the OpenAI `model` field
    # is the service name (contracts/paths.py routes by it). The command is named: the vLLM image's entrypoint
    # is `vllm serve` (model positional), SGLang's image has none.
    "vllm": ProcessorInfo(
        "vllm/vllm-openai:v0.11.0",
        ("{model_dir}", "--served-model-name={service}", "--host=0.0.0.0", "--port=8000"),
        8000, "/health", "openai", "/metrics", None,
        command=("vllm", "serve"),
        # vLLM's own CPU build of the same release (x86-64 with AVX-512 or AVX2).
        cpu_image="public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.11.0",
    ),
    "sglang": ProcessorInfo(
        "lmsysorg/sglang:v0.5.3-cu126",
        ("--model-path={model_dir}", "--served-model-name={service}", "--host=0.0.0.0", "--port=30000",
         "--enable-metrics"),
        30000, "/health", "openai", "/metrics", None,
        command=("python3", "-m", "sglang.launch_server"),
    ),
    "custom": ProcessorInfo(None, (), 0, "/", "custom", None, None),
}

# Binaries of the processors Ferry does not ship, and what to do to get them.
_TRITON_ADVICE = (
    "install Triton Inference Server: `pip install nvidia-pytriton` into its own virtualenv (it needs numpy<2) "
    "ships one as <site-packages>/pytriton/tritonserver/bin/tritonserver; put that directory on PATH or set "
    "FERRY_TRITONSERVER to the binary (its libraries in <site-packages>/nvidia_pytriton.libs are found by Ferry)"
)
_EXTERNAL_BINARIES = {
    "tfserving": (
        "tensorflow_model_server",
        "install TensorFlow Serving so that `tensorflow_model_server` is on PATH "
        "(Debian/Ubuntu: the tensorflow-model-server package from TensorFlow's apt repository)",
    ),
    "torchserve": (
        "torchserve",
        "`pip install torchserve torch torch-model-archiver` and a Java 17 runtime (`apt-get install openjdk-17-jre-headless`)",
    ),
    "mlserver": ("mlserver", "`pip install mlserver` (with the runtime your model needs, e.g. mlserver-sklearn)"),
}


def local_launch(
    service_file: dict,
    *,
    service_name: str,
    model_dir: str | None,
    python: str,
    processor_dir: str | None = None,
    warm_up_path: str | None = None,
    cache_dir: str | None = None,
) -> LocalLaunch:
    """The command that runs one instance of `service_file` (normalized) here.

    `model_dir` is where the fetched model lies. `processor_dir` and
    `warm_up_path` are where `processor_path` and `warm_up_data_path` were
    fetched (a directory, or a file); when not given, the file's own values are
    used if they are local (an absolute path or file://). For the LLM engines `python` is the engine
    environment's interpreter and `cache_dir` where it keeps what it compiles (processors/llm.py).

    Raises ProcessorUnavailable when the processor cannot run on this host.
    """
    processor = service_file.get("processor") or "custom"
    grace = _grace_period(service_file)
    if processor in BUILTIN_PROCESSORS:
        argv = _builtin_argv(service_file, processor, service_name, model_dir, python, processor_dir, warm_up_path)
        argv += ["--grace-period", str(grace)]
        env = {"PYTHONPATH": _with_project_root(os.environ.get("PYTHONPATH"))}
        return LocalLaunch(argv, env, _PROJECT_ROOT, "/v2/health/ready", BUILTIN_READY_TIMEOUT_SECONDS, grace)
    if processor == "triton":
        return _triton_launch(service_file, model_dir, grace)
    if processor in _EXTERNAL_BINARIES:
        return _external_launch(service_file, processor, service_name, model_dir, grace)
    if processor == "custom":
        return _custom_launch(service_file, model_dir, grace)
    if processor in ("vllm", "sglang"):
        from processors import llm  # imported here: it builds on this module's LocalLaunch

        return llm.local_launch(service_file, processor=processor, service_name=service_name, model_dir=model_dir,
                                python=python, cache_dir=cache_dir, grace=grace)
    if processor == "pmml":
        raise ProcessorUnavailable(
            "ProcessorNotSupportedLocally",
            "the pmml processor runs only on a Kubernetes cluster (image kserve/pmmlserver, which needs Java); "
            "to serve the model on this host, convert it to ONNX and use the onnx processor",
        )
    raise _unknown(processor)


def local_pool_launch(service_file: dict, *, service_name: str, python: str) -> LocalLaunch:
    """The command that runs one instance of the pool service `service_file` (normalized) here: Ferry's model
    server with `--pool`, which listens at once with no model and is ready as soon as it listens; the models
    (their directories, a python processor's handler) come later, in each load's body
    (processors/modelserver/pool.py).

    Raises ProcessorUnavailable naming the processor when it cannot serve a pool.
    """
    processor = service_file.get("processor") or "custom"
    if processor not in POOL_PROCESSORS:
        raise ProcessorUnavailable(
            "ProcessorCannotPool",
            f'the {processor} processor cannot serve a model pool; a pool runs Ferry\'s built-in model server: '
            f'{", ".join(sorted(POOL_PROCESSORS))}',
        )
    grace = _grace_period(service_file)
    argv = [python, "-m", "processors.modelserver", "--pool", "--model-name", service_name,
            "--processor", processor, "--http-port", PORT, "--host", "127.0.0.1"]
    worker_threads = service_file.get("metadata", {}).get("rpc", {}).get("worker_threads")
    if worker_threads:
        argv += ["--worker-threads", str(worker_threads)]
    argv += ["--grace-period", str(grace)]
    env = {"PYTHONPATH": _with_project_root(os.environ.get("PYTHONPATH"))}
    return LocalLaunch(argv, env, _PROJECT_ROOT, "/v2/health/ready", BUILTIN_READY_TIMEOUT_SECONDS, grace)


def kubernetes_image(processor: str, service_file: dict | None = None) -> tuple[str, list[str]]:
    """(image, args) for a container running `processor`; args may hold
    "{service}" and "{model_dir}" for the driver to fill in. `custom` takes its
    image from the service file's containers[0]."""
    info = _info(processor)
    if info.image is None:
        container = ((service_file or {}).get("containers") or [{}])[0]
        return container.get("image", ""), []
    return info.image, [arg.replace("{processor}", processor) for arg in info.image_args]


def inference_protocol(processor: str) -> str:
    return _info(processor).protocol


def metrics_path(processor: str) -> str | None:
    """Path of the Prometheus endpoint in the container (None: none); on
    `PROCESSORS[processor].metrics_port` when that is set."""
    return _info(processor).metrics_path


def urls_to_fetch(service_file: dict) -> dict[str, str]:
    """The service file's fields that name something to fetch before an
    instance starts (model_path, processor_path, warm_up_data_path)."""
    fields = ("model_path", "processor_path", "warm_up_data_path")
    return {field: service_file[field] for field in fields if service_file.get(field)}


def _info(processor: str) -> ProcessorInfo:
    try:
        return PROCESSORS[processor]
    except KeyError:
        raise _unknown(processor) from None


def _unknown(processor: str) -> ProcessorUnavailable:
    return ProcessorUnavailable("UnknownProcessor", f'unknown processor "{processor}"; known: {", ".join(PROCESSORS)}')


def _builtin_argv(doc, processor, service_name, model_dir, python, processor_dir, warm_up_path) -> list[str]:
    argv = [python, "-m", "processors.modelserver", "--model-name", service_name, "--processor", processor,
            "--http-port", PORT, "--host", "127.0.0.1"]
    if model_dir:
        argv += ["--model-dir", model_dir]
    if doc.get("model_entry"):
        argv += ["--model-entry", doc["model_entry"]]
    if processor == "python":
        argv += _handler_args(doc, model_dir, processor_dir)
    warm_up = warm_up_path or _local_path(doc.get("warm_up_data_path"), "warm_up_data_path")
    if warm_up:
        argv += ["--warmup-file", warm_up]
    worker_threads = doc.get("metadata", {}).get("rpc", {}).get("worker_threads")
    if worker_threads:
        argv += ["--worker-threads", str(worker_threads)]
    return argv + batching_args(doc)


def batching_args(doc: dict) -> list[str]:
    """The built-in server's batching options for metadata.rpc.batching (none when it is off); the
    defaults when the file gives no size or timeout are Ferry's (processors/modelserver/__init__.py)."""
    rpc = (doc.get("metadata") or {}).get("rpc") or {}
    if rpc.get("batching") is not True:
        return []
    from processors.modelserver import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_TIMEOUT_MS

    return ["--max-batch-size", str(rpc.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE)),
            "--max-batch-timeout-ms", str(rpc.get("max_batch_timeout", DEFAULT_MAX_BATCH_TIMEOUT_MS))]


def _handler_args(doc: dict, model_dir: str | None, processor_dir: str | None) -> list[str]:
    entry = doc.get("processor_entry")
    if not entry:
        raise ProcessorUnavailable(
            "ProcessorEntryMissing",
            "the python processor needs processor_entry: the file of your handler module (e.g. app.py), "
            "inside processor_path or else model_path",
        )
    code_dir = processor_dir or _local_path(doc.get("processor_path"), "processor_path") or model_dir
    if not code_dir:
        raise ProcessorUnavailable(
            "ProcessorPathMissing",
            f"the python processor found no directory holding {entry}: give processor_path or model_path",
        )
    # processor_path may name the handler file itself rather than the directory holding it.
    handler = code_dir if Path(code_dir).name == entry else str(Path(code_dir) / entry)
    return ["--handler", handler]


def _local_path(url: str | None, field: str) -> str | None:
    """A local absolute path or file:// URL as a path; remote URLs must have
    been fetched by the caller (who then passes the local path)."""
    if not url:
        return None
    if url.startswith("file://"):
        return unquote(urlparse(url).path)
    if url.startswith("/"):
        return url
    raise ValueError(f"{field} {url} is remote: fetch it (processors.fetch.fetch_model) and pass the local path")


def _triton_launch(doc: dict, model_dir: str | None, grace: int) -> LocalLaunch:
    binary = os.environ.get("FERRY_TRITONSERVER") or shutil.which("tritonserver")
    if not binary or not os.access(binary, os.X_OK):
        raise ProcessorUnavailable("ProcessorNotInstalled", f"the triton processor needs `tritonserver`: {_TRITON_ADVICE}")
    params = list(doc.get("processor_params") or [])
    argv = [binary, f"--http-port={PORT}", "--allow-grpc=false", "--allow-metrics=false"]
    if not any(param.startswith("--model-repository") for param in params):
        argv.append(f"--model-repository={model_dir}")
    env = {}
    bundled_libs = Path(binary).resolve().parents[3] / "nvidia_pytriton.libs" if "pytriton" in binary else None
    if bundled_libs and bundled_libs.is_dir():
        env["LD_LIBRARY_PATH"] = _joined(str(bundled_libs), os.environ.get("LD_LIBRARY_PATH"))
    cwd = model_dir or tempfile.gettempdir()
    return LocalLaunch(argv + params, env, cwd, "/v2/health/ready", EXTERNAL_READY_TIMEOUT_SECONDS, grace)


def _external_launch(doc: dict, processor: str, service_name: str, model_dir: str | None, grace: int) -> LocalLaunch:
    binary, advice = _EXTERNAL_BINARIES[processor]
    path = shutil.which(binary)
    if not path:
        raise ProcessorUnavailable("ProcessorNotInstalled", f"the {processor} processor needs `{binary}`: {advice}")
    if processor == "torchserve" and not shutil.which("java"):
        raise ProcessorUnavailable("ProcessorNotInstalled", f"the torchserve processor needs Java: {advice}")
    params = list(doc.get("processor_params") or [])
    env: dict[str, str] = {}
    if processor == "tfserving":
        argv = [path, f"--rest_api_port={PORT}", f"--model_name={service_name}", f"--model_base_path={model_dir}"]
        health = f"/v1/models/{service_name}"
    elif processor == "torchserve":
        # TorchServe takes its addresses from a config file only: write one next to the instance.
        script = (
            'cfg="$(mktemp)" && printf "inference_address=http://127.0.0.1:%s\\nmanagement_address=http://127.0.0.1:0\\n'
            'metrics_address=http://127.0.0.1:0\\n" "$PORT" > "$cfg" && exec "$TORCHSERVE" --foreground '
            '--model-store "$MODEL_DIR" --models all --ncs --disable-token-auth --ts-config "$cfg" "$@"'
        )
        argv = ["sh", "-c", script, "torchserve"]
        env = {"PORT": PORT, "TORCHSERVE": path, "MODEL_DIR": model_dir or ""}
        health = "/ping"
    else:  # mlserver reads its settings from MLSERVER_* variables; port 0: any free port, so instances do not clash
        argv = [path, "start", model_dir or "."]
        env = {"MLSERVER_HTTP_PORT": PORT, "MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_PORT": "0",
               "MLSERVER_METRICS_PORT": "0"}
        health = "/v2/health/ready"
    cwd = model_dir or tempfile.gettempdir()
    return LocalLaunch(argv + params, env, cwd, health, EXTERNAL_READY_TIMEOUT_SECONDS, grace)


def _custom_launch(doc: dict, model_dir: str | None, grace: int) -> LocalLaunch:
    containers = doc.get("containers") or []
    if not containers:
        raise ProcessorUnavailable("NoContainer", "the custom processor needs containers[0] with a script or command")
    container = containers[0]
    argv = _container_argv(container)
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    env["PORT"] = PORT
    cwd = model_dir or tempfile.gettempdir()
    return LocalLaunch(argv, env, cwd, _readiness_path(container), EXTERNAL_READY_TIMEOUT_SECONDS, grace)


def _container_argv(container: dict) -> list[str]:
    if container.get("script"):
        return ["sh", "-c", container["script"]]
    command = container.get("command")
    if isinstance(command, str):
        return ["sh", "-c", command, "sh", *container.get("args", [])]
    if command:
        return [*command, *container.get("args", [])]
    raise ProcessorUnavailable(
        "ContainerImageOnly",
        "containers[0] has no script or command: it runs its image's own command, which needs a container "
        "runtime; deploy it to a Kubernetes cluster, or give containers[0].script to run it on this host",
    )


def _readiness_path(container: dict) -> str:
    http_get = (container.get("readiness_check") or {}).get("http_get") or {}
    return http_get.get("path") or "/"


def _grace_period(doc: dict) -> int:
    eas = (doc.get("metadata") or {}).get("eas") or {}
    return int(eas.get("termination_grace_period", DEFAULT_GRACE_PERIOD_SECONDS))


def _with_project_root(pythonpath: str | None) -> str:
    return _joined(_PROJECT_ROOT, pythonpath)


def _joined(first: str, rest: str | None) -> str:
    return f"{first}:{rest}" if rest else first
