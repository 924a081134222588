from deployer.desired import DesiredSlot, ObservedSlot, VersionState, desired_slots, replicas_by_version

V1 = VersionState(1, 0, {})
V2 = VersionState(2, 100, {})


def test_it_gives_a_version_with_all_traffic_all_instances():
    slots = desired_slots(service_name="demo_iris", running=True, total=2, versions=[V1, V2], observed=[])
    assert slots == [DesiredSlot("demo-iris-v2-0", 2), DesiredSlot("demo-iris-v2-1", 2)]


def test_it_wants_nothing_when_stopped_or_scaled_to_zero():
    assert desired_slots(service_name="s", running=False, total=3, versions=[V2], observed=[]) == []
    assert desired_slots(service_name="s", running=True, total=0, versions=[V2], observed=[]) == []


def test_it_splits_instances_by_weight_with_at_least_one_each():
    assert replicas_by_version([VersionState(1, 80, {}), VersionState(2, 20, {})], 4) == {1: 4, 2: 1}
    assert replicas_by_version([VersionState(1, 50, {}), VersionState(2, 50, {})], 1) == {1: 1, 2: 1}


def test_it_keeps_old_ready_instances_until_new_ones_are_ready():
    old = [ObservedSlot("s-v1-0", 1, True, True), ObservedSlot("s-v1-1", 1, True, True)]
    none_ready = desired_slots(service_name="s", running=True, total=2, versions=[V1, V2], observed=old)
    assert {slot.name for slot in none_ready} == {"s-v2-0", "s-v2-1", "s-v1-0", "s-v1-1"}

    one_ready = old + [ObservedSlot("s-v2-0", 2, True, True), ObservedSlot("s-v2-1", 2, False, True)]
    slots = desired_slots(service_name="s", running=True, total=2, versions=[V1, V2], observed=one_ready)
    assert {slot.name for slot in slots} == {"s-v2-0", "s-v2-1", "s-v1-0"}

    all_ready = one_ready[:2] + [ObservedSlot("s-v2-0", 2, True, True), ObservedSlot("s-v2-1", 2, True, True)]
    slots = desired_slots(service_name="s", running=True, total=2, versions=[V1, V2], observed=all_ready)
    assert {slot.name for slot in slots} == {"s-v2-0", "s-v2-1"}


def test_it_does_not_keep_old_instances_that_never_became_ready():
    observed = [ObservedSlot("s-v1-0", 1, False, True)]
    slots = desired_slots(service_name="s", running=True, total=1, versions=[V1, V2], observed=observed)
    assert slots == [DesiredSlot("s-v2-0", 2)]
