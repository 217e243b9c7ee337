"""Pre-sale demand: the buyer's number read the way an experienced colleague reads it.

Pure logic (no Kafka, no Faust). Before a sale opens every (sale, sku) gets a corrected forecast
``expert x correction`` with p10 / p50 / p90, learned online from the outcomes of finished sales.

**Correction (the centre).** For a group of finished forecasts the correction is the ratio estimator
``c = sum(actual) / sum(expert)``: the factor that makes the group's forecast units add up to what sold, which is
what "their forecasts ran 18 % high" means to a buyer (``1 / c - 1 = 0.18``). Groups are a chain, each level shrunk
toward the one before it with a prior strength of ``prior_strength`` forecasts (pseudo-observations)::

    all -> size -> department -> category -> (category, size) -> (category, size, price band)      pooled
        -> buyer -> (buyer, department) -> (buyer, category) -> (buyer, category, size)   that buyer, when known

``c_level = (n c_hat + k c_parent) / (n + k)``: a buyer with ten forecasts is mostly read like everyone else, one
with hundreds by their own record. ``n`` is the group's effective number of forecasts ``(sum f)^2 / sum f^2``:
the ratio weighs forecasts by their units, so one big forecast among small ones is a record of about one. The
department is the category path's first part (``shoes`` of ``shoes.sneakers``). Size is
``floor(log2(forecast + 1))``; price band is :func:`salepulse.streams.domain.forecast.price_octave`.

**Censoring.** A sold-out sku's sales understate its demand; learning from them would teach a downward bias
exactly where buyers were right to be bold. Its demand is imputed as ``E[D | D >= sold]`` under the current
predictive (log-normal around the corrected forecast, spread from the residual law), never as the units sold.

**Spread (p10 / p50 / p90, the newsvendor quantile).** Log residuals ``ln((actual + 1) / (c f + 1))`` of finished
forecasts, per forecast-size bucket (pooled below ``min_residuals``), with a Kaplan-Meier estimate of their law so
that sold-out skus count as "at least this much" (right-censored) instead of being dropped from the upper tail.

**No expert number.** :class:`FeatureModel`: the mean of ``ln(units + 1)`` of comparable finished sales through
the chain ``all -> sale length -> category -> (category, price band) -> brand -> (brand, category)``, with the same
shrinkage, and its own residual law.

The pieces: :mod:`salepulse.streams.domain.presale_outcome` (outcomes, size buckets, defaults),
:mod:`salepulse.streams.domain.presale_spread` (the residual law),
:mod:`salepulse.streams.domain.presale_correction` (correction
and feature model), :mod:`salepulse.streams.domain.presale_history` (a product's own record of earlier sales);
this module is the desk and re-exports their public names.

**Sold-out products and their sell-out time.** When an outcome carries ``exposure`` (the sales curve at the
sell-out time), its demand is :func:`sellout_demand`, ``(units - 1) / exposure``; the censored-law imputation
above is the fallback.

>>> desk = PresaleDesk(prior_strength=5)
>>> for i in range(40):  # alice's shoe forecasts sell 1/1.25 of what she says
...     _ = desk.observe(Outcome(f"s{i}", f"k{i}", expert=250.0, actual=200.0, buyer_id="alice", category="shoes",
...                              ended_ms=i))
>>> f = desk.forecast("next", "k", expert=250.0, buyer_id="alice", category="shoes")
>>> round(f.correction, 3), round(f.p50)
(0.8, 200)
>>> f.reason
"alice's forecasts on shoes of 127-254 units ran 25% high over 40 sales"
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from salepulse.streams.domain.forecast import price_octave
from salepulse.streams.domain.presale_correction import Correction, CorrectionModel, FeatureModel
from salepulse.streams.domain.presale_history import HistoryBlend
from salepulse.streams.domain.presale_outcome import (
    DEFAULT_PRIOR_STRENGTH,
    Outcome,
    size_bucket,
    size_phrase,
)
from salepulse.streams.domain.presale_spread import ResidualLaw, kaplan_meier_quantiles, tobit_fit

__all__ = [
    "DEFAULT_PRIOR_STRENGTH",
    "CorrectionModel",
    "FeatureModel",
    "HistoryBlend",
    "Outcome",
    "PresaleDesk",
    "PresaleForecast",
    "ResidualLaw",
    "kaplan_meier_quantiles",
    "size_bucket",
    "sellout_demand",
    "size_phrase",
    "tobit_fit",
]

MIN_EXPOSURE = 0.05
"""Below this share of the sale's demand, a sell-out time says too little (``units / exposure`` explodes): the
censored-law imputation is used instead."""


def sellout_demand(sold: float, exposure: float | None) -> float | None:
    """Demand of a product that sold out when a share ``exposure`` of its sale's demand was expected to be in.

    Orders arrive along the sale's curve ``G``; selling ``s`` units by ``t_s`` says the demand rate was about
    ``s / G(t_s)``. With Poisson arrivals ``D G(t_s)`` is Gamma(s, 1) distributed, so ``(s - 1) / G(t_s)`` is the
    unbiased estimate (``s / G`` overshoots by ``s / (s - 1)``); never below what sold. None when the time says
    too little (no exposure, or under :data:`MIN_EXPOSURE`).

    >>> sellout_demand(20.0, 0.5), sellout_demand(20.0, None), sellout_demand(20.0, 0.01)
    (38.0, None, None)
    >>> sellout_demand(5.0, 0.95)  # sold out at the very end: demand was about the stock
    5.0
    """
    if exposure is None or not exposure >= MIN_EXPOSURE:
        return None
    return max(sold, (sold - 1.0) / min(exposure, 1.0))


# ----------------------------------------------------------------------------------------------------
# The desk: everything together
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PresaleForecast:
    """The pre-sale forecast of one (sale, sku): final demand quantiles and why."""

    sale_id: str
    sku: str
    expert: float | None
    correction: float
    """Factor applied to the expert number (1.0 when there is none)."""
    center: float
    """Corrected point ``expert x correction`` (the feature model's estimate without an expert)."""
    mean: float
    p10: float
    p50: float
    p90: float
    source: str
    """expert | expert-corrected | features"""
    reason: str
    buyer_id: str | None = None
    category: str | None = None
    residual_key: Any = None
    _desk: Any = field(default=None, repr=False, compare=False)

    def quantile(self, q: float) -> float:
        """Any quantile of the pre-sale predictive (the stocking plan's critical quantile)."""
        return self._desk.quantile_of(self, q)

    def as_dict(self) -> dict[str, Any]:
        return {"sale_id": self.sale_id, "sku": self.sku, "expert": self.expert, "correction": self.correction,
                "mean": self.mean, "p10": self.p10, "p50": self.p50, "p90": self.p90, "source": self.source,
                "reason": self.reason, "buyer_id": self.buyer_id, "category": self.category}


@dataclass
class _BuyerRecord:
    outcomes: deque[Outcome] = field(default_factory=lambda: deque(maxlen=5000))


class PresaleDesk:
    """Learns from finished sales (:meth:`observe`); forecasts before a sale opens (:meth:`forecast`).

    Outcomes must be observed in the order sales finished (``ended_ms``, then sale id): :meth:`observe_many`
    sorts them, so the desk rebuilt from the compacted outcomes topic on restart is the same desk.
    """

    def __init__(self, prior_strength: float = DEFAULT_PRIOR_STRENGTH, residual_window: int = 4000,
                 min_residuals: int = 100, min_group_residuals: int = 20) -> None:
        self.corrections = CorrectionModel(prior_strength)
        self.features = FeatureModel()
        self.history = HistoryBlend()
        self.residuals = ResidualLaw(maxlen=residual_window, min_count=min_group_residuals,
                                     prior_strength=prior_strength, pooled_min=min_residuals)
        self.buyers: dict[str, _BuyerRecord] = {}
        self.seen: set[tuple[str, str]] = set()
        self.version = 0
        self._corrections: dict[tuple[Any, ...], tuple[Correction, str]] = {}

    RESIDUAL_LEVELS: tuple[str, ...] = ("expert", "size", "buyer_size")
    """The groups of an expert forecast's residual law, general to specific (see :class:`ResidualLaw`)."""

    def residual_chain(self, center: float, buyer_id: str | None, category: str | None,
                       record: bool = False) -> tuple[Any, ...]:
        """The groups whose residual laws an expert forecast of ``center`` units is read through; ``record``: the
        product's own record moved it (those errors have their own law: narrower once the record is read)."""
        base = "expert+record" if record else "expert"
        keys = {"expert": (base,), "size": (base, size_bucket(center)),
                "category": ("category", category) if category is not None else None,
                "buyer": ("buyer", buyer_id) if buyer_id else None,
                "buyer_size": ("buyer_size", buyer_id, size_bucket(center)) if buyer_id else None,
                "buyer_category": ("buyer_category", buyer_id, category) if buyer_id else None}
        return tuple(k for k in (keys[level] for level in self.RESIDUAL_LEVELS) if k is not None)

    # --- learning ----------------------------------------------------------------------------------------
    def _impute(self, center: float, sold: float, key: Any) -> float:
        """Demand of a sold-out sku: the median of the predictive above what it is known to exceed.

        The predictive is the residual law fitted under censoring (Tobit, :meth:`ResidualLaw.tobit`): when most
        products of a group sell out, the Kaplan-Meier law has no upper tail to draw from and imputed demand fell
        back to the units sold, which read a cautious buyer as nearly right. The median, not the mean: the far
        tail made imputed demand (so the correction) run high in the simulated evaluation. Before any fit, the
        Kaplan-Meier grid around ``center``.
        """
        fit = self.residuals.tobit(key)
        if fit is not None:
            mu, sd = fit
            cut = (self.residual(sold, center, True) - mu) / sd
            above = float(ndtr(cut))
            r_med = mu + sd * float(ndtri(min(above + (1.0 - above) / 2.0, 1.0 - 1e-12)))
            return max(sold, (center + 1.0) * math.exp(r_med) - 1.0)
        values = [(center + 1.0) * math.exp(self.residuals.quantile(key, q)) - 1.0 for q in ResidualLaw.GRID]
        above_sold = [v for v in values if v >= sold]
        return max(sold, float(np.median(above_sold))) if above_sold else sold

    def _demand(self, outcome: Outcome, center: float, key: Any) -> float:
        """What a finished product's demand was: the units sold, or for a sold-out one its imputed demand."""
        if not outcome.censored:
            return outcome.actual
        from_time = sellout_demand(outcome.actual, outcome.exposure)
        return from_time if from_time is not None else self._impute(center, outcome.actual, key)

    @staticmethod
    def residual(actual: float, center: float, censored: bool) -> float:
        """The log residual of a finished forecast; for a sold-out one, the point demand is known to exceed.

        Kaplan-Meier reads a censored value ``v`` as "the residual is above ``v``". Demand is whole units, and
        selling out at ``s`` says ``demand >= s``, that is ``demand > s - 1``: recording it at ``s`` instead
        would also rule out ``demand == s``, which for a small product is likely, and pushed the upper tail of
        the law (so the plan) up: 3 points of service level above the target on simulated data.

        >>> PresaleDesk.residual(9.0, 9.0, False), round(PresaleDesk.residual(10.0, 9.0, True), 6)
        (0.0, 0.0)
        """
        if censored:
            return math.log(max(actual, 0.0) / (center + 1.0)) if actual > 0 else -math.inf
        return math.log((actual + 1.0) / (center + 1.0))

    def observe(self, outcome: Outcome) -> bool:
        """Learn from one finished (sale, sku); False when it was already learned (a redelivered outcome)."""
        key = (outcome.sale_id, outcome.sku)
        if key in self.seen:
            return False
        self.seen.add(key)
        self.version += 1
        actual = outcome.actual
        if outcome.expert is not None and outcome.expert >= 0:
            f = float(outcome.expert)
            corr = self.corrections.correction(f, outcome.buyer_id, outcome.category, outcome.price)
            corrected = f * corr.factor
            center = self.history.center(corrected, outcome.sku)
            rkey = self.residual_chain(center, outcome.buyer_id, outcome.category,
                                       self.history.record(outcome.sku) is not None)
            demand = self._demand(outcome, center, rkey)
            self.residuals.add(rkey, self.residual(actual, center, outcome.censored), outcome.censored)
            self.corrections.observe(f, demand, outcome.sale_id, outcome.buyer_id, outcome.category,
                                     outcome.price)
            # after the forecast above was scored against it: the product's record never includes its own sale
            self.history.observe(outcome.sku, corrected, demand)
            if outcome.buyer_id:
                self.buyers.setdefault(outcome.buyer_id, _BuyerRecord()).outcomes.append(outcome)
        else:
            log_mean = self.features.log_mean(outcome.category, outcome.price, outcome.brand, outcome.sale_hours)
            center = math.expm1(log_mean)
            rkey = (("features",),)
            demand = self._demand(outcome, center, rkey)
            self.residuals.add(rkey, self.residual(actual, center, outcome.censored), outcome.censored)
        # the feature model learns every product's demand: comparable sales, whoever forecast them
        self.features.observe(actual if not outcome.censored else demand, outcome.category, outcome.price,
                              outcome.brand, outcome.sale_hours)
        return True

    def observe_many(self, outcomes: Iterable[Outcome]) -> int:
        """Learn a batch in the order the sales finished; returns how many were new."""
        ordered = sorted(outcomes, key=lambda o: (o.ended_ms, o.sale_id, o.sku))
        return sum(self.observe(o) for o in ordered)

    # --- forecasting -------------------------------------------------------------------------------------
    def quantile_of(self, f: PresaleForecast, q: float) -> float:
        return max(0.0, (f.center + 1.0) * math.exp(self.residuals.quantile(f.residual_key, q)) - 1.0)

    def forecast(self, sale_id: str, sku: str, expert: float | None = None, buyer_id: str | None = None,
                 category: str | None = None, price: float | None = None, brand: str | None = None,
                 sale_hours: float | None = None) -> PresaleForecast:
        """The corrected pre-sale forecast of one (sale, sku)."""
        if expert is not None and expert >= 0:
            corr, reason = self._correction(float(expert), buyer_id, category, price)
            corrected = float(expert) * corr.factor
            record = self.history.record(sku) is not None
            center = self.history.center(corrected, sku) if record else corrected
            rkey: Any = self.residual_chain(center, buyer_id, category, record)
            source = "expert-corrected" if corr.forecasts or center != corrected else "expert"
            factor = center / float(expert) if expert > 0 else corr.factor
            if record and abs(math.log1p(center) - math.log1p(corrected)) >= 0.01:  # a shift a buyer would notice
                reason = f"{reason}; {self.history_reason(sku, corrected, center)}"
        else:
            center = math.expm1(self.features.log_mean(category, price, brand, sale_hours))
            rkey = (("features",),)
            source, factor = "features", 1.0
            reason = (f"no buyer forecast: estimated from comparable finished sales "
                      f"({brand or 'any brand'}, {category or 'any category'})")
        qs = [max(0.0, (center + 1.0) * math.exp(self.residuals.quantile(rkey, q)) - 1.0) for q in (0.1, 0.5, 0.9)]
        mean = self._mean(center, rkey)
        return PresaleForecast(sale_id, sku, None if expert is None else float(expert), factor, center, mean,
                               qs[0], qs[1], qs[2], source, reason, buyer_id, category, rkey, self)

    def _correction(self, expert: float, buyer_id: str | None, category: str | None,
                    price: float | None) -> tuple[Correction, str]:
        """The correction and its reason; it depends on the forecast only through its groups, so it is computed
        once per group per state of the desk (a plan of thousands of products touches a few hundred groups)."""
        group = (size_bucket(expert), buyer_id, category, price_octave(price), self.version)
        cached = self._corrections.get(group)
        if cached is None:
            if len(self._corrections) > 50_000:
                self._corrections.clear()
            corr = self.corrections.correction(expert, buyer_id, category, price)
            cached = self._corrections[group] = (corr, self.reason(corr, buyer_id, category))
        return cached

    def history_reason(self, sku: str, corrected: float, blended: float) -> str:
        """Why the product's own record moved the corrected number, in a buyer's words."""
        rec = self.history.record(sku)
        if rec is None or rec.n == 0:
            return ""
        sales = "sale" if rec.n == 1 else "sales"
        return (f"this product sold {rec.last:.0f} units in its last sale ({rec.demand / rec.n:.0f} on average "
                f"over {rec.n} earlier {sales}), so {corrected:.0f} is planned as {blended:.0f}")

    def _mean(self, center: float, rkey: Any) -> float:
        return max(0.0, (center + 1.0) * self.residuals.exp_mean(rkey) - 1.0)

    def reason(self, corr: Correction, buyer_id: str | None, category: str | None) -> str:
        """A sentence a buyer reads: whose record, on what, how far off, over how many sales."""
        if corr.forecasts == 0:
            return "no finished sales yet: the expert number as given"
        pct = round((1.0 / corr.factor - 1.0) * 100)
        direction = f"ran {abs(pct)}% {'high' if pct > 0 else 'low'}" if pct else "were on target"
        level, key = corr.level, corr.key
        if level.startswith("buyer"):
            who = f"{buyer_id}'s forecasts"
            on = ""
            if level in ("buyer_department", "buyer_category", "buyer_category_size") and key[1] is not None:
                on = f" on {key[1]}"
            if level == "buyer_category_size":
                on += f" {size_phrase(key[-1])}"
        else:
            who = "forecasts" if not buyer_id else f"forecasts like {buyer_id}'s (pooled, their record is short)"
            on = ""
            if level in ("department", "category", "category_size", "category_size_band") and key[0] is not None:
                on = f" on {key[0]}"
            if level in ("size", "category_size", "category_size_band"):
                on += f" {size_phrase(key[0] if level == 'size' else key[1])}"
            if level == "category_size_band":
                on += " in this price band"
        return f"{who}{on} {direction} over {corr.sales} sales"

    def forecast_many(self, items: Iterable[dict[str, Any]]) -> list[PresaleForecast]:
        """Forecasts for many products (dicts with the keyword arguments of :meth:`forecast`)."""
        return [self.forecast(**item) for item in items]

    # --- the buyer scorecard -----------------------------------------------------------------------------
    def scorecard(self, buyer_id: str, last_sales: int = 10) -> dict[str, Any] | None:
        """What the desk knows about a buyer: bias, range coverage, corrections by category, recent sales."""
        record = self.buyers.get(buyer_id)
        if record is None:
            return None
        outs = list(record.outcomes)
        by_cat: dict[str | None, list[Outcome]] = {}
        for o in outs:
            by_cat.setdefault(o.category, []).append(o)

        def summary(items: list[Outcome]) -> dict[str, Any]:
            clean = [o for o in items if not o.censored]
            f = sum(o.expert or 0.0 for o in clean)
            a = sum(o.actual for o in clean)
            ranged = [o for o in items if o.low is not None and o.high is not None
                      and not (o.censored and o.actual <= (o.high or 0))]
            inside = sum(1 for o in ranged if o.low <= o.actual <= o.high)  # type: ignore[operator]
            return {
                "forecasts": len(items),
                "sales": len({o.sale_id for o in items}),
                "sold_out": len(items) - len(clean),
                "bias": (f / a - 1.0) if a > 0 else None,
                "range_forecasts": len(ranged),
                "range_coverage": inside / len(ranged) if ranged else None,
            }

        def read_now(items: list[Outcome]) -> float | None:
            """Their forecast units over what the desk would plan from them now, minus 1 (recent 1,000)."""
            recent = items[-1000:]
            f = sum(o.expert or 0.0 for o in recent)
            corrected = sum((o.expert or 0.0) * self._correction(o.expert or 0.0, buyer_id, o.category,
                                                                   o.price)[0].factor for o in recent)
            return f / corrected - 1.0 if corrected > 0 else None

        categories = []
        for cat, items in sorted(by_cat.items(), key=lambda kv: -len(kv[1])):
            # the reason shown is that of their most frequent forecast size in the category
            sizes: dict[int, list[Outcome]] = {}
            for o in items:
                sizes.setdefault(size_bucket(o.expert or 0.0), []).append(o)
            usual = max(sizes.values(), key=len)[-1]
            corr, reason = self._correction(usual.expert or 0.0, buyer_id, cat, usual.price)
            learned = read_now(items)
            categories.append({"category": cat, **summary(items),
                               "correction": 1.0 / (1.0 + learned) if learned is not None else corr.factor,
                               "learned_bias": learned, "reason": reason})
        sales: dict[str, dict[str, Any]] = {}
        for o in outs:
            s = sales.setdefault(o.sale_id, {"sale_id": o.sale_id, "ended_at": o.ended_ms, "forecast": 0.0,
                                             "actual": 0.0, "skus": 0, "sold_out": 0})
            s["forecast"] += o.expert or 0.0
            s["actual"] += o.actual
            s["skus"] += 1
            s["sold_out"] += int(o.censored)
        recent = sorted(sales.values(), key=lambda s: (s["ended_at"], s["sale_id"]))[-last_sales:]
        return {"buyer_id": buyer_id, **summary(outs), "learned_bias": read_now(outs),
                "categories": categories, "recent_sales": list(reversed(recent))}
