"""The EAS cron scaler: which scheduled TargetSize is in effect at a given time. Pure.

The cron scaler is stored as {"ScaleJobs": [{Name, Schedule, TargetSize, TimeZone}], "ExcludeDates": [cron]}.
Schedules have six fields, seconds first ("0 0 18 * * *" is 18:00:00 every day), read in the job's TimeZone
(UTC when absent). Ferry reads the schedule declaratively: at any moment the job that ran most recently sets
the floor, so a restart, or a job added after its time, gives the same answer as a scaler that never stopped.

ExcludeDates, as in EAS (and Alibaba's CronHPA it derives from), are days on which the jobs do not run: an
exclusion matches a day when its cron expression (5 or 6 fields) fires at any moment of that day, counted in
the job's time zone. A job's run on an excluded day is skipped, so its previous run (or another job's) stays
in effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

DEFAULT_TIME_ZONE = "UTC"
# A job whose every run falls on excluded days never applies; stop looking after this many skipped runs.
MAX_SKIPPED_RUNS = 400


def cron_floor(cron_scaler: Mapping | None, now: datetime) -> tuple[int | None, str]:
    """The TargetSize in effect at `now` (an aware datetime) and a sentence saying why; None when no job applies.

    Each job's last run at or before `now` (skipping runs on excluded days) is found; the job whose last run
    is the latest instant wins, so a morning scale-up and an evening scale-down alternate. Two jobs that ran at
    the same instant: the larger TargetSize wins (the safer side).
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    if not (cron_scaler or {}).get("ScaleJobs"):
        return None, "no cron scale jobs"
    runs = [entry for entry in job_runs(cron_scaler, now) if entry[0] is not None]
    if not runs:
        return None, "every scheduled run falls on an excluded date"
    run, size, _, job = latest_run(runs)
    reason = (f'cron job "{job.get("Name", "")}" ({job["Schedule"]}, {_zone_name(job)}) '
              f"set {size} at {run.isoformat()}")
    skipped = [f'"{entry[3].get("Name", "")}"' for entry in runs if entry[2]]
    if skipped:
        reason += f"; skipped on excluded dates: {', '.join(skipped)}"
    return size, reason


def job_runs(cron_scaler: Mapping | None, now: datetime) -> list[tuple[datetime | None, int, int, Mapping]]:
    """(last run or None, TargetSize, runs skipped on excluded days, job) for every job."""
    excludes = tuple((cron_scaler or {}).get("ExcludeDates") or ())
    return [(*_run_and_skipped(job, excludes, now), job) for job in (cron_scaler or {}).get("ScaleJobs") or []]


def _run_and_skipped(job: Mapping, excludes: tuple[str, ...], now: datetime) -> tuple[datetime | None, int, int]:
    run, skipped = last_run(job, excludes, now)
    return run, int(job["TargetSize"]), skipped


def latest_run(runs: list) -> tuple:
    """The latest run; at the same instant the larger TargetSize (the safer side)."""
    return max(runs, key=lambda entry: (entry[0], entry[1]))


def last_run(job: Mapping, excludes: Sequence[str], now: datetime) -> tuple[datetime | None, int]:
    """The job's latest run at or before `now`, in its time zone, skipping excluded days; and how many runs
    were skipped."""
    zone = ZoneInfo(_zone_name(job))
    # croniter's get_prev is strictly before its start: start one second after `now` (whole seconds).
    cursor = now.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)
    for skipped in range(MAX_SKIPPED_RUNS):
        run = croniter(job["Schedule"], cursor, second_at_beginning=True).get_prev(datetime)
        if not excluded_day(tuple(excludes), run.date(), zone.key):
            return run, skipped
        cursor = _midnight(run.date(), zone)  # The whole day is excluded: continue before it.
    return None, MAX_SKIPPED_RUNS


@lru_cache(maxsize=1024)
def excluded_day(excludes: tuple[str, ...], day: date, zone_name: str) -> bool:
    """Whether any exclusion fires at some moment of `day` (midnight to midnight in `zone_name`)."""
    zone = ZoneInfo(zone_name)
    start, end = _midnight(day, zone), _midnight(day + timedelta(days=1), zone)
    for expression in excludes:
        with_seconds = len(expression.split()) == 6
        first = croniter(expression, start - timedelta(seconds=1), second_at_beginning=with_seconds)
        if first.get_next(datetime) < end:
            return True
    return False


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _zone_name(job: Mapping) -> str:
    return job.get("TimeZone") or DEFAULT_TIME_ZONE
