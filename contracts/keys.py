"""The names of the Redis keys and pub/sub channels that more than one process uses, each spelled once here.

Routes (written by the control plane, deployer/routing.py; read by the gateway, gateway/sync.py), per cluster:
- `ferry:routes:<cluster>`: a hash, field = service name, value = a route entry (contracts/routes.py);
- `ferry:routes:<cluster>:changed`: the channel naming a service whose entry changed ("*": all of them);
- `ferry:routes:<cluster>:complete`: the run id of the Redis server that last got the cluster's whole table.

The node agent's wake-up channel: the local driver publishes after writing rows (deployer/drivers/local.py),
the agent listens (deployer/agent/wake.py).

Metrics (written by the gateway, gateway/metrics.py; read by the autoscaler loop, deployer/metrics.py, and the
console, services/console/metrics.py), per cluster, service and version (two clusters may each have a service
of the same name, each with a gateway of its own):
- `ferry:metrics:s:<cluster>:<service>:<version>:<unix_second>` (TTL 1 hour);
- `ferry:metrics:m:<cluster>:<service>:<version>:<unix_second // 60>` (TTL 30 days).

The autoscaler's records have their own module (contracts/scaling_records.py).
"""

ROUTES_PREFIX = "ferry:routes"
# The single hash of older versions (keyed by service name only, with plain tokens): removed on republish.
LEGACY_ROUTE_KEYS = (ROUTES_PREFIX, f"{ROUTES_PREFIX}:complete")

AGENT_WAKE_CHANNEL = "ferry:agent:wake"

METRICS_PREFIX = "ferry:metrics"
PER_SECOND, PER_MINUTE = "s", "m"  # the resolutions of the metrics hashes
SECONDS_PER_RESOLUTION = {PER_SECOND: 1, PER_MINUTE: 60}


def routes_key(cluster: str) -> str:
    return f"{ROUTES_PREFIX}:{cluster}"


def changed_channel(cluster: str) -> str:
    return f"{ROUTES_PREFIX}:{cluster}:changed"


def complete_key(cluster: str) -> str:
    return f"{ROUTES_PREFIX}:{cluster}:complete"


def metrics_key(resolution: str, cluster: str, service: str, version: int | str, unit: int) -> str:
    """The hash of one service version's traffic in time unit `unit` (seconds or minutes since the epoch, as
    `resolution` says)."""
    return f"{METRICS_PREFIX}:{resolution}:{cluster}:{service}:{version}:{unit}"


def metrics_second_key(cluster: str, service: str, version: int | str, second: int) -> str:
    return metrics_key(PER_SECOND, cluster, service, version, second)


def metrics_minute_key(cluster: str, service: str, version: int | str, second: int) -> str:
    """The per-minute hash that the traffic of `second` (Unix time) adds up into."""
    return metrics_key(PER_MINUTE, cluster, service, version, second // SECONDS_PER_RESOLUTION[PER_MINUTE])


# Asynchronous services' queues (docs/async.md): Redis Streams written and read by the gateway (gateway/queues.py,
# gateway/dispatcher.py), read by the autoscaler for `queue[backlog]` (deployer/autoscaling.py).
QUEUE_PREFIX = "ferry:queue"
QUEUE_GROUP = "ferry-dispatch"  # the consumer group of the gateways' dispatchers on an input stream


def queue_key(cluster: str, service: str, sink: bool = False) -> str:
    """The stream of a service's input queue (EAS: the queue at the service's name), or of its sink (the result
    queue, `<service>/sink`)."""
    return f"{QUEUE_PREFIX}:{cluster}:{service}" + (":sink" if sink else ":input")
