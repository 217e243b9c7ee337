"""Replay real public shop logs into salepulse's Kafka topics, mapped onto the Avro contracts.

Why: the simulator proves the pipeline runs on data we shaped; replaying real logs (REES46, Taobao, UCI Online
Retail) proves it copes with data nobody shaped for it - empty brands, duplicate rows, cancellations, postage
lines.

Two layers, so the mapping is tested without a broker:

1. **Pure mapping** - :func:`read_rees46`, :func:`read_taobao`, :func:`read_online_retail` return a
   :class:`ReplayPlan`: the catalogue (``Sale`` and ``StockLevel`` records derived from the data) and
   :meth:`ReplayPlan.events`, a generator of ``(kind, record)`` in the file's order (kind = browse / cart /
   order). The file is read twice: a first pass builds the catalogue and the few look-ups that need to see
   ahead (which purchase rows form one order, which row closes an invoice); the second pass streams the
   events, so the 431k-row retail file never sits in memory as records.
2. **Kafka** - :func:`run_replay` sends the catalogue, then the events, paced by event time.

Every id is derived from the data (no random, no clock), so replaying a file twice yields identical event ids
and the consumers' ``event_id`` de-duplication makes a second replay a no-op. The mapping rules are spelled
out in the docstrings of the three readers (and in the README section "Replaying real data").

>>> plan = read_taobao(Path("no/such/file.csv.gz"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
FileNotFoundError: replay data file no/such/file.csv.gz does not exist; ...SALEPULSE_DATA_DIR...
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from salepulse.consumers.data import RELATIVE_PATHS, online_retail, rees46, taobao
from salepulse.consumers.data.csvio import (  # noqa: F401  (re-exported: replay's skip reasons)
    CANCELLATION,
    MALFORMED,
    MISSING_ID,
    NEGATIVE_PRICE,
    NON_POSITIVE_QUANTITY,
    NON_PRODUCT,
    SECOND_MS,
    UNKNOWN_TYPE,
    ZERO_PRICE,
    columns,
    open_csv,
    require_file,
)
from salepulse.schemas.validation import problems
from salepulse.streams.config import Settings
from salepulse.streams.topology import EVENT_RECORDS

if TYPE_CHECKING:
    from salepulse.consumers.publish import Publisher

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


def _require_file(path: Path) -> None:
    require_file(path, ", ".join(RELATIVE_PATHS.values()))


def _open_csv(path: Path) -> Iterator[list[str]]:
    return open_csv(path, ", ".join(RELATIVE_PATHS.values()))


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


# ------------------------------------------------------------------------------------------------------------
# REES46


REES46_UNBRANDED = "unbranded"
REES46_TYPES = frozenset({"view", "cart", "purchase"})
"""What replay streams; ``remove_from_cart`` (absent from the shipped sample) is passed over as
``unknown_event_type`` until the contract's cart removals are wired for this dataset."""
_Rees46Row = rees46.Row


def _rees46_row(row: list[str], cols: Callable[[list[str]], tuple[str, ...]]) -> _Rees46Row | str:
    parsed = rees46.parse_row(row, cols, REES46_TYPES)
    if isinstance(parsed, str):
        return parsed
    return parsed._replace(brand=parsed.brand or REES46_UNBRANDED)


def read_rees46(path: Path) -> ReplayPlan:
    """Map the REES46 multi-category store log (``event_time,event_type,product_id,...``, header row).

    - A sale is a **brand**: ``rees46-<brand>`` (brand lower-cased); rows with an empty brand go to the
      catch-all sale ``rees46-unbranded``. Window = [first, last event of the brand + 1 s).
    - Products: sku = product_id, category = category_code, or ``cat-<category_id>`` when empty; price = the
      first price seen; stock = :data:`UNKNOWN_STOCK` (the log has no stock).
    - view -> BrowseEvent; cart -> CartEvent(add, quantity 1, unit_price = price); session_id = user_session.
    - purchase -> OrderEvent. An order = a run of purchase rows of one user_session not interrupted by another
      event of that session (rows at the same second are such a run). It is emitted at its LAST row, with that
      row's time (the moment the basket is complete), so the stream stays in time order. order_id = event_id =
      ``rees46-order-<hash(session, time of its first row)>``; lines of one product merge (one row = one
      unit); currency USD. An exact repeat of a purchase row inside one order is counted
      ``duplicate_purchase_row``.
    - view / cart event_id = ``rees46-<hash of the whole row>``: the 5 exact duplicate rows of the shipped
      file (a view x4, a view x2, a cart x2) therefore share their event_id, so consumers drop the repeats
      exactly as they would a redelivery. Two rows differing in any field get different ids.
    """
    rows = _open_csv(path)
    header = next(rows, None)
    if header is None:
        raise ValueError(f"{path} is empty; expected a header row {','.join(rees46.COLUMNS)}")
    cols = columns(header, rees46.COLUMNS, path)

    catalogue = _Catalogue()
    skipped: Counter[str] = Counter()
    orders_at: dict[int, Record] = {}  # index of an order's last purchase row -> the order
    duplicates: set[int] = set()  # purchase rows that exactly repeat an earlier row of the same order
    open_runs: dict[str, list[tuple[int, _Rees46Row, list[str]]]] = {}
    events = n_rows = 0

    def close(session_key: str, run: list[tuple[int, _Rees46Row, list[str]]]) -> None:
        items: dict[tuple[str, str], list[float]] = {}
        seen: set[tuple[str, ...]] = set()
        for index, parsed, raw in run:
            if tuple(raw) in seen:
                duplicates.add(index)
                skipped[DUPLICATE_PURCHASE] += 1
                continue
            seen.add(tuple(raw))
            _add_line(items, f"rees46-{parsed.brand}", parsed.sku, 1, parsed.price)
        first, last = run[0][1], run[-1][1]
        for sale_id, _ in items:
            catalogue.cover(sale_id, last.ts)
        order_id = f"rees46-order-{_row_hash(session_key, str(first.ts))}"
        orders_at[run[-1][0]] = {
            "event_id": order_id,
            "order_id": order_id,
            "member_id": last.member,
            "lines": _lines(items),
            "currency": "USD",
            "ts": last.ts,
            "channel": CHANNEL,
        }

    for index, raw in enumerate(rows):
        n_rows += 1
        parsed = _rees46_row(raw, cols)
        if isinstance(parsed, str):
            skipped[parsed] += 1
            continue
        catalogue.add(
            f"rees46-{parsed.brand}",
            parsed.brand,
            parsed.sku,
            parsed.ts,
            price=parsed.price,
            category=parsed.category,
        )
        session_key = parsed.session or f"user:{parsed.member}"
        if parsed.kind == "order":
            open_runs.setdefault(session_key, []).append((index, parsed, raw))
            continue
        events += 1
        run = open_runs.pop(session_key, None)
        if run:
            close(session_key, run)
    for session_key, run in open_runs.items():
        close(session_key, run)
    events += len(orders_at)

    def stream(skips: Counter[str]) -> Iterator[Event]:
        body = _open_csv(path)
        next(body, None)
        for index, raw in enumerate(body):
            parsed = _rees46_row(raw, cols)
            if isinstance(parsed, str):
                skips[parsed] += 1
                continue
            sale_id = f"rees46-{parsed.brand}"
            if parsed.kind == "browse":
                yield (
                    "browse",
                    {
                        "event_id": f"rees46-{_row_hash(*raw)}",
                        "member_id": parsed.member,
                        "sale_id": sale_id,
                        "sku": parsed.sku,
                        "ts": parsed.ts,
                        "channel": CHANNEL,
                        "session_id": parsed.session,
                    },
                )
            elif parsed.kind == "cart":
                yield (
                    "cart",
                    {
                        "event_id": f"rees46-{_row_hash(*raw)}",
                        "member_id": parsed.member,
                        "sale_id": sale_id,
                        "sku": parsed.sku,
                        "action": "add",
                        "quantity": 1,
                        "unit_price": parsed.price,
                        "ts": parsed.ts,
                        "channel": CHANNEL,
                        "session_id": parsed.session,
                    },
                )
            else:  # a purchase row: part of an order, emitted at the order's last row
                if index in duplicates:
                    skips[DUPLICATE_PURCHASE] += 1
                order = orders_at.get(index)
                if order is not None:
                    yield "order", order

    sales, stock = catalogue.records("rees46")
    return ReplayPlan("rees46", path, sales, stock, n_rows, events, skipped, stream)


# ------------------------------------------------------------------------------------------------------------
# Taobao


def _taobao_row(row: list[str], fav: str) -> taobao.Row | str:
    parsed = taobao.parse_row(row)
    if isinstance(parsed, str):
        return parsed
    if parsed.kind == "fav":
        return FAV_SKIPPED if fav == "skip" else parsed._replace(kind="browse")
    return parsed


def read_taobao(path: Path, *, fav: Literal["browse", "skip"] = "browse") -> ReplayPlan:
    """Map the Taobao UserBehavior click-stream (NO header; user_id,item_id,category_id,behavior_type,ts).

    - There is no brand and no price. A sale is a **category**: ``taobao-cat-<category_id>`` (brand field
      ``cat-<category_id>``), window [first, last event of the category + 1 s). Products: sku = item_id,
      category ``cat-<category_id>``, price 0.0 (unknown), stock :data:`UNKNOWN_STOCK`.
    - pv -> BrowseEvent; cart -> CartEvent(add, quantity 1, unit_price 0.0); buy -> OrderEvent of one line,
      quantity 1, unit_price 0.0, currency CNY (so revenue figures are 0 for this dataset; units are real).
    - fav -> BrowseEvent by default (a favourite is at least a look at the product, and dropping it would lose
      3 % of the interest signal); ``fav="skip"`` drops them, counted as ``fav_skipped``.
    - event_id (= order_id for buys) = ``taobao-<hash of the whole row>``: deterministic, and an exact
      duplicate row (none in the shipped slice) would share its id. No session id in the source.
    """
    _require_file(path)
    catalogue = _Catalogue()
    skipped: Counter[str] = Counter()
    events = n_rows = 0
    for raw in _open_csv(path):
        n_rows += 1
        parsed = _taobao_row(raw, fav)
        if isinstance(parsed, str):
            skipped[parsed] += 1
            continue
        events += 1
        sale_id = f"taobao-{parsed.category}"
        catalogue.add(
            sale_id,
            parsed.category,
            parsed.sku,
            parsed.ts,
            price=0.0,
            category=parsed.category,
        )

    def stream(skips: Counter[str]) -> Iterator[Event]:
        for raw in _open_csv(path):
            parsed = _taobao_row(raw, fav)
            if isinstance(parsed, str):
                skips[parsed] += 1
                continue
            event_id = f"taobao-{_row_hash(*raw)}"
            sale_id = f"taobao-{parsed.category}"
            if parsed.kind == "browse":
                yield (
                    "browse",
                    {
                        "event_id": event_id,
                        "member_id": parsed.member,
                        "sale_id": sale_id,
                        "sku": parsed.sku,
                        "ts": parsed.ts,
                        "channel": CHANNEL,
                        "session_id": None,
                    },
                )
            elif parsed.kind == "cart":
                yield (
                    "cart",
                    {
                        "event_id": event_id,
                        "member_id": parsed.member,
                        "sale_id": sale_id,
                        "sku": parsed.sku,
                        "action": "add",
                        "quantity": 1,
                        "unit_price": 0.0,
                        "ts": parsed.ts,
                        "channel": CHANNEL,
                        "session_id": None,
                    },
                )
            else:
                yield (
                    "order",
                    {
                        "event_id": event_id,
                        "order_id": event_id,
                        "member_id": parsed.member,
                        "lines": [{"sale_id": sale_id, "sku": parsed.sku, "quantity": 1, "unit_price": 0.0}],
                        "currency": "CNY",
                        "ts": parsed.ts,
                        "channel": CHANNEL,
                    },
                )

    sales, stock = catalogue.records("taobao")
    return ReplayPlan("taobao", path, sales, stock, n_rows, events, skipped, stream)


# ------------------------------------------------------------------------------------------------------------
# UCI Online Retail


RETAIL_BRAND = "uci-online-retail"
RETAIL_CATEGORY = "giftware"


@lru_cache(maxsize=4_096)
def _iso_week(day: str) -> tuple[str, tuple[int, int]]:
    """``YYYY-MM-DD`` -> (``retail-2011-W07``, [Monday 00:00, next Monday 00:00) in epoch ms)."""
    year, week, weekday = date.fromisoformat(day).isocalendar()
    monday = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(days=weekday - 1)
    start = int(monday.timestamp()) * SECOND_MS
    return f"retail-{year}-W{week:02d}", (start, start + 7 * DAY_MS)


class _RetailRow(NamedTuple):
    invoice: str
    sku: str
    name: str
    quantity: int
    ts: int
    price: float
    member: str
    sale_id: str
    week: tuple[int, int]


def _retail_row(row: list[str], cols: Callable[[list[str]], tuple[str, ...]]) -> _RetailRow | str:
    parsed = online_retail.parse_row(row, cols)
    if isinstance(parsed, str):
        return parsed
    sale_id, week = _iso_week(parsed.when[:10])
    member = parsed.member or f"guest-{parsed.invoice}"
    return _RetailRow(parsed.invoice, parsed.sku, parsed.name, parsed.quantity, parsed.ts, parsed.price, member,
                      sale_id, week)


def read_online_retail(path: Path) -> ReplayPlan:
    """Map UCI Online Retail invoices (``InvoiceNo,StockCode,...,CustomerID,Country``, header row).

    - Purchases only: every INVOICE becomes one OrderEvent, event_id = order_id = ``retail-<InvoiceNo>``,
      member_id = CustomerID as an integer string (``17850.0`` -> ``17850``), or ``guest-<InvoiceNo>`` when
      empty; currency GBP. The order is emitted at the invoice's last kept row, with that row's time (the file
      is in time order, and the one invoice split across the file still becomes a single order).
    - Lines: one per (sale, StockCode) - rows of the same sku in one invoice are MERGED (quantities added,
      unit price = quantity-weighted mean, so revenue is unchanged), because downstream facts are keyed by
      (event_id, sku).
    - A sale is an ISO week: ``retail-2011-W07``, [Monday 00:00, next Monday 00:00). InvoiceDate is UK local
      time and is treated as UTC (one hour off in summer; all invoices fall between 06:00 and 21:00, so no row
      changes day or week). Products of a week sale = the skus sold that week, name = Description (stripped),
      category ``giftware``, price = first price seen that week, stock :data:`UNKNOWN_STOCK`; brand
      ``uci-online-retail``.
    - Skipped and counted by THE shared rule of what a sold product line is
      (:mod:`salepulse.consumers.data.online_retail`): ``cancellation``, ``malformed_row``,
      ``non_positive_quantity``, ``negative_price``, ``zero_price``, ``non_product``, ``missing_id``.
      StockCodes are kept upper-cased.
    """
    rows = _open_csv(path)
    header = next(rows, None)
    if header is None:
        raise ValueError(f"{path} is empty; expected a header row {','.join(online_retail.COLUMNS)}")
    cols = columns(header, online_retail.COLUMNS, path)

    catalogue = _Catalogue()
    skipped: Counter[str] = Counter()
    last_row: dict[str, int] = {}  # invoice -> index of its last kept row, where its order is emitted
    n_rows = 0
    for index, raw in enumerate(rows):
        n_rows += 1
        parsed = _retail_row(raw, cols)
        if isinstance(parsed, str):
            skipped[parsed] += 1
            continue
        last_row[parsed.invoice] = index
        catalogue.add(
            parsed.sale_id,
            RETAIL_BRAND,
            parsed.sku,
            parsed.ts,
            price=parsed.price,
            category=RETAIL_CATEGORY,
            name=parsed.name,
            window=parsed.week,
        )

    def stream(skips: Counter[str]) -> Iterator[Event]:
        body = _open_csv(path)
        next(body, None)
        open_orders: dict[str, tuple[str, dict[tuple[str, str], list[float]]]] = {}
        for index, raw in enumerate(body):
            parsed = _retail_row(raw, cols)
            if isinstance(parsed, str):
                skips[parsed] += 1
                continue
            member, items = open_orders.setdefault(parsed.invoice, (parsed.member, {}))
            _add_line(items, parsed.sale_id, parsed.sku, parsed.quantity, parsed.price)
            if last_row.get(parsed.invoice) == index:
                del open_orders[parsed.invoice]
                order_id = f"retail-{parsed.invoice}"
                yield (
                    "order",
                    {
                        "event_id": order_id,
                        "order_id": order_id,
                        "member_id": member,
                        "lines": _lines(items),
                        "currency": "GBP",
                        "ts": parsed.ts,
                        "channel": CHANNEL,
                    },
                )

    sales, stock = catalogue.records("retail")
    return ReplayPlan("online-retail", path, sales, stock, n_rows, len(last_row), skipped, stream)


# ------------------------------------------------------------------------------------------------------------
# Kafka


@dataclass(frozen=True)
class Dataset:
    """A replayable dataset: its reader and where its file sits under ``settings.data_dir``."""

    name: str
    relative_path: str
    reader: Callable[[Path], ReplayPlan]


DATASETS: dict[str, Dataset] = {
    "rees46": Dataset("rees46", RELATIVE_PATHS["rees46"], read_rees46),
    "taobao": Dataset("taobao", RELATIVE_PATHS["taobao"], read_taobao),
    "online-retail": Dataset(
        "online-retail", RELATIVE_PATHS["online-retail"], read_online_retail
    ),
}


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by name (``online_retail`` and ``retail`` are accepted for ``online-retail``)."""
    key = name.strip().lower().replace("_", "-")
    key = "online-retail" if key == "retail" else key
    try:
        return DATASETS[key]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


@dataclass
class ReplayReport:
    """What a replay produced; ``units`` and ``events_produced['order']`` can be checked against ClickHouse.

    ``seconds`` is the wall time of the whole run (catalogue pass, catalogue, events, both flushes), so
    ``events_per_second`` is what an operator waits for, not the producer's peak rate.
    """

    dataset: str
    path: Path
    sales: int
    stock_levels: int
    events_produced: dict[str, int]
    orders: int
    units: int
    skipped: dict[str, int]
    seconds: float

    @property
    def events(self) -> int:
        return sum(self.events_produced.values())

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.events_produced.items()))
        skips = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())) or "none"
        return (
            f"{self.dataset}: {self.sales} sales, {self.stock_levels} stock levels, "
            f"{self.events} events ({kinds}), "
            f"{self.orders} orders / {self.units} units, skipped: {skips}; "
            f"{self.seconds:.1f} s ({self.events_per_second:,.0f} events/s)"
        )


def run_replay(
    settings: Settings,
    dataset: str,
    path: Path | None = None,
    *,
    speed: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    publisher: Publisher | None = None,
) -> ReplayReport:
    """Replay one dataset into Kafka: catalogue and stock first (flushed, so they are stored before any
    event), then the events in file order, then flush.

    ``speed`` scales the original gaps between events (60 = an hour of data per minute); ``None`` sends as
    fast as possible (``--speed max``). ``limit`` keeps the first N events (test slices); the catalogue is
    always whole. ``publisher`` lets tests inject a fake; by default a :class:`~salepulse.consumers.publish.Publisher`
    on ``settings``.
    """
    from tqdm import tqdm

    from salepulse.consumers.publish import Pacer, Publisher

    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0 (or None for as fast as possible), got {speed}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    spec = get_dataset(dataset)
    path = path if path is not None else settings.data_dir / spec.relative_path
    started = time.monotonic()
    plan = spec.reader(path)
    out = publisher if publisher is not None else Publisher(settings)
    for kind, record in plan.catalogue():
        out.send(kind, record)
    out.flush()

    skipped: Counter[str] = Counter()
    produced: Counter[str] = Counter()
    units = 0
    pacer = Pacer(speed=speed)
    events: Iterator[Event] = plan.events(skipped)
    total = plan.event_count
    if limit is not None:
        events = itertools.islice(events, limit)
        total = min(total, limit)
    with tqdm(total=total, unit="ev", desc=f"replay {spec.name}", disable=not progress) as bar:
        for kind, record in events:
            pacer.wait(record["ts"])
            out.send(kind, record)
            produced[kind] += 1
            if kind == "order":
                units += sum(line["quantity"] for line in record["lines"])
            bar.update(1)
    out.flush()
    return ReplayReport(
        dataset=spec.name,
        path=path,
        sales=len(plan.sales),
        stock_levels=len(plan.stock),
        events_produced=dict(produced),
        orders=produced["order"],
        units=units,
        skipped=dict(skipped),
        seconds=time.monotonic() - started,
    )


def parse_speed(text: str) -> float | None:
    """``max`` -> None (no pacing), else a positive float speed-up of event time."""
    if text.strip().lower() == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"speed must be > 0 or 'max', got {text}")
    return value
