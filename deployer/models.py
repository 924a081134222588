"""The local cluster's work list: what the node agent should run, and what it reports back.

The local driver (in the reconciler) writes the desired fields; the node agent (`manage.py runagent`) only
writes the observed ones. A row with desired="stopped" is drained and stopped by the agent, which then reports
state "Terminated"; the driver deletes such rows. A process the agent finds with no row at all is an orphan
and is stopped too.
"""

from django.db import models


class LocalInstanceState(models.TextChoices):
    PENDING = "Pending"  # not started yet
    STARTING = "Starting"  # process running, readiness probe not yet passed
    RUNNING = "Running"  # process running and ready
    UNREADY = "Unready"  # process running, was ready, probe now failing
    CRASH_LOOP = "CrashLoopBackOff"  # exited; waiting before the next restart
    TERMINATING = "Terminating"  # SIGTERM sent, draining
    TERMINATED = "Terminated"  # stopped on purpose
    FAILED = "Failed"  # cannot be started at all (e.g. the command does not exist)


class LocalInstance(models.Model):
    # Desired, written by the local driver.
    service = models.ForeignKey("services.Service", on_delete=models.CASCADE, related_name="local_instances")
    version_number = models.PositiveIntegerField()
    name = models.CharField(max_length=128, unique=True)
    launch = models.JSONField(
        help_text='{"argv": [...], "env": {...}, "cwd": "", "health_path": "/v2/health/ready", '
        '"ready_timeout_seconds": 300, "grace_period_seconds": 30, "memory_limit_mb": 1024}. '
        'The literal "{port}" in argv and env values is replaced by the port the agent chose.'
    )
    desired = models.CharField(max_length=16, default="running")  # running | stopped
    restart_generation = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    # Observed, written by the node agent.
    state = models.CharField(max_length=32, choices=LocalInstanceState.choices, default=LocalInstanceState.PENDING)
    ready = models.BooleanField(default=False)
    pid = models.PositiveIntegerField(null=True, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    restart_count = models.PositiveIntegerField(default=0)
    last_exit_code = models.IntegerField(null=True, blank=True)
    last_exit_reason = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    observed_restart_generation = models.PositiveIntegerField(default=0)
    log_path = models.CharField(max_length=512, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["service_id", "name"]

    def __str__(self) -> str:
        return self.name


class ReconcileLease(models.Model):
    """One reconcile at a time per service on SQLite, which has no advisory locks (PostgreSQL uses those).

    A lease that outlived its expiry belongs to a worker that died and may be taken over.
    """

    service_id = models.BigIntegerField(primary_key=True)
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()


class ModelFetchState(models.TextChoices):
    PENDING = "Pending"  # queued on the fetch queue, or downloading
    DONE = "Done"  # in the model cache, at `directory`
    FAILED = "Failed"  # could not be fetched; `message` says why (reported once, then forgotten)


class ModelFetch(models.Model):
    """One URL of one version (model, processor code, warm-up data) fetched into the local model cache by the
    fetcher worker (deployer/fetches.py). Fetched once per version: instances launched later (scaling, waking
    from zero) use the same files, as a version's instances must."""

    version = models.ForeignKey("services.Version", on_delete=models.CASCADE, related_name="model_fetches")
    url = models.TextField()
    state = models.CharField(max_length=16, choices=ModelFetchState.choices, default=ModelFetchState.PENDING)
    directory = models.TextField(blank=True)
    message = models.TextField(blank=True)
    requested_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "url"], name="one_fetch_per_version_url")]

    def __str__(self) -> str:
        return f"{self.url} for version {self.version_id} ({self.state})"
