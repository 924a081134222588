from .accounts import AccessKey, ApiToken, CredentialScope, Project, ProjectMembership, ProjectRole
from .benchmarks import BenchmarkState, BenchmarkTask
from .clusters import Cluster, ClusterFlavor, ClusterGrant, ClusterKind, TrafficApi
from .inference import DesiredState, Event, EventType, Instance, Phase, Service, Version
from .mesh import ModelPlacement, PlacementState

__all__ = [
    "AccessKey",
    "ApiToken",
    "BenchmarkState",
    "BenchmarkTask",
    "Cluster",
    "ClusterFlavor",
    "ClusterGrant",
    "ClusterKind",
    "CredentialScope",
    "DesiredState",
    "Event",
    "EventType",
    "Instance",
    "ModelPlacement",
    "Phase",
    "PlacementState",
    "Project",
    "ProjectMembership",
    "ProjectRole",
    "Service",
    "TrafficApi",
    "Version",
]
