"""How a request body becomes what a model takes, whatever route it came by.

kserve decodes V1 bodies to dicts, V2 bodies (on /v2/.../infer) to InferRequest,
and passes a body undecoded when its Content-Type is not JSON. EAS clients call
`/api/predict/<name>` with V1 or V2 JSON, often without a JSON Content-Type.
"""

from __future__ import annotations

import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError


def as_request(body, model_name: str):
    """An object with "inputs" (and no "instances") as a V2 InferRequest;
    anything else (a V1 dict, an InferRequest, bytes) as it is."""
    if not (isinstance(body, dict) and "inputs" in body and "instances" not in body):
        return body
    try:
        return InferRequest.from_inference_request(InferenceRequest.model_validate(body), model_name)
    except ValidationError as error:
        raise InvalidInput(f"not a valid V2 inference request: {error}") from error


def as_json_request(body, model_name: str):
    """Like as_request, but a body left undecoded (bytes) is read as JSON: the
    built-in processors take nothing else."""
    if isinstance(body, (bytes, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput('the body is not JSON: send V1 {"instances": [...]} or V2 {"inputs": [...]}') from None
    body = as_request(body, model_name)
    if isinstance(body, dict) and "instances" not in body:
        raise InvalidInput('expected a JSON object with "instances" (V1) or "inputs" (V2)')
    if not isinstance(body, (dict, InferRequest)):
        raise InvalidInput('expected a JSON object with "instances" (V1) or "inputs" (V2)')
    return body
