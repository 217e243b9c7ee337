"""``GET /sales`` and ``GET /sales/{sale_id}``: open sales with units, velocity, forecast band and alerts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request

from salepulse.streams.domain.live import ms_to_dt
from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Router

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("sales", role="velocity")


def stream_time(worker: Worker) -> str | None:
    return ms_to_dt(worker.board.stream_ms).isoformat() if worker.board.stream_ms else None


@router.get("/sales", "Open sales", response=models.SalesList, errors=(404, 503))
async def list_sales(worker: Worker, request: Request) -> web.Response:
    """Open sales at stream time, with units, velocity, forecast band and open alerts, most urgent first."""
    # The list's JSON is kept and rendered again only when a sale's answer changed (domain/sale_summaries.py):
    # building 200 sales of 30 products per request held the event loop for tens of milliseconds.
    sales = worker.board.sales_json()
    body = b'{"stream_time": ' + json.dumps(stream_time(worker)).encode() + b', "sales": ' + sales + b"}"
    return web.Response(body=body, content_type="application/json")


@router.get("/sales/{sale_id}", "One sale and its products", response=models.SaleDetail, errors=(404, 503))
async def sale_detail(worker: Worker, request: Request, sale_id: str) -> dict[str, Any]:
    """The sale's totals and every product: units, velocity, forecast band, stock, projected stockout, alert."""
    view = worker.board.sale_view(sale_id)
    if view is None:
        raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue; GET /sales lists the open ones")
    return view  # JSON-ready already (times as ISO strings), and shared: not changed here
