"""REES46 multi-category store log (``event_time,event_type,product_id,...``; see its ``SOURCE.md``).

Rules (one place, used by ``replay`` and ``evaluate recommend``):

- ``view`` -> browse; ``cart`` -> cart **add**; ``remove_from_cart`` -> cart **remove** (a negative signal,
  never a target; the shipped October sample has none, later months do); ``purchase`` -> order (one row = one
  unit of one product). Any other type is ``unknown_event_type``.
- brand is lower-cased, ``""`` when empty; ``category`` = category_code, or ``cat-<category_id>`` when the code is
  empty; ``category_id`` is kept too (always present, finer: the evaluations use it).
- A negative price is ``negative_price``; an empty product or user id is ``missing_id``.

>>> cols = columns(list(COLUMNS), COLUMNS, Path("x"))
>>> r = parse_row(["2019-10-01 00:00:07 UTC", "remove_from_cart", "3", "10", "", "Acme", "5.0", "100", "s"], cols)
>>> r.kind, r.action, r.brand, r.category
('cart', 'remove', 'acme', 'cat-10')
>>> parse_row(["2019-10-01 00:00:07 UTC", "wish", "3", "10", "", "", "5.0", "100", "s"], cols)
'unknown_event_type'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from salepulse.consumers.data.common import Interaction, Line
from salepulse.consumers.data.csvio import (
    MALFORMED,
    MISSING_ID,
    NEGATIVE_PRICE,
    UNKNOWN_TYPE,
    columns,
    open_csv,
    price,
    utc_ms,
)

COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)
#: event_type -> (kind, cart action)
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "view": ("browse", "add"),
    "cart": ("cart", "add"),
    "remove_from_cart": ("cart", "remove"),
    "purchase": ("order", "add"),
}


class Row(NamedTuple):
    """One parsed row."""

    ts: int
    event_type: str
    kind: str
    action: str
    sku: str
    category_id: str
    category: str
    brand: str
    price: float
    member: str
    session: str | None


def parse_row(
    row: list[str], cols: Callable[[list[str]], tuple[str, ...]], types: frozenset[str] | None = None
) -> Row | str:
    """A :class:`Row`, or the skip reason; ``types`` limits the accepted event types (default: all four)."""
    try:
        t, event_type, sku, cat_id, cat_code, brand, value, member, session = cols(row)
        ts, amount = utc_ms(t), price(value)
    except (IndexError, ValueError):
        return MALFORMED
    mapped = EVENT_TYPES.get(event_type)
    if mapped is None or (types is not None and event_type not in types):
        return UNKNOWN_TYPE
    if not sku or not member:
        return MISSING_ID
    if amount < 0:
        return NEGATIVE_PRICE
    return Row(ts, event_type, mapped[0], mapped[1], sku, cat_id, cat_code or f"cat-{cat_id}",
               brand.strip().lower(), amount, member, session or None)


def rows_with_cells(path: Path, skipped: dict[str, int] | None = None,
                    types: frozenset[str] | None = None) -> Iterator[tuple[Row, list[str]]]:
    """Each kept row with its raw cells (replay hashes them into ids), in file order; skipped rows are counted in
    ``skipped`` by reason; ``types`` as :func:`parse_row`."""
    body = open_csv(path)
    header = next(body, None)
    if header is None:
        raise ValueError(f"{path} is empty; expected a header row {','.join(COLUMNS)}")
    cols = columns(header, COLUMNS, path)
    for raw in body:
        parsed = parse_row(raw, cols, types)
        if isinstance(parsed, str):
            if skipped is not None:
                skipped[parsed] = skipped.get(parsed, 0) + 1
            continue
        yield parsed, raw


def rows(path: Path, skipped: dict[str, int] | None = None) -> Iterator[Row]:
    """The parsed rows in file order; skipped rows are counted in ``skipped`` by reason."""
    for parsed, _ in rows_with_cells(path, skipped):
        yield parsed


def interactions(path: Path) -> Iterator[Interaction]:
    """One :class:`Interaction` per row; category = ``category_id`` (always present), brand as parsed."""
    for r in rows(path):
        yield Interaction(r.ts / 1000.0, r.member, r.kind,
                          [Line(r.sku, r.brand, f"cat-{r.category_id}", r.price, 1)], r.action, r.session)
