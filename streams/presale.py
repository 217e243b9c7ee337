"""Pre-sale demand: the buyer's number read the way an experienced colleague reads it.

Pure logic (no Kafka, no Faust). Before a sale opens every (sale, sku) gets a corrected forecast
``expert x correction`` with p10 / p50 / p90, learned online from the outcomes of finished sales.

**Correction (the centre).** For a group of finished forecasts the correction is the ratio estimator
``c = sum(actual) / sum(expert)``: the factor that makes the group's forecast units add up to what sold, which is
what "their forecasts ran 18 % high" means to a buyer (``1 / c - 1 = 0.18``). Groups are a chain, each level shrunk
toward the one before it with a prior strength of ``prior_strength`` forecasts (pseudo-observations)::

    all -> size -> category -> (category, size) -> (category, size, price band)      pooled
        -> buyer -> (buyer, category) -> (buyer, category, size)                     that buyer, when known

``c_level = (n c_hat + k c_parent) / (n + k)``: a buyer with ten forecasts is mostly read like everyone else, one
with hundreds by their own record. Size is ``floor(log2(forecast + 1))``; price band is
:func:`salepulse.streams.forecast.price_octave`.

**Censoring.** A sold-out sku's sales understate its demand; learning from them would teach a downward bias
exactly where buyers were right to be bold. Its demand is imputed as ``E[D | D >= sold]`` under the current
predictive (log-normal around the corrected forecast, spread from the residual law), never as the units sold.

**Spread (p10 / p50 / p90, the newsvendor quantile).** Log residuals ``ln((actual + 1) / (c f + 1))`` of finished
forecasts, per forecast-size bucket (pooled below ``min_residuals``), with a Kaplan-Meier estimate of their law so
that sold-out skus count as "at least this much" (right-censored) instead of being dropped from the upper tail.

**No expert number.** :class:`FeatureModel`: the mean of ``ln(units + 1)`` of comparable finished sales through
the chain ``all -> sale length -> category -> (category, price band) -> brand -> (brand, category)``, with the same
shrinkage, and its own residual law.

>>> desk = PresaleDesk(prior_strength=5)
>>> for i in range(40):  # alice's shoe forecasts sell 1/1.25 of what she says
...     _ = desk.observe(Outcome(f"s{i}", "k", expert=250.0, actual=200.0, buyer_id="alice", category="shoes",
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_ndtr, ndtr, ndtri

from salepulse.streams.forecast import price_octave

__all__ = [
    "DEFAULT_PRIOR_STRENGTH",
    "CorrectionModel",
    "FeatureModel",
    "Outcome",
    "PresaleDesk",
    "PresaleForecast",
    "ResidualLaw",
    "kaplan_meier_quantiles",
    "size_bucket",
    "size_phrase",
]

DEFAULT_PRIOR_STRENGTH = 20.0
"""Pseudo-forecasts of the parent group behind every group's correction: a buyer's own record outweighs the pool
once they have more than 20 finished forecasts in that group (about one sale of 20 products)."""
DEFAULT_LOG_SD = 0.7
"""Spread of ln(demand + 1) around the corrected forecast before any residual is known (a factor 2 either way)."""
_Z90 = 1.2815515655446004


def size_bucket(units: float) -> int:
    """Forecast-size bucket ``floor(log2(units + 1))``, capped at 14.

    >>> size_bucket(0), size_bucket(1), size_bucket(200), size_bucket(1e9)
    (0, 1, 7, 14)
    """
    return min(int(math.log2(max(units, 0.0) + 1.0)), 14)


def size_phrase(bucket: int) -> str:
    """The forecast sizes of a bucket as a buyer reads them.

    >>> size_phrase(0), size_phrase(7)
    ('of under 1 unit', 'of 127-254 units')
    """
    low, high = 2**bucket - 1, 2 ** (bucket + 1) - 2
    if bucket == 0:
        return "of under 1 unit"
    return f"of {low}-{high} units"


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished (sale, sku) teaches: the buyer's number (if any), what sold, and whether it sold out.

    ``censored`` means the sku sold out, so ``actual`` (units sold) is only a lower bound of demand.
    """

    sale_id: str
    sku: str
    expert: float | None
    actual: float
    censored: bool = False
    low: float | None = None
    high: float | None = None
    buyer_id: str | None = None
    category: str | None = None
    price: float | None = None
    brand: str | None = None
    sale_hours: float | None = None
    ended_ms: int = 0
    regions: tuple[tuple[str, float], ...] = ()
    """Units sold per delivery region (orders that carried one), sorted by region."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Outcome:
        """From a ``ForecastOutcome`` Avro record (``ended_at`` in ms)."""
        ended = record.get("ended_at") or 0
        if not isinstance(ended, int):
            ended = int(ended.timestamp() * 1000)
        return cls(record["sale_id"], record["sku"], record.get("expert"), float(record["actual"]),
                   bool(record.get("censored")), record.get("low"), record.get("high"), record.get("buyer_id"),
                   record.get("category"), record.get("price"), record.get("brand"), record.get("sale_hours"),
                   ended, tuple(sorted((r["region"], float(r["units"])) for r in record.get("regions") or ())))

    def to_record(self) -> dict[str, Any]:
        """The ``ForecastOutcome`` Avro record."""
        return {"event_id": f"{self.sale_id}:{self.sku}:outcome", "sale_id": self.sale_id, "sku": self.sku,
                "expert": self.expert, "low": self.low, "high": self.high, "actual": float(self.actual),
                "censored": self.censored, "buyer_id": self.buyer_id, "category": self.category,
                "price": self.price, "brand": self.brand, "sale_hours": self.sale_hours, "ended_at": self.ended_ms,
                "regions": [{"region": r, "units": u} for r, u in self.regions]}


# ----------------------------------------------------------------------------------------------------
# Spread: Kaplan-Meier law of log residuals
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# The correction: hierarchical ratio estimator
# ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ratio:
    n: float = 0.0
    actual: float = 0.0
    expert: float = 0.0
    sales: int = 0
    last_sale: str | None = None

    def add(self, expert: float, actual: float, sale_id: str) -> None:
        self.n += 1
        self.actual += actual
        self.expert += expert
        if sale_id != self.last_sale:
            self.sales += 1
            self.last_sale = sale_id


@dataclass(frozen=True, slots=True)
class Correction:
    """The factor applied to an expert number, and the group whose record it mostly comes from."""

    factor: float
    level: str
    """all | size | category | category_size | category_size_band | buyer | buyer_category | buyer_category_size"""
    key: tuple[Any, ...]
    forecasts: int
    sales: int


class CorrectionModel:
    """Hierarchical ratio correction of expert numbers (see the module docstring)."""

    POOLED = ("all", "size", "category", "category_size", "category_size_band")
    BUYER = ("buyer", "buyer_category", "buyer_category_size")

    def __init__(self, prior_strength: float = DEFAULT_PRIOR_STRENGTH, max_factor: float = 20.0) -> None:
        self.prior_strength = prior_strength
        self.max_factor = max_factor
        self._stats: dict[tuple[Any, ...], _Ratio] = {}

    @staticmethod
    def keys(expert: float, buyer_id: str | None, category: str | None,
             price: float | None) -> list[tuple[str, tuple[Any, ...]]]:
        s, b = size_bucket(expert), price_octave(price)
        keys: list[tuple[str, tuple[Any, ...]]] = [("all", ()), ("size", (s,))]
        if category is not None:
            keys += [("category", (category,)), ("category_size", (category, s))]
            if b is not None:
                keys.append(("category_size_band", (category, s, b)))
        elif b is not None:
            keys.append(("category_size_band", (None, s, b)))
        if buyer_id:
            keys += [("buyer", (buyer_id,)), ("buyer_category", (buyer_id, category)),
                     ("buyer_category_size", (buyer_id, category, s))]
        return keys

    def _chain(self, keys: list[tuple[str, tuple[Any, ...]]], start: float,
               best: Correction) -> tuple[float, Correction]:
        factor = start
        k = self.prior_strength
        for level, key in keys:
            st = self._stats.get((level, *key))
            if st is None or st.n == 0 or st.expert <= 0:
                continue
            factor = (st.n * (st.actual / st.expert) + k * factor) / (st.n + k)
            best = Correction(factor, level, key, int(st.n), st.sales)
        return factor, best

    @staticmethod
    def _comparable(level: str, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """The pooled group a buyer's group is compared with (same granularity, everyone's forecasts)."""
        if level == "buyer":
            return ("all",)
        if level == "buyer_category":
            return ("category", key[1]) if key[1] is not None else ("all",)
        return ("category_size", key[1], key[2]) if key[1] is not None else ("size", key[2])

    def observe(self, expert: float, actual: float, sale_id: str, buyer_id: str | None = None,
                category: str | None = None, price: float | None = None) -> None:
        """Learn one finished forecast (expert number, demand) into every group it belongs to."""
        for level, key in self.keys(expert, buyer_id, category, price):
            self._stats.setdefault((level, *key), _Ratio()).add(expert, actual, sale_id)

    def correction(self, expert: float, buyer_id: str | None = None, category: str | None = None,
                   price: float | None = None) -> Correction:
        """The shrunk factor for this forecast, and the most specific group with a record behind it.

        Pooled groups give the factor for everyone's forecasts of this kind; a buyer's groups multiply it by how
        their record compares with everyone's at the same granularity (their ratio over the pool's), shrunk to 1.
        """
        keys = self.keys(expert, buyer_id, category, price)
        pooled = [kk for kk in keys if kk[0] in self.POOLED]
        factor, best = self._chain(pooled, 1.0, Correction(1.0, "all", (), 0, 0))
        adjust, k = 1.0, self.prior_strength
        for level, key in (kk for kk in keys if kk[0] in self.BUYER):
            st = self._stats.get((level, *key))
            ref = self._stats.get(self._comparable(level, key))
            if st is None or st.n == 0 or st.expert <= 0 or ref is None or ref.expert <= 0 or ref.actual <= 0:
                continue
            relative = (st.actual / st.expert) / (ref.actual / ref.expert)
            adjust = (st.n * relative + k * adjust) / (st.n + k)
            best = Correction(factor * adjust, level, key, int(st.n), st.sales)
        factor = min(max(factor * adjust, 1.0 / self.max_factor), self.max_factor)
        return Correction(factor, best.level, best.key, best.forecasts, best.sales)

    def group(self, level: str, key: tuple[Any, ...]) -> _Ratio | None:
        return self._stats.get((level, *key))


# ----------------------------------------------------------------------------------------------------
# No expert number: comparable finished sales
# ----------------------------------------------------------------------------------------------------


class FeatureModel:
    """Mean of ``ln(units + 1)`` over comparable finished sales, through a shrunk chain of groups.

    >>> fm = FeatureModel(prior_strength=1)
    >>> for u in (9, 99) * 10:
    ...     fm.observe(u, category="mugs", price=5.0, brand="acme", sale_hours=4)
    >>> round(fm.log_mean(category="mugs", price=5.0, brand="acme", sale_hours=4), 2)
    3.45
    """

    def __init__(self, prior_strength: float = 5.0, default_log_mean: float = math.log1p(10.0)) -> None:
        self.prior_strength = prior_strength
        self.default_log_mean = default_log_mean
        self._stats: dict[tuple[Any, ...], list[float]] = {}

    @staticmethod
    def keys(category: str | None, price: float | None, brand: str | None,
             sale_hours: float | None) -> list[tuple[Any, ...]]:
        length = None if sale_hours is None else round(math.log2(max(sale_hours, 0.25)))
        return [("all",), ("length", length), ("category", category), ("category_band", category, price_octave(price)),
                ("brand", brand), ("brand_category", brand, category)]

    def observe(self, units: float, category: str | None = None, price: float | None = None,
                brand: str | None = None, sale_hours: float | None = None) -> None:
        x = math.log1p(max(units, 0.0))
        for key in self.keys(category, price, brand, sale_hours):
            st = self._stats.setdefault(key, [0.0, 0.0])
            st[0] += 1
            st[1] += x

    def log_mean(self, category: str | None = None, price: float | None = None, brand: str | None = None,
                 sale_hours: float | None = None) -> float:
        m = self.default_log_mean
        k = self.prior_strength
        for key in self.keys(category, price, brand, sale_hours):
            st = self._stats.get(key)
            if st is not None and st[0] > 0:
                m = (st[1] + k * m) / (st[0] + k)
        return m


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
        self.residuals = ResidualLaw(maxlen=residual_window, min_count=min_group_residuals,
                                     prior_strength=prior_strength, pooled_min=min_residuals)
        self.buyers: dict[str, _BuyerRecord] = {}
        self.seen: set[tuple[str, str]] = set()
        self.version = 0
        self._corrections: dict[tuple[Any, ...], tuple[Correction, str]] = {}

    RESIDUAL_LEVELS: tuple[str, ...] = ("expert", "size", "buyer_size")
    """The groups of an expert forecast's residual law, general to specific (see :class:`ResidualLaw`)."""

    def residual_chain(self, center: float, buyer_id: str | None, category: str | None) -> tuple[Any, ...]:
        """The groups whose residual laws an expert forecast of ``center`` units is read through."""
        keys = {"expert": ("expert",), "size": ("expert", size_bucket(center)),
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
            center = f * corr.factor
            rkey = self.residual_chain(center, outcome.buyer_id, outcome.category)
            demand = self._impute(center, actual, rkey) if outcome.censored else actual
            self.residuals.add(rkey, self.residual(actual, center, outcome.censored), outcome.censored)
            self.corrections.observe(f, demand, outcome.sale_id, outcome.buyer_id, outcome.category,
                                     outcome.price)
            if outcome.buyer_id:
                self.buyers.setdefault(outcome.buyer_id, _BuyerRecord()).outcomes.append(outcome)
        else:
            log_mean = self.features.log_mean(outcome.category, outcome.price, outcome.brand, outcome.sale_hours)
            center = math.expm1(log_mean)
            rkey = (("features",),)
            demand = self._impute(center, actual, rkey) if outcome.censored else actual
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
            center = float(expert) * corr.factor
            rkey: Any = self.residual_chain(center, buyer_id, category)
            source = "expert-corrected" if corr.forecasts else "expert"
            factor = corr.factor
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
            if level in ("buyer_category", "buyer_category_size") and key[1] is not None:
                on = f" on {key[1]}"
            if level == "buyer_category_size":
                on += f" {size_phrase(key[-1])}"
        else:
            who = "forecasts" if not buyer_id else f"forecasts like {buyer_id}'s (pooled, their record is short)"
            on = ""
            if level in ("category", "category_size", "category_size_band") and key[0] is not None:
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
