from deployer.desired import DesiredSlot, ObservedSlot, desired_slots


def slots(replicas, observed=(), running=True):
    return desired_slots(service_name="demo_iris", running=running, replicas=replicas, observed=list(observed))


def test_it_names_one_slot_per_replica():
    assert slots({2: 2, 1: 0}) == [DesiredSlot("demo-iris-v2-0", 2), DesiredSlot("demo-iris-v2-1", 2)]


def test_it_wants_nothing_when_stopped_or_at_zero():
    assert slots({2: 3}, running=False) == []
    assert slots({2: 0}) == []


def test_it_keeps_old_ready_instances_until_new_ones_are_ready():
    old = [ObservedSlot("demo-iris-v1-0", 1, True, True), ObservedSlot("demo-iris-v1-1", 1, True, True)]
    assert {s.name for s in slots({2: 2}, old)} == {"demo-iris-v2-0", "demo-iris-v2-1", "demo-iris-v1-0",
                                                    "demo-iris-v1-1"}
    one_ready = old + [ObservedSlot("demo-iris-v2-0", 2, True, True), ObservedSlot("demo-iris-v2-1", 2, False, True)]
    assert {s.name for s in slots({2: 2}, one_ready)} == {"demo-iris-v2-0", "demo-iris-v2-1", "demo-iris-v1-0"}
    all_ready = old + [ObservedSlot("demo-iris-v2-0", 2, True, True), ObservedSlot("demo-iris-v2-1", 2, True, True)]
    assert {s.name for s in slots({2: 2}, all_ready)} == {"demo-iris-v2-0", "demo-iris-v2-1"}


def test_it_does_not_keep_old_instances_that_never_became_ready():
    assert slots({2: 1}, [ObservedSlot("demo-iris-v1-0", 1, False, True)]) == [DesiredSlot("demo-iris-v2-0", 2)]
