"""The launch spec the local driver writes into `LocalInstance.launch`, read defensively.

A malformed spec is a permanent error for that instance (state Failed with the reason), never a crash of
the agent's loop.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

PORT_PLACEHOLDER = "{port}"
DEFAULT_HEALTH_PATH = "/"
DEFAULT_READY_TIMEOUT_SECONDS = 300.0
DEFAULT_GRACE_PERIOD_SECONDS = 30.0

# What an instance inherits from the agent's environment. Not everything: the agent's environment holds
# the control plane's secrets (DATABASE_URL, DJANGO_SECRET_KEY, ...), which user code must not see, and
# its user's HOME, USER and TMPDIR, which are not the instance's (its HOME is its own directory). The
# launch spec's env adds whatever the command needs.
INHERITED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ")

# Marks every instance process (and its children, which inherit the environment) as ours, so that a
# restarted agent can find strays that no state file describes. The var dir keeps two agents apart.
MARK_INSTANCE = "FERRY_INSTANCE"
MARK_VAR_DIR = "FERRY_AGENT_VAR_DIR"


class InvalidLaunch(ValueError):
    """The launch spec cannot be run as written."""


@dataclass(frozen=True)
class LaunchSpec:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    health_path: str = DEFAULT_HEALTH_PATH
    ready_timeout_seconds: float = DEFAULT_READY_TIMEOUT_SECONDS
    grace_period_seconds: float = DEFAULT_GRACE_PERIOD_SECONDS
    memory_limit_mb: int | None = None
    cpu: float | None = None
    # An LLM engine's environment (shown read-only) and its compile cache, shared by the service's instances
    # (read-write): both under <var>/engines when Ferry installed the engine (sandbox.engine_view).
    read_only_dirs: list[str] = field(default_factory=list)
    shared_dirs: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, launch: object) -> LaunchSpec:
        if not isinstance(launch, dict):
            raise InvalidLaunch("launch must be an object")
        argv = launch.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(item, str) for item in argv):
            raise InvalidLaunch("launch.argv must be a non-empty list of strings")
        env = launch.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
            raise InvalidLaunch("launch.env must be an object of strings")
        health_path = launch.get("health_path") or DEFAULT_HEALTH_PATH
        if not isinstance(health_path, str):
            raise InvalidLaunch("launch.health_path must be a string")
        return cls(
            argv=list(argv),
            env={key: str(value) for key, value in env.items()} | _decrypted(launch.get("secret_env") or {}),
            cwd=launch.get("cwd") or None,
            health_path=health_path if health_path.startswith("/") else "/" + health_path,
            ready_timeout_seconds=_positive(launch, "ready_timeout_seconds", DEFAULT_READY_TIMEOUT_SECONDS),
            grace_period_seconds=_positive(launch, "grace_period_seconds", DEFAULT_GRACE_PERIOD_SECONDS),
            memory_limit_mb=_whole(_optional_number(launch, "memory_limit_mb")),
            cpu=_optional_number(launch, "cpu"),
            read_only_dirs=_paths(launch, "read_only_dirs"),
            shared_dirs=_paths(launch, "shared_dirs"),
        )

    def argv_for(self, port: int) -> list[str]:
        return [item.replace(PORT_PLACEHOLDER, str(port)) for item in self.argv]

    def env_for(self, port: int, *, name: str, var_dir: str, home: str | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key in INHERITED_ENV or key.startswith("LC_")}
        if home:
            env["HOME"] = home
        # Instances write to a file, where Python would block-buffer its output: logs would lag behind.
        env["PYTHONUNBUFFERED"] = "1"
        env.update({key: value.replace(PORT_PLACEHOLDER, str(port)) for key, value in self.env.items()})
        env["PORT"] = str(port)
        env[MARK_INSTANCE] = name
        env[MARK_VAR_DIR] = var_dir
        return env


def _decrypted(secret_env: dict) -> dict[str, str]:
    """Secrets (the service token) are stored encrypted in the launch spec and decrypted only into the child's
    environment, never into a log line or the state files."""
    from services.encryption import decrypt

    try:
        return {key: decrypt(value) for key, value in secret_env.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidLaunch(f"launch.secret_env cannot be decrypted: {exc}") from exc


def limits_note(spec: LaunchSpec) -> list[str]:
    """What of the service's resources this host enforces, said in the instance log on every start."""
    lines = []
    if spec.memory_limit_mb:
        lines.append(
            f"memory limited to {spec.memory_limit_mb} MB via RLIMIT_DATA (heap, anonymous mappings and thread "
            "stacks; an allocation past it fails, so the process usually exits with MemoryError)"
        )
    else:
        lines.append("no memory limit was set for this instance")
    if spec.cpu:
        lines.append(
            f"cpu limit of {spec.cpu:g} cores is not enforced on the local cluster (no cgroup access); "
            "the instance may use every core of this host"
        )
    return lines


def pick_free_port(avoid: set[int]) -> int:
    """A port free on 127.0.0.1 now: the kernel picks one, we release it and the instance binds it.

    Another program can take it in between; the instance then fails to bind and is started again on a new
    port (see instance.py). `avoid` holds ports our own instances were given but may not have bound yet.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise OSError("found no free loopback port")


def _positive(launch: dict, key: str, default: float) -> float:
    value = launch.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise InvalidLaunch(f"launch.{key} must be a positive number")
    return float(value)


def _optional_number(launch: dict, key: str) -> float | None:
    value = launch.get(key)
    if value in (None, 0):
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise InvalidLaunch(f"launch.{key} must be a positive number")
    return float(value)


def _paths(launch: dict, key: str) -> list[str]:
    value = launch.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) and item.startswith("/") for item in value):
        raise InvalidLaunch(f"launch.{key} must be a list of absolute paths")
    return list(value)


def _whole(value: float | None) -> int | None:
    return None if value is None else max(1, int(value))
