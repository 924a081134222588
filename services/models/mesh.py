"""Where the model mesh has loaded each pool model's versions (docs/mesh.md).

One row per copy: a version of a pool model loaded (or loading) on one instance of its pool, under the key
`<service>-v<number>`. Written only by the placer (deployer/mesh/placer.py), which keeps the rows equal to what
the pool's model servers report; read by the route publisher (which instances serve the model), the API and the
console.
"""

from django.db import models

from .inference import Instance, Service, Version


class PlacementState(models.TextChoices):
    LOADING = "Loading"
    LOADED = "Loaded"
    FAILED = "Failed"


class ModelPlacement(models.Model):
    pool = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="pool_placements")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="placements")
    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="placements")
    key = models.CharField(max_length=80)
    state = models.CharField(max_length=16, choices=PlacementState.choices, default=PlacementState.LOADING)
    memory_bytes = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0, help_text="Requests the copy has served (the instance's count).")
    reason = models.CharField(max_length=255, blank=True, help_text="Why the placer loaded it.")
    loaded_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "key"], name="one_copy_per_instance")]
        ordering = ["key", "instance__name"]

    def __str__(self) -> str:
        return f"{self.key} on {self.instance.name} ({self.state})"
