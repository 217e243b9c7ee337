"""The typed bodies of ``POST /events`` and ``POST /forecasts``: the models ``/openapi.json`` publishes are the
ones that validate, and their errors say what to fix (``field: reason``, one per problem, all at once).

Pydantic (in Rust) checks the shape: the ``type`` of an event picks its model, each field has its JSON type
(strict: no ``"3"`` for 3, no ``true`` for 1), unknown fields are ignored. Then one rule per record,
:func:`salepulse.schemas.validation.problems` (also the rule of the Kafka ingest and the CSV loaders), checks
what a type cannot say (lengths, printable ids, finite numbers in range, the live event-time window), with the
limits of :mod:`salepulse.schemas.limits`. The JSON Schema of each field quotes those limits.

The models are TypedDicts, not ``BaseModel``: validating a 500-event batch builds no model instances, only the
dicts the codec encodes.

>>> now = 1_795_946_400_000
>>> kind, record = check_event({"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1",
...                             "sku": "k1", "ts": "2026-11-29T10:00:00Z", "colour": "red"}, now)
>>> kind, record["ts"], record["channel"], "colour" in record
('browse', 1795946400000, 'web', False)
>>> good, refused = check_events([{"type": "fax"}, "hello", {"type": "order", "event_id": "o1", "member_id": "m1",
...                                "lines": [{"sku": "k", "quantity": "2"}]}], now)
>>> for index, found in refused.items():
...     print(index, found)
0 ["type: must be one of browse, cart, order, got 'fax'"]
1 ['event: expected a JSON object, got str']
2 ['lines[0].sale_id: required', 'lines[0].quantity: expected integer, got str', 'lines[0].unit_price: required']
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, cast

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    with_config,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

from salepulse.schemas import limits as L
from salepulse.schemas.validation import check_window, excerpt, problems, time_ms
from salepulse.streams.platform.topology import EVENT_RECORDS

KINDS = EVENT_RECORDS
Record = dict[str, Any]
Checked = tuple[str, Record]
"""``(kind, record)``: what a valid event becomes, ready for the codec."""
STRICT = ConfigDict(strict=True, extra="ignore")


def _problem(reason: str) -> PydanticCustomError:
    return PydanticCustomError("salepulse", "{reason}", {"reason": reason})


# --- field types: what pydantic checks, and what the schema says the rule checks ----------------------------
def _ts(value: Any, info: ValidationInfo) -> int:
    """Epoch ms from epoch ms or ISO 8601; absent means the time of ingestion (from the validation context)."""
    if value is None:
        return _context(info).get("now_ms") or int(time.time() * 1000)
    if isinstance(value, str):
        try:
            if len(value) > 40:  # no ISO time is that long; do not hand megabytes to the parser
                raise ValueError(value)
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            ms = time_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
        except (ValueError, OverflowError, OSError):
            raise _problem(f"{excerpt(value)} is not an ISO 8601 time (e.g. 2026-11-29T10:00:00Z)") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        ms = time_ms(value)
    else:
        raise _problem(f"expected epoch milliseconds or an ISO 8601 time, got {type(value).__name__}")
    if ms is None:
        raise _problem(f"must be 2000-01-01 .. 2100-01-01 (epoch ms or ISO 8601), got {excerpt(value)}")
    return ms


LINES_REQUIRED = "required, a non-empty list of {sale_id, sku, quantity, unit_price}"


def _lines(value: Any) -> Any:
    # checked before the lines themselves, so a 50,000-line order is refused without validating each line
    if not isinstance(value, list) or not value:
        raise _problem(LINES_REQUIRED)
    if len(value) > L.MAX_ORDER_LINES:
        raise _problem(f"at most {L.MAX_ORDER_LINES} per order, got {len(value)}")
    return value


def _text(limit: int, low: int, description: str) -> Any:
    return Field(description=description, json_schema_extra={"minLength": low, "maxLength": limit})


def _range(low: float, high: float, description: str) -> Any:
    return Field(description=description, json_schema_extra={"minimum": low, "maximum": high})


Id = Annotated[str, _text(L.MAX_ID_LENGTH, 1, "An id: printable characters, no control or bidi characters.")]
OptionalId = Annotated[str | None, _text(L.MAX_ID_LENGTH, 1, "An optional id.")]
Text = Annotated[str | None, _text(L.MAX_TEXT_LENGTH, 0, "Free text, printable characters.")]
Quantity = Annotated[int, _range(1, L.MAX_QUANTITY, "Units.")]
Price = Annotated[float, _range(0, L.MAX_PRICE, "Price per unit, finite.")]
Units = Annotated[float, _range(0, L.MAX_FORECAST_UNITS, "Units of demand, finite.")]
OptionalUnits = Annotated[float | None, _range(0, L.MAX_FORECAST_UNITS, "Units of demand, finite.")]
Timestamp = Annotated[int | float | str | None, PlainValidator(_ts, json_schema_input_type=int | str | None), Field(
    description="Epoch milliseconds or an ISO 8601 time (e.g. 2026-11-29T10:00:00Z), 2000-01-01 .. 2100-01-01, "
                "within the last 7 days and at most 5 minutes ahead for live traffic; absent means now.")]
Channel = Literal["web", "app"]


# --- the bodies --------------------------------------------------------------------------------------------
# Fields are written out per model (no shared base) so each one's problems come in the order a reader sees them.
@with_config(STRICT)
class BrowseIn(TypedDict):
    """A product page view."""

    type: Literal["browse"]
    event_id: Id
    member_id: Id
    sale_id: Id
    sku: Id
    session_id: NotRequired[OptionalId]
    channel: NotRequired[Channel]
    ts: NotRequired[Timestamp]


@with_config(STRICT)
class CartIn(TypedDict):
    """A product added to or removed from the cart."""

    type: Literal["cart"]
    event_id: Id
    member_id: Id
    sale_id: Id
    sku: Id
    action: Literal["add", "remove"]
    quantity: Quantity
    unit_price: Price
    session_id: NotRequired[OptionalId]
    channel: NotRequired[Channel]
    ts: NotRequired[Timestamp]


@with_config(STRICT)
class OrderLine(TypedDict):
    sale_id: Id
    sku: Id
    quantity: Quantity
    unit_price: Price


@with_config(STRICT)
class OrderIn(TypedDict):
    """A placed order; ``order_id`` defaults to ``event_id`` (and must equal it, so an order is counted once)."""

    type: Literal["order"]
    event_id: Id
    member_id: Id
    order_id: NotRequired[OptionalId]
    currency: NotRequired[Annotated[str | None, Field(description="ISO 4217 code, default EUR.")]]
    region: NotRequired[Annotated[OptionalId, Field(
        description="The member's delivery region (warehouse), when known: stocking plans are split by it.")]]
    lines: Annotated[list[OrderLine], BeforeValidator(_lines), Field(
        json_schema_extra={"minItems": 1, "maxItems": L.MAX_ORDER_LINES})]
    channel: NotRequired[Channel]
    ts: NotRequired[Timestamp]


@with_config(STRICT)
class ForecastIn(TypedDict):
    """A buyer's expert forecast of a product's total demand in a sale, with an optional 80% range."""

    sale_id: Id
    sku: Id
    expected_units: Units
    low: NotRequired[OptionalUnits]
    high: NotRequired[OptionalUnits]
    author: NotRequired[Text]
    buyer_id: NotRequired[OptionalId]


Event = Annotated[BrowseIn | CartIn | OrderIn, Field(discriminator="type")]
EventsIn = Event | list[Event]
"""The body of ``POST /events``: one event or a list of them."""
ForecastsIn = ForecastIn | list[ForecastIn]
"""The body of ``POST /forecasts``."""


# --- the rules after the shape -----------------------------------------------------------------------------
def _context(info: ValidationInfo) -> dict[str, Any]:
    return cast(dict[str, Any], info.context or {})


def _event_record(event: dict[str, Any], info: ValidationInfo) -> Checked:
    """The Avro record of a well-shaped event, or every broken rule at once."""
    ctx = _context(info)
    record = {k: v for k, v in event.items() if v is not None}
    kind = record.pop("type")
    record.setdefault("channel", "web")
    if "ts" not in record:  # absent: _ts never ran
        record["ts"] = ctx.get("now_ms") or int(time.time() * 1000)
    if kind == "order":
        record.setdefault("order_id", record["event_id"])
        record.setdefault("currency", "EUR")
        record.setdefault("region", None)
    # the window apart, so a usable event takes the rule's fast path (problems() skips it when given now_ms)
    found = problems(KINDS[kind], record)
    now = ctx.get("now_ms")
    if not found and now is not None and ctx.get("window", True) and record["channel"] != "replay":
        check_window(record["ts"], now, found, ctx.get("max_age_ms", L.DEFAULT_MAX_EVENT_AGE_MS),
                     ctx.get("max_lead_ms", L.DEFAULT_MAX_EVENT_LEAD_MS))
    if found:
        raise PydanticCustomError("rules", "{problems}", {"problems": found})
    return kind, record


def forecast_id(record: Record) -> str:
    """The id of a forecast: its content, never its arrival time, so a retried submission keeps its identity.

    >>> forecast_id({"sale_id": "s1", "sku": "k1", "expected_units": 120.0, "low": None, "high": None,
    ...              "author": "anna"})
    's1:k1:8b9e121d23e3eee5'
    """
    fields = ("sale_id", "sku", "expected_units", "low", "high", "author", "buyer_id")
    content = json.dumps([record.get(k) for k in fields])
    return f"{record['sale_id']}:{record['sku']}:{hashlib.sha256(content.encode()).hexdigest()[:16]}"


def _forecast_record(forecast: dict[str, Any], info: ValidationInfo) -> Record:
    record: Record = {"low": None, "high": None, "author": None, "buyer_id": None, **forecast}
    record["submitted_at"] = _context(info).get("now_ms") or int(time.time() * 1000)
    found = problems("ExpertForecast", record)
    if found:
        raise PydanticCustomError("rules", "{problems}", {"problems": found})
    record["event_id"] = forecast_id(record)
    return record


_EVENT = TypeAdapter(Annotated[Event, AfterValidator(_event_record)])
_EVENTS = TypeAdapter(list[Annotated[Event, AfterValidator(_event_record)]])
_FORECAST = TypeAdapter(Annotated[ForecastIn, AfterValidator(_forecast_record)])
_FORECASTS = TypeAdapter(list[Annotated[ForecastIn, AfterValidator(_forecast_record)]])


# --- errors that say what to fix ---------------------------------------------------------------------------
_EXPECTED = {"string_type": "string", "int_type": "integer", "float_type": "number", "list_type": "list",
             "bool_type": "boolean"}
_CHOICES = {"action": "add or remove", "channel": "web or app"}


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _message(error: ErrorDetails, fields: Sequence[int | str], what: str) -> list[str]:
    kind, value, path = error["type"], error["input"], _path(fields)
    if kind == "rules":
        return list(error["ctx"]["problems"])
    if kind == "salepulse":
        return [f"{path}: {error['msg']}"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return [f"type: must be one of {', '.join(KINDS)}, got {excerpt(value.get('type'))}"]
    if kind in ("model_attributes_type", "dict_type"):
        return [f"{path or what}: expected {'a JSON object' if not path else 'an object'}, got {type(value).__name__}"]
    if kind == "missing" or (value is None and fields and fields[-1] != "channel"):
        return [f"{path}: {LINES_REQUIRED if path == 'lines' else 'required'}"]
    if kind == "literal_error":
        return [f"{path}: must be {_CHOICES.get(str(fields[-1]), error['ctx']['expected'])}, got {excerpt(value)}"]
    if kind in _EXPECTED:
        return [f"{path}: expected {_EXPECTED[kind]}, got {type(value).__name__}"]
    return [f"{path}: {error['msg']}"]  # a check added to a model later: pydantic's words, still naming the field


def refusals(error: ValidationError, what: str = "event", listed: bool = True) -> dict[int, list[str]]:
    """``index -> ["field: reason", ...]`` from a validation of a list (``listed``) or of one item (index 0)."""
    found: dict[int, list[str]] = {}
    for detail in error.errors(include_url=False):
        loc = detail["loc"]
        index = loc[0] if listed else 0
        fields = loc[1:] if listed else loc
        if fields and fields[0] in KINDS:  # the discriminator's branch, not a field of the body
            fields = fields[1:]
        found.setdefault(cast(int, index), []).extend(_message(detail, fields, what))
    return found


def validation_context(now_ms: int | None, *, window: bool = True, max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                       max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> dict[str, Any]:
    """The time of ingestion and, for live traffic (``window``), the event-time window around it."""
    return {"now_ms": now_ms if now_ms is not None else int(time.time() * 1000), "window": window,
            "max_age_ms": max_age_ms, "max_lead_ms": max_lead_ms}


def check_events(rows: list[Any], now_ms: int | None = None, *, window: bool = True,
                 max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS, max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS,
                 ) -> tuple[dict[int, Checked], dict[int, list[str]]]:
    """``(index -> (kind, record), index -> problems)`` for every item of ``rows``, checked at ``now_ms``.

    One validation of the whole list; when some item fails, the others are validated again one by one (pydantic
    returns nothing of a list that fails), so a bad event costs a little and a good batch nothing extra.
    """
    context = validation_context(now_ms, window=window, max_age_ms=max_age_ms, max_lead_ms=max_lead_ms)
    try:
        return dict(enumerate(_EVENTS.validate_python(rows, context=context))), {}
    except ValidationError as error:
        refused = refusals(error)
    good = {}
    for index, row in enumerate(rows):
        if index not in refused:
            good[index] = _EVENT.validate_python(row, context=context)
    return good, refused


def check_event(obj: Any, now_ms: int | None = None, *, window: bool = True,
                max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS) -> Checked:
    """``(kind, record)`` of one event; :class:`pydantic.ValidationError` otherwise (:func:`refusals` words it)."""
    context = validation_context(now_ms, window=window, max_age_ms=max_age_ms, max_lead_ms=max_lead_ms)
    return cast(Checked, _EVENT.validate_python(obj, context=context))


def check_forecasts(rows: list[Any], now_ms: int | None = None) -> tuple[list[Record], dict[int, list[str]]]:
    """Every ExpertForecast record of ``rows``, or (none and) the problems of each refused one."""
    try:
        return _FORECASTS.validate_python(rows, context=validation_context(now_ms)), {}
    except ValidationError as error:
        return [], refusals(error, "forecast")


def check_forecast(obj: Any, now_ms: int | None = None) -> Record:
    """One ExpertForecast record; :class:`pydantic.ValidationError` otherwise."""
    return cast(Record, _FORECAST.validate_python(obj, context=validation_context(now_ms)))
