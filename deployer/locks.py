"""One reconcile at a time per service, without waiting: whoever does not get the lock leaves the work to
the holder (and to the sweep, which comes back)."""

import uuid
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from .models import ReconcileLease

LEASE_SECONDS = 600  # longer than any reconcile; only matters when a worker died holding it
ADVISORY_NAMESPACE = 0x46455259  # "FERY": keeps Ferry's advisory locks apart from other users of the database


_HELD_HERE: set[int] = set()  # PostgreSQL's advisory locks are re-entrant within one session: we are not


@contextmanager
def reconcile_lock(service_id: int):
    """A reconcile that queues a task which runs inline (CELERY_TASK_ALWAYS_EAGER) and asks for a reconcile of
    the same service must not start a second one inside the first: the lock is taken once per process too."""
    if service_id in _HELD_HERE:
        yield False
        return
    lock = _advisory_lock if connection.vendor == "postgresql" else _lease
    with lock(service_id) as held:
        if not held:
            yield False
            return
        _HELD_HERE.add(service_id)
        try:
            yield True
        finally:
            _HELD_HERE.discard(service_id)


@contextmanager
def _advisory_lock(service_id: int):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_NAMESPACE, service_id % 2**31])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_NAMESPACE, service_id % 2**31])


@contextmanager
def _lease(service_id: int):
    holder = uuid.uuid4().hex
    held = _take_lease(service_id, holder)
    try:
        yield held
    finally:
        if held:
            ReconcileLease.objects.filter(service_id=service_id, holder=holder).delete()


def _take_lease(service_id: int, holder: str) -> bool:
    now = timezone.now()
    try:
        with transaction.atomic():
            ReconcileLease.objects.filter(service_id=service_id, expires_at__lt=now).delete()
            ReconcileLease.objects.create(service_id=service_id, holder=holder,
                                          expires_at=now + timedelta(seconds=LEASE_SECONDS))
        return True
    except IntegrityError:
        return False
