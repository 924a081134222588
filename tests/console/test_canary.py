"""The console's canary slider decides as the CLI and the API do (services.writes.canary_set): during a rolling or
blue-green rollout it is refused, naming that rollout, and nothing changes.

A change of behaviour the issue "One owner per concept" asks for: the slider used to set weights by hand there,
which cancelled the rollout, while `ferry canary` refused. No agent runs here, so the rolling update of the
`echo_v2` fixture stays in progress.
"""

import pytest

from services.models import Service

pytestmark = pytest.mark.django_db

CANARY = "/services/local/echo/actions/canary/"


def traffic(service: Service) -> dict[int, tuple[int | None, int]]:
    return {v.number: (v.requested_weight, v.weight) for v in service.versions.all()}


def test_during_a_rolling_rollout_the_slider_is_refused_and_nothing_changes(alice_client, echo_v2):
    before = Service.objects.get(pk=echo_v2.pk)
    response = alice_client.post(CANARY, {"percent": "30"})

    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="canary-errors"' in html
    assert "echo has a rolling rollout in progress (Progressing): use promote, rollback, switch or finish." in html
    after = Service.objects.get(pk=echo_v2.pk)
    assert after.rollout == before.rollout and after.generation == before.generation
    assert traffic(after) == traffic(before)
    assert not after.events.filter(reason__in=["CancelledRollout", "ShiftedTraffic"]).exists()


def test_with_no_rollout_the_slider_asks_for_the_shares(alice_client, echo_v2):
    Service.objects.filter(pk=echo_v2.pk).update(rollout=None, last_rolled_out_version=2)  # as if rolled out

    response = alice_client.post(CANARY, {"percent": "30"})

    assert response.status_code == 302
    service = Service.objects.get(pk=echo_v2.pk)
    assert {v.number: v.requested_weight for v in service.versions.all()} == {1: 70, 2: 30}
    assert service.events.filter(reason="ShiftedTraffic", message__endswith="v1 70 %, v2 30 %").exists()
