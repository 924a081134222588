"""Memory limits that the host enforces, cpu limits that it reports, and rotated instance logs."""

import psutil
import pytest

from tests.agent.kit import HTTP_SERVER, PY, command_of, data_limit, wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MB = 1024 * 1024
# The word it prints is put together at run time, so that the command line in the log does not contain it.
ALLOCATES_600_MB = [PY, "-c", "x = bytearray(600 * 1024 * 1024); print('alloc' + 'ated 600 MB', flush=True)"]
CHATTY = [PY, "-c", "import time\nwhile True:\n    print('x' * 200, flush=True)\n    time.sleep(0.002)"]


def test_it_kills_an_instance_that_allocates_past_its_memory_limit_and_reports_cpu(cluster):
    cluster.add("svc-v1-0", ALLOCATES_600_MB, memory_limit_mb=200)
    cluster.add("svc-v1-1", HTTP_SERVER, memory_limit_mb=200, cpu=2)
    cluster.start_agent()
    hog = cluster.wait_for_row("svc-v1-0", lambda row: row.restart_count >= 1, what="the allocation to fail")
    assert hog.last_exit_reason.startswith("out of memory: exceeded 200 MB limit")
    assert "MemoryError" in cluster.log("svc-v1-0") and "allocated 600 MB" not in cluster.log("svc-v1-0")

    server = cluster.wait_running("svc-v1-1")  # the same limit leaves room for an ordinary server
    assert data_limit(command_of(server.pid)) == (200 * MB, 200 * MB)
    log = cluster.log("svc-v1-1")
    assert "memory limited to 200 MB via RLIMIT_DATA" in log
    assert "cpu limit of 2 cores is not enforced on the local cluster" in log


def test_it_rotates_an_instance_log_past_the_size_limit_keeping_three(cluster):
    cluster.add("svc-v1-0", CHATTY)
    cluster.start_agent(env=cluster.env(FERRY_INSTANCE_LOG_MAX_BYTES="20000"))
    instance_dir = cluster.var_dir / "instances" / "svc-v1-0"
    wait_for(lambda: (instance_dir / "instance.log.3").exists(), what="three rotations")
    wait_for(lambda: "Rotated the log" in text_of(instance_dir / "instance.log.1"), what="a rotated log")
    assert not (instance_dir / "instance.log.4").exists()
    # The process keeps writing into the same file after it was truncated (O_APPEND, not a pipe). Just after a
    # rotation the file holds only the agent's line, so wait for the process's next one.
    wait_for(lambda: "x" * 200 in text_of(instance_dir / "instance.log"), what="the process writing on")


def text_of(path) -> str:
    """The file's text, or "" while a rotation has moved it away (.1 -> .2 before the copy makes a new .1)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
