"""What the fake API server's "controllers" do when a test calls `run_controllers()`: one pass of the
Deployment controller (pods for spec.replicas, owned by the Deployment; ReplicaSets are skipped) and of
Knative's (a Revision per template, pods for revisions with traffic, Ready conditions on the Service).
Plus the test hooks a kubelet or HPA would cause: crashing a pod, scaling, events.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime


class Controllers:
    def __init__(self, fake):
        self.fake = fake
        self._pod_serial = 0

    def run(self, *, ready: bool = True) -> None:
        with self.fake.lock:
            for deployment in self.fake.find("Deployment"):
                replicas = deployment["spec"].get("replicas", 1)
                self._converge_pods(deployment, deployment["spec"]["template"], replicas, ready)
                self._deployment_status(deployment, ready)
            for service in self.fake.find("Service", api_version="serving.knative.dev/v1"):
                self._knative(service, ready)

    # -- Deployments ------------------------------------------------------------------------------------
    def _converge_pods(self, owner: dict, template: dict, replicas: int, ready: bool, prefix: str = "") -> None:
        namespace = owner["metadata"]["namespace"]
        uid = owner["metadata"]["uid"]
        pods = [p for p in self.fake.find("Pod", namespace=namespace)
                if any(ref["uid"] == uid for ref in p["metadata"].get("ownerReferences", []))]
        for pod in pods[replicas:]:
            self.fake.delete_object(self.fake._key_of(pod))
        for _ in range(replicas - len(pods)):
            self._pod_serial += 1
            name = f"{prefix or owner['metadata']['name']}-{self._pod_serial:05d}"
            container = template["spec"]["containers"][0]
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": namespace,
                                "labels": copy.deepcopy(template["metadata"].get("labels", {})),
                                "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                                     "name": owner["metadata"]["name"], "uid": uid,
                                                     "controller": True}]},
                   "spec": copy.deepcopy(template["spec"])}
            pod["status"] = _pod_status(container, ready, self._pod_serial)
            self.fake.put_object(pod, manager="kubelet")
        for pod in pods[:replicas]:
            if pod["status"].get("phase") == "Running" and pod["status"]["containerStatuses"][0].get("state", {}).get(
                    "running") is not None:
                self._set_ready(pod, ready)

    def _set_ready(self, pod: dict, ready: bool) -> None:
        status = pod["status"]
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        status["containerStatuses"][0]["ready"] = ready
        status["containerStatuses"][0]["started"] = True
        self.fake.put_object(pod, manager="kubelet")

    def _deployment_status(self, deployment: dict, ready: bool) -> None:
        replicas = deployment["spec"].get("replicas", 1)
        deployment["status"] = {"observedGeneration": deployment["metadata"]["generation"], "replicas": replicas,
                                "readyReplicas": replicas if ready else 0,
                                "availableReplicas": replicas if ready else 0,
                                "updatedReplicas": replicas}
        self.fake.put_object(deployment, manager="kube-controller-manager")

    # -- Knative ----------------------------------------------------------------------------------------
    def _knative(self, service: dict, ready: bool) -> None:
        namespace = service["metadata"]["namespace"]
        template = service["spec"]["template"]
        revision_name = template["metadata"]["name"]
        revisions = {r["metadata"]["name"]: r for r in self.fake.find("Revision", namespace=namespace)}
        if revision_name not in revisions:
            revisions[revision_name] = self.fake.put_object({
                "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
                "metadata": {"name": revision_name, "namespace": namespace,
                             "labels": {**template["metadata"].get("labels", {}),
                                        "serving.knative.dev/service": service["metadata"]["name"]},
                             "annotations": template["metadata"].get("annotations", {}),
                             "ownerReferences": [{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                                  "name": service["metadata"]["name"],
                                                  "uid": service["metadata"]["uid"], "controller": True}]},
                "spec": template["spec"]})
        missing = [t["revisionName"] for t in service["spec"].get("traffic", []) if t["revisionName"] not in revisions]
        for name, revision in revisions.items():
            served = name == revision_name or any(t["revisionName"] == name and t.get("percent", 0) > 0
                                                  for t in service["spec"].get("traffic", []))
            minimum = int(revision["metadata"].get("annotations", {}).get("autoscaling.knative.dev/min-scale", "1"))
            pod_template = {"metadata": {"labels": {**revision["metadata"]["labels"],
                                                    "serving.knative.dev/revision": name}},
                            "spec": revision["spec"]}
            self._converge_pods(revision, pod_template, max(minimum, 1) if served else 0, ready,
                                prefix=f"{name}-deployment")
        if missing:
            condition = {"type": "Ready", "status": "False", "reason": "RevisionMissing",
                         "message": f'Revision "{missing[0]}" referenced in traffic not found.'}
        else:
            condition = {"type": "Ready", "status": "True" if ready else "Unknown",
                         "reason": "" if ready else "RevisionNotReady"}
        service["status"] = {"observedGeneration": service["metadata"]["generation"], "conditions": [condition],
                             "latestCreatedRevisionName": revision_name}
        self.fake.put_object(service, manager="controller")

    # -- test hooks -------------------------------------------------------------------------------------
    def crash(self, pod_name: str, *, reason: str = "Error", exit_code: int = 1, restarts: int = 3) -> None:
        """The kubelet's view of a container that keeps exiting."""
        with self.fake.lock:
            pod = self.fake.find("Pod", pod_name)[0]
            status = pod["status"]
            container = status["containerStatuses"][0]
            container.update({"ready": False, "restartCount": restarts,
                              "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}},
                              "lastState": {"terminated": {"reason": reason, "exitCode": exit_code}}})
            status["conditions"] = [{"type": "Ready", "status": "False"}]
            self.fake.put_object(pod, manager="kubelet")

    def event(self, namespace: str, kind: str, name: str, reason: str, message: str, type_: str = "Warning") -> None:
        with self.fake.lock:
            self._pod_serial += 1
            self.fake.put_object({"apiVersion": "v1", "kind": "Event",
                                  "metadata": {"name": f"{name}.{self._pod_serial:05d}", "namespace": namespace},
                                  "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
                                  "reason": reason, "message": message, "type": type_, "count": 1,
                                  "lastTimestamp": _now()})


def _pod_status(container: dict, ready: bool, serial: int) -> dict:
    return {"phase": "Running", "podIP": f"10.0.0.{serial % 250 + 1}", "startTime": _now(),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": container["name"], "ready": ready, "started": ready, "restartCount": 0,
                                   "image": container["image"], "state": {"running": {"startedAt": _now()}}}]}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
