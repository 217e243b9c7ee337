"""What the live agent holds: config, :class:`Ranker` (with its global models) and the update rule."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from salepulse.streams.domain.preferences.candidates import ProductCandidates, SaleCandidates
from salepulse.streams.domain.preferences.ranker import Ranked, Ranker
from salepulse.streams.domain.preferences.state import MemberState, PreferenceConfig, to_seconds
from salepulse.streams.domain.preferences.teach import LEARN_SAMPLE, is_choice, learning_rows, rows_of, sku_order


class PreferenceModel:
    """What the live agent holds: config, :class:`Ranker` (with its co-visitation) and the update rule.

    >>> pm = PreferenceModel()
    >>> st = pm.update(None, {"member_id": "m1", "sale_id": "s1", "sku": "a", "brand": "nike",
    ...                       "category": "shoes", "price": 50.0, "kind": "browse", "ts": 1_700_000_000_000})
    >>> st.member_id, st.n_events
    ('m1', 1)
    >>> sales = SaleCandidates.from_records([
    ...     {"sale_id": "s1", "brand": "nike", "categories": ["shoes"], "popularity": 1.0},
    ...     {"sale_id": "s2", "brand": "puma", "categories": ["hats"], "popularity": 8.0}])
    >>> [(r.id, r.reason) for r in pm.rank_sales(st, sales, k=2)]
    [('s1', 'sale you visited'), ('s2', 'trending now')]
    >>> [(r.id, r.reason) for r in pm.rank_sales(None, sales, k=1)]  # cold start
    [('s2', 'trending now')]
    """

    def __init__(self, config: PreferenceConfig | None = None, ranker: Ranker | None = None,
                 learn_sample: int = LEARN_SAMPLE, seed: int = 42) -> None:
        self.config = config or PreferenceConfig()
        self.ranker = ranker or Ranker()
        self.learn_sample = learn_sample
        """Product rows scored per choice besides the chosen, touched and most popular ones (0: all rows)."""
        self._rng = np.random.default_rng(seed)
        self.ranker_updates = {"products": 0, "sales": 0}
        """Choices the blends learnt from, by task (``/stats``: the live ranking is learning)."""
        self.learn_seconds = 0.0
        """Time spent teaching the blends (what :class:`~.teach.TeachBudget` caps)."""

    def new_state(self, member_id: str) -> MemberState:
        """An empty member."""
        return MemberState(member_id, self.config)

    def load_state(self, data: bytes | None, member_id: str) -> MemberState:
        """Member from table bytes (empty member when ``data`` is None)."""
        return self.new_state(member_id) if data is None else MemberState.from_bytes(data, self.config)

    def update(
        self,
        state: MemberState | None,
        event: Mapping[str, Any],
        products: ProductCandidates | None = None,
        sales: SaleCandidates | None = None,
    ) -> MemberState:
        """Fold one event dict into the member (created when ``state`` is None) and the co-visitation.

        Fields: member_id, sku, kind (browse/fav/cart/order), ts (epoch ms or datetime), optional sale_id,
        brand, category, price, quantity, action (add/remove). An order may carry ``lines`` (dicts with
        sku, sale_id, quantity, price/unit_price, brand, category) instead of one sku. When ``products`` /
        ``sales`` (the candidates the member saw) are given for a cart add or an order, the ranking blend
        is taught too - before the member state changes, as in the prequential evaluation.
        """
        if state is None:
            state = self.new_state(str(event["member_id"]))
        t = to_seconds(event["ts"])
        kind = str(event.get("kind", "browse"))
        lines = event.get("lines") or [event]
        if (products is not None or sales is not None) and is_choice(event):
            self.learn(state, lines, products, sales, t)
        action = event.get("action")
        removal = kind == "remove" or action == "remove"
        covisit, sessions = self.ranker.covisit, self.ranker.sessions
        weights = state.items.weights
        for line in lines:
            sku = str(line["sku"])
            if not removal and weights:
                # items.top(10) and min(1.0, w / vmax), inlined (a NaN ratio still gives 1.0): once per signal
                top = sorted(weights.items(), key=itemgetter(1), reverse=True)[:10]
                vmax = top[0][1] or 1.0
                recent = [(i, r if (r := w / vmax) < 1.0 else 1.0) for i, w in top if i != sku]
                if recent:
                    covisit.observe(sku, recent)
            state.observe(
                sku=sku,
                kind=kind,
                t=t,
                brand=line.get("brand"),
                category=line.get("category"),
                price=line.get("price", line.get("unit_price")),
                sale_id=line.get("sale_id"),
                action=action,
                quantity=line.get("quantity"),
            )
            if not removal:
                sessions.add(state.session_key, sku)
        if len(lines) > 1 and not removal and kind == "order":
            self.ranker.baskets.observe([str(line["sku"]) for line in lines])
        return state

    def learn(
        self,
        state: MemberState,
        lines: Sequence[Mapping[str, Any]],
        products: ProductCandidates | None,
        sales: SaleCandidates | None,
        t: float,
    ) -> None:
        """Teach the ranker that the member chose ``lines`` among ``products`` / ``sales``.

        Products are scored on a sample of the candidates (:mod:`~salepulse.streams.domain.preferences.teach`):
        the blends learn from the chosen rows, a few drawn negatives and the member's own rows only.

        >>> pm = PreferenceModel(learn_sample=2)
        >>> st = pm.update(None, {"member_id": "m", "sku": "a", "kind": "browse", "ts": 0})
        >>> c = ProductCandidates.build([f"p{i}" for i in range(50)], ["b"] * 50, ["c"] * 50, [1.0] * 50,
        ...                             [float(i) for i in range(50)])
        >>> st = pm.update(st, {"member_id": "m", "sku": "p3", "kind": "cart", "ts": 1000}, products=c)
        >>> pm.ranker_updates
        {'products': 1, 'sales': 0}
        """
        started = time.perf_counter()
        try:
            self._teach(state, lines, products, sales, t)
        finally:
            self.learn_seconds += time.perf_counter() - started

    def _teach(self, state: MemberState, lines: Sequence[Mapping[str, Any]], products: ProductCandidates | None,
               sales: SaleCandidates | None, t: float) -> None:
        if products is not None and len(products):
            order = sku_order(products)
            pos = rows_of(products.sku_h, (str(ln["sku"]) for ln in lines), order)
            if pos.size:
                if self.learn_sample > 0:
                    keep = np.concatenate([pos, rows_of(products.sku_h, state.touched(), order),
                                           [int(np.argmax(products.popularity))]])
                    rows = learning_rows(len(products), keep, self.learn_sample, self._rng)
                    if rows.size < len(products):
                        products, pos = products.take(rows), np.searchsorted(rows, pos)
                _, cols = self.ranker.score_products(state, products, t)
                self.ranker.learn_products(cols, pos.tolist())
                self.ranker_updates["products"] += 1
        if sales is not None and len(sales):
            pos = rows_of(sales.sale_h, (str(ln.get("sale_id", "")) for ln in lines))
            if pos.size:
                scores, x = self.ranker.score_sales(state, sales, t)
                self.ranker.learn_sales(x, scores, pos.tolist())
                self.ranker_updates["sales"] += 1

    def rank_sales(
        self, state: MemberState | None, candidates: SaleCandidates, k: int, now_ms: float | None = None
    ) -> list[Ranked]:
        """Top ``k`` open sales for the member (popularity only when cold)."""
        return self.ranker.rank_sales(state, candidates, k, now_ms)

    def rank_products(
        self, state: MemberState | None, candidates: ProductCandidates, k: int, now_ms: float | None = None
    ) -> list[Ranked]:
        """Top ``k`` in-stock products for the member (popularity only when cold)."""
        return self.ranker.rank_products(state, candidates, k, now_ms)


_DEFAULT: PreferenceModel | None = None


def _default() -> PreferenceModel:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PreferenceModel()
    return _DEFAULT


def rank_sales(
    member_state: MemberState | None,
    candidates: SaleCandidates,
    k: int,
    now_ms: float | None = None,
    model: PreferenceModel | None = None,
) -> list[Ranked]:
    """Rank open sales for a member with ``model`` (a process-wide default model when None).

    >>> sales = SaleCandidates.from_records([
    ...     {"sale_id": "s1", "brand": "b", "categories": [], "popularity": 1.0,
    ...      "starts_at": 0, "ends_at": 10},
    ...     {"sale_id": "s2", "brand": "c", "categories": [], "popularity": 0.0,
    ...      "starts_at": 0, "ends_at": 99}])
    >>> [r.id for r in rank_sales(None, sales, k=5, now_ms=50)]  # s1 is closed at t=50
    ['s2']
    """
    return (model or _default()).rank_sales(member_state, candidates, k, now_ms)


def rank_products(
    member_state: MemberState | None,
    candidates: ProductCandidates,
    k: int,
    now_ms: float | None = None,
    model: PreferenceModel | None = None,
) -> list[Ranked]:
    """Rank in-stock products for a member with ``model`` (a process-wide default model when None).

    >>> c = ProductCandidates.build(["a", "b"], ["x", "y"], ["c", "c"], [1.0, 2.0], [5.0, 1.0], stock=[0, 3])
    >>> [r.id for r in rank_products(None, c, k=5)]  # a is sold out
    ['b']
    """
    return (model or _default()).rank_products(member_state, candidates, k, now_ms)

