"""The instance sandbox (docs/security.md, "The instance sandbox"): a real node agent starts two instances;
the attacker's command tries to read Ferry's secrets, the other instance's files, token and processes, and to
kill it, writes what it could into its own directory, then serves. Every attempt must have failed.

The attacker names the paths it tries in its own command line on purpose: the sandbox shows a launch's
absolute paths read-only, but never the var directory or anything in it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from django.conf import settings

from deployer.agent import sandbox
from deployer.agent.processes import Confinement, confined_command
from tests.agent.conftest import cluster  # noqa: F401 - the real node agent of the agent tests
from tests.agent.kit import HTTP_SERVER, PY, http_status

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SECRET = "s3cret-victim-token-0123456789"
VAR_SECRETS = {"secret-key": "django-secret-key-for-the-test", "admin-token": "admin-token-for-the-test",
               "redis-password": "redis-password-for-the-test",
               "ferry.sqlite3": "SQLite format 3\0 pretend database"}

# What the attacker tries. Each entry: (attempt, what it reads, or an action); the script reports per attempt
# {"ok": bool, "detail": str}. "ok" means the attempt got what it wanted.
ATTACKS = [
    "read var/secret-key", "read var/admin-token", "read the SQLite database", "list the var directory",
    "list the victim's own directory", "read the victim's instance.log", "read the victim's process.json",
    "read the victim's /proc/<pid>/environ", "find the victim's token in its /proc/<pid>/cmdline",
    "read /proc/1/environ", "read the node agent's /proc/<pid>/environ", "see the victim among its processes",
    "kill -9 the victim", "find control-plane secrets in its own environment", "read var/redis-password",
]
# The network is shared (the gateway reaches instances on loopback): these reach the server, and must be refused
# by it for want of credentials. Each: (attempt, what the refusal says). A refusal for another reason (the
# connection refused, a timeout) would prove nothing about the server's credentials, so it fails the test.
NETWORK_ATTACKS = [
    ("read Redis keys without a password", "NOAUTH"),
    ("connect to PostgreSQL without a password", "no password supplied"),
]

ATTACKER = r'''
import json, os, signal, socket, sys
var, victim, victim_pid, agent_pid, token, redis_host, redis_port, pg_host, pg_port, pg_user = sys.argv[1:11]
report = {}
def attempt(name, action):
    try:
        got = action()
        report[name] = {"ok": bool(got), "detail": str(got)[:200]}
    except Exception as exc:
        report[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:200]}
read = lambda path: open(path, "rb").read()
attempt("read var/secret-key", lambda: read(var + "/secret-key"))
attempt("read var/admin-token", lambda: read(var + "/admin-token"))
attempt("read var/redis-password", lambda: read(var + "/redis-password"))
attempt("read the SQLite database", lambda: read(var + "/ferry.sqlite3"))
attempt("list the var directory", lambda: [n for n in os.listdir(var) if n not in ("instances", "models")])
attempt("list the victim's own directory", lambda: os.listdir(var + "/instances/" + victim + "/work") + ["listed"])
attempt("read the victim's instance.log", lambda: read(var + "/instances/" + victim + "/instance.log"))
attempt("read the victim's process.json", lambda: read(var + "/instances/" + victim + "/process.json"))
attempt("read the victim's /proc/<pid>/environ", lambda: read(f"/proc/{victim_pid}/environ"))
attempt("find the victim's token in its /proc/<pid>/cmdline", lambda: token.encode() in read(f"/proc/{victim_pid}/cmdline"))
attempt("read /proc/1/environ", lambda: token.encode() in read("/proc/1/environ") or b"DATABASE" in read("/proc/1/environ"))
attempt("read the node agent's /proc/<pid>/environ", lambda: read(f"/proc/{agent_pid}/environ"))
def processes():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            found.append(read(f"/proc/{pid}/cmdline"))
        except OSError:
            pass
    return [c for c in found if c.split(b"\0")[-3:-1] == [b"--directory", b"."]]
attempt("see the victim among its processes", processes)
def kill():
    os.kill(int(victim_pid), signal.SIGKILL)
    return "signal sent"
attempt("kill -9 the victim", kill)
attempt("find control-plane secrets in its own environment", lambda: [k for k in os.environ if k in (
    "DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "SECRET_KEY", "FERRY_ENCRYPTION_KEY", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "KUBECONFIG", "FERRY_ADMIN_TOKEN") or k.startswith("AWS_")])
def redis_keys():
    with socket.create_connection((redis_host, int(redis_port)), timeout=3) as conn:
        conn.sendall(b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n")
        answer = conn.recv(65536)
    if answer.startswith(b"-"):
        raise PermissionError(answer.decode(errors="replace").strip())
    return answer
attempt("read Redis keys without a password", redis_keys)
def postgres():
    import psycopg
    with psycopg.connect(host=pg_host, port=int(pg_port), user=pg_user, dbname="postgres", connect_timeout=3) as conn:
        return conn.execute("select current_user").fetchone()
attempt("connect to PostgreSQL without a password", postgres)
report["_self"] = {"uid": os.getuid(), "cwd": os.getcwd(), "home": os.environ.get("HOME")}
with open(os.path.join(os.environ["HOME"], "report.json"), "w") as out:
    json.dump(report, out)
sys.argv = ["http.server", sys.argv[11], "--bind", "127.0.0.1"]
import runpy
runpy.run_module("http.server", run_name="__main__")
'''


def _worker(pid: int) -> int:
    """The victim's own process (under bubblewrap the agent's pid is bwrap's)."""
    for child in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        if child.name() != "bwrap":
            return child.pid
    raise AssertionError(f"no command under {pid}")


_SCENARIO: dict = {}


@pytest.fixture
def attack(request):
    """The scenario runs once (a real agent, two instances); every test reads what it found."""
    if not _SCENARIO:
        _SCENARIO.update(_run_scenario(request.getfixturevalue("cluster")))
    return _SCENARIO


def _run_scenario(cluster) -> dict:
    var = cluster.var_dir
    var.mkdir(parents=True, exist_ok=True)
    for name, content in VAR_SECRETS.items():
        (var / name).write_text(content)
        os.chmod(var / name, 0o644)  # as careless as a fresh checkout: the agent must restrict them
    cluster.add("victim-v1-0", [*HTTP_SERVER, "--directory", "."], env={"FERRY_SERVICE_TOKEN": SECRET})
    agent = cluster.start_agent()
    victim = cluster.wait_running("victim-v1-0")
    (var / "instances" / "victim-v1-0" / "work" / "private.txt").write_text(SECRET)
    victim_worker = _worker(victim.pid)
    redis = urlsplit(settings.REDIS_URL)
    database = settings.DATABASES["default"]
    cluster.add("attacker-v1-0", [PY, "-c", ATTACKER, str(var), "victim-v1-0", str(victim_worker),
                                  str(agent.popen.pid), SECRET, redis.hostname, str(redis.port or 6379),
                                  str(database.get("HOST") or "127.0.0.1"), str(database.get("PORT") or 5432),
                                  "postgres", "{port}"])
    attacker = cluster.wait_running("attacker-v1-0", timeout=30)
    work = var / "instances" / "attacker-v1-0" / "work"
    return {
        "report": json.loads((work / "report.json").read_text()),
        "victim_alive": psutil.pid_exists(victim_worker) and cluster.row("victim-v1-0").pid == victim.pid,
        "victim_serves": http_status(cluster.row("victim-v1-0").port) == 200,
        "attacker_serves": http_status(attacker.port) == 200,
        "work_uid": work.stat().st_uid, "work_mode": work.stat().st_mode & 0o777, "work": str(work),
        "var_modes": {name: (var / name).stat().st_mode & 0o777 for name in VAR_SECRETS},
        "log": cluster.log("attacker-v1-0"),
    }


@pytest.mark.parametrize("name", ATTACKS)
def test_the_attempt_fails(attack, name):
    outcome = attack["report"][name]
    assert outcome["ok"] is False, f"{name}: {outcome['detail']}"
    assert SECRET not in outcome["detail"]
    for value in VAR_SECRETS.values():
        assert value not in outcome["detail"]
    # ...and changed nothing: the victim still runs the same process and serves, and so does the attacker
    assert attack["victim_alive"] and attack["victim_serves"] and attack["attacker_serves"]


@pytest.mark.parametrize(("name", "refusal"), NETWORK_ATTACKS)
def test_the_network_attempt_is_refused_for_want_of_credentials(attack, name, refusal):
    outcome = attack["report"][name]
    assert outcome["ok"] is False, f"{name}: {outcome['detail']}"
    assert refusal in outcome["detail"], f"{name}: refused for another reason: {outcome['detail']}"
    assert attack["victim_alive"] and attack["victim_serves"] and attack["attacker_serves"]


def test_it_runs_as_a_user_of_its_own_in_its_own_directory(attack):
    own = attack["report"]["_self"]
    assert own["uid"] != 0 and own["uid"] == attack["work_uid"]
    assert own["home"] == attack["work"] and attack["work_mode"] == 0o700
    assert all(mode & 0o077 == 0 for mode in attack["var_modes"].values()), attack["var_modes"]
    assert "sandbox: runs as uid" in attack["log"] and "sandbox: not isolated: the network" in attack["log"]


# --- the decision, where the host allows less (pure) ------------------------------------------------------

def test_without_root_and_without_bubblewrap_nothing_is_claimed():
    isolation = sandbox.decide(is_root=False, bwrap=None, bwrap_works=False)
    assert not isolation.active
    lines = "\n".join(sandbox.notes(isolation, None))
    assert "NOT isolated by user" in lines and "NO mount or pid namespace" in lines
    assert "bubblewrap (bwrap) is not installed" in lines


def test_without_root_bubblewrap_still_gives_namespaces():
    isolation = sandbox.decide(is_root=False, bwrap="/usr/bin/bwrap", bwrap_works=True)
    assert isolation.bwrap and not isolation.separate_user


def test_as_root_without_bubblewrap_a_user_of_its_own_only_if_it_can_reach_the_interpreter():
    assert sandbox.decide(is_root=True, bwrap=None, bwrap_works=False).separate_user
    unreachable = sandbox.decide(is_root=True, bwrap=None, bwrap_works=False, reachable_by_others=False)
    assert not unreachable.separate_user and "not searchable" in unreachable.why_not_user


def test_a_bubblewrap_that_does_not_work_is_said_why():
    isolation = sandbox.decide(is_root=True, bwrap="/usr/bin/bwrap", bwrap_works=False, bwrap_error="no userns")
    assert isolation.bwrap is None and "no userns" in "\n".join(sandbox.notes(isolation, 5))


def test_the_command_under_bubblewrap_never_mounts_the_var_directory(tmp_path):
    var = tmp_path / "var"
    (var / "instances" / "a").mkdir(parents=True)
    isolation = sandbox.Isolation(True, "/usr/bin/bwrap")
    _program, command = confined_command(["sh", "-c", "true"], "/usr/bin/sh", {}, None, 100, Confinement(
        isolation, var, 1_900_000_001, [var / "instances" / "a"], [str(var), str(var / "secret-key"), str(tmp_path)]))
    binds = [command[i + 1] for i, item in enumerate(command) if item in ("--bind", "--ro-bind", "--ro-bind-try")]
    assert str(var / "instances" / "a") in binds
    assert not any(path in (str(var), str(var / "secret-key"), str(tmp_path)) for path in binds)
    assert "--die-with-parent" not in command  # instances outlive the agent and are adopted
    assert command[command.index("--uid") + 1] == "1900000001"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_without_root_the_limited_exec_path_runs_as_that_user(tmp_path):
    """The agent's command chain run as an unprivileged user (nobody): bubblewrap through a user namespace,
    no uid change; the command still runs and sees its own processes only."""
    if not sandbox.reachable_by_others([sys.executable]):
        pytest.skip("the interpreter lies in a directory other users cannot search")
    probe = subprocess.run(["runuser", "-u", "nobody", "--", "bwrap", "--ro-bind", "/", "/", "--proc", "/proc",
                            "--dev", "/dev", "--unshare-pid", "--", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unprivileged user namespaces are not available here")
    isolation = sandbox.Isolation(False, "/usr/bin/bwrap")
    Path(tmp_path).chmod(0o755)
    _program, command = confined_command(["sh", "-c", "ls /proc | grep -c '^[0-9]'"], "/usr/bin/sh", {}, "/",
                                         None, Confinement(isolation, tmp_path / "var"))
    result = subprocess.run(["runuser", "-u", "nobody", "--", *command], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) <= 4  # bwrap's init, sh, ls, grep: none of the host's


def test_attempts_are_counted():
    assert len(ATTACKS) + len(NETWORK_ATTACKS) == 17
