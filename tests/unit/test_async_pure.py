"""Asynchronous services' pure parts (docs/async.md): the route entry's `queue`, the queue operations' query
reading, the dispatcher's capacity and the results' tags. The operations themselves run against a real gateway
and the real QueueClient in tests/gateway/test_async_queue.py."""

import json

import pytest

from contracts.keys import queue_key
from contracts.routes import RouteEntry, RouteEntryError, RouteQueue
from gateway import dispatcher, queue_api, queues
from services.servicefile import ServiceFileError, validate_service_file
from services.servicefile.asynchronous import route_queue

BASE = {"service": "q", "cluster": "local", "token_digest": "ab" * 32, "token_sealed": "v1:x"}


def test_an_async_entry_reads_back_with_its_queue_and_others_have_none():
    entry = RouteEntry.from_dict({**BASE, "queue": {"max_length": 5, "max_payload_bytes": 10, "sink_max_length": 7}})
    assert entry.queue == RouteQueue(max_length=5, max_payload_bytes=10, sink_max_length=7)
    assert RouteEntry.from_json(entry.to_json()) == entry
    plain = RouteEntry.from_dict(BASE)
    assert plain.queue is None and "queue" not in json.loads(plain.to_json())  # old entries unchanged
    assert RouteEntry.from_dict({**BASE, "queue": {}}).queue == RouteQueue()  # defaults


@pytest.mark.parametrize("queue, named", [("big", "queue must be an object"),
                                          ({"max_length": "many"}, "max_length must be a whole number")])
def test_a_bad_queue_is_refused_naming_the_field(queue, named):
    with pytest.raises(RouteEntryError, match=named):
        RouteEntry.from_dict({**BASE, "queue": queue})


def test_the_input_and_the_sink_are_streams_of_their_own_per_cluster():
    assert queue_key("local", "q") != queue_key("local", "q", sink=True) != queue_key("other", "q", sink=True)


def test_query_parameters_split_into_operation_and_tags():
    params, tags = queue_api.split_query("?_index_=3&_length_=2&requestId=r1&user=u&batch=b")
    assert params == {"_index_": "3", "_length_": "2", "requestId": "r1"} and tags == {"user": "u", "batch": "b"}


@pytest.mark.parametrize("text, seconds", [("5s", 5.0), ("500ms", 0.5), ("2", 2.0), ("1m", 60.0)])
def test_timeouts_read_as_eas_writes_them(text, seconds):
    assert queue_api.duration(text, "_timeout_") == seconds


def test_a_bad_parameter_names_itself():
    with pytest.raises(ValueError, match="_timeout_"):
        queue_api.duration("soon", "_timeout_")
    with pytest.raises(ValueError, match="_indexes_"):
        queue_api.indexes({"_indexes_": "1,x"})


def test_a_frame_is_eas_dataframe_protobuf():
    # index = 1 (varint 300), tags = 2 (map entry key=1, value=2), data = 3 (bytes), as eas_prediction decodes
    assert queues.frame(300, {"k": "v"}, b"hi") == b"\x08\xac\x02" + b"\x12\x06\x0a\x01k\x12\x01v" + b"\x1a\x02hi"
    assert queues.frame_list([b"\x08\x01"]) == b"\x0a\x02\x08\x01"


class _Version:
    def __init__(self, weight, instances):
        self.weight, self.instances = weight, instances


class _Route:
    def __init__(self, concurrency, versions):
        self.concurrency, self.versions = concurrency, versions


def test_the_dispatcher_takes_as_many_as_the_instances_have_slots():
    assert dispatcher.capacity(_Route(2, [_Version(100, ["a", "b"]), _Version(0, ["c"])])) == 4
    assert dispatcher.capacity(_Route(0, [_Version(100, ["a"])])) == dispatcher.UNLIMITED_SLOTS
    assert dispatcher.capacity(_Route(2, [_Version(100, [])])) == 0  # at zero: takes none


def test_a_result_carries_its_request_id_index_tags_and_status():
    entry = queues.Entry(b"0-7", {b"data": b"x", b"tags": b'{"user": "u"}', b"rid": b"r7"})
    data, tags = dispatcher.sink_fields(entry, 200, b"answer")
    assert data == b"answer"
    assert tags == {"user": "u", "requestId": "r7", "source.index": "7", "lastCode": "200"}


# -- the service file ------------------------------------------------------------------------------------------
FILE = {"name": "aq", "processor": "sklearn", "model_path": "/models/iris", "metadata": {"instance": 1, "type": "Async"}}


def refusals(doc: dict) -> dict[str, str]:
    with pytest.raises(ServiceFileError) as raised:
        validate_service_file(doc)
    return {error.path: error.message for error in raised.value.errors}


def test_an_async_file_with_eas_queue_settings_is_accepted_and_reaches_the_route():
    doc = {**FILE, "queue": {"source": {"max_length": 50, "max_payload_size_kb": 64}, "sink": {"max_length": 70}}}
    validate_service_file(doc)
    assert route_queue(doc) == RouteQueue(max_length=50, max_payload_bytes=64 * 1024, sink_max_length=70)
    assert route_queue(FILE) == RouteQueue()  # EAS's defaults
    assert route_queue({**FILE, "metadata": {"instance": 1}}) is None  # synchronous


def test_queue_settings_ferry_does_not_do_are_refused_by_name():
    found = refusals({**FILE, "queue": {"cpu": 2, "max_delivery": 3, "source": {"max_length": 0},
                                        "sink": {"max_payload_size_kb": 10}, "colour": "red"}})
    assert "no instances of their own" in found["queue.cpu"]
    assert "without a limit" in found["queue.max_delivery"]
    assert ">= 1" in found["queue.source.max_length"]
    assert "remove it" in found["queue.sink.max_payload_size_kb"]
    assert "queue.source.max_length" in found["queue.colour"]  # says what it takes


def test_queue_settings_on_a_synchronous_service_are_refused():
    found = refusals({**FILE, "metadata": {"instance": 1}, "queue": {"source": {"max_length": 5}}})
    assert list(found) == ["queue"] and "Async" in found["queue"]


def test_an_async_service_is_refused_on_kubernetes_by_name():
    from deployer.kubernetes.tenancy import service_file_problems

    problems = dict(service_file_problems(FILE, host_path_roots=(), pod_security="baseline", knative=False))
    assert "local clusters only" in problems["metadata.type"]
    synchronous = {**FILE, "metadata": {"instance": 1}}
    assert "metadata.type" not in dict(service_file_problems(synchronous, host_path_roots=(),
                                                             pod_security="baseline", knative=False))
