"""The collector's fast path: a whole batch of well-formed events checked in one pass over the list, no model built.

A site or app batch is nearly always entirely fine. For such a batch this module gives exactly the records the
typed models of :mod:`salepulse.schemas.requests` give (the same dicts, so the same Avro bytes), with a few exact
type checks per field and the rule's own fast paths (:data:`salepulse.schemas.validation.FAST`). It never words a
refusal: anything it does not vouch for (a wrong type, a broken rule, a time outside the live window, an ignored
field that nests, a body ``orjson`` reads differently from the standard parser) makes it answer ``None``, and the
caller validates the batch the reference way, which names every problem. So it must never accept what the
reference refuses, nor build a different record (``tests/unit/test_fast_events.py`` checks both with Hypothesis).

Why a pass over the list rather than pydantic's list validation: measured on 100-event requests, the reference
path (stdlib ``json``, the nesting scan, pydantic with one Python rule call per event) cost about 40 µs per
event in the collector; this path about a tenth of that (``python -m salepulse.streams.tools.bench_collector``).

>>> now = 1_795_946_400_000
>>> body = (b'[{"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "ts": '
...         b'1795946400000, "utm": "x"}, {"type": "order", "event_id": "o1", "member_id": "m1", "lines": '
...         b'[{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 10}]}]')
>>> [(kind, record["ts"], record["channel"], "utm" in record) for kind, record in fast_events(parse(body), now)][0]
('browse', 1795946400000, 'web', False)
>>> order = fast_events(parse(body), now)[1][1]
>>> order["order_id"], order["currency"], order["region"], order["lines"][0]["unit_price"]
('o1', 'EUR', None, 10.0)
>>> fast_events(parse(b'[{"type": "browse", "event_id": "e1", "member_id": "m1"}]'), now) is None  # no sale_id
True
>>> parse(b'[NaN]') is None, parse(b'\\xff') is None
(True, True)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from salepulse.schemas import limits as L
from salepulse.schemas.validation import FAST, time_ms
from salepulse.streams.platform.topology import EVENT_RECORDS

Checked = tuple[str, dict[str, Any]]
_NESTS = (list, dict)
_CHANNELS = frozenset({"web", "app"})
_ACTIONS = frozenset({"add", "remove"})
_LINE_FIELDS = frozenset({"sale_id", "sku", "quantity", "unit_price"})
_DECLARED = {
    "browse": frozenset({"type", "event_id", "member_id", "sale_id", "sku", "session_id", "channel", "ts"}),
    "cart": frozenset({"type", "event_id", "member_id", "sale_id", "sku", "session_id", "channel", "ts", "action",
                       "quantity", "unit_price"}),
    "order": frozenset({"type", "event_id", "member_id", "order_id", "currency", "region", "lines", "channel", "ts"}),
}
"""The fields of each body model (``BrowseIn``, ``CartIn``, ``OrderIn``); any other is ignored, as the models do."""


class _Refer(Exception):
    """This batch goes the reference way."""


def parse(body: bytes) -> Any:
    """``body`` parsed by orjson, or ``None`` when orjson refuses it (the reference parser then says why).

    orjson reads integers beyond 64 bits as floats where the standard parser keeps ints; no field of an event
    accepts such a value, so a batch holding one goes the reference way whatever the parser made of it.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _price(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:  # strict models still take an int for a float field, as a float
        return float(value)
    raise _Refer


def iso_ms(value: str) -> int | None:
    """Epoch ms of an ISO 8601 time within the accepted years (no zone means UTC); None for anything else. The
    models read ``ts`` strings with it too.

    >>> iso_ms("2026-11-29T10:00:00Z"), iso_ms("2026-11-29 11:00+01:00"), iso_ms("yesterday"), iso_ms("1999-12-31")
    (1795946400000, 1795946400000, None, None)
    """
    if len(value) > 40:  # no ISO time is that long; do not hand megabytes to the parser
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return time_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
    except (ValueError, OverflowError, OSError):
        return None


def _ts(value: Any, now_ms: int) -> int:
    if value is None:
        return now_ms
    kind = type(value)
    ms = time_ms(value) if kind is int or kind is float else iso_ms(value) if kind is str else None
    if ms is None:
        raise _Refer
    return ms


def _lines(value: Any) -> list[dict[str, Any]]:
    if type(value) is not list or not 0 < len(value) <= L.MAX_ORDER_LINES:
        raise _Refer
    out = []
    for line in value:
        if type(line) is not dict:
            raise _Refer
        for key, field in line.items():
            if key not in _LINE_FIELDS and type(field) in _NESTS:
                raise _Refer
        sale_id, sku, quantity = line.get("sale_id"), line.get("sku"), line.get("quantity")
        if type(sale_id) is not str or type(sku) is not str or type(quantity) is not int:
            raise _Refer
        out.append({"sale_id": sale_id, "sku": sku, "quantity": quantity, "unit_price": _price(line.get("unit_price"))})
    return out


def _row(row: Any, now_ms: int) -> Checked:
    if type(row) is not dict:
        raise _Refer
    kind = row.get("type")
    declared = _DECLARED.get(kind) if type(kind) is str else None
    if declared is None:
        raise _Refer
    for key, value in row.items():
        if key not in declared and type(value) in _NESTS:  # ignored, but the reference measures its nesting
            raise _Refer
    event_id, member_id, channel = row.get("event_id"), row.get("member_id"), row.get("channel", "web")
    if type(event_id) is not str or type(member_id) is not str or type(channel) is not str \
            or channel not in _CHANNELS:
        raise _Refer
    record: dict[str, Any] = {"event_id": event_id, "member_id": member_id, "channel": channel,
                              "ts": _ts(row.get("ts"), now_ms)}
    if kind == "order":
        order_id, currency, region = row.get("order_id"), row.get("currency"), row.get("region")
        if not (order_id is None or type(order_id) is str) or not (currency is None or type(currency) is str) \
                or not (region is None or type(region) is str):
            raise _Refer
        record.update(order_id=event_id if order_id is None else order_id,
                      currency="EUR" if currency is None else currency, region=region, lines=_lines(row.get("lines")))
    else:
        sale_id, sku, session_id = row.get("sale_id"), row.get("sku"), row.get("session_id")
        if type(sale_id) is not str or type(sku) is not str or not (session_id is None or type(session_id) is str):
            raise _Refer
        record["sale_id"], record["sku"] = sale_id, sku
        if session_id is not None:
            record["session_id"] = session_id
        if kind == "cart":
            action, quantity = row.get("action"), row.get("quantity")
            if type(action) is not str or action not in _ACTIONS or type(quantity) is not int:
                raise _Refer
            record.update(action=action, quantity=quantity, unit_price=_price(row.get("unit_price")))
    if not FAST[EVENT_RECORDS[kind]](record):
        raise _Refer
    return kind, record


def fast_events(rows: Any, now_ms: int, *, window: bool = True, max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> list[Checked] | None:
    """``(kind, record)`` of every item of ``rows`` (a parsed body: one event or a list) at ingestion time
    ``now_ms``, exactly as :func:`salepulse.schemas.requests.check_events` makes them; ``None`` unless every item
    is usable and nests no deeper than an order's lines (then the reference way decides, and words the answer).
    """
    if type(rows) is dict:
        rows = [rows]
    elif type(rows) is not list or not 0 < len(rows) <= L.MAX_BATCH_ITEMS:
        return None
    low, high = now_ms - max_age_ms, now_ms + max_lead_ms
    try:
        checked = [_row(row, now_ms) for row in rows]
    except _Refer:
        return None
    if window and not all(low <= record["ts"] <= high for _, record in checked):
        return None
    return checked
