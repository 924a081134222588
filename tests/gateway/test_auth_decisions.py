"""The pure decisions behind EAS signatures (contracts/auth.py): which Dates are plausible in some time zone,
when a signature counts as replayed, what the replay memory keeps, and what a signature may name."""

from email.utils import formatdate

from contracts.auth import Replays, date_problem, signed_resources, zone_offset

NOW = 1_780_000_000.0  # a fixed instant: these functions never read the clock
HOUR = 3600.0
SKEW = 900.0


def problem(offset_hours: float, *, first_seen_ago: float | None = None, seconds_off: float = 0.0):
    """date_problem for a client `offset_hours` east of UTC whose clock is `seconds_off` wrong, its signature
    first seen `first_seen_ago` seconds ago (None: not looked up yet)."""
    sent = NOW + offset_hours * HOUR + seconds_off
    first_seen = None if first_seen_ago is None else NOW - first_seen_ago
    return date_problem(formatdate(sent, usegmt=True), sent, NOW, SKEW, first_seen)


def test_a_fresh_signature_is_accepted_from_any_real_time_zone():
    for hours in (0, 8, -7, -8, 5.5, 5.75, 8.75, 12.75, -3.5, 9.5, 14, -12):
        assert problem(hours, first_seen_ago=0) is None, hours
        assert zone_offset(NOW + hours * HOUR, NOW, SKEW) == hours * HOUR


def test_a_clock_a_little_off_is_accepted_within_the_skew_only():
    assert problem(8, seconds_off=899) is None
    assert problem(-7, seconds_off=-899) is None
    assert problem(0, seconds_off=-900) is None
    # With a skew under half a quarter hour, Dates between two zones' are refused.
    assert zone_offset(NOW + 8 * HOUR + 450, NOW, 60) is None
    assert zone_offset(NOW + 8 * HOUR + 59, NOW, 60) == 8 * HOUR


def test_a_date_beyond_every_time_zone_is_refused():
    for hours in (14.5, -12.5, 24, -48):
        message = problem(hours)
        assert message and "away from the gateway's clock in every time zone" in message, hours
    assert problem(14, seconds_off=901) is not None
    assert problem(-12, seconds_off=-901) is not None


def test_a_signature_first_seen_longer_ago_than_the_skew_is_a_replay():
    assert problem(8, first_seen_ago=0) is None
    assert problem(8, first_seen_ago=SKEW) is None  # e.g. the same request sent again within the window
    message = problem(8, first_seen_ago=SKEW + 1)
    assert message and message.startswith("replayed request: this signature was first seen 901 s ago")
    # Replayed an hour later, a UTC+8 request looks like a fresh one from UTC+7: only the memory tells.
    sent = NOW + 8 * HOUR
    later = NOW + HOUR
    assert zone_offset(sent, later, SKEW) == 7 * HOUR
    assert date_problem("d", sent, later, SKEW, first_seen=NOW).startswith("replayed request")


def test_the_memory_remembers_the_first_sighting_only():
    memory = Replays(SKEW)
    sent = NOW + 5.5 * HOUR
    assert memory.first_seen(b"sig-a", sent, NOW) == NOW
    assert memory.first_seen(b"sig-a", sent, NOW + 0.4) == NOW  # twice in the same second
    assert memory.first_seen(b"sig-a", sent, NOW + 1000) == NOW
    assert memory.first_seen(b"sig-b", sent, NOW + 1000) == NOW + 1000  # keyed by signature, not by Date


def test_the_memory_forgets_a_signature_once_its_date_left_the_band():
    memory = Replays(SKEW)
    sent = NOW - 7 * HOUR  # a UTC-7 client
    memory.first_seen(b"west", sent, NOW)
    memory.first_seen(b"east", NOW + 14 * HOUR, NOW)
    leaves = sent + 12 * HOUR + SKEW  # then the band refuses the Date by itself
    assert zone_offset(sent, leaves - 1, SKEW) is not None and zone_offset(sent, leaves + 1, SKEW) is None
    memory.first_seen(b"other", NOW, leaves - 1)
    assert len(memory) == 3
    memory.first_seen(b"other", NOW, leaves + 1)
    assert len(memory) == 2 and b"west" not in memory.first


def test_the_memory_is_bounded_and_drops_what_leaves_the_band_soonest():
    memory = Replays(SKEW, capacity=3)
    memory.first_seen(b"utc+8", NOW + 8 * HOUR, NOW)
    memory.first_seen(b"utc-8", NOW - 8 * HOUR, NOW)
    memory.first_seen(b"utc", NOW, NOW)
    memory.first_seen(b"utc+14", NOW + 14 * HOUR, NOW)
    assert len(memory) == 3 and set(memory.first) == {b"utc+8", b"utc", b"utc+14"}


def test_a_signature_may_name_the_service_or_the_path_the_sdk_was_given():
    assert signed_resources("svc", "/api/predict/svc") == ("/api/predict/svc",)
    assert signed_resources("svc", "/api/predict/svc/v1/chat") == ("/api/predict/svc", "/api/predict/svc/v1/chat")
    assert signed_resources("svc", "/api/predict/svc/v1/chat", "x=1") == (
        "/api/predict/svc", "/api/predict/svc/v1/chat", "/api/predict/svc/v1/chat?x=1")
    assert signed_resources("svc", "/api/predict/svc", "x=1") == ("/api/predict/svc", "/api/predict/svc?x=1")
    assert signed_resources("svc", "") == ("/api/predict/svc",)
