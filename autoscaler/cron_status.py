"""What each cron ScaleJob last did, in DescribeServiceCronScaler's terms. Pure.

EAS (its CronHPA) reports per job a State, "Submitted" (not run yet), "Succeed" or "Failed" (its last run), a
Message and LastProbeTime. Ferry reads schedules declaratively (cron.py): a job's run takes effect at the first
tick of the autoscaler loop at which it is the latest run. So, at each tick:

- the job in effect succeeded if the loop's decision holds its TargetSize, or failed, with why;
- a job whose last run was overtaken by a later run before the loop applied it waits for its next run
  ("Submitted"), as does a job that has not run yet;
- the outcome recorded for a run stays until the job runs again.

A record per job: {"State", "Message", "RanAt" (ISO, "" before the first run), "EvaluatedAt" (ISO: the tick
that last looked at it, reported as LastProbeTime)}.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .cron import MAX_SKIPPED_RUNS, job_runs, latest_run

SUBMITTED, SUCCEEDED, FAILED = "Submitted", "Succeed", "Failed"


def cron_job_states(cron_scaler: Mapping | None, now: datetime, *, applied: bool, outcome: str,
                    previous: Mapping[str, Mapping]) -> dict[str, dict]:
    """Each job's record after the tick at `now`.

    applied: whether the decision of this tick holds the TargetSize of the job in effect (it was written, or
        already in effect). outcome: a sentence saying what the tick did, e.g. "instances 2 -> 10".
    previous: the records of the last tick, by job name.
    """
    runs = job_runs(cron_scaler, now)
    ran = [entry for entry in runs if entry[0] is not None]
    winner = latest_run(ran) if ran else None
    states = {}
    for run, size, skipped, job in runs:
        before = previous.get(job.get("Name", "")) or {}
        if run is None:
            record = _not_run(skipped)
        elif winner is not None and job is winner[3]:
            record = _in_effect(run, size, applied, outcome, before)
        else:
            record = _overtaken(run, winner, before)
        states[job.get("Name", "")] = {**record, "EvaluatedAt": now.isoformat()}
    return states


def _not_run(skipped: int) -> dict:
    if skipped >= MAX_SKIPPED_RUNS:
        message = f"every one of its last {MAX_SKIPPED_RUNS} runs falls on an excluded date"
    else:
        message = "waiting for its first run"
    return {"State": SUBMITTED, "Message": message, "RanAt": ""}


def _in_effect(run: datetime, size: int, applied: bool, outcome: str, before: Mapping) -> dict:
    ran_at = run.isoformat()
    if applied and before.get("RanAt") == ran_at and before.get("State") == SUCCEEDED:
        return {"State": SUCCEEDED, "Message": before["Message"], "RanAt": ran_at}  # how it took effect
    verb = "set" if applied else "could not set"
    return {"State": SUCCEEDED if applied else FAILED,
            "Message": f"ran at {ran_at} and {verb} at least {size} instance(s): {outcome}", "RanAt": ran_at}


def _overtaken(run: datetime, winner: tuple, before: Mapping) -> dict:
    ran_at = run.isoformat()
    if before.get("RanAt") == ran_at and before.get("State") in (SUCCEEDED, FAILED):
        return {"State": before["State"], "Message": before["Message"], "RanAt": ran_at}
    later_run, _, _, later_job = winner
    return {"State": SUBMITTED, "RanAt": ran_at,
            "Message": f'its run at {ran_at} was overtaken by job "{later_job.get("Name", "")}" '
                       f"(run at {later_run.isoformat()}) before it took effect; waiting for its next run"}
