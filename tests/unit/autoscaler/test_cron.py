"""The EAS cron scaler: seconds-first schedules, time zones, ExcludeDates, several jobs."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from autoscaler import cron_floor

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")


def job(name, schedule, size, zone=None):
    entry = {"Name": name, "Schedule": schedule, "TargetSize": size}
    if zone:
        entry["TimeZone"] = zone
    return entry


def day_and_night(zone=None, exclude=()):
    return {
        "ScaleJobs": [job("morning", "0 0 8 * * *", 10, zone), job("evening", "0 0 20 * * *", 2, zone)],
        "ExcludeDates": list(exclude),
    }


def test_it_applies_the_last_job_to_have_run():
    scaler = day_and_night()
    assert cron_floor(scaler, datetime(2026, 3, 2, 12, 0, tzinfo=UTC))[0] == 10
    assert cron_floor(scaler, datetime(2026, 3, 2, 21, 0, tzinfo=UTC))[0] == 2
    assert cron_floor(scaler, datetime(2026, 3, 3, 7, 59, 59, tzinfo=UTC))[0] == 2  # yesterday evening's


def test_it_switches_at_the_exact_second_of_the_schedule():
    scaler = {"ScaleJobs": [job("base", "0 0 0 * * *", 1), job("late", "30 0 18 * * *", 5)]}
    before = datetime(2026, 3, 2, 18, 0, 29, 999999, tzinfo=UTC)
    on_time = datetime(2026, 3, 2, 18, 0, 30, tzinfo=UTC)
    assert cron_floor(scaler, before)[0] == 1
    assert cron_floor(scaler, on_time)[0] == 5  # seconds come first: 18:00:30, not 00:30 on the 18th


def test_it_reads_a_schedule_in_the_jobs_time_zone():
    scaler = {"ScaleJobs": [job("base", "0 0 0 * * *", 1), job("evening", "0 0 18 * * *", 6, "Asia/Shanghai")]}
    # 18:00 in Shanghai is 10:00 UTC.
    assert cron_floor(scaler, datetime(2026, 3, 2, 9, 59, 59, tzinfo=UTC))[0] == 1
    size, reason = cron_floor(scaler, datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC))
    assert size == 6
    assert reason == 'cron job "evening" (0 0 18 * * *, Asia/Shanghai) set 6 at 2026-03-02T18:00:00+08:00'


def test_it_gives_the_same_answer_for_any_time_zone_of_now():
    scaler = day_and_night("Asia/Shanghai")
    instant = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
    assert cron_floor(scaler, instant) == cron_floor(scaler, instant.astimezone(UTC))


def test_it_skips_runs_on_excluded_dates():
    # 2026-03-07 is a Saturday. Weekends are excluded: Saturday's 08:00 run does not happen, so Friday
    # evening's 2 stays in effect; Monday morning scales up again.
    scaler = day_and_night(exclude=["* * * * * 0,6"])
    size, reason = cron_floor(scaler, datetime(2026, 3, 7, 9, 0, tzinfo=UTC))
    assert size == 2
    assert "2026-03-06T20:00:00" in reason and "skipped" in reason
    assert cron_floor(scaler, datetime(2026, 3, 9, 9, 0, tzinfo=UTC))[0] == 10


def test_it_reads_five_field_exclusions_as_whole_days():
    scaler = day_and_night(exclude=["* * 1 10 *"])  # October 1st
    assert cron_floor(scaler, datetime(2026, 10, 1, 12, 0, tzinfo=UTC))[0] == 2
    assert cron_floor(scaler, datetime(2026, 10, 2, 12, 0, tzinfo=UTC))[0] == 10


def test_it_counts_the_excluded_day_in_the_jobs_time_zone():
    # The Shanghai morning run of October 1st happens at 00:00 UTC that day, but the run of October 2nd
    # (Shanghai) happens on October 2nd at 00:00 UTC: only the first is excluded.
    scaler = day_and_night("Asia/Shanghai", exclude=["* * * 1 10 *"])
    assert cron_floor(scaler, datetime(2026, 10, 1, 1, 0, tzinfo=UTC))[0] == 2
    assert cron_floor(scaler, datetime(2026, 10, 2, 1, 0, tzinfo=UTC))[0] == 10


def test_it_lets_the_larger_target_win_a_tie():
    scaler = {"ScaleJobs": [job("a", "0 0 8 * * *", 3), job("b", "0 0 8 * * *", 7)]}
    assert cron_floor(scaler, datetime(2026, 3, 2, 9, 0, tzinfo=UTC))[0] == 7


def test_it_picks_the_most_recent_among_several_jobs():
    scaler = {"ScaleJobs": [
        job("hourly", "0 0 * * * *", 4),
        job("half past", "0 30 * * * *", 6),
        job("weekly", "0 0 12 * * 1", 20),
    ]}
    monday = datetime(2026, 3, 2, 12, 10, tzinfo=UTC)
    assert cron_floor(scaler, monday)[0] == 20  # 12:00 Monday: weekly and hourly tie, the larger wins
    assert cron_floor(scaler, monday + timedelta(minutes=30))[0] == 6
    assert cron_floor(scaler, monday + timedelta(minutes=55))[0] == 4


def test_it_has_no_floor_without_jobs_or_when_every_run_is_excluded():
    assert cron_floor(None, datetime(2026, 3, 2, tzinfo=UTC)) == (None, "no cron scale jobs")
    assert cron_floor({"ScaleJobs": []}, datetime(2026, 3, 2, tzinfo=UTC))[0] is None
    always_excluded = day_and_night(exclude=["* * * * * *"])
    size, reason = cron_floor(always_excluded, datetime(2026, 3, 2, tzinfo=UTC))
    assert size is None and "excluded" in reason


def test_it_needs_an_aware_now():
    with pytest.raises(ValueError, match="aware"):
        cron_floor(day_and_night(), datetime(2026, 3, 2, 12, 0))
