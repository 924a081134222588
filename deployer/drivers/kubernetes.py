"""Kubernetes clusters: render the service (deployer/kubernetes/render.py), apply it with server-side apply,
prune what is no longer desired, and read back pods, Knative conditions and Events.

Unlike the local driver, the cluster runs the instances itself and names its pods: `prepare` turns the rollout
plan into a ServiceDesired (versions with their weights and replica counts), and status counts pods per version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from deployer.kubernetes.apply import apply_manifests, delete_all
from deployer.kubernetes.build import namespace_for, service_desired
from deployer.kubernetes.desired import ServiceDesired
from deployer.kubernetes.meta import dns_name, service_selector
from deployer.kubernetes.observe import EventEntry, event_entries, knative_problems, observed_instances
from deployer.kubernetes.pod import CONTAINER
from deployer.kubernetes.pool import mesh_role
from deployer.kubernetes.render import namespace_manifest, render
from deployer.kubernetes.token import token_secret
from deployer.kubernetes.volumes import RenderError

from .base import Observed, ObservedInstance, PermanentError, Prepared

if TYPE_CHECKING:  # the client imports this package's base module: no import cycle at run time
    from deployer.kubernetes.client import KubeApi

logger = logging.getLogger("ferry.deployer")
# Normal events worth a line on Ferry's timeline; every Warning is.
NORMAL_REASONS = {"Killing", "SuccessfulRescale", "ScalingReplicaSet", "Preempted", "Evicted"}
EVENT_HORIZON = timedelta(hours=1)


class KubernetesDriver:
    def __init__(self, cluster, api: KubeApi | None = None):
        self.cluster = cluster
        self._api = api

    @classmethod
    def connected(cls, cluster) -> KubernetesDriver | None:
        """The driver, or None while the cluster has no way in (no kubeconfig, not the in-cluster one):
        its services then wait, as for a kind without a driver."""
        if cluster.kubeconfig_encrypted or (cluster.settings or {}).get("in_cluster"):
            return cls(cluster)
        return None

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            from deployer.kubernetes.connect import api_for

            self._api = api_for(self.cluster)
        return self._api

    # -- desired state ----------------------------------------------------------------------------------
    def prepare(self, service, plan, observed: list[ObservedInstance]) -> Prepared:
        """The versions of the plan (None: the steady state of the current weights) as one ServiceDesired;
        versions that cannot be rendered for this cluster are failures."""
        desired = service_desired(service, plan)
        expected = self._expected_instances(desired)
        return Prepared(desired=desired, expected=sum(expected.values()), failures=self._version_failures(desired),
                        versions=frozenset(expected))

    def manifests(self, desired: ServiceDesired) -> list[dict]:
        try:
            return render(desired)
        except RenderError as exc:
            raise PermanentError("InvalidForKubernetes", f"{exc.path}: {exc.message}") from None
        except ValueError as exc:  # e.g. an unknown flavor in the cluster's settings
            raise PermanentError("InvalidClusterSettings", str(exc)) from None

    def _version_failures(self, desired: ServiceDesired) -> dict[int, PermanentError]:
        """Versions that cannot be rendered for this cluster (a mount kind it lacks, an unknown processor),
        with why: the reconciler fails a rollout to such a version, as it does for a model that is missing."""
        failures = {}
        for version in desired.versions:
            try:
                render(replace(desired, versions=(version,), mirror=None))
            except RenderError as exc:
                failures[version.number] = PermanentError("InvalidForKubernetes",
                                                          f"version {version.number}: {exc.path}: {exc.message}")
            except ValueError:
                pass  # not the version's fault (cluster settings): apply reports it
        return failures

    def _expected_instances(self, desired: ServiceDesired) -> dict[int, int]:
        """Pods each version should have at least: the replica count, an HPA's minimum, Knative's min-scale.
        Pods are named by the cluster, so status counts them per version rather than by name."""
        if not desired.running:
            return {}
        role = mesh_role(desired)
        if role == "pool-model":  # loaded into the pool's pods (docs/mesh.md): no pod of its own to wait for
            return {version.number: 0 for version in desired.versions}
        autoscaler = desired.autoscaler or {}
        expected = {}
        for version in desired.versions:
            if not autoscaler:
                expected[version.number] = version.replicas
            elif desired.cluster.flavor == "raw" or role == "pool":  # a pool is a Deployment + HPA on both
                expected[version.number] = max(1, int(autoscaler.get("min", 1))) if version.replicas else 0
            else:  # Knative may scale a version to zero; only the template's min-scale is promised
                template = version.number == desired.newest.number
                expected[version.number] = int(autoscaler.get("min", 0)) if template else 0
        return expected

    # -- the contract -----------------------------------------------------------------------------------
    def apply(self, service, prepared: Prepared) -> list[str]:
        """Makes the cluster match the prepared ServiceDesired; returns the objects it created ("Kind/name")."""
        from services.selectors import service_token

        desired = prepared.desired
        rendered = self.manifests(desired)
        if mesh_role(desired) == "pool-model":
            # Nothing of its own runs (its versions live in the pool's pods): no namespace, no token Secret;
            # the empty apply still prunes whatever an earlier reconcile left.
            return apply_manifests(self.api, [], namespace=desired.namespace,
                                   selector=service_selector(desired.name)).created
        # The token Secret first, so no pod starts without it; never part of render() (what users are shown).
        manifests = [token_secret(desired, service_token(service)), *rendered]
        self.api.apply(namespace_manifest(desired.namespace, desired.project, desired.cluster.pod_security))
        result = apply_manifests(self.api, manifests, namespace=desired.namespace,
                                 selector=service_selector(desired.name))
        for name in result.pruned:
            logger.info("Pruned %s of %s", name, service)
        return result.created

    def observe(self, service) -> Observed:
        namespace = self._namespace(service)
        pods = self.api.list("v1", "Pod", namespace, label_selector=service_selector(service.name))
        self._record_cluster_events(service, namespace, {p["metadata"]["name"] for p in pods})
        return Observed(instances=observed_instances(pods))

    def delete(self, service) -> bool:
        return delete_all(self.api, namespace=self._namespace(service), selector=service_selector(service.name))

    def restart_instance(self, service, instance_name: str) -> None:
        """Deleting the pod is the restart: its Deployment (or Knative) starts a new one."""
        namespace = self._namespace(service)
        pod = self.api.get("v1", "Pod", instance_name, namespace)
        if pod and (pod["metadata"].get("labels") or {}).get("ferry.dev/service") == dns_name(service.name):
            self.api.delete("v1", "Pod", instance_name, namespace)

    def logs(self, service, instance_name: str, since: datetime | None, follow: bool) -> Iterator[str]:
        since_seconds = max(1, int((timezone.now() - since).total_seconds())) if since else None
        yield from self.api.pod_logs(self._namespace(service), instance_name, container=CONTAINER,
                                     since_seconds=since_seconds, follow=follow)

    # -- plumbing ---------------------------------------------------------------------------------------
    def _namespace(self, service) -> str:
        return namespace_for(self.cluster, service.project.name)

    def _record_cluster_events(self, service, namespace: str, pod_names: set[str]) -> None:
        """Kubernetes Events and failing Knative conditions, each once, on the service's timeline."""
        from services.writes import event_record

        entries = [e for e in event_entries(self.api.list("v1", "Event", namespace), pod_names,
                                            dns_name(service.name))
                   if e.type == "Warning" or e.reason in NORMAL_REASONS]
        if self.cluster.flavor == "knative":
            knative = self.api.get("serving.knative.dev/v1", "Service", dns_name(service.name), namespace) \
                if self.api.served("serving.knative.dev/v1", "Service") else None
            entries += [_knative_entry(problem) for problem in knative_problems(knative)]
        if not entries:
            return
        since = timezone.now() - EVENT_HORIZON
        seen = set(service.events.filter(created_at__gte=since).values_list("reason", "message"))
        for entry in entries:
            if (entry.reason, entry.message) in seen or (entry.at and entry.at < since):
                continue
            seen.add((entry.reason, entry.message))
            event_record(service=service, reason=entry.reason, message=entry.message,
                         warning=entry.type == "Warning", instance_name=entry.instance_name)


def _knative_entry(problem: str) -> EventEntry:
    return EventEntry(type="Warning", reason="KnativeNotReady", message=f"Knative Service {problem}",
                      instance_name="", at=None)
