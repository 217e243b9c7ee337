"""How a simulated world's sales turn into events, lazily: a sale's audience, orders and arrival schedule are drawn
when it opens, one simulated minute of it is expanded into journeys at a time, and the journeys of all open sales
are merged through a heap in event-time order, with stock applied at emission.

Part of :mod:`salepulse.consumers.tools.simulate` (pure, no Kafka, no Faust): :class:`SaleTraffic` is the event half of
:class:`salepulse.consumers.tools.simulate_world.SimulatedWorld`, which plans the members, brands and sales it reads.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from salepulse.consumers.tools.simulate_plan import (
    _CART,
    _ORDER,
    _UNCART,
    _VIEW,
    APP_SHARE,
    BRAND_BOOST,
    CATEGORY_BOOST,
    CURRENCY,
    EPOCH,
    PRICE_AFFINITY,
    PRICE_BANDS,
    REGIONS,
    Event,
    _dt,
    _SalePlan,
    _SaleRun,
)


class SaleTraffic:
    """The lazy event stream of a planned world (mixed into
    :class:`~salepulse.consumers.tools.simulate_world.SimulatedWorld`,
    which sets the attributes declared here)."""

    seed: int
    n_members: int
    prefix: str
    stockouts: dict[tuple[str, str], datetime]
    _plans: list[_SalePlan]
    _activity: np.ndarray
    _fav_brands: np.ndarray
    _fav_categories: np.ndarray
    _price_band: np.ndarray
    _region: np.ndarray

    # ------------------------------------------------------------------ lazy events
    def _open(self, plan: _SalePlan) -> _SaleRun:
        """Draw what a sale needs only once it opens: its audience, its orders and its arrival schedule."""
        rng = np.random.default_rng([self.seed, 1_000 + plan.index])
        fans = (self._fav_brands == plan.brand).any(axis=1)
        audience = np.cumsum(self._activity * (1.0 + BRAND_BOOST * fans))
        # split each product's demand into order lines of 1+ units (negative binomial extra units)
        line_product: list[np.ndarray] = []
        line_units: list[np.ndarray] = []
        for k in np.flatnonzero(plan.demand > 0):
            remaining, extra = int(plan.demand[k]), float(plan.extra_units[k])
            while remaining > 0:
                n = max(4, int(remaining / (1.0 + extra) * 1.3) + 4)
                units = 1 + np.minimum(11, rng.negative_binomial(0.6, 0.6 / (0.6 + extra), n))
                total = np.cumsum(units)
                cut = int(np.searchsorted(total, remaining))
                if cut < n:
                    units = units[: cut + 1]
                    units[-1] -= int(total[cut]) - remaining
                    remaining = 0
                else:
                    remaining -= int(total[-1])
                line_product.append(np.full(len(units), k))
                line_units.append(units)
        orders: list[tuple[tuple[int, int], ...]] = []
        if line_product:
            products = np.concatenate(line_product)
            units = np.concatenate(line_units)
            order = rng.permutation(len(products))
            products, units = products[order].tolist(), units[order].tolist()
            sizes = rng.choice([1, 2, 3], size=len(products), p=[0.84, 0.12, 0.04]).tolist()
            i = 0
            while i < len(products):
                lines: list[tuple[int, int]] = []
                want = sizes[i]
                while i < len(products) and len(lines) < want and all(products[i] != p for p, _ in lines):
                    lines.append((products[i], units[i]))
                    i += 1
                orders.append(tuple(lines))
        n_lines = sum(len(o) for o in orders)
        carts = n_lines / plan.cart_to_order
        views_needed = carts / plan.view_to_cart
        order_views = n_lines * 1.3 + len(orders) * 1.2  # what the buying journeys view themselves
        browse_views = max(4.0 * 20, views_needed - order_views)
        sessions = int(round(browse_views / 4.0))
        p_cart = min(0.5, max(0.0, carts - n_lines) / browse_views)
        edges = np.linspace(0.0, 1.0, plan.n_slices + 1)
        probs = np.diff(plan.arrival_cdf(edges))
        probs = np.clip(probs, 0.0, None)
        probs /= probs.sum()
        return _SaleRun(plan, rng, audience, orders, 0, rng.multinomial(len(orders), probs),
                        rng.multinomial(sessions, probs), p_cart)

    def _members(self, run: _SaleRun, n: int) -> np.ndarray:
        picks = np.searchsorted(run.audience, run.rng.random(n) * run.audience[-1], side="right")
        return np.minimum(picks, self.n_members - 1)

    def _affinity(self, members: np.ndarray, plan: _SalePlan) -> np.ndarray:
        """(members x products) attractiveness of each product to each member: category and price band."""
        fav = (self._fav_categories[members][:, :, None] == plan.categories[None, None, :]).any(axis=1)
        gap = np.abs(self._price_band[members][:, None] - plan.bands[None, :])
        return (1.0 + CATEGORY_BOOST * fav) * PRICE_AFFINITY[np.minimum(gap, PRICE_BANDS - 1)]

    def _expand(self, run: _SaleRun, j: int, heap: list[tuple[Any, ...]], counters: list[int]) -> None:
        """Generate the journeys that start in slice ``j`` of a sale and push their events onto ``heap``.

        Every event of a journey is at or after the journey's start, which is at or after the slice's start;
        that is what lets :meth:`events` emit anything earlier than the next unexpanded slice.
        """
        plan, rng = run.plan, run.rng
        slice_ms = (plan.end_ms - plan.start_ms) / plan.n_slices
        a = plan.start_ms + int(j * slice_ms)
        b = plan.start_ms + int((j + 1) * slice_ms)
        last = plan.end_ms - 1
        n_products = len(plan.skus)
        push = heapq.heappush
        prefix = self.prefix

        # ---- browse-only sessions: member first, then what she looks at (her categories, her price band)
        n_b = int(run.session_counts[j])
        if n_b:
            members = self._members(run, n_b)
            weights = self._affinity(members, plan) * plan.view_weight[None, :]
            cum = np.cumsum(weights, axis=1)
            cum /= cum[:, -1:]
            cum += np.arange(n_b)[:, None]
            n_views = 1 + np.minimum(29, rng.negative_binomial(1, 0.25, n_b))
            total = int(n_views.sum())
            row = np.repeat(np.arange(n_b), n_views)
            picked = np.searchsorted(cum.ravel(), rng.random(total) + row, side="right") - row * n_products
            picked = np.clip(picked, 0, n_products - 1)
            first = np.concatenate(([0], np.cumsum(n_views)[:-1]))
            gaps = rng.exponential(45_000.0, total)
            gaps[first] = 0.0
            steps = np.cumsum(gaps)
            anchors = a + rng.random(n_b) * (b - a)
            view_t = np.minimum(last, (anchors[row] + steps - steps[first][row]).astype(np.int64))
            carted = rng.random(total) < run.p_cart
            cart_t = np.minimum(last, view_t + rng.integers(10_000, 180_000, total))
            cart_units = 1 + (rng.random(total) < 0.08)
            removed = rng.random(total) < 0.45
            remove_t = np.minimum(last, cart_t + 5_000 + rng.exponential(360_000.0, total).astype(np.int64))
            app = rng.random(n_b) < APP_SHARE
            anonymous = rng.random(n_b) < 0.05
            sessions: list[str | None] = []
            for s in range(n_b):
                counters[1] += 1
                sessions.append(None if anonymous[s] else f"{prefix}-s{counters[1]}")
            channels = ["app" if x else "web" for x in app.tolist()]
            members_l = members.tolist()
            for v, (r, k, t) in enumerate(zip(row.tolist(), picked.tolist(), view_t.tolist(), strict=True)):
                m, ch, sess = members_l[r], channels[r], sessions[r]
                counters[0] += 1
                push(heap, (t, counters[0], _VIEW, plan.index, k, m, ch, sess))
                if carted[v]:
                    alive = [True]  # cleared if the add is refused (sold out), so the remove goes too
                    q = int(cart_units[v])
                    counters[0] += 1
                    push(heap, (int(cart_t[v]), counters[0], _CART, plan.index, k, m, ch, sess, q, alive))
                    if removed[v]:
                        counters[0] += 1
                        push(heap, (int(remove_t[v]), counters[0], _UNCART, plan.index, k, m, ch, sess, q, alive))

        # ---- buying journeys: the order is planned; find a member who fits it, then walk her to checkout
        n_o = int(run.order_counts[j])
        if n_o:
            planned = run.orders[run.next_order: run.next_order + n_o]
            run.next_order += n_o
            tries = 8
            candidates = self._members(run, n_o * tries).reshape(n_o, tries)
            lead = np.array([o[0][0] for o in planned])
            fav = (self._fav_categories[candidates] == plan.categories[lead][:, None, None]).any(axis=2)
            gap = np.abs(self._price_band[candidates] - plan.bands[lead][:, None])
            fit = (1.0 + CATEGORY_BOOST * fav) * PRICE_AFFINITY[np.minimum(gap, PRICE_BANDS - 1)]
            accept = rng.random((n_o, tries)) * (1.0 + CATEGORY_BOOST) < fit
            chosen = np.where(accept.any(axis=1), accept.argmax(axis=1), tries - 1)
            buyers = candidates[np.arange(n_o), chosen].tolist()
            anchors = (a + rng.random(n_o) * (b - a)).astype(np.int64).tolist()
            app = (rng.random(n_o) < APP_SHARE).tolist()
            browse_p = plan.view_weight / plan.view_weight.sum()
            for o, lines in enumerate(planned):
                m, t = buyers[o], anchors[o]
                ch = "app" if app[o] else "web"
                counters[1] += 1
                sess = f"{prefix}-s{counters[1]}"
                for k in rng.choice(n_products, size=int(rng.poisson(1.2)), p=browse_p).tolist():
                    counters[0] += 1
                    push(heap, (min(last, t), counters[0], _VIEW, plan.index, k, m, ch, sess))
                    t += int(rng.exponential(40_000.0))
                for k, q in lines:
                    for _ in range(1 + (rng.random() < 0.3)):
                        counters[0] += 1
                        push(heap, (min(last, t), counters[0], _VIEW, plan.index, k, m, ch, sess))
                        t += 5_000 + int(rng.exponential(50_000.0))
                    t += int(rng.integers(10_000, 200_000))
                    counters[0] += 1
                    push(heap, (min(last, t), counters[0], _CART, plan.index, k, m, ch, sess, q, [True]))
                    t += int(rng.exponential(40_000.0))
                t += int(rng.integers(60_000, 600_000))
                counters[0] += 1
                push(heap, (min(last, t), counters[0], _ORDER, plan.index, lines, m, ch))

    def events(self) -> Iterator[Event]:
        """Yield ``(kind, record)`` in event-time order; kind is ``browse``, ``cart`` or ``order``.

        Lazy: a heap holds the not-yet-expanded slice of every sale (keyed by its start) and the pending events
        of expanded journeys; an event is emitted once no unexpanded slice can start before it. Stock is
        applied at emission, in time order: a cart add of a sold-out product is refused (its remove too), an
        order line is cut to the units left and dropped at zero, and an order with no line left is not placed.
        Each call starts from full stock and replays the identical stream.
        """
        plans = self._plans
        skus = [p.skus for p in plans]
        sale_ids = [p.sale_id for p in plans]
        prices = [p.prices for p in plans]
        left = [list(p.stock) for p in plans]
        self.stockouts = stockouts = {}
        runs: dict[int, _SaleRun] = {}
        slices: list[tuple[int, int, int]] = [(p.start_ms, p.index, 0) for p in plans]
        heapq.heapify(slices)
        heap: list[tuple[Any, ...]] = []
        counters = [0, 0]  # heap sequence (tie-break), session number
        pop = heapq.heappop
        prefix = self.prefix
        n_view = n_cart = n_order = 0
        while heap or slices:
            if slices and (not heap or slices[0][0] <= heap[0][0]):
                _, s, j = pop(slices)
                run = runs.get(s)
                if run is None:
                    run = runs[s] = self._open(plans[s])
                self._expand(run, j, heap, counters)
                if j + 1 < plans[s].n_slices:
                    plan = plans[s]
                    nxt = plan.start_ms + int((j + 1) * (plan.end_ms - plan.start_ms) / plan.n_slices)
                    heapq.heappush(slices, (nxt, s, j + 1))
                else:
                    del runs[s]  # its events are all on the heap now
                continue
            entry = pop(heap)
            t, code, s = entry[0], entry[2], entry[3]
            if code == _VIEW:
                n_view += 1
                yield "browse", {
                    "event_id": f"{prefix}-v{n_view}", "member_id": f"m{entry[5]:06d}", "sale_id": sale_ids[s],
                    "sku": skus[s][entry[4]], "ts": EPOCH + timedelta(milliseconds=t), "channel": entry[6],
                    "session_id": entry[7],
                }
            elif code == _ORDER:
                stock_left = left[s]
                lines = []
                for k, q in entry[4]:
                    have = stock_left[k]
                    if have <= 0:
                        continue
                    q = min(q, have)
                    stock_left[k] = have - q
                    if have == q:
                        stockouts[(sale_ids[s], skus[s][k])] = _dt(t)
                    lines.append({"sale_id": sale_ids[s], "sku": skus[s][k], "quantity": q,
                                  "unit_price": prices[s][k]})
                if not lines:
                    continue  # everything in the basket sold out meanwhile: checkout fails, no order
                n_order += 1
                order_id = f"{prefix}-o{n_order}"
                yield "order", {
                    "event_id": order_id, "order_id": order_id, "member_id": f"m{entry[5]:06d}", "lines": lines,
                    "currency": CURRENCY, "ts": _dt(t), "channel": entry[6],
                    "region": REGIONS[int(self._region[entry[5]])],
                }
            else:
                alive = entry[9]
                k = entry[4]
                if code == _CART:
                    if left[s][k] <= 0:
                        alive[0] = False
                        continue
                elif not alive[0]:
                    continue
                n_cart += 1
                yield "cart", {
                    "event_id": f"{prefix}-c{n_cart}", "member_id": f"m{entry[5]:06d}", "sale_id": sale_ids[s],
                    "sku": skus[s][k], "action": "add" if code == _CART else "remove", "quantity": entry[8],
                    "unit_price": prices[s][k], "ts": _dt(t), "channel": entry[6], "session_id": entry[7],
                }
