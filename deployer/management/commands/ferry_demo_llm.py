"""`manage.py ferry_demo_llm`: the LLM demo of `make run` (FERRY_DEMO_LLM=1): installs the vLLM engine's
environment unless it is there (deployer/engines.py; minutes, once), makes the tiny model with the engine's
python (processors/tiny_llm.py), deploys `demo_chat` on the local cluster, and once it is Running prints how
to call it with curl and the OpenAI client. A one-shot: it exits 0, also when the demo could not deploy (having
said why), so its supervisor does not restart it.
"""

import os
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from deployer.engines import Engine, install
from processors.demo import demo_chat_service_file, make_readable_dirs
from services.models import Project, Service
from services.writes import service_create

ROOT = Path(__file__).resolve().parents[3]
NAME = "demo_chat"


class Command(BaseCommand):
    help = "Installs the vLLM engine if needed, makes a tiny LLM offline and deploys demo_chat on the local cluster."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=int, default=0, help="Seconds to wait for demo_chat to be Running.")

    def handle(self, *args, wait: int, **options):
        try:
            python = self._engine_python()
            model_dir = self._tiny_model(python)
            self._deploy(model_dir)
            if wait:
                self._wait_until_running(wait)
                self._print_calls()
        except Exception as exc:  # noqa: BLE001 -- the platform stays up even when the demo could not deploy
            self.stderr.write(f"The LLM demo could not be deployed: {exc}")

    def _engine_python(self) -> str:
        if settings.FERRY_VLLM_PYTHON:
            return settings.FERRY_VLLM_PYTHON
        engine = Engine.configured()
        while not engine.ready():
            with engine.lock() as held:
                if held and not engine.ready():
                    said = lambda reason, message, warning=False: self.stdout.write(f"{reason}: {message}")  # noqa: E731
                    if not install(engine, said):
                        raise RuntimeError((engine.directory / "failed.json").read_text())
            if not held:
                self.stdout.write("Waiting for the vllm engine's install under way (a service asked for it)")
                time.sleep(10)
        return engine.python

    def _tiny_model(self, python: str) -> Path:
        # Under a file source root (never var/, which sources may not read): deployed by file://, used in place.
        target = Path(settings.FERRY_FILE_SOURCE_ROOTS[0]) / "demo" / "tiny-llm"
        make_readable_dirs(target.parent)  # before the engine's python, which runs beside the other demo's setup
        done = subprocess.run([python, "-m", "processors.tiny_llm", str(target)], cwd=ROOT, capture_output=True,
                              text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            raise RuntimeError(f"making the tiny model failed:\n{done.stderr[-3000:]}")
        return target

    def _deploy(self, model_dir: Path) -> None:
        if Service.objects.filter(name=NAME, cluster__is_default=True).exists():
            return
        owner = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        project = Project.objects.get(name=settings.FERRY_DEFAULT_PROJECT)
        service_create(actor=owner, project=project, document=demo_chat_service_file(model_dir))
        self.stdout.write(f"Created demo service {NAME} (its engine's first start compiles for a minute or more)")

    def _wait_until_running(self, seconds: int) -> None:
        deadline = time.monotonic() + seconds
        phase = ""
        while time.monotonic() < deadline:
            service = Service.objects.filter(name=NAME, cluster__is_default=True).first()
            phase = service.phase if service else "gone"
            if phase == "Running":
                return
            if phase == "Failed":
                raise RuntimeError(f"{NAME} failed: {service.status_message}")
            time.sleep(2)
        raise TimeoutError(f"{NAME} not Running after {seconds} s ({phase})")

    def _print_calls(self) -> None:
        gateway = settings.FERRY_GATEWAY_URL.rstrip("/")
        api = f"http://127.0.0.1:{os.environ.get('FERRY_WEB_PORT', '8000')}/api/v2/services/local"
        self.stdout.write(f"{NAME} is Running: the real vLLM engine serving a tiny random-weight Llama. Call it "
                          "through the gateway with its token (docs/llm.md):")
        self.stdout.write(
            f'  TOKEN=$(curl -s -H "Authorization: Bearer $(cat var/admin-token)" {api}/{NAME}/endpoints'
            """ | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessToken"])')""")
        self.stdout.write(f"""  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' """
                          f"{gateway}/api/predict/{NAME}/v1/chat/completions "
                          f"""-d '{{"model": "{NAME}", "messages": [{{"role": "user", "content": "Hello"}}], """
                          """"max_tokens": 20}'""")
