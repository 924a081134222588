"""Ferry's model server: kserve's ModelServer plus what Ferry needs of it.

- It listens only once the model is loaded *and* warmed up, so
  /v2/health/ready answers (true) exactly when the instance can take traffic.
- It binds the host it is told (loopback for local instances), not always
  0.0.0.0, and does not start kserve's gRPC server (its fixed port would clash
  between instances on one host).
- It answers EAS predictions like the V1 predict route, on `POST /` (the
  gateway strips `/api/predict/<service>` as EAS does) and, for direct
  connections, on `/api/predict/<model>[/<rest>]` (served as `/<rest>`, so
  V1 and V2 routes work under it too); the built-in processors read a body
  with "inputs" as a V2 request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

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

from contracts.auth import DEFAULT_MAX_SKEW, Replays, check, signed_resources  # Django-free: both check alike
from contracts.paths import EAS_PREFIX, BadPath
from contracts.paths import parse as parse_path


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


# What a probe may call without the token: the answers say alive or ready and nothing else.
OPEN_PATHS = frozenset({"/", "/v2/health/live", "/v2/health/ready", "/metrics"})
OPEN_METHODS = frozenset({"GET", "HEAD"})


class EasEntry:
    """What EAS puts in front of an instance, and the instance's only door.

    - Paths: a direct connection (eas-prediction's) posts to http://<instance>/api/predict/<service>[/<rest>];
      such a path is served as `/<rest>`, `/` for none, exactly as the gateway forwards it (contracts/paths.py).
    - Credentials: every route but the probes' (OPEN_PATHS, GET/HEAD) needs the service's token, plainly,
      as Bearer or as an EAS signature, checked by the gateway's own code with the same replay defence: V1,
      V2 (inference, metadata, the model repository's load/unload) and EAS alike, so an instance's address
      is never a credential. The gateway, which has checked its caller already, sends the service token
      itself (gateway/proxy.py replaces the caller's Authorization with it); a direct caller presents it.
      The token comes from the environment (FERRY_SERVICE_TOKEN), never the command line. Without a token
      (a server started by hand) nothing is checked, and the server says so when it starts.
    - A pool instance (pool.py, `serves` given) takes /api/predict/<key> for any key it has loaded, once the
      credentials are checked, and tells the EAS route which key was named (pool.MODEL_SCOPE_KEY).
    """

    def __init__(self, app, model_name: str, token: str | None, serves=None):
        self.app = app
        self.model_name = model_name
        self.token = token.encode() if token else None
        self.replays = Replays()
        self.serves = serves  # pool mode: key -> whether it is loaded here

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = (scope.get("raw_path") or b"").decode("latin-1") or scope["path"]
        target = None
        if path.startswith(EAS_PREFIX):
            try:
                target = parse_path(path, None)
            except BadPath as problem:
                return await _answer(send, 404, str(problem))
            if self.serves is None and target.name != self.model_name:
                return await _answer(send, 404, f"this instance serves {self.model_name}, not {target.name}")
        elif self.token is None or (path.split("?", 1)[0] in OPEN_PATHS and scope["method"] in OPEN_METHODS):
            return await self.app(scope, receive, send)
        authorization = dict(scope["headers"]).get(b"authorization")
        # Only a signature covers the body: other calls are refused before a byte of it is read.
        body = await _read_body(receive) if authorization and authorization[:4] == b"EAS " else b""
        if body is None:  # the client left
            return None
        problem = self._credentials_problem(scope, body, target, path)
        if problem:
            return await _answer(send, 401, problem)
        if target is not None:
            if self.serves is not None:
                from .pool import MODEL_SCOPE_KEY, not_loaded_message

                if not self.serves(target.name):
                    return await _answer(send, 404, not_loaded_message(target.name))
                scope = {**scope, MODEL_SCOPE_KEY: target.name}
            scope = {**scope, "path": unquote(target.upstream), "raw_path": target.upstream.encode("latin-1")}
        await self.app(scope, _replaying(body, receive) if body else receive, send)

    def _credentials_problem(self, scope, body: bytes, target, path: str) -> str | None:
        if self.token is None:
            return None
        headers = dict(scope["headers"])
        query = scope.get("query_string") or b""
        if target is not None:
            resources = target.resources(query)
        else:
            resources = signed_resources(self.model_name, "" if path == "/" else path.split("?", 1)[0],
                                         query.decode("latin-1"))
        return check((self.token,), headers.get(b"authorization"), method=scope["method"], body=body,
                     content_type=headers.get(b"content-type", b""), date=headers.get(b"date", b""),
                     content_md5=headers.get(b"content-md5"), resources=resources, max_skew=DEFAULT_MAX_SKEW,
                     replays=self.replays)


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replaying(body: bytes, receive):
    """A `receive` that gives the body already read, then what the client sends next (its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


async def _answer(send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def add_eas_routes(dataplane: DataPlane, model_name: str, serves=None) -> None:
    """EAS predictions on `POST /` (what the gateway sends for /api/predict/<service>) and, through EasEntry,
    on every path under /api/predict/<model_name> (direct connections). A pool (`serves` given) answers for
    every key it has loaded under /api/predict/<key>, and `POST /` names no model there."""

    async def eas_predict(request: Request) -> Response:
        if serves is None:
            target = model_name
        else:
            from .pool import MODEL_SCOPE_KEY

            target = request.scope.get(MODEL_SCOPE_KEY)
            if target is None:
                content = orjson.dumps({"error": f"{model_name} is a pool: call /api/predict/<model> to name the "
                                                 "model"})
                return Response(content=content, status_code=404, media_type="application/json")
        return await _eas_infer(dataplane, target, request)

    app = kserve_model_server.app
    app.add_api_route("/", eas_predict, methods=["POST"], tags=["EAS"])
    token = os.environ.get("FERRY_SERVICE_TOKEN")
    if not token:
        logger.warning("FERRY_SERVICE_TOKEN is not set: every route of this server is open to anyone who can "
                       "reach it")
    app.add_middleware(EasEntry, model_name=model_name, token=token, serves=serves)


async def _eas_infer(dataplane: DataPlane, model_name: str, request: Request) -> Response:
    if not await dataplane.model_ready(model_name, True):
        raise ModelNotReady(model_name)
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
        self._register_and_check_atleast_one_model_is_ready([model])
        add_eas_routes(self.dataplane, model.name)

        async def warm_up_first() -> None:
            began = time.monotonic()
            await warm_up(model, warm_up_requests)
            if warm_up_requests:
                logger.info("warmed up with %d requests in %.3f s", len(warm_up_requests), time.monotonic() - began)

        self.listen(warm_up_first, f"model {model.name}")

    def listen(self, before_listening, what: str) -> None:
        """Run `before_listening()` (a coroutine function) on the server's event loop, then listen until
        SIGTERM or SIGINT. The dataplane and the routes must be in place: the REST routes take the dataplane
        when they are built."""
        signal.signal(signal.SIGTERM, _exit_now)
        signal.signal(signal.SIGINT, _exit_now)
        rest_server = RESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            grace_period=self.grace_period, event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
        )
        rest_server.config.host = self.host
        self._rest_server = rest_server

        async def then_listen() -> None:
            await before_listening()
            logger.info("serving %s on http://%s:%d", what, self.host, self.http_port)
            await rest_server.start()

        asyncio.run(then_listen())


def _exit_now(signum, frame) -> None:
    raise SystemExit(0)
