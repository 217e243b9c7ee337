"""What a replay sends, before any Kafka: :class:`ReplayPlan` (the catalogue up front, the events as a
re-iterable stream), the catalogue built during a reader's first pass, and the helpers the three readers of
:mod:`salepulse.consumers.tools.replay_readers` share (order lines, stable ids, the skip reasons replay adds).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salepulse.consumers.data.csvio import (
    SECOND_MS,
    open_csv,
    require_file,
)
from salepulse.consumers.data.datasets import DATASETS, REPLAYABLE
from salepulse.schemas.validation import problems
from salepulse.streams.platform.topology import EVENT_RECORDS

Record = dict[str, Any]
Event = tuple[str, Record]

UNKNOWN_STOCK = 1_000_000
"""On-hand units given to every product: none of the sources records stock, so stock is 'effectively
unlimited' and replenishment alerts stay quiet unless real stock levels are loaded on top (stock.levels is
compacted by sku)."""
CHANNEL = "replay"
DAY_MS = 86_400_000

# Skip reasons (keys of ReplayPlan.skipped / ReplayReport.skipped).
# A row is counted once, under the first reason that applies; the shared ones live in salepulse.consumers.data.
INVALID_RECORD = "invalid_record"  # safety net: a mapped record that salepulse.schemas.validation rejects
DUPLICATE_PURCHASE = "duplicate_purchase_row"  # rees46: exact repeat of a purchase row inside one order
FAV_SKIPPED = "fav_skipped"  # taobao with fav="skip"


# ------------------------------------------------------------------------------------------------------------
# Plan and catalogue


@dataclass
class ReplayPlan:
    """A dataset mapped onto the contracts: the catalogue up front, the events as a re-iterable stream.

    ``rows`` is the number of data rows; ``skipped`` counts, over the whole file, the rows that yield no event
    and are not part of an order, by reason (see the module constants). ``event_count`` is the number of
    events :meth:`events` yields for the whole file (for progress bars).
    """

    dataset: str
    path: Path
    sales: list[Record]
    stock: list[Record]
    rows: int
    event_count: int
    skipped: Counter[str]
    _stream: Callable[[Counter[str]], Iterator[Event]] = field(repr=False)

    def catalogue(self) -> Iterator[Event]:
        """``("sale", Sale)`` then ``("stock", StockLevel)`` records: what must exist before any event."""
        yield from (("sale", sale) for sale in self.sales)
        yield from (("stock", level) for level in self.stock)

    def events(self, skipped: Counter[str] | None = None) -> Iterator[Event]:
        """The events in the file's order, re-reading the file on each call.

        ``skipped`` (if given) is incremented as rows are passed over, so a replay cut short by ``limit``
        reports the skips of the part it actually read. Each record is checked with
        :func:`salepulse.schemas.validation.problems`; one that fails is counted as ``invalid_record`` instead of being
        yielded (never seen on the shipped files).
        """
        counter: Counter[str] = Counter() if skipped is None else skipped
        for kind, record in self._stream(counter):
            if problems(EVENT_RECORDS[kind], record):
                counter[INVALID_RECORD] += 1
                continue
            yield kind, record


@dataclass
class _SaleDraft:
    brand: str
    first_ms: int
    last_ms: int
    window: tuple[int, int] | None
    products: dict[str, Record]


class _Catalogue:
    """Collects sales and their products during the first pass; products keep their first-seen price ('opening
    price' of the sale) and the first non-empty name, in order of first appearance, so output is
    deterministic."""

    def __init__(self) -> None:
        self.sales: dict[str, _SaleDraft] = {}

    def add(
        self,
        sale_id: str,
        brand: str,
        sku: str,
        ts_ms: int,
        *,
        price: float,
        category: str,
        name: str = "",
        window: tuple[int, int] | None = None,
    ) -> None:
        sale = self.sales.get(sale_id)
        if sale is None:
            sale = self.sales[sale_id] = _SaleDraft(brand, ts_ms, ts_ms, window, {})
        else:
            sale.first_ms = min(sale.first_ms, ts_ms)
            sale.last_ms = max(sale.last_ms, ts_ms)
        product = sale.products.get(sku)
        if product is None:
            sale.products[sku] = {
                "sku": sku,
                "name": name,
                "category": category,
                "price": price,
                "stock": UNKNOWN_STOCK,
            }
        elif name and not product["name"]:
            product["name"] = name

    def cover(self, sale_id: str, ts_ms: int) -> None:
        """Stretch a sale's window to ``ts_ms``: an order is stamped with its last row's time, which may be
        later than the last event of a brand bought earlier in the same basket."""
        sale = self.sales[sale_id]
        sale.last_ms = max(sale.last_ms, ts_ms)

    def records(self, dataset: str) -> tuple[list[Record], list[Record]]:
        """Sale and StockLevel records.

        Without an explicit window a sale runs [first event, last event + 1 s): timestamps are whole seconds,
        so the extra second keeps the last event inside and a one-event sale non-empty.
        """
        if not self.sales:
            return [], []
        windows = {
            sale_id: draft.window or (draft.first_ms, draft.last_ms + SECOND_MS)
            for sale_id, draft in self.sales.items()
        }
        # the catalogue is written before any sale opens, so every record carries the earliest start
        written_at = min(start for start, _ in windows.values())
        sales: list[Record] = []
        stock: dict[str, Record] = {}
        for sale_id, draft in self.sales.items():
            starts_at, ends_at = windows[sale_id]
            sales.append(
                {
                    "event_id": f"{sale_id}@{written_at}",
                    "sale_id": sale_id,
                    "brand": draft.brand,
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "products": list(draft.products.values()),
                    "updated_at": written_at,
                }
            )
            for sku in draft.products:
                stock.setdefault(
                    sku,
                    {
                        "event_id": f"{dataset}-stock-{sku}@{written_at}",
                        "sku": sku,
                        "on_hand": UNKNOWN_STOCK,
                        "inbound": 0,
                        "inbound_eta": None,
                        "lead_time_hours": 24.0,
                        "updated_at": written_at,
                    },
                )
        return sales, list(stock.values())


# ------------------------------------------------------------------------------------------------------------
# Shared helpers


_EXPECTED_FILES = ", ".join(DATASETS[name].relative_path for name in REPLAYABLE)


def _require_file(path: Path) -> None:
    require_file(path, _EXPECTED_FILES)


def _open_csv(path: Path) -> Iterator[list[str]]:
    return open_csv(path, _EXPECTED_FILES)


def _row_hash(*parts: str) -> str:
    """A short stable digest of the given fields: identical input -> identical id, on any machine, in any
    run."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


def _lines(items: dict[tuple[str, str], list[float]]) -> list[Record]:
    """Order lines from ``(sale_id, sku) -> [units, revenue]``; the unit price is revenue / units, so merging
    lines of one sku keeps the revenue (and a single line keeps its price, up to the 6-decimal rounding)."""
    return [
        {"sale_id": sale_id, "sku": sku, "quantity": int(units), "unit_price": round(revenue / units, 6)}
        for (sale_id, sku), (units, revenue) in items.items()
    ]


def _add_line(
    items: dict[tuple[str, str], list[float]], sale_id: str, sku: str, units: int, price: float
) -> None:
    acc = items.setdefault((sale_id, sku), [0, 0.0])
    acc[0] += units
    acc[1] += units * price
