"""Rules the Avro types cannot express: a decoded record that breaks one goes to the dead-letter topic.

>>> problems("OrderEvent", {"event_id": "o1", "order_id": "o1", "member_id": "m1", "lines": []})
['lines: an order needs at least one line']
>>> problems("CartEvent", {"event_id": "c1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "quantity": 0,
...                        "unit_price": 9.5})
['quantity: must be >= 1, got 0']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Record = Mapping[str, Any]


def _required_ids(record: Record, *fields: str) -> list[str]:
    return [f"{name}: must not be empty" for name in fields if not record.get(name)]


def _browse(record: Record) -> list[str]:
    return _required_ids(record, "event_id", "member_id", "sale_id", "sku")


def _cart(record: Record) -> list[str]:
    found = _required_ids(record, "event_id", "member_id", "sale_id", "sku")
    if record.get("quantity", 0) < 1:
        found.append(f"quantity: must be >= 1, got {record.get('quantity')}")
    if record.get("unit_price", 0.0) < 0:
        found.append(f"unit_price: must be >= 0, got {record.get('unit_price')}")
    return found


def _order(record: Record) -> list[str]:
    found = _required_ids(record, "event_id", "order_id", "member_id")
    if record.get("event_id") and record.get("order_id") and record["event_id"] != record["order_id"]:
        found.append("event_id: must equal order_id, so an order is counted once")
    lines = record.get("lines") or []
    if not lines:
        found.append("lines: an order needs at least one line")
    for i, line in enumerate(lines):
        found += [f"lines[{i}].{p}" for p in _required_ids(line, "sale_id", "sku")]
        if line.get("quantity", 0) < 1:
            found.append(f"lines[{i}].quantity: must be >= 1, got {line.get('quantity')}")
        if line.get("unit_price", 0.0) < 0:
            found.append(f"lines[{i}].unit_price: must be >= 0, got {line.get('unit_price')}")
    return found


def _sale(record: Record) -> list[str]:
    found = _required_ids(record, "event_id", "sale_id", "brand")
    if record.get("starts_at") and record.get("ends_at") and record["ends_at"] <= record["starts_at"]:
        found.append("ends_at: must be after starts_at")
    for i, product in enumerate(record.get("products") or []):
        if product.get("stock", 0) < 0:
            found.append(f"products[{i}].stock: must be >= 0, got {product.get('stock')}")
        if product.get("price", 0.0) < 0:
            found.append(f"products[{i}].price: must be >= 0, got {product.get('price')}")
    return found


def _forecast(record: Record) -> list[str]:
    found = _required_ids(record, "sale_id", "sku")
    expected, low, high = record.get("expected_units"), record.get("low"), record.get("high")
    if expected is None or expected < 0:
        found.append(f"expected_units: must be >= 0, got {expected}")
    if (low is None) != (high is None):
        found.append("low/high: give both ends of the 80% range, or neither")
    elif low is not None and high is not None and expected is not None and not (0 <= low <= expected <= high):
        found.append(f"low/high: need 0 <= low <= expected_units <= high, got {low} <= {expected} <= {high}")
    return found


def _stock(record: Record) -> list[str]:
    found = _required_ids(record, "sku")
    for name in ("on_hand", "inbound"):
        if record.get(name, 0) < 0:
            found.append(f"{name}: must be >= 0, got {record.get(name)}")
    if record.get("lead_time_hours", 0.0) < 0:
        found.append(f"lead_time_hours: must be >= 0, got {record.get('lead_time_hours')}")
    return found


RULES: dict[str, Callable[[Record], list[str]]] = {
    "BrowseEvent": _browse,
    "CartEvent": _cart,
    "OrderEvent": _order,
    "Sale": _sale,
    "ExpertForecast": _forecast,
    "StockLevel": _stock,
}


def problems(name: str, record: Record) -> list[str]:
    """Every broken rule of ``record`` as ``field: what is wrong``; empty when it is usable."""
    rule = RULES.get(name)
    return rule(record) if rule else []
