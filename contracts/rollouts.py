"""The rollout vocabulary shared by the control plane and the CLI: states, strategies, and what "canary" and
"promote" do given the rollout the API describes. No Django: the CLI imports it. The record itself, its
transitions and clock, are services/rollouts.py's."""

from enum import StrEnum


class RolloutState(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    AWAITING_SWITCH = "AwaitingSwitch"  # blue-green: green is ready at 0 % and waits for the user's switch
    SWITCHED = "Switched"  # blue-green: green serves, blue stays warm until finish or retention
    FAILED = "Failed"  # traffic stays on the version before; the record stays until the user acts


class Strategy(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blue-green"


IN_PROGRESS = (RolloutState.PROGRESSING, RolloutState.PAUSED, RolloutState.AWAITING_SWITCH, RolloutState.SWITCHED)
# States in which a rollout waits for the user: nothing moves until they act (and no deadline runs).
RESTING = (RolloutState.AWAITING_SWITCH, RolloutState.SWITCHED, RolloutState.PAUSED)
DEFAULT_CANARY_WEIGHT = 10


# --- What a client can do now: the console and the CLI decide with these, so they agree. ---

class CanaryAction(StrEnum):
    SET_CANARY_WEIGHT = "set_canary_weight"  # a canary rollout is in progress: move its share
    # Another rollout (rolling, blue-green) is in progress: refused (409 RolloutInProgress, `canary_refusal`),
    # nothing changes; pause, promote, roll back or finish it first. Decided once, by the write
    # `services.writes.canary_set`, which the API (PUT .../canary), the console and the CLI all reach.
    OTHER_ROLLOUT = "other_rollout"
    SET_WEIGHTS = "set_weights"  # no rollout: the newest version gets the share by hand-set weights


def canary_action(state: str | None, strategy: str | None) -> CanaryAction:
    """What "send PERCENT to the newest version" does, given the rollout's state and strategy (None: none)."""
    if state not in IN_PROGRESS:
        return CanaryAction.SET_WEIGHTS
    return CanaryAction.SET_CANARY_WEIGHT if strategy == Strategy.CANARY else CanaryAction.OTHER_ROLLOUT


def canary_refusal(service: str, state: str, strategy: str) -> str:
    return f"{service} has a {strategy} rollout in progress ({state}): use promote, rollback, switch or finish."


def promote_action(state: str | None) -> str:
    """What "promote" does: "promote" the rollout in progress, else "set_weights" (the newest version 100 %)."""
    return "promote" if state in IN_PROGRESS else "set_weights"
