"""The rollout record: the one owner of a rollout's states, its transitions and its progress clock. Pure.

`Service.rollout` stores it as JSON (`Rollout.to_json()`), so existing rows and the API read the same fields:
{"strategy": "rolling" | "canary" | "blue-green", "from_version": int | None, "to_version": int,
"state": "Progressing" | "Paused" | "AwaitingSwitch" | "Switched" | "Failed", "canary_weight": int,
"started_at": iso, "retain_until": iso | None, "message": str, "progress_at": iso, "ready_seen": int}.
A finished rollout is removed (the field becomes null) and its target becomes the last rolled-out version.

Who moves it: the user's writes (services/writes/rollouts.py: start, pause, resume, promote, rollback,
switch, finish, canary weight) and the reconciler's plan (deployer/rollout.py: a green that became ready, a
failure, the progress clock). Each move is a method here that refuses a move its state does not allow with
`RolloutRefused`; the writes turn that into the API's 409.

Pure and without Django. The states and the strategies live in contracts/rollouts.py, which the CLI may import
(it imports no Django and no Ferry app). What a canary request does is decided once, by the write
`services.writes.canary_set`, which the API, the console and `ferry canary` all call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from processors.codes import LLM_PROCESSORS
from contracts.rollouts import (  # noqa: F401  (the vocabulary, re-exported: this module owns the record)
    DEFAULT_CANARY_WEIGHT,
    IN_PROGRESS,
    RESTING,
    CanaryAction,
    RolloutState,
    Strategy,
    canary_action,
    canary_refusal,
    promote_action,
)

ALL_STATES = tuple(RolloutState)
_ALL = tuple(Strategy)
_WALKING = (Strategy.ROLLING, Strategy.CANARY)
# The user's actions: the strategies and states each is allowed in. Anything else is refused (RolloutRefused).
ACTIONS: dict[str, tuple[tuple[Strategy, ...], tuple[RolloutState, ...]]] = {
    "set_canary_weight": ((Strategy.CANARY,), (RolloutState.PROGRESSING, RolloutState.PAUSED)),
    "promote": (_ALL, IN_PROGRESS),
    "pause": (_WALKING, (RolloutState.PROGRESSING,)),
    "resume": (_WALKING, (RolloutState.PAUSED,)),
    "switch": ((Strategy.BLUE_GREEN,), (RolloutState.AWAITING_SWITCH,)),
    "finish": ((Strategy.BLUE_GREEN,), (RolloutState.SWITCHED,)),
    "rollback": (_ALL, ALL_STATES),
}


class RolloutRefused(Exception):
    """A transition the rollout's strategy or state does not allow. `code` is the API's error code."""

    def __init__(self, message: str, *, code: str = "NoRolloutInProgress"):
        super().__init__(message)
        self.message, self.code = message, code


class InvalidRollout(ValueError):
    """A bad value for a rollout (strategy, canary weight): `field` names it as the service file does."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def strategy_of(value: str) -> Strategy:
    try:
        return Strategy(value)
    except ValueError:
        raise InvalidRollout("rollout.strategy", f"must be one of {', '.join(Strategy)}") from None


def canary_weight_of(strategy: Strategy, weight: int | None) -> int:
    """The canary's share: 0 for other strategies, 10 % when not given, else a whole percent."""
    if strategy is not Strategy.CANARY:
        return 0
    weight = DEFAULT_CANARY_WEIGHT if weight is None else weight
    if not 0 <= weight <= 100:
        raise InvalidRollout("rollout.canary_weight", "must be an integer between 0 and 100")
    return weight


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Rollout:
    strategy: Strategy
    from_version: int | None
    to_version: int
    state: RolloutState
    started_at: datetime
    canary_weight: int = 0
    retain_until: datetime | None = None
    message: str = ""
    progress_at: datetime | None = None  # the progress clock (see `clock_moved`); None in records older than it
    ready_seen: int = 0

    # --- stored form ---

    @classmethod
    def from_json(cls, data: dict) -> Rollout:
        return cls(strategy=Strategy(data["strategy"]), from_version=data["from_version"],
                   to_version=data["to_version"], state=RolloutState(data["state"]),
                   started_at=datetime.fromisoformat(data["started_at"]),
                   canary_weight=data.get("canary_weight", 0), retain_until=_time(data.get("retain_until")),
                   message=data.get("message", ""), progress_at=_time(data.get("progress_at")),
                   ready_seen=data.get("ready_seen", 0))

    def to_json(self) -> dict:
        return {"strategy": str(self.strategy), "from_version": self.from_version, "to_version": self.to_version,
                "state": str(self.state), "canary_weight": self.canary_weight,
                "started_at": self.started_at.isoformat(),
                "retain_until": self.retain_until.isoformat() if self.retain_until else None,
                "message": self.message,
                "progress_at": self.progress_at.isoformat() if self.progress_at else None,
                "ready_seen": self.ready_seen}

    # --- starting ---

    @classmethod
    def start(cls, strategy: str, from_version: int | None, to_version: int, *, now: datetime,
              canary_weight: int | None = None, message: str = "") -> Rollout:
        """A new rollout: `to_version` starts at 0 % and the strategy decides the rest."""
        chosen = strategy_of(strategy)
        return cls(strategy=chosen, from_version=from_version, to_version=to_version,
                   state=RolloutState.PROGRESSING, started_at=now,
                   canary_weight=canary_weight_of(chosen, canary_weight), message=message, progress_at=now)

    # --- questions ---

    @property
    def in_progress(self) -> bool:
        """Not failed: the rollout still decides where traffic goes, and the user's rollout actions apply."""
        return self.state is not RolloutState.FAILED

    @property
    def failed(self) -> bool:
        return self.state is RolloutState.FAILED

    @property
    def moving(self) -> bool:
        """A rolling or blue-green rollout still shifting: the service is Updating. A canary rests as soon as it
        is deployed (it waits for promote or rollback), and a resting or failed rollout does not move."""
        return self.state is RolloutState.PROGRESSING and self.strategy in (Strategy.ROLLING, Strategy.BLUE_GREEN)

    @property
    def versions(self) -> set[int]:
        return {self.from_version, self.to_version} - {None}

    # --- the user's transitions ---

    def allows(self, action: str) -> bool:
        strategies, states = ACTIONS[action]
        return self.state in states and self.strategy in strategies

    def _require(self, action: str, service: str) -> None:
        if not self.allows(action):
            raise refusal(action, service)

    def set_canary_weight(self, weight: int, *, now: datetime, service: str = "the service") -> Rollout:
        self._require("set_canary_weight", service)
        return replace(self, canary_weight=canary_weight_of(Strategy.CANARY, weight), progress_at=now)

    def promote(self, *, now: datetime, service: str = "the service") -> Rollout:
        """The new version takes all traffic as fast as its instances are ready (a rolling finish)."""
        self._require("promote", service)
        return replace(self, strategy=Strategy.ROLLING, state=RolloutState.PROGRESSING, message="promoted",
                       progress_at=now)

    def pause(self, *, service: str = "the service") -> Rollout:
        self._require("pause", service)
        return replace(self, state=RolloutState.PAUSED)

    def resume(self, *, now: datetime, service: str = "the service") -> Rollout:
        """Back to progressing; the progress deadline counts from now (a paused rollout has none)."""
        self._require("resume", service)
        return replace(self, state=RolloutState.PROGRESSING, progress_at=now)

    def switch(self, *, retain_until: datetime, service: str = "the service") -> Rollout:
        """Blue-green: green takes all traffic; blue stays warm until finish or `retain_until`."""
        self._require("switch", service)
        return replace(self, state=RolloutState.SWITCHED, retain_until=retain_until)

    def finish(self, *, service: str = "the service") -> None:
        """Blue-green after the switch: the rollout ends (the record is removed), so this returns None."""
        self._require("finish", service)
        return None

    def rollback_target(self, *, service: str = "the service") -> int:
        """The version a rollback returns to, in any state (a failed rollout too)."""
        self._require("rollback", service)
        if self.from_version is None:
            raise RolloutRefused(f"Service {service} has no earlier version to roll back to.",
                                 code="NothingToRollBackTo")
        return self.from_version

    # --- the reconciler's transitions ---

    def green_ready(self) -> Rollout:
        """Blue-green: every green instance is ready at 0 %; it waits for the user's switch."""
        if self.strategy is not Strategy.BLUE_GREEN or self.state is not RolloutState.PROGRESSING:
            raise RolloutRefused(f"Only a progressing blue-green rollout awaits a switch, not a {self.strategy} "
                                 f"rollout that is {self.state}.")
        return replace(self, state=RolloutState.AWAITING_SWITCH,
                       message=f"version {self.to_version} is ready; switch when you are")

    def fail(self, message: str) -> Rollout:
        """The new version cannot start, or made no progress within the deadline: traffic stays where it was."""
        if self.failed:
            raise RolloutRefused(f"The rollout of version {self.to_version} has already failed.")
        return replace(self, state=RolloutState.FAILED, message=message)

    # --- the progress clock, read as Kubernetes reads a Deployment's progressDeadlineSeconds ---

    def clock_moved(self, *, ready_new: int, asked_new: int, now: datetime) -> Rollout:
        """The clock restarted if the new version progressed (one more ready instance), or lost a ready instance
        from a set that met the plan's asks (the time to get it back counts from now)."""
        if ready_new == self.ready_seen:
            return self
        restarted = ready_new > self.ready_seen or self.ready_seen >= asked_new
        return replace(self, ready_seen=ready_new, progress_at=now if restarted else self.progress_at)

    def progress_since(self) -> datetime:
        """When the clock last restarted; records written before the clock existed count from their start."""
        return self.progress_at or self.started_at

    def timed_out(self, *, ready_new: int, asked_new: int, now: datetime, deadline: timedelta) -> bool:
        """No progress for longer than `deadline` while the plan's asks are unmet. Only a progressing rollout
        has a deadline: paused, awaiting a switch or switched, it rests until the user acts."""
        if self.state is not RolloutState.PROGRESSING or ready_new >= asked_new:
            return False
        return now - self.progress_since() > deadline


def refusal(action: str, service: str) -> RolloutRefused:
    """Why `action` is refused: no rollout of a strategy in a state that allows it (none at all included)."""
    wanted = " or ".join(ACTIONS[action][0])
    return RolloutRefused(f"Service {service} has no {wanted} rollout in a state that allows this.")


def rollout_of(data: dict | None) -> Rollout | None:
    """The typed record of a stored `Service.rollout` (None: no rollout)."""
    return Rollout.from_json(data) if data else None


DEADLINE_FIELD = "progress_deadline_seconds"


def progress_deadline(rolling_strategy: dict | None, default_seconds: int) -> timedelta:
    """metadata.rolling_strategy.progress_deadline_seconds, or the cluster-wide default."""
    seconds = (rolling_strategy or {}).get(DEADLINE_FIELD) or default_seconds
    return timedelta(seconds=int(seconds))


def service_progress_deadline(spec: dict, default_seconds: int, llm_default_seconds: int) -> timedelta:
    """How long a service may take to progress: its file's metadata.rolling_strategy.progress_deadline_seconds,
    else the installation's default, which for an LLM engine is `llm_default_seconds` (never less): a first
    start installs the engine and compiles for minutes, and a Kubernetes engine may load a large model for
    tens of minutes, which is progress, not a stall."""
    llm = spec.get("processor") in LLM_PROCESSORS
    fallback = max(default_seconds, llm_default_seconds) if llm else default_seconds
    return progress_deadline((spec.get("metadata") or {}).get("rolling_strategy"), fallback)
