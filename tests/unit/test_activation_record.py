"""The activation record (services/activations.py): a wake-up from zero, its transitions and stored JSON."""

from datetime import UTC, datetime, timedelta

import pytest

from services.activations import (
    Activation,
    ActivationRefused,
    ActivationState,
    Verdict,
    activation_failure,
    activation_of,
)

WOKEN = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = timedelta(seconds=300)
STORED = {"since": "2026-01-01T00:00:00.250000+00:00", "generation": 4, "failed": False, "message": ""}


def test_a_stored_record_reads_back_to_the_same_json():
    activation = Activation.from_json(STORED)
    assert activation.state is ActivationState.WAKING and activation.generation == 4
    assert activation.to_json() == STORED
    failed = {**STORED, "failed": True, "message": "no instance became ready"}
    assert Activation.from_json(failed).state is ActivationState.FAILED
    assert Activation.from_json(failed).to_json() == failed
    assert activation_of(None) is None


def test_begin_then_fail():
    woken = Activation.begin(generation=4, now=WOKEN)
    assert woken.to_json() == {"since": WOKEN.isoformat(), "generation": 4, "failed": False, "message": ""}
    failed = woken.fail("none ready")
    assert failed.state is ActivationState.FAILED and failed.message == "none ready"
    with pytest.raises(ActivationRefused):
        failed.fail("again")


def test_a_failure_counts_only_for_the_generation_that_woke():
    failed = Activation.begin(generation=4, now=WOKEN).fail("none ready")
    assert failed.failed_for(4) and not failed.failed_for(5)
    assert not Activation.begin(generation=4, now=WOKEN).failed_for(4)
    assert activation_failure(failed.to_json(), 4) == "none ready"
    assert activation_failure(failed.to_json(), 5) == "" and activation_failure(None, 4) == ""


def test_the_verdicts():
    woken = Activation.begin(generation=4, now=WOKEN)

    def verdict(activation, generation=4, ready=False, after=10):
        return activation.verdict(generation=generation, ready=ready, now=WOKEN + timedelta(seconds=after),
                                  deadline=DEADLINE)

    assert verdict(woken) is Verdict.WAITING
    assert verdict(woken, ready=True) is Verdict.CLEAR
    assert verdict(woken, generation=5) is Verdict.CLEAR
    assert verdict(woken, after=301) is Verdict.EXPIRED
    assert verdict(woken.fail("x"), after=301) is Verdict.FAILED
    assert verdict(woken.fail("x"), generation=5) is Verdict.CLEAR
