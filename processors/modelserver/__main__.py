"""`python -m processors.modelserver`: run one instance of a built-in processor.

The node agent starts this with the command from processors.registry.local_launch.
Exit status 1 with a one-line reason on stderr when the model, the handler or
the warm-up file cannot be used; 0 after SIGTERM or SIGINT.

`python -m processors.modelserver --pool --model-name <pool> --processor <p> --http-port P` is the pool
mode (pool.py): no model at start; the placer loads and unloads models through the model-repository API.

`python -m processors.modelserver --standby` is the standby mode of the node
agent's warm pool (standby.py): it imports the libraries, then waits to be
given exactly the arguments above and goes on as `main` would.
"""

from __future__ import annotations

import argparse
import sys
import time

PROCESSORS = ("sklearn", "xgboost", "lightgbm", "onnx", "python")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m processors.modelserver",
        description="Ferry's built-in model server (KServe V1 + V2 protocols, EAS /api/predict, /metrics).",
        allow_abbrev=False,
    )
    parser.add_argument("--pool", action="store_true",
                        help="start with no model; models are loaded by POST /v2/repository/models/<key>/load")
    parser.add_argument("--model-name", required=True,
                        help="name the model is served under (the service's name); with --pool, the pool's name")
    parser.add_argument("--processor", required=True, choices=PROCESSORS)
    parser.add_argument("--model-dir", help="directory holding the model (or the model file); optional for python")
    parser.add_argument("--model-entry", help="the model file inside --model-dir, when it holds several")
    parser.add_argument("--handler", help="python processor: the handler module file")
    parser.add_argument("--warmup-file", help="JSON list of V1/V2 request bodies run before the server listens")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--worker-threads", type=int, default=5, help="threads that run predictions")
    parser.add_argument("--grace-period", type=int, default=30, help="seconds to finish requests on SIGTERM")
    parser.add_argument("--max-batch-size", type=int,
                        help="batch concurrent requests (rpc.batching): at most this many rows per model call")
    parser.add_argument("--max-batch-timeout-ms", type=float,
                        help="with --max-batch-size: how long the first request of a batch waits for others")
    args = parser.parse_args(argv)
    if args.max_batch_size is not None and args.max_batch_size < 1:
        parser.error(f"--max-batch-size must be >= 1, not {args.max_batch_size}")
    if args.max_batch_timeout_ms is not None and args.max_batch_timeout_ms < 0:
        parser.error(f"--max-batch-timeout-ms must be >= 0, not {args.max_batch_timeout_ms}")
    if args.max_batch_size is None and args.max_batch_timeout_ms is not None:
        parser.error("--max-batch-timeout-ms: only with --max-batch-size (which turns batching on)")
    if args.max_batch_size is not None and (args.pool or args.processor == "python"):
        parser.error("--max-batch-size: " + ("a pool does not batch" if args.pool else
                                             "the python processor cannot batch (a handler takes one request)"))
    if args.pool:
        given = [option for option, value in (("--model-dir", args.model_dir), ("--model-entry", args.model_entry),
                                              ("--handler", args.handler), ("--warmup-file", args.warmup_file))
                 if value]
        if given:
            parser.error(f"{', '.join(given)}: not with --pool (a pool loads each model with POST "
                         "/v2/repository/models/<key>/load, its parameters naming model_dir, model_entry, handler)")
        return args
    if args.processor != "python" and not args.model_dir:
        parser.error(f"--model-dir is required for the {args.processor} processor")
    if args.processor == "python" and not args.handler:
        parser.error("--handler is required for the python processor")
    return args


def quiet_kserve() -> None:
    """kserve 0.21 on this FastAPI warns on every JSON response, and logs three
    lines per request (access + timings); keep the access line only."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)


def fail(message: str) -> None:
    print(f"ferry-modelserver: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def build_model(args: argparse.Namespace, executor):
    from .handler import PythonHandlerModel
    from .models import BUILTIN_MODELS

    if args.processor == "python":
        return PythonHandlerModel(args.model_name, handler_path=args.handler, model_dir=args.model_dir, executor=executor)
    model_class = BUILTIN_MODELS[args.processor]
    return model_class(args.model_name, model_dir=args.model_dir, model_entry=args.model_entry, executor=executor)


def main(argv: list[str]) -> None:
    started = time.monotonic()
    if argv[:1] == ["--standby"]:
        from .standby import main as standby_main

        standby_main(argv[1:])
        return
    args = parse_args(argv)
    # kserve parses sys.argv when it is imported; it must not see our options.
    del sys.argv[1:]
    run(args, started)


def run(args: argparse.Namespace, started: float, pooled: dict | None = None) -> None:
    """Load, warm up, serve. `started`: when this instance was asked for (the process start, or for a
    standby its assignment); `pooled`: what a standby did before it (its imports), else None."""
    if args.pool:
        from .pool import run_pool

        return run_pool(args, started, pooled)
    from concurrent.futures import ThreadPoolExecutor

    from .handler import HandlerError
    from .metadata import report_platforms
    from .models import ModelFileError
    from .server import FerryModelServer, WarmUpError, logger, read_warm_up_requests

    imported = time.monotonic()
    # The server first: it configures kserve's logging, which our messages use.
    server = FerryModelServer(host=args.host, http_port=args.http_port, grace_period=args.grace_period)
    report_platforms(server)
    quiet_kserve()
    if pooled is None:
        logger.info("imported the serving libraries in %.3f s", imported - started)
    else:
        logger.info("imported the serving libraries in %.3f s (in the warm pool's standby process, started %.1f s "
                    "before this assignment)", pooled["imports_seconds"], pooled["waited_seconds"])
    executor = ThreadPoolExecutor(max_workers=args.worker_threads, thread_name_prefix="predict")
    model = build_model(args, executor)
    if args.max_batch_size is not None:
        from . import DEFAULT_MAX_BATCH_TIMEOUT_MS
        from .batching import Batcher

        timeout = DEFAULT_MAX_BATCH_TIMEOUT_MS if args.max_batch_timeout_ms is None else args.max_batch_timeout_ms
        model.batcher = Batcher(model, max_batch_size=args.max_batch_size, max_batch_timeout_ms=timeout,
                                executor=executor)
        logger.info("batching requests: up to %d rows per model call, waiting up to %g ms", args.max_batch_size,
                    timeout)
    load_began = time.monotonic()
    try:
        warm_up_requests = read_warm_up_requests(args.warmup_file) if args.warmup_file else []
        model.load()
    except (ModelFileError, HandlerError, WarmUpError) as error:
        fail(str(error))
    except Exception as error:  # a framework (or a handler's load) failing: say what and why
        source = args.handler if args.processor == "python" else args.model_dir
        fail(f"cannot load the {args.processor} model from {source}: {type(error).__name__}: {error}")
    now = time.monotonic()
    logger.info("loaded %s model %s in %.3f s (%.3f s since the %s)", args.processor, args.model_name,
                now - load_began, now - started, "process started" if pooled is None else "assignment")
    try:
        server.serve(model, warm_up_requests)
    except WarmUpError as error:
        fail(str(error))


if __name__ == "__main__":
    main(sys.argv[1:])
