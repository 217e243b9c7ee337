"""Ranking candidates from the live catalogue and board: what ``GET /members/{id}/…`` ranks, and what a member
chose among when they carted or ordered (the live learner teaches the ranking blends with it).

The catalogue-derived arrays (ids, hashed brands and categories) are built once per catalogue version in one
:class:`CandidateCache` per worker, shared by the HTTP ranking and the learner; live popularity and stock are
swapped in at most every ``LIVE_TTL_S`` by the HTTP ranking, and at most every ``max_age_s`` per sale by the learner
(:class:`ChoiceCandidates`): refreshing them costs a pass over every product of the sale, which a cart add cannot
pay each time.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from salepulse.streams.domain.preferences import ProductCandidates, SaleCandidates
from salepulse.streams.domain.preferences.teach import TeachBudget, is_choice
from salepulse.streams.platform.logs import get_logger

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

log = get_logger(__name__)

CHOICE_MAX_AGE_S = 5.0
"""Seconds (wall clock) the learner reuses a sale's popularity and stock, and the open sales' popularity."""
MAX_CHOICE_SALES = 512
"""Sales whose product candidates the learner keeps; beyond it the stale ones are dropped."""


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
    """The sales open at ``now`` (epoch ms) with their live popularity (units per hour of their products)."""
    catalog, board = worker.catalog, worker.board
    open_sales = catalog.open_sales(now)
    open_ids = tuple(sale.sale_id for sale in open_sales)

    def build() -> SaleCandidates:
        return SaleCandidates.from_records([
            {"sale_id": sale.sale_id, "brand": sale.brand, "popularity": 0.0, "starts_at": sale.starts_ms,
             "ends_at": sale.ends_ms,
             "categories": sorted({catalog.products[(sale.sale_id, sku)].category for sku in sale.skus})}
            for sale in open_sales])

    version = (catalog.version, open_ids)
    base = _cache(worker).get(("sales",), version, build)
    popularity = _cache(worker).fresh(("sales", "live"), version, LIVE_TTL_S, lambda: np.array(
        [board.sale_velocity(sale_id, now) for sale_id in open_ids], dtype=np.float64))
    return dataclasses.replace(base, popularity=popularity)


def product_candidates(worker: Worker, sale_id: str, now: int) -> ProductCandidates:
    """The in-stock products of ``sale_id`` with their live popularity (``stock`` None: the subset is taken)."""
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
            totals = board.live_totals(sale_id, sku)
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


class ChoiceCandidates:
    """What a member chose among when a signal is a cart add or an order: the in-stock products of the signal's
    sale and the open sales, built as the HTTP ranking builds them, reused for ``max_age_s`` (wall clock).

    A browse, a removal or a signal of a sale the catalogue does not know gets ``(None, None)``: nothing to teach;
    so does a choice over the ``budget`` (by default :class:`TeachBudget` over the worker's model: teaching takes
    at most a tenth of the learner's time).
    """

    def __init__(self, worker: Worker, max_age_s: float = CHOICE_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic, budget: TeachBudget | None = None) -> None:
        self.worker = worker
        self.max_age_s = max_age_s
        self.clock = clock
        model = worker.preferences
        self.budget = budget or TeachBudget(spent=lambda: model.learn_seconds, clock=clock)
        self._products: dict[str, tuple[float, ProductCandidates]] = {}
        self._sales: tuple[float, SaleCandidates] | None = None
        self.refreshes = 0
        self.failed = 0

    def __call__(self, update: Mapping[str, Any]) -> tuple[ProductCandidates | None, SaleCandidates | None]:
        """(products, sales) the member of ``update`` (a :func:`preference_update` dict) chose among."""
        sale_id = update.get("sale_id")
        if not is_choice(update) or not sale_id or sale_id not in self.worker.catalog.sales:
            return None, None
        if not self.budget.allow():
            return None, None
        now, wall = int(update["ts"]), self.clock()
        try:
            return self._product_set(sale_id, now, wall), self._sale_set(sale_id, now, wall)
        except Exception as exc:  # noqa: BLE001 - the member's own update must not be lost to the candidates
            # (the catalogue follower's thread may be half-way through a sale the arrays are built from)
            self.failed += 1
            log.warning("choice candidates unavailable; member updated without teaching the blends",
                        sale_id=str(sale_id)[:200], error=repr(exc)[:300])
            return None, None

    def _product_set(self, sale_id: str, now: int, wall: float) -> ProductCandidates:
        got = self._products.get(sale_id)
        if got is None or wall - got[0] > self.max_age_s:
            if len(self._products) >= MAX_CHOICE_SALES:
                self._products = {k: v for k, v in self._products.items() if wall - v[0] <= self.max_age_s}
            got = self._products[sale_id] = (wall, product_candidates(self.worker, sale_id, now))
            self.refreshes += 1
        return got[1]

    def _sale_set(self, sale_id: str, now: int, wall: float) -> SaleCandidates:
        got = self._sales
        # a sale that opened since the last refresh is not among them yet: refresh now rather than learn without it
        if got is None or wall - got[0] > self.max_age_s or sale_id not in got[1].sale_id:
            got = self._sales = (wall, sale_candidates(self.worker, now))
            self.refreshes += 1
        return got[1]
