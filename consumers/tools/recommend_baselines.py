"""The baselines ``evaluate recommend`` holds the model against (pure logic, dense numpy scores per item index).

Items are integer indices (0..n-1, in first-seen order). Every baseline returns one score per candidate; ties
are broken by the evaluator the same way for every ranker (all-time popularity, then the most recent event).

* ``repeat`` - the member's own items, most recently touched first (then nothing: ties go to popularity).
* ``popular`` - all-time event counts so far.
* ``trending`` - event counts in the last ``window`` seconds (1 h on click-streams, 7 days on Online Retail).
* ``item_knn`` - item co-occurrence kNN: cosine of co-occurrence counts (items touched by the same member within
  their last ``window`` distinct items) between each candidate and the member's last ``query`` items.
* ``session_knn`` - V-SKNN (Ludewig & Jannach 2018): :class:`salepulse.streams.domain.preferences.SessionKNN` over every
  member's sessions (a gap over 30 min starts a session), queried with the member's last items.
* ``category_trend`` - trending within the member's recent categories: category weight 1/(1 + its recency rank)
  among the member's last ``n_categories`` categories, times (1 + log1p(trending count)).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Sequence

import numpy as np

from salepulse.streams.domain.preferences import SessionKNN


class Items:
    """Everything seen so far, by integer index: counts, last event time, trending window counts, category.

    >>> it = Items(window=10.0)
    >>> a, b = it.index("a", "c1"), it.index("b", "c2")
    >>> it.seen(a, 0.0); it.seen(a, 5.0); it.seen(b, 12.0); it.expire(12.0)
    >>> it.count[:2].tolist(), it.trend[:2].tolist()
    ([2.0, 1.0], [1.0, 1.0])
    >>> it.active(12.0, horizon=10.0).tolist()
    [0, 1]
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.cat_ids: dict[str, int] = {}
        self.cap = 1024
        self.count = np.zeros(self.cap)
        self.trend = np.zeros(self.cap)
        self.last = np.full(self.cap, -np.inf)
        self.cat = np.zeros(self.cap, np.int64)
        self._events: deque[tuple[float, int]] = deque()

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, key: str, category: str = "") -> int:
        """The index of ``key`` (new items get the next one)."""
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = len(self.keys)
            self.keys.append(key)
            if i >= self.cap:
                self.cap *= 2
                for name, fill in (("count", 0.0), ("trend", 0.0), ("last", -np.inf), ("cat", 0)):
                    a = getattr(self, name)
                    setattr(self, name, np.concatenate([a, np.full(a.size, fill, dtype=a.dtype)]))
            self.cat[i] = self.cat_ids.setdefault(category, len(self.cat_ids))
        return i

    def seen(self, i: int, t: float) -> None:
        """Item ``i`` had an event at ``t``."""
        self.count[i] += 1.0
        self.trend[i] += 1.0
        self.last[i] = max(self.last[i], t)
        self._events.append((t, i))

    def expire(self, t: float) -> None:
        """Drop events older than the trending window from the trending counts."""
        ev = self._events
        while ev and ev[0][0] < t - self.window:
            self.trend[ev.popleft()[1]] -= 1.0

    def active(self, t: float, horizon: float) -> np.ndarray:
        """Indices of items with an event in ``[t - horizon, t]``."""
        return np.flatnonzero(self.last[: len(self.keys)] >= t - horizon)


class History:
    """One member's touched items (most recent last) and categories, unbounded: the baselines' view."""

    __slots__ = ("items", "cats", "last_t", "session")

    def __init__(self) -> None:
        self.items: OrderedDict[int, float] = OrderedDict()
        self.cats: OrderedDict[int, float] = OrderedDict()
        self.last_t = -math.inf
        self.session = 0.0

    def touch(self, i: int, cat: int, t: float, gap: float) -> None:
        if t - self.last_t > gap:
            self.session = t
        self.last_t = t
        self.items[i] = t
        self.items.move_to_end(i)
        self.cats[cat] = t
        self.cats.move_to_end(cat)

    def recent(self, n: int) -> list[int]:
        """The last ``n`` distinct items, most recent first."""
        out = []
        for i in reversed(self.items):
            out.append(i)
            if len(out) == n:
                break
        return out


def _dense(scores: dict[int, float], cands: np.ndarray) -> np.ndarray:
    """Scores of ``cands`` from an item -> score dict (0 when absent), without a per-candidate Python loop."""
    if not scores or not cands.size:
        return np.zeros(cands.size)
    keys = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    size = int(max(keys.max(), cands.max())) + 1
    dense = np.zeros(size)
    dense[keys] = vals
    return dense[cands]


def repeat(hist: History | None, cands: np.ndarray) -> np.ndarray:
    """Most recently touched first: 1 + 1/(1 + recency rank) for the member's items, 0 otherwise.

    >>> h = History()
    >>> for i in (3, 1, 3, 2): h.touch(i, 0, 0.0, 60.0)
    >>> repeat(h, np.array([1, 2, 3, 4])).tolist()
    [1.3333333333333333, 2.0, 1.5, 0.0]
    """
    if hist is None or not hist.items:
        return np.zeros(cands.size)
    return _dense({i: 1.0 + 1.0 / (1 + rank) for rank, i in enumerate(reversed(hist.items))}, cands)


class ItemKNN:
    """Item co-occurrence kNN (cosine), learnt from each member's last ``window`` distinct items; each item keeps
    its ``neighbours`` strongest co-occurrences.

    >>> knn = ItemKNN(window=5)
    >>> for member, items in {"u1": [0, 1], "u2": [0, 1, 2], "u3": [0, 3]}.items():
    ...     h = History()
    ...     for i in items:
    ...         knn.observe(h, i); h.touch(i, 0, 0.0, 60.0)
    >>> h = History(); h.touch(1, 0, 0.0, 60.0)
    >>> np.round(knn.scores(h, np.array([0, 2, 3])), 3).tolist()  # 0 co-occurs with 1 twice, 2 once, 3 never
    [0.816, 0.707, 0.0]
    """

    def __init__(self, window: int = 20, query: int = 10, neighbours: int = 100) -> None:
        self.window = window
        self.query = query
        self.neighbours = neighbours
        self.co: dict[int, dict[int, float]] = {}
        self.n: dict[int, float] = {}

    def observe(self, hist: History, i: int) -> None:
        """The member (``hist`` BEFORE this event) touches ``i``: count it with their last distinct items."""
        self.n[i] = self.n.get(i, 0.0) + (0.0 if i in hist.items else 1.0)
        if i in hist.items:
            return  # a repeat adds no new pair
        for j in hist.recent(self.window):
            if j != i:
                self._bump(i, j)
                self._bump(j, i)

    def _bump(self, a: int, b: int) -> None:
        row = self.co.setdefault(a, {})
        row[b] = row.get(b, 0.0) + 1.0
        if len(row) > 2 * self.neighbours:  # keep the strongest neighbours (a kNN), pruned once per doubling
            self.co[a] = dict(sorted(row.items(), key=lambda kv: -kv[1])[: self.neighbours])

    def scores(self, hist: History | None, cands: np.ndarray) -> np.ndarray:
        out = np.zeros(cands.size)
        if hist is None or not hist.items:
            return out
        acc: dict[int, float] = {}
        for pos, j in enumerate(hist.recent(self.query)):
            row = self.co.get(j)
            if not row:
                continue
            w = 1.0 / (1 + pos) / math.sqrt(self.n.get(j, 1.0))
            for c, v in row.items():
                acc[c] = acc.get(c, 0.0) + w * v / math.sqrt(self.n.get(c, 1.0))
        return _dense(acc, cands)


class SessionKNNBaseline:
    """V-SKNN over integer items (see :class:`salepulse.streams.domain.preferences.SessionKNN`)."""

    def __init__(self, query: int = 10) -> None:
        self.query = query
        self.knn = SessionKNN()

    def observe(self, member: str, hist: History, i: int) -> None:
        """``hist`` AFTER the touch (its session start is current)."""
        self.knn.add(f"{member}@{hist.session:.0f}", str(i))

    def scores(self, hist: History | None, cands: np.ndarray) -> np.ndarray:
        out = np.zeros(cands.size)
        if hist is None or not hist.items:
            return out
        got = self.knn.scores([str(i) for i in hist.recent(self.query)])
        return _dense({int(c): v for c, v in got.items()}, cands)


def category_trend(hist: History | None, items: Items, cands: np.ndarray, n_categories: int = 5) -> np.ndarray:
    """Trending within the member's last ``n_categories`` categories (category recency first).

    >>> it = Items(window=100.0)
    >>> for key, cat, n in [("a", "x", 1), ("b", "x", 3), ("c", "y", 9)]:
    ...     i = it.index(key, cat)
    ...     for _ in range(n): it.seen(i, 0.0)
    >>> h = History(); h.touch(it.index("a"), int(it.cat[0]), 0.0, 60.0)
    >>> np.round(category_trend(h, it, np.array([0, 1, 2])), 3).tolist()  # c trends but is not in x
    [1.693, 2.386, 0.0]
    """
    out = np.zeros(cands.size)
    if hist is None or not hist.cats:
        return out
    weight = np.zeros(len(items.cat_ids))
    for rank, c in enumerate(reversed(hist.cats)):
        if rank == n_categories:
            break
        weight[c] = 1.0 / (1 + rank)
    w = weight[items.cat[cands]]
    return w * (1.0 + np.log1p(np.maximum(items.trend[cands], 0.0)))


def rank_of(scores: np.ndarray, tiebreak: np.ndarray, positions: Sequence[int]) -> list[int]:
    """1-based ranks of ``positions``: higher score first, then higher ``tiebreak``, then lower position.

    >>> rank_of(np.array([1.0, 3.0, 1.0, 1.0]), np.array([0.0, 0.0, 5.0, 0.0]), [0, 2, 3])
    [3, 2, 4]
    """
    if not len(positions):
        return []
    pos = np.asarray(positions, dtype=np.int64)
    s, tb = scores[pos][:, None], tiebreak[pos][:, None]
    same = scores[None, :] == s
    better = (scores[None, :] > s) | (same & (tiebreak[None, :] > tb))
    better |= same & (tiebreak[None, :] == tb) & (np.arange(scores.size)[None, :] < pos[:, None])
    return (better.sum(axis=1) + 1).tolist()
