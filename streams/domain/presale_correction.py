"""The centre of a pre-sale forecast: the hierarchical ratio estimator that corrects a buyer's number
(:class:`CorrectionModel`) and, with no number, the mean of comparable finished sales (:class:`FeatureModel`).

Part of :mod:`salepulse.streams.domain.presale` (pure logic, no Kafka, no Faust).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from salepulse.streams.domain.forecast import price_octave
from salepulse.streams.domain.presale_outcome import DEFAULT_PRIOR_STRENGTH, size_bucket


@dataclass(slots=True)
class _Ratio:
    n: float = 0.0
    actual: float = 0.0
    expert: float = 0.0
    expert_sq: float = 0.0
    sales: int = 0
    last_sale: str | None = None

    def add(self, expert: float, actual: float, sale_id: str) -> None:
        self.n += 1
        self.actual += actual
        self.expert += expert
        self.expert_sq += expert * expert
        if sale_id != self.last_sale:
            self.sales += 1
            self.last_sale = sale_id

    @property
    def effective(self) -> float:
        """How many forecasts the ratio is worth: ``(sum f)^2 / sum f^2`` (Kish).

        ``sum(actual) / sum(expert)`` weighs each forecast by its units, and forecast errors are multiplicative,
        so its variance is ``sigma^2 sum f^2 / (sum f)^2``: one 1,000-unit forecast among forty of 5 units is a
        record of about one forecast, not forty, and must be shrunk like one.
        """
        return self.expert * self.expert / self.expert_sq if self.expert_sq > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Correction:
    """The factor applied to an expert number, and the group whose record it mostly comes from."""

    factor: float
    level: str
    """all | size | department | category | category_size | category_size_band | buyer | buyer_department |
    buyer_category | buyer_category_size"""
    key: tuple[Any, ...]
    forecasts: int
    sales: int


def department(category: str | None) -> str | None:
    """The department a category path belongs to (its first part), or None for a category without a parent.

    A buyer's habits are often a department's (a shoe buyer is bold on all shoes), and a department pools the
    record of its categories, so a category with few forecasts is read like its department before the shop.

    >>> department("shoes.sneakers"), department("shoes"), department(None)
    ('shoes', None, None)
    """
    if not category or "." not in category:
        return None
    return category.split(".", 1)[0]


def poisson_deviance(actual: float, mean: float) -> float:
    """The Poisson deviance of a mean forecast: the count likelihood's loss, a proper score of the mean.

    >>> poisson_deviance(10.0, 10.0), round(poisson_deviance(0.0, 2.0), 3), round(poisson_deviance(20.0, 10.0), 3)
    (0.0, 4.0, 7.726)
    """
    actual, mean = max(actual, 0.0), max(mean, 1e-9)
    return 2.0 * ((actual * math.log(actual / mean) if actual > 0 else 0.0) - (actual - mean))


STRENGTHS: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
"""Prior strengths the model weighs against each other on its own record (a doubling grid around the default)."""
SEPARATE_BUYER_STRENGTH = True
"""Learn the buyer chain's prior strength apart from the pooled chain's (buyers differ by tens of percent, price
bands and sizes of a category by a few)."""
MIN_SCORED = 200
"""Finished forecasts scored before the learned strength replaces the configured one."""


class CorrectionModel:
    """Hierarchical ratio correction of expert numbers (see the module docstring).

    **The prior strength is learned.** How far a group's ratio is pulled toward its parent's depends on how much
    groups really differ against how noisy their records are, which no constant knows. Before each finished
    forecast is learned, the model scores the factor every strength in ``strengths`` would have given it (the
    Poisson deviance of ``expert x factor`` against the demand, prequentially: no forecast is scored by a model
    that has seen it) and, once ``min_scored`` forecasts are scored, reads with the strength of the lowest total.
    ``prior_strength`` is the strength used before that (and always, with ``strengths=()``). The buyer chain's
    strength (``buyer_prior_strength``) is learned apart, over every pair of strengths: buyers differ by tens of
    percent, a category's sizes and price bands by a few, and one strength for both shrank buyers' records too hard
    (issue 15: the buyers read within 5 points of their habit went from 16 to 17 of 24, mean miss 0.044 -> 0.034).

    >>> m = CorrectionModel(prior_strength=20.0, strengths=(1.0, 1000.0), min_scored=10)
    >>> for i in range(60):  # every group is on target except bob's, who is 50% high: the groups differ
    ...     buyer = "bob" if i % 2 else "ann"
    ...     m.observe(30.0, 20.0 if buyer == "bob" else 30.0, f"s{i}", buyer, "shoes.boots", 50.0)
    >>> m.prior_strength, round(1 / m.correction(30.0, "bob", "shoes.boots", 50.0).factor - 1, 2)
    (1.0, 0.5)
    """

    POOLED = ("all", "size", "department", "category", "category_size", "category_size_band")
    BUYER = ("buyer", "buyer_department", "buyer_category", "buyer_category_size")

    def __init__(self, prior_strength: float = DEFAULT_PRIOR_STRENGTH, max_factor: float = 20.0,
                 strengths: tuple[float, ...] = STRENGTHS, min_scored: int = MIN_SCORED,
                 buyer_strength: bool = SEPARATE_BUYER_STRENGTH) -> None:
        self.prior_strength = prior_strength
        self.buyer_prior_strength = prior_strength
        self.configured_strength = prior_strength
        self.max_factor = max_factor
        self.strengths = tuple(strengths)
        self.min_scored = min_scored
        self.separate_buyer_strength = buyer_strength
        # deviance of every (pooled strength, buyer strength) pair; only the diagonal when they are one strength
        self.strength_scores = [[0.0] * len(self.strengths) for _ in self.strengths]
        self.scored = 0
        self._stats: dict[tuple[Any, ...], _Ratio] = {}

    @staticmethod
    def keys(expert: float, buyer_id: str | None, category: str | None,
             price: float | None) -> list[tuple[str, tuple[Any, ...]]]:
        s, b, dept = size_bucket(expert), price_octave(price), department(category)
        keys: list[tuple[str, tuple[Any, ...]]] = [("all", ()), ("size", (s,))]
        if dept is not None:
            keys.append(("department", (dept,)))
        if category is not None:
            keys += [("category", (category,)), ("category_size", (category, s))]
            if b is not None:
                keys.append(("category_size_band", (category, s, b)))
        elif b is not None:
            keys.append(("category_size_band", (None, s, b)))
        if buyer_id:
            keys.append(("buyer", (buyer_id,)))
            if dept is not None:
                keys.append(("buyer_department", (buyer_id, dept)))
            keys += [("buyer_category", (buyer_id, category)), ("buyer_category_size", (buyer_id, category, s))]
        return keys

    def _evidence(self, expert: float, buyer_id: str | None, category: str | None,
                  price: float | None) -> tuple[list[tuple[float, float, str, tuple[Any, ...], _Ratio]], ...]:
        """The groups with a record behind this forecast, general to specific, as ``(effective n, ratio, level,
        key, stats)``: the pooled chain's ratios, then the buyer chain's ratios relative to the pool's."""
        pooled, buyer = [], []
        for level, key in self.keys(expert, buyer_id, category, price):
            st = self._stats.get((level, *key))
            if st is None or st.n == 0 or st.expert <= 0:
                continue
            if level in self.BUYER:
                ref = self._stats.get(self._comparable(level, key))
                if ref is None or ref.expert <= 0 or ref.actual <= 0:
                    continue
                buyer.append((st.effective, (st.actual / st.expert) / (ref.actual / ref.expert), level, key, st))
            else:
                pooled.append((st.effective, st.actual / st.expert, level, key, st))
        return pooled, buyer

    @staticmethod
    def _shrink(chain: list[tuple[float, float, str, tuple[Any, ...], _Ratio]], k: float) -> float:
        value = 1.0
        for n, ratio, *_ in chain:
            value = (n * ratio + k * value) / (n + k)
        return value

    @staticmethod
    def _comparable(level: str, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """The pooled group a buyer's group is compared with (same granularity, everyone's forecasts)."""
        if level == "buyer":
            return ("all",)
        if level == "buyer_department":
            return ("department", key[1])
        if level == "buyer_category":
            return ("category", key[1]) if key[1] is not None else ("all",)
        return ("category_size", key[1], key[2]) if key[1] is not None else ("size", key[2])

    def observe(self, expert: float, actual: float, sale_id: str, buyer_id: str | None = None,
                category: str | None = None, price: float | None = None) -> None:
        """Learn one finished forecast (expert number, demand) into every group it belongs to, after scoring
        what each candidate strength would have read it as."""
        keys = self.keys(expert, buyer_id, category, price)
        if self.strengths and expert > 0:
            pooled, buyer = self._evidence(expert, buyer_id, category, price)
            lo, hi = 1.0 / self.max_factor, self.max_factor
            pools = [self._shrink(pooled, k) for k in self.strengths]
            adjusts = [self._shrink(buyer, k) for k in self.strengths]
            for i in range(len(self.strengths)):
                for j in (range(len(self.strengths)) if self.separate_buyer_strength else (i,)):
                    factor = min(max(pools[i] * adjusts[j], lo), hi)
                    self.strength_scores[i][j] += poisson_deviance(actual, expert * factor)
            self.scored += 1
            if self.scored >= self.min_scored:
                pairs = [(i, j) for i in range(len(self.strengths))
                         for j in (range(len(self.strengths)) if self.separate_buyer_strength else (i,))]
                i, j = min(pairs, key=lambda p: self.strength_scores[p[0]][p[1]])
                self.prior_strength, self.buyer_prior_strength = self.strengths[i], self.strengths[j]
        for level, key in keys:
            self._stats.setdefault((level, *key), _Ratio()).add(expert, actual, sale_id)

    def correction(self, expert: float, buyer_id: str | None = None, category: str | None = None,
                   price: float | None = None, strength: float | None = None) -> Correction:
        """The shrunk factor for this forecast, and the most specific group with a record behind it.

        Pooled groups give the factor for everyone's forecasts of this kind; a buyer's groups multiply it by how
        their record compares with everyone's at the same granularity (their ratio over the pool's), shrunk to 1.
        ``strength``: read with this prior strength instead of the current one.
        """
        k = self.prior_strength if strength is None else strength
        kb = self.buyer_prior_strength if strength is None else strength
        pooled, buyer = self._evidence(expert, buyer_id, category, price)
        factor, adjust = self._shrink(pooled, k), self._shrink(buyer, kb)
        factor = min(max(factor * adjust, 1.0 / self.max_factor), self.max_factor)
        specific = (buyer or pooled or [None])[-1]  # the most specific group with a record behind it
        if specific is None:
            return Correction(factor, "all", (), 0, 0)
        _, _, level, key, st = specific
        return Correction(factor, level, key, int(st.n), st.sales)

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
