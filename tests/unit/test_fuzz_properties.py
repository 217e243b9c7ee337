"""Property-based fuzz of the input boundary (Hypothesis): the JSON parser, the validation rules, the collector and
the Avro decoder. Whatever they are given, only the documented outcomes come out: a value, :class:`InputError`
(a 4xx), :class:`DecodeError` (a dead letter) or :class:`PriorsFileError` (a CSV refused with its lines). And what
they accept is usable: it encodes to Avro, passes validation, and every number in it is finite and in range.

Derandomized and bounded, so CI is deterministic and fast (a few seconds).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salepulse.consumers.tools.priors import PriorsFileError, read_priors_csv
from salepulse.schemas import limits as L
from salepulse.schemas.codec import Codec, DecodeError
from salepulse.schemas.json_input import KINDS, InputError, load_json, parse_event, parse_forecast
from salepulse.schemas.validation import RULES, problems
from salepulse.streams.domain.collector import collect_events, collect_forecasts

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
NOW = 1_764_403_200_000
CODEC = Codec()

NASTY_STRINGS = ["", "\x00", "\ud800", "a\u202eb", "\u2066x", " ", "\ufeff", "x" * 5_000, "e\u0301", "k\x7f",
                 "2026-11-29T10:00:00Z", "9999-12-31T23:59:59", "browse", "cart", "order", "add", "web"]
nasty_text = st.one_of(st.text(max_size=12), st.sampled_from(NASTY_STRINGS))
nasty_number = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 2**80, 1e308, 1e999, -1e999, float("nan"), 9e15, 3_000_000_000,
                     NOW, NOW + 3_600_000 * 24 * 365 * 80, True, False]),
)
scalar = st.one_of(st.none(), st.booleans(), nasty_number, nasty_text)
json_value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(nasty_text, inner, max_size=3)),
                          max_leaves=12)


def field_value(valid: Any) -> st.SearchStrategy[Any]:
    """Mostly the valid value, often a nasty one: deep enough into the rules to reach every branch."""
    return st.one_of(st.just(valid), st.just(valid), scalar, st.lists(scalar, max_size=2))


VALID_EVENTS = [
    {"type": "browse", "event_id": "b1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "ts": NOW - 60_000},
    {"type": "cart", "event_id": "c1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "action": "add",
     "quantity": 1, "unit_price": 9.5, "channel": "app", "session_id": "x"},
    {"type": "order", "event_id": "o1", "member_id": "m1", "currency": "EUR", "ts": "2025-11-29T07:00:00Z",
     "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 9.5},
               {"sale_id": "s2", "sku": "k2", "quantity": 1, "unit_price": 0.0}]},
]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with 0 to 2 fields (or order-line fields) replaced, added or removed."""
    event = json.loads(json.dumps(draw(st.sampled_from(VALID_EVENTS))))
    for _ in range(draw(st.integers(0, 2))):
        target = event
        lines = event.get("lines")
        if isinstance(lines, list) and len(lines) == 2 and all(isinstance(x, dict) for x in lines) \
                and draw(st.booleans()):
            target = lines[draw(st.integers(0, 1))]
        name = draw(st.one_of(st.sampled_from(sorted(target)), nasty_text))
        if draw(st.integers(0, 4)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(st.one_of(st.sampled_from(NASTY_STRINGS), nasty_number, scalar,
                                          st.lists(scalar, max_size=2)))
    return event


forecasts = st.fixed_dictionaries(
    {"sale_id": field_value("s1"), "sku": field_value("k1"), "expected_units": field_value(120.0)},
    optional={"low": field_value(80.0), "high": field_value(200.0), "author": field_value("anna")},
)


def assert_usable(name: str, record: dict[str, Any]) -> None:
    assert problems(name, record) == []
    CODEC.encode(name, record)  # the Avro contract accepts it: producing it cannot fail on the data
    numbers = [v for v in record.values() if isinstance(v, int | float)]
    numbers += [v for line in record.get("lines", []) for v in line.values() if isinstance(v, int | float)]
    assert all(math.isfinite(v) and abs(v) < L.TS_MAX_MS for v in numbers)
    strings = [v for v in record.values() if isinstance(v, str)]
    strings += [v for line in record.get("lines", []) for v in line.values() if isinstance(v, str)]
    assert all(len(v) <= L.MAX_TEXT_LENGTH and v.isprintable() for v in strings)


@FUZZ
@given(st.binary(max_size=300))
def test_load_json_refuses_any_bytes_with_input_error_only(body: bytes) -> None:
    try:
        load_json(body)
    except InputError as error:
        assert error.problems and error.problems[0].startswith("body: ")


@FUZZ
@given(json_value)
def test_load_json_reads_what_json_dumps_wrote(value: Any) -> None:
    body = json.dumps(value, ensure_ascii=True).encode()
    try:
        parsed = load_json(body)
    except InputError as error:
        assert "nested" in error.problems[0]
        return
    assert json.dumps(parsed, ensure_ascii=True) == json.dumps(value, ensure_ascii=True)


@FUZZ
@given(st.one_of(events(), json_value))
def test_parse_event_accepts_only_usable_events(obj: Any) -> None:
    try:
        kind, record = parse_event(obj, NOW)
    except InputError as error:
        assert error.problems and all(isinstance(p, str) and len(p) < 400 for p in error.problems)
        json.dumps(error.problems)  # quoted back to the caller: must serialise
        return
    assert_usable(KINDS[kind], record)
    assert NOW - L.DEFAULT_MAX_EVENT_AGE_MS <= record["ts"] <= NOW + L.DEFAULT_MAX_EVENT_LEAD_MS


@FUZZ
@given(st.one_of(forecasts, json_value))
def test_parse_forecast_accepts_only_usable_forecasts(obj: Any) -> None:
    try:
        record = parse_forecast(obj, submitted_at_ms=NOW)
    except InputError as error:
        assert error.problems
        return
    assert_usable("ExpertForecast", record)


@FUZZ
@given(st.sampled_from(sorted(RULES)), st.one_of(json_value, events(), forecasts))
def test_problems_never_raises(name: str, record: Any) -> None:
    found = problems(name, record, now_ms=NOW)
    assert isinstance(found, list) and all(isinstance(p, str) for p in found)


@FUZZ
@given(st.one_of(st.lists(st.one_of(events(), json_value), max_size=5).map(json.dumps),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_collector_answers_a_4xx_or_202_for_any_body(text: str) -> None:
    body = text.encode("utf-8", "surrogatepass")
    batch = collect_events(body, NOW)
    answer = batch.answer(stored=len(batch.events))
    assert answer.status in (202, 400, 413, 422)
    json.dumps(answer.body, allow_nan=False)  # the answer itself is valid JSON
    indexes = [e.index for e in batch.events] + [r["index"] for r in batch.refused]
    assert len(indexes) == len(set(indexes))  # every item is either stored or refused, once
    records, refusal = collect_forecasts(body, NOW)
    assert (refusal is None and records) or (refusal is not None and not records)  # all or nothing


def valid_encodings() -> list[bytes]:
    return [
        CODEC.encode("BrowseEvent", {"event_id": "b1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "ts": NOW}),
        CODEC.encode("OrderEvent", {"event_id": "o1", "order_id": "o1", "member_id": "m1", "ts": NOW,
                                    "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 9.5}]}),
        CODEC.encode("CartEvent", {"event_id": "c1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "ts": NOW,
                                   "action": "add", "quantity": 1, "unit_price": 3.0}),
    ]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(valid_encodings())))
    how = draw(st.sampled_from(["truncate", "flip", "append", "splice"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "append":
        return bytes(data) + draw(st.binary(min_size=1, max_size=20))
    i = draw(st.integers(10, len(data) - 1))
    return bytes(data[:i]) + draw(st.binary(max_size=30))


@FUZZ
@given(st.one_of(st.binary(max_size=200), damaged()))
def test_avro_decoder_raises_decode_error_only_and_validation_handles_what_it_decodes(data: bytes) -> None:
    try:
        name, record = CODEC.decode(data, timestamps="ms")
    except DecodeError:
        return
    problems(name, record)
    problems(name, record, now_ms=NOW)


@FUZZ
@given(st.lists(st.tuples(nasty_text, nasty_text, st.one_of(nasty_text, nasty_number.map(str))), max_size=4))
def test_priors_csv_is_loaded_usable_or_refused(rows: list[tuple[str, str, str]]) -> None:
    import csv

    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(["sale_id", "sku", "expected_units"])
    writer.writerows(rows)
    try:
        records = read_priors_csv(io.StringIO(handle.getvalue()), submitted_at_ms=NOW)
    except PriorsFileError:
        return
    for record in records:
        assert_usable("ExpertForecast", record)


@st.composite
def decoded_like(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A record as the ingest sees it (types mostly right, values anywhere), for the validation fast paths."""
    event = draw(events())
    name = KINDS.get(event.pop("type", None) if isinstance(event.get("type"), str) else None, "BrowseEvent")
    if name == "OrderEvent":
        event.setdefault("order_id", event.get("event_id"))
    return name, event


@FUZZ
@given(decoded_like())
def test_validation_fast_paths_never_accept_what_the_rules_refuse(item: tuple[str, dict[str, Any]]) -> None:
    from salepulse.schemas.validation import FAST

    name, record = item
    found: list[str] = []
    RULES[name](record, found)
    if FAST[name](record):
        assert found == [], (record, found)
