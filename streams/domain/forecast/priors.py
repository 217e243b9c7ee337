"""Priors on a sale's expected final demand: the expert's number (with its range or its learned error) and, with
no expert, a prior learned from comparable finished sales.  All are Gamma(alpha, beta) on the rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from salepulse.streams.domain.forecast.distributions import shape_for_log_variance, trigamma

__all__ = [
    "ExpertErrorModel",
    "ExpertPrior",
    "GammaPrior",
    "LearnedPrior",
    "gamma_from_log_variance",
    "price_octave",
]

_Z80 = 1.2815515655446004  # standard normal 90 % quantile: an 80 % central range is mean +- 1.2816 sd


@dataclass(frozen=True, slots=True)
class GammaPrior:
    """Gamma(alpha, beta) (shape, rate) prior on a sale's expected final demand, with where it came from.

    >>> g = GammaPrior(alpha=4.0, beta=0.04)
    >>> round(g.mean, 9), round(g.variance, 9)
    (100.0, 2500.0)
    """

    alpha: float
    beta: float
    source: str = "expert"

    @property
    def mean(self) -> float:
        return self.alpha / self.beta

    @property
    def variance(self) -> float:
        return self.alpha / (self.beta * self.beta)


def gamma_from_log_variance(
    mean: float, log_var: float, dispersion: float = 1.0, source: str = "expert", max_alpha: float = 400.0
) -> GammaPrior:
    """Gamma prior on the rate with mean ``mean`` from the variance of ln(D + 1) around it.

    The sampling noise of D given the rate (compound Poisson: variance ``dispersion * mean``) is taken out in
    log terms, ``ln(1 + dispersion * mean / (mean + 1)^2)``; the rest is the spread of ln(rate), and the Gamma
    with that log-variance has shape ``alpha = trigamma^-1(rest)`` (a Gamma is skewed on the log scale, so
    matching the log-variance is closer than a lognormal moment match).  ``alpha`` is capped at ``max_alpha``.

    >>> g = gamma_from_log_variance(20.0, 1.644934 + math.log1p(20.0 / 441.0))
    >>> round(g.alpha, 3), round(g.mean, 6)
    (1.0, 20.0)
    """
    m = max(float(mean), 0.01)
    noise = math.log1p(dispersion * m / ((m + 1.0) ** 2))
    v = max(log_var - noise, trigamma(max_alpha))
    alpha = min(shape_for_log_variance(v), max_alpha)
    return GammaPrior(alpha=alpha, beta=alpha / m, source=source)


@dataclass(frozen=True, slots=True)
class ExpertPrior:
    """The buyer's forecast of final units, optionally with an 80 % range ``[low, high]``.

    ``gamma()`` turns it into a :class:`GammaPrior` whose mean is the expert's number.  With a range the
    spread of log-demand is ``(ln(high+1) - ln(low+1)) / (2 * 1.2816)``; without one it comes from the
    ``error_model``.

    >>> ExpertPrior(100.0, low=60.0, high=160.0).gamma().mean
    100.0
    >>> round(ExpertPrior(100.0, low=60.0, high=160.0).gamma().alpha, 2)
    7.97
    >>> em = ExpertErrorModel(initial_log_var=0.25)
    >>> round(ExpertPrior(100.0).gamma(error_model=em).alpha, 2)
    4.64
    """

    expected_units: float
    low: float | None = None
    high: float | None = None

    def log_variance(self, error_model: ExpertErrorModel | None = None, category: str | None = None) -> float:
        """Variance of log(D + 1) around the expert's number."""
        if self.low is not None and self.high is not None and self.high > self.low >= 0:
            sd = (math.log1p(self.high) - math.log1p(self.low)) / (2.0 * _Z80)
            return sd * sd
        if error_model is None:
            error_model = ExpertErrorModel()
        return error_model.log_variance(self.expected_units, category)

    def gamma(
        self,
        error_model: ExpertErrorModel | None = None,
        category: str | None = None,
        dispersion: float = 1.0,
        max_alpha: float = 400.0,
    ) -> GammaPrior:
        return gamma_from_log_variance(
            self.expected_units, self.log_variance(error_model, category), dispersion, "expert", max_alpha
        )


class _Moments:
    """Exponentially-weighted count / mean / variance (Welford with decay)."""

    __slots__ = ("w", "mean", "m2", "decay")

    def __init__(self, decay: float = 1.0) -> None:
        self.w = 0.0
        self.mean = 0.0
        self.m2 = 0.0
        self.decay = decay

    def add(self, x: float, weight: float = 1.0) -> None:
        if self.decay != 1.0:
            self.w *= self.decay
            self.m2 *= self.decay
        self.w += weight
        d = x - self.mean
        self.mean += weight * d / self.w
        self.m2 += weight * d * (x - self.mean)

    @property
    def var(self) -> float:
        return self.m2 / self.w if self.w > 0 else 0.0


def _magnitude(units: float) -> int:
    """Size bucket of a forecast: floor(log2(units + 1)), capped at 12."""
    return min(int(math.log2(max(units, 0.0) + 1.0)), 12)


class ExpertErrorModel:
    """Online model of expert forecast errors ``e = ln((truth + 1) / (forecast + 1))``.

    Keyed by (category, size bucket of the forecast) with shrinkage to the category, then to a global
    estimate, then to ``initial_log_var``.  ``log_variance()`` is the mean squared error (bias included:
    the prior mean stays the expert's number, so a biased expert is a wider prior).

    >>> em = ExpertErrorModel(initial_log_var=0.5, pseudo_count=10)
    >>> em.log_variance(20.0)
    0.5
    >>> for truth in (10, 40, 10, 40) * 25:
    ...     em.observe(20.0, truth, category="toys")
    >>> round(em.log_variance(20.0, "toys"), 3)
    0.433
    >>> round(em.log_variance(20.0, "garden"), 3)  # unseen category: the global estimate
    0.433
    """

    def __init__(self, initial_log_var: float = 0.5, pseudo_count: float = 20.0, decay: float = 1.0) -> None:
        self.initial_log_var = initial_log_var
        self.pseudo_count = pseudo_count
        self.decay = decay
        self._stats: dict[tuple[str | None, int | None], _Moments] = {}

    def _get(self, key: tuple[str | None, int | None]) -> _Moments:
        m = self._stats.get(key)
        if m is None:
            m = self._stats[key] = _Moments(self.decay)
        return m

    def observe(self, forecast: float, truth: float, category: str | None = None) -> None:
        """Record one finished (sale, sku): the expert's number and the final (uncensored) demand."""
        e2 = math.log((truth + 1.0) / (max(forecast, 0.0) + 1.0)) ** 2
        b = _magnitude(forecast)
        keys: set[tuple[str | None, int | None]] = {(None, None), (None, b), (category, None), (category, b)}
        for key in keys:
            self._get(key).add(e2)

    def _shrunk(self, key: tuple[str | None, int | None], parent: float) -> float:
        m = self._stats.get(key)
        if m is None or m.w == 0:
            return parent
        return (m.w * m.mean + self.pseudo_count * parent) / (m.w + self.pseudo_count)

    def log_variance(self, forecast: float, category: str | None = None) -> float:
        """Expected squared log error of a forecast of this size (and category)."""
        b = _magnitude(forecast)
        v = self._shrunk((None, None), self.initial_log_var)
        v = self._shrunk((None, b), v)
        if category is not None:
            v = self._shrunk((category, b), self._shrunk((category, None), v))
        return v


def price_octave(price: float | None) -> int | None:
    """Price octave for comparable products: floor(log2(price)) (…, 1-2, 2-4, 4-8, …); None when unknown.

    (Not the ranking's ``price_band``, a label of fixed price ranges.)

    >>> price_octave(3.0), price_octave(0.5), price_octave(None)
    (1, -1, None)
    """
    if price is None or price <= 0:
        return None
    return math.floor(math.log2(price))


class LearnedPrior:
    """Prior for products without an expert forecast, learned from comparable finished sales.

    Keeps the mean and variance of ``ln(units + 1)`` per (category, price band), shrunk to the category and to
    all products.  The Gamma has the implied mean and variance of D and ``source="learned"``.

    >>> lp = LearnedPrior()
    >>> for u in (10, 30, 10, 30):
    ...     lp.observe(u, category="mugs", price=5.0)
    >>> g = lp.gamma(category="mugs", price=6.0)
    >>> g.source, round(g.mean, 1)
    ('learned', 20.1)
    """

    def __init__(
        self, default_units: float = 10.0, default_log_var: float = 1.0, pseudo_count: float = 3.0
    ) -> None:
        self.default_units = default_units
        self.default_log_var = default_log_var
        self.pseudo_count = pseudo_count
        self._stats: dict[tuple[str | None, int | None], _Moments] = {}

    def observe(self, units: float, category: str | None = None, price: float | None = None) -> None:
        """Record the final (uncensored) demand of a finished (sale, sku)."""
        x = math.log1p(max(units, 0.0))
        band = price_octave(price)
        for key in {(None, None), (category, None), (category, band)}:
            m = self._stats.get(key)
            if m is None:
                m = self._stats[key] = _Moments()
            m.add(x)

    def _shrunk(self, key: tuple[str | None, int | None], mean: float, var: float) -> tuple[float, float]:
        m = self._stats.get(key)
        if m is None or m.w == 0:
            return mean, var
        w, c = m.w, self.pseudo_count
        new_mean = (w * m.mean + c * mean) / (w + c)
        new_var = (w * (m.var + (m.mean - new_mean) ** 2) + c * (var + (mean - new_mean) ** 2)) / (w + c)
        return new_mean, new_var

    def gamma(
        self,
        category: str | None = None,
        price: float | None = None,
        dispersion: float = 1.0,
        max_alpha: float = 400.0,
    ) -> GammaPrior:
        mu, s2 = math.log1p(self.default_units), self.default_log_var
        mu, s2 = self._shrunk((None, None), mu, s2)
        mu, s2 = self._shrunk((category, None), mu, s2)
        mu, s2 = self._shrunk((category, price_octave(price)), mu, s2)
        mean_d = max(math.exp(mu + s2 / 2.0) - 1.0, 0.01)
        return gamma_from_log_variance(mean_d, s2, dispersion, "learned", max_alpha)
