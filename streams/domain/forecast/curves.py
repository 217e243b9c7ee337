"""Sales curves ``F(t)``: the expected share of a sale's demand sold by elapsed fraction ``t``, learned from
finished sales.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["CurveBook", "SalesCurve"]


class SalesCurve:
    """Monotone piecewise-linear ``F(t)`` on a fixed grid, the running average of finished sales' curves.

    Starts from a front-loaded shape ``F0(t) = 1 - (1 - t)^front`` worth ``prior_weight`` sales.  Each
    finished sale contributes its cumulative share of units at the grid points (a unit sold at ``t`` counts
    from the first grid point >= ``t``), weighted ``min(units / weight_cap, 1)`` so one big sale counts as one
    sale and a one-unit sale counts little (``decay`` < 1 forgets old sales).  An average of monotone curves
    from 0 to 1 is monotone from 0 to 1.

    >>> c = SalesCurve(grid=4, front=2.0)
    >>> [round(c(t), 4) for t in (0.0, 0.25, 0.5, 1.0)]
    [0.0, 0.4375, 0.75, 1.0]
    >>> c.learn([(0.1, 10.0), (0.6, 10.0)], weight=1e9)  # one overwhelming sale: half at 0.1, half at 0.6
    >>> [round(c(t), 3) for t in (0.125, 0.25, 0.5, 0.75)]
    [0.25, 0.5, 0.5, 1.0]
    """

    def __init__(
        self,
        grid: int = 96,
        front: float = 2.0,
        prior_weight: float = 5.0,
        weight_cap: float = 20.0,
        decay: float = 1.0,
    ) -> None:
        self.grid = grid
        self.weight_cap = weight_cap
        self.decay = decay
        self.n_sales = 0
        self._w = prior_weight
        self._sum = [prior_weight * (1.0 - (1.0 - i / grid) ** front) for i in range(grid + 1)]
        self._f = [x / self._w for x in self._sum]

    def __call__(self, t: float) -> float:
        if t <= 0.0:
            return 0.0
        if t >= 1.0:
            return 1.0
        x = t * self.grid
        i = int(x)
        f = self._f
        return f[i] + (x - i) * (f[i + 1] - f[i])

    @property
    def values(self) -> list[float]:
        """F at the grid points 0, 1/grid, ..., 1."""
        return list(self._f)

    def learn(self, sold: Iterable[tuple[float, float]], weight: float | None = None) -> None:
        """Learn from a FINISHED sale: ``sold`` = (elapsed fraction, units) of its order lines (any order).

        A sale with no units teaches nothing.  Call it only once the sale has ended (no look-ahead).
        """
        g = self.grid
        bins = [0.0] * (g + 1)
        total = 0.0
        for t, u in sold:
            if u <= 0:
                continue
            bins[min(max(math.ceil(t * g), 0), g)] += u
            total += u
        if total <= 0:
            return
        w = min(total / self.weight_cap, 1.0) if weight is None else weight
        s = self._sum
        if self.decay != 1.0:
            self._w *= self.decay
            for i in range(g + 1):
                s[i] *= self.decay
        self._w += w
        scale = w / total
        cum = 0.0
        for i in range(g + 1):
            cum += bins[i]
            s[i] += scale * cum
        s[0] = 0.0
        s[g] = self._w  # exactly 1 at the end
        inv = 1.0 / self._w
        self._f = [x * inv for x in s]
        self.n_sales += 1


class CurveBook:
    """Sales curves per category with a global fallback until a category has ``min_sales`` finished sales.

    >>> book = CurveBook(grid=4, min_sales=1)
    >>> book.learn("toys", [(0.1, 5.0)])
    >>> round(book.curve("toys")(0.25), 3), round(book.curve("garden")(0.25), 3)
    (0.464, 0.464)
    >>> book.curve("garden") is book.global_curve
    True
    """

    def __init__(self, min_sales: int = 30, **curve_kwargs: float) -> None:
        self.min_sales = min_sales
        self._kwargs = curve_kwargs
        self.global_curve = SalesCurve(**curve_kwargs)  # type: ignore[arg-type]
        self._curves: dict[str, SalesCurve] = {}

    def curve(self, category: str | None = None) -> SalesCurve:
        c = self._curves.get(category) if category is not None else None
        if c is None or c.n_sales < self.min_sales:
            return self.global_curve
        return c

    def learn(self, category: str | None, sold: Iterable[tuple[float, float]]) -> None:
        """Learn a FINISHED sale's curve for its category and for the global curve."""
        sold = list(sold)
        self.global_curve.learn(sold)
        if category is not None:
            c = self._curves.get(category)
            if c is None:
                c = self._curves[category] = SalesCurve(**self._kwargs)  # type: ignore[arg-type]
            c.learn(sold)
