"""``GET /sales`` and ``GET /sales/{sale_id}``: open sales with units, velocity, forecast band and alerts."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request

from salepulse.streams.domain.live import iso_time
from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Router, on_loop, require_ready

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("sales", role="velocity")


def stream_time(worker: Worker) -> str | None:
    return iso_time(worker.board.stream_ms)


def generation(worker: Worker) -> int:
    """Moves whenever partitions move (a body rendered before a move never answers after it)."""
    return worker.handover.generation if worker.handover is not None else 0


def publish_sales(worker: Worker) -> bytes:
    """On the worker's loop: render ``GET /sales``'s body and keep it for every reader (the tick calls this each
    second, see :func:`tick`). Ready workers only: a body rendered mid-recovery would hold partial
    totals."""
    require_ready(worker)
    return worker.board.publish_sales(generation(worker))


def tick(worker: Worker) -> None:
    """The 1 s tick's part: keep the body current for every reader; nothing while not ready."""
    with contextlib.suppress(HTTPProblem):
        publish_sales(worker)


@router.get("/sales", "Open sales", response=models.SalesList, errors=(404, 503), off_loop=True)
async def list_sales(worker: Worker, request: Request) -> web.Response:
    """Open sales at stream time, with units, velocity, forecast band and open alerts, most urgent first."""
    # The body is rendered on the loop by the 1 s tick (domain/sale_summaries.py) and served as kept bytes: this
    # runs on the read server's thread too, which must not wait for the loop unless the body is too old.
    body = worker.board.summaries.kept_list(generation(worker))
    if body is None:  # none yet, older than the list's bound, or from before a partition move
        body = await on_loop(worker, publish_sales, worker)
    return web.Response(body=body, content_type="application/json")


def _sale_view(worker: Worker, sale_id: str) -> dict[str, Any] | None:
    require_ready(worker)  # the read server checked on its thread; the loop may have started a move since
    return worker.board.sale_view(sale_id)


@router.get("/sales/{sale_id}", "One sale and its products", response=models.SaleDetail, errors=(404, 503),
            off_loop=True)
async def sale_detail(worker: Worker, request: Request, sale_id: str) -> dict[str, Any]:
    """The sale's totals and every product: units, velocity, forecast band, stock, projected stockout, alert."""
    view = worker.board.kept_sale_view(sale_id)  # kept and current: no loop needed
    if view is None:
        view = await on_loop(worker, _sale_view, worker, sale_id)
    if view is None:
        raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue; GET /sales lists the open ones")
    return view  # JSON-ready already (times as ISO strings), and shared: not changed here
