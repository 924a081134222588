"""Standby mode: `python -m processors.modelserver --standby [--preload MODULE,...]`.

A model server that does the slow part of a start ahead of time: it imports kserve, FastAPI, numpy,
scikit-learn and what serving needs (about 2 s and 200 MB, measured in docs/processors.md), says "ready" to
the node agent, and waits. When the agent hands it an instance (handoff.py) it takes on that instance's log
(stdout and stderr), environment and working directory, answers "assigned", and runs exactly what `main`
runs for the same arguments: load, warm up, listen. From then on it is that instance: the same
/v2/health/ready (200 only once warmed up), the same log lines, the same SIGTERM handling.

Before the assignment its output goes to the agent's pool log, and SIGTERM ends it at once (the default
action). If the channel closes (the agent died), it exits 0: a new agent starts standbys of its own.

What is imported ahead and what on demand: scikit-learn (with SciPy) is most of the cost and also what
xgboost and lightgbm import, so it is preloaded with its common estimators; onnxruntime (0.05 s), xgboost
(0.2 s) and lightgbm (0.05 s) are cheap once SciPy is in, and are imported when a model of theirs loads,
as in a normal start. `--preload` adds modules (the agent passes FERRY_WARM_POOL_PRELOAD).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import time

from . import handoff

PRELOAD = (
    "numpy", "kserve", "fastapi", "orjson", "joblib",
    "sklearn", "sklearn.linear_model", "sklearn.ensemble", "sklearn.tree", "sklearn.pipeline",
    "sklearn.preprocessing",
    "processors.modelserver.server", "processors.modelserver.models", "processors.modelserver.handler",
    "contracts.auth",  # checks the service token of EAS calls (server.py imports it on the first one)
    # What a start imports later, on the way to listening (found by comparing sys.modules before and after):
    # FastAPI's route analysis imports pydantic.v1, uvicorn its protocol classes when it starts.
    "pydantic.v1", "concurrent.futures.thread",
)


def main(argv: list[str]) -> None:
    began = time.monotonic()
    # kserve parses sys.argv when it is imported; a normal start deletes its options the same way.
    del sys.argv[1:]
    extra = _preload_option(argv)
    try:
        channel = socket.socket(fileno=0)  # stdin: the agent's end of the channel
    except OSError:
        sys.exit("ferry-modelserver: error: --standby is for the node agent's warm pool (stdin must be its channel)")
    preload(PRELOAD + extra)
    logger = logging.getLogger("kserve")
    imports_seconds = time.monotonic() - began
    logger.info("standby %d: imported the serving libraries in %.3f s; waiting for an assignment",
                os.getpid(), imports_seconds)
    try:
        handoff.send(channel, {"type": "ready", "pid": os.getpid(), "imports_seconds": round(imports_seconds, 3)})
        message, fds = _wait_for_assignment(channel)
    except (handoff.ChannelClosed, OSError):
        logger.info("standby %d: the node agent closed the channel; exiting", os.getpid())
        sys.exit(0)
    assigned = time.monotonic()
    _become(message, fds)
    try:
        handoff.send(channel, {"type": "assigned", "pid": os.getpid()})
    except OSError:
        pass  # the agent went away meanwhile: a new one finds this process as a stray and stops it
    _close_channel(channel)
    from .__main__ import parse_args, run

    args = parse_args(message["argv"][3:])  # [python, -m, processors.modelserver, <the options>]
    run(args, assigned, pooled={"imports_seconds": imports_seconds, "waited_seconds": assigned - began})


def preload(modules: tuple[str, ...]) -> None:
    """Imports what a start would import; a module that fails is left to the start that needs it."""
    from kserve import logging as kserve_logging

    kserve_logging.configure_logging()  # what ModelServer() does, so the standby's lines look the same
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - e.g. an optional framework missing: load it on demand
            logging.getLogger("kserve").warning("standby %d: could not preload %s (%s: %s)", os.getpid(), name,
                                                type(error).__name__, error)
    _preload_uvicorn_protocols()


def _preload_uvicorn_protocols() -> None:
    """uvicorn imports its HTTP, WebSocket and lifespan classes in Config.load(), when the server starts."""
    try:
        from uvicorn.config import HTTP_PROTOCOLS, LIFESPAN, WS_PROTOCOLS
        from uvicorn.importer import import_from_string

        for path in (HTTP_PROTOCOLS["auto"], WS_PROTOCOLS["auto"], LIFESPAN["on"]):
            import_from_string(path)
        import uvicorn.loops.auto  # noqa: F401
    except Exception:  # noqa: BLE001 - only a head start; the server imports what it needs anyway
        pass


def _wait_for_assignment(channel: socket.socket) -> tuple[dict, list[int]]:
    while True:
        message, fds = handoff.receive(channel)
        if message.get("type") == "assign" and len(fds) == 1:
            return message, fds
        for fd in fds:
            os.close(fd)


def _become(message: dict, fds: list[int]) -> None:
    """Takes on the instance's log, environment and working directory, as a normal start would have them."""
    sys.stdout.flush()
    sys.stderr.flush()
    (log_fd,) = fds
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    # The whole environment the agent would have given the process (os.environ also calls putenv, so C
    # libraries and child processes see it too).
    os.environ.clear()
    os.environ.update(message["env"])
    # The instance's memory limit, set by the standby itself: the agent's prlimit(2) on a process of another
    # user needs CAP_SYS_RESOURCE, which containers often drop. Lowering one's own limit is always allowed.
    if message.get("memory_limit_bytes"):
        import resource

        limit = int(message["memory_limit_bytes"])
        _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    if message.get("cwd"):
        os.chdir(message["cwd"])


def _close_channel(channel: socket.socket) -> None:
    """stdin becomes /dev/null, as in a normal start (the channel is closed with it)."""
    fd = channel.detach()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _preload_option(argv: list[str]) -> tuple[str, ...]:
    if len(argv) == 2 and argv[0] == "--preload":
        return tuple(name.strip() for name in argv[1].split(",") if name.strip())
    if argv:
        sys.exit(f"ferry-modelserver: error: --standby takes only --preload MODULE,... (got {' '.join(argv)})")
    return ()
