"""Console fixtures: people in projects, signed-in Django test clients, services, and gateway metrics written
to Redis exactly as the gateway writes them."""

import time

import pytest
import redis
from django.conf import settings
from django.test import Client

from services.models import Project
from services.writes import service_create, service_update
from tests.api.conftest import make_member

# A service the reconciler accepts without any model: its instances never start (no agent in these tests).
IDLE_FILE = {"name": "echo", "processor": "custom",
             "containers": [{"image": "none", "script": "sleep 600", "port": 8000}], "metadata": {"instance": 1}}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(db):
    return make_member("alice", "team_a")


@pytest.fixture
def viewer(db, alice):
    return make_member("vera", "team_a", role="viewer")


@pytest.fixture
def alice_client(alice) -> Client:
    return signed_in(alice)


@pytest.fixture
def viewer_client(viewer) -> Client:
    return signed_in(viewer)


@pytest.fixture
def echo(alice):
    return service_create(actor=alice, project=Project.objects.get(name="team_a"), document=dict(IDLE_FILE))


@pytest.fixture
def echo_v2(echo, alice):
    """echo with a second version (a new command makes a new instance shape)."""
    service_update(actor=alice, service=echo, patch={"containers": [{"image": "none", "script": "sleep 700",
                                                                       "port": 8000}]})
    echo.refresh_from_db()
    return echo


@pytest.fixture
def metrics_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    written = []
    yield client, written
    if written:
        client.delete(*written)


def write_second(client, written: list, service: str, version: int, second: int, **fields) -> None:
    """One per-second hash as the gateway writes it (and the matching per-minute one, added up)."""
    for resolution, unit in (("s", second), ("m", second // 60)):
        key = f"ferry:metrics:{resolution}:local:{service}:{version}:{unit}"
        for name, value in fields.items():
            if name.endswith("_max"):
                current = float(client.hget(key, name) or 0)
                client.hset(key, name, max(current, value))
            elif isinstance(value, float):
                client.hincrbyfloat(key, name, value)
            else:
                client.hincrby(key, name, value)
        client.expire(key, 3600)
        written.append(key)


def traffic(client, written, service: str, version: int = 1, seconds: int = 30, rps: int = 5,
            errors_every: int = 10, now: float | None = None) -> None:
    """`seconds` seconds of traffic ending now: rps requests a second, some of them 500s."""
    now = int(now or time.time())
    for offset in range(seconds):
        second = now - seconds + offset
        bad = 1 if offset % errors_every == 0 else 0
        write_second(client, written, service, version, second, requests=rps, errors=bad, status_200=rps - bad,
                     **({"status_500": bad} if bad else {}), latency_ms_sum=float(rps * (10 + offset % 7)),
                     latency_ms_max=float(20 + offset % 9), concurrency_max=float(1 + offset % 3), queue_max=0.0)


# --- The browser: Debian's chromium driven by Playwright (never a downloaded browser) -----------------------

import os  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.e2e.conftest import demo_models, local_cluster  # noqa: E402,F401 -- fixtures shared with e2e

CHROMIUM = os.environ.get("FERRY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LAPTOP = {"width": 1366, "height": 860}


@pytest.fixture(scope="session")
def chromium(django_db_setup, django_db_blocker):  # the test database exists before the event loop does
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs Debian's chromium package")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium, or set FERRY_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread, and Django refuses ORM calls from a thread with
    # a running loop. The test's own ORM calls between browser steps are plain synchronous calls all the same.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from django.db import connections

    # Starting Playwright moves this thread into a greenlet whose context gets fresh database connection
    # objects; carry over what pytest-django's serialized rollback restores between transactional tests.
    serialized = {alias: connections[alias]._test_serialized_contents for alias in connections
                  if hasattr(connections[alias], "_test_serialized_contents")}
    try:
        with sync_playwright() as playwright:
            for alias, contents in serialized.items():
                connections[alias]._test_serialized_contents = contents
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_page(chromium, live_server):
    context = chromium.new_context(viewport=LAPTOP, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())  # every action asks for confirmation
    yield page
    context.close()


def log_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")


@pytest.fixture
def reconciler(local_cluster, live_server):  # noqa: F811
    """The beat sweep, in a thread: reconciles every service a few times a second while the browser waits."""
    from django.db import connection

    from deployer.reconcile import reconcile
    from services.models import Service

    stop = threading.Event()
    failures = []

    def sweep():
        try:
            while not stop.is_set():
                for pk in list(Service.objects.values_list("pk", flat=True)):
                    try:
                        reconcile(pk)
                    except Exception:  # noqa: BLE001 -- reported at the end of the test
                        failures.append(traceback.format_exc())
                stop.wait(0.3)
        finally:
            connection.close()

    thread = threading.Thread(target=sweep, name="reconciler", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(60)
    if failures:  # the deployer's own tests own its errors; the browser's expectations above are what fail here
        warnings.warn(f"{len(failures)} reconcile(s) failed during the test; the first:\n{failures[0]}", stacklevel=1)


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
