"""The service token in the cluster: a Secret per service, read by the model server's environment. Pure.

The token is the credential every inference route of Ferry's model server asks for (processors/modelserver/
server.py), as it is on the local cluster. The pod takes it with `valueFrom.secretKeyRef`, so it is never a
value in a manifest, and the Secret is applied by the driver only: `render()` (what the manifests endpoint and
`--dry-run` show) does not hold it. A missing Secret keeps the container from starting rather than serving
without a token.
"""

from __future__ import annotations

import base64

from .desired import ServiceDesired
from .meta import dns_name, service_labels

TOKEN_ENV = "FERRY_SERVICE_TOKEN"
TOKEN_KEY = "token"


def token_secret_name(desired: ServiceDesired) -> str:
    return f"{dns_name(desired.name)}-token"


def token_env(desired: ServiceDesired) -> dict:
    return {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": token_secret_name(desired), "key": TOKEN_KEY}}}


def token_secret(desired: ServiceDesired, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": token_secret_name(desired), "namespace": desired.namespace,
                     "labels": service_labels(desired)},
        "type": "Opaque",
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }
