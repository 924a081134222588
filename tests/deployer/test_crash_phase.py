"""The phase rule for crashes (deployer/status.py), pure: one crash the agent restarts from is an event and a
restart count, the service keeps its phase; a crash loop (a restart that crashed again within the agent's
backoff window) or an instance that cannot start is Degraded, and Failed when nothing else serves."""

from datetime import datetime, timedelta, timezone

from deployer.status import FAILING, RESTARTING, StatusInput, crash_verdict, derive_status, restart_message

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
BASE = dict(running=True, deleting=False, expected=1, ready=1, live=1, crash_looping=[],
            new_version_rolling=False, first_rollout=False)
KILLED = "killed by signal 9 (SIGKILL)"


def status(**changes):
    return derive_status(StatusInput(**{**BASE, **changes}))


def after(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_first_crash_is_a_restart_however_short_the_run():
    assert crash_verdict("CrashLoopBackOff", 1, T0, after(0.5)) == RESTARTING
    assert crash_verdict("CrashLoopBackOff", 1, None, None) == RESTARTING


def test_a_restart_that_crashes_again_within_the_window_is_a_crash_loop():
    assert crash_verdict("CrashLoopBackOff", 2, T0, after(3)) == FAILING
    assert crash_verdict("CrashLoopBackOff", 5, T0, after(59.9)) == FAILING
    assert crash_verdict("CrashLoopBackOff", 2, None, after(3)) == FAILING  # no start time: assume the worst


def test_a_crash_after_a_long_run_starts_over_as_the_agents_backoff_does():
    assert crash_verdict("CrashLoopBackOff", 7, T0, after(60)) == RESTARTING
    assert crash_verdict("CrashLoopBackOff", 7, T0, after(3600)) == RESTARTING


def test_instances_that_run_or_cannot_start_are_judged_by_their_state():
    assert crash_verdict("Failed", 0, None, None) == FAILING
    for state in ("Running", "Unready", "Pending", "Terminating", "Terminated"):
        assert crash_verdict(state, 3, T0, after(1)) == ""
    assert crash_verdict("Starting", 0, T0, None) == ""  # a new instance: the service is Creating or Scaling


def test_starting_again_after_a_crash_is_restarting_unless_the_service_was_failing_from_crashes():
    assert crash_verdict("Starting", 1, T0, None) == RESTARTING
    assert crash_verdict("Starting", 4, T0, None, failing_before=True) == ""  # the loop's next turn


def test_one_exit_keeps_the_service_running_and_then_it_is_ready_again():
    # The only instance was killed and waits its 1 s backoff: Running, not ready, progressing, not degraded.
    down = status(ready=0, restarting=(f"demo-v1-0: {KILLED}",))
    assert (down.phase, down.ready, down.progressing, down.degraded) == ("Running", False, True, False)
    assert down.reason == "InstanceRestarting" and KILLED in down.message
    # One of two: the other still serves.
    half = status(expected=2, ready=1, live=2, restarting=(f"demo-v1-1: {KILLED}",))
    assert (half.phase, half.ready, half.degraded) == ("Running", True, False)
    # Restarted and ready again.
    assert (status().phase, status().reason) == ("Running", "AllInstancesReady")


def test_a_crash_loop_is_degraded_and_failed_when_nothing_serves_as_before():
    looping = status(ready=0, crash_looping=["demo-v1-0: exited with code 1"])
    assert (looping.phase, looping.degraded, looping.reason) == ("Failed", True, "InstancesFailing")
    other_serves = status(expected=2, ready=1, live=2, crash_looping=["demo-v1-1: exited with code 1"])
    assert (other_serves.phase, other_serves.degraded) == ("Running", True)


def test_a_restart_does_not_hide_missing_instances_nor_a_first_rollout():
    scaling = status(expected=3, ready=1, live=2, restarting=("demo-v1-1: exited with code 1",))
    assert scaling.phase == "Scaling"
    creating = status(ready=0, first_rollout=True, restarting=("demo-v1-0: exited with code 1",))
    assert creating.phase == "Creating"


def test_the_restart_event_names_the_instance_its_exit_and_the_count():
    assert restart_message("demo-v1-0", KILLED, 1) == \
        "Instance demo-v1-0 exited (killed by signal 9 (SIGKILL)) and was restarted (restarts: 1)"
    assert restart_message("demo-v1-0", "exited with code 3", 2) == \
        "Instance demo-v1-0 exited (code 3) and was restarted (restarts: 2)"
    assert "(code unknown)" in restart_message("demo-v1-0", "", 1)
