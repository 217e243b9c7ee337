"""The validation boundary: rules the Avro types cannot express, shared by HTTP, the Kafka ingest and the CSV loaders.

A record that breaks one is refused where it enters: a 4xx naming the field over HTTP, a dead letter from the
ingest, a CSV error naming the line. Every limit comes from :mod:`salepulse.schemas.limits`. ``problems`` never
raises, whatever it is given (a list where a string belongs, NaN, 2**80, a lone surrogate): it reports.

>>> problems("OrderEvent", {"event_id": "o1", "order_id": "o1", "member_id": "m1", "lines": [],
...                          "ts": 1_764_403_200_000})
['lines: an order needs 1 .. 2000 lines, got 0']
>>> problems("CartEvent", {"event_id": "c1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "quantity": 0,
...                        "unit_price": float("nan"), "ts": 1_764_403_200_000})
['quantity: must be 1 .. 1,000,000, got 0', 'unit_price: must be a finite number, got nan']
>>> for problem in problems("BrowseEvent", {"event_id": "b\\u202e1", "member_id": "m" * 300, "sale_id": ["s"],
...                                          "sku": "k", "ts": 9e15}):
...     print(problem)
event_id: has a control, format or unassigned character at 1 ('\\u202e')
member_id: at most 200 characters, got 300
ts: must be 2000-01-01 .. 2100-01-01 in epoch ms, got 9000000000000000.0
sale_id: expected a string, got list

Live traffic also has to be recent: pass ``now_ms`` (the time of ingestion) to check the event-time window.
Records whose ``channel`` is ``replay`` carry their original times and are exempt.

>>> event = {"event_id": "b1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "ts": 1_764_403_200_000}
>>> problems("BrowseEvent", event, now_ms=1_764_403_200_000 + 8 * 86_400_000)
['ts: more than 168 h before ingestion (2025-11-29T08:00:00Z); live events must be recent']
>>> problems("BrowseEvent", {**event, "channel": "replay"}, now_ms=1_764_403_200_000 + 8 * 86_400_000)
[]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from salepulse.schemas import limits as L

Record = Mapping[str, Any]
EVENT_RECORDS = ("BrowseEvent", "CartEvent", "OrderEvent")


def excerpt(value: Any, chars: int = L.EXCERPT_CHARS) -> str:
    """A short, printable, JSON-safe description of any value, for error messages that quote what was sent.

    >>> excerpt("x" * 5000)[:12], len(excerpt("x" * 5000)) < 120
    ("'xxxxxxxxxxx", True)
    >>> excerpt([[[[]]]])
    'list'
    >>> excerpt("\\ud800")
    "'\\\\ud800'"
    """
    if isinstance(value, str):
        text = repr(value[:chars]).encode("ascii", "backslashreplace").decode("ascii")
        return text if len(value) <= chars else f"{text}... ({len(value)} characters)"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        return repr(value)
    return type(value).__name__


def _bad_char(value: str) -> int:
    """Index of the first character an id or a text must not hold (``isprintable`` is C-fast for the common case)."""
    for i, char in enumerate(value):
        if not char.isprintable():
            return i
    return -1


def check_string(value: Any, field: str, found: list[str], max_length: int = L.MAX_ID_LENGTH,
                 required: bool = True) -> None:
    """Bounded length and a printable character class; ``required`` means non-empty."""
    if value is None or value == "":
        if required:
            found.append(f"{field}: must not be empty")
        return
    if not isinstance(value, str):
        found.append(f"{field}: expected a string, got {type(value).__name__}")
        return
    if len(value) > max_length:
        found.append(f"{field}: at most {max_length} characters, got {len(value)}")
        return
    if not value.isprintable():
        i = _bad_char(value)
        found.append(f"{field}: has a control, format or unassigned character at {i} "
                     f"({excerpt(value[i])})")


def check_number(value: Any, field: str, found: list[str], low: float, high: float, integer: bool = False,
                 required: bool = True) -> None:
    """A finite number (an int where ``integer``) within ``low .. high``."""
    if value is None:
        if required:
            found.append(f"{field}: required")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        found.append(f"{field}: expected {'an integer' if integer else 'a number'}, got {type(value).__name__}")
        return
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{field}: must be a finite number, got {value!r}")
        return
    if not low <= value <= high:
        found.append(f"{field}: must be {low:,.10g} .. {high:,.10g}, got {excerpt(value)}")


def time_ms(value: Any) -> int | None:
    """Epoch ms of an int, a finite float or an aware datetime within the accepted years; None for anything else.

    >>> time_ms(1_764_403_200_000), time_ms(float("inf")), time_ms(2**80), time_ms("2026")
    (1764403200000, None, None, None)
    """
    if isinstance(value, datetime):
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not L.TS_MIN_MS <= value < L.TS_MAX_MS:
        return None
    return int(value)


def check_time(value: Any, field: str, found: list[str], required: bool = True) -> int | None:
    if value is None and not required:
        return None
    ms = time_ms(value)
    if ms is None:
        found.append(f"{field}: must be 2000-01-01 .. 2100-01-01 in epoch ms, got {excerpt(value)}")
    return ms


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_window(ts_ms: int, now_ms: int, found: list[str], max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                 max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> None:
    """The event-time window of live traffic around ``now_ms``, the time of ingestion."""
    if ts_ms < now_ms - max_age_ms:
        found.append(f"ts: more than {max_age_ms / 3_600_000:g} h before ingestion ({_iso(ts_ms)}); "
                     "live events must be recent")
    elif ts_ms > now_ms + max_lead_ms:
        found.append(f"ts: more than {max_lead_ms / 60_000:g} min after ingestion ({_iso(ts_ms)}); "
                     "check the sender's clock")


def _ids(record: Record, found: list[str], *fields: str) -> None:
    for name in fields:
        check_string(record.get(name), name, found)


def _items(value: Any, field: str, found: list[str], low: int, high: int) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        found.append(f"{field}: expected a list, got {type(value).__name__}")
        return ()
    if not low <= len(value) <= high:
        found.append(f"{field}: {'an order needs' if field == 'lines' else 'must have'} {low} .. {high} "
                     f"{field}, got {len(value)}")
        return value[:high] if len(value) > high else value
    return value


def _event(record: Record, found: list[str]) -> None:
    _ids(record, found, "event_id", "member_id")
    check_string(record.get("session_id"), "session_id", found, required=False)
    check_time(record.get("ts"), "ts", found)


def _browse(record: Record, found: list[str]) -> None:
    _event(record, found)
    _ids(record, found, "sale_id", "sku")


def _cart(record: Record, found: list[str]) -> None:
    _event(record, found)
    _ids(record, found, "sale_id", "sku")
    check_number(record.get("quantity"), "quantity", found, 1, L.MAX_QUANTITY, integer=True)
    check_number(record.get("unit_price"), "unit_price", found, 0.0, L.MAX_PRICE)


def _order(record: Record, found: list[str]) -> None:
    _event(record, found)
    check_string(record.get("order_id"), "order_id", found)
    if record.get("event_id") and record.get("order_id") and record["event_id"] != record["order_id"]:
        found.append("event_id: must equal order_id, so an order is counted once")
    currency = record.get("currency", "EUR")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()
            and currency.isalpha()):
        found.append(f"currency: expected an ISO 4217 code such as EUR, got {excerpt(currency)}")
    check_string(record.get("region"), "region", found, required=False)
    for i, line in enumerate(_items(record.get("lines"), "lines", found, 1, L.MAX_ORDER_LINES)):
        if not isinstance(line, Mapping):
            found.append(f"lines[{i}]: expected an object, got {type(line).__name__}")
            continue
        at = f"lines[{i}]."
        check_string(line.get("sale_id"), f"{at}sale_id", found)
        check_string(line.get("sku"), f"{at}sku", found)
        check_number(line.get("quantity"), f"{at}quantity", found, 1, L.MAX_QUANTITY, integer=True)
        check_number(line.get("unit_price"), f"{at}unit_price", found, 0.0, L.MAX_PRICE)


def _sale(record: Record, found: list[str]) -> None:
    _ids(record, found, "event_id", "sale_id")
    check_string(record.get("brand"), "brand", found, max_length=L.MAX_TEXT_LENGTH)
    starts = check_time(record.get("starts_at"), "starts_at", found)
    ends = check_time(record.get("ends_at"), "ends_at", found)
    if starts is not None and ends is not None and ends <= starts:
        found.append("ends_at: must be after starts_at")
    check_time(record.get("updated_at"), "updated_at", found, required=False)
    for i, product in enumerate(_items(record.get("products", ()), "products", found, 0, L.MAX_SALE_PRODUCTS)):
        if not isinstance(product, Mapping):
            found.append(f"products[{i}]: expected an object, got {type(product).__name__}")
            continue
        at = f"products[{i}]."
        check_string(product.get("sku"), f"{at}sku", found)
        check_string(product.get("name"), f"{at}name", found, max_length=L.MAX_TEXT_LENGTH, required=False)
        check_string(product.get("category"), f"{at}category", found, max_length=L.MAX_TEXT_LENGTH, required=False)
        check_number(product.get("stock", 0), f"{at}stock", found, 0, L.MAX_STOCK, integer=True)
        check_number(product.get("price", 0.0), f"{at}price", found, 0.0, L.MAX_PRICE)


def _forecast(record: Record, found: list[str]) -> None:
    _ids(record, found, "sale_id", "sku")
    check_string(record.get("author"), "author", found, max_length=L.MAX_TEXT_LENGTH, required=False)
    check_time(record.get("submitted_at"), "submitted_at", found, required=False)
    expected, low, high = record.get("expected_units"), record.get("low"), record.get("high")
    before = len(found)
    check_number(expected, "expected_units", found, 0.0, L.MAX_FORECAST_UNITS)
    check_number(low, "low", found, 0.0, L.MAX_FORECAST_UNITS, required=False)
    check_number(high, "high", found, 0.0, L.MAX_FORECAST_UNITS, required=False)
    if len(found) > before:
        return
    if (low is None) != (high is None):
        found.append("low/high: give both ends of the 80% range, or neither")
    elif low is not None and not low <= expected <= high:
        found.append(f"low/high: need 0 <= low <= expected_units <= high, got {low} <= {expected} <= {high}")


def _stock(record: Record, found: list[str]) -> None:
    _ids(record, found, "sku")
    check_string(record.get("event_id"), "event_id", found, required=False)
    for name in ("on_hand", "inbound"):
        check_number(record.get(name, 0), name, found, 0, L.MAX_STOCK, integer=True)
    check_number(record.get("lead_time_hours", 24.0), "lead_time_hours", found, 0.0, L.MAX_LEAD_TIME_HOURS)
    check_time(record.get("inbound_eta"), "inbound_eta", found, required=False)
    check_time(record.get("updated_at"), "updated_at", found, required=False)


# Fast paths: the ingest validates every event (tens of thousands a second), and nearly all are fine. These say
# "usable" with a handful of C-level calls; anything they do not vouch for goes through the rule above, which
# names every problem. They must never accept what the rule refuses (tests/unit/test_validation.py checks).
_ID = L.MAX_ID_LENGTH


def _fast_ids(a: Any, b: Any, c: Any, d: Any) -> bool:
    return (type(a) is str and type(b) is str and type(c) is str and type(d) is str
            and 0 < len(a) <= _ID and 0 < len(b) <= _ID and 0 < len(c) <= _ID and 0 < len(d) <= _ID
            and (a + b + c + d).isprintable())


def _fast_session(record: Record) -> bool:
    session = record.get("session_id")
    return session is None or (type(session) is str and len(session) <= _ID and session.isprintable())


def _fast_ts(ts: Any) -> bool:
    return type(ts) is int and L.TS_MIN_MS <= ts < L.TS_MAX_MS


def _fast_units(quantity: Any, price: Any) -> bool:
    return (type(quantity) is int and 1 <= quantity <= L.MAX_QUANTITY
            and type(price) is float and 0.0 <= price <= L.MAX_PRICE)  # NaN fails both comparisons


def _browse_ok(r: Record, _min: int = L.TS_MIN_MS, _max: int = L.TS_MAX_MS, _id: int = L.MAX_ID_LENGTH) -> bool:
    # inlined on purpose: this runs for every view, the bulk of the traffic
    ts, a, b, c, d, session = (r.get("ts"), r.get("event_id"), r.get("member_id"), r.get("sale_id"), r.get("sku"),
                               r.get("session_id"))
    return (type(ts) is int and _min <= ts < _max
            and type(a) is str and type(b) is str and type(c) is str and type(d) is str
            and 0 < len(a) <= _id and 0 < len(b) <= _id and 0 < len(c) <= _id and 0 < len(d) <= _id
            and (a + b + c + d).isprintable()
            and (session is None or (type(session) is str and len(session) <= _id and session.isprintable())))


def _cart_ok(r: Record) -> bool:
    return _browse_ok(r) and _fast_units(r.get("quantity"), r.get("unit_price"))


def _order_ok(r: Record) -> bool:
    lines, event_id = r.get("lines"), r.get("event_id")
    if not (_fast_ts(r.get("ts")) and type(lines) is list and 0 < len(lines) <= L.MAX_ORDER_LINES
            and r.get("order_id") == event_id and r.get("currency", "EUR") in _CODES):
        return False
    region = r.get("region")
    if region is not None and not (type(region) is str and 0 < len(region) <= _ID and region.isprintable()):
        return False
    member = r.get("member_id")
    for line in lines:
        if not (type(line) is dict and _fast_ids(event_id, member, line.get("sale_id"), line.get("sku"))
                and _fast_units(line.get("quantity"), line.get("unit_price"))):
            return False
    return True


_CODES = frozenset({"EUR", "USD", "GBP", "CNY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY"})
FAST: dict[str, Callable[[Record], bool]] = {"BrowseEvent": _browse_ok, "CartEvent": _cart_ok,
                                             "OrderEvent": _order_ok}

RULES: dict[str, Callable[[Record, list[str]], None]] = {
    "BrowseEvent": _browse,
    "CartEvent": _cart,
    "OrderEvent": _order,
    "Sale": _sale,
    "ExpertForecast": _forecast,
    "StockLevel": _stock,
}


def problems(name: str, record: Record, *, now_ms: int | None = None,
             max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS, max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> list[str]:
    """Every broken rule of ``record`` as ``field: what is wrong``; empty when it is usable.

    ``now_ms`` (the time of ingestion) turns on the live event-time window for events whose channel is not
    ``replay``; without it only the absolute time range applies (Kafka producers such as replays and simulations
    run on their own clocks).
    """
    fast = FAST.get(name)
    if fast is not None and now_ms is None and type(record) is dict and fast(record):
        return []
    rule = RULES.get(name)
    if rule is None:
        return []
    if not isinstance(record, Mapping):
        return [f"{name}: expected a record, got {type(record).__name__}"]
    found: list[str] = []
    rule(record, found)
    if now_ms is not None and name in EVENT_RECORDS and record.get("channel") != "replay" and not found:
        check_window(time_ms(record.get("ts")) or 0, now_ms, found, max_age_ms, max_lead_ms)
    return found
