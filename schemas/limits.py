"""Every input limit of salepulse, named once: the validation boundary, the JSON parser and the README read these.

A value outside these ranges is refused where it enters (HTTP 4xx, a dead letter, a CSV error naming the line),
never deep inside an agent. The ranges are generous for real shops and the public datasets (UCI Online Retail's
largest line is 80,995 units; REES46 and Taobao ids are under 40 characters) and tight enough that no sum, log or
ClickHouse column can overflow: ``MAX_ORDER_LINES * MAX_QUANTITY`` fits a 32-bit int, every price times quantity
is a finite double.

>>> MAX_ORDER_LINES * MAX_QUANTITY < 2**31
True
>>> from datetime import UTC, datetime
>>> datetime.fromtimestamp(TS_MAX_MS / 1000, UTC).year, TS_MAX_MS < 2**63
(2100, True)
>>> LIMITS["quantity"]
'1 .. 1,000,000 units per cart event or order line'
"""

from __future__ import annotations

MAX_ID_LENGTH = 200
"""Characters of an id (event, member, sale, sku, order, session): long enough for any hash or UUID scheme."""
MAX_TEXT_LENGTH = 500
"""Characters of free text (product name, category, brand, author, currency)."""
MAX_QUANTITY = 1_000_000
"""Units of one cart event or order line."""
MAX_ORDER_LINES = 2_000
"""Lines of one order (the largest UCI Online Retail invoice has about 1,100)."""
MAX_PRICE = 1_000_000.0
"""Price per unit, in the shop currency."""
MAX_FORECAST_UNITS = 100_000_000.0
"""A buyer's expected units (and the ends of the 80% range) for one product of one sale."""
MAX_STOCK = 1_000_000_000
"""Units on hand, inbound, or allocated to a sale."""
MAX_LEAD_TIME_HOURS = 24.0 * 365
"""Hours a restock takes."""
MAX_SALE_PRODUCTS = 100_000
"""Products of one sale (a replayed REES46 brand or Online Retail week has a few thousand)."""
TS_MIN_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: the earliest event, forecast or sale time accepted from anyone, replays included."""
TS_MAX_MS = 4_102_444_800_000
"""2100-01-01T00:00:00Z (exclusive): the latest. Both are far inside an Avro long and a ClickHouse DateTime64."""
DEFAULT_MAX_EVENT_AGE_MS = 7 * 24 * 3_600_000
"""Live traffic: an event older than this (relative to the time it arrives) is refused; SALEPULSE_EVENT_MAX_AGE_S."""
DEFAULT_MAX_EVENT_LEAD_MS = 5 * 60_000
"""Live traffic: an event dated further ahead than this is refused (clock skew allowance);
SALEPULSE_EVENT_MAX_LEAD_S."""
MAX_JSON_DEPTH = 8
"""Nesting of an HTTP body: a list of events of order lines is 4 deep; anything deeper is refused unparsed."""
MAX_BATCH_ITEMS = 10_000
"""Events or forecasts in one HTTP request (the body size limit usually bites first)."""
EXCERPT_CHARS = 80
"""Characters of a refused value quoted back in an error message."""

LIMITS: dict[str, str] = {
    "ids": f"1 .. {MAX_ID_LENGTH} printable characters (no control, format/bidi, surrogate, private-use or "
           f"unassigned code points; the only space allowed is U+0020)",
    "text": f"0 .. {MAX_TEXT_LENGTH} printable characters, same character class as ids",
    "quantity": f"1 .. {MAX_QUANTITY:,} units per cart event or order line",
    "order lines": f"1 .. {MAX_ORDER_LINES:,} per order",
    "unit_price, price": f"finite, 0 .. {MAX_PRICE:,.0f}",
    "expected_units, low, high": f"finite, 0 .. {MAX_FORECAST_UNITS:,.0f}, low <= expected_units <= high",
    "stock, on_hand, inbound": f"0 .. {MAX_STOCK:,}",
    "lead_time_hours": f"finite, 0 .. {MAX_LEAD_TIME_HOURS:,.0f}",
    "products per sale": f"0 .. {MAX_SALE_PRODUCTS:,}",
    "ts and every time": "2000-01-01T00:00:00Z <= t < 2100-01-01T00:00:00Z (epoch ms or ISO 8601)",
    "event time, live": "ingestion time - 7 days <= ts <= ingestion time + 5 minutes (configurable)",
    "JSON nesting": f"at most {MAX_JSON_DEPTH} levels",
    "items per request": f"at most {MAX_BATCH_ITEMS:,}",
}
"""The README's input limits table, in one place (``tests/unit/test_limits.py`` checks the README quotes it)."""
