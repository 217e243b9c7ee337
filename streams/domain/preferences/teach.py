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

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from salepulse.streams.domain.preferences.state import hashes

LEARN_SAMPLE = 128
"""Rows drawn uniformly per choice besides the kept ones: 16 times the 8 negatives a blend draws per choice."""


def rows_of(keys_h: np.ndarray, wanted: Iterable[str]) -> np.ndarray:
    """Positions of the rows whose hashed key is one of ``wanted`` (ascending).

    >>> rows_of(hashes(["a", "b", "c", "b"]), ["b", "z"]).tolist()
    [1, 3]
    >>> rows_of(hashes(["a"]), []).tolist()
    []
    """
    want = hashes(wanted)
    if not want.size or not keys_h.size:
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.isin(keys_h, want))


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
