"""``GET /members/{member_id}/sales`` and ``…/products``: the open sales, or one sale's products, ranked for a member.

Answered by the worker that owns the member's partition of ``member-prefs`` (requests elsewhere are forwarded).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from faust.web import Request

from salepulse.streams.domain.preferences import ProductCandidates, SaleCandidates
from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Query, Router, Text

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

router = Router("members", role="preferences", auth="read")
K_SALES = Query("k", 10, 1, 500, "How many sales to return.")
K_PRODUCTS = Query("k", 20, 1, 5000, "How many products to return.")
SALE_ID = Text("sale_id", "s-12&k=20", "The sale whose products to rank (an open one).")


def now_ms(worker: Worker) -> int:
    """Stream time when events flow (replays and simulations run on their own clock), else wall time."""
    return worker.board.stream_ms or int(time.time() * 1000)


LIVE_TTL_S = 0.5
"""Seconds a sale's popularity and stock arrays are reused across ranking requests. Recomputing them read the live
board once per sku per request (5,000 velocities for the big sale, every sku of every open sale for the sales
list): most of a request's cost, and at 200 req/s more CPU than the worker has (issue #13). The board itself moves
once a second (the live-state tick, the velocity snapshots), so this adds at most half a second to a change in
popularity or a sell-out; the member's own state is never cached."""


class CandidateCache:
    """Catalogue-derived candidate arrays (ids, hashed brands and categories), rebuilt only when they change.

    Building them costs milliseconds for a 5,000-product sale; only popularity and stock change between two
    requests, and those are swapped in per request (:meth:`fresh`: at most every ``ttl`` seconds).

    >>> clock, builds = [0.0], []
    >>> cache = CandidateCache(clock=lambda: clock[0])
    >>> def build():
    ...     builds.append(1)
    ...     return len(builds)
    >>> [cache.fresh("pop", "v1", 0.5, build) for clock[0] in (0.0, 0.4, 0.6)]
    [1, 1, 2]
    >>> cache.fresh("pop", "v2", 0.5, lambda: 9)  # another version (a catalogue change): rebuilt at once
    9
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.entries: dict[Any, tuple[Any, Any]] = {}
        self.clock = clock

    def get(self, key: Any, version: Any, build: Any) -> Any:
        cached = self.entries.get(key)
        if cached is None or cached[0] != version:
            cached = self.entries[key] = (version, build())
        return cached[1]

    def fresh(self, key: Any, version: Any, ttl: float, build: Any) -> Any:
        """:meth:`get`, also rebuilt when the value is older than ``ttl`` seconds."""
        now = self.clock()
        cached = self.entries.get(key)
        if cached is None or cached[0][0] != version or now - cached[0][1] > ttl:
            cached = self.entries[key] = ((version, now), build())
        return cached[1]


def _cache(worker: Worker) -> CandidateCache:
    cache = worker.extensions.get("candidates")
    if cache is None:
        cache = worker.extensions["candidates"] = CandidateCache()
    return cache


def sale_candidates(worker: Worker, now: int) -> SaleCandidates:
    catalog, board = worker.catalog, worker.board
    open_sales = catalog.open_sales(now)
    open_ids = tuple(sale.sale_id for sale in open_sales)

    def build() -> SaleCandidates:
        return SaleCandidates.from_records([
            {"sale_id": sale.sale_id, "brand": sale.brand, "popularity": 0.0, "starts_at": sale.starts_ms,
             "ends_at": sale.ends_ms,
             "categories": sorted({catalog.products[(sale.sale_id, sku)].category for sku in sale.skus})}
            for sale in open_sales])

    def velocity(sale_id: str) -> float:
        return sum(board.totals[(sale_id, sku)].velocity_at(now) for sku in board.active.get(sale_id, ()))

    version = (catalog.version, open_ids)
    base = _cache(worker).get(("sales",), version, build)
    popularity = _cache(worker).fresh(("sales", "live"), version, LIVE_TTL_S, lambda: np.array(
        [velocity(sale_id) for sale_id in open_ids], dtype=np.float64))
    return dataclasses.replace(base, popularity=popularity)


def product_candidates(worker: Worker, sale_id: str, now: int) -> ProductCandidates:
    catalog, board = worker.catalog, worker.board
    sale = catalog.sales[sale_id]

    def build() -> ProductCandidates:
        products = [catalog.products[(sale_id, sku)] for sku in sale.skus]
        return ProductCandidates.build([p.sku for p in products], [sale.brand] * len(products),
                                       [p.category for p in products], [p.price for p in products],
                                       [0.0] * len(products), stock=[1] * len(products),
                                       sale_id=[sale_id] * len(products))

    def live() -> ProductCandidates:
        popularity, stock = [], []
        for sku in sale.skus:
            totals = board.totals.get((sale_id, sku))
            on_hand = catalog.on_hand(sale_id, sku)
            popularity.append(totals.velocity_at(now) if totals else 0.0)
            stock.append((on_hand - (totals.units if totals else 0)) if on_hand is not None else 1)
        current = dataclasses.replace(base, popularity=np.asarray(popularity, dtype=np.float64),
                                      stock=np.asarray(stock))
        # The in-stock subset, kept with it: taking it copied three lists of 5,000 ids per request (a third of a
        # products ranking, profiled under load); without a stock array the ranker uses it as it is.
        return dataclasses.replace(current.available(), stock=None)

    base = _cache(worker).get(("products", sale_id), catalog.version, build)
    return _cache(worker).fresh(("products", sale_id, "live"), catalog.version, LIVE_TTL_S, live)


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
