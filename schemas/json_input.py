"""JSON from HTTP callers into contract records, with errors that name the field and say what to fix.

The site and app teams post JSON; this module turns the body into Python (:func:`load_json`: bounded nesting,
UTF-8 only) and one JSON object into the Avro record it stands for (:func:`parse_event`, :func:`parse_forecast`,
through the typed models of :mod:`salepulse.schemas.requests`, the ones ``/openapi.json`` publishes), or raises
:class:`InputError` listing every problem at once (not just the first), so a caller fixes a payload in one go.
Nothing here raises anything else, whatever the input: the HTTP layer turns ``InputError`` into a 4xx.

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

import json
import re
from typing import Any

import numpy as np
from pydantic import ValidationError

from salepulse.schemas import limits as L
from salepulse.schemas import requests
from salepulse.schemas.requests import KINDS, forecast_id

__all__ = ["KINDS", "InputError", "forecast_id", "json_depth", "load_json", "parse_event",
           "parse_forecast"]
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


def parse_event(obj: Any, now_ms: int | None = None, *, window: bool = True,
                max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> tuple[str, dict[str, Any]]:
    """``(kind, record)`` of one JSON event, validated by its typed model (:mod:`salepulse.schemas.requests`).

    ``now_ms`` is the time of ingestion: it stamps an event sent without ``ts`` and, with ``window``, bounds the
    event time of live traffic (see :func:`salepulse.schemas.validation.problems`).
    """
    try:
        return requests.check_event(obj, now_ms, window=window, max_age_ms=max_age_ms, max_lead_ms=max_lead_ms)
    except ValidationError as error:
        raise InputError(requests.refusals(error, listed=False)[0]) from None


def parse_forecast(obj: Any, submitted_at_ms: int | None = None) -> dict[str, Any]:
    """An ExpertForecast record from JSON ``{sale_id, sku, expected_units, low?, high?, author?, buyer_id?}``."""
    try:
        return requests.check_forecast(obj, submitted_at_ms)
    except ValidationError as error:
        raise InputError(requests.refusals(error, "forecast", listed=False)[0]) from None
