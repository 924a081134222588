"""A version's traffic as asked and as applied (services/models/inference.py): `asked_weight` is what was asked,
or, while a rollout decides (nothing asked), what is applied. No database: unsaved rows."""

import pytest

from services.models import Version


@pytest.mark.parametrize(("requested", "applied", "shown"), [
    (None, 30, 30),  # a rollout decides: the share it has applied
    (80, 100, 80),  # asked, not applied yet
    (0, 100, 0),  # asked for none: 0 is an ask, not "nothing asked"
    (100, 100, 100),
])
def test_the_asked_weight_is_the_ask_or_while_a_rollout_decides_the_applied_one(requested, applied, shown):
    assert Version(number=1, requested_weight=requested, weight=applied).asked_weight == shown


def test_a_new_version_has_asked_nothing_and_serves_nothing():
    version = Version(number=2)
    assert (version.requested_weight, version.weight, version.asked_weight) == (None, 0, 0)
