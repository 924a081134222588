"""The autoscaler's latest decision for a service, as the autoscaler loop records it in Redis."""

import json

from django.conf import settings

from services.models import Service


def autoscaler_decision(service: Service) -> dict | None:
    if not settings.REDIS_URL:
        return None
    import redis

    from deployer.autoscaling import DECISION_KEY

    try:
        raw = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).get(DECISION_KEY.format(service=service.name))
    except redis.RedisError:
        return None
    return json.loads(raw) if raw else None
