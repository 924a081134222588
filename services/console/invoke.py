"""The invoke panel: the console's server sends a test request to the service and times the answer.

Today the request goes straight to a ready instance (the local cluster's loopback port), with the service
token as EAS clients send it. When the gateway runs, `target_url` is the one place to point at it instead.
"""

import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from services import selectors
from services.models import Service

TIMEOUT_SECONDS = 15
MAX_SHOWN_BYTES = 64 * 1024
PROTOCOLS = {
    "eas": ("EAS  POST /api/predict/<service>", "/api/predict/{name}"),
    "v1": ("KServe V1  POST /v1/models/<service>:predict", "/v1/models/{name}:predict"),
    "v2": ("Open Inference (V2)  POST /v2/models/<service>/infer", "/v2/models/{name}/infer"),
}


@dataclass
class Answer:
    ok: bool
    status: int | None
    latency_ms: float | None
    body: str
    content_type: str
    target: str
    error: str = ""


def target_url(service: Service, protocol: str, instance_name: str = "") -> tuple[str, str] | None:
    """(URL, instance name) of a ready instance, preferring the version with most traffic; None if none."""
    instances = [i for i in selectors.instances_of(service) if i.ready and i.port]
    if instance_name:
        instances = [i for i in instances if i.name == instance_name]
    if not instances:
        return None
    instance = max(instances, key=lambda i: (i.version.weight, i.version.number))
    path = PROTOCOLS.get(protocol, PROTOCOLS["eas"])[1].format(name=service.name)
    return f"http://{instance.host or '127.0.0.1'}:{instance.port}{path}", instance.name


def send(service: Service, body: str, protocol: str, instance_name: str = "") -> Answer:
    found = target_url(service, protocol, instance_name)
    if found is None:
        return Answer(False, None, None, "", "", "", "No ready instance to send the request to yet.")
    url, name = found
    shown_target = f"{name} ({urlsplit(url).path})"
    headers = {"Content-Type": "application/json", "Authorization": selectors.service_token(service)}
    began = time.perf_counter()
    try:
        response = requests.post(url, data=body.encode(), headers=headers, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return Answer(False, None, round((time.perf_counter() - began) * 1000, 1), "", "", shown_target,
                      f"The request failed: {exc}")
    latency = round((time.perf_counter() - began) * 1000, 1)
    return Answer(response.ok, response.status_code, latency, _pretty(response.content[:MAX_SHOWN_BYTES]),
                  response.headers.get("Content-Type", ""), shown_target)


def _pretty(content: bytes) -> str:
    text = content.decode(errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def sample_body(service: Service) -> str:
    """A skeleton to fill in. (Not the service's warm-up file: the console must not read files by a path
    a user wrote.)"""
    return json.dumps({"instances": [[]]})
