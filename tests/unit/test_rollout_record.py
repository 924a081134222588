"""The rollout record (services/rollouts.py): every transition, legal and refused, and its stored JSON form."""

from datetime import UTC, datetime, timedelta

import pytest

from services.rollouts import (
    ACTIONS,
    CanaryAction,
    InvalidRollout,
    Rollout,
    RolloutRefused,
    RolloutState,
    Strategy,
    canary_action,
    promote_action,
    rollout_of,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
STORED = {"strategy": "canary", "from_version": 1, "to_version": 2, "state": "Progressing", "canary_weight": 20,
          "started_at": "2026-01-01T00:00:00.123456+00:00", "retain_until": None, "message": "",
          "progress_at": "2026-01-01T00:03:00+00:00", "ready_seen": 1}


def record(strategy="rolling", state=RolloutState.PROGRESSING, **changes) -> Rollout:
    return Rollout(strategy=Strategy(strategy), from_version=1, to_version=2, state=RolloutState(state),
                   started_at=T0, canary_weight=20 if strategy == "canary" else 0, progress_at=T0, **changes)


def every(strategy: str) -> list[Rollout]:
    return [record(strategy, state) for state in RolloutState]


# --- stored form ---

def test_a_stored_record_reads_back_to_the_same_json():
    rollout = Rollout.from_json(STORED)
    assert rollout.strategy is Strategy.CANARY and rollout.state is RolloutState.PROGRESSING
    assert rollout.started_at == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC) and rollout.ready_seen == 1
    assert rollout.to_json() == STORED
    switched = {**STORED, "strategy": "blue-green", "state": "Switched", "canary_weight": 0,
                "retain_until": "2026-01-01T01:00:00+00:00", "message": "version 2 is ready; switch when you are"}
    assert Rollout.from_json(switched).to_json() == switched


def test_every_state_and_strategy_round_trips():
    for strategy in Strategy:
        for rollout in every(strategy):
            assert Rollout.from_json(rollout.to_json()) == rollout


def test_a_record_from_before_the_progress_clock_counts_from_its_start():
    old = {key: value for key, value in STORED.items() if key not in ("progress_at", "ready_seen")}
    rollout = Rollout.from_json(old)
    assert rollout.progress_at is None and rollout.ready_seen == 0 and rollout.progress_since() == rollout.started_at


def test_no_stored_record_is_no_rollout():
    assert rollout_of(None) is None and rollout_of(STORED) == Rollout.from_json(STORED)


def test_an_unknown_state_in_a_stored_record_is_refused():
    with pytest.raises(ValueError):
        Rollout.from_json({**STORED, "state": "Sleeping"})


# --- start ---

def test_start_records_a_progressing_rollout_with_its_clock():
    started = Rollout.start("canary", 1, 2, now=T0, canary_weight=None)
    assert (started.state, started.canary_weight, started.started_at, started.progress_at, started.ready_seen) == (
        RolloutState.PROGRESSING, 10, T0, T0, 0)
    assert Rollout.start("rolling", None, 1, now=T0, canary_weight=50).canary_weight == 0


def test_start_refuses_an_unknown_strategy_and_a_canary_weight_out_of_range_by_field():
    with pytest.raises(InvalidRollout) as unknown:
        Rollout.start("big-bang", 1, 2, now=T0)
    assert unknown.value.field == "rollout.strategy" and "rolling, canary, blue-green" in unknown.value.message
    with pytest.raises(InvalidRollout) as heavy:
        Rollout.start("canary", 1, 2, now=T0, canary_weight=101)
    assert heavy.value.field == "rollout.canary_weight"


# --- the user's transitions: each allowed exactly where ACTIONS says, refused everywhere else ---

def moves(rollout: Rollout) -> dict:
    return {
        "set_canary_weight": lambda: rollout.set_canary_weight(40, now=LATER, service="demo"),
        "promote": lambda: rollout.promote(now=LATER, service="demo"),
        "pause": lambda: rollout.pause(service="demo"),
        "resume": lambda: rollout.resume(now=LATER, service="demo"),
        "switch": lambda: rollout.switch(retain_until=LATER, service="demo"),
        "finish": lambda: rollout.finish(service="demo"),
        "rollback": lambda: rollout.rollback_target(service="demo"),
    }


def test_each_action_is_refused_outside_its_strategies_and_states():
    refused = allowed = 0
    for strategy in Strategy:
        for rollout in every(strategy):
            for action, move in moves(rollout).items():
                strategies, states = ACTIONS[action]
                if rollout.strategy in strategies and rollout.state in states:
                    move()
                    allowed += 1
                    continue
                with pytest.raises(RolloutRefused) as refusal:
                    move()
                assert refusal.value.code == "NoRolloutInProgress"
                assert refusal.value.message.startswith("Service demo has no ")
                refused += 1
    assert allowed and refused  # both sides were exercised


def test_canary_weight_moves_the_share_and_restarts_the_clock():
    moved = record("canary").set_canary_weight(40, now=LATER)
    assert (moved.canary_weight, moved.progress_at, moved.state) == (40, LATER, RolloutState.PROGRESSING)
    assert record("canary", RolloutState.PAUSED).set_canary_weight(0, now=LATER).canary_weight == 0
    with pytest.raises(InvalidRollout):
        record("canary").set_canary_weight(-1, now=LATER)
    with pytest.raises(RolloutRefused, match="no canary rollout"):
        record("rolling").set_canary_weight(40, now=LATER)


def test_promote_turns_any_rollout_in_progress_into_a_progressing_rolling_one():
    for strategy in Strategy:
        for state in (RolloutState.PROGRESSING, RolloutState.PAUSED):
            promoted = record(strategy, state).promote(now=LATER)
            assert (promoted.strategy, promoted.state, promoted.message, promoted.progress_at) == (
                Strategy.ROLLING, RolloutState.PROGRESSING, "promoted", LATER)
    with pytest.raises(RolloutRefused):
        record("canary", RolloutState.FAILED).promote(now=LATER)


def test_pause_and_resume():
    paused = record("rolling").pause()
    assert paused.state is RolloutState.PAUSED and paused.progress_at == T0
    resumed = paused.resume(now=LATER)
    assert resumed.state is RolloutState.PROGRESSING and resumed.progress_at == LATER
    with pytest.raises(RolloutRefused):
        paused.pause()
    with pytest.raises(RolloutRefused, match="no rolling or canary rollout"):
        record("blue-green").pause()


def test_switch_then_finish():
    green = record("blue-green", RolloutState.AWAITING_SWITCH)
    switched = green.switch(retain_until=LATER)
    assert switched.state is RolloutState.SWITCHED and switched.retain_until == LATER
    assert switched.finish() is None
    with pytest.raises(RolloutRefused):
        green.finish()
    with pytest.raises(RolloutRefused):
        record("blue-green").switch(retain_until=LATER)  # green not ready yet


def test_rollback_goes_to_the_version_before_even_after_a_failure_and_refuses_without_one():
    assert record("canary", RolloutState.FAILED).rollback_target() == 1
    first = Rollout.start("rolling", None, 1, now=T0)
    with pytest.raises(RolloutRefused) as nothing:
        first.rollback_target(service="demo")
    assert nothing.value.code == "NothingToRollBackTo"


# --- the reconciler's transitions and questions ---

def test_green_ready_and_fail():
    awaiting = record("blue-green").green_ready()
    assert awaiting.state is RolloutState.AWAITING_SWITCH and "version 2 is ready" in awaiting.message
    with pytest.raises(RolloutRefused):
        record("rolling").green_ready()
    with pytest.raises(RolloutRefused):
        awaiting.green_ready()
    failed = record("rolling").fail("model missing")
    assert failed.failed and not failed.in_progress and failed.message == "model missing"
    with pytest.raises(RolloutRefused):
        failed.fail("again")


def test_only_a_progressing_rolling_or_blue_green_rollout_is_moving():
    assert record("rolling").moving and record("blue-green").moving
    assert not record("canary").moving and not record("rolling", RolloutState.PAUSED).moving
    assert not record("blue-green", RolloutState.AWAITING_SWITCH).moving


def test_the_progress_clock_restarts_on_progress_and_on_a_lost_instance_of_a_met_set():
    rollout = record("canary")
    assert rollout.clock_moved(ready_new=0, asked_new=1, now=LATER) is rollout  # nothing changed
    progressed = rollout.clock_moved(ready_new=1, asked_new=1, now=LATER)
    assert (progressed.ready_seen, progressed.progress_at) == (1, LATER)
    lost = progressed.clock_moved(ready_new=0, asked_new=1, now=LATER + timedelta(hours=1))
    assert lost.progress_at == LATER + timedelta(hours=1)
    deadline = timedelta(seconds=600)
    assert not rollout.timed_out(ready_new=0, asked_new=1, now=T0 + timedelta(seconds=599), deadline=deadline)
    assert rollout.timed_out(ready_new=0, asked_new=1, now=T0 + timedelta(seconds=601), deadline=deadline)
    assert not rollout.timed_out(ready_new=1, asked_new=1, now=T0 + timedelta(hours=9), deadline=deadline)
    assert not rollout.pause().timed_out(ready_new=0, asked_new=1, now=T0 + timedelta(hours=9), deadline=deadline)


# --- what the console and the CLI do, decided once ---

def test_canary_and_promote_decisions():
    assert canary_action("Progressing", "canary") is CanaryAction.SET_CANARY_WEIGHT
    assert canary_action("Paused", "canary") is CanaryAction.SET_CANARY_WEIGHT
    assert canary_action("AwaitingSwitch", "blue-green") is CanaryAction.OTHER_ROLLOUT
    assert canary_action("Progressing", "rolling") is CanaryAction.OTHER_ROLLOUT
    assert canary_action("Failed", "canary") is CanaryAction.SET_WEIGHTS
    assert canary_action(None, None) is CanaryAction.SET_WEIGHTS
    assert [promote_action(state) for state in ("Progressing", "Switched", "Failed", None)] == [
        "promote", "promote", "set_weights", "set_weights"]
