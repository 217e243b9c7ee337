"""Baselines the live forecast is scored against: what a practitioner would do without a model.

Pure: no Kafka, no Faust, nothing from the forecaster.  Each series (a product in a sale) is seen at an elapsed
fraction ``t`` with its prior (the expert's number) and the units sold so far.

* ``prior``: the prior alone.
* ``velocity``: units so far / ``t`` (linear extrapolation; undefined at ``t = 0``).
* ``so_far_plus_prior``: units so far + prior x (1 - G(t)), with G(t) the pooled share of a sale's units sold
  by ``t`` over PAST sales (:class:`PooledShare`).  Parameter-free.
* ``tuned_blend``: units so far + (1 - G) (a prior + b so_far / G), (a, b) refitted before every sale on all
  earlier finished sales (:class:`TunedBlend`), minimising their absolute error (the WAPE).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["BaselineBook", "PooledShare", "TunedBlend", "so_far_plus_prior", "velocity"]


def velocity(so_far: float, t: float) -> float:
    """Units so far extrapolated linearly to the whole sale; NaN before the sale opens.

    >>> velocity(10.0, 0.25), velocity(0.0, 0.0) != velocity(0.0, 0.0)
    (40.0, True)
    """
    return so_far / t if t > 0 else float("nan")


def so_far_plus_prior(so_far: float, prior: float, g: float) -> float:
    """Units so far + the prior's share of what is still to come.

    >>> so_far_plus_prior(10.0, 40.0, 0.25)
    40.0
    """
    return so_far + prior * (1.0 - g)


class PooledShare:
    """G(t): share of all units of finished sales that were sold by elapsed fraction ``t`` (pooled over series).

    Before any sale has finished it is ``t`` (linear time).

    >>> g = PooledShare()
    >>> g(0.5)
    0.5
    >>> g.learn([(0.1, 3.0), (0.6, 1.0)])
    >>> g.learn([(0.2, 4.0)])
    >>> g(0.1), g(0.25), g(0.5), g(1.0)
    (0.375, 0.875, 0.875, 1.0)
    """

    def __init__(self) -> None:
        self._t: list[float] = []
        self._u: list[float] = []
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def learn(self, sold: Iterable[tuple[float, float]]) -> None:
        """Add a FINISHED sale's lines (elapsed fraction, units)."""
        for t, u in sold:
            if u > 0:
                self._t.append(t)
                self._u.append(u)
        self._sorted = None

    def __call__(self, t: float) -> float:
        if not self._u:
            return min(max(t, 0.0), 1.0)
        if self._sorted is None:
            order = np.argsort(self._t, kind="stable")
            ts = np.asarray(self._t)[order]
            cum = np.cumsum(np.asarray(self._u)[order])
            self._sorted = (ts, cum / cum[-1])
        ts, share = self._sorted
        i = int(np.searchsorted(ts, t, side="right"))
        return float(share[i - 1]) if i > 0 else 0.0


def _l1_slope(y: np.ndarray, x: np.ndarray, upper: float) -> float:
    """argmin_{0 <= b <= upper} sum |y - b x| for x >= 0: a weighted median of y / x, weights x."""
    pos = x > 0
    if not pos.any():
        return 0.0
    ratio = y[pos] / x[pos]
    w = x[pos]
    order = np.argsort(ratio)
    cum = np.cumsum(w[order])
    b = float(ratio[order][int(np.searchsorted(cum, 0.5 * cum[-1]))])
    return min(max(b, 0.0), upper)


class TunedBlend:
    """units so far + (1 - G) (a prior + b so_far / G), (a, b) fitted on finished sales only.

    ``add_sale`` stores a finished sale's series at each checkpoint (prior, units so far, final units);
    ``fit(t, g)`` grid-searches ``a`` (step ``step`` in [0, ``upper``]) and, for each ``a``, takes the exact
    L1-optimal ``b`` in [0, ``upper``] (a weighted median), minimising the summed absolute error over all
    stored sales at checkpoint ``t`` with today's ``G(t) = g``.  No sale yet: (1, 0) (so far + prior).

    >>> tb = TunedBlend()
    >>> tb.fit(0.5, 0.5)
    (1.0, 0.0)
    >>> # history: the prior is twice the truth and the pace is exact -> a = 0, b = 1 fits perfectly
    >>> tb.add_sale(0.5, prior=[20.0, 40.0, 8.0], so_far=[5.0, 10.0, 2.0], truth=[10.0, 20.0, 4.0])
    >>> a, b = tb.fit(0.5, 0.5)
    >>> (round(a, 2), round(b, 2)), tb.predict(a, b, prior=30.0, so_far=6.0, g=0.5)
    ((0.0, 1.0), 12.0)
    """

    def __init__(self, step: float = 0.05, upper: float = 2.0) -> None:
        self.grid = np.round(np.arange(0.0, upper + 1e-9, step), 10)
        self.upper = upper
        self._rows: dict[float, list[np.ndarray]] = {}

    def add_sale(self, t: float, prior: Sequence[float], so_far: Sequence[float], truth: Sequence[float]) -> None:
        """A FINISHED sale's series at checkpoint ``t``."""
        if len(truth):
            self._rows.setdefault(t, []).append(
                np.asarray([prior, so_far, truth], dtype=float)
            )

    @staticmethod
    def predict(a: float, b: float, prior: float, so_far: float, g: float) -> float:
        pace = so_far / g if g > 0 else 0.0
        return so_far + (1.0 - g) * (a * prior + b * pace)

    def fit(self, t: float, g: float) -> tuple[float, float]:
        rows = self._rows.get(t)
        if not rows:
            return 1.0, 0.0
        prior, so_far, truth = np.concatenate(rows, axis=1)
        rest = truth - so_far
        x_prior = (1.0 - g) * prior
        x_pace = (1.0 - g) * so_far / g if g > 0 else np.zeros_like(so_far)
        best = (np.inf, 1.0, 0.0)
        for a in self.grid:
            y = rest - a * x_prior
            b = _l1_slope(y, x_pace, self.upper)
            loss = float(np.abs(y - b * x_pace).sum())
            if loss < best[0] - 1e-9:
                best = (loss, float(a), b)
        return best[1], best[2]


class BaselineBook:
    """The baselines of one replay: G and (a, b) learned from finished sales, read at each checkpoint.

    ``points(t, prior, so_far)`` gives every baseline for one series; ``finish(rows, sold)`` feeds a finished
    sale back (its series at each checkpoint with their final units, and its order lines).  The tuned
    blend is refitted lazily once per checkpoint after each batch of finished sales.

    >>> book = BaselineBook()
    >>> book.points(0.5, prior=10.0, so_far=4.0)
    {'prior': 10.0, 'velocity': 8.0, 'so_far_plus_prior': 9.0, 'tuned_blend': 9.0}
    >>> book.finish({0.5: ([10.0], [4.0], [8.0])}, [(0.25, 4.0), (0.75, 4.0)])
    >>> book.points(0.5, prior=10.0, so_far=4.0)["tuned_blend"]
    8.0
    """

    def __init__(self, step: float = 0.05, upper: float = 2.0) -> None:
        self.share = PooledShare()
        self.blend = TunedBlend(step, upper)
        self._params: dict[float, tuple[float, float, float]] = {}  # t -> (G, a, b)

    def _state(self, t: float) -> tuple[float, float, float]:
        s = self._params.get(t)
        if s is None:
            g = self.share(t) if t > 0 else 0.0
            a, b = self.blend.fit(t, g)
            s = self._params[t] = (g, a, b)
        return s

    def params(self, t: float) -> dict[str, float]:
        g, a, b = self._state(t)
        return {"G": g, "a": a, "b": b}

    def points(self, t: float, prior: float, so_far: float) -> dict[str, float]:
        g, a, b = self._state(t)
        return {
            "prior": prior,
            "velocity": velocity(so_far, t),
            "so_far_plus_prior": so_far_plus_prior(so_far, prior, g),
            "tuned_blend": TunedBlend.predict(a, b, prior, so_far, g),
        }

    def finish(
        self,
        rows: dict[float, tuple[Sequence[float], Sequence[float], Sequence[float]]],
        sold: Iterable[tuple[float, float]],
    ) -> None:
        """A FINISHED sale: per checkpoint (priors, units so far, final units) of its series; its lines."""
        for t, (prior, so_far, truth) in rows.items():
            self.blend.add_sale(t, prior, so_far, truth)
        self.share.learn(sold)
        self._params.clear()
