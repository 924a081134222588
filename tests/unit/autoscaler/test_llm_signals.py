"""Scaling an LLM service on its engines' waiting queue (`llm[waiting]`) and on requests in flight
(`concurrency`): the sample the loop makes of the engines' readings, and what the EAS scaler decides from it."""

from autoscaler import EasScalerSettings, eas_decide, eas_new_state, eas_observe, waiting_total
from contracts.engine_load import EngineLoad


def scaler(*strategies, **fields):
    section = {"min": 1, "max": 10, "scaleStrategies": [
        {"metricName": name, "threshold": threshold} for name, threshold in strategies]}
    section.update(fields)
    return EasScalerSettings.from_autoscaler(section)


def load(waiting: float, at: float, running: float = 1) -> EngineLoad:
    return EngineLoad(running=running, waiting=waiting, at=at)


# --- The sample ---------------------------------------------------------------------------------------------


def test_waiting_is_summed_over_the_ready_instances_fresh_readings():
    loads = {"chat-a": load(3, at=100), "chat-b": load(5, at=99), "chat-old": load(40, at=100)}
    reading = waiting_total(loads, ["chat-a", "chat-b"], now=101, ttl=30)
    assert reading.total == 8  # chat-old is not ready any more: its queue is not the service's
    assert reading.note == ""


def test_a_stale_reading_is_ignored_and_the_reason_says_so():
    loads = {"chat-a": load(3, at=100), "chat-b": load(50, at=40)}
    reading = waiting_total(loads, ["chat-a", "chat-b"], now=101, ttl=30)
    assert reading.total == 3
    assert "ignored stale engine readings (older than 30 s): chat-b's is 61 s old" in reading.note


def test_without_any_fresh_reading_the_metric_is_not_measured():
    reading = waiting_total({"chat-a": load(7, at=10)}, ["chat-a", "chat-b"], now=100, ttl=30)
    assert reading.total is None
    assert reading.note.startswith("llm[waiting]: not measured (")
    assert "chat-a's is 90 s old" in reading.note and "no engine reading yet for chat-b" in reading.note
    assert waiting_total({}, [], now=100, ttl=30).note == "llm[waiting]: not measured (no ready instance)"


# --- The decision -------------------------------------------------------------------------------------------


def test_it_scales_on_waiting_requests_per_instance():
    settings = scaler(("llm[waiting]", 4))
    state = eas_new_state(0)
    for second in range(1, 11):
        state = eas_observe(state, second, {"llm[waiting]": 24})  # 24 waiting over 2 instances: 12 each
    _, decision = eas_decide(settings, state, now=11, current_replicas=2)
    assert decision.desired == 6
    assert decision.metrics == (("llm[waiting]", 12.0),)
    assert "llm[waiting] 12.0 per instance is 300 % of threshold 4 on 2 instances: wants 6" in decision.reason


def test_a_second_without_a_reading_is_unknown_not_an_empty_queue():
    settings = scaler(("llm[waiting]", 4))
    state = eas_new_state(0)
    state = eas_observe(state, 5, {"llm[waiting]": 16})  # one reading in 30 s: the others were stale
    _, decision = eas_decide(settings, state, now=30, current_replicas=1)
    assert decision.desired == 4  # 16 per instance, not 16 / 30


def test_the_largest_of_waiting_and_in_flight_wins():
    settings = scaler(("llm[waiting]", 10), ("concurrency", 8))
    state = eas_new_state(0)
    for second in range(1, 31):
        state = eas_observe(state, second, {"llm[waiting]": 2, "concurrency": 48})
    _, decision = eas_decide(settings, state, now=31, current_replicas=2)
    assert dict(decision.recommendations) == {"llm[waiting]": 1, "concurrency": 6}
    assert decision.desired == 6


def test_an_open_stream_keeps_the_service_awake_though_no_request_completed():
    """A stream lasting minutes is counted as a request only when it ends; in flight it is activity."""
    settings = scaler(("concurrency", 8), min=0, behavior={"onZero": {"scaleDownGracePeriodSeconds": 60}})
    state = eas_new_state(0)
    for second in range(1, 200):
        state = eas_observe(state, second, {"qps": 0, "concurrency": 1})
    state, decision = eas_decide(settings, state, now=200, current_replicas=1)
    assert decision.desired == 1, decision.reason
    for second in range(200, 262):
        state = eas_observe(state, second, {"qps": 0, "concurrency": 0})
    _, decision = eas_decide(settings, state, now=262, current_replicas=1)
    assert decision.desired == 0 and "scaling to zero" in decision.reason


def test_an_llm_service_scales_to_zero_and_wakes_like_any_other():
    settings = scaler(("llm[waiting]", 4), min=0, behavior={"onZero": {"scaleDownGracePeriodSeconds": 60}})
    state = eas_new_state(0)
    state = eas_observe(state, 10, {"qps": 3, "llm[waiting]": 0})
    state, decision = eas_decide(settings, state, now=80, current_replicas=1)
    assert decision.desired == 0
    state = eas_observe(state, 81, {"qps": 1})  # a request held by the activator reached the metrics
    _, woken = eas_decide(settings, state, now=82, current_replicas=0)
    assert woken.desired == 1
