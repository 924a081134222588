"""Waiting for a service to get where a command sent it, printing its events as they happen.

Polls DescribeService and DescribeServiceEvent (events since the write, by the server's clock) about twice a
second. Exit codes: 0 reached, 1 Failed (with the reason), 3 timed out, 130 Ctrl-C, which stops only the
waiting: the service is left as it is, and the message says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text

from contracts.rollouts import RESTING, RolloutState

from . import output
from .client import ApiError, Client, ServiceRef

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 3, 130
DEFAULT_TIMEOUT = 600.0
POLL_SECONDS = 0.5


@dataclass
class Goal:
    state: str  # what we wait for, in words: "Running", "Stopped", "deleted"
    reached: Callable[[dict | None], bool]
    failure: Callable[[dict], str | None] = lambda body: None
    also: Callable[[], bool] | None = None  # a further check, made only once `reached` holds (costs a request)

    def met(self, body: dict | None) -> bool:
        return self.reached(body) and (self.also is None or self.also())


def _condition(body: dict, kind: str) -> str | None:
    return next((c.get("status") for c in body.get("Conditions") or [] if c.get("type") == kind), None)


def _observed(body: dict, generation: int) -> bool:
    return int(body.get("ObservedGeneration") or 0) >= generation


def _rollout(body: dict | None) -> dict:
    return (body or {}).get("Rollout") or {}


def _failed_rollout(body: dict | None) -> tuple | None:
    rollout = _rollout(body)
    failed = rollout.get("State") == RolloutState.FAILED
    return (rollout.get("ToVersion"), rollout.get("StartTime")) if failed else None


def running(generation: int, before: dict | None = None) -> Goal:
    """Running and no longer progressing, or resting in a rollout state that waits for the user. A rollout
    that failed after the write (not one that had failed before it, per `before`) is a failure."""
    stale = _failed_rollout(before)

    def reached(body):
        if body is None or not _observed(body, generation):
            return False
        # A rollout resting until the user acts (switch, finish, resume): a wait ends there.
        if _rollout(body).get("State") in RESTING:
            return body.get("Status") != "Failed"
        return body.get("Status") == "Running" and _condition(body, "Progressing") != "True"

    def failure(body):
        name = body.get("ServiceName")
        if _observed(body, generation) and body.get("Status") == "Failed":
            return f"{name} is Failed: {body.get('Reason') or 'Failed'}: {body.get('Message') or 'no reason given'}"
        failed = _failed_rollout(body)
        if failed and failed != stale:
            rollout = _rollout(body)
            return (f"The rollout of version {rollout.get('ToVersion')} of {name} failed: {rollout.get('Message')}; "
                    f"traffic stays on version {rollout.get('FromVersion')}")
        return None

    return Goal("Running", reached, failure)


def stopped(generation: int, before: dict | None = None) -> Goal:
    def reached(body):
        return (body is not None and _observed(body, generation) and body.get("Status") == "Stopped"
                and body.get("Reason") != "Stopping")

    return Goal("Stopped", reached)


def restarted(client: Client, ref: ServiceRef, generation: int, started: dict[str, str],
              before: dict | None = None) -> Goal:
    """Running again, and every instance that was running (`started`: name -> StartTime) has started anew
    or is gone: the status alone may still show the old processes for a moment after the write."""
    goal = running(generation, before)

    def renewed() -> bool:
        now = {i.get("InstanceName"): i for i in
               client.get(client.service_path(ref, "/instances"), PageSize=1000).get("Instances") or []}
        return all(name not in now or (now[name].get("StartTime") != start and now[name].get("ReadyProcesses"))
                   for name, start in started.items())

    goal.also = renewed
    return goal


def deleted() -> Goal:
    return Goal("deleted", lambda body: body is None)


class EventFeed:
    """Events of one service since a moment, each printed once, oldest first."""

    def __init__(self, client: Client, ref: ServiceRef, since: str):
        self.client, self.ref, self.since = client, ref, since
        self.seen: set[tuple] = set()

    def new(self) -> list[dict]:
        try:
            body = self.client.get(self.client.service_path(self.ref, "/events"), StartTime=self.since or None,
                                   PageSize=100)
        except ApiError:
            return []  # events are a nicety while waiting; the status poll reports real trouble
        fresh = []
        for event in reversed(body.get("Events") or []):  # the API lists newest first
            key = (event.get("Time"), event.get("Reason"), event.get("Message"), event.get("InstanceName"))
            if key not in self.seen:
                self.seen.add(key)
                fresh.append(event)
        return fresh


def wait(client: Client, ref: ServiceRef, goal: Goal, *, since: str, timeout: float = DEFAULT_TIMEOUT,
         machine: bool = False, show_events: bool = True) -> int:
    """Blocks until `goal` is reached or fails; returns the exit code. `since`: events from then on."""
    feed = EventFeed(client, ref, since)
    began = time.monotonic()
    body: dict | None = None
    spinner = output.err.status(f"{ref.name}: waiting") if output.err.is_terminal else None

    def stop_spinner():
        nonlocal spinner
        if spinner:
            spinner.stop()  # before the last words, so they do not land on the spinner's line
            spinner = None

    try:
        output.note(f"Waiting for {ref.name} to be {goal.state} (Ctrl-C stops waiting, not the service)...", "dim")
        if spinner:
            spinner.start()
        while True:
            try:
                body = client.describe(ref)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                body = None
            if show_events:
                for event in feed.new():
                    output.warn(output.event_line(event))
            failure = goal.failure(body) if body is not None else None
            if failure:
                stop_spinner()
                output.warn(Text(failure, style="bold red"))
                return EXIT_FAILED
            if goal.met(body):
                stop_spinner()
                _finish(ref, goal, body, time.monotonic() - began, machine)
                return EXIT_OK
            if body is None:
                raise ApiError("ServiceNotFound", f"Service {ref.name} no longer exists.", status=404)
            if time.monotonic() - began > timeout:
                stop_spinner()
                output.warn(Text(f"Timed out after {timeout:g} s waiting for {ref.name} to be {goal.state}; "
                                 f"it is {_state(body)}. It goes on without us: "
                                 f"`ferry desc {ref.name}` shows where it is.", style="yellow"))
                return EXIT_TIMEOUT
            if spinner:
                spinner.update(f"{ref.name}: {_state(body)}")
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        stop_spinner()
        if body is None:
            try:  # one quick look, to say what is left as it is
                body = client.describe(ref)
            except (ApiError, KeyboardInterrupt):
                pass
        state = body.get("Status") if body else "state unknown"
        output.warn(Text(f"Stopped waiting; {ref.name} is left as it is ({state}).", style="yellow"))
        return EXIT_INTERRUPTED
    finally:
        stop_spinner()


def _state(body: dict) -> str:
    message = body.get("Message") or ""
    return f"{body.get('Status', '?')}" + (f" ({message})" if message else "")


def _finish(ref: ServiceRef, goal: Goal, body: dict | None, elapsed: float, machine: bool) -> None:
    if body is None:
        text = f"{ref.name} is deleted ({elapsed:.1f} s)."
    else:
        detail = f": {body.get('Message')}" if body.get("Message") else ""
        text = f"{ref.name} is {body.get('Status')}{detail} ({elapsed:.1f} s)."
        rollout = _rollout(body)
        if rollout.get("State") in RESTING:
            hint = {RolloutState.AWAITING_SWITCH: f"`ferry switch {ref.name}` when you are",
                    RolloutState.SWITCHED: f"`ferry finish {ref.name}` retires version {rollout.get('FromVersion')}",
                    RolloutState.PAUSED: f"`ferry resume {ref.name}` goes on"}[RolloutState(rollout["State"])]
            text += (f" Rollout of version {rollout.get('ToVersion')}: {rollout['State']}"
                     f"{' (' + rollout['Message'] + ')' if rollout.get('Message') else ''}; {hint}.")
    if machine:
        output.note(text)
    else:
        output.say(text)
