"""A prequential gate between a learnt ordering and a fixed baseline ordering (pure logic, no Kafka, no Faust).

The "again" part of a member's ranking is ordered by recency ("most recently touched first", the ``repeat``
baseline) unless the learnt blend has ranked the member's chosen items better on the events seen so far. Each
event is scored by both orderings BEFORE anything learns from it (prequential), so the comparison is on unseen
data; the sums decay, so a blend that stops winning hands the order back to recency. The gate starts on the
baseline and the blend must win strictly: on a dataset where recency alone is right, the ranking IS recency.
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
    """Decayed sums of the reciprocal rank of a learnt ordering and of a baseline; the learnt one is used only
    while its sum is strictly larger.

    >>> g = PrequentialGate()
    >>> g.use_learnt
    False
    >>> g.update(learnt=1.0, baseline=0.5); g.use_learnt
    True
    >>> for _ in range(3): g.update(learnt=0.2, baseline=1.0)
    >>> g.use_learnt
    False
    >>> PrequentialGate.from_dict(g.to_dict()).to_dict() == g.to_dict()
    True
    """

    __slots__ = ("decay", "learnt", "baseline", "n")

    def __init__(self, half_life: float = 2000.0) -> None:
        # A half-life in events: long enough that a lucky streak does not flip the order, short enough to follow
        # a shop whose shoppers change habits.
        self.decay = 0.5 ** (1.0 / half_life)
        self.learnt = 0.0
        self.baseline = 0.0
        self.n = 0

    @property
    def use_learnt(self) -> bool:
        """True when the learnt ordering has won so far (strictly)."""
        return self.learnt > self.baseline

    def update(self, learnt: float, baseline: float) -> None:
        """Add one event's reciprocal ranks (each computed before either side learnt the event)."""
        self.learnt = self.learnt * self.decay + learnt
        self.baseline = self.baseline * self.decay + baseline
        self.n += 1

    def to_dict(self) -> dict[str, float]:
        """The sums and the count (to checkpoint with the blend weights)."""
        return {"learnt": self.learnt, "baseline": self.baseline, "n": float(self.n)}

    @classmethod
    def from_dict(cls, d: Mapping[str, float], half_life: float = 2000.0) -> PrequentialGate:
        """Inverse of :meth:`to_dict`."""
        g = cls(half_life)
        g.learnt = float(d.get("learnt", 0.0))
        g.baseline = float(d.get("baseline", 0.0))
        g.n = int(d.get("n", 0))
        return g
