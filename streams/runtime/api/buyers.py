"""The buyer desk (issue 15): ``GET /sales/{sale_id}/plan`` (the stocking plan the desk would send now),
``GET /buyers`` (every buyer with a record), ``GET /buyers/{buyer_id}`` (the scorecard) and
``GET /dashboard/buyers/{buyer_id}`` (the same as a page). Every worker reads the outcomes and the catalogue whole,
so any worker answers, whatever its role."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request

from salepulse.streams.domain.buyer_desk import scorecard_html
from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Router

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("buyers")


def plain(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


@router.get("/sales/{sale_id}/plan", "The stocking plan of a sale", response=models.SalePlan, errors=(404, 503))
async def sale_plan(worker: Worker, request: Request, sale_id: str) -> dict[str, Any]:
    """Units to position per sku (and per warehouse when regions are known), with the reason of each."""
    plan = worker.buyer_desk.plan_view(sale_id)
    if plan is None:
        raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue")
    return plain(plan)


@router.get("/buyers", "Every buyer with a record", response=models.Buyers, errors=(503,))
async def list_buyers(worker: Worker, request: Request) -> dict[str, Any]:
    """Each buyer's forecasts, sales, bias, learned correction and range coverage."""
    return {"buyers": plain(worker.buyer_desk.buyers())}


@router.get("/buyers/{buyer_id}", "A buyer's scorecard", response=models.Scorecard, errors=(404, 503))
async def buyer_scorecard(worker: Worker, request: Request, buyer_id: str) -> dict[str, Any]:
    """Past bias, 80 % range coverage, the learned correction and why, the last sales: forecast vs actual."""
    card = worker.buyer_desk.scorecard(buyer_id)
    if card is None:
        raise HTTPProblem(404, f"no finished sale forecast by {buyer_id!r} yet")
    return plain(card)


@router.get("/dashboard/buyers/{buyer_id}", "A buyer's scorecard as a page", media_type="text/html",
            needs_state=False)
async def buyer_page(worker: Worker, request: Request, buyer_id: str) -> web.Response:
    """The scorecard as HTML (404 page for a buyer without a finished sale)."""
    card = worker.buyer_desk.scorecard(buyer_id)
    if card is None:
        return web.Response(text=f"<p>No finished sale forecast by {buyer_id} yet.</p>", status=404,
                            content_type="text/html")
    return web.Response(text=scorecard_html(card), content_type="text/html")
