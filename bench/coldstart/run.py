"""Cold start of a scaled-to-zero service: the time from a request until its response, and where it went.

    .venv/bin/python bench/coldstart/run.py [--service demo_iris] [--runs 10] [--mode auto|gateway|instance]

Run it beside a running platform (`make run`), with the same environment (FERRY_VAR_DIR, DATABASE_URL,
REDIS_URL; like scripts/run it assumes the embedded Redis on 127.0.0.1:$FERRY_REDIS_PORT, 6390, when
REDIS_URL is unset). Each run, in this process, through Django:

  1. once: if the service's autoscaler does not allow zero, `autoscaler_set(min=0)` (what the API's
     UpdateServiceAutoScaler calls; without an autoscaler: {"min": 0, "max": 1, "kpa": {}});
  2. `Service.autoscaled_instances = 0` (the autoscaler's decision, as runautoscaler writes it), then
     `deployer.reconcile.reconcile(service)` until no LocalInstance row of the service is left (the agent
     stops the process; the reconciler deletes the Terminated row), then `--settle` seconds of quiet (the
     warm pool tops itself up);
  3. the request, timed until its response:
     - gateway mode: POST <gateway>/api/predict/<service> with the service's token; the gateway's activator
       holds it and asks for an instance (deployer.activate_service);
     - instance mode (no gateway answering): `deployer.activation.activate(service, cluster)`, the function
       the activator's task runs, then the first successful POST /v1/models/<service>:predict on the port
       the agent gave the new instance (polled every 10 ms: a row with a port, then the port itself).

The breakdown per run comes from the instance log (breakdown.py); the model fetch (cache hit), which is
part of the control plane, is timed separately. With or without the warm pool is the agent's setting:
compare a platform started with FERRY_WARM_POOL_SIZE=0 with one started without it.
When the runautoscaler loop runs (as under `make run`; the bench sees its decisions in Redis), step 1 gives
the service a KPA policy that goes to zero quickly instead ({"min": 0, "max": 1} with a 6 s window and a 1 s
scale-to-zero grace) and step 2 waits for the loop to take it to zero, since forcing it would fight the loop.
At the end the service's autoscaler is put back as it was (`autoscaler_set` / `autoscaler_delete`, which also
drop the decision `autoscaled_instances`), so the service returns to its own instance count; `--keep-zero`
leaves it at zero instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
if not os.environ.get("REDIS_URL"):  # as scripts/run: the embedded Redis wakes the agent at once
    from config.embedded_redis import embedded_redis_url  # with the password in var/redis-password

    os.environ["REDIS_URL"] = embedded_redis_url()

from breakdown import PARTS, Run, read_run  # noqa: E402

IRIS_BODY = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="demo_iris")
    parser.add_argument("--cluster", default="local")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--mode", choices=("auto", "gateway", "instance"), default="auto")
    parser.add_argument("--gateway", default=None, help="default: settings.FERRY_GATEWAY_URL")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds at zero before each request")
    parser.add_argument("--body", default=json.dumps(IRIS_BODY), help="the request body (V1 JSON)")
    parser.add_argument("--json", dest="json_out", help="also write every run's figures to this file")
    parser.add_argument("--keep-zero", action="store_true", help="leave the service at zero afterwards")
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from services.models import Service

    service = Service.objects.select_related("cluster").get(name=options.service, cluster__name=options.cluster)
    gateway = (options.gateway or settings.FERRY_GATEWAY_URL).rstrip("/")
    mode = options.mode if options.mode != "auto" else ("gateway" if _answers(gateway) else "instance")
    print(f"Cold start of {service.name} (cluster {options.cluster}), {options.runs} runs, {mode} mode"
          + (f" via {gateway}" if mode == "gateway" else " (no gateway: instance-level, see the docstring)"))
    original = service.autoscaler
    loop_runs = _allow_zero(service)
    fetch = _fetch_cache_hit(service)
    runs = []
    try:
        for number in range(1, options.runs + 1):
            _scale_to_zero(service, by_the_loop=loop_runs)
            time.sleep(options.settle)
            run = _one_run(service, mode, gateway, options.body.encode())
            runs.append(run)
            pooled = {True: "warm pool", False: "new process", None: "?"}[run.pooled]
            parts = "  ".join(f"{name} {value:.3f}" for name, value in run.parts.items())
            print(f"run {number:2d}: {run.total:.3f} s ({pooled})  {parts}"
                  + "".join(f"\n        {note}" for note in run.notes))
    finally:
        _put_back(service, original, options.keep_zero)
    _report(runs, fetch)
    if options.json_out:
        Path(options.json_out).write_text(json.dumps({"mode": mode, "fetch_cache_hit": fetch, "runs": [
            {"total": r.total, "pooled": r.pooled, "parts": r.parts, "notes": r.notes} for r in runs]}, indent=1))


def _answers(gateway: str) -> bool:
    try:
        with urllib.request.urlopen(f"{gateway}/readyz", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # something answers HTTP there
    except OSError:
        return False


FAST_TO_ZERO = {"min": 0, "max": 1, "kpa": {"autoscaling.knative.dev/window": "6s",
                                           "autoscaling.knative.dev/scale-to-zero-grace-period": "1s"}}


def _allow_zero(service) -> bool:
    """Lets the service be at zero; True when the autoscaler loop runs (then it takes the service to zero)."""
    from services.models import Service
    from services.writes.scaling import autoscaler_delete, autoscaler_set

    if service.autoscaler is not None:  # a merge patch would keep the members FAST_TO_ZERO leaves out
        service = autoscaler_delete(actor=None, service=service)
    asked = time.time()
    autoscaler_set(actor=None, service=Service.objects.get(pk=service.pk), autoscaler=FAST_TO_ZERO)
    print(f"Set the autoscaler of {service.name} to {json.dumps(FAST_TO_ZERO)} so that it may be at zero")
    return _loop_decides(service.name, since=asked)


def _loop_decides(name: str, since: float, timeout: float = 5.0) -> bool:
    import redis
    from django.conf import settings

    from contracts.scaling_records import DECISION_KEY

    client = redis.Redis.from_url(settings.REDIS_URL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.get(DECISION_KEY.format(cluster="local", service=name))
        if raw and json.loads(raw)["time"] > since:
            print("The autoscaler loop runs: it takes the service to zero before each run")
            return True
        time.sleep(0.25)
    return False


def _put_back(service, original: dict | None, keep_zero: bool) -> None:
    from services.models import Service
    from services.writes.scaling import autoscaler_delete, autoscaler_set

    if keep_zero:
        _scale_to_zero(service)
        return
    service = Service.objects.get(pk=service.pk)
    if original == service.autoscaler:
        Service.objects.filter(pk=service.pk).update(autoscaled_instances=None)
        from deployer.reconcile import reconcile

        reconcile(service.pk)
    else:  # a merge patch could not take back a member the bench added: remove, then set the original
        service = autoscaler_delete(actor=None, service=service)
        if original is not None:
            autoscaler_set(actor=None, service=service, autoscaler=original)
    print(f"Put the autoscaler of {service.name} back as it was ({json.dumps(original)})")


def _scale_to_zero(service, timeout: float = 60.0, by_the_loop: bool = False) -> None:
    from deployer.models import LocalInstance
    from deployer.reconcile import reconcile
    from services.models import Service

    deadline = time.monotonic() + timeout
    while True:
        if not by_the_loop:
            Service.objects.filter(pk=service.pk).update(autoscaled_instances=0)
            reconcile(service.pk)
        if not LocalInstance.objects.filter(service_id=service.pk).exists():
            return
        if time.monotonic() > deadline:
            rows = list(LocalInstance.objects.filter(service_id=service.pk).values_list("name", "state", "desired"))
            sys.exit(f"{service.name} did not reach zero within {timeout:g} s (rows: {rows}); is the node agent "
                     "running (make run)?")
        time.sleep(0.2)


def _one_run(service, mode: str, gateway: str, body: bytes) -> Run:
    began, began_mono = time.time(), time.monotonic()
    if mode == "gateway":
        from services.selectors.catalog import service_token

        request = urllib.request.Request(f"{gateway}/api/predict/{service.name}", data=body, method="POST",
                                         headers={"Authorization": service_token(service),
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = response.read()
        ended = began + (time.monotonic() - began_mono)
        log_path = _log_path(service)
    else:
        from deployer.activation import activate

        if not activate(service.name, service.cluster.name):
            sys.exit(f"activate({service.name!r}) did nothing: the service is not at zero or not running")
        activated = time.monotonic() - began_mono
        port, log_path = _wait_for_port(service, began_mono)
        from services.selectors.catalog import service_token

        answer = _first_answer(port, service.name, body, began_mono, service_token(service))
        ended = began + (time.monotonic() - began_mono)
    run = read_run(log_path, began, ended, mode)
    if mode == "instance":
        run.notes.append(f"activate() returned after {activated:.3f} s (rows written)")
    if b"predictions" not in answer and b"outputs" not in answer:
        run.notes.append(f"unexpected answer: {answer[:200]!r}")
    return run


def _wait_for_port(service, began_mono: float, timeout: float = 120.0) -> tuple[int, Path]:
    from deployer.models import LocalInstance

    while time.monotonic() - began_mono < timeout:
        row = (LocalInstance.objects.filter(service_id=service.pk, desired="running", port__isnull=False)
               .only("port", "log_path").first())
        if row is not None:
            return row.port, Path(row.log_path)
        time.sleep(0.01)
    sys.exit("no instance got a port within 120 s: is the node agent running (make run)?")


def _first_answer(port: int, name: str, body: bytes, began_mono: float, token: str,
                  timeout: float = 120.0) -> bytes:
    url = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
    while time.monotonic() - began_mono < timeout:
        try:
            # The instance asks for its service's token on every route but the probes.
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                                      "Authorization": token})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError):  # not listening yet (the server binds last)
            time.sleep(0.01)
    sys.exit(f"the instance on port {port} did not answer within {timeout:g} s")


def _log_path(service) -> Path:
    from deployer.models import LocalInstance

    row = LocalInstance.objects.filter(service_id=service.pk).exclude(log_path="").order_by("-pk").first()
    return Path(row.log_path) if row else Path("/nonexistent")


def _fetch_cache_hit(service, times: int = 5) -> float | None:
    """The median time of fetching the service's model, warm-up file etc. again (all cached now)."""
    from django.conf import settings

    from processors.fetch import fetch_model
    from processors.registry import urls_to_fetch
    from services.models import Version

    version = Version.objects.filter(service=service).order_by("-number").first()
    urls = list(urls_to_fetch(version.service_file).values()) if version else []
    if not urls:
        return None
    durations = []
    for _ in range(times):
        began = time.monotonic()
        for url in urls:
            fetch_model(url, cache_dir=Path(settings.VAR_DIR) / "models")
        durations.append(time.monotonic() - began)
    return statistics.median(durations)


def _report(runs: list[Run], fetch: float | None) -> None:
    totals = sorted(run.total for run in runs)
    print(f"\n{len(runs)} runs: median {statistics.median(totals):.3f} s, p95 {_p95(totals):.3f} s, "
          f"min {totals[0]:.3f} s, max {totals[-1]:.3f} s (target: p95 under 1 s)")
    pooled = sum(1 for run in runs if run.pooled)
    print(f"started from the warm pool: {pooled} of {len(runs)}")
    print("\nmedian per part (s):")
    for name, covers in PARTS:
        values = [run.parts[name] for run in runs if name in run.parts]
        if values:
            print(f"  {name:16s} {statistics.median(values):7.3f}   p95 {_p95(sorted(values)):7.3f}   {covers}")
    if fetch is not None:
        print(f"  {'model fetch':16s} {fetch:7.3f}   (cache hit, of the control plane; timed apart)")


def _p95(values: list[float]) -> float:
    """Nearest rank: with 10 runs, the 10th value (the largest)."""
    rank = max(1, -(-95 * len(values) // 100))
    return values[rank - 1]


if __name__ == "__main__":
    main()
