"""JSON from HTTP callers into contract records, with errors that name the field and say what to fix.

The site and app teams post JSON; this module turns one JSON object into the Avro record it stands for, or raises
:class:`InputError` listing every problem at once (not just the first), so a caller fixes a payload in one go.

>>> kind, record = parse_event({"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1",
...                             "sku": "k1", "ts": "2026-11-29T10:00:00Z"})
>>> kind, record["ts"]
('browse', 1795946400000)
>>> try:
...     parse_event({"type": "order", "event_id": "o1", "member_id": "m1", "lines": [{"sku": "k"}]})
... except InputError as error:
...     print(error.problems)
['lines[0].sale_id: required', 'lines[0].quantity: required', 'lines[0].unit_price: required']
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from salepulse.schemas.validation import problems

KINDS = {"browse": "BrowseEvent", "cart": "CartEvent", "order": "OrderEvent"}


class InputError(ValueError):
    """A payload that is not a valid record; ``problems`` lists ``field: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _timestamp(value: Any, field: str, found: list[str]) -> int:
    if value is None:
        return int(time.time() * 1000)
    if isinstance(value, bool):
        found.append(f"{field}: expected epoch milliseconds or an ISO 8601 time, got {value!r}")
        return 0
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            found.append(f"{field}: {value!r} is not an ISO 8601 time (e.g. 2026-11-29T10:00:00Z)")
            return 0
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    found.append(f"{field}: expected epoch milliseconds or an ISO 8601 time, got {type(value).__name__}")
    return 0


def _take(obj: Mapping[str, Any], spec: dict[str, type | tuple[type, ...]], prefix: str, found: list[str],
          optional: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, types in spec.items():
        if name not in obj or obj[name] is None:
            if name not in optional:
                found.append(f"{prefix}{name}: required")
            continue
        value = obj[name]
        if types is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types) or isinstance(value, bool) and types is not bool:
            expected = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
            found.append(f"{prefix}{name}: expected {expected}, got {type(value).__name__}")
            continue
        out[name] = value
    return out


def parse_event(obj: Any) -> tuple[str, dict[str, Any]]:
    """``(kind, record)`` of one JSON event; ``type`` says which: browse, cart or order."""
    if not isinstance(obj, Mapping):
        raise InputError([f"event: expected a JSON object, got {type(obj).__name__}"])
    kind = obj.get("type")
    if kind not in KINDS:
        raise InputError([f"type: must be one of {', '.join(KINDS)}, got {kind!r}"])
    found: list[str] = []
    common = {"event_id": str, "member_id": str}
    if kind == "browse":
        record = _take(obj, {**common, "sale_id": str, "sku": str, "session_id": str}, "", found,
                       optional=("session_id",))
    elif kind == "cart":
        record = _take(obj, {**common, "sale_id": str, "sku": str, "action": str, "quantity": int,
                             "unit_price": float, "session_id": str}, "", found, optional=("session_id",))
        if record.get("action") not in (None, "add", "remove"):
            found.append(f"action: must be add or remove, got {record['action']!r}")
    else:
        record = _take(obj, {**common, "order_id": str, "currency": str}, "", found,
                       optional=("order_id", "currency"))
        record.setdefault("order_id", record.get("event_id"))
        lines = obj.get("lines")
        if not isinstance(lines, list) or not lines:
            found.append("lines: required, a non-empty list of {sale_id, sku, quantity, unit_price}")
            lines = []
        record["lines"] = []
        for i, line in enumerate(lines):
            if not isinstance(line, Mapping):
                found.append(f"lines[{i}]: expected an object")
                continue
            record["lines"].append(_take(line, {"sale_id": str, "sku": str, "quantity": int, "unit_price": float},
                                         f"lines[{i}].", found))
    channel = obj.get("channel", "web")
    if channel not in ("web", "app"):
        found.append(f"channel: must be web or app, got {channel!r}")
    record["channel"] = channel
    record["ts"] = _timestamp(obj.get("ts"), "ts", found)
    if not found:
        found = problems(KINDS[kind], record)
    if found:
        raise InputError(found)
    return kind, record


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
    submitted = submitted_at_ms if submitted_at_ms is not None else int(time.time() * 1000)
    record["submitted_at"] = submitted
    record["event_id"] = f"{record.get('sale_id')}:{record.get('sku')}:{submitted}"
    if not found:
        found = problems("ExpertForecast", record)
    if found:
        raise InputError(found)
    return record
