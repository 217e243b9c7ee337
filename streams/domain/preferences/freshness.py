"""Item freshness: how recently a product first sold (pure logic, no Kafka/Faust).

A shop's new lines are what returning buyers add that they never bought: on Online Retail discover (hit@20, the
evaluation's protocol, a replay of fixed blends), 3-day popularity + same-order co-purchase 0.510, plus
``0.5 * fresh`` 0.548, where ``fresh = -log1p(days since the item's first event)`` (0 for an item first seen
now, about -5.8 after a year). Candidates carry the first-event time when the caller knows it
(``ProductCandidates.first_seen``, epoch seconds); without it, or without a ranking time, the feature is 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DAY = 86400.0


def freshness(first_seen: np.ndarray, now: float) -> np.ndarray:
    """``-log1p(age in days)``: 0 for an item first seen now, lower the older it is (unknown times count as new).

    >>> np.round(freshness(np.array([100.0, 100.0 - 86400.0, np.nan]), now=100.0), 3).tolist()
    [-0.0, -0.693, -0.0]
    """
    age = np.maximum(now - np.nan_to_num(first_seen, nan=now), 0.0) / DAY
    return -np.log1p(age)


def f_fresh(ctx: Any) -> np.ndarray:
    """The candidates' freshness at the ranking time (0 when their first-event times are not known)."""
    first = getattr(ctx.cands, "first_seen", None)
    if first is None or ctx.now is None:
        return np.zeros(len(ctx.cands))
    return freshness(first, ctx.now)
