"""The `python` processor: a user's handler module served as a kserve Model.

A handler is a Python file (the service file's `processor_entry`) defining
these functions at module level, or the same methods on a class named
`Handler` (instantiated once, without arguments). Only `predict` is required:

    def load(model_dir):       # once, before warm-up and before the instance is ready;
                               # model_dir is the fetched model_path (None without one)
    def preprocess(body):      # body: the request, decoded -> what predict takes
    def predict(data):         # -> the result
    def postprocess(result):   # -> the response

`body` is the request JSON (dict or list) as sent; a V2 request arrives as its
V2 JSON object ({"id", "inputs": [{"name", "shape", "datatype", "data"}]}); a
body that is not JSON (a Content-Type other than JSON) arrives as bytes.

The response (what postprocess returns, or predict without postprocess):
- V1 and EAS calls: a dict is sent as it is; str or bytes are sent raw;
  anything else (list, number, numpy array) is sent as {"predictions": ...};
- V2 calls: a dict with "outputs" (V2 JSON) is sent as it is; an array-like
  becomes one output tensor "output-0".

Functions may be plain (run in the worker thread pool) or `async def`.

A handler may also declare what `GET /v2/models/<name>` reports, with `inputs` and `outputs`: lists of
{"name", "datatype", "shape"} (V2 datatypes, -1 for a dimension of any size), or functions without
arguments returning one, called once after `load`. Without them the lists are empty: the server cannot
know what a handler reads.

See docs/processors.md for an example.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import get_predict_response

from .metadata import DeclarationError, DescribedModel, declared_tensors


class HandlerError(Exception):
    """The handler file cannot be used (missing, not importable, no predict)."""


def load_handler(path: str) -> object:
    """Import the handler file and return what holds its functions: a Handler
    instance, or else the module itself."""
    file = Path(path)
    if not file.is_file():
        raise HandlerError(f"handler file {file} does not exist")
    # The handler may import modules that sit next to it.
    sys.path.insert(0, str(file.parent))
    spec = importlib.util.spec_from_file_location(f"ferry_handler_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise HandlerError(f"handler file {file} failed to import: {type(error).__name__}: {error}") from error
    handler = module.Handler() if isinstance(getattr(module, "Handler", None), type) else module
    if not callable(getattr(handler, "predict", None)):
        raise HandlerError(f"handler file {file} defines no predict function (nor a Handler class with predict)")
    return handler


class PythonHandlerModel(DescribedModel):
    """Serves a handler module: load() once, then preprocess -> predict -> postprocess per request."""

    platform = "python"

    def __init__(self, name: str, *, handler_path: str, model_dir: str | None, executor: Executor):
        super().__init__(name)
        self.handler_path = handler_path
        self.model_dir = model_dir
        self.executor = executor
        self.handler: object | None = None

    def load(self) -> bool:
        self.handler = load_handler(self.handler_path)
        if callable(getattr(self.handler, "load", None)):
            self.handler.load(self.model_dir)
        try:
            self.input_types = declared_tensors(self.handler, "inputs")
            self.output_types = declared_tensors(self.handler, "outputs")
        except DeclarationError as error:
            raise HandlerError(f"handler file {self.handler_path}: {error}") from error
        self.ready = True
        return self.ready

    async def predict(self, payload, headers=None, response_headers=None):
        body = _as_body(payload)
        data = await self._call("preprocess", body)
        result = await self._call("predict", data)
        result = await self._call("postprocess", result)
        return _as_response(payload, result, self.name)

    async def _call(self, function: str, value):
        method = getattr(self.handler, function, None)
        if not callable(method):  # optional step: pass the value through
            return value
        if inspect.iscoroutinefunction(method):
            return await method(value)
        return await asyncio.get_running_loop().run_in_executor(self.executor, method, value)


def _as_body(payload):
    if isinstance(payload, InferRequest):
        body, _ = payload.to_rest()
        return body
    return payload


def _as_response(payload, result, model_name: str):
    if isinstance(payload, InferRequest):
        if isinstance(result, dict) and "outputs" in result:
            response = InferResponse.from_rest(result)
            response.model_name = response.model_name or model_name
            response.id = response.id or payload.id
            return response
        if isinstance(result, (bytes, str, dict)):
            raise InvalidInput('a V2 call needs the handler to return a V2 response dict ({"outputs": [...]}) or an array')
        return get_predict_response(payload, np.asarray(result), model_name)
    if isinstance(result, (dict, bytes, str)):
        return result
    if isinstance(result, np.ndarray):
        result = result.tolist()
    return {"predictions": result}
