"""Every service verb against the live API, without running instances (--no-wait), its JSON parsed back; errors
with their exit codes; waiting that is interrupted, times out or ends in Failed.

Nothing runs the instances here (no node agent), so services stay Creating: what is checked is the API each
verb calls and what it prints. tests/cli/test_local_cluster.py drives the same verbs with real instances.
"""

import json
import re

import pytest
import yaml

from services.models import Service

from .conftest import interrupt, wait_for_output

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_create_list_desc_modify_scale_delete_without_waiting(ferry, iris_file):
    path = ferry.file("iris.json", iris_file)
    created = ferry.json("create", path, "--no-wait", "--label", "team=ml")
    assert created["ServiceName"] == "demo_iris" and created["Region"] == "local"
    assert created["InternetEndpoint"].endswith("/api/predict/demo_iris") and "RequestId" not in created

    human = ferry.ok("create", ferry.file("other.json", {**iris_file, "name": "iris_b"}), "--no-wait").stdout
    assert "Created service iris_b in cluster local." in human
    lines = dict(line.split(None, 1) for line in human.splitlines()[1:])
    assert lines["Endpoint"].endswith("/api/predict/iris_b") and lines["Status"] == "Creating"
    assert lines["Token"] == ferry.json("desc", "iris_b")["AccessToken"]  # eascmd prints it too

    listed = ferry.json("list")
    assert [s["ServiceName"] for s in listed["Services"]] == ["iris_b", "demo_iris"] and listed["TotalCount"] == 2
    assert yaml.safe_load(ferry.ok("list", "-o", "yaml").stdout)["Services"][0]["ServiceName"] == "iris_b"
    assert [s["ServiceName"] for s in ferry.json("list", "--label", "team=ml")["Services"]] == ["demo_iris"]
    assert [s["ServiceName"] for s in ferry.json("list", "-f", "_b", "--sort", "ServiceName")["Services"]] == ["iris_b"]
    table = ferry.ok("list").stdout
    assert table.split("\n")[0].split() == ["NAME", "CLUSTER", "STATUS", "INSTANCES", "VERSION", "TRAFFIC", "UPDATED"]
    assert "demo_iris" in table and "Creating" in table and "v1 100 %" in table
    wide = ferry.ok("list", "-o", "wide").stdout
    assert "PROJECT" in wide and "ENDPOINT" in wide and "team_a" in wide

    described = ferry.json("desc", "demo_iris")
    assert described["ServiceName"] == "demo_iris" and described["Status"] == "Creating"
    assert described["Labels"] == [{"LabelKey": "team", "LabelValue": "ml"}]
    assert json.loads(described["ServiceConfig"])["model_path"] == iris_file["model_path"]
    assert ferry.json("desc", "local/demo_iris")["ServiceId"] == described["ServiceId"]
    text = ferry.ok("desc", "demo_iris").stdout
    assert "Creating" in text and "Traffic" in text and "v1 100 %" in text and "CONDITION" in text
    assert json.loads(ferry.ok("desc", "demo_iris", "--config").stdout)["name"] == "demo_iris"

    ferry.ok("modify", "demo_iris", "-D", "metadata.instance=3", "-Dlabels.owner=alice", "--no-wait")
    described = ferry.json("desc", "demo_iris")
    # A label set by modify joins the one given at create (labels are the service's, not a version's).
    assert described["TotalInstance"] == 3
    assert json.loads(described["ServiceConfig"])["labels"] == {"team": "ml", "owner": "alice"}
    assert {(label["LabelKey"], label["LabelValue"]) for label in described["Labels"]} == {("team", "ml"),
                                                                                           ("owner", "alice")}
    assert ferry.json("scale", "demo_iris", "2", "--no-wait")["Message"] == "Updating service demo_iris"
    assert ferry.json("desc", "demo_iris")["TotalInstance"] == 2
    patch = ferry.file("patch.json", {"metadata": {"rpc": {"keepalive": 20000}}})
    ferry.ok("modify", "demo_iris", "-s", patch, "-D", "metadata.instance=1", "--no-wait")
    config = json.loads(ferry.json("desc", "demo_iris")["ServiceConfig"])
    assert config["metadata"]["rpc"]["keepalive"] == 20000 and config["metadata"]["instance"] == 1
    assert ferry.json("versions", "demo_iris")["TotalCount"] == 2  # rpc shapes an instance: version 2

    gone = ferry.json("delete", "iris_b", "--no-wait")
    assert gone["Message"] == "Deleting service iris_b"
    assert [s["ServiceName"] for s in ferry.json("list")["Services"]] == ["demo_iris"]


def rollout(ferry) -> dict | None:
    return ferry.json("desc", "demo_iris")["Rollout"]


def traffic(ferry) -> dict[int, int]:
    return {t["Version"]: t["Weight"] for t in ferry.json("desc", "demo_iris")["Traffic"]}


def test_versions_canary_promote_rollback_and_rollout_actions(ferry, iris_file):
    ferry.ok("create", ferry.file("iris.json", iris_file), "--no-wait")
    no_canary = ferry("canary", "demo_iris", "--weight", "10", "--no-wait")
    assert no_canary.returncode == 1 and "[NothingToCompare]" in no_canary.stderr

    # A new version starts a rolling rollout at 0 % (nothing runs instances here, so it stays Progressing).
    ferry.ok("modify", "demo_iris", "-D", "metadata.memory=600", "--no-wait")
    described = ferry.json("desc", "demo_iris")
    assert described["Traffic"] == [{"Version": 1, "Weight": 100}]
    assert (described["Rollout"]["Strategy"], described["Rollout"]["State"]) == ("rolling", "Progressing")
    assert "Rollout (rolling): version 1 -> 2, Progressing" in ferry.ok("versions", "demo_iris").stdout
    busy = ferry("canary", "demo_iris", "--weight", "20", "--no-wait")
    assert busy.returncode == 1 and "[RolloutInProgress]" in busy.stderr
    assert ferry.json("promote", "demo_iris", "--no-wait")["Message"] == "Promoting the new version of demo_iris"
    assert rollout(ferry)["Message"] == "promoted"
    assert ferry.json("rollback", "demo_iris", "--no-wait")["Message"] == "Rolling back demo_iris"
    assert rollout(ferry) is None and traffic(ferry) == {1: 100}

    # No rollout: canary and promote set the weights by hand.
    canary = ferry.ok("canary", "demo_iris", "--weight", "20", "--no-wait").stdout
    assert "Canary: version 2 gets 20 %, version 1 80 %." in canary
    assert traffic(ferry) == {1: 80, 2: 20}
    versions = ferry.json("versions", "demo_iris")["Versions"]
    assert [(v["ImageId"], v["Weight"]) for v in versions] == [(2, 20), (1, 80)]
    assert "1 (last rolled out)" in ferry.ok("versions", "demo_iris").stdout
    ferry.ok("promote", "demo_iris", "--no-wait")
    assert traffic(ferry) == {2: 100}
    assert "already serves all traffic" in ferry.ok("promote", "demo_iris", "--no-wait").stdout
    ferry.ok("rollback", "demo_iris", "--no-wait")  # no rollout: the version before the last rolled-out one
    assert traffic(ferry) == {1: 100}
    assert "Rolling demo_iris back to version 2." in ferry.ok("rollback", "demo_iris", "--version", "2",
                                                              "--no-wait").stdout
    assert traffic(ferry) == {2: 100}
    missing = ferry("rollback", "demo_iris", "--version", "9", "--no-wait")
    assert missing.returncode == 1 and "[VersionNotFound]" in missing.stderr

    # A canary rollout, steered through the rollout API.
    ferry.ok("modify", "demo_iris", "-D", "metadata.memory=700", "--strategy", "canary", "--canary-weight", "10",
             "--no-wait")
    current = rollout(ferry)
    assert (current["Strategy"], current["CanaryWeight"]) == ("canary", 10)
    ferry.ok("canary", "demo_iris", "--weight", "30", "--no-wait")
    assert rollout(ferry)["CanaryWeight"] == 30
    ferry.ok("pause", "demo_iris", "--no-wait")
    assert rollout(ferry)["State"] == "Paused"
    ferry.ok("resume", "demo_iris", "--no-wait")
    assert rollout(ferry)["State"] == "Progressing"
    not_blue_green = ferry("switch", "demo_iris", "--no-wait")
    assert not_blue_green.returncode == 1 and "[NoRolloutInProgress]" in not_blue_green.stderr
    ferry.ok("rollback", "demo_iris", "--no-wait")
    assert rollout(ferry) is None and traffic(ferry) == {2: 100}

    # Blue-green: the switch waits for green to be ready (it never is here).
    ferry.ok("modify", "demo_iris", "-D", "metadata.memory=800", "--strategy", "blue-green", "--no-wait")
    current = rollout(ferry)
    assert (current["Strategy"], current["State"]) == ("blue-green", "Progressing")
    early = ferry("switch", "demo_iris", "--no-wait")
    assert early.returncode == 1 and "has no blue-green rollout in a state that allows this" in early.stderr
    assert ferry("finish", "demo_iris", "--no-wait").returncode == 1


def test_scaling_release_mirror(ferry, iris_file):
    ferry.ok("create", ferry.file("iris.json", {**iris_file, "metadata": {**iris_file["metadata"], "group": "iris"}}),
             "--no-wait")
    ferry.ok("create", ferry.file("shadow.json", {**iris_file, "name": "iris_shadow"}), "--no-wait")

    none = ferry("autoscale", "demo_iris")
    assert none.returncode == 1 and "[AutoScalerNotFound]" in none.stderr
    ferry.ok("autoscale", "demo_iris", "--min", "1", "--max", "4", "--metric", "qps=10", "--metric", "cpu=70",
             "--scale-down-window", "120", "--no-wait")
    shown = ferry.json("autoscale", "demo_iris")
    assert (shown["MinReplica"], shown["MaxReplica"]) == (1, 4)
    assert shown["ScaleStrategies"] == [{"metricName": "qps", "threshold": 10}, {"metricName": "cpu", "threshold": 70}]
    assert shown["Behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 120}}
    ferry.ok("autoscale", "demo_iris", "--max", "6", "--min", "1", "--metric", "qps=5", "--no-wait")  # an update
    assert ferry.json("autoscale", "demo_iris")["MaxReplica"] == 6
    assert "qps=5" in ferry.ok("autoscale", "demo_iris").stdout
    bad = ferry("autoscale", "demo_iris", "--min", "5", "--max", "2", "--metric", "qps=1", "--no-wait")
    assert bad.returncode == 1 and "autoscaler" in bad.stderr
    ferry.ok("autoscale", "demo_iris", "--off", "--no-wait")
    assert ferry("autoscale", "demo_iris").returncode == 1

    ferry.ok("cronscale", "demo_iris", "--job", "morning", "0 0 8 * * *", "3", "--job", "night", "0 0 20 * * *", "1",
             "--timezone", "Asia/Shanghai")
    jobs = ferry.json("cronscale", "demo_iris")["ScaleJobs"]
    assert [(j["Name"], j["Schedule"], j["TargetSize"], j["TimeZone"]) for j in jobs] == [
        ("morning", "0 0 8 * * *", 3, "Asia/Shanghai"), ("night", "0 0 20 * * *", 1, "Asia/Shanghai")]
    assert "morning" in ferry.ok("cronscale", "demo_iris").stdout
    bad_cron = ferry("cronscale", "demo_iris", "--job", "x", "8 * * *", "1")
    assert bad_cron.returncode == 1 and "ScaleJobs[0].Schedule: must be a 6-field cron expression" in bad_cron.stderr
    ferry.ok("cronscale", "demo_iris", "--off")
    assert ferry("cronscale", "demo_iris").returncode == 1

    released = ferry.json("release", "demo_iris", "--weight", "30")
    assert released["Message"] == "Released service demo_iris"
    assert ferry.json("desc", "demo_iris")["Weight"] == 30
    no_group = ferry("release", "iris_shadow", "--weight", "30")
    assert no_group.returncode == 1 and "Weight: service iris_shadow is in no service group" in no_group.stderr

    ferry.ok("mirror", "demo_iris", "--target", "iris_shadow", "--ratio", "10")
    assert ferry.json("mirror", "demo_iris") == {"ServiceName": "demo_iris", "Target": "iris_shadow", "Ratio": "10"}
    ferry.ok("mirror", "demo_iris", "--target", "iris_shadow", "--ratio", "25")
    assert ferry.json("mirror", "demo_iris")["Ratio"] == "25"
    ferry.ok("mirror", "demo_iris", "--off")
    assert "[MirrorNotFound]" in ferry("mirror", "demo_iris").stderr

    (pending,) = ferry.json("instances", "demo_iris")["Instances"]  # asked for; nothing runs it here
    assert pending["ReadyProcesses"] == 0 and pending["InstanceName"] in ferry.ok("instances", "demo_iris").stdout
    events = ferry.json("events", "demo_iris")["Events"]
    assert {"CreatedService", "SetMirror", "UpdatedScaling"} <= {e["Reason"] for e in events}
    by_alice = {"CreatedService", "SetMirror", "UpdatedScaling", "ReleasedService", "RemovedMirror"}
    assert {e["Actor"] for e in events if e["Reason"] in by_alice} == {"alice"}
    by_ferry = [e for e in events if e["Actor"] == ""]  # the reconciler's, run on each write's commit here
    assert by_ferry and not by_alice & {e["Reason"] for e in by_ferry}
    warnings = ferry.json("events", "demo_iris", "--type", "Warning")["Events"]
    assert all(e["Type"] == "Warning" for e in warnings)
    table = ferry.ok("events", "demo_iris").stdout
    assert table.splitlines()[0].split() == ["TIME", "TYPE", "REASON", "INSTANCE", "ACTOR", "MESSAGE"]
    assert re.search(r"CreatedService +- +alice +Created service demo_iris", table), table
    system = next(e for e in by_ferry if not e["InstanceName"])
    assert re.search(rf"{system['Reason']} +- +- +{re.escape(system['Message'])}", table), table

    follow = ferry.popen("events", "demo_iris", "-f")
    wait_for_output(follow, "stdout", "CreatedService")
    ferry.ok("scale", "demo_iris", "3", "--no-wait")
    wait_for_output(follow, "stdout", "instances 1 -> 3 (by alice)")  # printed as it happened, with who acted
    code, _, _ = interrupt(follow)
    assert code == 130


def test_errors_print_the_server_message_and_paths_with_exit_codes(ferry, iris_file):
    bad = {**iris_file, "processor": "sklern", "instances": 2, "metadata": {"instance": -1}}
    result = ferry("create", ferry.file("bad.json", bad))
    assert result.returncode == 1 and result.stdout == ""
    assert "Error [InvalidServiceConfig]: 3 problem(s)" in result.stderr
    assert '  $: unknown field "instances"' in result.stderr
    assert "  metadata.instance: must be an integer >= 0" in result.stderr
    assert '  processor: unknown processor code "sklern" (did you mean "sklearn"?)' in result.stderr
    assert "RequestId" in result.stderr
    assert not Service.objects.exists()

    not_json = ferry("create", ferry.file("broken.json", '{"name": "x",'))
    assert not_json.returncode == 2 and "is not valid JSON" in not_json.stderr and "line 1" in not_json.stderr
    missing = ferry("create", str(ferry.tmp_path / "nowhere.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    from_stdin = ferry("create", "-", "--no-wait", "-o", "json", input=json.dumps(iris_file))
    assert from_stdin.returncode == 0 and json.loads(from_stdin.stdout)["ServiceName"] == "demo_iris"
    again = ferry("create", ferry.file("iris.json", iris_file), "--no-wait")
    assert again.returncode == 1 and '[AlreadyExists]: A service named "demo_iris" already exists' in again.stderr

    unknown = ferry("desc", "nothing_here")
    assert unknown.returncode == 1 and "[ServiceNotFound]" in unknown.stderr
    assert ferry("scale", "demo_iris", "many").returncode == 2
    assert ferry("modify", "demo_iris").returncode == 2
    define = ferry("modify", "demo_iris", "-D", "metadata.instance")
    assert define.returncode == 2 and "is not KEY=VALUE" in define.stderr
    invalid = ferry("modify", "demo_iris", "-D", "metadata.cpu=-1", "--no-wait")
    assert invalid.returncode == 1 and "metadata.cpu: must be a number >= 0" in invalid.stderr
    assert ferry("list", "-o", "xml").returncode == 2


def test_waiting_can_be_interrupted_and_leaves_the_service_as_it_is(ferry, iris_file):
    # No node agent: the service stays Creating, and `create` waits for it.
    process = ferry.popen("create", ferry.file("iris.json", iris_file))
    wait_for_output(process, "stderr", "Waiting for demo_iris to be Running")
    code, stdout, stderr = interrupt(process)
    assert code == 130, stderr
    assert "Stopped waiting; demo_iris is left as it is (Creating)." in stderr
    assert "Created service demo_iris" in stdout
    assert ferry.json("desc", "demo_iris")["Status"] == "Creating"

    timed_out = ferry("scale", "demo_iris", "2", "--timeout", "1")
    assert timed_out.returncode == 3 and "Timed out after 1 s waiting for demo_iris to be Running" in timed_out.stderr


def test_a_create_that_fails_exits_1_with_the_reason(ferry, iris_file):
    lost = {**iris_file, "name": "lost", "model_path": "file:///nowhere/model.joblib"}
    result = ferry("create", ferry.file("lost.json", lost), "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert "lost is Failed: ModelFetchFailed" in result.stderr and "/nowhere/model.joblib" in result.stderr
    events = result.stderr.split("Waiting for lost")[1].split("lost is Failed")[0]  # printed as they happened
    assert "CreatedService" in events and "Warning" in events and "ModelFetchFailed" in events
    assert ferry.json("desc", "lost")["Status"] == "Failed"
