"""``GET /members/{member_id}/sales`` and ``…/products``: the open sales, or one sale's products, ranked for a member.

Answered by the worker that owns the member's partition of ``member-prefs`` (requests elsewhere are forwarded).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from faust.web import Request

from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Query, Router, Text
from salepulse.streams.runtime.candidates import product_candidates, sale_candidates

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("members", role="preferences", auth="read")
K_SALES = Query("k", 10, 1, 500, "How many sales to return.")
K_PRODUCTS = Query("k", 20, 1, 5000, "How many products to return.")
SALE_ID = Text("sale_id", "s-12&k=20", "The sale whose products to rank (an open one).")


def now_ms(worker: Worker) -> int:
    """Stream time when events flow (replays and simulations run on their own clock), else wall time."""
    return worker.board.stream_ms or int(time.time() * 1000)


def _ranked(items: list[Any]) -> list[dict[str, Any]]:
    return [{"id": item.id, "score": round(float(item.score), 6), "reason": item.reason, "part": item.part}
            for item in items]


@router.get("/members/{member_id}/sales", "Open sales ranked for a member", response=models.MemberSales,
            query=(K_SALES,), errors=(400, 401, 404, 503))
async def member_sales(worker: Worker, request: Request, member_id: str) -> dict[str, Any]:
    """The open sales ranked for this member (live popularity for a member never seen)."""
    k = K_SALES.parse(request)
    now = now_ms(worker)
    state = worker.members.get(member_id)
    ranked = worker.preferences.rank_sales(state, sale_candidates(worker, now), k=k, now_ms=now)
    items = [{"sale_id": r["id"], "brand": worker.catalog.sales[r["id"]].brand, "score": r["score"],
              "reason": r["reason"]} for r in _ranked(ranked)]
    # no "known member" flag and the same shape for anyone: the answer must not reveal who is a member
    return {"member_id": member_id, "items": items}


@router.get("/members/{member_id}/products", "One sale's in-stock products ranked for a member",
            response=models.MemberProducts, query=(SALE_ID, K_PRODUCTS), errors=(400, 401, 404, 503))
async def member_products(worker: Worker, request: Request, member_id: str) -> dict[str, Any]:
    """The in-stock products of one open sale, ranked for this member."""
    sale_id = SALE_ID.parse(request)
    if sale_id not in worker.catalog.sales:
        raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue")
    k = K_PRODUCTS.parse(request)
    now = now_ms(worker)
    if not worker.catalog.is_open(sale_id, now):
        raise HTTPProblem(404, f"sale {sale_id!r} is not open now")
    state = worker.members.get(member_id)
    ranked = worker.preferences.rank_products(state, product_candidates(worker, sale_id, now), k=k, now_ms=now)
    # one ranking in two parts: "again" (the member's own items) then "new" (new for you)
    items = [{"sku": r["id"], "score": r["score"], "reason": r["reason"], "part": r["part"]} for r in _ranked(ranked)]
    return {"member_id": member_id, "sale_id": sale_id, "items": items}
