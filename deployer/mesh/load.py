"""A pool's load for its autoscaler (docs/mesh.md): the traffic of all its models, as one service's."""

from services.models import Service, Version

from ..metrics import Second, read_seconds


def pool_seconds(redis_client, pool: Service, seconds: list[int]) -> dict[int, Second]:
    """Per second, the gateway's metrics of every version of every model in `pool`, added up (requests,
    concurrency and in-flight add; the longest queue is the pool's)."""
    totals = {second: Second() for second in seconds}
    members: dict[str, list[int]] = {}
    for name, number in (Version.objects.filter(service__project_id=pool.project_id, service__cluster_id=pool.cluster_id,
                                                service__spec__metadata__pool=pool.name)
                         .values_list("service__name", "number")):
        members.setdefault(name, []).append(number)
    for name, versions in members.items():
        for second, sample in read_seconds(redis_client, pool.cluster.name, name, versions, seconds).items():
            total = totals[second]
            totals[second] = Second(requests=total.requests + sample.requests,
                                    concurrency=total.concurrency + sample.concurrency,
                                    queue=max(total.queue, sample.queue), in_flight=total.in_flight + sample.in_flight)
    return totals
