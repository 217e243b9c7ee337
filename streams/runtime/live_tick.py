"""The worker's 1 s tick (``publish_live_state``, a Faust timer on a velocity worker): what changed goes out.

- a snapshot of every (sale, sku) whose counts changed in the last second (``velocity.snapshots``);
- the alert rule for those, and for every open sale each 5 s: forecasts move with time even when nothing sells, so
  the rule runs on a clock, not only on events (``replenishment.alerts``);
- every 5 s the buyer desk's records: outcomes of the sales that ended here, and the plans that changed;
- the answers ``GET /sales`` serves, refreshed for stream time in slices, and its body kept for the read server.

Everything runs on the worker's event loop and yields to it every 50 items, so the HTTP API and the agents stay
responsive during a big tick. ``worker`` is the :class:`~salepulse.streams.runtime.worker.Worker` (these were its
methods; they read its board, codec, topics and metrics).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from salepulse.streams.platform.clock import wall_ms
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.topology import sku_key
from salepulse.streams.runtime.api import sales as sales_api
from salepulse.streams.runtime.retention import forget_finished_sales

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

log = get_logger(__name__)

FINISH_BUDGET_S = 0.05
"""Seconds per 1 s tick spent teaching the forecast model from finished series (see LiveBoard.finish_ended_sales)."""


def _tick_failed(work: str, sale_id: str, sku: str, exc: BaseException) -> None:
    log.error("live state work skipped", work=work, sale_id=sale_id[:200], sku=sku[:200], error=repr(exc)[:300])


async def publish_live_state(worker: Worker) -> None:
    """Snapshots of what changed in the last second; the alert rule for those, and for every open sale each 5 s.

    Forecasts move with time even when nothing sells, so the rule must also run on a clock, not only on events.
    Data errors (a value no guard foresaw) skip that (sale, sku) for this tick; a send the broker refuses is
    infrastructure and still stops the worker.
    """
    worker.ticks += 1
    worker.promote_catalogued_sales()
    owns = worker.board.owns  # a sale that moved away is its new owner's to publish
    dirty = {key for key in worker.dirty if owns(key[0])}
    worker.dirty.clear()
    board, codec, m = worker.board, worker.codec, worker.metrics
    for n, (sale_id, sku) in enumerate(dirty, start=1):
        try:
            value = codec.encode("VelocitySnapshot", board.snapshot(sale_id, sku))
        except Exception as exc:  # noqa: BLE001
            _tick_failed("snapshot", sale_id, sku, exc)
            continue
        await worker.snapshots_topic.send(key=sku_key(sale_id, sku), value=value)
        m.snapshots_sent.inc()
        if n % 50 == 0:
            await asyncio.sleep(0)  # keep the HTTP API and the agents responsive during a big tick
    to_check = dirty
    try:
        board.sample_velocity()
        if worker.ticks % 5 == 0:
            to_check = dirty | set(board.open_active())
            worker.sale_cache.drop(board.finish_ended_sales(learn_budget_s=FINISH_BUDGET_S))
        else:
            board.learn_finished(FINISH_BUDGET_S)
        if worker.ticks % 60 == 0:
            forget_finished_sales(worker)  # bounded state: sales ended SALEPULSE_FINISHED_SALE_RETENTION_HOURS ago
    except Exception as exc:  # noqa: BLE001
        _tick_failed("clock work", "*", "*", exc)
    if worker.ticks % 5 == 0:
        await publish_buyer_desk(worker)
    raised: list[tuple[str, str, dict[str, Any], bytes]] = []
    for n, (sale_id, sku) in enumerate(to_check, start=1):
        if n % 50 == 0:  # a check costs up to ~0.2 ms: GET /sales waits at most ~10 ms behind the rule
            await asyncio.sleep(0)
        if not owns(sale_id):
            continue
        try:
            alert = board.check_alert(sale_id, sku)
            value = None if alert is None else codec.encode("ReplenishmentAlert", alert)
        except Exception as exc:  # noqa: BLE001
            _tick_failed("alert rule", sale_id, sku, exc)
            continue
        if alert is not None:
            raised.append((sale_id, sku, alert, value))
    if raised and worker.handover is not None:
        # The new sequence is on its way to the changelog before the alert leaves (see handover.py).
        worker.handover.save_alerts({sale_id for sale_id, *_ in raised})
    for sale_id, sku, alert, value in raised:
        if alert is not None:
            await worker.alerts_topic.send(key=sku_key(sale_id, sku), value=value)
            m.alerts_sent.inc(status=alert["status"])
            log.info("replenishment alert", alert_id=alert["alert_id"], status=alert["status"],
                     severity=alert["severity"], reason=alert["reason"])
    try:
        for _ in board.refresh_answers():  # what /sales serves, refreshed for time in slices
            await asyncio.sleep(0)
        sales_api.tick(worker)  # GET /sales's body, kept for the read server's thread
    except Exception as exc:  # noqa: BLE001
        _tick_failed("answers", "*", "*", exc)


async def publish_buyer_desk(worker: Worker) -> None:
    """Outcomes of the sales that ended here (what every worker's desk learns), then the plans that changed."""
    board = worker.board
    outcomes, board.finished_outcomes = board.finished_outcomes, []
    for record in (r for r in outcomes if board.owns(r["sale_id"])):
        await worker.outcomes_topic.send(key=sku_key(record["sale_id"], record["sku"]),
                                         value=worker.codec.encode("ForecastOutcome", record))
    for n, record in enumerate(worker.buyer_desk.plans_due(board.stream_ms, wall_ms(), owns=board.owns), start=1):
        await worker.plans_topic.send(key=sku_key(record["sale_id"], record["sku"]),
                                      value=worker.codec.encode("StockPlan", record))
        worker.metrics.plans_sent.inc()
        if n % 200 == 0:
            await asyncio.sleep(0)
