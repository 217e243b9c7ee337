"""The catalogue every worker needs whole: sales with their products, expert forecasts and stock levels.

They are small (a few hundred sales a day) and read by every agent and view, whatever partition of events a worker
owns, so each worker keeps all of it, fed from the three compacted topics by :class:`CatalogFollower` (a
confluent-kafka consumer assigned to every partition, reading from the beginning, with no consumer group).
:class:`Catalog` itself is pure state.

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

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from salepulse.streams.logs import get_logger
from salepulse.streams.poison import bounded_reason, catalog_problem
from salepulse.streams.velocity import to_ms

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
        return min(1.0, max(0.0, (now_ms - self.starts_ms) / max(1, self.ends_ms - self.starts_ms)))


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
    """Records skipped because live state could not use them (see :func:`~salepulse.streams.poison.catalog_problem`)."""

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


class CatalogFollower:
    """Keeps a :class:`Catalog` current from the compacted topics, in a daemon thread.

    ``ready`` is set once everything that existed at start-up has been read, so views never answer from a
    half-loaded catalogue.
    """

    def __init__(self, kafka_config: Mapping[str, Any], topics: list[str], decode: Callable[[bytes], Any],
                 catalog: Catalog | None = None) -> None:
        self.kafka_config = dict(kafka_config)
        self.topics = topics
        self.decode = decode
        self.catalog = catalog or Catalog()
        self.ready = threading.Event()
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="catalog-follower", daemon=True)

    def start(self) -> CatalogFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({**self.kafka_config, "group.id": "salepulse-catalog-unused",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        metadata = consumer.list_topics(timeout=30)
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in self.topics
                      for p in metadata.topics[topic].partitions]
        ends = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[(tp.topic, tp.partition)] = high
        pending = {key for key, high in ends.items() if high > 0}
        consumer.assign(partitions)
        if not pending:
            self.ready.set()
        try:
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    key = (message.topic(), message.partition())
                    if message.error():
                        pending.discard(key)  # end of partition
                        continue
                    if message.offset() + 1 >= ends.get(key, 0):
                        pending.discard(key)
                    if message.value() is None:
                        continue
                    try:
                        name, record = self.decode(message.value())
                        with self._lock:
                            problem = self.catalog.apply(name, record)
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the whole catalogue
                        problem = f"{type(exc).__name__}: {exc}"
                    if problem:
                        self.errors += 1
                        log.warning("catalogue record skipped", topic=message.topic(),
                                    partition=message.partition(), offset=message.offset(),
                                    reason=bounded_reason(problem))
                if not pending and not self.ready.is_set():
                    self.ready.set()
        finally:
            consumer.close()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.ready.is_set():
            self.ready.wait(0.1)
        return self.ready.is_set()
