"""The laws the forecast needs: Gamma quantiles, the negative binomial with its mass spread on unit
intervals, the inverse trigamma, and :class:`RemainingDemand`, the predictive law of the demand still to come.

Special functions come from :mod:`scipy.special` (regularised incomplete gamma and its inverse, Hurwitz zeta for
the trigamma); only the negative binomial keeps a short pmf walk, because its quantiles spread the mass of each
count ``k >= 1`` uniformly on ``(k - 1, k]`` (a continuous answer for small counts) - a convention scipy does
not have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from scipy import special

__all__ = [
    "DEFAULT_QUANTILES",
    "RemainingDemand",
    "gamma_quantile",
    "gamma_sf",
    "negbin_quantiles",
    "negbin_sf",
    "shape_for_log_variance",
    "trigamma",
]

DEFAULT_QUANTILES: tuple[float, float, float] = (0.1, 0.5, 0.9)

# Beyond this mean the negative binomial is replaced by its moment-matched Gamma: the pmf walk would cost O(mean)
# and the two laws are indistinguishable at the quantiles we report.
_EXACT_NB_MAX_MEAN = 150.0


def gamma_quantile(q: float, shape: float, scale: float = 1.0) -> float:
    """Quantile of Gamma(shape, scale).

    >>> round(gamma_quantile(0.5, 1.0), 6)  # exponential median = ln 2
    0.693147
    >>> round(gamma_quantile(0.9, 3.0, 2.0), 4)  # chi-square(6) 90 % quantile = 10.6446
    10.6446
    """
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return math.inf
    if shape > 100.0:  # Wilson-Hilferty: relative error < 1e-4 here, and cheaper than the inversion
        c = 1.0 / (9.0 * shape)
        return shape * scale * max(1.0 - c + float(special.ndtri(q)) * math.sqrt(c), 0.0) ** 3
    return float(special.gammaincinv(shape, q)) * scale


def gamma_sf(x: float, shape: float, scale: float = 1.0) -> float:
    """P(X > x) for X ~ Gamma(shape, scale).

    >>> round(gamma_sf(math.log(2.0), 1.0), 6)
    0.5
    """
    if x <= 0.0:
        return 1.0
    return float(special.gammaincc(shape, x / scale))


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
        return gamma_sf(x, mean * mean / var, var / mean)
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


def trigamma(x: float) -> float:
    """psi_1(x) = var(ln X) for X ~ Gamma(x, .) (the Hurwitz zeta(2, x)).

    >>> round(trigamma(1.0), 6)  # pi^2 / 6
    1.644934
    """
    return float(special.zeta(2.0, x))


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
        return (1.0 - self.p_zero) * gamma_sf(x, shape, scale)
