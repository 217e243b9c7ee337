"""Order sizes: units per order line of a sku, ``E[Q]`` and the dispersion ``phi = E[Q^2] / E[Q]``.

One wholesale invoice can carry hundreds of units, so units sold are compound Poisson; ``phi`` is how much
noisier they are than a plain Poisson count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["DispersionBook", "OrderSizes"]


class OrderSizes(NamedTuple):
    """Units per order line of a sku: ``mean`` = E[Q], ``dispersion`` = phi = E[Q^2] / E[Q] (>= mean)."""

    mean: float
    dispersion: float


class DispersionBook:
    """Learns the order-size law of each sku: ``E[Q]`` and ``phi = E[Q^2] / E[Q]`` (units per order line).

    ``phi = 1`` means single-unit orders (plain Poisson); a wholesale sku has phi of tens or hundreds.
    Per sku the raw estimates are shrunk on the log scale toward the category (``pseudo_lines`` lines of
    it), the category toward all skus.  Category / global levels fit a lognormal to the line sizes
    (``phi = exp(m + 1.5 v)`` from the mean ``m`` and variance ``v`` of ``ln q``), so one giant invoice of
    one sku does not inflate every other sku.

    >>> db = DispersionBook()
    >>> db.get("A1", "mugs")
    OrderSizes(mean=1.0, dispersion=1.0)
    >>> for q in (1, 1, 2, 12, 12, 24) * 10:
    ...     db.observe("A1", "mugs", q)
    >>> s = db.get("A1", "mugs")
    >>> round(s.mean, 2), round(s.dispersion, 2)
    (8.75, 18.22)
    """

    def __init__(self, pseudo_lines: float = 5.0, default: float = 1.0, decay: float = 1.0) -> None:
        self.pseudo_lines = pseudo_lines
        self.default = default
        self.decay = decay
        self._stats: dict[tuple[str, str | None], list[float]] = {}

    def observe(self, sku: str | None, category: str | None, quantity: float) -> None:
        """Record one order line (only of finished sales if you want strict no-look-ahead)."""
        if quantity <= 0:
            return
        keys: list[tuple[str, str | None]] = [("", None)]
        if category is not None:
            keys.append(("c", category))
        if sku is not None:
            keys.append(("s", sku))
        lq = math.log(quantity)
        row = (1.0, quantity, quantity * quantity, lq, lq * lq)
        for key in keys:
            s = self._stats.get(key)
            if s is None:
                # lines, sum q, sum q^2, sum ln q, sum (ln q)^2
                s = self._stats[key] = [0.0, 0.0, 0.0, 0.0, 0.0]
            if self.decay != 1.0:
                for i in range(5):
                    s[i] *= self.decay
            for i in range(5):
                s[i] += row[i]

    def _level(
        self, key: tuple[str, str | None], parent: tuple[float, float], robust: bool
    ) -> tuple[float, float]:
        """Shrunk (ln E[Q], ln phi) of one level."""
        s = self._stats.get(key)
        if s is None or s[0] <= 0:
            return parent
        n, c = s[0], self.pseudo_lines
        if robust:  # lognormal fit of the line sizes: E[Q] = e^(m + v/2), E[Q^2]/E[Q] = e^(m + 3v/2)
            m = s[3] / n
            v = max(s[4] / n - m * m, 0.0)
            log_mean, log_phi = m + v / 2.0, m + 1.5 * v
        else:
            log_mean, log_phi = math.log(s[1] / n), math.log(s[2] / s[1])
        return ((n * log_mean + c * parent[0]) / (n + c), (n * log_phi + c * parent[1]) / (n + c))

    def get(self, sku: str | None = None, category: str | None = None) -> OrderSizes:
        d = math.log(self.default)
        lm, lp = self._level(("", None), (d, d), True)
        if category is not None:
            lm, lp = self._level(("c", category), (lm, lp), True)
        if sku is not None:
            lm, lp = self._level(("s", sku), (lm, lp), False)
        mean = max(math.exp(lm), 1.0)
        return OrderSizes(mean, max(math.exp(lp), mean))
