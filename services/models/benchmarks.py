"""A benchmark (stress-test) task: EAS's CreateBenchmarkTask and friends (docs/benchmarks.md). The runner
(deployer/benchmarks.py) writes state, progress and report; writes (services/writes/benchmarks.py) write the rest."""

from django.conf import settings
from django.db import models

from .accounts import Project
from .clusters import Cluster
from .inference import Service


class BenchmarkState(models.TextChoices):
    # EAS's words (DescribeBenchmarkTask's Status), plus Completed and Stopped, which EAS shows in its console.
    CREATING = "Creating"  # queued for the runner after CreateBenchmarkTask
    STARTING = "Starting"  # queued again after StartBenchmarkTask
    RUNNING = "Running"
    STOPPING = "Stopping"  # StopBenchmarkTask asked; the runner stops within a second
    STOPPED = "Stopped"
    COMPLETED = "Completed"
    ERROR = "Error"  # could not run, or its runner was lost (Reason says which)

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.CREATING, cls.STARTING, cls.RUNNING, cls.STOPPING)


class BenchmarkTask(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="benchmark_tasks")
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="benchmark_tasks")
    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="benchmark_tasks")
    name = models.CharField(max_length=128)
    task_id = models.CharField(max_length=32, unique=True)
    config = models.JSONField(default=dict)  # as given, without a request token (services/benchmark_config.py)
    state = models.CharField(max_length=16, choices=BenchmarkState.choices, default=BenchmarkState.CREATING)
    reason = models.CharField(max_length=64, blank=True)  # CamelCase, as events
    message = models.TextField(blank=True)
    progress = models.FloatField(default=0.0)  # percent of the duration elapsed
    attempt = models.PositiveIntegerField(default=0)  # each Start is a new attempt; a stale runner sees it and ends
    report = models.JSONField(default=dict)  # {"Summary": {...}, "Rows": [{...} per second]} (benchmark_report.py)
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # the runner's, every second while it runs
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="benchmark_name_per_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"
