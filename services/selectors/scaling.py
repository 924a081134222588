"""What the autoscaler loop last decided for a service, and what its cron jobs last did, as the loop records
them in Redis (contracts/scaling_records.py). Without Redis, or with Redis down, there is nothing to show."""

from django.conf import settings
from redis import RedisError

from contracts.scaling_records import cron_jobs_read, decision_read
from services.models import Service


def _redis():
    if not settings.REDIS_URL:
        return None
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)


def autoscaler_decision(service: Service) -> dict | None:
    client = _redis()
    try:
        return decision_read(client, service.cluster.name, service.name) if client else None
    except RedisError:
        return None


def cron_job_records(service: Service) -> dict[str, dict]:
    """By job name: {"State", "Message", "RanAt", "EvaluatedAt"} (autoscaler/cron_status.py)."""
    client = _redis()
    try:
        return cron_jobs_read(client, service.cluster.name, service.name) if client else {}
    except RedisError:
        return {}
