from deployer.status import StatusInput, derive_status

BASE = dict(running=True, deleting=False, expected=2, ready=2, live=2, crash_looping=[],
            new_version_rolling=False, first_rollout=False)


def status(**changes):
    return derive_status(StatusInput(**{**BASE, **changes}))


def test_it_is_running_when_every_expected_instance_is_ready():
    result = status()
    assert (result.phase, result.ready, result.progressing, result.degraded) == ("Running", True, False, False)


def test_it_reports_creation_updates_and_scaling_as_progress():
    assert status(ready=0, first_rollout=True).phase == "Creating"
    assert status(ready=1, live=3, new_version_rolling=True).phase == "Updating"
    assert status(expected=3).phase == "Scaling"


def test_it_fails_when_instances_crash_and_none_is_ready():
    result = status(ready=0, live=1, crash_looping=["s-v1-0: exited with code 1"])
    assert (result.phase, result.degraded, result.reason) == ("Failed", True, "InstancesFailing")
    assert "exited with code 1" in result.message


def test_it_is_stopped_only_when_nothing_runs():
    assert status(running=False, live=1).reason == "Stopping"
    assert status(running=False, live=0, ready=0).phase == "Stopped"
    assert status(deleting=True).phase == "Deleting"
