"""The inference domain: services, their immutable versions, and what Ferry observes of them."""

from django.conf import settings
from django.db import models

from .accounts import Project
from .clusters import Cluster


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Phase(models.TextChoices):
    """EAS's service status names; derived from conditions by whoever writes status."""

    CREATING = "Creating"
    WAITING = "Waiting"
    RUNNING = "Running"
    SCALING = "Scaling"
    UPDATING = "Updating"
    STOPPED = "Stopped"
    FAILED = "Failed"
    DELETING = "Deleting"


class Service(models.Model):
    """A model service: the desired state users write, and the status the reconciler writes back.

    `spec` is the normalized service file (see services.servicefile), without its token. Writes go through
    services.writes; every change of desired state bumps `generation`, and the reconciler sets
    `observed_generation` when it has acted on it.
    """

    uid = models.CharField(max_length=32, unique=True)
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="services")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="services")
    name = models.CharField(max_length=63)
    group = models.CharField(max_length=63, blank=True, db_index=True)
    # The service's labels: from the file's `labels`, CreateService's Labels and UpdateServiceLabel. Kept here
    # and not in `spec`, so that a label change is never a new version and a file without labels keeps them.
    labels = models.JSONField(default=dict, blank=True)
    # EAS's safety lock: "none", "dangerous" (delete, stop, restart refused) or "all" (every change refused);
    # services.selectors.locks decides what each level refuses.
    safety_lock = models.CharField(max_length=16, default="none")
    spec = models.JSONField()
    token_encrypted = models.TextField()
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING)

    # Scaling policy: a fixed count, optionally overridden by an autoscaler and floored by a cron scaler.
    instance_count = models.PositiveIntegerField(default=1)
    autoscaler = models.JSONField(null=True, blank=True)
    cron_scaler = models.JSONField(null=True, blank=True)
    # Observed scaling decision: the instances the autoscaler (or the activator, waking a service from zero)
    # last asked for. Not desired state written by users, so changing it does not bump the generation.
    autoscaled_instances = models.PositiveIntegerField(null=True, blank=True)
    # The last wake-up from zero (deployer/activation.py), until an instance serves: {"since": iso, "generation":
    # int, "failed": bool, "message": str}. A failed one holds the service at zero for that generation.
    activation = models.JSONField(null=True, blank=True)
    # Traffic beyond per-version weights: a copy of requests to other services, and this service's weight
    # inside its EAS service group (ReleaseService).
    mirror = models.JSONField(null=True, blank=True)
    group_weight = models.PositiveSmallIntegerField(default=100)
    traffic_state = models.CharField(max_length=16, default="standalone")
    last_rolled_out_version = models.PositiveIntegerField(null=True, blank=True)
    # The rollout in progress (see deployer/rollout.py): strategy, from/to versions, state. Version weights are
    # the traffic the reconciler gives each version while it follows this record.
    rollout = models.JSONField(null=True, blank=True)
    restart_requested_at = models.DateTimeField(null=True, blank=True)

    generation = models.PositiveBigIntegerField(default=1)
    observed_generation = models.PositiveBigIntegerField(default=0)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.CREATING)
    status_reason = models.CharField(max_length=64, blank=True)
    status_message = models.TextField(blank=True)
    conditions = models.JSONField(default=list, blank=True)
    next_reconcile_at = models.DateTimeField(null=True, blank=True)
    deletion_requested_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="unique_service_per_cluster")]
        indexes = [models.Index(fields=["project", "name"])]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"


class Version(models.Model):
    """An immutable snapshot of what shapes an instance. Weights are traffic, not shape, so they may change."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    instance_spec = models.JSONField()
    service_file = models.JSONField(help_text="The whole normalized service file when this version was made.")
    # Traffic as Kubernetes keeps spec and status. `requested_weight` is what was asked (a user's weights, a
    # rollback, a switch; a finished rollout's outcome), None while a rollout decides (the user asked for the
    # rollout, not for a share); only writes set it. `weight` is what the reconciler applied and the route
    # publishes; only the reconciler writes it (deployer/reconcile.py), from the plan of the asked values.
    requested_weight = models.PositiveSmallIntegerField(null=True, blank=True)
    weight = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=255, blank=True)
    # A pool model's version (docs/mesh.md): the memory its last load took on a pool instance, which the placer
    # plans with before loading it again. None: never loaded.
    model_memory_bytes = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["service", "number"]
        constraints = [models.UniqueConstraint(fields=["service", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.service.name} v{self.number}"

    @property
    def asked_weight(self) -> int:
        """The share this version is meant to have: what was asked, or (while a rollout decides) what it has."""
        return self.weight if self.requested_weight is None else self.requested_weight


class Instance(models.Model):
    """An observed replica of a version, written by the reconciler from what the cluster reports."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="instances")
    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=128)
    state = models.CharField(max_length=32, default="Pending")
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    ready = models.BooleanField(default=False)
    restart_count = models.PositiveIntegerField(default=0)
    last_exit_reason = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    restart_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Desired: restart this instance (EAS DeleteServiceInstances)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "name"]
        constraints = [models.UniqueConstraint(fields=["service", "name"], name="unique_instance_name")]

    def __str__(self) -> str:
        return self.name


class EventType(models.TextChoices):
    NORMAL = "Normal"
    WARNING = "Warning"


class Event(models.Model):
    """A timeline entry, e.g. Normal / CreatedVersion / "Created version 3 of demo"."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    type = models.CharField(max_length=8, choices=EventType.choices, default=EventType.NORMAL)
    reason = models.CharField(max_length=64)
    message = models.TextField()
    instance_name = models.CharField(max_length=128, blank=True)
    # Who acted: the username, not a key to the user, so "who changed this?" is still answered after the user
    # is deleted. Blank when Ferry itself acted (the reconciler, the autoscaler, the agent, a wake-up).
    actor = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.reason}: {self.message}"
