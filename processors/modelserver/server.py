"""Ferry's model server: kserve's ModelServer plus what Ferry needs of it.

- It listens only once the model is loaded *and* warmed up, so
  /v2/health/ready answers (true) exactly when the instance can take traffic.
- It binds the host it is told (loopback for local instances), not always
  0.0.0.0, and does not start kserve's gRPC server (its fixed port would clash
  between instances on one host).
- It answers EAS-style `POST /api/predict/<model>` like the V1 predict route,
  because Ferry's gateway forwards EAS calls unchanged; the built-in
  processors read a body with "inputs" as a V2 request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from kserve import ModelServer
from kserve import model_server as kserve_model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import ModelNotReady
from kserve.logging import logger
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer


class WarmUpError(Exception):
    """The warm-up file is unreadable, or a warm-up request failed."""


def read_warm_up_requests(path: str) -> list:
    """The request bodies of a warm-up file: a JSON list of request bodies (V1
    or V2 for the built-in processors); one object is read as a list of one.
    `path` may be a directory holding exactly one file, as a fetched
    warm_up_data_path is."""
    file = Path(path)
    if file.is_dir():
        files = [child for child in file.iterdir() if child.is_file()]
        if len(files) != 1:
            raise WarmUpError(f"warm-up directory {file} holds {len(files)} files; exactly one is needed")
        file = files[0]
    try:
        requests = json.loads(file.read_text())
    except FileNotFoundError:
        raise WarmUpError(f"warm-up file {file} does not exist") from None
    except (OSError, ValueError) as error:
        raise WarmUpError(f"warm-up file {file} is not readable JSON: {error}") from error
    # Built-in processors check each body when it runs (V1 "instances" or V2 "inputs"); a python
    # handler may take any JSON.
    return requests if isinstance(requests, list) else [requests]


async def warm_up(model, requests: list) -> None:
    """Send each warm-up request through the model, as a real call would go."""
    for index, body in enumerate(requests):
        began = time.monotonic()
        try:
            await model(body, headers={})
        except Exception as error:
            raise WarmUpError(f"warm-up request {index} failed: {type(error).__name__}: {error}") from error
        logger.info("warm-up request %d of %d took %.3f s", index + 1, len(requests), time.monotonic() - began)


async def _credentials_problem(model_name: str, request: Request) -> str | None:
    """EAS direct-connection clients call instances themselves, with the same token or signature as at the
    gateway (which always forwards the token). No FERRY_SERVICE_TOKEN (a bare test server): no check."""
    token = os.environ.get("FERRY_SERVICE_TOKEN")
    if not token:
        return None
    from gateway.auth import check  # Django-free: the gateway's own check, so both agree

    header = request.headers.get
    return check((token.encode(),), (header("authorization") or "").encode() or None, method="POST",
                 body=await request.body(), content_type=(header("content-type") or "").encode(),
                 date=(header("date") or "").encode(), content_md5=(header("content-md5") or "").encode() or None,
                 resources=(f"/api/predict/{model_name}",), max_skew=900.0)


def add_eas_route(dataplane: DataPlane) -> None:
    """Add `POST /api/predict/{model_name}` to kserve's FastAPI app."""

    async def eas_predict(model_name: str, request: Request) -> Response:
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        problem = await _credentials_problem(model_name, request)
        if problem:
            return Response(content=orjson.dumps({"error": problem}), status_code=401, media_type="application/json")
        headers = dict(request.headers.items())
        body, attributes = dataplane.decode(body=await request.body(), headers=headers)
        # Passed on as decoded: the built-in processors read a body with "inputs" as V2, while a python
        # handler gets the JSON it was sent.
        response, response_headers = await dataplane.infer(model_name=model_name, request=body, headers=headers)
        response, more_headers = dataplane.encode(
            model_name=model_name, response=response, headers=headers, req_attributes=attributes
        )
        response_headers.update(more_headers)
        response_headers.pop("content-length", None)
        if isinstance(response, (bytes, str)):
            return Response(content=response, headers=response_headers)
        if isinstance(response, AsyncIterator):
            return StreamingResponse(content=response)
        content = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        return Response(content=content, media_type="application/json", headers=response_headers)

    kserve_model_server.app.add_api_route("/api/predict/{model_name}", eas_predict, methods=["POST"], tags=["EAS"])


class FerryModelServer(ModelServer):
    def __init__(self, *, host: str, http_port: int, grace_period: int):
        super().__init__(
            http_port=http_port, enable_grpc=False, workers=1, grace_period=grace_period,
            enable_latency_logging=False,
        )
        self.host = host

    def serve(self, model, warm_up_requests: list) -> None:
        """Warm the (loaded) model up, then listen until SIGTERM or SIGINT.

        A stop signal exits at once before listening; while listening,
        uvicorn finishes requests in flight (up to the grace period) first.
        """
        signal.signal(signal.SIGTERM, _exit_now)
        signal.signal(signal.SIGINT, _exit_now)
        self._register_and_check_atleast_one_model_is_ready([model])
        add_eas_route(self.dataplane)
        rest_server = RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            grace_period=self.grace_period, event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
        )
        rest_server.config.host = self.host
        self._rest_server = rest_server
        asyncio.run(self._warm_up_then_listen(model, warm_up_requests, rest_server))

    async def _warm_up_then_listen(self, model, warm_up_requests: list, rest_server: RESTServer) -> None:
        began = time.monotonic()
        await warm_up(model, warm_up_requests)
        if warm_up_requests:
            logger.info("warmed up with %d requests in %.3f s", len(warm_up_requests), time.monotonic() - began)
        logger.info("serving model %s on http://%s:%d", model.name, self.host, self.http_port)
        await rest_server.start()


def _exit_now(signum, frame) -> None:
    raise SystemExit(0)
