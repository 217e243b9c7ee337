"""JSON from HTTP callers into contract records, with errors that name the field and say what to fix.

The site and app teams post JSON; this module turns the body into Python (:func:`load_json`: bounded nesting,
UTF-8 only) and one JSON object into the Avro record it stands for (:func:`parse_event`, :func:`parse_forecast`),
or raises :class:`InputError` listing every problem at once (not just the first), so a caller fixes a payload in one
go. Nothing here raises anything else, whatever the input: the HTTP layer turns ``InputError`` into a 4xx.

>>> kind, record = parse_event({"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1",
...                             "sku": "k1", "ts": "2026-11-29T10:00:00Z"})
>>> kind, record["ts"]
('browse', 1795946400000)
>>> try:
...     parse_event({"type": "order", "event_id": "o1", "member_id": "m1", "lines": [{"sku": "k"}]})
... except InputError as error:
...     print(error.problems)
['lines[0].sale_id: required', 'lines[0].quantity: required', 'lines[0].unit_price: required']
>>> try:
...     parse_event({"type": ["browse"], "event_id": "e1"})
... except InputError as error:
...     print(error.problems)
['type: must be one of browse, cart, order, got list']
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from salepulse.schemas import limits as L
from salepulse.schemas.validation import excerpt, problems, time_ms
from salepulse.streams.platform.topology import EVENT_RECORDS

KINDS = EVENT_RECORDS
CHANNELS = ("web", "app")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)


class InputError(ValueError):
    """A payload that is not a valid record; ``problems`` lists ``field: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, without parsing it (brackets inside strings skipped).

    >>> json_depth(b'[{"a": [1, "]]]"]}]'), json_depth(b'"x"'), json_depth(b"[" * 1000)
    (3, 0, 1000)
    """
    bare = np.frombuffer(_STRINGS.sub(b'""', body), dtype=np.uint8)
    steps = np.isin(bare, _OPEN).astype(np.int32) - np.isin(bare, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def load_json(body: bytes, max_depth: int = L.MAX_JSON_DEPTH) -> Any:
    """Parse a request body: UTF-8 JSON nested at most ``max_depth`` deep; :class:`InputError` says what is wrong.

    NaN, Infinity and 1e999 parse (as floats) and are refused by validation, so the answer names the event.

    >>> load_json(b'[{"unit_price": 1e999}]')
    [{'unit_price': inf}]
    >>> for bad in (b"[" * 50, b"\\xff\\xfe{}", b"{not json", b""):
    ...     try:
    ...         load_json(bad)
    ...     except InputError as error:
    ...         print(error.problems[0][:56])
    body: JSON nested 50 deep; at most 8 levels are accepted
    body: not UTF-8 (invalid start byte at byte 0)
    body: not JSON: Expecting property name enclosed in doub
    body: empty; send a JSON object or a list of them
    """
    if not body.strip():
        raise InputError(["body: empty; send a JSON object or a list of them"])
    depth = json_depth(body)
    if depth > max_depth:
        raise InputError([f"body: JSON nested {depth} deep; at most {max_depth} levels are accepted"])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([f"body: not UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    try:
        return json.loads(text)
    except RecursionError:  # unreachable after the depth check; kept so no input can ever escape as a 500
        raise InputError(["body: JSON nested too deep"]) from None
    except ValueError as exc:  # JSONDecodeError, and ints of more than 4,300 digits
        raise InputError([f"body: not JSON: {str(exc)[:200]}"]) from None


def _timestamp(value: Any, field: str, found: list[str], now_ms: int) -> int:
    if value is None:
        return now_ms
    if isinstance(value, str):
        if len(value) > 40:
            found.append(f"{field}: {excerpt(value)} is not an ISO 8601 time (e.g. 2026-11-29T10:00:00Z)")
            return 0
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            ms = time_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
        except (ValueError, OverflowError, OSError):
            found.append(f"{field}: {excerpt(value)} is not an ISO 8601 time (e.g. 2026-11-29T10:00:00Z)")
            return 0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ms = time_ms(value)
    else:
        found.append(f"{field}: expected epoch milliseconds or an ISO 8601 time, got {type(value).__name__}")
        return 0
    if ms is None:
        found.append(f"{field}: must be 2000-01-01 .. 2100-01-01 (epoch ms or ISO 8601), got {excerpt(value)}")
        return 0
    return ms


def _take(obj: Mapping[str, Any], spec: dict[str, type], prefix: str, found: list[str],
          optional: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        value = obj.get(name)
        if value is None:
            if name not in optional:
                found.append(f"{prefix}{name}: required")
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            # ints are numbers too; one too large for a float stays an int, and the range check refuses it
            out[name] = float(value) if abs(value) < 2**63 else value
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            expected = {str: "string", int: "integer", float: "number"}[kind]
            found.append(f"{prefix}{name}: expected {expected}, got {type(value).__name__}")
            continue
        out[name] = value
    return out


def _choice(value: Any, allowed: tuple[str, ...] | dict[str, Any]) -> bool:
    return isinstance(value, str) and value in allowed


def parse_event(obj: Any, now_ms: int | None = None, *, window: bool = True,
                max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> tuple[str, dict[str, Any]]:
    """``(kind, record)`` of one JSON event; ``type`` says which: browse, cart or order.

    ``now_ms`` is the time of ingestion: it stamps an event sent without ``ts`` and, with ``window``, bounds the
    event time of live traffic (see :func:`salepulse.schemas.validation.problems`).
    """
    if not isinstance(obj, Mapping):
        raise InputError([f"event: expected a JSON object, got {type(obj).__name__}"])
    kind = obj.get("type")
    if not _choice(kind, KINDS):
        raise InputError([f"type: must be one of {', '.join(KINDS)}, got {excerpt(kind)}"])
    now = int(time.time() * 1000) if now_ms is None else now_ms
    found: list[str] = []
    common: dict[str, type] = {"event_id": str, "member_id": str}
    if kind == "browse":
        record = _take(obj, {**common, "sale_id": str, "sku": str, "session_id": str}, "", found,
                       optional=("session_id",))
    elif kind == "cart":
        record = _take(obj, {**common, "sale_id": str, "sku": str, "action": str, "quantity": int,
                             "unit_price": float, "session_id": str}, "", found, optional=("session_id",))
        if "action" in record and not _choice(record["action"], ("add", "remove")):
            found.append(f"action: must be add or remove, got {excerpt(record['action'])}")
    else:
        record = _take(obj, {**common, "order_id": str, "currency": str, "region": str}, "", found,
                       optional=("order_id", "currency", "region"))
        record.setdefault("region", None)
        record.setdefault("order_id", record.get("event_id"))
        record.setdefault("currency", "EUR")
        lines = obj.get("lines")
        if not isinstance(lines, list) or not lines:
            found.append("lines: required, a non-empty list of {sale_id, sku, quantity, unit_price}")
            lines = []
        if len(lines) > L.MAX_ORDER_LINES:
            found.append(f"lines: at most {L.MAX_ORDER_LINES} per order, got {len(lines)}")
            lines = []
        record["lines"] = []
        for i, line in enumerate(lines):
            if not isinstance(line, Mapping):
                found.append(f"lines[{i}]: expected an object, got {type(line).__name__}")
                continue
            record["lines"].append(_take(line, {"sale_id": str, "sku": str, "quantity": int, "unit_price": float},
                                         f"lines[{i}].", found))
    channel = obj.get("channel", "web")
    if not _choice(channel, CHANNELS):
        found.append(f"channel: must be web or app, got {excerpt(channel)}")
    record["channel"] = channel
    record["ts"] = _timestamp(obj.get("ts"), "ts", found, now)
    if not found:
        found = problems(KINDS[kind], record, now_ms=now if window else None, max_age_ms=max_age_ms,
                         max_lead_ms=max_lead_ms)
    if found:
        raise InputError(found)
    return kind, record


def forecast_id(record: Mapping[str, Any]) -> str:
    """The id of a forecast: its content, never its arrival time, so a retried submission keeps its identity.

    >>> forecast_id({"sale_id": "s1", "sku": "k1", "expected_units": 120.0, "low": None, "high": None,
    ...              "author": "anna"})
    's1:k1:8b9e121d23e3eee5'
    """
    fields = ("sale_id", "sku", "expected_units", "low", "high", "author", "buyer_id")
    content = json.dumps([record.get(k) for k in fields])
    return f"{record['sale_id']}:{record['sku']}:{hashlib.sha256(content.encode()).hexdigest()[:16]}"


def parse_forecast(obj: Any, submitted_at_ms: int | None = None) -> dict[str, Any]:
    """An ExpertForecast record from JSON ``{sale_id, sku, expected_units, low?, high?, author?, buyer_id?}``."""
    if not isinstance(obj, Mapping):
        raise InputError([f"forecast: expected a JSON object, got {type(obj).__name__}"])
    found: list[str] = []
    record = _take(obj, {"sale_id": str, "sku": str, "expected_units": float, "low": float, "high": float,
                         "author": str, "buyer_id": str}, "", found, optional=("low", "high", "author", "buyer_id"))
    record.setdefault("low", None)
    record.setdefault("high", None)
    record.setdefault("author", None)
    record.setdefault("buyer_id", None)
    record["submitted_at"] = submitted_at_ms if submitted_at_ms is not None else int(time.time() * 1000)
    if not found:
        found = problems("ExpertForecast", record)
    if found:
        raise InputError(found)
    record["event_id"] = forecast_id(record)
    return record
