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


@contextmanager
def reconcile_lock(service_id: int):
    if connection.vendor == "postgresql":
        with _advisory_lock(service_id) as held:
            yield held
    else:
        with _lease(service_id) as held:
            yield held


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
