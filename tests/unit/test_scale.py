from deployer.scale import activation_count, effective_instance_count


def test_it_uses_the_fixed_count_without_an_autoscaler_raised_to_a_cron_floor():
    assert effective_instance_count(instance_count=3, autoscaler=None, autoscaled=None) == 3
    assert effective_instance_count(instance_count=3, autoscaler=None, autoscaled=5) == 5
    assert effective_instance_count(instance_count=3, autoscaler=None, autoscaled=1) == 3


def test_it_starts_an_autoscaled_service_at_its_fixed_count_within_the_range():
    assert effective_instance_count(instance_count=1, autoscaler={"min": 2, "max": 5}, autoscaled=None) == 2
    assert effective_instance_count(instance_count=9, autoscaler={"min": 2, "max": 5}, autoscaled=None) == 5


def test_it_follows_the_autoscalers_decision_within_min_and_max():
    scaler = {"min": 0, "max": 4}
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=0) == 0
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=3) == 3
    assert effective_instance_count(instance_count=1, autoscaler=scaler, autoscaled=10) == 4


def test_it_wakes_with_the_activation_replicas_or_one():
    assert activation_count({"min": 0, "max": 3}) == 1
    assert activation_count({"behavior": {"onZero": {"scaleUpActivationReplicas": 2}}}) == 2
