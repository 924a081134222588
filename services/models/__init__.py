from .accounts import AccessKey, ApiToken, Project, ProjectMembership, ProjectRole
from .clusters import Cluster, ClusterFlavor, ClusterGrant, ClusterKind, TrafficApi
from .inference import DesiredState, Event, EventType, Instance, Phase, Service, Version

__all__ = [
    "AccessKey",
    "ApiToken",
    "Cluster",
    "ClusterFlavor",
    "ClusterGrant",
    "ClusterKind",
    "DesiredState",
    "Event",
    "EventType",
    "Instance",
    "Phase",
    "Project",
    "ProjectMembership",
    "ProjectRole",
    "Service",
    "TrafficApi",
    "Version",
]
