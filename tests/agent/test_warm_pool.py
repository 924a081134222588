"""The node agent's warm pool, with real processes: a standby model server becomes the instance (same pid),
the pool is topped up, SIGTERM leaves nothing behind, a pooled instance is adopted after the agent is killed,
and memory limits are applied to the standby before it becomes the instance.

Timings are not asserted (the machine may be loaded); that the pool was used is: the instance's pid is the
standby's, and its log says so.
"""

import json
import os
import signal
import sys

import psutil
import pytest
import requests

from processors.demo import IRIS_SAMPLE, demo_service_files, train_demo_models
from processors.modelserver.handoff import POOL_MARK
from processors.registry import local_launch
from tests.agent.kit import command_of, data_limit, http_status, pid_alive, wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(scope="module")
def iris_launch(tmp_path_factory) -> dict:
    """The launch the local driver writes for demo_iris (its model used where it lies, as file:// allows)."""
    paths = train_demo_models(tmp_path_factory.mktemp("demo-models"))
    service_file = next(f for f in demo_service_files(paths) if f["name"] == "demo_iris")
    model_dir = service_file["model_path"].removeprefix("file://")
    warm_up = service_file["warm_up_data_path"].removeprefix("file://")
    launch = local_launch(service_file, service_name="demo_iris", model_dir=model_dir, python=sys.executable,
                          warm_up_path=warm_up)
    return {"argv": launch.argv, "env": launch.env, "cwd": launch.cwd, "health_path": launch.health_path,
            "ready_timeout_seconds": 60, "grace_period_seconds": 5}


@pytest.fixture
def pool(cluster, iris_launch, monkeypatch):
    """The cluster with the warm pool's flavor remembered, as an agent that ran demo_iris before leaves it."""
    monkeypatch.setenv("FERRY_WARM_POOL_SIZE", "1")  # agents inherit it (the pool is off by default)
    directory = cluster.var_dir / "warm-pool"
    directory.mkdir()
    (directory / "flavor.json").write_text(json.dumps(
        {"executable": iris_launch["argv"][0], "cwd": iris_launch["cwd"], "env": iris_launch["env"]}))
    yield cluster
    # The cluster fixture checks instance processes; standbys carry the pool's mark instead.
    for agent in cluster.agents:
        if agent.running():
            agent.send(signal.SIGTERM)
            agent.wait(30)
    left = standbys(cluster)
    for process in left:
        process.kill()
    assert not left, f"standby processes outlived their agents: {left}"


def standbys(cluster) -> list[psutil.Process]:
    """Live processes with the pool's mark for this var dir: standbys, and instances that were standbys."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(POOL_MARK) == str(cluster.var_dir):
                parent = process.parent()  # under the sandbox: bwrap's outer process, not what runs inside it
                if parent is None or parent.name() != "bwrap":
                    found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def pool_log(cluster) -> str:
    path = cluster.var_dir / "warm-pool" / "standby.log"
    return path.read_text(errors="replace") if path.exists() else ""


def ready_standby(cluster, agent, but_not=()) -> int:
    """The pid of a standby that told the agent it is ready."""
    def find():
        for process in standbys(cluster):
            if process.pid not in but_not and f"Standby process {process.pid} is ready" in pool_log(cluster):
                return process.pid
        return None

    try:
        return wait_for(find, timeout=90, what="a ready standby")
    except AssertionError:
        raise AssertionError(f"no ready standby; pool log:\n{pool_log(cluster)}\nagent:\n{agent.output()}") from None


def predict(port: int) -> dict:
    response = requests.post(f"http://127.0.0.1:{port}/v1/models/demo_iris:predict",
                             json={"instances": [IRIS_SAMPLE]}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_instance_starts_from_the_pool_which_is_topped_up_and_sigterm_leaves_nothing(pool, iris_launch):
    agent = pool.start_agent()
    standby = ready_standby(pool, agent)

    pool.add("svc-v1-0", iris_launch["argv"], **{k: v for k, v in iris_launch.items() if k != "argv"})
    row = pool.wait_running("svc-v1-0", timeout=60)

    assert row.pid == standby  # the standby became the instance
    assert predict(row.port) == {"predictions": [0]}
    log = pool.log("svc-v1-0")
    assert f"Starting instance svc-v1-0 on port {row.port}" in log
    assert f"Handed instance svc-v1-0 to standby process {standby} of the warm pool in " in log
    assert f"Started instance svc-v1-0 (pid {standby}, port {row.port})" in log
    for line in ("imported the serving libraries in", "loaded sklearn model demo_iris in",
                 "warmed up with 2 requests", f"serving model demo_iris on http://127.0.0.1:{row.port}"):
        assert line in log, line
    record = json.loads((pool.var_dir / "instances" / "svc-v1-0" / "process.json").read_text())
    assert (record["pid"], record["port"], record["argv"][3:5]) == (standby, row.port, ["--model-name", "demo_iris"])
    assert psutil.Process(standby).environ().get(POOL_MARK) == str(pool.var_dir)
    assert os.getpgid(standby) == standby  # its own process group, as every instance

    replacement = ready_standby(pool, agent, but_not={standby})  # topped up
    assert replacement != standby

    agent.send(signal.SIGTERM)
    assert agent.wait(30) == 0, agent.output()
    assert not pid_alive(standby) and not pid_alive(replacement)
    assert standbys(pool) == [] and pool.processes() == []
    assert pool.row("svc-v1-0").state == "Terminated"
    assert "Stopped instance svc-v1-0" in pool.log("svc-v1-0")


def test_a_pooled_instance_is_adopted_after_the_agent_is_killed(pool, iris_launch):
    first = pool.start_agent()
    standby = ready_standby(pool, first)
    pool.add("svc-v1-0", iris_launch["argv"], **{k: v for k, v in iris_launch.items() if k != "argv"})
    row = pool.wait_running("svc-v1-0", timeout=60)
    assert row.pid == standby
    unused = ready_standby(pool, first, but_not={standby})

    first.send(signal.SIGKILL)
    first.wait()
    assert http_status(row.port, "/v2/health/ready") == 200  # serving without an agent
    wait_for(lambda: not pid_alive(unused), timeout=15, what="the unused standby to exit with its agent")

    second = pool.start_agent()
    wait_for(lambda: "Started the node agent" in second.output(), timeout=30, what="the new agent to run")
    adopted = pool.wait_running("svc-v1-0")
    assert (adopted.pid, adopted.port, adopted.restart_count) == (standby, row.port, 0)
    assert f"Adopted instance svc-v1-0 (pid {standby}, port {row.port})" in second.output()
    assert predict(row.port) == {"predictions": [0]}
    ready_standby(pool, second, but_not={standby, unused})  # the new agent's own standby


def test_the_memory_limit_is_applied_to_the_standby_before_it_becomes_the_instance(pool, iris_launch):
    agent = pool.start_agent()
    standby = ready_standby(pool, agent)
    launch = {k: v for k, v in iris_launch.items() if k != "argv"}

    pool.add("svc-v1-0", iris_launch["argv"], **launch, memory_limit_mb=1024)
    row = pool.wait_running("svc-v1-0", timeout=60)

    assert row.pid == standby
    assert data_limit(command_of(standby)) == (1024 * 2**20, 1024 * 2**20)
    assert "memory limited to 1024 MB via RLIMIT_DATA" in pool.log("svc-v1-0")

    # Below what a standby already uses: the pool is not used, and the start fails as a normal one would.
    second = ready_standby(pool, agent, but_not={standby})
    pool.add("svc-v1-1", iris_launch["argv"], **launch, memory_limit_mb=150)
    failed = pool.wait_for_row("svc-v1-1", lambda r: r.restart_count >= 1, timeout=60, what="the start to fail")
    assert "out of memory: exceeded 150 MB limit" in failed.last_exit_reason
    assert "Not starting instance svc-v1-1 from the warm pool: its standby process already uses" in pool.log("svc-v1-1")
    assert pid_alive(second) and data_limit(command_of(second))[0] == -1


def test_a_pool_size_of_0_keeps_no_standby(pool, iris_launch):
    agent = pool.start_agent(env=pool.env(FERRY_WARM_POOL_SIZE="0"))
    pool.add("svc-v1-0", iris_launch["argv"], **{k: v for k, v in iris_launch.items() if k != "argv"})
    row = pool.wait_running("svc-v1-0", timeout=60)
    assert "from the warm pool" not in pool.log("svc-v1-0")
    assert standbys(pool) == [] and [p.pid for p in pool.processes("svc-v1-0")] == [row.pid]
    assert agent.running()


def test_a_pooled_instance_gets_its_own_environment_such_as_its_service_token(pool, iris_launch):
    from services.encryption import encrypt

    agent = pool.start_agent()
    standby = ready_standby(pool, agent)
    launch = {k: v for k, v in iris_launch.items() if k != "argv"}
    pool.add("svc-v1-0", iris_launch["argv"], **launch, secret_env={"FERRY_SERVICE_TOKEN": encrypt("s3cret")})
    row = pool.wait_running("svc-v1-0", timeout=60)

    assert row.pid == standby  # a token of its own does not keep an instance from the pool
    url = f"http://127.0.0.1:{row.port}/api/predict/demo_iris"
    assert requests.post(url, json={"instances": [IRIS_SAMPLE]}, timeout=10).status_code == 401
    answer = requests.post(url, json={"instances": [IRIS_SAMPLE]}, headers={"Authorization": "s3cret"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"predictions": [0]}
    assert "s3cret" not in (pool.var_dir / "warm-pool" / "flavor.json").read_text()
