"""The catalogue every worker needs whole: sales with their products, expert forecasts and stock levels.

They are small (a few hundred sales a day) and read by every agent and view, whatever partition of events a worker
owns, so each worker keeps all of it, fed from the three compacted topics by
:class:`salepulse.streams.io.followers.CatalogFollower`. :class:`Catalog` itself is pure state.

>>> catalog = Catalog()
>>> catalog.apply("Sale", {"sale_id": "s1", "brand": "nike", "starts_at": 0, "ends_at": 3_600_000,
...                        "products": [{"sku": "k1", "name": "Air", "category": "shoes", "price": 50.0,
...                                      "stock": 10}]})
>>> catalog.is_open("s1", 1_000), catalog.is_open("s1", 3_600_000)
(True, False)
>>> catalog.apply("StockLevel", {"sku": "k1", "on_hand": 0, "inbound": 0, "inbound_eta": None,
...                              "lead_time_hours": 24.0})
>>> catalog.in_stock("k1")
False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from salepulse.streams.domain.poison import catalog_problem
from salepulse.streams.domain.velocity import to_ms
from salepulse.streams.platform.clock import elapsed_fraction
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Product:
    sku: str
    sale_id: str
    name: str
    category: str
    price: float
    allocated: int


@dataclass(frozen=True)
class Sale:
    sale_id: str
    brand: str
    starts_ms: int
    ends_ms: int
    skus: tuple[str, ...]

    def is_open(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms

    def elapsed_fraction(self, now_ms: int) -> float:
        return elapsed_fraction(now_ms, self.starts_ms, self.ends_ms)


@dataclass(frozen=True)
class Stock:
    sku: str
    on_hand: int
    inbound: int
    inbound_eta_ms: int | None
    lead_time_hours: float


@dataclass
class Catalog:
    """Latest sale, product, expert forecast and stock per key; ``version`` grows with every change."""

    sales: dict[str, Sale] = field(default_factory=dict)
    products: dict[tuple[str, str], Product] = field(default_factory=dict)
    product_sale: dict[str, str] = field(default_factory=dict)
    priors: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    stock: dict[str, Stock] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """(sale_id, sku) -> ForecastOutcome of a finished sale: what the pre-sale desk learns from."""
    version: int = 0
    rejected: int = 0
    """Records skipped because live state could not use them
    (see :func:`~salepulse.streams.domain.poison.catalog_problem`)."""

    def apply(self, record_name: str, record: Mapping[str, Any]) -> str | None:
        """Adopt one compacted record; returns why it was skipped, or None when it was applied.

        >>> Catalog().apply("ExpertForecast", {"sale_id": "s1", "sku": "k1", "expected_units": float("inf")})
        'expected_units: not a finite number (inf)'
        """
        problem = catalog_problem(record_name, record)
        if problem:
            self.rejected += 1
            return problem
        if record_name == "Sale":
            sale_id = record["sale_id"]
            skus = []
            for p in record["products"]:
                self.products[(sale_id, p["sku"])] = Product(
                    p["sku"], sale_id, p.get("name", ""), p["category"], p["price"], p["stock"]
                )
                self.product_sale[p["sku"]] = sale_id
                skus.append(p["sku"])
            self.sales[sale_id] = Sale(sale_id, record["brand"], to_ms(record["starts_at"]),
                                       to_ms(record["ends_at"]), tuple(skus))
        elif record_name == "ExpertForecast":
            self.priors[(record["sale_id"], record["sku"])] = dict(record)
        elif record_name == "ForecastOutcome":
            self.outcomes[(record["sale_id"], record["sku"])] = dict(record)
            return  # the live forecasts do not depend on it: no need to invalidate their caches
        elif record_name == "StockLevel":
            eta = record.get("inbound_eta")
            self.stock[record["sku"]] = Stock(record["sku"], record["on_hand"], record.get("inbound", 0),
                                              None if eta is None else to_ms(eta),
                                              record.get("lead_time_hours", 24.0))
        else:
            return None
        self.version += 1
        return None

    def is_open(self, sale_id: str, now_ms: int) -> bool:
        sale = self.sales.get(sale_id)
        return sale is not None and sale.is_open(now_ms)

    def all_sales(self) -> list[Sale]:
        """A snapshot of every sale. The follower thread adds sales while the event loop reads them; copying the
        values in one C-level call (under the GIL) avoids "dictionary changed size during iteration"."""
        return list(self.sales.values())

    def open_sales(self, now_ms: int) -> list[Sale]:
        return [sale for sale in self.all_sales() if sale.is_open(now_ms)]

    def on_hand(self, sale_id: str, sku: str) -> int | None:
        """Units in stock for the sku: the warehouse reading if any, else the sale's allocation."""
        if sku in self.stock:
            return self.stock[sku].on_hand
        product = self.products.get((sale_id, sku))
        return product.allocated if product else None

    def in_stock(self, sku: str, sale_id: str | None = None, sold: int = 0) -> bool:
        sale_id = sale_id or self.product_sale.get(sku, "")
        on_hand = self.on_hand(sale_id, sku)
        return on_hand is None or on_hand - sold > 0
