"""The activation record: the last wake-up of a service from zero, until an instance serves. Pure; the one owner
of its states and transitions.

`Service.activation` stores it as JSON (`Activation.to_json()`):
{"since": iso, "generation": int, "failed": bool, "message": str}. deployer/activation.py begins it when a
request arrives for a service at zero, and each reconcile follows it (`verdict`): forgotten once an instance is
ready or the service changed (a new generation), failed past the deadline. A failed wake-up keeps the service
at zero, without a wake-up loop, until the user changes the service.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class ActivationState(StrEnum):
    WAKING = "waking"  # instances are starting; requests wait in the gateway's activator
    FAILED = "failed"  # none became ready within the deadline; the service stays at zero


class Verdict(StrEnum):
    """What a reconcile does with the last wake-up."""

    NONE = "none"  # nothing to follow
    CLEAR = "clear"  # an instance serves, or the service changed since: forget it
    WAITING = "waiting"  # still within the deadline
    EXPIRED = "expired"  # fail it now
    FAILED = "failed"  # failed before; the service stays at zero


class ActivationRefused(Exception):
    pass


@dataclass(frozen=True)
class Activation:
    since: datetime
    generation: int  # the service's generation when it woke: a later change of the service lets it try again
    state: ActivationState = ActivationState.WAKING
    message: str = ""

    @classmethod
    def begin(cls, *, generation: int, now: datetime) -> Activation:
        return cls(since=now, generation=generation)

    @classmethod
    def from_json(cls, data: dict) -> Activation:
        return cls(since=datetime.fromisoformat(data["since"]), generation=data["generation"],
                   state=ActivationState.FAILED if data.get("failed") else ActivationState.WAKING,
                   message=data.get("message", ""))

    def to_json(self) -> dict:
        return {"since": self.since.isoformat(), "generation": self.generation,
                "failed": self.state is ActivationState.FAILED, "message": self.message}

    def fail(self, message: str) -> Activation:
        if self.state is ActivationState.FAILED:
            raise ActivationRefused(f"The wake-up of generation {self.generation} has already failed.")
        return replace(self, state=ActivationState.FAILED, message=message)

    def failed_for(self, generation: int) -> bool:
        """Failed for the service as it is now: a change of the service (a new generation) lets the next
        request try again."""
        return self.state is ActivationState.FAILED and self.generation == generation

    def verdict(self, *, generation: int, ready: bool, now: datetime, deadline: timedelta) -> Verdict:
        if self.generation != generation:
            return Verdict.CLEAR
        if self.state is ActivationState.FAILED:
            return Verdict.FAILED
        if ready:
            return Verdict.CLEAR
        if now - self.since > deadline:
            return Verdict.EXPIRED
        return Verdict.WAITING


def activation_of(data: dict | None) -> Activation | None:
    """The typed record of a stored `Service.activation` (None: no wake-up to follow)."""
    return Activation.from_json(data) if data else None


def activation_failed(data: dict | None, generation: int) -> bool:
    """Whether the stored wake-up failed for the service as it is now."""
    activation = activation_of(data)
    return activation is not None and activation.failed_for(generation)


def activation_verdict(data: dict | None, *, generation: int, ready: bool, now: datetime,
                       deadline: timedelta) -> Verdict:
    """What to do with the stored last wake-up from zero (see `Verdict`)."""
    activation = activation_of(data)
    if activation is None:
        return Verdict.NONE
    return activation.verdict(generation=generation, ready=ready, now=now, deadline=deadline)


def activation_failure(data: dict | None, generation: int) -> str:
    """Why the stored wake-up failed, when it failed for the service as it is now; else ""."""
    activation = activation_of(data)
    return activation.message if activation is not None and activation.failed_for(generation) else ""
