"""Global models learnt from every member's events: item co-visitation, popularity, session neighbours."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from operator import itemgetter

import numpy as np


class CoVisitation:
    """Item-to-item co-occurrence from each member's recent items ("people who viewed X also viewed Y").

    Each item keeps its ``neighbours`` strongest neighbours (pruned to that whenever a row doubles); at most
    ``max_items`` rows (least recently touched evicted).

    >>> cv = CoVisitation()
    >>> cv.observe("b", [("a", 1.0)])
    >>> cv.row("a")
    {'b': 1.0}
    >>> round(cv.conditional("a", "b"), 2)  # smoothed P(b | a)
    0.5
    """

    def __init__(self, neighbours: int = 30, max_items: int = 500_000) -> None:
        self.neighbours = neighbours
        self.max_items = max_items
        self.rows: dict[str, dict[str, float]] = {}
        self.totals: dict[str, float] = {}

    def _row(self, a: str) -> dict[str, float]:
        """``a``'s row, moved to the most recently touched end (created, evicting the least recent, if new)."""
        rows = self.rows
        row = rows.pop(a, None)
        if row is None:
            row = {}
            if len(rows) >= self.max_items:
                old = next(iter(rows))
                del rows[old]
                self.totals.pop(old, None)
        rows[a] = row
        return row

    def _prune(self, a: str, row: dict[str, float]) -> dict[str, float]:
        # Pruning to the strongest once the row doubles costs one sort per ``neighbours`` new entries, where
        # evicting the weakest on every insert scanned the row each time (a quarter of an update's time).
        kept = dict(heapq.nlargest(self.neighbours, row.items(), key=itemgetter(1)))
        self.totals[a] -= sum(row.values()) - sum(kept.values())
        self.rows[a] = kept
        return kept

    def observe(self, item: str, recent: Iterable[tuple[str, float]]) -> None:
        """Count ``item`` together with the member's recent items (weights in [0, 1]), both directions.

        The same counts, pruning and row order as bumping (other, item) then (item, other) for each recent item,
        with ``item``'s row moved to the recent end once rather than once per pair (a third of the learning time
        of a member with a full history went to these bumps).
        """
        rows, totals, limit, max_items = self.rows, self.totals, 2 * self.neighbours, self.max_items
        mine: dict[str, float] | None = None
        evicted = False
        for other, w in recent:
            if other == item or not w > 0:
                continue
            # other's row (as _row and _prune do for item's), inlined: this loop is the learner's hottest
            row = rows.pop(other, None)
            if row is None:
                row = {}
                if len(rows) >= max_items:
                    old = next(iter(rows))
                    del rows[old]
                    totals.pop(old, None)
                    evicted = True
            rows[other] = row
            row[item] = row.get(item, 0.0) + w
            totals[other] = totals.get(other, 0.0) + w
            if len(row) > limit:
                self._prune(other, row)
            # Only an eviction can take item's row away between two pairs (pruning other's row replaces that row
            # only), so the lookup that checks it is skipped unless one happened.
            if mine is None or (evicted and rows.get(item) is not mine):
                # first pair, or the row was evicted meanwhile (a tiny ``max_items``): the full bump
                mine = self._row(item)
            mine[other] = mine.get(other, 0.0) + w
            totals[item] = totals.get(item, 0.0) + w
            if len(mine) > limit:
                mine = self._prune(item, mine)
        if mine is not None and next(reversed(rows)) != item:
            rows[item] = rows.pop(item)

    def row(self, item: str) -> dict[str, float]:
        """Neighbours of ``item`` with their counts."""
        return self.rows.get(item, {})

    def conditional(self, a: str, b: str) -> float:
        """Smoothed P(b | a) = count(a, b) / (total(a) + 1)."""
        return self.rows.get(a, {}).get(b, 0.0) / (self.totals.get(a, 0.0) + 1.0)


class PopularityTracker:
    """Exponentially decayed counts per integer item index - a velocity (events per half-life), vectorised.

    >>> p = PopularityTracker(half_life=3600.0)
    >>> p.add(0, 1.0, t=0.0); p.add(2, 1.0, t=0.0); p.add(2, 1.0, t=3600.0)
    >>> np.round(p.values(np.array([0, 1, 2]), t=3600.0), 3).tolist()
    [0.5, 0.0, 1.5]
    """

    def __init__(self, half_life: float = 3600.0, size: int = 1024) -> None:
        self.half_life = half_life
        self.val = np.zeros(size)
        self.t = np.zeros(size)

    def add(self, idx: int, weight: float, t: float) -> None:
        """Count ``weight`` for item ``idx`` at ``t`` (seconds)."""
        if idx >= self.val.size:
            n = max(idx + 1, 2 * self.val.size)
            self.val = np.concatenate([self.val, np.zeros(n - self.val.size)])
            self.t = np.concatenate([self.t, np.zeros(n - self.t.size)])
        dt = t - self.t[idx]
        self.val[idx] = self.val[idx] * 0.5 ** (max(dt, 0.0) / self.half_life) + weight
        self.t[idx] = max(t, self.t[idx])

    def values(self, idx: np.ndarray, t: float) -> np.ndarray:
        """Decayed counts of the items ``idx`` at time ``t``."""
        idx = np.asarray(idx)
        out = np.zeros(idx.shape)
        ok = idx < self.val.size
        i = idx[ok]
        out[ok] = self.val[i] * 0.5 ** (np.maximum(t - self.t[i], 0.0) / self.half_life)
        return out


class SessionKNN:
    """Session-based nearest neighbours (V-SKNN, Ludewig & Jannach 2018) over every member's sessions.

    A query is a member's last items, most recent first, weighted linearly (1, (n-1)/n, ...). The neighbours are
    the ``k`` past sessions, among the ``sample`` most recent sessions holding each query item, that share the
    most query weight; an item scores the summed similarity of the neighbours that hold it. Bounded: at most
    ``max_sessions`` sessions (oldest evicted) of at most ``max_len`` distinct items.

    >>> sk = SessionKNN()
    >>> for sid, items in [("u1", "ab"), ("u2", "abc"), ("u3", "ad"), ("u4", "xy")]:
    ...     for it in items:
    ...         sk.add(sid, it)
    >>> sorted(sk.scores(["b", "a"]).items())
    [('a', 3.5), ('b', 3.0), ('c', 1.5), ('d', 0.5)]
    """

    def __init__(self, k: int = 50, sample: int = 300, max_sessions: int = 300_000, max_len: int = 30) -> None:
        self.k = k
        self.sample = sample
        self.max_sessions = max_sessions
        self.max_len = max_len
        self.sessions: dict[str, list[str]] = {}
        self.by_item: dict[str, deque[str]] = {}

    def add(self, session: str, item: str) -> None:
        """``item`` was touched in ``session``."""
        items = self.sessions.get(session)
        if items is None:
            if len(self.sessions) >= self.max_sessions:
                del self.sessions[next(iter(self.sessions))]
            items = self.sessions[session] = []
        if item in items or len(items) >= self.max_len:
            return
        items.append(item)
        dq = self.by_item.get(item)
        if dq is None:
            if len(self.by_item) >= 4 * self.max_sessions:
                del self.by_item[next(iter(self.by_item))]
            dq = self.by_item[item] = deque(maxlen=self.sample)
        dq.append(session)

    def scores(self, query: Sequence[str], exclude: str | None = None) -> dict[str, float]:
        """Item -> summed similarity of the neighbour sessions of ``query`` (most recent item first)."""
        n = len(query)
        sims: dict[str, float] = {}
        sessions = self.sessions
        for pos, item in enumerate(query):
            w = (n - pos) / n
            for sid in self.by_item.get(item, ()):
                if sid != exclude and sid in sessions:
                    sims[sid] = sims.get(sid, 0.0) + w
        out: dict[str, float] = {}
        for sid, sim in heapq.nlargest(self.k, sims.items(), key=itemgetter(1)):
            for it in sessions[sid]:
                out[it] = out.get(it, 0.0) + sim
        return out
