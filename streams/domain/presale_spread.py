"""The spread of pre-sale forecasts: the law of log residuals ``ln((actual + 1) / (c f + 1))`` of finished forecasts,
with sold-out skus counted as right-censored (Kaplan-Meier quantiles, a Tobit normal fit).

Part of :mod:`salepulse.streams.domain.presale` (pure logic, no Kafka, no Faust).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr

from salepulse.streams.domain.presale_outcome import DEFAULT_LOG_SD, DEFAULT_PRIOR_STRENGTH

_Z90 = 1.2815515655446004


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def kaplan_meier_quantiles(values: Sequence[float], censored: Sequence[bool], qs: Sequence[float]) -> list[float]:
    """Quantiles of a law observed with right-censoring (``censored[i]``: the true value is >= ``values[i]``).

    Where censoring leaves the upper tail unknown, the largest observed value is returned (a lower bound).

    >>> kaplan_meier_quantiles([1, 2, 3, 4], [False] * 4, [0.5])
    [2.0]
    >>> kaplan_meier_quantiles([1, 2, 3, 4], [False, True, False, False], [0.5])  # 2 is "at least 2"
    [3.0]
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(censored, dtype=bool)
    if v.size == 0:
        return [math.nan for _ in qs]
    order = np.lexsort((c, v))  # by value; an event before a censoring at the same value
    v, c = v[order], c[order]
    at_risk = v.size - np.arange(v.size)
    factors = np.where(c, 1.0, 1.0 - 1.0 / at_risk)
    cdf = 1.0 - np.cumprod(factors)
    out = []
    for q in qs:
        idx = int(np.searchsorted(cdf, q - 1e-12, side="left"))
        out.append(float(v[min(idx, v.size - 1)]))
    return out


def tobit_fit(values: Sequence[float], censored: Sequence[bool]) -> tuple[float, float] | None:
    """Mean and sd of a normal law from right-censored draws (``censored[i]``: the draw is above ``values[i]``),
    by maximum likelihood (the Tobit model); None without two distinct uncensored values.

    Unlike Kaplan-Meier it says something about the tail above the largest uncensored value, which is where a
    sold-out product's demand lies when most products sell out.

    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal(1.0, 2.0, 4000)
    >>> cut = np.minimum(draws, 1.5)  # about 40 % censored
    >>> mu, sd = tobit_fit(cut, draws >= 1.5)
    >>> round(mu, 1), round(sd, 1)
    (1.0, 2.0)
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(censored, dtype=bool)
    keep = np.isfinite(v)
    v, c = v[keep], c[keep]
    exact = v[~c]
    if exact.size < 2 or float(np.ptp(exact)) <= 0:
        return None
    cens = v[c]

    def nll(theta: np.ndarray) -> float:
        mu, log_sd = float(theta[0]), float(theta[1])
        sd = math.exp(log_sd)
        z = (exact - mu) / sd
        return float(0.5 * np.dot(z, z) + exact.size * log_sd - log_ndtr(-(cens - mu) / sd).sum())

    start = np.asarray([float(exact.mean()), math.log(float(exact.std()) + 1e-6)])
    res = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400})
    return float(res.x[0]), float(math.exp(res.x[1]))


class ResidualLaw:
    """Bounded recent log residuals per group, with a hierarchical Kaplan-Meier law.

    A forecast's residual law is read through a chain of groups, general to specific (e.g. pooled -> forecast
    size -> buyer -> buyer and category). Each group's quantile function is shrunk toward its parent's with
    ``prior_strength`` pseudo-residuals, ``Q_g(q) = (n Q_hat_g(q) + k Q_parent(q)) / (n + k)`` (averaging quantile
    functions keeps a law's shape and moves its location and spread). A group contributes once it holds
    ``min_count`` uncensored residuals; the pooled law (key ``None``) once it holds ``pooled_min`` of them, and
    a normal law of sd ``default_sd`` stands in before that.

    Why per group: buyers differ in how far off they are and in how their errors are centred around the
    corrected number, and a law pooled over all of them is the mixture, wider than any one buyer's.

    >>> law = ResidualLaw(min_count=3, pooled_min=3, prior_strength=0)
    >>> for r in (-0.5, 0.0, 0.5):
    ...     law.add(("size",), r, False)
    >>> law.quantile((("size",),), 0.5), law.quantile((("unseen",),), 0.5)  # unseen: the pooled law
    (0.0, 0.0)
    """

    GRID = tuple(i / 100 for i in range(1, 100))

    def __init__(self, maxlen: int = 4000, min_count: int = 20, default_sd: float = DEFAULT_LOG_SD,
                 prior_strength: float = DEFAULT_PRIOR_STRENGTH, pooled_min: int = 100) -> None:
        self.maxlen = maxlen
        self.min_count = min_count
        self.pooled_min = pooled_min
        self.default_sd = default_sd
        self.prior_strength = prior_strength
        self._data: dict[Any, deque[tuple[float, bool]]] = {}
        self._own: dict[Any, tuple[np.ndarray, int] | None] = {}
        self._chains: dict[Any, np.ndarray] = {}
        self._exp_mean: dict[Any, float] = {}
        self._default = np.asarray([default_sd * _norm_ppf(q) for q in self.GRID])
        self._added: dict[Any, int] = {}
        self._tobit: dict[Any, tuple[int, tuple[float, float] | None]] = {}

    def add(self, keys: Iterable[Any], residual: float, censored: bool) -> None:
        """One residual into each of ``keys`` and the pooled law."""
        for k in (*keys, None):
            self._data.setdefault(k, deque(maxlen=self.maxlen)).append((residual, censored))
            self._own.pop(k, None)
            self._added[k] = self._added.get(k, 0) + 1
        self._chains.clear()  # every chain starts from the pooled law
        self._exp_mean.clear()

    def _own_grid(self, key: Any) -> tuple[np.ndarray, int] | None:
        """A group's own KM quantiles on the 1 % grid and its size, when it has enough uncensored residuals."""
        if key in self._own:
            return self._own[key]
        data = self._data.get(key)
        out = None
        if data is not None and sum(1 for _, c in data if not c) >= (self.pooled_min if key is None
                                                                      else self.min_count):
            vals, cens = zip(*data, strict=True)
            out = (np.asarray(kaplan_meier_quantiles(vals, cens, self.GRID)), len(data))
        self._own[key] = out
        return out

    def grid(self, chain: tuple[Any, ...]) -> np.ndarray:
        """The quantiles (1 % grid) of the residual law of a forecast whose groups are ``chain``."""
        cached = self._chains.get(chain)
        if cached is not None:
            return cached
        pooled = self._own_grid(None)
        grid = self._default if pooled is None else pooled[0]
        k = self.prior_strength
        for key in chain:
            own = self._own_grid(key)
            if own is not None:
                grid = (own[1] * own[0] + k * grid) / (own[1] + k)
        self._chains[chain] = grid
        return grid

    def tobit(self, chain: tuple[Any, ...]) -> tuple[float, float] | None:
        """Normal law (mean, sd) of the residual fitted under censoring (:func:`tobit_fit`), for the most specific
        group of ``chain`` with ``pooled_min`` uncensored residuals (else the pooled law); refitted when the group
        has grown by a tenth, so the desk stays fast and a rebuilt desk fits at the same points."""
        for key in (*reversed(chain), None):
            data = self._data.get(key)
            if data is None or sum(1 for _, c in data if not c) < self.pooled_min:
                continue
            added = self._added.get(key, 0)
            fitted = self._tobit.get(key)
            if fitted is None or added >= fitted[0] * 1.1:
                vals, cens = zip(*data, strict=True)
                fitted = self._tobit[key] = (added, tobit_fit(vals, cens))
            if fitted[1] is not None:
                return fitted[1]
        return None

    def quantile(self, chain: tuple[Any, ...], q: float) -> float:
        """The ``q`` quantile (0 < q < 1) of the residual for a forecast in the groups ``chain``."""
        grid = self.grid(chain)
        # linear interpolation on the 1 % grid
        x = min(max(q * 100 - 1, 0.0), 98.0)
        i = int(x)
        j = min(i + 1, 98)
        return float(grid[i] + (grid[j] - grid[i]) * (x - i))

    def exp_mean(self, chain: tuple[Any, ...]) -> float:
        """E[exp(residual)] over the law (the 1 % grid): the predictive mean is (center + 1) x this - 1."""
        cached = self._exp_mean.get(chain)
        if cached is None:
            cached = self._exp_mean[chain] = float(np.mean(np.exp(self.grid(chain))))
        return cached

    def sd(self, chain: tuple[Any, ...]) -> float:
        """Robust spread: (q90 - q10) / 2.563."""
        return max((self.quantile(chain, 0.9) - self.quantile(chain, 0.1)) / (2 * _Z90), 0.05)


def _norm_ppf(q: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9 after one Newton step)."""
    q = min(max(q, 1e-12), 1 - 1e-12)
    # bisection on erf is plenty for the few calls made before any residual is known
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _norm_cdf(mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
