"""Which driver acts for a cluster kind (the contract: base.py). A cluster without one (a Kubernetes cluster with no
way in yet) leaves its services waiting, honestly."""

from .base import Driver, Observed, ObservedInstance, PermanentError, Prepared, TransientError

from .kubernetes import KubernetesDriver
from .local import LocalDriver

DRIVERS: dict[str, type] = {"local": LocalDriver, "kubernetes": KubernetesDriver.connected}


def driver_for(cluster) -> Driver | None:
    driver_class = DRIVERS.get(cluster.kind)
    return driver_class(cluster) if driver_class else None


__all__ = ["DRIVERS", "Driver", "Observed", "ObservedInstance", "PermanentError", "Prepared", "TransientError",
           "driver_for"]
