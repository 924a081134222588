"""Pool mode: `python -m processors.modelserver --pool --model-name <pool> --processor <p> --http-port P`.

A pool instance starts with no model and listens at once (/v2/health/ready is 200 as soon as it listens: an
empty instance is ready to take loads). The control plane's placer loads and unloads models on it through the
V2 model-repository API, and the gateway sends each request to an instance that has the model loaded:

    POST /v2/repository/models/{key}/load     {"parameters": {"model_dir" | "model_uri", "model_entry",
                                                "handler", "served_name", "version"}}
        -> 200 {"name": key, "loaded": true, "memory_bytes": N, "load_seconds": x}
    POST /v2/repository/models/{key}/unload   -> 200 {"name": key, "unloaded": true}
    POST /v2/repository/index                 -> [{"name", "version", "state", "reason"}]  (Triton's shape)
    GET  /ferry/pool                          -> what the placer polls: the instance's memory and its models

These routes are added before kserve's own, so they answer in their place (kserve's load route would load
nothing: its repository has no model directory). A loaded model answers by its key on V1, V2 and EAS
(`/api/predict/<key>[/<rest>]`) and names itself by its served_name and version in its answers; a key that is
not loaded answers 404 "model <key> is not loaded on this instance" (PoolDataPlane).

`model_dir` is a directory (or file) on this host (the local cluster, which fetched it); `model_uri` a URL the
pool fetches itself into its model cache (a Kubernetes pod: FERRY_MODEL_CACHE_DIR), under the fetch policy of
the init container's fetcher, read from FERRY_FETCH_ALLOWED_NETWORKS, FERRY_FETCH_MAX_BYTES and
FERRY_FETCH_TIMEOUT_SECONDS: no local path, no non-public network unless listed.

Loads run one at a time in their own thread: the event loop keeps serving the loaded models meanwhile, and the
resident memory a load adds (RSS after minus before) is the model's alone, not another load's too.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import ipaddress
import os
import tempfile
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import orjson
import psutil
from fastapi import Request, Response
from kserve.errors import ModelNotFound
from kserve.logging import logger
from kserve.protocol.infer_type import InferResponse

from .metadata import FerryDataPlane

LOADING, READY, UNAVAILABLE = "LOADING", "READY", "UNAVAILABLE"
# What a pool imports before it listens, so that a load's memory is its model's, not its framework's.
FRAMEWORK_MODULES = {
    "sklearn": ("joblib", "sklearn", "sklearn.linear_model", "sklearn.ensemble", "sklearn.tree",
                "sklearn.pipeline", "sklearn.preprocessing"),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "onnx": ("onnxruntime",),
    "python": (),
}
# The scope key by which EasEntry tells the EAS route which model an /api/predict/<key> call names.
MODEL_SCOPE_KEY = "ferry.pool_model"


class LoadRefused(Exception):
    """A load or unload that cannot be done: `status` (400, 404, 409) and a message naming what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class NotLoaded(ModelNotFound):
    """kserve answers ModelNotFound (and so this) with 404 {"error": str(exception)}."""

    def __init__(self, key: str):
        super().__init__(key)
        self.reason = not_loaded_message(key)


def not_loaded_message(key: str) -> str:
    return f"model {key} is not loaded on this instance"


@dataclass(frozen=True)
class LoadRequest:
    model_dir: str | None
    model_entry: str | None
    handler: str | None
    served_name: str
    version: str
    model_uri: str | None = None

    @property
    def source(self) -> tuple:
        """What makes two loads of a key the same load."""
        return (self.model_dir, self.model_uri, self.model_entry, self.handler)

    @property
    def where(self) -> str:
        return self.model_dir or self.model_uri or self.handler or ""


def parse_load_request(body: bytes, key: str, processor: str) -> LoadRequest:
    """The load body, checked (pure): LoadRefused(400) naming the parameter that is wrong."""
    try:
        document = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as error:
        raise LoadRefused(400, f"the load body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise LoadRefused(400, 'the load body must be a JSON object: {"parameters": {"model_dir": ...}}')
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise LoadRefused(400, "parameters must be a JSON object")
    values = {}
    for name in ("model_dir", "model_uri", "model_entry", "handler", "served_name", "version"):
        value = parameters.get(name)
        if value is not None and not isinstance(value, str):
            raise LoadRefused(400, f"parameters.{name} must be a string, not {type(value).__name__}")
        if name != "version" and value == "":
            value = None
        values[name] = value
    for name in ("model_dir", "handler"):
        if values[name] is not None:
            if not os.path.isabs(values[name]):
                raise LoadRefused(400, f"parameters.{name} must be an absolute path (got {values[name]})")
            values[name] = os.path.normpath(values[name])
    if values["model_dir"] is not None and values["model_uri"] is not None:
        raise LoadRefused(400, "parameters.model_uri: give model_dir (a path here) or model_uri (a URL), not both")
    if values["model_uri"] is not None and urlparse(values["model_uri"]).scheme.lower() in ("", "file"):
        raise LoadRefused(400, f"parameters.model_uri must be a URL to fetch (http(s)://, s3://, oss://), not a "
                               f"local path ({values['model_uri']}): give a local path as model_dir")
    if processor == "python":
        if values["handler"] is None:
            raise LoadRefused(400, "parameters.handler is required by the python processor: the handler file")
    else:
        if values["handler"] is not None:
            raise LoadRefused(400, f"parameters.handler is for the python processor only; this pool serves "
                                   f"{processor} models")
        if values["model_dir"] is None and values["model_uri"] is None:
            raise LoadRefused(400, "parameters.model_dir is required: the directory (or file) of the model "
                                   "(or parameters.model_uri, a URL to fetch it from)")
    if values["model_entry"] is not None and values["model_dir"] is None and values["model_uri"] is None:
        raise LoadRefused(400, "parameters.model_entry needs parameters.model_dir")
    return LoadRequest(values["model_dir"], values["model_entry"], values["handler"],
                       values["served_name"] or key, values["version"] or "", values["model_uri"])


def fetch_settings(environ) -> dict:
    """The pool's own fetches (model_uri): the cache directory and the policy's limits, from the environment
    the pod is given (deployer/kubernetes/pool.py); ValueError naming the variable that is wrong."""
    networks = [net.strip() for net in environ.get("FERRY_FETCH_ALLOWED_NETWORKS", "").split(",") if net.strip()]
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"FERRY_FETCH_ALLOWED_NETWORKS: {network!r} is not a CIDR network") from None
    limits = {}
    for variable, kind, key in (("FERRY_FETCH_MAX_BYTES", int, "max_bytes"),
                                ("FERRY_FETCH_TIMEOUT_SECONDS", float, "timeout_seconds")):
        text = environ.get(variable, "").strip()
        try:
            limits[key] = kind(text) if text else None
        except ValueError:
            raise ValueError(f"{variable}: {text!r} is not a number") from None
        if limits[key] is not None and limits[key] <= 0:
            raise ValueError(f"{variable} must be positive, not {text}")
    cache_dir = environ.get("FERRY_MODEL_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "ferry-pool-models")
    return {"cache_dir": cache_dir, "allowed_networks": networks, **limits}


@dataclass
class Entry:
    """One key of the pool: its load, its state and what it cost."""

    key: str
    request: LoadRequest
    state: str = LOADING
    reason: str = ""
    memory_bytes: int = 0
    load_seconds: float = 0.0
    loaded_at: float = 0.0
    requests: int = 0
    loading: asyncio.Future | None = field(default=None, repr=False)

    def loaded_answer(self) -> dict:
        return {"name": self.key, "loaded": True, "memory_bytes": self.memory_bytes,
                "load_seconds": round(self.load_seconds, 3)}


def resident_bytes() -> int:
    return psutil.Process().memory_info().rss


class Pool:
    """The models of one pool instance, by key. Every method runs on the event loop but `_fetched` (in a fetch
    thread: downloads may overlap, and do not hold up loads) and `_load_now` (in the load thread)."""

    def __init__(self, name: str, processor: str, registry, predict_executor: Executor):
        self.name = name
        self.processor = processor
        self.registry = registry  # kserve's ModelRepository: what the dataplane serves
        self.predict_executor = predict_executor
        self.load_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        self.fetch_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fetch")
        self.entries: dict[str, Entry] = {}
        self.baseline_bytes = 0
        self.fetch = fetch_settings({})  # run_pool sets the environment's

    def serves(self, key: str) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.state == READY

    async def load(self, key: str, request: LoadRequest) -> dict:
        entry = self.entries.get(key)
        if entry is not None and entry.state != UNAVAILABLE:
            if entry.request.source != request.source:
                doing = "loaded" if entry.state == READY else "loading"
                raise LoadRefused(409, f"model {key} is already {doing} from {entry.request.where}; unload it "
                                       f"before loading it from {request.where}")
            if entry.loading is not None:  # the same load under way: answer when it ends, load once
                await asyncio.shield(entry.loading)
            return entry.loaded_answer()
        entry = Entry(key, request)
        self.entries[key] = entry
        # A task of its own: the load goes on (and is recorded) even when the caller that asked for it leaves.
        entry.loading = asyncio.ensure_future(self._load(entry))
        entry.loading.add_done_callback(_retrieved)
        await asyncio.shield(entry.loading)
        return entry.loaded_answer()

    async def _load(self, entry: Entry) -> None:
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            model_dir = entry.request.model_dir
            if entry.request.model_uri:
                model_dir = await loop.run_in_executor(self.fetch_executor, self._fetched, entry.request.model_uri)
            model, memory = await loop.run_in_executor(self.load_executor, self._load_now, entry.request, model_dir)
        except Exception as error:
            refusal = error if isinstance(error, LoadRefused) else \
                LoadRefused(500, f"loading {entry.key} failed: {type(error).__name__}: {error}")
            entry.state, entry.reason, entry.loading = UNAVAILABLE, refusal.message, None
            logger.warning("pool %s: could not load %s: %s", self.name, entry.key, refusal.message)
            raise refusal from None
        model.enable_latency_logging = False
        model.start()
        self.registry.update(model, entry.key)
        entry.state, entry.memory_bytes, entry.load_seconds = READY, memory, time.monotonic() - began
        entry.loaded_at, entry.loading = time.time(), None
        logger.info("pool %s: loaded %s (%s, served as %s) in %.3f s, %d bytes resident", self.name, entry.key,
                    entry.request.where, entry.request.served_name, entry.load_seconds, memory)

    def _load_now(self, request: LoadRequest, model_dir: str | None):
        """In the load thread: build and load the model from `model_dir` (given, or fetched); (model, resident
        bytes it added)."""
        from .handler import HandlerError, PythonHandlerModel
        from .models import BUILTIN_MODELS, ModelFileError

        before = resident_bytes()
        if request.model_dir and not os.path.exists(request.model_dir):
            raise LoadRefused(400, f"parameters.model_dir: {request.model_dir} does not exist")
        if self.processor == "python":
            model = PythonHandlerModel(request.served_name, handler_path=request.handler,
                                       model_dir=model_dir, executor=self.predict_executor)
            blamed, source = "handler", request.handler
        else:
            model = BUILTIN_MODELS[self.processor](request.served_name, model_dir=model_dir,
                                                   model_entry=request.model_entry, executor=self.predict_executor)
            blamed = "model_uri" if request.model_uri else "model_dir"
            source = request.where
        try:
            model.load()
        except (ModelFileError, HandlerError) as error:
            problem = f"parameters.{blamed}: {error}"
        except Exception as error:  # the framework's (or the handler's load's) reason, as it gave it
            problem = f"parameters.{blamed}: cannot load the {self.processor} model from {source}: " \
                      f"{type(error).__name__}: {error}"
        else:
            return model, max(0, resident_bytes() - before)
        del model
        gc.collect()  # give back what the failed load took before the next one measures
        raise LoadRefused(400, problem)

    def _fetched(self, url: str) -> str:
        """In a fetch thread: the local directory of what `url` names, fetched into the cache (once: the cache
        revalidates and downloads nothing when the source is unchanged)."""
        from processors.fetch import ModelFetchError, fetch_model
        from processors.fetch_policy import FetchPolicy

        settings = dict(self.fetch)
        cache_dir = Path(settings.pop("cache_dir"))
        policy = FetchPolicy.build(file_roots=(), forbidden_dirs=(), **settings)
        try:
            return str(fetch_model(url, cache_dir=cache_dir, policy=policy))
        except ModelFetchError as error:
            raise LoadRefused(400, f"parameters.model_uri: could not fetch {error}") from None

    async def unload(self, key: str) -> dict:
        entry = self.entries.get(key)
        if entry is None:
            raise LoadRefused(404, not_loaded_message(key))
        if entry.loading is not None:  # unload what is being loaded once it is
            try:
                await asyncio.shield(entry.loading)
            except LoadRefused:
                pass
        if self.entries.get(key) is not entry:  # another unload took it meanwhile
            raise LoadRefused(404, not_loaded_message(key))
        del self.entries[key]
        if entry.state == READY:
            # Requests already running hold the model and finish; new ones find no model (404).
            self.registry.unload(key)
            # Dropping the last reference frees most of a model at once; the collection (cycles) runs in the
            # load thread, between loads' measurements, and the answer does not wait for a load under way.
            self.load_executor.submit(gc.collect)
        logger.info("pool %s: unloaded %s", self.name, key)
        return {"name": key, "unloaded": True}

    def index(self, ready_only: bool = False) -> list[dict]:
        return [{"name": e.key, "version": e.request.version, "state": e.state, "reason": e.reason}
                for e in self.entries.values() if e.state == READY or not ready_only]

    def report(self) -> dict:
        """What the placer polls every second or so: no more than a read of /proc and this dict."""
        return {
            "pool": self.name, "processor": self.processor, "baseline_bytes": self.baseline_bytes,
            "rss_bytes": resident_bytes(),
            "models": [{"name": e.key, "version": e.request.version, "served_name": e.request.served_name,
                        "state": e.state, "memory_bytes": e.memory_bytes, "loaded_at": e.loaded_at,
                        "requests": e.requests} for e in self.entries.values()],
        }


def _retrieved(task: asyncio.Future) -> None:
    """Marks a failed load's exception as seen: its callers got it, or left."""
    if not task.cancelled():
        task.exception()


class PoolDataPlane(FerryDataPlane):
    """The dataplane of a pool: a key not loaded is NotLoaded (404 naming it); answers carry the served name
    and version; each answered request is counted for /ferry/pool."""

    def __init__(self, model_registry, pool: Pool):
        super().__init__(model_registry=model_registry)
        self.pool = pool

    def _loaded(self, name: str) -> None:
        if self._model_registry.get_model(name) is None:
            raise NotLoaded(name)

    def get_model_from_registry(self, name: str):
        self._loaded(name)
        return super().get_model_from_registry(name)

    async def get_model(self, name: str):
        self._loaded(name)
        return await super().get_model(name)

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        self._loaded(model_name)
        return await super().model_ready(model_name, disable_predictor_health_check)

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        entry = self.pool.entries.get(model_name)
        if entry is None:
            return metadata
        versions = [entry.request.version] if entry.request.version else []
        return {**metadata, "name": entry.request.served_name, "versions": versions}

    async def infer(self, model_name: str, request, headers=None):
        entry = self.pool.entries.get(model_name)
        response, response_headers = await super().infer(model_name, request, headers)
        if entry is not None:
            entry.requests += 1
            if isinstance(response, InferResponse) and entry.request.version:
                response.model_version = entry.request.version
        return response, response_headers


def add_pool_routes(app, pool: Pool) -> None:
    """The repository routes and /ferry/pool, ahead of kserve's routes (the first route that matches answers)."""

    async def load(key: str, request: Request) -> Response:
        try:
            load_request = parse_load_request(await request.body(), key, pool.processor)
            return _json(200, await pool.load(key, load_request))
        except LoadRefused as refusal:
            return _json(refusal.status, {"error": refusal.message})

    async def unload(key: str) -> Response:
        try:
            return _json(200, await pool.unload(key))
        except LoadRefused as refusal:
            return _json(refusal.status, {"error": refusal.message})

    async def index(request: Request) -> Response:
        body = await request.body()
        try:
            document = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as error:
            return _json(400, {"error": f"the index body is not JSON: {error}"})
        ready = document.get("ready", False) if isinstance(document, dict) else None
        if not isinstance(ready, bool):
            return _json(400, {"error": 'the index body must be a JSON object, with "ready" a boolean if given'})
        return _json(200, pool.index(ready_only=ready))

    async def report() -> Response:
        return _json(200, pool.report())

    async def not_loaded(_request, error: NotLoaded) -> Response:
        # kserve's handler for ModelNotFound logs a traceback; a key not loaded here is an ordinary answer.
        return _json(404, {"error": str(error)})

    app.add_api_route("/v2/repository/models/{key}/load", load, methods=["POST"], tags=["pool"])
    app.add_api_route("/v2/repository/models/{key}/unload", unload, methods=["POST"], tags=["pool"])
    app.add_api_route("/v2/repository/index", index, methods=["POST"], tags=["pool"])
    app.add_api_route("/ferry/pool", report, methods=["GET"], tags=["pool"])
    app.add_exception_handler(NotLoaded, not_loaded)


def _json(status: int, content) -> Response:
    return Response(content=orjson.dumps(content), status_code=status, media_type="application/json")


def import_framework(processor: str) -> None:
    """Imports what the pool's models need before it listens; ImportError names the module missing."""
    for module in FRAMEWORK_MODULES[processor]:
        importlib.import_module(module)


def run_pool(args, started: float, pooled: dict | None = None) -> None:
    """Serve an empty pool until SIGTERM or SIGINT (`started`, `pooled`: as for __main__.run)."""
    from kserve import model_server as kserve_model_server

    from .__main__ import fail, quiet_kserve
    from .server import FerryModelServer, add_eas_routes

    server = FerryModelServer(host=args.host, http_port=args.http_port, grace_period=args.grace_period)
    quiet_kserve()
    try:
        import_framework(args.processor)
    except ImportError as error:
        fail(f"the {args.processor} processor cannot run here: {error}")
    predict_executor = ThreadPoolExecutor(max_workers=args.worker_threads, thread_name_prefix="predict")
    pool = Pool(args.model_name, args.processor, server.registered_models, predict_executor)
    try:
        pool.fetch = fetch_settings(os.environ)
    except ValueError as error:
        fail(str(error))
    server.dataplane = PoolDataPlane(server.registered_models, pool)
    add_pool_routes(kserve_model_server.app, pool)
    add_eas_routes(server.dataplane, args.model_name, serves=pool.serves)
    logger.info("pool %s (%s) ready to load models, %.3f s after the %s", args.model_name, args.processor,
                time.monotonic() - started, "process started" if pooled is None else "assignment")

    async def measure_baseline() -> None:
        pool.baseline_bytes = resident_bytes()

    server.listen(measure_baseline, f"pool {args.model_name} ({args.processor})")
