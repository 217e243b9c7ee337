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

    def without(self, other: _Ratio | None) -> _Ratio:
        """This group's record with ``other`` (a subset of it: one buyer's forecasts in the group) taken out.

        >>> pool, own = _Ratio(), _Ratio()
        >>> for f, a, who in ((10.0, 5.0, "bob"), (20.0, 20.0, "ann"), (30.0, 30.0, "ann")):
        ...     pool.add(f, a, "s")
        ...     if who == "bob":
        ...         own.add(f, a, "s")
        >>> rest = pool.without(own)
        >>> rest.n, rest.actual / rest.expert
        (2.0, 1.0)
        """
        if other is None:
            return self
        return _Ratio(self.n - other.n, self.actual - other.actual, self.expert - other.expert,
                      max(self.expert_sq - other.expert_sq, 0.0), max(self.sales - other.sales, 0), self.last_sale)

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
LEAVE_OUT_BUYER = True
"""Read a known buyer's forecast through the pool of everyone *else's* forecasts (leave-one-out), and the buyer's
own record relative to that. With the buyer in the pool, their habit leaks into the pooled groups they dominate
(a category most of whose forecasts are theirs): there their relative ratio reads ~1 and the pooled chain's
shrinkage toward coarser groups erases the habit, and a colleague on target in that category is read as the
opposite of them (``test_a_buyer_who_makes_most_of_a_category_is_read_against_everyone_else``)."""
SHRUNK_REFERENCE = True
"""Compare a buyer's group with what the pooled chain *reads* at the same granularity (its shrunk value), not with
the pooled group's raw ratio: the buyer's factor multiplies that reading, so with a long record it is exactly
their own ratio, whatever the pool's shrinkage."""
MIN_SCORED = 200
"""Finished forecasts scored before the learned strength replaces the configured one."""


class CorrectionModel:
    """Hierarchical ratio correction of expert numbers (see the module docstring).

    **The prior strength is learned.** How far a group's ratio is pulled toward its parent's depends on how much
    groups really differ against how noisy their records are, which no constant knows. Before each finished
    forecast is learned, the model scores the factor every strength in ``strengths`` would have given it (the
    Poisson deviance of ``expert x factor`` against the demand, prequentially: no forecast is scored by a model
    that has seen it) and, once ``min_scored`` forecasts are scored, reads with the strength of the lowest total.
    ``prior_strength`` is the strength used before that (and always, with ``strengths=()``). Each level of the buyer
    chain learns its own strength (``buyer_strengths``; ``buyer_prior_strength`` is the buyer level's), scored with
    the other levels as they read then: buyers differ by tens of percent, a buyer's categories within a department
    by little, and one strength for the whole chain shrank the buyer level too hard or the finer ones too little.

    **A buyer is read against everyone else.** The pooled chain of a known buyer's forecast leaves their own
    forecasts out (:data:`LEAVE_OUT_BUYER`), and each of their groups is compared with what that pooled chain reads
    at the same granularity (:data:`SHRUNK_REFERENCE`), so the factor is ``pooled reading x (their ratio / the
    pool's reading)``: with a long record, their own ratio.

    >>> m = CorrectionModel(prior_strength=20.0, strengths=(1.0, 1000.0), min_scored=10)
    >>> for i in range(60):  # ann is on target, bob 50% high: the buyers differ
    ...     buyer = "bob" if i % 2 else "ann"
    ...     m.observe(30.0, 20.0 if buyer == "bob" else 30.0, f"s{i}", buyer, "shoes.boots", 50.0)
    >>> m.prior_strength, m.buyer_prior_strength  # each is read against the other's forecasts: the pool is alike
    (1000.0, 1.0)
    >>> round(1 / m.correction(30.0, "bob", "shoes.boots", 50.0).factor - 1, 2)
    0.5
    """

    POOLED = ("all", "size", "department", "category", "category_size", "category_size_band")
    BUYER = ("buyer", "buyer_department", "buyer_category", "buyer_category_size")

    def __init__(self, prior_strength: float = DEFAULT_PRIOR_STRENGTH, max_factor: float = 20.0,
                 strengths: tuple[float, ...] = STRENGTHS, min_scored: int = MIN_SCORED,
                 buyer_strength: bool = SEPARATE_BUYER_STRENGTH, leave_out_buyer: bool = LEAVE_OUT_BUYER,
                 shrunk_reference: bool = SHRUNK_REFERENCE) -> None:
        self.prior_strength = prior_strength
        self.configured_strength = prior_strength
        self.max_factor = max_factor
        self.strengths = tuple(strengths)
        self.min_scored = min_scored
        self.separate_buyer_strength = buyer_strength
        self.leave_out_buyer = leave_out_buyer
        self.shrunk_reference = shrunk_reference
        self.buyer_strengths = dict.fromkeys(self.BUYER, prior_strength)
        """The strength of each level of the buyer chain (learned apart once ``min_scored`` forecasts had one)."""
        # prequential deviance of each candidate strength: the pooled chain's (the buyer chain read as it is now),
        # and each buyer level's (every other level as it is now: coordinate-wise, 6 x 4 reads, not 6 ** 4)
        self.strength_scores = [0.0] * len(self.strengths)
        self.level_scores = {level: [0.0] * len(self.strengths) for level in self.BUYER}
        self.level_scored = dict.fromkeys(self.BUYER, 0)
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
        key, stats)``: the pooled chain's ratios (without the buyer's own forecasts), then the buyer chain's ratios
        relative to what the pooled chain reads at the same granularity."""
        pooled, buyer = [], []
        loo = self.leave_out_buyer and bool(buyer_id)
        keys = self.keys(expert, buyer_id, category, price)
        for level, key in keys:
            if level in self.BUYER:
                continue
            st = self._stats.get((level, *key))
            if st is not None and loo:
                st = st.without(self._stats.get(("own", buyer_id, level, *key)))
            if st is None or st.n < 0.5 or st.expert <= 1e-9:  # no record (but this buyer's, when left out)
                continue
            pooled.append((st.effective, st.actual / st.expert, level, key, st))
        # what the pooled chain reads at each of its levels, the reference a buyer's group is compared with; a level
        # without a record (none but this buyer's: a lone buyer, a category only they forecast) reads as the one
        # before it, and an empty pool as 1, the chain's start
        reads, value, present = {}, 1.0, {level: (n, ratio) for n, ratio, level, *_ in pooled}
        for level in self.POOLED:
            if level in present:
                n, ratio = present[level]
                value = (n * ratio + self.prior_strength * value) / (n + self.prior_strength)
            reads[level] = value
        for level, key in keys:
            st = self._stats.get((level, *key))
            if level not in self.BUYER or st is None or st.n == 0 or st.expert <= 0:
                continue
            if self.shrunk_reference:
                ref_read = reads[self._comparable(level, key)[0]]
            else:
                ref = self._pool(self._comparable(level, key), buyer_id if loo else None)
                ref_read = ref.actual / ref.expert if ref is not None and ref.expert > 0 else None
            if not ref_read or ref_read <= 0:
                continue
            buyer.append((st.effective, (st.actual / st.expert) / ref_read, level, key, st))
        return pooled, buyer

    def _pool(self, key: tuple[Any, ...], buyer_id: str | None) -> _Ratio | None:
        """A pooled group's record, without ``buyer_id``'s own forecasts when given."""
        st = self._stats.get(key)
        if st is None or buyer_id is None:
            return st
        return st.without(self._stats.get(("own", buyer_id, *key)))

    @property
    def buyer_prior_strength(self) -> float:
        """The strength of the buyer level itself (their record against everyone else's)."""
        return self.buyer_strengths["buyer"]

    @staticmethod
    def _shrink(chain: list[tuple[float, float, str, tuple[Any, ...], _Ratio]],
                k: float | dict[str, float]) -> float:
        """Each level's ratio pulled toward the value of the levels before it (from 1) with ``k`` pseudo-forecasts
        (one strength, or one per level)."""
        value = 1.0
        for n, ratio, level, *_ in chain:
            kk = k if isinstance(k, float | int) else k[level]
            value = (n * ratio + kk * value) / (n + kk)
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
            self._score(expert, actual, *self._evidence(expert, buyer_id, category, price))
        for level, key in keys:
            self._stats.setdefault((level, *key), _Ratio()).add(expert, actual, sale_id)
            if buyer_id and level in self.POOLED:  # the buyer's share of each pooled group, to leave it out
                self._stats.setdefault(("own", buyer_id, level, *key), _Ratio()).add(expert, actual, sale_id)

    def _score(self, expert: float, actual: float, pooled: list[Any], buyer: list[Any]) -> None:
        """Add what every candidate strength would have read this forecast as to its total, and read with the
        best ones once ``min_scored`` forecasts are scored."""
        lo, hi = 1.0 / self.max_factor, self.max_factor

        def deviance(pool: float, adjust: float) -> float:
            return poisson_deviance(actual, expert * min(max(pool * adjust, lo), hi))

        ks = self.strengths
        if not self.separate_buyer_strength:  # one strength for both chains
            for i, k in enumerate(ks):
                self.strength_scores[i] += deviance(self._shrink(pooled, k), self._shrink(buyer, k))
        else:
            adjust_now = self._shrink(buyer, self.buyer_strengths)
            for i, k in enumerate(ks):
                self.strength_scores[i] += deviance(self._shrink(pooled, k), adjust_now)
            pool_now = self._shrink(pooled, self.prior_strength)
            for level in {lvl for _, _, lvl, *_ in buyer}:  # a level without a record reads the same at any k
                scores = self.level_scores[level]
                for j, k in enumerate(self.strengths):
                    scores[j] += deviance(pool_now, self._shrink(buyer, {**self.buyer_strengths, level: k}))
                self.level_scored[level] += 1
        self.scored += 1
        if self.scored >= self.min_scored:
            self.prior_strength = ks[min(range(len(ks)), key=self.strength_scores.__getitem__)]
            for level in self.BUYER:
                if not self.separate_buyer_strength:
                    self.buyer_strengths[level] = self.prior_strength
                elif self.level_scored[level] >= self.min_scored:
                    scores = self.level_scores[level]
                    self.buyer_strengths[level] = self.strengths[min(range(len(scores)), key=scores.__getitem__)]

    def correction(self, expert: float, buyer_id: str | None = None, category: str | None = None,
                   price: float | None = None, strength: float | None = None) -> Correction:
        """The shrunk factor for this forecast, and the most specific group with a record behind it.

        Pooled groups give the factor for everyone's forecasts of this kind; a buyer's groups multiply it by how
        their record compares with everyone's at the same granularity (their ratio over the pool's), shrunk to 1.
        ``strength``: read with this prior strength instead of the current one.
        """
        k = self.prior_strength if strength is None else strength
        kb: float | dict[str, float] = self.buyer_strengths if strength is None else strength
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
