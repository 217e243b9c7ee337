"""Which candidate rows teach the ranking blends when a member chooses (pure logic, no Kafka, no Faust).

A cart add or an order says: the member chose these rows among the candidates. :meth:`Blend.learn
<salepulse.streams.domain.preferences.ranker.Blend.learn>` pairs each chosen row with a few uniformly drawn rows of
the same part, so computing the features of all 5,000 products of a sale (about 250 µs) to use a dozen of them is
waste. :func:`learning_rows` keeps what the update needs exactly and a uniform sample of the rest:

* the chosen rows;
* every row the member touched (the "again" part is small and its gate compares full orderings of it);
* the most popular row: the ``pop`` feature is popularity relative to the most popular candidate, so with that
  row in the sample every kept row has the very feature values the full ranking gives it;
* ``size`` rows drawn uniformly without replacement (the pool the "new" negatives are drawn from: a uniform
  sample of a uniform sample is uniform).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from salepulse.streams.domain.preferences.state import hashes

LEARN_SAMPLE = 128
"""Rows drawn uniformly per choice besides the kept ones: 16 times the 8 negatives a blend draws per choice."""


def rows_of(keys_h: np.ndarray, wanted: Iterable[str], order: np.ndarray | None = None) -> np.ndarray:
    """Positions of the rows whose hashed key is one of ``wanted`` (ascending); ``order`` (``argsort(keys_h)``,
    kept with the candidates) makes it a binary search per wanted key instead of a pass over every row per key.

    >>> keys = hashes(["a", "b", "c", "b"])
    >>> rows_of(keys, ["b", "z"]).tolist(), rows_of(keys, ["b", "z"], np.argsort(keys, kind="stable")).tolist()
    ([1, 3], [1, 3])
    >>> rows_of(hashes(["a"]), []).tolist()
    []
    """
    want = hashes(wanted)
    if not want.size or not keys_h.size:
        return np.empty(0, dtype=np.int64)
    if order is None:
        return np.flatnonzero(np.isin(keys_h, want))
    ordered = keys_h[order]
    lo, hi = np.searchsorted(ordered, want, "left"), np.searchsorted(ordered, want, "right")
    return np.sort(np.concatenate([order[a:b] for a, b in zip(lo.tolist(), hi.tolist(), strict=True)]))


def sku_order(products: Any) -> np.ndarray:
    """``argsort`` of the candidates' sku hashes, computed once per candidates object (kept on it)."""
    order = getattr(products, "_sku_order", None)
    if order is None:
        order = np.argsort(products.sku_h, kind="stable")
        products._sku_order = order
    return order


def learning_rows(n: int, keep: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted distinct row positions: all of ``keep`` and ``size`` more drawn uniformly (every row when ``n`` is
    small enough that sampling would save nothing).

    >>> rng = np.random.default_rng(0)
    >>> rows = learning_rows(1000, np.array([7, 3, 7]), 5, rng)
    >>> len(rows), {3, 7} <= set(rows.tolist()), rows.tolist() == sorted(set(rows.tolist()))
    (7, True, True)
    >>> learning_rows(6, np.array([1]), 5, rng).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    kept = np.unique(keep.astype(np.int64))
    if n <= kept.size + size:
        return np.arange(n, dtype=np.int64)
    # Draw from the rows not kept: exactly ``size`` extra rows, each remaining row equally likely.
    rest = np.ones(n, dtype=bool)
    rest[kept] = False
    drawn = rng.choice(np.flatnonzero(rest), size=size, replace=False)
    return np.union1d(kept, drawn)


def is_choice(event: Mapping[str, Any]) -> bool:
    """A cart add or an order: the member chose among the candidates (what the ranking blends learn from).

    >>> is_choice({"kind": "order"}), is_choice({"kind": "cart", "action": "remove"}), is_choice({"kind": "browse"})
    (True, False, False)
    >>> is_choice({"kind": "cart", "action": None})
    True
    """
    kind = event.get("kind")
    return kind == "order" or (kind == "cart" and (event.get("action") or "add") != "remove")


TEACH_SHARE = 0.1
"""Share of the learner's wall time that teaching the blends may take (the rest is for member state)."""


class TeachBudget:
    """Caps the time spent teaching the blends at ``share`` of each ``window_s`` of wall time.

    Teaching one choice costs about as much as one ranking (the member's features, then River), ten times a
    browse update; a learner that taught every cart and order at full load would fold signals at a fraction of
    its rate. The blends are a few weights shared by every member, so a sample of the choices teaches them as
    well: under light load every choice teaches, at full load as many as ``share`` of the time allows. Which
    choices are skipped depends on timing only, not on what was chosen.

    >>> spent, now = [0.0], [0.0]
    >>> b = TeachBudget(share=0.1, window_s=1.0, spent=lambda: spent[0], clock=lambda: now[0])
    >>> b.allow()
    True
    >>> spent[0] = 0.12; b.allow(), b.skipped   # 120 ms of teaching in this second: over 10 %
    (False, 1)
    >>> now[0] = 1.5; b.allow()                 # a new window
    True
    """

    def __init__(self, share: float = TEACH_SHARE, window_s: float = 1.0,
                 spent: Callable[[], float] = lambda: 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self.window_s = window_s
        self.spent = spent
        self.clock = clock
        self._start = clock()
        self._spent_at_start = spent()
        self.skipped = 0

    def allow(self) -> bool:
        """Whether the next choice may teach (counted in :attr:`skipped` when not)."""
        now = self.clock()
        if now - self._start >= self.window_s:
            self._start, self._spent_at_start = now, self.spent()
        if self.spent() - self._spent_at_start < self.share * self.window_s:
            return True
        self.skipped += 1
        return False
