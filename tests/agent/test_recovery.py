"""Agent restarts leave no orphan and no duplicate: adoption, orphans, strays, shutdown on SIGTERM."""

import os
import signal
import subprocess

import pytest

from deployer.models import LocalInstance
from tests.agent.kit import HTTP_SERVER, PY, STUBBORN_SERVER, http_status, pid_alive, wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_it_adopts_instances_after_being_killed_and_stops_those_whose_row_went(cluster):
    cluster.add("svc-v1-0", HTTP_SERVER)
    cluster.add("svc-v1-1", HTTP_SERVER)
    first_agent = cluster.start_agent()
    kept, dropped = cluster.wait_running("svc-v1-0"), cluster.wait_running("svc-v1-1")
    first_agent.send(signal.SIGKILL)
    first_agent.wait()
    assert http_status(kept.port) == 200  # instances keep serving without an agent
    LocalInstance.objects.filter(name="svc-v1-1").delete()  # the service went while no agent watched

    second_agent = cluster.start_agent()
    wait_for(lambda: not pid_alive(dropped.pid), what="the orphan to be stopped")
    wait_for(lambda: "Started the node agent" in second_agent.output(), what="the new agent to be running")
    row = cluster.wait_running("svc-v1-0")
    assert (row.pid, row.port, row.restart_count) == (kept.pid, kept.port, 0)
    assert [process.pid for process in cluster.processes("svc-v1-0")] == [kept.pid]
    assert f"Adopted instance svc-v1-0 (pid {kept.pid}, port {kept.port})" in second_agent.output()
    # The agent writes its line after it has seen the process end, so it can come a moment after the pid is gone.
    wait_for(lambda: "Stopped instance svc-v1-1" in cluster.log("svc-v1-1"), what="the agent to log the stop")
    assert cluster.processes("svc-v1-1") == []


def test_it_stops_every_instance_and_exits_0_on_sigterm(cluster):
    cluster.add("svc-v1-0", HTTP_SERVER)
    cluster.add("svc-v1-1", STUBBORN_SERVER, grace_period_seconds=1)
    agent = cluster.start_agent()
    pids = [cluster.wait_running(name).pid for name in ("svc-v1-0", "svc-v1-1")]
    agent.send(signal.SIGTERM)
    assert agent.wait(20) == 0, agent.output()
    assert cluster.processes() == [] and not any(pid_alive(pid) for pid in pids)
    assert {row.state for row in LocalInstance.objects.all()} == {"Terminated"}
    assert list(cluster.var_dir.glob("instances/*/process.json")) == []


def test_it_does_one_pass_with_once_and_adopts_on_the_next(cluster):
    cluster.add("svc-v1-0", HTTP_SERVER)
    assert cluster.run_once().returncode == 0
    started = cluster.row("svc-v1-0")
    assert started.pid and pid_alive(started.pid)
    second = cluster.run_once()
    assert second.returncode == 0, second.stderr
    assert f"Adopted instance svc-v1-0 (pid {started.pid}" in second.stderr
    assert [process.pid for process in cluster.processes("svc-v1-0")] == [started.pid]
    cluster.start_agent()  # the cluster fixture stops it, and with it the instance
    cluster.wait_running("svc-v1-0")


def test_it_refuses_to_run_beside_another_agent_on_the_same_var_dir(cluster):
    agent = cluster.start_agent()
    wait_for(lambda: "Started the node agent" in agent.output(), what="the first agent to be running")
    second = cluster.run_once()
    assert second.returncode != 0 and "already running" in second.stderr


def test_it_stops_marked_processes_that_no_state_file_describes(cluster):
    # As if an agent died between starting a process and writing its state file.
    stray = subprocess.Popen(
        [PY, "-c", "import time; time.sleep(600)"], start_new_session=True,
        env=dict(os.environ, FERRY_AGENT_VAR_DIR=str(cluster.var_dir), FERRY_INSTANCE="svc-v1-9"),
    )
    try:
        agent = cluster.start_agent()
        wait_for(lambda: stray.poll() is not None, what="the stray process to be stopped")
        assert stray.returncode == -signal.SIGTERM
        wait_for(lambda: "Stopped 1 stray instance process" in agent.output(), what="the agent to say so")
    finally:
        if stray.poll() is None:
            stray.kill()
        stray.wait()
