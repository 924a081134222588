"""gateway/llm_choice.py: which LLM instance takes a request (engine load, prefix affinity within a load bound),
and the prompt-prefix key of an OpenAI body. Pure decisions, no processes."""

import json
from collections import Counter
from dataclasses import dataclass

from contracts.engine_load import EngineLoad
from gateway import llm_choice
from gateway.llm_choice import KV_CACHE_LIMIT, QUEUE_SLACK, choose, prefix_key


@dataclass
class Engine:
    name: str
    outstanding: int = 0
    scraped_outstanding: int = 0
    load: EngineLoad | None = None


def engines(count: int, **loads) -> list[Engine]:
    return [Engine(f"chat-v1-{n}", load=EngineLoad(**loads)) for n in range(count)]


def chat(system: str, user: str, **extra) -> bytes:
    return json.dumps({"model": "chat", "messages": [{"role": "system", "content": system},
                                                     {"role": "user", "content": user}], **extra}).encode()


def test_requests_sharing_a_system_prompt_share_a_key_whatever_the_user_asks():
    system = "You are a terse assistant for a shipping company. " * 3
    assert prefix_key(chat(system, "where is my parcel?")) == prefix_key(chat(system, "cancel order 7", stream=True))
    assert prefix_key(chat(system, "hi")) != prefix_key(chat("You are a poet.", "hi"))
    # Without a system prompt, the messages' text; a completion's prompt; only its first PREFIX_CHARS count.
    head = "x" * llm_choice.PREFIX_CHARS
    no_system = {"messages": [{"role": "user", "content": [{"type": "text", "text": head + "a"}]}]}
    assert prefix_key(json.dumps(no_system).encode()) == prefix_key(json.dumps({"prompt": head + "b"}).encode())
    assert prefix_key(json.dumps({"prompt": ["same start", "other"]}).encode()) == \
        prefix_key(json.dumps({"prompt": "same start"}).encode())


def test_a_body_without_a_prompt_has_the_empty_key():
    for body in (b"", b"not json", b"[1, 2]", b'{"model": "chat"}', b'{"messages": "nope"}', None):
        assert prefix_key(body) == b""


def test_the_least_loaded_goes_by_queue_then_kv_cache_then_outstanding():
    idle, queued = Engine("a", load=EngineLoad(waiting=0)), Engine("b", load=EngineLoad(waiting=4))
    assert choose([queued, idle], b"") is idle
    full = Engine("a", load=EngineLoad(kv_cache=0.7))
    empty = Engine("b", load=EngineLoad(kv_cache=0.2), outstanding=3, scraped_outstanding=3)
    assert choose([full, empty], b"") is empty
    busy, free = Engine("a", outstanding=5), Engine("b", outstanding=1)
    assert choose([busy, free], b"") is free
    # Requests sent since the last scrape count as queued: the scrape is up to a period old.
    stale = Engine("a", outstanding=6, scraped_outstanding=1, load=EngineLoad(waiting=0))
    assert choose([stale, Engine("b", load=EngineLoad(waiting=3))], b"").name == "b"


def test_idle_instances_take_turns():
    pool = engines(3)
    assert {choose(pool, b"", start).name for start in range(3)} == {"chat-v1-0", "chat-v1-1", "chat-v1-2"}


def busy_pool(count: int = 4, in_flight: int = 2) -> list[Engine]:
    """Engines each running `in_flight` requests, as the last scrape saw them."""
    pool = engines(count)
    for engine in pool:
        engine.outstanding = engine.scraped_outstanding = in_flight
    return pool


def test_a_prefix_stays_on_its_instance_while_its_load_is_within_the_bound():
    pool = busy_pool()
    key = prefix_key(chat("You are a helpful assistant.", "hi"))
    home = choose(pool, key)
    assert all(choose(pool, key, start) is home for start in range(8))
    # Busier than the others, but within the bound: it keeps the prefix (its cache has it).
    home.load = EngineLoad(waiting=QUEUE_SLACK, kv_cache=KV_CACHE_LIMIT - 0.05)
    home.outstanding = home.scraped_outstanding = 3
    assert choose(pool, key) is home


def test_affinity_breaks_when_the_preferred_instance_is_over_the_bound():
    pool = busy_pool()
    key = prefix_key(chat("You are a helpful assistant.", "hi"))
    home = choose(pool, key)
    home.load = EngineLoad(waiting=QUEUE_SLACK + 1)
    assert choose(pool, key) is not home
    home.load = EngineLoad(kv_cache=KV_CACHE_LIMIT)
    assert choose(pool, key) is not home
    # Requests sent to it since the last scrape count as queued.
    home.load, home.outstanding, home.scraped_outstanding = EngineLoad(), 3, 0
    assert choose(pool, key) is not home
    home.scraped_outstanding = 3  # a scrape saw them running, none waiting: back home
    assert choose(pool, key) is home


def test_affinity_breaks_when_the_preferred_instance_holds_too_many_requests_in_flight():
    # An engine that never queues (a CPU engine batches everything): requests in flight bound the affinity, to
    # LOAD_FACTOR x the mean, or the least loaded one's + QUEUE_SLACK when that is more (a light load).
    def pool_with(home_count: int, others: list[int]):
        pool = engines(len(others) + 1)
        key = prefix_key(chat("You are a helpful assistant.", "hi"))
        home = choose(pool, key)
        counts = iter(others)
        for engine in pool:
            engine.outstanding = engine.scraped_outstanding = home_count if engine is home else next(counts)
        return pool, key, home

    pool, key, home = pool_with(3, [2])  # 4 of 6 after this one: the other's 2 + 2
    assert choose(pool, key) is home
    pool, key, home = pool_with(4, [2])  # 5 of 7: over both
    assert choose(pool, key) is not home
    pool, key, home = pool_with(20, [16, 16, 16])  # 21 of 69: under 1.25 x 17.25
    assert choose(pool, key) is home
    pool, key, home = pool_with(21, [16, 16, 16])  # 22 of 70: over 1.25 x 17.5
    assert choose(pool, key) is not home


def test_distinct_prefixes_spread_over_the_instances():
    pool = engines(4)
    homes = Counter(choose(pool, prefix_key(chat(f"system prompt number {n}", "hi"))).name for n in range(400))
    assert set(homes) == {e.name for e in pool}
    assert min(homes.values()) > 60, homes  # 100 each on average


def test_removing_an_instance_moves_only_its_prefixes():
    pool = engines(5)
    keys = [prefix_key(chat(f"system prompt number {n}", "hi")) for n in range(300)]
    before = {key: choose(pool, key).name for key in keys}
    gone = pool[2].name
    after = {key: choose([e for e in pool if e.name != gone], key).name for key in keys}
    moved = {key for key in keys if before[key] != after[key]}
    assert moved == {key for key in keys if before[key] == gone} and moved
    # And adding it back brings exactly those back.
    assert {key: choose(pool, key).name for key in keys} == before


def test_without_a_load_scraped_yet_outstanding_requests_decide():
    pool = [Engine("a", outstanding=2), Engine("b")]
    assert choose(pool, b"").name == "b"
