"""Elasticity: a compressed day of traffic against demo_iris, and what the autoscaler made of it.

    .venv/bin/python bench/elasticity/run.py [--day-seconds 480] [--peak-rps 150] [--objective-ms 100]
                                             [--compare-fixed]

Run it beside `make run` (same environment, like bench/coldstart: FERRY_VAR_DIR, DATABASE_URL, REDIS_URL; the
embedded Redis on 127.0.0.1:$FERRY_REDIS_PORT, 6390, when REDIS_URL is unset). `make run`'s autoscaler loop
(runautoscaler), worker and node agent do the scaling; this script only sets the policy, sends the traffic and
measures:

  1. sets the service's autoscaler to a KPA on requests per second (`--target` per instance at Knative's
     default 70 % utilization, a `--window` stable window: the compressed day turns an hour into
     day-seconds / 24 seconds, so Knative's 60 s window would lag hours behind), min 1, max `--max`, and waits
     until one instance serves;
  2. replays the day (daytrace.py: an hourly business-day profile, Poisson arrivals, open loop) through the
     gateway, while sampling every second the instance processes the node agent runs for the service
     (started or starting: both cost memory and CPU) and how many of them are ready;
  3. prints replica-seconds against a fixed fleet sized for the peak (the most instances the autoscaler had
     ready at once, for the whole day), the latency percentiles and the share over the objective.
     `--compare-fixed` then replays the same day on that fixed fleet, for its latency.

At the end the service's autoscaler is put back as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
if not os.environ.get("REDIS_URL"):  # as scripts/run
    from config.embedded_redis import embedded_redis_url  # with the password in var/redis-password

    os.environ["REDIS_URL"] = embedded_redis_url()

from daytrace import BUSINESS_DAY, Outcome, arrivals, replay  # noqa: E402

IRIS_BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="demo_iris")
    parser.add_argument("--day-seconds", type=int, default=480, help="the length of the compressed day")
    parser.add_argument("--peak-rps", type=float, default=150.0)
    parser.add_argument("--target", type=float, default=30.0, help="requests per second per instance (KPA rps)")
    parser.add_argument("--window", default="6s", help="the KPA stable window")
    parser.add_argument("--max", type=int, default=12, help="the most instances the autoscaler may run")
    parser.add_argument("--objective-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--standby", type=int, default=int(os.environ.get("FERRY_WARM_POOL_SIZE", "1")),
                        help="standby processes the node agent's warm pool keeps (make run: 1); counted as cost")
    parser.add_argument("--compare-fixed", action="store_true", help="replay the day on a fixed fleet too")
    parser.add_argument("--gateway", default=None, help="default: settings.FERRY_GATEWAY_URL")
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from services.models import Service
    from services.selectors import service_token

    service = Service.objects.get(name=options.service, cluster__name="local")
    gateway = (options.gateway or settings.FERRY_GATEWAY_URL).rstrip("/")
    url = f"{gateway}/v1/models/{service.name}:predict"
    headers = {"Authorization": service_token(service), "Content-Type": "application/json"}
    times = arrivals(options.day_seconds, options.peak_rps, options.seed)
    mean_share = sum(BUSINESS_DAY) / len(BUSINESS_DAY)
    print(f"A day in {options.day_seconds} s against {service.name} via {gateway}: peak {options.peak_rps:g} rps, "
          f"mean {mean_share * options.peak_rps:.0f} rps ({100 * mean_share:.0f} % of the peak), "
          f"{len(times):,} requests (Poisson, seed {options.seed})")

    original = service.autoscaler
    kpa = {"autoscaling.knative.dev/metric": "rps", "autoscaling.knative.dev/target": f"{options.target:g}",
           "autoscaling.knative.dev/window": options.window}
    try:
        _set_autoscaler(service, {"min": 1, "max": options.max, "kpa": kpa})
        _wait_for_decisions(service)
        _wait_for_ready(service, lambda ready: ready == 1, "one ready instance")
        print(f"Autoscaler: KPA on rps, target {options.target:g} per instance at 70 % utilization, window "
              f"{options.window}, min 1, max {options.max}")
        outcomes, samples = _run_day(service, times, url, headers)
        peak_fleet = max(ready for _, _, ready in samples)
        _report("autoscaled", outcomes, samples, options, peak_fleet)
        if options.compare_fixed:
            _set_autoscaler(service, {"min": peak_fleet, "max": peak_fleet, "kpa": kpa})
            _wait_for_ready(service, lambda ready: ready == peak_fleet, f"{peak_fleet} ready instances")
            outcomes, samples = _run_day(service, times, url, headers)
            _report(f"fixed fleet of {peak_fleet}", outcomes, samples, options, peak_fleet)
    finally:
        _put_back(service, original)


def _run_day(service, times, url, headers) -> tuple[list[Outcome], list[tuple[float, int, int]]]:
    sampler = _Sampler(service.pk)
    sampler.start()
    try:
        outcomes = asyncio.run(replay(times, url, headers, IRIS_BODY))
    finally:
        sampler.stop()
    return outcomes, sampler.samples


class _Sampler(threading.Thread):
    """(second, instance processes alive, ready) once a second, from the node agent's rows."""

    def __init__(self, service_id: int):
        super().__init__(daemon=True)
        self.service_id = service_id
        self.samples: list[tuple[float, int, int]] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from deployer.models import LocalInstance

        began = time.monotonic()
        while not self._stopping.wait(max(0.0, began + len(self.samples) + 1 - time.monotonic())):
            rows = LocalInstance.objects.filter(service_id=self.service_id, pid__isnull=False) \
                .exclude(state__in=("Terminated", "Failed", "CrashLoopBackOff")).values_list("ready", flat=True)
            rows = list(rows)
            self.samples.append((time.monotonic() - began, len(rows), sum(rows)))
        connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def _report(title: str, outcomes: list[Outcome], samples, options, peak_fleet: int) -> None:
    latencies = sorted(o.latency for o in outcomes if o.status == 200)
    failed = sum(1 for o in outcomes if o.status != 200)
    over = sum(1 for o in outcomes if o.status != 200 or o.latency * 1000 > options.objective_ms)
    used = sum(alive for _, alive, _ in samples)  # one sample a second: a sum of instance-seconds
    fixed = peak_fleet * len(samples)
    hourly = _hourly(samples, options.day_seconds)
    print(f"\n{title}:")
    print(f"  instances by hour of the day: {' '.join(str(h) for h in hourly)}")
    print(f"  replica-seconds used: {used:,} (mean {used / max(len(samples), 1):.2f} instances over {len(samples)} s)")
    print(f"  fixed fleet sized for the peak: {peak_fleet} instances x {len(samples)} s = {fixed:,} replica-seconds")
    print(f"  saved: {100 * (1 - used / fixed):.1f} % of the fixed fleet's replica-seconds (target: at least 50 %)")
    if options.standby and title == "autoscaled":
        with_pool = used + options.standby * len(samples)
        print(f"  counting the warm pool's {options.standby} standby process(es) too: {with_pool:,} replica-seconds, "
              f"saved {100 * (1 - with_pool / fixed):.1f} %")
    print(f"  latency: p50 {_ms(latencies, 0.50)}, p90 {_ms(latencies, 0.90)}, p99 {_ms(latencies, 0.99)}, "
          f"max {_ms(latencies, 1.0)}")
    print(f"  over {options.objective_ms:g} ms (or failed): {100 * over / len(outcomes):.2f} % ({over:,} of "
          f"{len(outcomes):,}; target: under 1 %); failed: {failed}")


def _hourly(samples, day_seconds: int) -> list[int]:
    """The most instances alive in each hour of the compressed day."""
    hours: list[int] = [0] * 24
    for second, alive, _ in samples:
        hour = min(int(second * 24 / day_seconds), 23)
        hours[hour] = max(hours[hour], alive)
    return hours


def _ms(sorted_values: list[float], quantile: float) -> str:
    if not sorted_values:
        return "-"
    index = min(len(sorted_values) - 1, max(0, math.ceil(quantile * len(sorted_values)) - 1))
    return f"{1000 * sorted_values[index]:.1f} ms"


def _set_autoscaler(service, autoscaler: dict) -> None:
    from services.writes.scaling import autoscaler_delete, autoscaler_set

    from services.models import Service

    service = Service.objects.get(pk=service.pk)
    if service.autoscaler is not None:  # a merge patch keeps members the new policy leaves out
        service = autoscaler_delete(actor=None, service=service)
    autoscaler_set(actor=None, service=service, autoscaler=autoscaler)


def _put_back(service, original: dict | None) -> None:
    from services.models import Service
    from services.writes.scaling import autoscaler_delete, autoscaler_set

    service = autoscaler_delete(actor=None, service=Service.objects.get(pk=service.pk))
    if original is not None:
        autoscaler_set(actor=None, service=service, autoscaler=original)
    print(f"\nPut the autoscaler of {service.name} back as it was ({json.dumps(original)})")


def _wait_for_decisions(service, timeout: float = 10.0) -> None:
    """The autoscaler loop must be running (make run starts it): its decisions land in Redis every 2 s."""
    import redis
    from django.conf import settings

    from contracts.scaling_records import DECISION_KEY

    client = redis.Redis.from_url(settings.REDIS_URL)
    asked = time.time()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.get(DECISION_KEY.format(cluster=service.cluster.name, service=service.name))
        if raw and json.loads(raw)["time"] > asked:
            return
        time.sleep(0.5)
    sys.exit(f"No autoscaler decision for {service.name} in {timeout:g} s: is runautoscaler running (make run)?")


def _wait_for_ready(service, wanted, what: str, timeout: float = 180.0) -> None:
    from deployer.models import LocalInstance

    deadline = time.monotonic() + timeout
    while True:
        rows = list(LocalInstance.objects.filter(service_id=service.pk).values_list("ready", flat=True))
        if wanted(sum(rows)) and len(rows) == sum(rows):
            return
        if time.monotonic() > deadline:
            sys.exit(f"{service.name} did not reach {what} within {timeout:g} s (rows ready: {rows})")
        time.sleep(0.5)


if __name__ == "__main__":
    main()
