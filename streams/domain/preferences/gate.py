"""A prequential gate between a learnt ordering and a fixed baseline ordering (pure logic, no Kafka, no Faust).

The "again" part of a member's ranking is ordered by recency ("most recently touched first", the ``repeat``
baseline) unless the learnt blend has ranked the member's chosen items better on the events seen so far. Each
event is scored by both orderings BEFORE anything learns from it (prequential), so the comparison is on unseen
data; the sums decay, so a blend that stops winning hands the order back to recency. The gate starts on the
baseline and the blend must win significantly: on a dataset where recency alone is right, the ranking IS
recency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def reciprocal_rank(scores: np.ndarray, chosen: Sequence[int]) -> float:
    """1 / rank of the best-placed chosen row; ties with other rows count half (neither side gains from ties).

    >>> reciprocal_rank(np.array([0.1, 0.9, 0.5]), [2])
    0.5
    >>> reciprocal_rank(np.array([1.0, 1.0, 0.0]), [0])
    0.6666666666666666
    >>> reciprocal_rank(np.array([1.0]), [])
    0.0
    """
    if not len(chosen):
        return 0.0
    best = float(np.max(scores[list(chosen)]))
    above = int(np.count_nonzero(scores > best))
    ties = int(np.count_nonzero(scores == best)) - 1
    return 1.0 / (1.0 + above + 0.5 * ties)


class PrequentialGate:
    """Paired prequential comparison of a learnt ordering with a baseline: the learnt one is used only while its
    decayed mean gain in reciprocal rank is significantly above 0 (one-sided lower bound ``mean - z * se > 0``)
    over at least ``min_events`` events. A few lucky events cannot flip the order; a tie keeps the baseline.

    >>> g = PrequentialGate(min_events=5)
    >>> g.use_learnt
    False
    >>> g.update(learnt=1.0, baseline=0.5); g.use_learnt  # one win is no evidence
    False
    >>> for _ in range(10): g.update(learnt=1.0, baseline=0.5 if _ % 3 else 1.0)
    >>> g.use_learnt
    True
    >>> for _ in range(40): g.update(learnt=0.5, baseline=1.0)
    >>> g.use_learnt
    False
    >>> PrequentialGate.from_dict(g.to_dict()).to_dict() == g.to_dict()
    True
    """

    __slots__ = ("decay", "z", "min_events", "w", "s1", "s2", "learnt", "baseline", "n")

    def __init__(self, half_life: float = 2000.0, z: float = 1.645, min_events: int = 30) -> None:
        # A half-life in events: long enough to average many members, short enough to follow a shop whose
        # shoppers change habits. z = 1.645: a one-sided 95 % bound on the mean gain.
        self.decay = 0.5 ** (1.0 / half_life)
        self.z = z
        self.min_events = min_events
        self.w = self.s1 = self.s2 = 0.0
        self.learnt = self.baseline = 0.0
        self.n = 0

    @property
    def use_learnt(self) -> bool:
        """True when the learnt ordering's mean gain over the baseline is significantly positive."""
        if self.n < self.min_events or self.w <= 0.0:
            return False
        mean = self.s1 / self.w
        var = max(self.s2 / self.w - mean * mean, 0.0)
        return mean - self.z * (var / self.w) ** 0.5 > 0.0

    def update(self, learnt: float, baseline: float) -> None:
        """Add one event's reciprocal ranks (each computed before either side learnt the event)."""
        d = learnt - baseline
        k = self.decay
        self.w = self.w * k + 1.0
        self.s1 = self.s1 * k + d
        self.s2 = self.s2 * k + d * d
        self.learnt = self.learnt * k + learnt
        self.baseline = self.baseline * k + baseline
        self.n += 1

    def to_dict(self) -> dict[str, float]:
        """The decayed sums and the count (to checkpoint with the blend weights)."""
        return {"w": self.w, "s1": self.s1, "s2": self.s2, "learnt": self.learnt, "baseline": self.baseline,
                "n": float(self.n)}

    @classmethod
    def from_dict(cls, d: Mapping[str, float], half_life: float = 2000.0) -> PrequentialGate:
        """Inverse of :meth:`to_dict` (a missing key starts at 0)."""
        g = cls(half_life)
        for key in ("w", "s1", "s2", "learnt", "baseline"):
            setattr(g, key, float(d.get(key, 0.0)))
        g.n = int(d.get("n", 0))
        return g
