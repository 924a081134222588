"""Deploys the demo services: iris (scikit-learn) and digits (ONNX), trained here from data scikit-learn ships.

`make run` runs it as one of its processes with --wait: it waits for both services to be Running, prints how to
call them, and exits 0, which its supervisor takes for a finished one-shot (not restarted). --stay keeps it
alive until SIGTERM, for process managers that stop everything when one process exits.
"""

import json
import os
import signal
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from processors.demo import demo_service_files, train_demo_models
from services.models import Project, Service
from services.writes import service_create

IRIS_REQUEST = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}


class Command(BaseCommand):
    help = "Trains the demo models, deploys demo_iris and demo_digits on the local cluster, prints how to call them."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=int, default=0, help="Seconds to wait for the services to be Running.")
        parser.add_argument("--stay", action="store_true", help="Keep running afterwards, until SIGTERM.")

    def handle(self, *args, wait: int, stay: bool, **options):
        try:
            self._deploy(wait)
        except Exception as exc:  # noqa: BLE001 -- the platform stays up even when the demo could not deploy
            self.stderr.write(f"The demo services could not be deployed: {exc}")
        if stay:
            signal.signal(signal.SIGTERM, lambda *_: exit(0))
            while True:
                time.sleep(3600)

    def _deploy(self, wait: int) -> None:
        # Under a file source root (never var/, which sources may not read): the demo deploys them by file://.
        paths = train_demo_models(settings.FERRY_FILE_SOURCE_ROOTS[0] / "demo")
        owner = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        project = Project.objects.get(name=settings.FERRY_DEFAULT_PROJECT)
        for service_file in demo_service_files(paths):
            if not Service.objects.filter(name=service_file["name"], cluster__is_default=True).exists():
                service_create(actor=owner, project=project, document=service_file)
                self.stdout.write(f"Created demo service {service_file['name']}")
        if wait:
            self._wait_until_running(["demo_iris", "demo_digits"], wait)
            self._print_calls(paths)

    def _wait_until_running(self, names: list[str], seconds: int) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            phases = dict(Service.objects.filter(name__in=names).values_list("name", "phase"))
            if all(phases.get(name) == "Running" for name in names):
                return
            time.sleep(1)
        raise TimeoutError(f"not Running after {seconds} s: {phases}")

    def _print_calls(self, paths) -> None:
        digits_request = json.loads(paths["digits_request"].read_text())
        calls = {
            "demo_iris": ("v1/models/demo_iris:predict", IRIS_REQUEST),
            "demo_digits": ("v2/models/demo_digits/infer", digits_request),
        }
        gateway = settings.FERRY_GATEWAY_URL.rstrip("/")
        api = f"http://127.0.0.1:{os.environ.get('FERRY_WEB_PORT', '8000')}/api/v2/services/local"
        self.stdout.write(f"The demo services are Running. Call them through the gateway ({gateway}). Each call")
        self.stdout.write("needs its service's token, fetched with the admin's API token rather than printed here:")
        for name, (path, body) in calls.items():
            self.stdout.write(
                f'  TOKEN=$(curl -s -H "Authorization: Bearer $(cat var/admin-token)" {api}/{name}/endpoints'
                """ | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessToken"])')""")
            self.stdout.write(f"""  curl -s -H "Authorization: $TOKEN" -H 'Content-Type: application/json' """
                              f"{gateway}/{path} -d '{json.dumps(body)}'")
