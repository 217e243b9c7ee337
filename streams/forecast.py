"""Live demand forecast for flash sales: expert prior + live sales, Gamma-Poisson with overdispersion.

Pure logic: no Kafka, no Faust.  Every class has one job; the examples in the docstrings run (doctest).

Model, for one (sale, sku); ``lambda`` = expected final demand (units) over the whole sale:

* Prior ``lambda ~ Gamma(alpha, beta)`` (shape, rate), mean ``alpha / beta`` = the expert forecast.  Its
  spread is the variance of ln(D + 1) around the forecast: from the buyer's 80 % range (``low``,
  ``high``) when recorded, else from the recorded errors of past expert forecasts
  (:class:`ExpertErrorModel`).  The sampling noise of D is taken out and ``alpha`` solves
  ``trigamma(alpha) = var ln(lambda)`` (:func:`gamma_from_log_variance`).  No expert forecast:
  :class:`LearnedPrior` from comparable finished sales (same category and price band),
  ``prior_source="learned"``.
* Sales curve ``F(t)``: expected share of the demand sold by elapsed fraction ``t``, learned online from
  finished sales per category (:class:`SalesCurve`, :class:`CurveBook`).
* Overdispersion: units come in orders of random size Q (one wholesale invoice can carry hundreds of units).
  Units sold by ``t`` are compound Poisson, mean ``lambda F(t)``, variance ``phi lambda F(t)`` with
  ``phi = E[Q^2] / E[Q]`` (learned per sku by :class:`DispersionBook`).  For the likelihood we use
  ``n / phi ~ Poisson(lambda F(t) / phi)`` ("effective orders"; ``phi = 1`` is the plain Poisson model).
* Posterior after ``n`` units by ``t``: the likelihood in ``lambda`` is ``lambda^(n/phi) exp(-lambda F/phi)``,
  so ``lambda | data ~ Gamma(a, b)``, ``a = alpha + n/phi``, ``b = beta + F(t)/phi`` (``phi = 1``:
  ``Gamma(alpha + n, beta + F(t))``).  Posterior mean = ``(1 - w) prior_mean + w n / F`` with
  ``w = F / (phi beta + F)``: the more lumpy the orders, the longer the prior holds.
* Predictive final demand ``D = n + R`` (:class:`RemainingDemand`): given ``lambda``, orders of mean size
  ``mu = E[Q]`` keep arriving as ``Poisson(lambda s / mu)`` over the remaining share ``s = 1 - F(t)``; over
  ``lambda ~ Gamma(a, b)`` the order count is ``NegBin(a, p = b / (b + s / mu))``, so
  ``P(R = 0) = p^a``, ``E[R] = a s / b`` and ``Var R = phi a s / b + a s^2 / b^2``.  With equal order sizes
  (``phi = mu``) R is exactly ``mu`` x that NegBin; otherwise R is that atom at 0 plus a Gamma for ``R > 0``
  with the exact conditional mean and variance.  p10 / p50 / p90 are its quantiles, plus ``n``.
* Censoring: after a stockout at ``t_s`` units sold understate demand: the exposure is ``F(t_s)`` (not
  ``F(now)``) and the remaining demand is over ``1 - F(t_s)``: the forecast is of demand, not of sales.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "DEFAULT_QUANTILES",
    "CurveBook",
    "DemandForecaster",
    "DemandModel",
    "DispersionBook",
    "ExpertErrorModel",
    "ExpertPrior",
    "Forecast",
    "GammaPrior",
    "LearnedPrior",
    "SalesCurve",
    "elapsed_fraction",
    "gamma_quantile",
    "negbin_quantiles",
    "price_band",
]

DEFAULT_QUANTILES: tuple[float, float, float] = (0.1, 0.5, 0.9)
_Z80 = 1.2815515655446004  # standard normal 90 % quantile: an 80 % central range is mean +- 1.2816 sd


# ----------------------------------------------------------------------------------------------------
# Clock
# ----------------------------------------------------------------------------------------------------


def elapsed_fraction(ts: datetime, starts_at: datetime, ends_at: datetime) -> float:
    """Elapsed fraction of a sale at ``ts``, clipped to [0, 1].

    >>> from datetime import datetime
    >>> elapsed_fraction(datetime(2024, 1, 1, 6), datetime(2024, 1, 1), datetime(2024, 1, 2))
    0.25
    >>> elapsed_fraction(datetime(2024, 1, 3), datetime(2024, 1, 1), datetime(2024, 1, 2))
    1.0
    """
    span = (ends_at - starts_at).total_seconds()
    if span <= 0:
        return 1.0
    t = (ts - starts_at).total_seconds() / span
    return 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)


# ----------------------------------------------------------------------------------------------------
# Distributions (no scipy)
# ----------------------------------------------------------------------------------------------------


def _gammp(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (series / continued fraction)."""
    if x <= 0.0:
        return 0.0
    gln = math.lgamma(a)
    if x < a + 1.0:
        ap, s, d = a, 1.0 / a, 1.0 / a
        for _ in range(500):
            ap += 1.0
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-12:
                break
        return s * math.exp(-x + a * math.log(x) - gln)
    b = x + 1.0 - a
    c = 1e300
    d = 1.0 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return 1.0 - math.exp(-x + a * math.log(x) - gln) * h


def _norm_ppf(q: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9 after one Newton step)."""
    if q <= 0.0:
        return -math.inf
    if q >= 1.0:
        return math.inf
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.3577518672690,
        -30.66479806614716,
        2.506628277459239,
    )
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
    c = (
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    )
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    if q < 0.02425:
        r = math.sqrt(-2.0 * math.log(q))
        x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1.0
        )
    elif q > 1.0 - 0.02425:
        r = math.sqrt(-2.0 * math.log1p(-q))
        x = -(((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1.0
        )
    else:
        u = q - 0.5
        r = u * u
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * u
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
        )
    e = 0.5 * math.erfc(-x / math.sqrt(2.0)) - q
    return x - e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)


def gamma_quantile(q: float, shape: float, scale: float = 1.0) -> float:
    """Quantile of Gamma(shape, scale) (inverse regularised incomplete gamma, Newton/Halley steps).

    >>> round(gamma_quantile(0.5, 1.0), 6)  # exponential median = ln 2
    0.693147
    >>> round(gamma_quantile(0.9, 3.0, 2.0), 4)  # chi-square(6) 90 % quantile = 10.6446
    10.6446
    """
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return math.inf
    if shape > 100.0:  # Wilson-Hilferty: relative error < 1e-4 here, and O(1)
        z = _norm_ppf(q)
        c = 1.0 / (9.0 * shape)
        return shape * scale * max(1.0 - c + z * math.sqrt(c), 0.0) ** 3
    a = shape
    a1 = a - 1.0
    gln = math.lgamma(a)
    lna1 = afac = 0.0
    if a > 1.0:
        lna1 = math.log(a1)
        afac = math.exp(a1 * (lna1 - 1.0) - gln)
        pp = q if q < 0.5 else 1.0 - q
        t = math.sqrt(-2.0 * math.log(pp))
        x = (2.30753 + t * 0.27061) / (1.0 + t * (0.99229 + t * 0.04481)) - t
        if q < 0.5:
            x = -x
        x = max(1e-3, a * (1.0 - 1.0 / (9.0 * a) - x / (3.0 * math.sqrt(a))) ** 3)
    else:
        t = 1.0 - a * (0.253 + a * 0.12)
        x = (q / t) ** (1.0 / a) if q < t else 1.0 - math.log(1.0 - (q - t) / (1.0 - t))
    for _ in range(30):
        if x <= 0.0:
            return 0.0
        err = _gammp(a, x) - q
        if a > 1.0:
            t = afac * math.exp(-(x - a1) + a1 * (math.log(x) - lna1))
        else:
            t = math.exp(-x + a1 * math.log(x) - gln)
        if t == 0.0:
            break
        u = err / t
        step = u / (1.0 - 0.5 * min(1.0, u * ((a - 1.0) / x - 1.0)))
        x -= step
        if x <= 0.0:
            x = 0.5 * (x + step)
        if abs(step) < 1e-10 * x:
            break
    return x * scale


_EXACT_NB_MAX_MEAN = 150.0


def negbin_quantiles(r: float, p: float, qs: Sequence[float] = DEFAULT_QUANTILES) -> list[float]:
    """Continuous quantiles of a negative binomial ``P(k) = C(k+r-1, k) p^r (1-p)^k`` (k = failures).

    The atom at 0 is kept; the mass of each ``k >= 1`` is spread uniformly on ``(k - 1, k]``.  Exact sums for
    a moderate mean, a moment-matched Gamma beyond (``mean > 150``).  ``qs`` must be increasing.

    >>> negbin_quantiles(1.0, 0.5, (0.4, 0.5, 0.75))  # geometric: P(0)=.5, P(1)=.25
    [0.0, 0.0, 1.0]
    >>> [round(x, 3) for x in negbin_quantiles(2.0, 0.2, (0.1, 0.5, 0.9))]
    [0.937, 6.049, 15.952]
    """
    if p >= 1.0 or r <= 0.0:
        return [0.0 for _ in qs]
    mean = r * (1.0 - p) / p
    if mean > _EXACT_NB_MAX_MEAN:
        var = mean / p
        shape = mean * mean / var
        scale = var / mean
        return [gamma_quantile(q, shape, scale) for q in qs]
    pk = math.exp(r * math.log(p))  # pmf at k
    cdf = pk  # CDF at k
    k = 0
    out: list[float] = []
    one_minus_p = 1.0 - p
    for q in qs:
        while cdf < q and k < 1_000_000:
            pk *= (k + r) / (k + 1.0) * one_minus_p
            k += 1
            cdf += pk
            if pk <= 0.0:
                break
        if k == 0 or pk <= 0.0:
            out.append(float(k))
        else:
            out.append(max(k - 1.0 + (q - (cdf - pk)) / pk, k - 1.0))
    return out


def negbin_sf(r: float, p: float, x: float) -> float:
    """P(K > x) for the continuous-spread negative binomial of :func:`negbin_quantiles`.

    >>> round(negbin_sf(1.0, 0.5, 0.0), 3), round(negbin_sf(1.0, 0.5, 0.5), 3)
    (0.5, 0.375)
    """
    if x < 0:
        return 1.0
    mean = r * (1.0 - p) / p
    if mean > _EXACT_NB_MAX_MEAN:
        var = mean / p
        return 1.0 - _gammp(mean * mean / var, x * mean / var)
    pk = math.exp(r * math.log(p))
    cdf = pk
    k = 0
    while k + 1 <= x and pk > 0.0:
        pk *= (k + r) / (k + 1.0) * (1.0 - p)
        k += 1
        cdf += pk
        if k > mean and pk < 1e-16:
            return 0.0  # past the mode with no mass left: x is far in the tail (e.g. stock of a million)
    nxt = pk * (k + r) / (k + 1.0) * (1.0 - p)  # mass of k+1 spread on (k, k+1]
    cdf += nxt * (x - k)
    return min(1.0, max(0.0, 1.0 - cdf))


# ----------------------------------------------------------------------------------------------------
# Priors
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GammaPrior:
    """Gamma(alpha, beta) (shape, rate) prior on a sale's expected final demand, with where it came from.

    >>> g = GammaPrior.from_mean_variance(100.0, 2500.0)
    >>> (g.alpha, g.beta, g.mean)
    (4.0, 0.04, 100.0)
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

    @classmethod
    def from_mean_variance(cls, mean: float, variance: float, source: str = "expert") -> GammaPrior:
        """Moment-matched Gamma; ``mean`` is floored at 0.01 units, ``variance`` at (1 % of the mean)^2."""
        mean = max(float(mean), 0.01)
        variance = max(float(variance), (0.01 * mean) ** 2)
        return cls(alpha=mean * mean / variance, beta=mean / variance, source=source)


def trigamma(x: float) -> float:
    """psi_1(x) = var(ln X) for X ~ Gamma(x, .) (recurrence + asymptotic series).

    >>> round(trigamma(1.0), 6)  # pi^2 / 6
    1.644934
    """
    acc = 0.0
    while x < 6.0:
        acc += 1.0 / (x * x)
        x += 1.0
    x2 = 1.0 / (x * x)
    return acc + 1.0 / x + x2 / 2.0 + (1.0 / x) * x2 * (1.0 / 6.0 - x2 * (1.0 / 30.0 - x2 / 42.0))


@lru_cache(maxsize=8192)
def _shape_for_log_variance(v: float) -> float:
    lo, hi = -12.0, 12.0  # log(alpha); trigamma is decreasing
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        if trigamma(math.exp(mid)) > v:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def shape_for_log_variance(v: float) -> float:
    """Gamma shape alpha whose log has variance ``v`` (inverse trigamma, cached on 4 significant digits).

    >>> round(shape_for_log_variance(1.644934), 3)
    1.0
    """
    return _shape_for_log_variance(float(f"{max(v, 1e-6):.4g}"))


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


def price_band(price: float | None) -> int | None:
    """Price band for comparable products: floor(log2(price)) (…, 1-2, 2-4, 4-8, …); None when unknown.

    >>> price_band(3.0), price_band(0.5), price_band(None)
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
        band = price_band(price)
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
        mu, s2 = self._shrunk((category, price_band(price)), mu, s2)
        mean_d = max(math.exp(mu + s2 / 2.0) - 1.0, 0.01)
        return gamma_from_log_variance(mean_d, s2, dispersion, "learned", max_alpha)


# ----------------------------------------------------------------------------------------------------
# Dispersion (units per order)
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Sales curve
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Forecaster
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forecast:
    """Forecast of a (sale, sku)'s FINAL demand (units), made at ``elapsed_fraction``."""

    p10: float
    p50: float
    p90: float
    mean: float
    prior_mean: float
    prior_source: str
    units_so_far: float
    elapsed_fraction: float
    stockout_fraction: float | None = None
    dispersion: float = 1.0


@dataclass(slots=True)
class DemandForecaster:
    """State of one (sale, sku): units so far, stockout, and the Gamma-Poisson posterior.

    ``update`` costs O(1) (a few µs); quantiles are computed lazily and cached per (units, time).

    >>> fc = DemandForecaster(GammaPrior(alpha=4.0, beta=0.04), curve=lambda t: t)  # prior mean 100
    >>> fc.update(30, 0.2)
    >>> f = fc.forecast(0.2)   # posterior Gamma(34, 0.24): mean rate 141.67, E[D] = 30 + 0.8 * 141.67
    >>> round(f.mean, 2), f.units_so_far, f.prior_source
    (143.33, 30.0, 'expert')
    >>> f.p10 <= f.p50 <= f.p90
    True
    >>> fc.mark_stockout(0.2)  # sold out: demand keeps being estimated with exposure F(0.2)
    >>> round(fc.forecast(0.9).mean, 2)
    143.33
    """

    prior: GammaPrior
    curve: Callable[[float], float]
    dispersion: float = 1.0
    order_size: float = 1.0
    sale_id: str | None = None
    sku: str | None = None
    category: str | None = None
    units: float = 0.0
    last_fraction: float = 0.0
    stockout_fraction: float | None = None
    record: bool = True
    sold: list[tuple[float, float]] = field(default_factory=list)
    _cache_key: tuple | None = field(default=None, init=False, repr=False)
    _cache: Forecast | None = field(default=None, init=False, repr=False)

    def update(self, units: float, at_fraction: float) -> None:
        """Add the units of one order line sold at elapsed fraction ``at_fraction``."""
        if units <= 0:
            return
        self.units += units
        if at_fraction > self.last_fraction:
            self.last_fraction = at_fraction
        if self.record:
            self.sold.append((at_fraction, units))

    def mark_stockout(self, at_fraction: float) -> None:
        """The sku sold out at ``at_fraction``: later forecasts use F(at_fraction) as exposure (censoring)."""
        if self.stockout_fraction is None or at_fraction < self.stockout_fraction:
            self.stockout_fraction = at_fraction

    def clear_stockout(self) -> None:
        """Restocked: exposure runs again (the time out of stock is not counted)."""
        self.stockout_fraction = None

    def posterior(self, at_fraction: float | None = None) -> tuple[float, float, float]:
        """Posterior (a, b) of the rate and the exposure F used: Gamma(alpha + n/phi, beta + F/phi)."""
        t = self.last_fraction if at_fraction is None else at_fraction
        if self.stockout_fraction is not None and self.stockout_fraction < t:
            t = self.stockout_fraction
        f = self.curve(t)
        phi = self.dispersion
        return self.prior.alpha + self.units / phi, self.prior.beta + f / phi, f

    def remaining(self, at_fraction: float | None = None) -> RemainingDemand:
        """Predictive law of the demand still to come (see :class:`RemainingDemand`)."""
        a, b, f = self.posterior(at_fraction)
        return RemainingDemand(a, b, 1.0 - f, self.order_size, self.dispersion)

    def forecast(self, at_fraction: float | None = None, qs: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        """Forecast of final demand at ``at_fraction`` (default: time of the last update); cached."""
        t = self.last_fraction if at_fraction is None else at_fraction
        key = (self.units, t, self.stockout_fraction, tuple(qs))
        if key == self._cache_key and self._cache is not None:
            return self._cache
        rem = self.remaining(t)
        n = self.units
        q = [n + x for x in rem.quantiles(qs)]
        result = Forecast(
            p10=q[0],
            p50=q[len(q) // 2],
            p90=q[-1],
            mean=n + rem.mean,
            prior_mean=self.prior.mean,
            prior_source=self.prior.source,
            units_so_far=n,
            elapsed_fraction=t,
            stockout_fraction=self.stockout_fraction,
            dispersion=self.dispersion,
        )
        self._cache_key = key
        self._cache = result
        return result

    def prob_exceeds(self, available: float, at_fraction: float | None = None) -> float:
        """P(final demand > available) under the predictive (used by the replenishment rule)."""
        return self.remaining(at_fraction).sf(available - self.units)


class RemainingDemand:
    """Predictive law of the remaining demand R given the posterior Gamma(a, b) of the rate.

    Orders of mean size ``mu`` arrive as Poisson(lambda * share / mu) given the rate, so the number of
    remaining orders is negative binomial ``NB(a, p = b / (b + share / mu))`` and ``P(R = 0) = p^a``
    (no more orders).
    ``E[R] = a share / b``, ``Var R = phi share a / b + share^2 a / b^2`` (compound noise + rate uncertainty).
    When all orders have the same size (``phi == mu``) R is exactly ``mu`` times that NB (quantiles by
    :func:`negbin_quantiles`); otherwise R is the atom ``P(R = 0)`` plus a Gamma for ``R > 0`` with the exact
    conditional mean and variance (a "hurdle Gamma").

    >>> r = RemainingDemand(a=34.0, b=0.24, share=0.8)   # Poisson units: R ~ NB(34, 0.24/1.04)
    >>> round(r.mean, 3), round(r.variance, 2)
    (113.333, 491.11)
    >>> [round(x, 2) for x in r.quantiles()]
    [85.37, 111.56, 141.93]
    >>> round(r.sf(111.56), 2)
    0.5
    >>> rw = RemainingDemand(a=2.0, b=0.1, share=0.5, mu=6.0, phi=20.0)   # wholesale-like orders
    >>> round(rw.p_zero, 4), round(rw.mean, 1), [round(x, 1) for x in rw.quantiles()]
    (0.2975, 10.0, [0.0, 3.2, 29.5])
    """

    __slots__ = ("a", "b", "share", "mu", "phi", "mean", "variance", "p_zero")

    def __init__(self, a: float, b: float, share: float, mu: float = 1.0, phi: float = 1.0) -> None:
        self.a, self.b, self.share = a, b, max(share, 0.0)
        self.mu, self.phi = mu, max(phi, mu)
        if self.share <= 0.0:
            self.mean = self.variance = 0.0
            self.p_zero = 1.0
            return
        self.mean = a * self.share / b
        self.variance = self.phi * self.mean + self.mean * self.share / b
        self.p_zero = math.exp(-a * math.log1p(self.share / (mu * b)))

    def _exact(self) -> bool:
        return self.phi <= self.mu * 1.01

    def _positive_gamma(self) -> tuple[float, float]:
        """(shape, scale) of R given R > 0."""
        pos = 1.0 - self.p_zero
        m = self.mean / pos
        second = (self.variance + self.mean * self.mean) / pos
        v = max(second - m * m, 1e-9 * m * m)
        return m * m / v, v / m

    def quantiles(self, qs: Sequence[float] = DEFAULT_QUANTILES) -> list[float]:
        """Quantiles of R (increasing ``qs``)."""
        if self.share <= 0.0 or self.mean <= 0.0:
            return [0.0 for _ in qs]
        if self._exact():
            p = self.mu * self.b / (self.mu * self.b + self.share)
            return [self.mu * k for k in negbin_quantiles(self.a, p, qs)]
        pz = self.p_zero
        shape, scale = self._positive_gamma()
        return [0.0 if q <= pz else gamma_quantile((q - pz) / (1.0 - pz), shape, scale) for q in qs]

    def sf(self, x: float) -> float:
        """P(R > x)."""
        if x < 0.0:
            return 1.0
        if self.share <= 0.0 or self.mean <= 0.0:
            return 0.0
        if self._exact():
            p = self.mu * self.b / (self.mu * self.b + self.share)
            return negbin_sf(self.a, p, x / self.mu)
        shape, scale = self._positive_gamma()
        return (1.0 - self.p_zero) * (1.0 - _gammp(shape, x / scale))


# ----------------------------------------------------------------------------------------------------
# Orchestration: what the live agent holds
# ----------------------------------------------------------------------------------------------------


class DemandModel:
    """Everything learned across sales + a factory of per-(sale, sku) forecasters.

    * ``start(...)`` builds a :class:`DemandForecaster` from an expert forecast (or none: learned prior).
    * ``finish(forecaster, ...)`` feeds a FINISHED sale back: curve, expert error model, learned prior,
      dispersion.

    >>> model = DemandModel()
    >>> fc = model.start("s1", "A1", category="mugs", expert=ExpertPrior(50.0, low=30.0, high=80.0))
    >>> fc.update(12, 0.1)
    >>> f = fc.forecast(0.1)
    >>> f.prior_source, round(f.prior_mean, 6), f.p10 <= f.p50 <= f.p90
    ('expert', 50.0, True)
    >>> model.finish(fc, price=4.0)
    >>> model.start("s2", "B7", category="mugs", price=4.5).prior.source
    'learned'
    """

    def __init__(
        self,
        curves: CurveBook | None = None,
        errors: ExpertErrorModel | None = None,
        learned: LearnedPrior | None = None,
        dispersion: DispersionBook | None = None,
    ) -> None:
        self.curves = curves if curves is not None else CurveBook()
        self.errors = errors if errors is not None else ExpertErrorModel()
        self.learned = learned if learned is not None else LearnedPrior()
        self.dispersion = dispersion if dispersion is not None else DispersionBook()

    def start(
        self,
        sale_id: str | None,
        sku: str | None,
        category: str | None = None,
        expert: ExpertPrior | None = None,
        price: float | None = None,
        record: bool = True,
    ) -> DemandForecaster:
        """New forecaster for a (sale, sku) at the start of its sale."""
        sizes = self.dispersion.get(sku, category)
        phi = sizes.dispersion
        if expert is not None:
            prior = expert.gamma(self.errors, category, dispersion=phi)
        else:
            prior = self.learned.gamma(category, price, dispersion=phi)
        return DemandForecaster(
            prior=prior,
            curve=self.curves.curve(category),
            dispersion=phi,
            order_size=sizes.mean,
            sale_id=sale_id,
            sku=sku,
            category=category,
            record=record,
        )

    def finish(self, fc: DemandForecaster, price: float | None = None, learn_dispersion: bool = True) -> None:
        """Feed a FINISHED sale back.  A stocked-out sale (censored) teaches only its order sizes."""
        if learn_dispersion:
            for _, q in fc.sold:
                self.dispersion.observe(fc.sku, fc.category, q)
        if fc.stockout_fraction is not None:
            return
        truth = fc.units
        if fc.prior.source == "expert":
            self.errors.observe(fc.prior.mean, truth, fc.category)
        self.learned.observe(truth, fc.category, price)
        if fc.sold:
            self.curves.learn(fc.category, fc.sold)
