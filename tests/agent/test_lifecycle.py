"""An instance's life under a real agent: start, crash and restart, crash loop, failure, stop, restart."""

import os
import re
import signal
from datetime import datetime

import pytest

from deployer.models import LocalInstance
from tests.agent.kit import (
    CRASHES_AT_ONCE,
    HEALTHY_WHILE_FILE_EXISTS,
    HTTP_SERVER,
    NEVER_READY,
    PORT_ALWAYS_TAKEN,
    STUBBORN_SERVER,
    http_status,
    pid_alive,
)

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def start_times(log: str) -> list[datetime]:
    stamps = re.findall(r"^(\S+) \[ferry-agent\] Starting instance ", log, flags=re.MULTILINE)
    return [datetime.fromisoformat(stamp.replace("Z", "+00:00")) for stamp in stamps]


def test_it_starts_an_instance_that_answers_http_on_its_port(cluster):
    cluster.add("svc-v1-0", HTTP_SERVER)
    cluster.start_agent()
    row = cluster.wait_running("svc-v1-0")
    assert http_status(row.port) == 200
    assert row.started_at is not None and row.log_path.endswith("svc-v1-0/instance.log")
    cluster.wait_for_row("svc-v1-0", lambda row: row.heartbeat_at is not None, what="a heartbeat")
    process = cluster.processes("svc-v1-0")[0]
    assert process.pid == row.pid
    assert process.environ()["PORT"] == str(row.port)
    assert f"Started instance svc-v1-0 (pid {row.pid}, port {row.port})" in cluster.log("svc-v1-0")


def test_it_restarts_an_instance_killed_with_sigkill(cluster):
    cluster.add("svc-v1-0", HTTP_SERVER)
    cluster.start_agent()
    first = cluster.wait_running("svc-v1-0")
    os.kill(first.pid, signal.SIGKILL)
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.restart_count == 1 and row.state == "Running"
                               and row.pid != first.pid, what="a restart after SIGKILL")
    assert row.last_exit_code == 137
    assert "signal 9" in row.last_exit_reason and "SIGKILL" in row.last_exit_reason
    assert http_status(row.port) == 200
    assert len(cluster.processes("svc-v1-0")) == 1


def test_it_backs_off_longer_each_time_an_instance_keeps_crashing(cluster):
    cluster.add("svc-v1-0", CRASHES_AT_ONCE)
    cluster.start_agent()
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.state == "CrashLoopBackOff", what="CrashLoopBackOff")
    assert (row.last_exit_code, row.last_exit_reason, row.ready) == (1, "exited with code 1", False)
    cluster.wait_for_row("svc-v1-0", lambda row: row.restart_count >= 3, timeout=20, what="three restarts")
    starts = start_times(cluster.log("svc-v1-0"))
    assert len(starts) >= 3
    first_wait, second_wait = (starts[1] - starts[0]).total_seconds(), (starts[2] - starts[1]).total_seconds()
    assert first_wait >= 1 and second_wait > first_wait


def test_it_fails_once_without_looping_when_the_command_does_not_exist(cluster):
    cluster.add("svc-v1-0", ["ferry-test-no-such-command"])
    cluster.add("svc-v1-1", CRASHES_AT_ONCE)  # its restarts show that passes went by
    cluster.start_agent()
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.state == "Failed", what="Failed")
    assert "command not found: ferry-test-no-such-command" in row.last_exit_reason
    cluster.wait_for_row("svc-v1-1", lambda row: row.restart_count >= 2, what="two restarts of the other instance")
    row = cluster.row("svc-v1-0")
    assert (row.state, row.restart_count, row.pid) == ("Failed", 0, None)
    assert cluster.log("svc-v1-0").count("Could not start instance svc-v1-0") == 1


def test_it_stops_instances_that_should_stop_and_kills_those_that_ignore_sigterm(cluster):
    cluster.add("svc-v1-0", HTTP_SERVER)
    cluster.add("svc-v1-1", STUBBORN_SERVER, grace_period_seconds=1)
    cluster.start_agent()
    polite, stubborn = cluster.wait_running("svc-v1-0"), cluster.wait_running("svc-v1-1")
    LocalInstance.objects.filter(name__in=["svc-v1-0", "svc-v1-1"]).update(desired="stopped")
    for name in ("svc-v1-0", "svc-v1-1"):
        row = cluster.wait_for_row(name, lambda row: row.state == "Terminated", what=f"{name} Terminated")
        assert (row.ready, row.pid, row.port) == (False, None, None)
    assert not pid_alive(polite.pid) and not pid_alive(stubborn.pid)
    assert "signal 15 (SIGTERM)" in cluster.row("svc-v1-0").last_exit_reason
    assert "signal 9 (SIGKILL)" in cluster.row("svc-v1-1").last_exit_reason
    assert "Sent SIGKILL to instance svc-v1-1" in cluster.log("svc-v1-1")
    assert "Sent SIGKILL" not in cluster.log("svc-v1-0")


def test_it_restarts_gracefully_when_the_restart_generation_goes_up(cluster):
    instance = cluster.add("svc-v1-0", HTTP_SERVER)
    cluster.start_agent()
    first = cluster.wait_running("svc-v1-0")
    LocalInstance.objects.filter(pk=instance.pk).update(restart_generation=1)
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.observed_restart_generation == 1 and row.pid != first.pid
                               and row.state == "Running", what="a requested restart")
    assert not pid_alive(first.pid)
    assert row.restart_count == 0  # asked for, not a crash
    assert "Sent SIGTERM to instance svc-v1-0" in cluster.log("svc-v1-0") and "to restart it" in cluster.log("svc-v1-0")
    assert http_status(row.port) == 200


def test_it_stops_and_counts_an_instance_that_is_not_ready_in_time(cluster):
    cluster.add("svc-v1-0", NEVER_READY, ready_timeout_seconds=1, grace_period_seconds=1)
    cluster.start_agent()
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.restart_count >= 1, what="a failed start")
    assert "not ready within 1 s" in row.last_exit_reason
    assert not row.ready


def test_it_reports_an_instance_unready_when_its_probe_keeps_failing_and_ready_when_it_passes(cluster, tmp_path):
    healthy = tmp_path / "healthy"
    healthy.touch()
    cluster.add("svc-v1-0", HEALTHY_WHILE_FILE_EXISTS + [str(healthy)])
    cluster.start_agent()
    first = cluster.wait_running("svc-v1-0")
    healthy.unlink()
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.state == "Unready", what="Unready")
    assert (row.ready, row.pid) == (False, first.pid)  # not ready is not dead: no restart
    healthy.touch()
    assert cluster.wait_running("svc-v1-0").pid == first.pid


def test_it_starts_again_on_another_port_when_its_port_was_taken(cluster):
    cluster.add("svc-v1-0", PORT_ALWAYS_TAKEN)
    cluster.start_agent()
    row = cluster.wait_for_row("svc-v1-0", lambda row: row.state == "CrashLoopBackOff", what="CrashLoopBackOff")
    # Three fresh ports were tried without counting as crashes; then it is a crash like any other.
    assert cluster.log("svc-v1-0").count("could not bind port") == 3
    assert row.restart_count == 1
    ports = re.findall(r"Starting instance svc-v1-0 on port (\d+)", cluster.log("svc-v1-0"))
    assert len(set(ports)) == 4
