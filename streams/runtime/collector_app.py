"""``salepulse collect``: the site and app collector (``POST /events``, ``POST /forecasts``) as a process of its own.

A worker answers ``POST /events`` too, but on the event loop that also runs its agents, its timers and, in the
demo's layout, the learning of every event it then reads back: measured here, a worker with every role stored
about 2,900 events/s with p99 over 2 s when driven flat out, because it spent half its time on the events it had
just stored. The collector needs none of the worker's state, so this process holds only what the write handlers
use (settings, codec, metrics, one producer) and serves them with the worker's own endpoints, checks, error
middleware and answers (:mod:`salepulse.streams.runtime.api.writes`) on a plain aiohttp server:
``GET /health`` (always ready: it keeps no state to load) and ``GET /metrics`` besides.

``SALEPULSE_COLLECTOR_PORT`` (default 6070) is its port. ``SALEPULSE_COLLECTOR_PROCESSES`` > 1 starts that many
processes on the same port (``SO_REUSEPORT``: the kernel spreads the connections), one per core; each has its own
producer, all idempotent.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from salepulse.schemas.codec import Codec
from salepulse.streams.domain import collector
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.gc_tuning import tune_collector
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.runtime.api import writes
from salepulse.streams.runtime.api.errors import error_middleware
from salepulse.streams.runtime.api.routing import Endpoint, answer, check
from salepulse.streams.runtime.worker_metrics import WorkerMetrics

log = get_logger(__name__)


@dataclass
class Collector:
    """What the write handlers use of a worker, and nothing else: no Faust app, no table, no consumer."""

    settings: Settings
    codec: Codec
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    extensions: dict[str, Any] = field(default_factory=dict)


def _serve(host: Collector, endpoint: Endpoint) -> Any:
    async def serve(request: web.Request) -> web.StreamResponse:
        check(host, endpoint, request)  # type: ignore[arg-type] - a Collector has what writes need of a Worker
        return await answer(host, endpoint, request)  # type: ignore[arg-type]

    return serve


def collector_app(host: Collector) -> web.Application:
    """``POST /events`` and ``POST /forecasts`` as the worker serves them, ``GET /health`` and ``GET /metrics``."""
    app = web.Application(middlewares=[error_middleware(host.metrics.http_requests)])

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "ready": True, "detail": "collector",
                                  "time": datetime.now(UTC).isoformat()})

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text=host.metrics.registry.render(), headers={"Content-Type": "text/plain; version=0.0.4"})

    for router in (writes.events, writes.forecasts):
        for endpoint in router.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _serve(host, endpoint))
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    if host.settings.cors_origins:
        import aiohttp_cors

        cors = aiohttp_cors.setup(app, defaults={
            origin: aiohttp_cors.ResourceOptions(allow_headers=("Content-Type", "Authorization"), allow_methods="*",
                                                 expose_headers="*", max_age=600)
            for origin in host.settings.cors_origins})
        for route in list(app.router.routes()):
            cors.add(route)
    return app


async def _run(settings: Settings, stop: asyncio.Event, reuse_port: bool) -> None:
    host = Collector(settings, Codec(settings.schema_registry_url))
    runner = web.AppRunner(collector_app(host), access_log=None)
    await runner.setup()
    # as in the worker (SALEPULSE_GC_GEN0_THRESHOLD): a 100-event request allocates thousands of short-lived
    # objects, and CPython's default would collect several times per request
    tuned = tune_collector(settings.gc_gen0_threshold)
    await web.TCPSite(runner, settings.http_host, settings.collector_port, reuse_port=reuse_port).start()
    log.info("collector listening", host=settings.http_host, port=settings.collector_port, gc=tuned)
    await stop.wait()
    await runner.cleanup()  # answers the requests in flight first: each waits for its acknowledgements
    acked = host.extensions.get("publisher")
    if acked is not None:
        await asyncio.to_thread(acked.close)
    log.info("collector stopped", port=settings.collector_port)


def run_one(settings: Settings, reuse_port: bool = False) -> None:
    """One collector process, until SIGINT or SIGTERM."""
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _run(settings, stop, reuse_port)

    asyncio.run(main())


def run_collectors(settings: Settings) -> None:
    """``settings.collector_processes`` collector processes on one port (this one and children), until a signal."""
    for warning in collector.security_warnings(settings.api_token, settings.read_token, settings.http_host):
        log.warning(f"SECURITY: {warning}")
    n = settings.collector_processes
    if n <= 1:
        run_one(settings)
        return
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=run_one, args=(settings, True), name=f"collector-{i}") for i in range(1, n)]
    for child in children:
        child.start()
    try:
        run_one(settings, reuse_port=True)
    finally:
        for child in children:
            if child.is_alive() and child.pid is not None:
                child.terminate()  # SIGTERM: each answers what it holds and flushes its producer
        for child in children:
            child.join(30)
