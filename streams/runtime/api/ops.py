"""``GET /health``, ``GET /stats`` and ``GET /metrics``: what operators, the demo and the tests poll."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request

from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Router, require_ready
from salepulse.streams.runtime.api.sales import stream_time

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("ops")


@router.get("/health", "Liveness and readiness", response=models.Health, needs_state=False)
async def health(worker: Worker, request: Request) -> dict[str, Any]:
    """Always 200 while the process runs; ``ready`` says whether table-backed answers are complete."""
    try:
        require_ready(worker)
        ready, detail = True, "ready"
    except HTTPProblem as problem:
        ready, detail = False, problem.message
    return {"status": "ok", "ready": ready, "detail": detail, "time": datetime.now(UTC).isoformat()}


@router.get("/stats", "Counters as JSON", response=models.Stats, needs_state=False)
async def stats(worker: Worker, request: Request) -> dict[str, Any]:
    """Counters as JSON: what the demo and the tests read to know the worker has caught up."""
    m, board, ranker = worker.metrics, worker.board, worker.preferences.ranker
    return {
        "events_processed": int(m.events_processed.total()),
        "events_processed_by_kind": {k[0]: int(v) for k, v in m.events_processed.values.items()},
        "deadletters": int(m.deadletters_sent.total()),
        "facts_sent": int(m.facts_sent.total()),
        "facts_counted": int(m.facts_counted.get(outcome="counted")),
        "facts_duplicate": int(m.facts_counted.get(outcome="duplicate")),
        "signals_sent": int(m.signals_sent.total()),
        "signals_learned": int(m.signals_learned.total()),
        "alerts": {k[0]: int(v) for k, v in m.alerts_sent.values.items()},
        "processed_offsets": worker.processed_offsets,
        "open_sales": len(worker.catalog.open_sales(board.stream_ms)) if board.stream_ms else 0,
        "stream_time": stream_time(worker),
        # Poison-proofing (streams/platform/clock.py, streams/platform/bounded.py): event times too far ahead to be
        # "now",
        # catalogue records skipped, sales kept in memory.
        "clock_ignored": board.clock.ignored,
        "catalog_rejected": worker.catalog.rejected,
        "sales_cached": len(worker.sale_cache),
        "ranker_updates": {**worker.preferences.ranker_updates, "over_budget": worker.choices.budget.skipped},
        "ranker_weights": {name: getattr(ranker, name).weights() for name in ("again", "new", "sale")},
    }


@router.get("/metrics", "Prometheus metrics", media_type="text/plain", needs_state=False)
async def metrics(worker: Worker, request: Request) -> web.Response:
    """The worker's counters and gauges in the Prometheus text format; ``salepulse_shop`` is the whole shop (the
    same from any velocity worker), left at its last value while the worker rebuilds gained partitions."""
    handover, m = worker.handover, worker.metrics
    if handover is not None:
        m.owned_partitions.set(len(handover.owned))
        m.recovering.set(1 if handover.not_ready() else 0)
        if not handover.not_ready():
            sales = worker.board.sales_view()
            m.shop.set(len(sales), figure="open_sales")
            m.shop.set(sum(sale["units"] for sale in sales), figure="units")
            m.shop.set(sum(sale["open_alerts"] for sale in sales), figure="open_alerts")
    return web.Response(text=worker.metrics.registry.render(), headers={"Content-Type": "text/plain; version=0.0.4"})
