"""`python -m gateway`: Ferry's gateway on FERRY_GATEWAY_HOST:FERRY_GATEWAY_PORT (default 127.0.0.1:8080).

One process, one uvloop event loop, served by gateway/server.py (httptools). `--server uvicorn` runs the same
gateway as an ASGI application under uvicorn instead (uvloop + httptools too): slower per request, kept for
comparison in bench/gateway and for deployments that prefer a standard ASGI server. Either way SIGTERM stops
accepting and finishes the requests in flight for up to 10 s. Under `make run` the listening socket is the
supervisor's (FERRY_LISTEN_FD, scripts/supervise.py --listen), so a gateway that crashes loses only the
requests it held: new connections wait in the socket's backlog until it is back.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Ferry's gateway (docs/gateway.md).")
    parser.add_argument("--server", choices=("ferry", "uvicorn"), default="ferry",
                        help="HTTP server: Ferry's own (default, cheapest per request) or uvicorn (ASGI)")
    args = parser.parse_args(argv)
    from .config import Settings

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvloop

    from .app import Gateway

    gateway = Gateway(settings)
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(gateway, host=settings.host, port=settings.port, fd=settings.listen_fd, loop="uvloop", http="httptools",
                    lifespan="on", access_log=False, server_header=False, date_header=False, proxy_headers=False,
                    log_level="warning", timeout_keep_alive=75, timeout_graceful_shutdown=10, backlog=2048)
        return
    from .server import serve

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(gateway, settings.host, settings.port, listen_fd=settings.listen_fd))


if __name__ == "__main__":
    main(sys.argv[1:])
