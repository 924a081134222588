"""What the command modules share: the per-invocation state, common options, and "write, then wait"."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from . import output, waiting
from .client import ApiError, Client, Response, ServiceRef
from .config import Settings, resolve


class State:
    """Global options of one invocation; settings and the HTTP client are made when first needed, so
    `ferry config ...` works before anything is configured."""

    def __init__(self, profile: str | None, endpoint: str | None, cluster: str | None, debug: bool):
        self.profile, self.debug = profile, debug
        self.flags = {"endpoint": endpoint, "cluster": cluster}

    @functools.cached_property
    def settings(self) -> Settings:
        return resolve(self.profile, self.flags)

    @functools.cached_property
    def client(self) -> Client:
        return Client(self.settings, debug=self.debug)

    def ref(self, name: str) -> ServiceRef:
        return self.client.resolve(name)


pass_state = click.make_pass_decorator(State)


def output_option(*formats: str):
    formats = formats or output.FORMATS
    return click.option("-o", "--output", "fmt", type=click.Choice(formats), default="table", show_default=True,
                        help="Output format: json and yaml print the API's answer, for scripts.")


def wait_options(function):
    function = click.option("--timeout", type=click.FloatRange(min=0), default=waiting.DEFAULT_TIMEOUT,
                            show_default=True, metavar="SECONDS",
                            help="Give up waiting after this long (exit 3).")(function)
    return click.option("--wait/--no-wait", default=True, show_default=True,
                        help="Wait until the service gets there, printing its events.")(function)


def read_json_file(path: str, what: str = "file") -> object:
    """A JSON document from a path or `-` (stdin); a bad one is a usage error (exit 2) naming the line."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=what) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                                 param_hint=what) from None


def finish_write(ctx: click.Context, state: State, ref: ServiceRef, response: Response, *, fmt: str, wait: bool,
                 timeout: float, goal: Callable[..., waiting.Goal] = waiting.running, before: dict | None = None,
                 message: str | None = None) -> None:
    """Prints what the server said, then (unless --no-wait) waits for `goal(generation after the write)`
    (`running` also gets `before`, the service before the write); exits with the wait's code when not 0."""
    if output.machine(fmt):
        output.dump(response.body, fmt)
    else:
        output.say(message or response.body.get("Message") or "Done.")
    if not wait:
        return
    try:
        generation = int(state.client.describe(ref).get("Generation") or 0)
    except ApiError as exc:
        if exc.status != 404:
            raise
        generation = 0  # already gone (a delete)
    target = goal(generation, before) if goal in (waiting.running, waiting.stopped) else goal(generation)
    code = waiting.wait(state.client, ref, target, since=response.server_time, timeout=timeout,
                        machine=output.machine(fmt))
    if code:
        ctx.exit(code)
