"""What the autoscaler loop records in Redis for DescribeServiceAutoScaler, DescribeServiceCronScaler and the
console: its latest decision with the metrics behind it, a one-hour series of decisions, and what each cron job
last did. The loop writes (deployer/autoscaling.py); services.selectors.scaling reads. Keys name the cluster
as well as the service: two clusters may each have a service of the same name."""

import json

DECISION_KEY = "ferry:autoscaler:decision:{cluster}:{service}"
SERIES_KEY = "ferry:autoscaler:series:{cluster}:{service}"
CRON_JOBS_KEY = "ferry:autoscaler:cron:{cluster}:{service}"
SERIES_LENGTH = 1800  # one hour of 2-second decisions, for the console's charts
DECISION_TTL = 3600
# A job's last outcome must outlive the gaps between its runs: a weekly job reports last week's run.
CRON_JOBS_TTL = 8 * 24 * 3600


def decision_write(redis_client, cluster: str, service: str, record: dict) -> None:
    payload = json.dumps(record)
    series = SERIES_KEY.format(cluster=cluster, service=service)
    pipe = redis_client.pipeline(transaction=False)
    pipe.set(DECISION_KEY.format(cluster=cluster, service=service), payload, ex=DECISION_TTL)
    pipe.lpush(series, payload)
    pipe.ltrim(series, 0, SERIES_LENGTH - 1)
    pipe.expire(series, DECISION_TTL)
    pipe.execute()


def decision_read(redis_client, cluster: str, service: str) -> dict | None:
    raw = redis_client.get(DECISION_KEY.format(cluster=cluster, service=service))
    return json.loads(raw) if raw else None


def cron_jobs_write(redis_client, cluster: str, service: str, states: dict[str, dict]) -> None:
    redis_client.set(CRON_JOBS_KEY.format(cluster=cluster, service=service), json.dumps(states), ex=CRON_JOBS_TTL)


def cron_jobs_read(redis_client, cluster: str, service: str) -> dict[str, dict]:
    raw = redis_client.get(CRON_JOBS_KEY.format(cluster=cluster, service=service))
    return json.loads(raw) if raw else {}
