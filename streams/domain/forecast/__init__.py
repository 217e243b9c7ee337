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
* Calibration (:class:`Calibration`), learned online from FINISHED sales only: the weight of the sales in the
  posterior (``n / phi`` and ``F / phi`` count ``kappa`` times, ``kappa`` the candidate with the best predictive
  log score: a tempered likelihood chosen by empirical Bayes; lumpy, correlated orders say less than they count),
  the band's levels (PIT recalibration: p10 / p90 are asked at the levels where 10 % / 90 % of finished series
  fell), a scale of the p50 that minimises its unit-weighted absolute error, and a ratio correction of the mean;
  per elapsed fraction and size stratum, shrunk toward all series.  ``t = 0`` is left as it stands.
* Censoring: after a stockout at ``t_s`` units sold understate demand: the exposure is ``F(t_s)`` (not
  ``F(now)``) and the remaining demand is over ``1 - F(t_s)``: the forecast is of demand, not of sales.

Modules: :mod:`.distributions` (laws, scipy special functions), :mod:`.priors`, :mod:`.curves`,
:mod:`.dispersion`, :mod:`.calibration`, :mod:`.forecaster` (what the live agent holds).  The public names are
re-exported here.

>>> model = DemandModel()
>>> fc = model.start("s1", "A1", category="mugs", expert=ExpertPrior(50.0, low=30.0, high=80.0))
>>> fc.update(12, 0.1)
>>> f = fc.forecast(0.1)
>>> f.units_so_far, f.p10 <= f.p50 <= f.p90
(12.0, True)
"""

from salepulse.streams.domain.forecast.calibration import Calibration
from salepulse.streams.domain.forecast.curves import CurveBook, SalesCurve
from salepulse.streams.domain.forecast.dispersion import DispersionBook, OrderSizes
from salepulse.streams.domain.forecast.distributions import (
    DEFAULT_QUANTILES,
    RemainingDemand,
    gamma_quantile,
    negbin_quantiles,
    negbin_sf,
)
from salepulse.streams.domain.forecast.forecaster import DemandForecaster, DemandModel, Forecast
from salepulse.streams.domain.forecast.priors import (
    ExpertErrorModel,
    ExpertPrior,
    GammaPrior,
    LearnedPrior,
    gamma_from_log_variance,
    price_octave,
)
from salepulse.streams.platform.clock import elapsed_fraction

__all__ = [
    "DEFAULT_QUANTILES",
    "Calibration",
    "CurveBook",
    "DemandForecaster",
    "DemandModel",
    "DispersionBook",
    "ExpertErrorModel",
    "ExpertPrior",
    "Forecast",
    "GammaPrior",
    "LearnedPrior",
    "OrderSizes",
    "RemainingDemand",
    "SalesCurve",
    "elapsed_fraction",
    "gamma_from_log_variance",
    "gamma_quantile",
    "negbin_quantiles",
    "negbin_sf",
    "price_octave",
]
