"""How the placer talks to a pool's instances (docs/mesh.md): two kinds of server, one way of speaking.

- `ModelServerPool`: Ferry's model server in pool mode (processors/modelserver/pool.py): `GET /ferry/pool` says
  what it holds, with each model's resident memory and request count; `POST /v2/repository/models/<key>/load`
  (parameters: where the files are, the name and version to answer as) and `/unload`. Its routes check the
  pool's token.
- `AdapterPool`: the vLLM engine of an adapter pool, with runtime LoRA updating on: `GET /v1/models` lists the
  base model and the adapters loaded (those with a `parent`), `POST /v1/load_lora_adapter` and
  `/v1/unload_lora_adapter`. It holds at most `max_adapters` adapters, whatever their size, so each adapter is
  planned as one slot (ADAPTER_SLOT_BYTES) in a budget of that many slots.

Each answers `observe` with the same report shape: {"baseline_bytes", "models": [{"name", "state",
"memory_bytes", "requests"}]}, and raises `requests.RequestException` on a failed load or unload.
"""

import requests

from processors.llm import DEFAULT_MAX_ADAPTERS
from services.servicefile.mesh import is_adapter_pool

OBSERVE_TIMEOUT = 2.0
UNLOAD_TIMEOUT = 30.0
ADAPTER_SLOT_BYTES = 2**20  # one adapter: the planner's unit for an adapter pool


class ModelServerPool:
    def __init__(self, token: str):
        self.headers = {"Authorization": token}

    def observe(self, base: str) -> dict:
        answer = requests.get(f"{base}/ferry/pool", timeout=OBSERVE_TIMEOUT, headers=self.headers)
        answer.raise_for_status()
        return answer.json()

    def load(self, base: str, key: str, parameters: dict, timeout: float) -> int:
        """Returns the resident memory the load took."""
        return int(_post(f"{base}/v2/repository/models/{key}/load", {"parameters": parameters}, self.headers,
                         timeout).get("memory_bytes") or 0)

    def unload(self, base: str, key: str) -> None:
        _post(f"{base}/v2/repository/models/{key}/unload", {}, self.headers, UNLOAD_TIMEOUT)


class AdapterPool:
    def observe(self, base: str) -> dict:
        answer = requests.get(f"{base}/v1/models", timeout=OBSERVE_TIMEOUT)
        answer.raise_for_status()
        adapters = [entry["id"] for entry in answer.json().get("data", []) if entry.get("parent")]
        return {"baseline_bytes": 0, "models": [{"name": name, "state": "READY", "memory_bytes": ADAPTER_SLOT_BYTES,
                                                 "requests": 0} for name in adapters]}

    def load(self, base: str, key: str, parameters: dict, timeout: float) -> int:
        _post(f"{base}/v1/load_lora_adapter", {"lora_name": key, "lora_path": parameters["model_dir"]}, {}, timeout)
        return ADAPTER_SLOT_BYTES

    def unload(self, base: str, key: str) -> None:
        _post(f"{base}/v1/unload_lora_adapter", {"lora_name": key}, {}, UNLOAD_TIMEOUT)


def server_for(pool, token: str):
    return AdapterPool() if is_adapter_pool(pool.spec) else ModelServerPool(token)


def adapter_budget_bytes(spec: dict) -> int:
    return int((spec.get("model_mesh") or {}).get("max_adapters") or DEFAULT_MAX_ADAPTERS) * ADAPTER_SLOT_BYTES


def _post(url: str, body: dict, headers: dict, timeout: float) -> dict:
    answer = requests.post(url, json=body, timeout=timeout, headers=headers)
    if answer.status_code >= 400:
        raise requests.HTTPError(_error_of(answer), response=answer)
    try:
        return answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    except ValueError:
        return {}


def _error_of(answer) -> str:
    try:
        body = answer.json()
    except ValueError:
        return f"{answer.status_code}: {answer.text[:300]}"
    problem = body.get("error") if isinstance(body, dict) else None
    if isinstance(problem, dict):  # the OpenAI shape vLLM answers with
        problem = problem.get("message")
    return f"{answer.status_code}: {problem or answer.text[:300]}"
