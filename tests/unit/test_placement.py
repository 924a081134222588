"""The model mesh's placement (deployer/mesh/placement.py): exact actions for small pools, and properties (one
plan never over-fills an instance; planning again after applying a plan does nothing) over seeded random pools."""

import random

import pytest

from deployer.mesh.placement import (MB, Action, ModelDemand, PlacementSettings, PoolInstance, free_bytes,
                                     plan_placement, wanted_copies)

NOW = 100_000.0


def instance(name, budget_mb=100, loaded=None, ready=True, outstanding=0.0):
    return PoolInstance(name, ready, budget_mb * MB, {key: mb * MB for key, mb in (loaded or {}).items()},
                        outstanding)


def model(key, size_mb=10, rate=0.0, used_ago=0.0, waiting=False):
    return ModelDemand(key, int(size_mb * MB), rate, NOW - used_ago if used_ago is not None else 0, waiting)


def plan(instances, models, **settings):
    return plan_placement(instances, models, PlacementSettings(**settings), NOW)


def load(key, name, reason):
    return Action("load", key, name, reason)


def unload(key, name, reason):
    return Action("unload", key, name, reason)


def test_first_request_loads_on_the_emptiest_instance():
    pool = [instance("a", loaded={"x": 30}), instance("b", loaded={"y": 10}), instance("c", budget_mb=50)]
    models = [model("x", 30, rate=1), model("y", 10, rate=1), model("new", waiting=True)]
    assert plan(pool, models) == [load("new", "b", "a request is waiting for it")]


def test_equal_free_memory_goes_to_the_instance_with_fewer_requests_then_by_name():
    models = [model("new", waiting=True)]
    assert plan([instance("a", outstanding=3), instance("b", outstanding=1)], models) == [
        load("new", "b", "a request is waiting for it")]
    assert plan([instance("b"), instance("a")], models) == [load("new", "a", "a request is waiting for it")]


def test_a_model_nobody_asked_for_is_not_loaded_and_a_loaded_one_stays():
    pool = [instance("a", loaded={"quiet": 10}), instance("b")]
    assert plan(pool, [model("quiet", rate=0, used_ago=5000), model("never", rate=0, used_ago=None)]) == []


def test_hot_model_gets_more_copies_on_distinct_instances():
    pool = [instance("a", loaded={"hot": 10}), instance("b", outstanding=2), instance("c"), instance("d")]
    reason = "hot: 45.0 req/s wants 3 copies"
    assert plan(pool, [model("hot", rate=45)]) == [load("hot", "c", reason), load("hot", "d", reason)]


def test_max_copies_caps_new_copies_and_unloads_copies_over_it():
    pool = [instance("a", loaded={"hot": 10}), instance("b"), instance("c")]
    assert plan(pool, [model("hot", rate=45)], max_copies=2) == [
        load("hot", "b", "hot: 45.0 req/s wants 2 copies")]
    # The cap was lowered under a model in use: the copy on the fullest instance goes, used lately or not.
    pool = [instance("a", loaded={"hot": 10}), instance("b", loaded={"hot": 10, "x": 50}),
            instance("c", loaded={"hot": 10})]
    assert plan(pool, [model("hot", rate=45), model("x", 50, rate=1)], max_copies=2) == [
        unload("hot", "b", "3 copies loaded, max_copies is 2")]


def test_lru_eviction_when_memory_is_short_takes_only_colder_models():
    pool = [
        # "warmer" is the least recently used here, and not its last copy, but it is hotter than "new": it stays.
        instance("a", loaded={"warmer": 40, "older": 30, "old": 30}),
        instance("b", loaded={"busy": 100}),  # hotter than "new": nothing to evict here
        instance("c", budget_mb=40, loaded={"warmer": 40}),
    ]
    models = [model("warmer", 40, rate=12, used_ago=2000), model("older", 30, rate=0, used_ago=900),
              model("old", 30, rate=0, used_ago=500), model("busy", 100, rate=15), model("new", 30, rate=10)]
    assert plan(pool, models, idle_seconds=5000) == [
        unload("older", "a", "evicted for new (10.0 req/s wants 1 copy): the least recently used colder model"),
        load("new", "a", "10.0 req/s wants 1 copy"),
    ]


def test_eviction_goes_where_the_fewest_bytes_must_go():
    pool = [instance("a", loaded={"big": 60, "other": 40}), instance("b", loaded={"small": 20, "rest": 80})]
    models = [model("big", 60, used_ago=1000), model("other", 40, rate=15), model("small", 20, used_ago=1000),
              model("rest", 80, rate=15), model("new", 20, waiting=True)]
    evicted = "evicted for new (a request is waiting for it): the least recently used colder model"
    assert plan(pool, models) == [unload("small", "b", evicted), load("new", "b", "a request is waiting for it")]


def test_a_waiting_model_evicts_an_idle_models_last_copy_but_not_one_in_use():
    pool = [instance("a", loaded={"used": 80}, outstanding=0), instance("b", loaded={"idle": 80}, outstanding=5)]
    models = [model("used", 80, rate=2, used_ago=1), model("idle", 80, rate=0, used_ago=1000),
              model("new", 50, waiting=True)]
    assert plan(pool, models) == [
        unload("idle", "b", "evicted for new (a request is waiting for it): the least recently used colder model"),
        load("new", "b", "a request is waiting for it"),
    ]


def test_as_a_last_resort_a_waiting_model_takes_the_least_recently_used_last_copy_of_a_model_in_use():
    pool = [instance("a", loaded={"older": 60}), instance("b", loaded={"newer": 60})]
    models = [model("older", 60, rate=0.5, used_ago=30), model("newer", 60, rate=0.5, used_ago=2),
              model("new", 60, waiting=True)]
    assert plan(pool, models) == [
        unload("older", "a", "evicted for new (a request is waiting for it): the least recently used colder model"),
        load("new", "a", "a request is waiting for it"),
        # The one evicted is still in use: reported, loaded again when a request of its own waits.
        Action("unplaceable", "older", "", "no ready instance has 60.0 MB free, even after evicting colder models"),
    ]
    # Not for a model another request waits for, and not for a model that is not waiting (it gets the report).
    waiting_victims = [model("older", 60, waiting=True), model("newer", 60, waiting=True), models[2]]
    assert [a.kind for a in plan(pool, waiting_victims)] == ["unplaceable"]
    assert [a.kind for a in plan(pool, models[:2] + [model("new", 60, rate=5)])] == ["unplaceable"]


def test_unplaceable_when_too_big_names_the_sizes():
    pool = [instance("a", budget_mb=100), instance("b", budget_mb=200), instance("c", budget_mb=500, ready=False)]
    assert plan(pool, [model("big", 300, waiting=True)]) == [
        Action("unplaceable", "big", "", "needs 300 MB, more than the largest instance budget (200 MB)")]


def test_unplaceable_when_only_hotter_or_used_models_hold_the_memory():
    pool = [instance("a", loaded={"hot": 100}), instance("b", loaded={"used": 90})]
    models = [model("hot", 100, rate=20), model("used", 90, rate=1), model("new", 50.5, rate=5)]
    assert plan(pool, models) == [
        Action("unplaceable", "new", "", "no ready instance has 50.5 MB free, even after evicting colder models")]


def test_no_ready_instance_reports_the_models_asked_for():
    pool = [instance("a", loaded={"m": 10}, ready=False)]
    assert plan(pool, [model("m", rate=3), model("quiet"), model("w", waiting=True)]) == [
        Action("unplaceable", "w", "", "no pool instance is ready"),
        Action("unplaceable", "m", "", "no pool instance is ready"),
    ]


def test_a_deleted_model_is_unloaded_from_every_ready_instance():
    pool = [instance("a", loaded={"gone": 10, "kept": 10}), instance("b", loaded={"gone": 10}),
            instance("c", loaded={"gone": 10}, ready=False)]
    assert plan(pool, [model("kept", rate=1)]) == [
        unload("gone", "a", "no longer served"), unload("gone", "b", "no longer served")]


def test_a_not_ready_instances_models_are_placed_elsewhere():
    pool = [instance("a", loaded={"m": 10, "quiet": 10}, ready=False), instance("b", loaded={"m2": 10}), instance("c")]
    models = [model("m", rate=5), model("quiet", rate=0, used_ago=100), model("m2", rate=5)]
    assert plan(pool, models) == [load("m", "c", "5.0 req/s wants 1 copy")]


def test_idle_extra_copies_are_dropped_keeping_one_and_the_wanted_ones():
    pool = [instance("a", loaded={"cold": 10, "warm": 10, "cooled": 10}),
            instance("b", loaded={"cold": 10, "warm": 10, "cooled": 10, "x": 30}),
            instance("c", loaded={"cold": 10, "warm": 10, "cooled": 10})]
    models = [
        model("cold", rate=0, used_ago=400),     # idle: one copy stays
        model("warm", rate=0, used_ago=100),     # used lately: all stay
        model("cooled", rate=25, used_ago=400),  # wants 2 of its 3
        model("x", 30, rate=1),
    ]
    assert plan(pool, models) == [
        unload("cold", "b", "unused for 400 s: 3 copies loaded, 0 copies wanted"),
        unload("cold", "a", "unused for 400 s: 3 copies loaded, 0 copies wanted"),
        unload("cooled", "b", "unused for 400 s: 3 copies loaded, 2 copies wanted"),
    ]


def test_wanted_copies():
    settings = PlacementSettings(rate_per_copy=20)
    assert wanted_copies(model("m", rate=0), 4, settings) == 0
    assert wanted_copies(model("m", rate=0, waiting=True), 4, settings) == 1
    assert wanted_copies(model("m", rate=0.1), 4, settings) == 1
    assert wanted_copies(model("m", rate=40), 4, settings) == 2
    assert wanted_copies(model("m", rate=45), 4, settings) == 3
    assert wanted_copies(model("m", rate=500), 4, settings) == 4
    assert wanted_copies(model("m", rate=500), 4, PlacementSettings(max_copies=2)) == 2
    assert wanted_copies(model("m", rate=500), 0, settings) == 0


def test_free_bytes_counts_what_is_loaded():
    assert free_bytes(instance("a", 100, {"x": 30, "y": 20})) == 50 * MB


@pytest.mark.parametrize("build, field", [
    (lambda: PlacementSettings(rate_per_copy=0), "rate_per_copy"),
    (lambda: PlacementSettings(max_copies=-1), "max_copies"),
    (lambda: PlacementSettings(idle_seconds=-1), "idle_seconds"),
    (lambda: ModelDemand("m", -1, 0, 0), "size_bytes"),
    (lambda: ModelDemand("m", 1, -1, 0), "rate"),
    (lambda: PoolInstance("a", True, -1, {}), "budget_bytes"),
    (lambda: PoolInstance("a", True, 1, {"m": -1}), "loaded['m']"),
    (lambda: plan([instance("a"), instance("a")], []), "instances: a"),
    (lambda: plan([], [model("m"), model("m")]), "models: m"),
])
def test_bad_input_is_refused_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[")):
        build()


# Properties over seeded random pools: tight budgets, deleted models, not-ready instances, caps.

def random_pool(seed):
    rng = random.Random(seed)
    keys = [f"m{index}" for index in range(rng.randint(0, 16))]
    sizes = {key: rng.randint(1, 20) * MB for key in keys}
    models = [ModelDemand(key, sizes[key], rng.choice([0, 0, 0.5, 5, 19, 21, 45, 100]),
                          rng.choice([0, NOW - 1000, NOW - 100, NOW]), rng.random() < 0.2)
              for key in keys if rng.random() > 0.15]
    pool = []
    for index in range(rng.randint(0, 6)):
        budget, loaded = rng.randint(5, 40) * MB, {}
        for key in rng.sample(keys, len(keys)):
            if rng.random() < 0.6 and sum(loaded.values()) + sizes[key] <= budget:
                loaded[key] = sizes[key]
        pool.append(PoolInstance(f"p{index}", rng.random() < 0.85, budget, loaded, rng.choice([0, 1, 3])))
    return pool, models, PlacementSettings(max_copies=rng.choice([0, 0, 1, 2]))


def applied(pool, actions, models):
    """The pool after the actions, checking each against the budget as it is applied."""
    sizes = {demand.key: demand.size_bytes for demand in models}
    loaded = {member.name: dict(member.loaded) for member in pool}
    budgets = {member.name: member.budget_bytes for member in pool if member.ready}
    for action in actions:
        if action.kind == "load":
            assert action.model not in loaded[action.instance], action
            loaded[action.instance][action.model] = sizes[action.model]
            assert sum(loaded[action.instance].values()) <= budgets[action.instance], action
        elif action.kind == "unload":
            del loaded[action.instance][action.model]
    return [PoolInstance(member.name, member.ready, member.budget_bytes, loaded[member.name], member.outstanding)
            for member in pool]


SEEDS = range(400)


def test_one_plan_never_exceeds_a_budget_nor_touches_a_not_ready_instance():
    for seed in SEEDS:
        pool, models, settings = random_pool(seed)
        actions = plan_placement(pool, models, settings, NOW)
        ready = {member.name for member in pool if member.ready}
        assert all(action.instance in ready for action in actions if action.kind != "unplaceable"), f"seed {seed}"
        applied(pool, actions, models)


def test_planning_again_after_applying_a_plan_loads_and_unloads_nothing():
    for seed in SEEDS:
        pool, models, settings = random_pool(seed)
        first = plan_placement(pool, models, settings, NOW)
        assert plan_placement(pool, models, settings, NOW) == first, f"seed {seed}: not deterministic"
        again = plan_placement(applied(pool, first, models), models, settings, NOW)
        assert again == [action for action in first if action.kind == "unplaceable"], f"seed {seed}"


def test_the_random_pools_exercise_every_kind_of_action():
    """The properties above mean something only if the pools make the planner load, evict and give up."""
    kinds = set()
    for seed in SEEDS:
        pool, models, settings = random_pool(seed)
        for action in plan_placement(pool, models, settings, NOW):
            kinds.add((action.kind, action.reason.split(" ")[0]))
    assert {("load", "hot:"), ("load", "a"), ("unload", "evicted"), ("unload", "no"), ("unload", "unused"),
            ("unplaceable", "needs"), ("unplaceable", "no")} <= kinds
