"""UCI Online Retail invoices (``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,...``).

THE rule of what counts as a sold product line, for ``replay``, ``evaluate recommend`` and ``evaluate forecast``
(:func:`skip_reason`, first matching reason wins):

1. ``cancellation`` - InvoiceNo starting with ``C``;
2. ``malformed_row`` - Quantity, UnitPrice or InvoiceDate that does not parse;
3. ``non_positive_quantity`` - Quantity <= 0 on a non-cancellation invoice (damages, write-offs);
4. ``negative_price`` / ``zero_price`` - UnitPrice < 0 (bad-debt adjustments) / = 0 (stock adjustments, free
   samples: not demand at a price);
5. ``non_product`` - a StockCode that is not goods: :data:`NON_PRODUCT_CODES` (postage, carriage, discount,
   manual, samples, bank charges, Amazon fee, CRUK commission, pads), any ``gift_*`` voucher, and a non-standard
   code (not 5 digits + up to 3 letters) whose description is empty or names a fee, postage, an adjustment...;
6. ``missing_id`` - an empty InvoiceNo or StockCode.

StockCodes are compared and kept stripped and upper-cased (``85123a`` and ``85123A`` are one product).
Member = CustomerID as an integer string (``17850.0`` -> ``17850``), ``""`` for a guest.
InvoiceDate is UK local time and is read as UTC (all invoices fall between 06:00 and 21:00, so no day moves).

>>> is_product("85123A", "WHITE HANGING HEART T-LIGHT HOLDER"), is_product("POST", "POSTAGE")
(True, False)
>>> is_product("gift_0001_20", "Dotcomgiftshop Gift Voucher £20.00"), is_product("DCGS0069", "ebay")
(False, False)
>>> is_product("DCGSSGIRL", "GIRLS PARTY BAG")
True
>>> skip_reason("C536379", "D", "Discount", -1, 27.5), skip_reason("536365", "71053", "LANTERN", 6, 0.0)
('cancellation', 'zero_price')
>>> skip_reason("536365", "71053", "WHITE METAL LANTERN", 6, 3.39) is None
True
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from salepulse.consumers.data.common import Interaction, Line
from salepulse.consumers.data.csvio import (
    CANCELLATION,
    MALFORMED,
    MISSING_ID,
    NEGATIVE_PRICE,
    NON_POSITIVE_QUANTITY,
    NON_PRODUCT,
    ZERO_PRICE,
    columns,
    open_csv,
    price,
    utc_ms,
)

COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID")
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "C2", "D", "M", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "CRUK COMMISSION", "PADS"}
)
"""StockCodes that are not goods (compared upper-case, so the one ``m`` Manual row is caught too)."""
_STANDARD_CODE = re.compile(r"^\d{5}[A-Z]{0,3}$")
_NON_PRODUCT_WORDS = re.compile(
    r"ebay|amazon|postage|carriage|manual|fee|charge|voucher|commission|adjust|discount|sample|bad debt",
    re.IGNORECASE,
)


@lru_cache(maxsize=16_384)
def is_product(code: str, description: str) -> bool:
    """True for a real product stock code (not postage, fees, manual lines, vouchers, adjustments)."""
    c = code.strip().upper()
    if c in NON_PRODUCT_CODES or c.startswith("GIFT_"):
        return False
    if _STANDARD_CODE.match(c):
        return True
    d = description.strip()
    return bool(d) and not _NON_PRODUCT_WORDS.search(d)


def skip_reason(invoice: str, code: str, description: str, quantity: int, unit_price: float) -> str | None:
    """Why a parsed line is not a sold product line (``None`` when it is one); rules 1 and 3-6 of the module."""
    if invoice.strip().upper().startswith("C"):
        return CANCELLATION
    if quantity <= 0:
        return NON_POSITIVE_QUANTITY
    if unit_price < 0:
        return NEGATIVE_PRICE
    if unit_price == 0:
        return ZERO_PRICE
    if not is_product(code, description):
        return NON_PRODUCT
    if not invoice.strip() or not code.strip():
        return MISSING_ID
    return None


@lru_cache(maxsize=8_192)
def customer(text: str) -> str:
    """CustomerID ``17850.0`` (a float in this copy) -> ``17850``; ``""`` for a guest."""
    text = text.strip()
    return str(int(float(text))) if text else ""


class Row(NamedTuple):
    """One sold product line (``ts`` epoch ms, ``when`` the raw InvoiceDate)."""

    invoice: str
    sku: str
    name: str
    quantity: int
    ts: int
    when: str
    price: float
    member: str


def parse_row(row: list[str], cols: Callable[[list[str]], tuple[str, ...]]) -> Row | str:
    """A :class:`Row`, or the skip reason (the module's rule)."""
    try:
        invoice, code, name, quantity, when, unit_price, cust = cols(row)
        invoice = invoice.strip()
        if invoice.upper().startswith("C"):
            return CANCELLATION
        units, ts, value, member = int(quantity), utc_ms(when), price(unit_price), customer(cust)
    except (IndexError, ValueError, OverflowError):
        return MALFORMED
    reason = skip_reason(invoice, code, name, units, value)
    if reason is not None:
        return reason
    return Row(invoice, code.strip().upper(), name.strip(), units, ts, when, value, member)


def rows(path: Path, skipped: dict[str, int] | None = None, span: list[str] | None = None) -> Iterator[Row]:
    """The sold product lines in file order; the others are counted in ``skipped`` by reason.

    ``span`` (a list, filled as ``[first, last]``) receives the earliest and latest InvoiceDate of ALL rows,
    kept or not: the shop's clock runs on cancellations too.
    """
    body = open_csv(path)
    header = next(body, None)
    if header is None:
        raise ValueError(f"{path} is empty; expected a header row {','.join(COLUMNS)}")
    cols = columns(header, COLUMNS, path)
    for raw in body:
        if span is not None and len(raw) == len(header):
            when = cols(raw)[4]
            if not span:
                span.extend((when, when))
            elif when < span[0]:
                span[0] = when
            elif when > span[1]:
                span[1] = when
        parsed = parse_row(raw, cols)
        if isinstance(parsed, str):
            if skipped is not None:
                skipped[parsed] = skipped.get(parsed, 0) + 1
            continue
        yield parsed


def interactions(path: Path) -> Iterator[Interaction]:
    """One order per invoice of a KNOWN customer (guests cannot be followed), lines merged per StockCode.

    Category = the first 3 digits of the StockCode (the shop's own families); time = the invoice's first line.
    """
    invoices: dict[str, Interaction] = {}
    for r in rows(path):
        if not r.member:
            continue
        ev = invoices.get(r.invoice)
        if ev is None:
            ev = invoices[r.invoice] = Interaction(r.ts / 1000.0, r.member, "order", [])
            ev.extra["by_sku"] = {}
        by_sku: dict[str, Line] = ev.extra["by_sku"]
        line = by_sku.get(r.sku)
        if line is None:
            line = by_sku[r.sku] = Line(r.sku, "", r.sku[:3], r.price, 0)
            ev.lines.append(line)
        line.quantity += r.quantity
    for ev in invoices.values():
        ev.extra.clear()
        yield ev


# --- the weekly view both forecast evaluations read: each ISO week of Online Retail is a sale ---------------
WEEK_SECONDS = 7 * 86400.0


def load_online_retail(path: Path) -> tuple[dict[date, list[tuple[float, str, int]]], datetime, datetime]:
    """Sales lines grouped by ISO week (Monday) as (elapsed fraction of the week, stock code, units)."""
    weeks: dict[date, list[tuple[float, str, int]]] = defaultdict(list)
    day_cache: dict[str, tuple[date, float]] = {}
    span: list[str] = []  # first and last InvoiceDate of all rows, kept or not
    for row in rows(Path(path), span=span):  # the shared rule of what a sold product line is
        ts = row.when
        day = ts[:10]
        dc = day_cache.get(day)
        if dc is None:
            d = date.fromisoformat(day)
            dc = day_cache[day] = (d - timedelta(days=d.weekday()), d.weekday() * 86400.0)
        secs = dc[1] + int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + int(ts[17:19])
        weeks[dc[0]].append((secs / WEEK_SECONDS, row.sku, row.quantity))
    if not span:
        raise ValueError(f"no rows in {path}")
    return weeks, datetime.fromisoformat(span[0]), datetime.fromisoformat(span[1])


def weekly_totals(weeks: dict[date, list[tuple[float, str, int]]]) -> dict[date, dict[str, int]]:
    """Units per stock code of each week: a series' truth."""
    totals: dict[date, dict[str, int]] = {}
    for monday, lines in weeks.items():
        week: dict[str, int] = defaultdict(int)
        for _, code, units in lines:
            week[code] += units
        totals[monday] = week
    return totals


def complete_weeks(first_ts: datetime, last_ts: datetime) -> list[date]:
    """Mondays of the weeks wholly inside the data (Monday 00:00 .. Sunday 24:00): only those are sales.

    >>> complete_weeks(datetime(2011, 1, 4, 9), datetime(2011, 1, 24, 12))
    [datetime.date(2011, 1, 10), datetime.date(2011, 1, 17)]
    """
    mondays: list[date] = []
    monday = first_ts.date() - timedelta(days=first_ts.weekday())
    if datetime.combine(monday, datetime.min.time()) < first_ts:
        monday += timedelta(days=7)
    while datetime.combine(monday + timedelta(days=7), datetime.min.time()) <= last_ts:
        mondays.append(monday)
        monday += timedelta(days=7)
    return mondays
