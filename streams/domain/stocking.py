"""The stocking plan: how many units of each sku to position before a sale opens, and where.

Pure logic (no Kafka, no Faust). The newsvendor: a unit short costs ``understock_cost`` (a lost sale, an unhappy
member), a unit left over costs ``overstock_cost`` (return shipping, markdown). The expected cost is lowest at the
critical quantile ``q* = cu / (cu + co)`` of the pre-sale predictive distribution of demand; with the default
ratio 9 (a lost sale costs nine times a unit returned) that is the 90 % quantile, so about nine skus in ten are
fully served.

Per warehouse: the quantity is split by each region's expected share of the sale's demand (largest remainders, so
the parts add up to the whole).

>>> newsvendor_service_level(9.0)
0.9
>>> split_by_region(10, {"north": 0.57, "south": 0.3, "east": 0.13})
{'north': 6, 'south': 3, 'east': 1}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from salepulse.streams.domain.presale import PresaleForecast

__all__ = ["PlanLine", "RegionShares", "newsvendor_service_level", "plan_line", "plan_sale", "split_by_region"]


def newsvendor_service_level(cost_ratio: float) -> float:
    """Critical quantile for ``cost_ratio = understock cost / overstock cost`` (> 0)."""
    if cost_ratio <= 0:
        raise ValueError("the understock/overstock cost ratio must be > 0")
    return cost_ratio / (1.0 + cost_ratio)


def split_by_region(quantity: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Whole units per region in proportion to ``shares``; the parts add up to ``quantity``."""
    total = sum(max(s, 0.0) for s in shares.values())
    if quantity <= 0 or not shares or total <= 0:
        return {}
    raw = {r: quantity * max(s, 0.0) / total for r, s in shares.items()}
    out = {r: math.floor(v) for r, v in raw.items()}
    left = quantity - sum(out.values())
    for r in sorted(raw, key=lambda r: (-(raw[r] - out[r]), r))[:left]:
        out[r] += 1
    return out


class RegionShares:
    """Expected regional share of a product's units, learned from finished sales' units by region.

    Groups form a chain, each shrunk toward the one before it with ``prior_strength`` pseudo-units:
    ``shop -> category -> brand -> (brand, category)``, so a brand seen in a few hundred units is mostly read like
    the shop, and one with thousands by its own record. Shares are fractions of units (they sum to 1).

    >>> rs = RegionShares(prior_strength=0)
    >>> rs.observe({"north": 30, "south": 10}, brand="acme", category="shoes")
    >>> rs.shares(brand="acme", category="shoes")
    {'north': 0.75, 'south': 0.25}
    >>> rs.shares(brand="unknown brand") == rs.shares()
    True
    >>> RegionShares().shares()  # nothing learned: no split
    {}
    """

    def __init__(self, prior_strength: float = 200.0) -> None:
        self.prior_strength = prior_strength
        self._units: dict[tuple[Any, ...], dict[str, float]] = {}

    @staticmethod
    def keys(brand: str | None, category: str | None) -> list[tuple[Any, ...]]:
        return [("shop",), ("category", category), ("brand", brand), ("brand_category", brand, category)]

    def observe(self, units_by_region: Mapping[str, float], brand: str | None = None,
                category: str | None = None) -> None:
        """Learn one finished product's units by region."""
        if not any(u > 0 for u in units_by_region.values()):
            return
        for key in self.keys(brand, category):
            acc = self._units.setdefault(key, {})
            for region, units in units_by_region.items():
                acc[region] = acc.get(region, 0.0) + max(float(units), 0.0)

    def shares(self, brand: str | None = None, category: str | None = None) -> dict[str, float]:
        """Each region's expected share of a product of this brand and category ({} before any region is known)."""
        shop = self._units.get(("shop",), {})
        total = sum(shop.values())
        if total <= 0:
            return {}
        share = {r: u / total for r, u in sorted(shop.items())}
        k = self.prior_strength
        for key in self.keys(brand, category)[1:]:
            if any(part is None for part in key[1:]):
                continue
            own = self._units.get(key)
            n = sum(own.values()) if own else 0.0
            if own and n > 0:
                share = {r: (own.get(r, 0.0) + k * s) / (n + k) for r, s in share.items()}
        return share


@dataclass(frozen=True)
class PlanLine:
    """The quantity to position for one (sale, sku), and why."""

    sale_id: str
    sku: str
    quantity: int
    service_level: float
    p10: float
    p50: float
    p90: float
    expert: float | None
    correction: float
    source: str
    reason: str
    buyer_id: str | None = None
    warehouses: dict[str, int] = field(default_factory=dict)

    def record(self, planned_at_ms: int, version: int) -> dict[str, Any]:
        """The ``StockPlan`` Avro record (topic ``stock.plans``, key ``sale_id:sku``)."""
        return {
            "event_id": f"{self.sale_id}:{self.sku}:plan:{version}", "sale_id": self.sale_id, "sku": self.sku,
            "quantity": self.quantity, "service_level": self.service_level, "p10": self.p10, "p50": self.p50,
            "p90": self.p90, "expert": self.expert, "correction": self.correction, "source": self.source,
            "reason": self.reason, "buyer_id": self.buyer_id,
            "warehouses": [{"region": r, "quantity": q} for r, q in sorted(self.warehouses.items())],
            "version": version, "planned_at": planned_at_ms,
        }


def plan_line(forecast: PresaleForecast, service_level: float,
              region_shares: Mapping[str, float] | None = None) -> PlanLine:
    """The newsvendor quantity of one forecast: its ``service_level`` quantile, rounded up to whole units."""
    quantity = int(math.ceil(forecast.quantile(service_level) - 1e-9))
    return PlanLine(forecast.sale_id, forecast.sku, quantity, service_level, forecast.p10, forecast.p50,
                    forecast.p90, forecast.expert, forecast.correction, forecast.source, forecast.reason,
                    forecast.buyer_id, split_by_region(quantity, region_shares or {}))


def plan_sale(forecasts: Iterable[PresaleForecast], service_level: float,
              region_shares: Mapping[str, float] | Callable[[PresaleForecast], Mapping[str, float]] | None = None,
              ) -> list[PlanLine]:
    """Plan lines of every product of a sale; ``region_shares`` is one split for all, or one per forecast."""
    if callable(region_shares):
        return [plan_line(f, service_level, region_shares(f)) for f in forecasts]
    return [plan_line(f, service_level, region_shares) for f in forecasts]
