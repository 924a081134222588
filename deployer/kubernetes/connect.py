"""Connecting to a registered cluster: its kubeconfig (decrypted only here, in memory) or, for the cluster
Ferry itself runs in, the pod's service account."""

from __future__ import annotations

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from deployer.drivers.base import PermanentError

from .client import KubeApi

IN_CLUSTER = "in_cluster"


def api_client_for(cluster) -> k8s.ApiClient:
    settings = cluster.settings or {}
    if settings.get(IN_CLUSTER):
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise PermanentError("ClusterUnreachable", f"cluster {cluster.name} is registered as the one Ferry "
                                                       f"runs in, but no service account is mounted: {exc}") from None
        return k8s.ApiClient(configuration)
    if not cluster.kubeconfig_encrypted:
        raise PermanentError("ClusterNotConnected", f"cluster {cluster.name} has no kubeconfig")
    from services.encryption import decrypt

    try:
        document = yaml.safe_load(decrypt(cluster.kubeconfig_encrypted))
        # Stored before this rule existed: still never run a command or read a file of Ferry's host.
        unsafe = host_reaching_entry(document)
        if unsafe:
            raise ValueError(unsafe)
        return k8s_config.new_client_from_config_dict(document, context=settings.get("context") or None)
    except (ValueError, ConfigException, yaml.YAMLError) as exc:
        raise PermanentError("InvalidKubeconfig",
                             f"the kubeconfig of cluster {cluster.name} is unusable: {exc}") from None


def api_for(cluster) -> KubeApi:
    return KubeApi(api_client_for(cluster))


def kubeconfig_problem(text: str) -> str | None:
    """Why a kubeconfig cannot be used, or None; checked on registration, before it is stored."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"is not YAML: {exc}"
    if not isinstance(document, dict) or not document.get("clusters") or not document.get("contexts"):
        return "needs clusters and contexts (the file kubectl uses)"
    unsafe = host_reaching_entry(document)
    if unsafe:
        return unsafe
    try:
        k8s_config.new_client_from_config_dict(document)
    except ConfigException as exc:
        return str(exc)
    return None


# Entries that make the Kubernetes client run a command on Ferry's host, or read one of its files (and send
# it to whichever API server the kubeconfig names: a tokenFile of Ferry's own service account, for one).
COMMAND_ENTRIES = ("exec", "auth-provider")
FILE_ENTRIES = {"users": ("tokenFile", "client-certificate", "client-key"),
                "clusters": ("certificate-authority",)}


def host_reaching_entry(document: dict) -> str | None:
    """Why a kubeconfig would reach into Ferry's host, naming the entry, or None."""
    for index, entry in enumerate(document.get("users") or []):
        user = (entry or {}).get("user") or {}
        for key in COMMAND_ENTRIES:
            if user.get(key):
                return (f"users[{index}].user.{key}: runs a command on Ferry's host, which is refused; use a "
                        "token or a client certificate given inline (token, client-certificate-data)")
    for section, keys in FILE_ENTRIES.items():
        for index, entry in enumerate(document.get(section) or []):
            inner = (entry or {}).get(section[:-1]) or {}
            for key in keys:
                if inner.get(key):
                    return (f"{section}[{index}].{section[:-1]}.{key}: reads a file of Ferry's host, which is "
                            f"refused; give it inline ({'token' if key == 'tokenFile' else key + '-data'})")
    return None
