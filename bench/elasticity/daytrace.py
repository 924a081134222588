"""The compressed day and its replay: request arrival times, and an open-loop client that sends each request at
its time whatever the answers before it did (a slow server cannot slow the load down and hide its latency)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

# Share of the peak request rate at each hour of the day (0 h .. 23 h): a service used through the working day
# with a smaller evening tail, the shape of most business-facing inference traffic. Synthetic; its mean is
# 42 % of its peak, so a perfect autoscaler could save 58 % of a peak-sized fleet's replica-seconds.
BUSINESS_DAY = (0.06, 0.04, 0.03, 0.03, 0.03, 0.05, 0.10, 0.25, 0.55, 0.85, 1.00, 0.95,
                0.70, 0.85, 0.95, 0.90, 0.75, 0.50, 0.35, 0.30, 0.30, 0.22, 0.14, 0.09)


def rate_at(t: float, day_seconds: float, peak_rps: float, profile=BUSINESS_DAY) -> float:
    """Requests per second at `t` seconds into the compressed day, interpolated linearly between hours."""
    hours = len(profile)
    position = (t / day_seconds) * hours
    hour = int(position) % hours
    fraction = position - int(position)
    return peak_rps * (profile[hour] * (1 - fraction) + profile[(hour + 1) % hours] * fraction)


def arrivals(day_seconds: int, peak_rps: float, seed: int) -> list[float]:
    """Poisson arrivals following the day's rate, second by second; reproducible through `seed`."""
    rng = np.random.default_rng(seed)
    times: list[float] = []
    for second in range(day_seconds):
        count = rng.poisson(rate_at(second + 0.5, day_seconds, peak_rps))
        times.extend(sorted(second + rng.random(count)))
    return times


@dataclass
class Outcome:
    scheduled: float  # seconds into the day
    latency: float  # seconds from the scheduled send time to the complete answer
    status: int  # 0: a connection error or timeout


async def replay(times: list[float], url: str, headers: dict, body: bytes, timeout: float = 30.0) -> list[Outcome]:
    import aiohttp

    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=256, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        start = time.perf_counter()

        async def one(at: float) -> None:
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = 0
            outcomes.append(Outcome(at, time.perf_counter() - start - at, status))

        tasks = []
        for at in times:
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at)))
        await asyncio.gather(*tasks)
    return outcomes
