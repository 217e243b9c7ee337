"""The three replay readers: REES46, Taobao and UCI Online Retail mapped onto the Avro contracts.

Each returns a :class:`~salepulse.consumers.tools.replay_plan.ReplayPlan`; rows are parsed by the shared readers of
:mod:`salepulse.consumers.data` (one reader per dataset), so replay and the evaluations agree on what a row is.
The mapping rules are in each reader's docstring (and in the README section "Replaying real data").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

from salepulse.consumers.data import online_retail, rees46, taobao
from salepulse.consumers.data.csvio import (
    SECOND_MS,
    columns,
)
from salepulse.consumers.tools.replay_plan import (
    CHANNEL,
    DAY_MS,
    DUPLICATE_PURCHASE,
    FAV_SKIPPED,
    Event,
    Record,
    ReplayPlan,
    _add_line,
    _Catalogue,
    _lines,
    _open_csv,
    _require_file,
    _row_hash,
)

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
