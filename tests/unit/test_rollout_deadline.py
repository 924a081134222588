"""The progress deadline: a rollout fails when the instances its plan asks for are not ready in time, never
because it lasts long (deployer/progress.py). Each test threads the rollout record through successive plans as
the reconciler does (it writes `plan.rollout` back after every step)."""

from datetime import UTC, datetime, timedelta

from deployer.progress import status_timed_out
from services.rollouts import progress_deadline
from deployer.rollout import rollout_plan
from services.rollouts import Rollout

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE = timedelta(seconds=600)


def record(strategy: str, **changes) -> dict:
    return {"strategy": strategy, "from_version": 1, "to_version": 2, "state": "Progressing", "canary_weight": 20,
            "started_at": T0.isoformat(), "retain_until": None, "message": "", "progress_at": T0.isoformat(),
            "ready_seen": 0} | changes


class Reconciler:
    """Feeds the plan what is ready at each moment and keeps the record it returns, stored as JSON between
    steps, as reconcile.py does."""

    def __init__(self, rollout: dict, *, total: int, deadline: timedelta = DEADLINE):
        self.rollout, self.total, self.deadline = rollout, total, deadline
        self.weights = {1: 100, 2: 0}

    def at(self, seconds: float, ready: dict[int, int]):
        plan = rollout_plan(Rollout.from_json(self.rollout), total=self.total, ready=ready, weights=self.weights,
                            now=T0 + timedelta(seconds=seconds), deadline=self.deadline, service="demo")
        self.rollout, self.weights = plan.rollout.to_json() if plan.rollout else None, plan.weights
        return plan

    @property
    def state(self) -> str | None:
        return self.rollout["state"] if self.rollout else None


def test_a_canary_with_its_share_ready_is_never_aborted_however_long_it_is_held():
    canary = Reconciler(record("canary", canary_weight=20), total=5)  # 20 % of 5: one instance
    assert canary.at(5, {1: 5}).replicas == {2: 1, 1: 5}
    canary.at(40, {1: 5, 2: 1})
    for hours in (1, 6, 24, 72):
        plan = canary.at(hours * 3600, {1: 5, 2: 1})
        assert canary.state == "Progressing", hours
        assert plan.weights == {1: 80, 2: 20} and plan.replicas == {2: 1, 1: 5}


def test_a_canary_whose_share_is_not_ready_by_the_deadline_fails():
    canary = Reconciler(record("canary", canary_weight=20), total=10)  # asks for 2
    canary.at(60, {1: 10, 2: 1})  # progress: the clock restarts at 60 s
    assert canary.at(60 + 599, {1: 10, 2: 1}).rollout.state == "Progressing"
    failed = canary.at(60 + 601, {1: 10, 2: 1})
    assert failed.rollout.state == "Failed" and failed.weights == {1: 100, 2: 0} and failed.replicas == {1: 10}
    assert "1 of the 2 instance(s)" in failed.rollout.message
    assert failed.events[0][0] == "RolloutFailed"


def test_a_canary_that_never_gets_an_instance_ready_fails_at_the_deadline():
    canary = Reconciler(record("canary"), total=2)
    assert canary.at(599, {1: 2}).rollout.state == "Progressing"
    assert canary.at(601, {1: 2}).rollout.state == "Failed"


def test_a_rollout_paused_past_the_deadline_is_not_aborted_and_its_clock_restarts_at_resume():
    paused = Reconciler(record("rolling", state="Paused"), total=4)
    for seconds in (5, 601, 3 * 3600):
        assert paused.at(seconds, {1: 4}).rollout.state == "Paused"
    # rollout_resume writes the state and restarts the clock (services/writes/rollouts.py).
    resumed_at = 3 * 3600 + 10
    paused.rollout = {**paused.rollout, "state": "Progressing",
                      "progress_at": (T0 + timedelta(seconds=resumed_at)).isoformat()}
    assert paused.at(resumed_at + 5, {1: 4}).rollout.state == "Progressing"
    assert paused.at(resumed_at + 599, {1: 4}).rollout.state == "Progressing"
    assert paused.at(resumed_at + 601, {1: 4}).rollout.state == "Failed"


def test_a_rolling_update_that_lasts_hours_while_progressing_never_times_out():
    rolling = Reconciler(record("rolling"), total=40)
    for ready_new in range(40):  # one more new instance ready every 500 s (under the 600 s deadline): 5.5 h
        plan = rolling.at(500 * (ready_new + 1), {1: 40 - ready_new, 2: ready_new + 1})
    assert plan.rollout is None and plan.rolled_out == 2


def test_a_rolling_update_that_stops_progressing_fails_a_deadline_after_its_last_progress():
    rolling = Reconciler(record("rolling"), total=4)
    rolling.at(300, {1: 4, 2: 1})
    rolling.at(800, {1: 3, 2: 2})
    assert rolling.at(800 + 599, {1: 3, 2: 2}).rollout.state == "Progressing"
    assert rolling.at(800 + 601, {1: 3, 2: 2}).rollout.state == "Failed"


def test_a_canary_that_loses_its_ready_instance_gets_a_full_deadline_to_recover():
    canary = Reconciler(record("canary"), total=2)
    canary.at(30, {1: 2, 2: 1})
    canary.at(5 * 3600, {1: 2, 2: 0})  # the canary's instance crashed hours later: the clock starts now
    assert canary.at(5 * 3600 + 599, {1: 2, 2: 0}).rollout.state == "Progressing"
    assert canary.at(5 * 3600 + 601, {1: 2, 2: 0}).rollout.state == "Failed"


def test_a_green_awaiting_its_switch_rests_without_a_deadline():
    green = Reconciler(record("blue-green"), total=2)
    assert green.at(100, {1: 2, 2: 2}).rollout.state == "AwaitingSwitch"
    assert green.at(10 * 3600, {1: 2, 2: 2}).rollout.state == "AwaitingSwitch"


def test_a_per_service_deadline_overrides_the_setting():
    assert progress_deadline({"max_surge": 1, "progress_deadline_seconds": 7200}, 600) == timedelta(hours=2)
    assert progress_deadline({"max_surge": 1}, 600) == progress_deadline(None, 600) == timedelta(seconds=600)
    slow = Reconciler(record("canary"), total=2, deadline=progress_deadline({"progress_deadline_seconds": 7200}, 600))
    assert slow.at(3600, {1: 2}).rollout.state == "Progressing"  # past the setting's 600 s
    assert slow.at(7201, {1: 2}).rollout.state == "Failed"


def test_a_record_from_before_the_clock_existed_counts_from_its_start():
    old = {key: value for key, value in record("canary").items() if key not in ("progress_at", "ready_seen")}
    assert Reconciler(old, total=2).at(601, {1: 2}).rollout.state == "Failed"


def test_the_status_deadline_leaves_rollouts_to_their_own_clock():
    long_ago = T0 - timedelta(hours=5)
    for rollout in (record("rolling"), record("rolling", state="Paused"), record("canary")):
        assert not status_timed_out(rollout=Rollout.from_json(rollout), progressing_since=long_ago, now=T0,
                                    deadline=DEADLINE)
    failed = record("rolling", state="Failed")
    assert status_timed_out(rollout=Rollout.from_json(failed), progressing_since=long_ago, now=T0, deadline=DEADLINE)
    assert status_timed_out(rollout=None, progressing_since=long_ago, now=T0, deadline=DEADLINE)
    assert not status_timed_out(rollout=None, progressing_since=T0 - timedelta(seconds=599), now=T0,
                                deadline=DEADLINE)
    assert not status_timed_out(rollout=None, progressing_since=None, now=T0, deadline=DEADLINE)


def test_an_llm_service_without_a_deadline_of_its_own_gets_the_llm_default():
    from datetime import timedelta

    from services.rollouts import service_progress_deadline

    vllm = {"processor": "vllm", "metadata": {}}
    assert service_progress_deadline(vllm, 600, 3600) == timedelta(seconds=3600)
    assert service_progress_deadline({"processor": "sklearn"}, 600, 3600) == timedelta(seconds=600)
    # never shorter than the installation's default, and the file's own deadline wins
    assert service_progress_deadline(vllm, 7200, 3600) == timedelta(seconds=7200)
    own = {"processor": "sglang", "metadata": {"rolling_strategy": {"progress_deadline_seconds": 120}}}
    assert service_progress_deadline(own, 600, 3600) == timedelta(seconds=120)
