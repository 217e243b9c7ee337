"""What the worker does with input it cannot use: bounded dead letters, byte budgets, and the last-line guard.

Pure logic (no Kafka, no Faust). The validation boundary (:mod:`salepulse.schemas.validation`) decides what a
*valid* event is; this module only knows what the pipeline can physically *carry*, so that a record that slipped
past validation (an old record already in a topic, a producer that bypassed HTTP, a bug) is dead-lettered instead
of crashing an agent, overflowing a Kafka message or stalling ClickHouse:

- every float finite (``log2(inf)`` in the preference model, ``NaN`` sums in ClickHouse);
- units of a fact inside ClickHouse's ``Int32`` (a 3,000,000,000-unit order once stalled the sink);
- an event time that Python, Avro and ClickHouse ``DateTime64(3)`` can all represent;
- one event's outputs small enough to fit one Kafka message with a margin.

>>> event_problem("CartEvent", {"quantity": 1, "unit_price": float("inf"), "ts": 0})
'unit_price: not a finite number (inf)'
>>> event_problem("BrowseEvent", {"ts": 9_000_000_000_000_000})
'ts: 9000000000000000 ms is outside 1970-01-01 .. 2200-01-01'
>>> excerpt(b"x" * 5000)[:3], len(excerpt(b"x" * 5000)) == EXCERPT_BYTES
(b'xxx', True)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

EXCERPT_BYTES = 1024
"""A dead letter keeps this much of the original value (plus its SHA-256 and size): enough to see what was wrong,
never enough to overflow the dead-letter topic with a 1 MB poison record."""
REASON_CHARS = 1000
"""Reasons quote the record (an id, a value); a 505,000-character id must not ride along whole."""
MAX_TS_MS = 7_258_118_400_000
"""2200-01-01: inside ClickHouse DateTime64(3) (to 2299) and Python's datetime; no sale runs later than this."""
MAX_UNITS = 2**31 - 1
"""ClickHouse ``velocity_facts.units`` is Int32."""
MAX_MONEY = 1e12
"""A price or revenue beyond this is a unit error, not a sale, and would swamp every sum it enters."""
DEFAULT_MESSAGE_BYTES = 1_000_000
"""librdkafka's ``message.max.bytes`` default (the broker's is 1,048,588): outputs stay well under it."""
BUDGET_FRACTION = 0.5
"""Share of the message limit that one output message may fill: the byte estimate below is approximate (Avro
varints, the wire header), so it keeps a wide margin."""


def excerpt(value: bytes | None, limit: int = EXCERPT_BYTES) -> bytes:
    """The first ``limit`` bytes of ``value``."""
    return (value or b"")[:limit]


def digest(value: bytes | None) -> str:
    """Hex SHA-256 of the whole original value, to match a dead letter with the bytes that were sent.

    >>> digest(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(value or b"").hexdigest()


def bounded_reason(reason: str, limit: int = REASON_CHARS) -> str:
    """``reason`` cut to ``limit`` characters, saying that it was cut.

    >>> bounded_reason("a" * 10, limit=4)
    'aaaa… (10 chars)'
    """
    return reason if len(reason) <= limit else f"{reason[:limit]}… ({len(reason)} chars)"


def _finite(name: str, value: Any, low: float, high: float) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name}: not a number ({type(value).__name__})"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}: not a finite number ({value})"
    if not low <= value <= high:
        return f"{name}: {value} is outside {low:g} .. {high:g}"
    return None


def _ts(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < MAX_TS_MS:
            return None
        return f"ts: {value} ms is outside 1970-01-01 .. 2200-01-01"
    return None  # a datetime decoded by the codec is representable by construction


def event_problem(name: str, record: Mapping[str, Any]) -> str | None:
    """The first thing in a decoded event that the pipeline cannot carry, or None.

    >>> event_problem("OrderEvent", {"ts": 1, "lines": [{"quantity": 2**31 - 1, "unit_price": 1.0},
    ...                                                 {"quantity": 1, "unit_price": 1.0}]})
    'lines: 2147483648 units of one sku exceed 2147483647'
    >>> event_problem("OrderEvent", {"ts": 1, "lines": [{"sku": "k", "quantity": 2, "unit_price": float("nan")}]})
    'lines[0].unit_price: not a finite number (nan)'
    >>> event_problem("BrowseEvent", {"ts": 1_764_403_200_000}) is None
    True
    """
    found = _ts(record.get("ts"))
    if found:
        return found
    if name == "CartEvent":
        return (_finite("quantity", record.get("quantity"), 0, MAX_UNITS)
                or _finite("unit_price", record.get("unit_price"), 0, MAX_MONEY))
    if name == "OrderEvent":
        per_sku: dict[tuple[Any, Any], int] = {}
        revenue = 0.0
        for i, line in enumerate(record.get("lines") or []):
            found = (_finite(f"lines[{i}].quantity", line.get("quantity"), 0, MAX_UNITS)
                     or _finite(f"lines[{i}].unit_price", line.get("unit_price"), 0, MAX_MONEY))
            if found:
                return found
            key = (line.get("sale_id"), line.get("sku"))
            per_sku[key] = per_sku.get(key, 0) + int(line["quantity"])
            revenue += line["quantity"] * line["unit_price"]
        for units in per_sku.values():
            if units > MAX_UNITS:
                return f"lines: {units} units of one sku exceed {MAX_UNITS}"
        if not math.isfinite(revenue) or revenue > MAX_MONEY * 1000:
            return f"lines: revenue {revenue} is not a usable number"
    return None


def text_bytes(text: str) -> int:
    """UTF-8 size of ``text`` without encoding it when it is ASCII (the common case, and cheap)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


FACT_OVERHEAD_BYTES = 64
"""Per fact, beyond its strings: varint lengths, units, revenue (8), ts and offset (up to 10 each), array blocks."""


def fact_bytes(event_id: str, sku: str, kind: str, source: str) -> int:
    """An upper estimate of one fact's share of an encoded VelocityFacts message.

    >>> fact_bytes("o1", "k1", "order", "events.order:0")
    87
    """
    return text_bytes(event_id) + text_bytes(sku) + len(kind) + text_bytes(source) + FACT_OVERHEAD_BYTES


def message_budget(max_message_bytes: int = DEFAULT_MESSAGE_BYTES) -> int:
    """Bytes one output message may fill by estimate.

    >>> message_budget(1_000_000)
    500000
    """
    return int(max_message_bytes * BUDGET_FRACTION)


MAX_STOCK = 2**31 - 1
MAX_LEAD_HOURS = 24.0 * 366
"""A restock lead time over a year is a unit error (minutes for hours), and overflows timedelta arithmetic later."""


def catalog_problem(name: str, record: Mapping[str, Any]) -> str | None:
    """The first value of a compacted record (sale, expert forecast, stock) that live state cannot use, or None.

    The compacted topics keep the latest record per key for ever, so a poisoned forecast written before the
    validation boundary existed is read again at every start: it is skipped (with this reason logged), never
    applied.

    >>> catalog_problem("ExpertForecast", {"expected_units": float("nan")})
    'expected_units: not a finite number (nan)'
    >>> catalog_problem("ExpertForecast", {"expected_units": 1e308})
    'expected_units: 1e+308 is outside 0 .. 2.14748e+09'
    >>> catalog_problem("StockLevel", {"on_hand": 5, "inbound": 0, "lead_time_hours": 24.0}) is None
    True
    """
    if name == "ExpertForecast":
        if record.get("expected_units") is None:
            return "expected_units: missing"
        for field in ("expected_units", "low", "high"):
            found = _finite(field, record.get(field), 0, MAX_STOCK)
            if found:
                return found
        return None
    if name == "StockLevel":
        return (_finite("on_hand", record.get("on_hand"), -MAX_STOCK, MAX_STOCK)
                or _finite("inbound", record.get("inbound"), 0, MAX_STOCK)
                or _finite("lead_time_hours", record.get("lead_time_hours"), 0, MAX_LEAD_HOURS)
                or _ts(record.get("inbound_eta")))
    if name == "Sale":
        found = _ts(record.get("starts_at")) or _ts(record.get("ends_at"))
        if found:
            return found
        for i, product in enumerate(record.get("products") or []):
            found = (_finite(f"products[{i}].price", product.get("price"), 0, MAX_MONEY)
                     or _finite(f"products[{i}].stock", product.get("stock"), 0, MAX_STOCK))
            if found:
                return found
    return None


def dead_letter(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, stage: str,
                reason: str, failed_at_ms: int) -> dict[str, Any]:
    """The DeadLetter record of one refused input: bounded excerpt, SHA-256 and size of the original, stage, reason.

    >>> letter = dead_letter("events.order", 0, 7, b"m1", b"x" * 2_000_000, "decode", "decode: junk", 0)
    >>> len(letter["value"]), letter["value_size"], letter["stage"], letter["event_id"]
    (1024, 2000000, 'decode', 'events.order:0:7')
    """
    return {
        "event_id": f"{topic}:{partition}:{offset}",
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else excerpt(key),
        "value": excerpt(value),
        "reason": bounded_reason(reason),
        "failed_at": failed_at_ms,
        "stage": stage,
        "value_sha256": digest(value),
        "value_size": len(value or b""),
    }
