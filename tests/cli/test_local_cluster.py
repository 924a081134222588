"""The verbs with real instances: a node agent runs model servers, the CLI waits for them, reads their logs,
follows them and sends predictions."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import eventually, interrupt, wait_for_output

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SAMPLE = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})


def test_create_watch_predict_logs_scale_restart_stop_start_delete(ferry, iris_file, sweeper):
    created = ferry("create", ferry.file("iris.json", iris_file), "--timeout", "90")
    assert created.returncode == 0, created.stderr
    assert "Created service demo_iris in cluster local." in created.stdout
    assert "/api/predict/demo_iris" in created.stdout and "Token" in created.stdout
    assert "demo_iris is Running: 1/1 instances ready" in created.stdout
    for reason in ("CreatedService", "FetchedModel", "InstanceReady", "BecameRunning"):
        assert reason in created.stderr, created.stderr  # events, printed while waiting

    described = ferry.json("desc", "demo_iris")
    assert (described["Status"], described["RunningInstance"]) == ("Running", 1)
    (instance,) = ferry.json("instances", "demo_iris")["Instances"]
    assert instance["Status"] == "Running" and instance["ReadyProcesses"] == 1 and instance["InstancePort"] > 0
    name = instance["InstanceName"]
    assert name in ferry.ok("instances", "demo_iris", "-o", "wide").stdout

    # predict, straight to the instance (the gateway has its own test below), signed as the EAS SDK signs.
    answer = ferry.ok("predict", "demo_iris", "-d", SAMPLE, "--instance", name)
    assert json.loads(answer.stdout) == {"predictions": [0, 2]}
    body = ferry.file("request.json", SAMPLE)
    assert ferry.json("predict", "demo_iris", "-d", f"@{body}", "--instance", name) == {"predictions": [0, 2]}
    base = f"http://127.0.0.1:{instance['InstancePort']}"
    token = ferry.json("desc", "demo_iris")["AccessToken"]
    piped = ferry("predict", "demo_iris", "-d", "@-", "--endpoint", base, "--token", token, input=SAMPLE)
    assert piped.returncode == 0 and json.loads(piped.stdout)["predictions"] == [0, 2]
    # Instances check direct (EAS direct-connection) calls too: a wrong token is refused.
    refused = ferry("predict", "demo_iris", "-d", "@-", "--endpoint", base, "--token", "t0ken", input=SAMPLE)
    assert refused.returncode == 1 and "401" in refused.stderr
    wrong = ferry("predict", "demo_iris", "-d", '{"instances": "nope"}', "--instance", name)
    assert wrong.returncode == 1 and f"{base}/api/predict/demo_iris answered" in wrong.stderr

    # logs: what is there, filtered, then -f receiving a line written after it started.
    logs = ferry.ok("logs", "demo_iris").stdout
    assert f"{name}: " in logs and "warmed up" in logs
    assert ferry.ok("logs", "demo_iris", "-i", name, "--grep", "warmed up").stdout.count("\n") == 1
    assert ferry.ok("logs", "demo_iris", "--since", "1h", "--tail", "2").stdout.count("\n") == 2
    assert ferry.ok("logs", "demo_iris", "--since", "2999-01-01T00:00:00Z").stdout == ""
    follow = ferry.popen("logs", "demo_iris", "-f", "--tail", "1")
    wait_for_output(follow, "stdout", f"{name}: ")  # the last line so far
    marker = "ferry-cli-follow-marker"
    requests.post(f"{base}/v1/models/{marker}:predict", json={"instances": []}, timeout=10)  # logs an access line
    wait_for_output(follow, "stdout", marker)
    code, _, _ = interrupt(follow)
    assert code == 130

    # scale: waits for the new instance, printing its events.
    scaled = ferry("scale", "demo_iris", "2", "--timeout", "90")
    assert scaled.returncode == 0, scaled.stderr
    assert "demo_iris is Running: 2/2 instances ready" in scaled.stdout and "InstanceReady" in scaled.stderr
    assert ferry.json("desc", "demo_iris")["RunningInstance"] == 2

    # restart one instance: it comes back as a new process under the same name.
    restarted = ferry("restart", "demo_iris", "-i", name, "--timeout", "90")
    assert restarted.returncode == 0, restarted.stderr
    assert "RestartedInstance" in restarted.stderr
    after = {i["InstanceName"]: i for i in ferry.json("instances", "demo_iris")["Instances"]}
    assert after[name]["StartTime"] > instance["StartTime"] and after[name]["ReadyProcesses"] == 1
    # restart the service: every instance starts anew before the wait ends.
    everything = ferry("restart", "demo_iris", "--timeout", "90")
    assert everything.returncode == 0 and "demo_iris is Running: 2/2 instances ready" in everything.stdout
    again = {i["InstanceName"]: i for i in ferry.json("instances", "demo_iris")["Instances"]}
    assert all(again[n]["StartTime"] > after[n]["StartTime"] for n in after if n in again), (after, again)

    stopped = ferry("stop", "demo_iris", "--timeout", "60")
    assert stopped.returncode == 0 and "demo_iris is Stopped" in stopped.stdout, stopped.stderr
    assert ferry.json("instances", "demo_iris")["Instances"] == []
    started = ferry("start", "demo_iris", "--timeout", "90")
    assert started.returncode == 0 and "demo_iris is Running: 2/2 instances ready" in started.stdout, started.stderr

    deleted = ferry("delete", "demo_iris", "--timeout", "60")
    assert deleted.returncode == 0 and "demo_iris is deleted" in deleted.stdout, deleted.stderr
    assert ferry.json("list")["Services"] == []


def test_new_versions_roll_out_canary_and_blue_green_with_waits(ferry, iris_file, sweeper):
    ferry.ok("create", ferry.file("iris.json", iris_file), "--timeout", "90")
    # Dropping the warm-up changes the instance shape: version 2 of the same model, a rolling update.
    rolled = ferry("modify", "demo_iris", "-D", "warm_up_data_path=null", "--timeout", "90")
    assert rolled.returncode == 0, rolled.stderr
    assert "RolledOut" in rolled.stderr and "demo_iris is Running" in rolled.stdout
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 2, "Weight": 100}]

    # A canary rollout: the wait ends once the canary serves its share.
    patch = ferry.file("v3.json", {"warm_up_data_path": iris_file["warm_up_data_path"]})
    canary = ferry("modify", "demo_iris", "-s", patch, "--strategy", "canary", "--canary-weight", "20",
                   "--timeout", "90")
    assert canary.returncode == 0, canary.stderr
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 2, "Weight": 80}, {"Version": 3, "Weight": 20}]
    ferry.ok("canary", "demo_iris", "--weight", "50", "--timeout", "60")
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 2, "Weight": 50}, {"Version": 3, "Weight": 50}]
    promoted = ferry("promote", "demo_iris", "--timeout", "90")
    assert promoted.returncode == 0, promoted.stderr
    described = ferry.json("desc", "demo_iris")
    assert described["Traffic"] == [{"Version": 3, "Weight": 100}] and described["Rollout"] is None

    rolled_back = ferry("rollback", "demo_iris", "--timeout", "90")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 2, "Weight": 100}]

    # Blue-green: the wait ends when green is ready at 0 %; switch; finish retires blue.
    green = ferry("modify", "demo_iris", "-D", "metadata.rpc.keepalive=6000", "--strategy", "blue-green",
                  "--timeout", "90")
    assert green.returncode == 0, green.stderr
    assert "Rollout of version 4: AwaitingSwitch" in green.stdout and "ferry switch demo_iris" in green.stdout
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 2, "Weight": 100}]
    switched = ferry("switch", "demo_iris", "--timeout", "60")
    assert switched.returncode == 0 and "Switched" in switched.stdout, switched.stderr
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 4, "Weight": 100}]
    finished = ferry("finish", "demo_iris", "--timeout", "60")
    assert finished.returncode == 0, finished.stderr
    assert {i["Version"] for i in ferry.json("instances", "demo_iris")["Instances"]} == {4}

    # A version whose model is missing never gets traffic, and the wait says so.
    broken = ferry("modify", "demo_iris", "-D", "model_path=file:///nowhere/model/", "--timeout", "60")
    assert broken.returncode == 1
    assert "The rollout of version 5 of demo_iris failed" in broken.stderr and "/nowhere/model/" in broken.stderr
    assert ferry.json("desc", "demo_iris")["Traffic"] == [{"Version": 4, "Weight": 100}]


@pytest.mark.skipif(importlib.util.find_spec("gateway") is None,
                    reason="the gateway (package gateway/) is not there; predict is tested against the instance "
                           "directly in test_create_watch_predict_logs_scale_restart_stop_start_delete")
def test_predict_through_the_gateway_with_the_eas_signature(ferry, iris_file, sweeper, tmp_path):
    from django.test import override_settings

    from tests.harness.process import free_port

    port = free_port()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as output:
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO, stdout=output,
                                   stderr=subprocess.STDOUT,
                                   env={**os.environ, "FERRY_GATEWAY_PORT": str(port), "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"

    def ready():
        try:
            return requests.get(f"{url}/readyz", timeout=1).status_code == 200
        except requests.ConnectionError:
            assert gateway.poll() is None, f"the gateway exited:\n{log.read_text()}"
            return False

    try:
        eventually(ready, timeout=60, what="the gateway to be ready")
        # The API advertises this gateway as the service's endpoint, so `predict` needs no --endpoint.
        with override_settings(FERRY_GATEWAY_URL=url):
            ferry.ok("create", ferry.file("iris.json", iris_file), "--timeout", "90")
            assert ferry.json("desc", "demo_iris")["InternetEndpoint"] == f"{url}/api/predict/demo_iris"
            attempts = []

            def routed():
                attempts.append(ferry("predict", "demo_iris", "-d", SAMPLE))
                return attempts[-1] if attempts[-1].returncode == 0 else None

            try:
                answer = eventually(routed, timeout=60, what="the gateway to route demo_iris")
            except AssertionError:
                raise AssertionError(f"{attempts[-1].stderr}\ngateway log:\n{log.read_text()}") from None
            assert json.loads(answer.stdout) == {"predictions": [0, 2]}
            plain = ferry("predict", "demo_iris", "-d", SAMPLE, "--auth", "token")
            assert plain.returncode == 0 and json.loads(plain.stdout) == {"predictions": [0, 2]}, plain.stderr
            forged = ferry("predict", "demo_iris", "-d", SAMPLE, "--token", "not-the-token")
            assert forged.returncode == 1 and "answered 401" in forged.stderr, forged.stderr
    finally:
        gateway.terminate()
        gateway.wait(15)
