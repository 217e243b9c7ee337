"""Taobao UserBehavior click-stream (NO header: ``user_id,item_id,category_id,behavior_type,timestamp``).

Rules: ``pv`` -> browse, ``fav`` -> fav, ``cart`` -> cart add, ``buy`` -> order of one unit; no brand, no
price; category = ``cat-<category_id>``. A wrong column count or a non-integer time is ``malformed_row``, an
unknown behaviour ``unknown_event_type``, an empty id ``missing_id``. (``replay`` maps fav to a browse: the
contract has no favourite.)

>>> parse_row(["1", "2", "3", "fav", "10"])
Row(member='1', sku='2', category='cat-3', behavior='fav', kind='fav', ts=10000)
>>> parse_row(["1", "2", "3", "like", "10"])
'unknown_event_type'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from salepulse.consumers.data.common import Interaction, Line
from salepulse.consumers.data.csvio import MALFORMED, MISSING_ID, SECOND_MS, UNKNOWN_TYPE, open_csv

KINDS = {"pv": "browse", "fav": "fav", "cart": "cart", "buy": "order"}


class Row(NamedTuple):
    """One parsed row (``ts`` in epoch ms)."""

    member: str
    sku: str
    category: str
    behavior: str
    kind: str
    ts: int


def parse_row(row: list[str]) -> Row | str:
    """A :class:`Row`, or the skip reason."""
    if len(row) != 5:
        return MALFORMED
    member, sku, category, behavior, ts = row
    try:
        ts_ms = int(ts) * SECOND_MS
    except ValueError:
        return MALFORMED
    kind = KINDS.get(behavior)
    if kind is None:
        return UNKNOWN_TYPE
    if not member or not sku or not category:
        return MISSING_ID
    return Row(member, sku, f"cat-{category}", behavior, kind, ts_ms)


def rows_with_cells(path: Path, skipped: dict[str, int] | None = None) -> Iterator[tuple[Row, list[str]]]:
    """Each kept row with its raw cells (replay hashes them into ids), in file order; skipped rows are counted in
    ``skipped`` by reason."""
    for raw in open_csv(path):
        parsed = parse_row(raw)
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
    """One :class:`Interaction` per kept row."""
    for r in rows(path):
        yield Interaction(r.ts / 1000.0, r.member, r.kind, [Line(r.sku, "", r.category, 0.0, 1)])
