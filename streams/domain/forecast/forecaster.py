"""The per-(sale, sku) forecaster the live agent holds, and the model that builds it and learns from finished
sales.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from salepulse.streams.domain.forecast.calibration import Calibration, stratum
from salepulse.streams.domain.forecast.curves import CurveBook
from salepulse.streams.domain.forecast.dispersion import DispersionBook
from salepulse.streams.domain.forecast.distributions import DEFAULT_QUANTILES, RemainingDemand
from salepulse.streams.domain.forecast.priors import ExpertErrorModel, ExpertPrior, GammaPrior, LearnedPrior

__all__ = ["DemandForecaster", "DemandModel", "Forecast"]


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
    calibration: Calibration | None = None
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
        # the learned weight of the data (1 = the plain model): lumpy, correlated orders say less than they count
        phi = self.dispersion / (1.0 if self.calibration is None else self.calibration.data_weight(t))
        return self.prior.alpha + self.units / phi, self.prior.beta + f / phi, f

    def remaining(self, at_fraction: float | None = None) -> RemainingDemand:
        """Raw predictive law of the demand still to come (see :class:`RemainingDemand`)."""
        a, b, f = self.posterior(at_fraction)
        return RemainingDemand(a, b, 1.0 - f, self.order_size, self.dispersion)

    def remaining_given(self, units: float, at_fraction: float, data_weight: float | None = None) -> RemainingDemand:
        """The raw predictive this forecaster had at ``at_fraction`` with ``units`` sold (no stockout), with the
        learned weight of the data unless ``data_weight`` is given."""
        f = self.curve(at_fraction)
        if data_weight is None:
            data_weight = 1.0 if self.calibration is None else self.calibration.data_weight(at_fraction)
        phi = self.dispersion / data_weight
        a, b = self.prior.alpha + units / phi, self.prior.beta + f / phi
        return RemainingDemand(a, b, 1.0 - f, self.order_size, self.dispersion)

    def forecast(self, at_fraction: float | None = None, qs: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        """Forecast of final demand at ``at_fraction`` (default: time of the last update); cached."""
        t = self.last_fraction if at_fraction is None else at_fraction
        key = (self.units, t, self.stockout_fraction, tuple(qs))
        if key == self._cache_key and self._cache is not None:
            return self._cache
        rem = self.remaining(t)
        n = self.units
        cal = self.calibration
        # calibrated at the time the exposure stopped (a stockout freezes what is known)
        tc = t if self.stockout_fraction is None else min(t, self.stockout_fraction)
        if cal is None:
            q = [n + x for x in rem.quantiles(qs)]
            factor = 1.0
        else:
            levels, scales, factor = cal.adjust(tc, qs, stratum(self.prior.mean, n))
            q = [n + x * c for x, c in zip(rem.quantiles(levels), scales, strict=True)]
            for i in range(1, len(q)):  # per-level scales must not cross the quantiles
                q[i] = max(q[i], q[i - 1])
        result = Forecast(
            p10=q[0],
            p50=q[len(q) // 2],
            p90=q[-1],
            mean=n + rem.mean * factor,
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
        """P(final demand > available) under the (calibrated) predictive (used by the replenishment rule)."""
        t = self.last_fraction if at_fraction is None else at_fraction
        sf = self.remaining(t).sf(available - self.units)
        if self.calibration is None:
            return sf
        if self.stockout_fraction is not None:
            t = min(t, self.stockout_fraction)
        key = stratum(self.prior.mean, self.units)
        return 1.0 - self.calibration.probability(t, 1.0 - sf, key)


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
        calibration: Calibration | None = None,
    ) -> None:
        self.curves = curves if curves is not None else CurveBook()
        self.calibration = calibration if calibration is not None else Calibration()
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
            calibration=self.calibration,
        )

    def finish(self, fc: DemandForecaster, price: float | None = None, learn_dispersion: bool = True) -> None:
        """Feed a FINISHED sale back.  A stocked-out sale (censored) teaches only its order sizes."""
        if learn_dispersion:
            for _, q in fc.sold:
                self.dispersion.observe(fc.sku, fc.category, q)
        if fc.stockout_fraction is not None:
            return
        if fc.record:
            # before the curve learns from this sale: the predictive as it was while the sale ran
            self.calibration.observe(fc.sold, fc.remaining_given, fc.prior.mean)
        truth = fc.units
        if fc.prior.source == "expert":
            self.errors.observe(fc.prior.mean, truth, fc.category)
        self.learned.observe(truth, fc.category, price)
        if fc.sold:
            self.curves.learn(fc.category, fc.sold)
