"""The gateway's request path, shared by its own HTTP server (`serve`, callbacks only) and ASGI (`__call__`):

  precheck, with the headers: read them once (head.py: the path parsed by paths.py) -> route from the in-memory
    table (table.py; a group name picks a member by weight) -> a token (auth.py); refuse 401 / 413 unread
  prepare, with the body: what precheck could not do (an EAS signature covers the body)
  admit: a version by weight, the least-outstanding instance (balancer.py)
  send: one write on a pooled keep-alive connection (upstream.py); the answer comes back to a callback
  finish: release the slot, count (metrics.py), mirror copies (proxy.py), answer
The common case (a free instance with an idle connection) runs without a coroutine, future or task, inside
the callbacks that read the request and the answer. Waiting for a slot or an instance, connecting, and
retrying an exchange that gateway/retry.py allows to retry run in a task (`forward`). Nothing on the path touches Redis or a database.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

import httptools

from contracts import auth, paths, sealing
from contracts.weighted_round_robin import next_choice

from . import balancer, dispatcher, llm_choice, local, openai_api, queue_api, retry
from .activator import Activator
from .config import Settings
from .head import Head, read_head
from .local import UNAUTHORIZED, error
from .metrics import Collector, Counters, flush_forever, stats_for
from .proxy import Mirror, build_head, send as send_upstream
from .stream import Relay, replayable, serve_asgi, streams_body
from .table import Route, RouteTable
from .upstream import (BodyTooLarge, ClientGone, Connection, StreamSilent, UpstreamConnectError, UpstreamError,
                       UpstreamTimeout, response_headers)

logger = logging.getLogger("ferry.gateway")
_perf = time.perf_counter
_same = hmac.compare_digest


class Request:
    """A request that passed `prepare`: its service, target and credentials are known."""

    __slots__ = ("route", "parsed", "pinned", "method", "query", "headers", "body", "client", "began", "affinity")

    def __init__(self, route, parsed, pinned, method, query, headers, body, client, began):
        self.route = route
        self.parsed = parsed
        self.pinned = pinned
        self.method = method
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.began = began
        self.affinity = None  # an LLM request's prompt-prefix key, computed once (Gateway.affinity)


class Gateway:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = RouteTable(pool_options={"max_idle_age": settings.upstream_max_idle,
                                              "stream_idle": settings.stream_idle_timeout},
                                cluster=settings.cluster, key=settings.route_key)
        self.counters = Counters()
        self.mirror = Mirror(self.table, self.counters)
        self.group_credit: dict[tuple, dict[str, int]] = {}  # (group, project) -> member -> round-robin credit
        self.replays = auth.Replays(settings.signature_max_skew, settings.signature_memory) \
            if settings.signature_memory > 0 else None
        self.redis = None
        self.activator: Activator | None = None
        self.tasks: list[asyncio.Task] = []
        self.forwarding: set[asyncio.Task] = set()
        self.registry = None

    # -- entry points -------------------------------------------------------------------------------------
    def serve(self, method: str, path: str, query: bytes, headers, body: bytes, client: bytes, reply,
              head: Head | None = None) -> None:
        """For gateway/server.py: calls `reply(status, headers, body)` once, now or from a later callback.
        `head`: what `precheck` read in the headers."""
        prepared = self.prepare(method, path, query, headers, body, client, head)
        if prepared.__class__ is tuple:
            return reply(*prepared)
        if prepared.route.queue is not None:  # an asynchronous service: its queues answer (docs/async.md)
            return self._background(queue_api.handle(self, prepared, reply))
        try:
            admission = balancer.try_admit(prepared.route, prepared.pinned,
                                           self.affinity(prepared) if prepared.route.llm else None)
        except balancer.Unavailable as refusal:
            return reply(*self.refuse(prepared, refusal))
        if admission is not None:
            connection = admission.instance.pool.take()
            if connection is not None:
                return self.send(prepared, admission, connection, reply)
        task = asyncio.get_running_loop().create_task(self._forward_then(prepared, admission, reply))
        self.forwarding.add(task)
        task.add_done_callback(self.forwarding.discard)

    async def handle(self, method: str, path: str, query: bytes, headers, body: bytes, client: bytes,
                     head: Head | None = None):
        """For coroutines (ASGI): (status, headers without Content-Length, body: bytes, or a stream.Relay)."""
        prepared = self.prepare(method, path, query, headers, body, client, head)
        if prepared.__class__ is tuple:
            return prepared
        if prepared.route.queue is not None:  # queue operations; a watch needs the gateway's own server
            answers: list = []
            await queue_api.handle(self, prepared, lambda *answer: answers.append(answer))
            return answers[0]
        return await self.forward(prepared, None)

    def _background(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.forwarding.add(task)
        task.add_done_callback(self.forwarding.discard)

    async def __call__(self, scope, receive, send):
        """ASGI: `uvicorn --factory gateway.app:create_app` (`python -m gateway` uses gateway/server.py); streamed
        answers go out as http.response.body messages with more_body (gateway/stream.py)."""
        if scope["type"] == "http":
            await serve_asgi(self, scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    # -- the request path ---------------------------------------------------------------------------------
    def prepare(self, method, path, query, headers, body, client, head: Head | None = None):
        """A Request, or the (status, headers, body) to answer at once (local endpoints, 4xx, table not loaded).
        `head`: what `precheck` read in these headers, else they are read here."""
        began = _perf()
        if head is None:
            head = self.read_head(path, headers)
        parsed, authorization = head.parsed, head.authorization
        if parsed is None:
            if head.bad_path is not None:
                return error(400, head.bad_path)
            return local.answer(self, method, path, authorization)
        if parsed.by_body:  # the OpenAI API: the body names the service
            parsed = openai_api.target(self.table, parsed, body, authorization)
            if parsed.__class__ is tuple:
                return parsed
        route = head.route
        # Credentials are checked here when precheck could not (a signature needs the body), or when the route
        # it accepted them for was replaced (a new token, say) while the body was read.
        if route is None or route.state.route is not route:
            verify = None
            if authorization is not None and authorization[:4] == b"EAS ":
                def verify(tokens):
                    return auth.check(tokens, authorization, method=method, body=body,
                                      content_type=head.content_type or b"", date=head.date,
                                      content_md5=head.content_md5, resources=parsed.resources(query),
                                      max_skew=self.settings.signature_max_skew, replays=self.replays)
            route, problem = self.authorize(parsed.name, authorization, verify)
            if route is None:
                return self.unknown(parsed.name)
            if problem:
                stats_for(route.state, 0).finished(401, _perf() - began, started=False)
                return error(401, problem, UNAUTHORIZED)
        pinned = parsed.pinned
        if head.pinned is not None and pinned is None:
            try:
                pinned = int(head.pinned)
            except ValueError:
                return error(400, "the Ferry-Version header must be a version number")
        query = "?" + query.decode("latin-1") if query else ""
        return Request(route, parsed, pinned, method, query, headers, body, client, began)

    def send(self, request: Request, admission, connection, reply) -> None:
        """The hot path's exchange: `reply` is called from the callback that reads the instance's answer, and
        the bookkeeping (slot, metrics, mirror) is done after the answer left."""
        route = admission.route
        body = request.body if not admission.version.body_model else openai_api.upstream_body(request,
                                                                                               admission.version)
        head = build_head(request.method,
                          request.parsed.upstream_path(route.name, admission.version.model) + request.query,
                          admission.instance, request.headers, len(body) if body.__class__ is bytes else None,
                          route.upstream_token, request.client)
        stats = stats_for(route.state, admission.version.number)

        def done(status, headers, answer, failure):
            if failure is not None and retry.may_retry(failure, request.method, request.headers, replayable(body)):
                return self._retry_later(request, admission, stats, failure, reply)
            try:
                status, headers, answer = self.response(request, admission, status, headers, answer, failure)
                if answer is connection:  # streamed (gateway/stream.py): settled when it ends
                    return Relay(self, request, admission, stats, status, headers, connection).attach(reply.__self__)
            except Exception:  # noqa: BLE001 -- this runs inside the instance connection's parser
                logger.exception("failed to answer a request for %s", route.name)
                status, headers, answer = error(500, "internal gateway error")
            reply(status, headers, answer)
            self.settle(request, admission, stats, status)

        reply.__self__.producer = connection  # the client going away cuts the exchange (server.py)
        stats.started()
        connection.send(head, body, route.timeout, done, request.method == "HEAD")

    async def _forward_then(self, request: Request, admission, reply, tries: int = 0) -> None:
        try:
            answer = await self.forward(request, admission, tries)
        except Exception:  # noqa: BLE001
            logger.exception("failed to answer a request for %s", request.route.name)
            answer = error(500, "internal gateway error")
        if answer[2].__class__ is Relay:
            return answer[2].attach(reply.__self__)
        reply(*answer)

    def _retry_later(self, request: Request, admission, stats, failure, reply) -> None:
        """The hot path's exchange failed in a way that may be retried: the rest goes on in a task."""
        self._give_back(admission, stats, failure)
        task = asyncio.get_running_loop().create_task(self._forward_then(request, None, reply, tries=1))
        self.forwarding.add(task)
        task.add_done_callback(self.forwarding.discard)

    async def forward(self, request: Request, admission, tries: int = 0):
        """The general path: wait for a slot or an instance if needed, connect, exchange, finish. A failure that
        gateway/retry.py allows is tried again on another instance, or, when none is reachable, after waiting
        (with the activator's deadline, counted from the first failure) for the table to list one."""
        deadline = self._retry_deadline(request) if tries else None
        while True:
            if admission is None:
                admission = await self._admit(request, deadline, tries)
                if admission.__class__ is tuple:
                    return admission  # refused
            stats = stats_for(request.route.state, admission.version.number)
            stats.started()
            try:
                path = request.parsed.upstream_path(admission.route.name, admission.version.model)
                answer = await send_upstream(admission, request.method, path + request.query, request.headers,
                                             openai_api.upstream_body(request, admission.version), request.client)
                failure = None
            except UpstreamError as problem:
                answer, failure = (0, None, None), problem
            if failure is not None and tries < retry.MAX_TRIES and \
                    retry.may_retry(failure, request.method, request.headers, replayable(request.body)):
                self._give_back(admission, stats, failure)
                tries += 1
                deadline = deadline or self._retry_deadline(request)
                admission = None
                continue
            status, headers, body = self.response(request, admission, *answer, failure)
            if body.__class__ is Connection:  # streamed (gateway/stream.py): settled when it ends
                return status, headers, Relay(self, request, admission, stats, status, headers, body)
            self.settle(request, admission, stats, status)
            return status, headers, body

    def affinity(self, request: Request) -> bytes | None:
        """An LLM request's prompt-prefix key (llm_choice.py: the balancer goes by engine load with prefix
        affinity), computed once; None for every other request (least outstanding, the fast path)."""
        key = request.affinity
        if key is None and request.route.llm and self.settings.llm_routing:
            key = request.affinity = llm_choice.prefix_key(request.body)
        return key

    async def _admit(self, request: Request, deadline: float | None, tries: int):
        """An Admission, or the refusal's (status, headers, body). A retry reads the table as it is now."""
        state = request.route.state
        route = (state.route or request.route) if tries else request.route
        try:
            key = self.affinity(request)
            return balancer.try_admit(route, request.pinned, key) or await balancer.admit(
                state, route, request.pinned, on_wait=self._on_wait,
                activation_timeout=self.settings.activation_timeout, key=key,
                stats_for=lambda number: stats_for(state, number), deadline=deadline)
        except balancer.Unavailable as refusal:
            return self.refuse(request, refusal)

    def _retry_deadline(self, request: Request) -> float:
        route = request.route
        return asyncio.get_running_loop().time() + balancer.activation_deadline(route, self.settings.activation_timeout)

    def _give_back(self, admission, stats, failure) -> None:
        """Undoes an attempt that will be retried: not counted as a request; an instance that refused the
        connection is ejected first, so its freed slot is not handed to a waiting request."""
        route, instance = admission.route, admission.instance
        if retry.ejects(failure):
            seconds = balancer.eject(route.state, instance)
            logger.warning("ejected instance %s of %s for %g s: %s", instance.name, route.name, seconds, failure)
        balancer.release(route.state, instance)
        stats.given_back()
        self.counters.retries[route.name] = self.counters.retries.get(route.name, 0) + 1

    def response(self, request: Request, admission, status, headers, body, failure):
        """What the client gets: the instance's answer minus hop-by-hop headers, or the failure's error."""
        if failure is None:
            if admission.instance.refusals:  # it answered: the next refusal starts the ejections over
                admission.instance.refusals = 0
            headers = response_headers(headers, request.method == "HEAD" or status == 304)
        else:
            if retry.ejects(failure):  # it died under the request: later ones go elsewhere or wait for it
                balancer.eject(admission.route.state, admission.instance)
            status, headers, body = self._failure(admission.route, failure)
        headers.append(admission.version.header)
        return status, headers, body

    def settle(self, request: Request, admission, stats, status: int) -> None:
        """After the answer: the slot back, the request counted, copies to mirror targets."""
        route = admission.route
        balancer.release(route.state, admission.instance)
        stats.finished(status, _perf() - request.began)
        if request.body.__class__ is bytes and balancer.mirrored(route):  # a streamed body was not kept
            self.mirror.copy(route.name, route.mirror_targets, request.parsed, request.method, request.query,
                             request.headers, request.body, request.client)

    @staticmethod
    def _failure(route, failure):
        if isinstance(failure, UpstreamConnectError):
            return error(502, f"no instance of {route.name} reachable: {failure}")
        if isinstance(failure, (ClientGone, BodyTooLarge, StreamSilent)):  # streamed or cut exchanges
            status = 499 if isinstance(failure, ClientGone) else 413 if isinstance(failure, BodyTooLarge) else 504
            return error(status, str(failure))
        if isinstance(failure, UpstreamTimeout):
            return error(504, f"{route.name} did not answer within {route.timeout * 1000:g} ms "
                              "(metadata.rpc.keepalive)")
        return error(502, f"{route.name}: {failure}")

    def refuse(self, request: Request, refusal: balancer.Unavailable):
        route = request.route
        stats_for(route.state, refusal.version or 0).finished(refusal.status, _perf() - request.began,
                                                             started=False)
        if balancer.mirrored(route):
            self.mirror.copy(route.name, route.mirror_targets, request.parsed, request.method, request.query,
                             request.headers, request.body, request.client)
        extra = ((b"retry-after", str(refusal.retry_after).encode()),) if refusal.retry_after else ()
        return error(refusal.status, str(refusal), extra)

    def authorize(self, name: str, authorization: bytes | None, verify=None):
        """(the route to serve, None), or (a route to count the refusal on, the 401's message), or (None, None)
        when `name` is neither a service nor a group. The credentials choose: the service `name`'s token serves
        that service; a member's token of the group `name` of some project serves that project's group (a
        member by weight), so a service named like a group does not shadow it, a group's callers are never
        sent to another project's service, and only the group's own members' tokens are accepted.
        `verify(tokens)`: checks an EAS signature (it needs the body); None when the request is not signed, or
        when the body is not read yet (`precheck`): then a signature passes, to be verified with the body."""
        route = self.table.get(name)
        groups = self.table.groups.get(name)
        if route is None and not groups:
            return None, None
        counted = route if route is not None else next(iter(groups.values()))[0]
        if not authorization:
            return counted, auth.MISSING
        if authorization[:4] == b"EAS ":
            if verify is None:
                return counted, None
            problem = verify((route.token_bytes,)) if route is not None else None
            if route is not None and problem is None:
                return route, None
            for project, members in (groups or {}).items():
                group_problem = verify(tuple(m.token_bytes for m in members))
                if group_problem is None:
                    return self._group_route(name, project, members, counted)
                problem = problem or group_problem
            return counted, problem
        presented = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else authorization.strip()
        if presented:
            digest = sealing.digest(self.table.key, presented)
            if route is not None and _same(digest, route.token_digest):
                return route, None
            for project, members in (groups or {}).items():
                for member in members:
                    if _same(digest, member.token_digest):
                        return self._group_route(name, project, members, counted)
        return counted, auth.WRONG_TOKEN

    def _group_route(self, name: str, project, members: list[Route], counted: Route):
        # Group traffic goes to members released to it (TrafficState grouping); a group none of whose members
        # was released yet serves all of them, so a new group works before anyone calls ReleaseService.
        serving = [m for m in members if m.traffic_state == "grouping" and m.group_weight > 0] or \
                  [m for m in members if m.group_weight > 0]
        if not serving:
            return None, None  # as if it did not exist (404): none of its members takes traffic
        return self._group_member((name, project), serving), None

    def unknown(self, name: str):
        if not self.table.loaded:
            return error(503, "routing table not loaded yet", ((b"retry-after", b"1"),))
        return error(404, f"no service named {name}")

    def precheck(self, method: str, url: bytes, headers):
        """Before the body is read (gateway/server.py, ASGI): the answer that refuses the request now (a tuple),
        else what the headers say (a Head, for `prepare`; None for a target answered 400 once read). A missing
        or wrong token is 401, a declared body over the limit 413, so neither costs the gateway the body. An EAS
        signature covers the body: it passes here and is checked in `prepare`. A token accepted here chooses
        the route (a group's member too, taking its turn), and `prepare` uses it."""
        try:  # as gateway/server.py reads it for `serve` (absolute-form targets included)
            path = (httptools.parse_url(url).path or b"").decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            return None  # answered 400 once read
        head = self.read_head(path, headers)
        parsed, authorization = head.parsed, head.authorization
        if parsed is not None and parsed.by_body:
            refusal = openai_api.precheck(self.table, authorization)
            if refusal is not None:
                return refusal
        elif parsed is not None:
            route, problem = self.authorize(parsed.name, authorization)
            if route is None:
                return self.unknown(parsed.name)
            if problem:
                stats_for(route.state, 0).finished(401, 0.0, started=False)
                return error(401, problem, UNAUTHORIZED)
            if authorization[:4] != b"EAS ":
                head.route = route
        elif path == "/metrics":
            refusal = local.metrics_refusal(self, authorization)
            if refusal is not None:
                return refusal
        length = head.length
        if length is not None and length.strip().isdigit() and int(length) > self.settings.max_body_bytes:
            return self.too_large()
        if head.chunked:
            head.stream_body = streams_body(head)
        return head

    @staticmethod
    def read_head(path: str, headers) -> Head:
        head = read_head(headers)
        try:
            head.parsed = paths.parse(path, head.model)
        except paths.BadPath as problem:
            head.bad_path = str(problem)
        return head

    @staticmethod
    def upgrade_allowed(head) -> bool:
        """A WebSocket upgrade is for an asynchronous service's watch only (queue_api.py), and its plain token
        was accepted before the body (precheck): any other upgrade request is refused (400) unread."""
        return head is not None and head.route is not None and head.route.queue is not None

    def too_large(self):
        return error(413, f"the body is larger than FERRY_GATEWAY_MAX_BODY_BYTES ({self.settings.max_body_bytes} "
                          "bytes)")

    def _group_member(self, group: tuple, serving: list[Route]) -> Route:
        """Smooth weighted round robin over the members by group weight, as for versions
        (contracts/weighted_round_robin.py); the credits are kept by (group, project) and member name, so a
        member's route changing does not reset them."""
        credits = self.group_credit.setdefault(group, {})
        kept = [credits.get(member.name, 0) for member in serving]
        weights = [member.group_weight for member in serving]
        best = next_choice(kept, weights, sum(weights))
        credits.update(zip((member.name for member in serving), kept))
        return serving[best]

    def _on_wait(self, route, version, cold: bool) -> None:
        if cold:
            stats_for(route.state, version.number).cold_start()
            if self.activator is not None:
                self.activator.signal(route.state, route)

    # -- lifespan -----------------------------------------------------------------------------------------
    async def lifespan(self, receive, send):
        await receive()
        try:
            await self.start()
        except Exception as failure:  # noqa: BLE001
            await send({"type": "lifespan.startup.failed", "message": str(failure)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await self.stop()
        await send({"type": "lifespan.shutdown.complete"})

    async def start(self) -> None:
        import redis.asyncio
        from prometheus_client import CollectorRegistry, ProcessCollector

        from .engines import scrape_forever
        from .sync import follow_forever

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(Collector(self.table, self.counters))
        ProcessCollector(registry=self.registry)
        self.redis = redis.asyncio.from_url(self.settings.redis_url, socket_connect_timeout=3,
                                            socket_keepalive=True, health_check_interval=15)
        self.activator = Activator(self.redis, self.settings.celery_queue, self.counters)
        loaded = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(follow_forever(self.redis, self.table, self.settings.resync_interval, loaded)),
            loop.create_task(flush_forever(self.redis, self.table)),
            loop.create_task(scrape_forever(self.redis, self.table, self.settings.engine_scrape_interval)),
            loop.create_task(dispatcher.follow(self, self.settings.queue_consumer
                                               or dispatcher.consumer_name(self.settings.port),
                                               self.settings.queue_claim_idle)),
        ]
        try:
            await asyncio.wait_for(loaded.wait(), 5)
        except asyncio.TimeoutError:
            logger.warning("Redis at REDIS_URL did not answer in 5 s: serving nothing until it does")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        _, pending = await asyncio.wait(self.tasks, timeout=2)
        if pending:
            logger.warning("background tasks still running at exit: %s", [t.get_coro() for t in pending])
        for state in self.table.services.values():
            for instance in state.instances.values():
                instance.pool.close()
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.aclose(), 2)
            except Exception:  # noqa: BLE001 -- stopping anyway
                pass


def create_app() -> Gateway:
    """For ASGI servers: `uvicorn --factory gateway.app:create_app --loop uvloop --http httptools`."""
    return Gateway(Settings.from_env())
