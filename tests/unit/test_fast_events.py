"""The collector's fast path (schemas/fast_events.py) against the reference path it stands in for (Hypothesis).

The reference is the per-event validation of ``POST /events`` as it was: stdlib JSON with the nesting scan, the
typed models with one rule call per event (``collect_events(..., fast=False)``). Whatever the body, the collector
with its fast path answers exactly what the reference answers: the same events stored (same records, so the same
Avro bytes), the same refusals in the same words, the same body-level 4xx. And the fast path, where it answers,
gives the reference's records; where it does not vouch, it answers None.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salepulse.schemas import limits as L
from salepulse.schemas.codec import Codec
from salepulse.schemas.fast_events import fast_events, iso_ms, parse
from salepulse.schemas.requests import KINDS, check_events
from salepulse.streams.domain.collector import EventBatch, collect_events
from tests.unit.test_fuzz_properties import NASTY_STRINGS, events, json_value, scalar

SAME = settings(max_examples=400, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
NOW = 1_764_403_200_000
CODEC = Codec()
AGE, LEAD = L.DEFAULT_MAX_EVENT_AGE_MS, L.DEFAULT_MAX_EVENT_LEAD_MS

usual = st.sampled_from(["e1", "m1", "s1", "k1", "a b", "x" * 200, "\u00e9t\u00e9"])
odd_ids = st.one_of(st.text(min_size=1, max_size=6), st.sampled_from(["x" * 201, "\u202e", "", "a\x00", "\ud800"]))
inside = st.one_of(st.none(), st.integers(NOW - AGE, NOW + LEAD), st.sampled_from(
    [NOW - AGE, NOW + LEAD, float(NOW), NOW + 0.5, "2025-11-29T07:00:00Z", "2025-11-29T07:00:00",
     "2025-11-29 08:00:00+01:00"]))
odd_times = st.sampled_from([NOW - AGE - 1, NOW + LEAD + 1, "2025-11-22T07:00:00Z", "2025-11-29", "x", True,
                             float("inf"), 2**70, [NOW]])
prices = st.one_of(st.floats(0, L.MAX_PRICE), st.integers(0, 1000))
odd_prices = st.sampled_from([-0.0, 1e6, 1e6 + 1, -1, 2_000_000, "9.9", None, float("nan"), 2**64])
quantities = st.integers(1, L.MAX_QUANTITY)
odd_quantities = st.sampled_from([0, -1, L.MAX_QUANTITY + 1, 1.0, True, 2**64, None, "1"])
odd = st.one_of(scalar, json_value, st.sampled_from(["web", "app", "replay", "WEB", "add", "remove", "EUR"]))
extras = st.dictionaries(st.sampled_from(["utm", "colour", "x", "type2"]), st.one_of(scalar, json_value), max_size=2)
ODD = {"event_id": odd_ids, "member_id": odd_ids, "sale_id": odd_ids, "sku": odd_ids, "session_id": odd_ids,
       "order_id": odd_ids, "region": odd_ids, "ts": odd_times, "unit_price": odd_prices, "quantity": odd_quantities,
       "channel": st.sampled_from(["replay", None, "WEB", 1]), "action": st.sampled_from(["ADD", None, 1]),
       "currency": st.sampled_from(["eur", "EURO", "XYZ", 3]), "type": st.sampled_from(["fax", None, 1])}


def oddly(draw: st.DrawFn, target: dict[str, Any]) -> None:
    """One field of ``target`` made odd: a value on or past an edge of the rules, another type, or gone."""
    name = draw(st.sampled_from(sorted({*target, "utm"})))
    if draw(st.integers(0, 5)) == 0:
        target.pop(name, None)
    else:
        target[name] = draw(st.one_of(ODD.get(name, odd), odd))


@st.composite
def plausible(draw: st.DrawFn) -> dict[str, Any]:
    """An event as a site sends one: valid, then 0 to 2 of its fields (or of its lines' fields) made odd."""
    kind = draw(st.sampled_from(["browse", "cart", "order"]))
    event: dict[str, Any] = {"type": kind, "event_id": draw(usual), "member_id": draw(usual)}
    if kind == "order":
        for name, values in (("order_id", st.just(event["event_id"])), ("currency", st.sampled_from(["EUR", "USD"])),
                             ("region", usual)):
            if draw(st.booleans()):
                event[name] = draw(st.one_of(values, st.none()))
        line = st.fixed_dictionaries({"sale_id": usual, "sku": usual, "quantity": quantities, "unit_price": prices})
        event["lines"] = draw(st.lists(line, min_size=1, max_size=3))
    else:
        event.update(sale_id=draw(usual), sku=draw(usual))
        if draw(st.booleans()):
            event["session_id"] = draw(st.one_of(usual, st.none()))
        if kind == "cart":
            event.update(action=draw(st.sampled_from(["add", "remove"])), quantity=draw(quantities),
                         unit_price=draw(prices))
    if draw(st.booleans()):
        event["channel"] = draw(st.sampled_from(["web", "app"]))
    if draw(st.integers(0, 4)):
        event["ts"] = draw(inside)
    if draw(st.booleans()):
        event.update(draw(extras))
    for _ in range(draw(st.integers(0, 2))):
        lines = event.get("lines")
        if isinstance(lines, list) and lines and isinstance(lines[0], dict) and draw(st.booleans()):
            oddly(draw, lines[draw(st.integers(0, len(lines) - 1))])
        else:
            oddly(draw, event)
    return event


item = st.one_of(plausible(), plausible(), events(), json_value)


def outcome(batch: EventBatch) -> tuple[Any, ...]:
    stored = [(e.index, e.kind, typed(e.record), e.ts_stamped, e.headers) for e in batch.events]
    answer = batch.answer(stored=len(batch.events))
    return stored, answer.status, json.dumps(answer.body, sort_keys=True)


def typed(value: Any) -> Any:
    """``value`` with the type of every leaf, so 1 and 1.0 (equal in Python) differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def avro(batch: EventBatch) -> list[bytes]:
    return [CODEC.encode(KINDS[e.kind], e.record) for e in batch.events]


def same(body: bytes, window: bool = True) -> None:
    fast, reference = (collect_events(body, NOW, window=window, fast=flag) for flag in (True, False))
    assert outcome(fast) == outcome(reference)
    assert avro(fast) == avro(reference)  # same dicts and the same types in them (an int price is not a float)


@SAME
@given(st.lists(plausible(), min_size=1, max_size=4), st.booleans())
def test_a_batch_of_plausible_events_gets_the_reference_answer(rows: list[Any], window: bool) -> None:
    same(json.dumps(rows).encode(), window)


@SAME
@given(st.one_of(st.lists(item, max_size=4), item))
def test_any_body_gets_the_reference_answer(rows: Any) -> None:
    same(json.dumps(rows).encode("utf-8", "surrogatepass"))


@SAME
@given(st.one_of(st.binary(max_size=120), st.sampled_from(
    [b"", b" ", b"[]", b"{}", b"[" * 9 + b"]" * 9, b"[1e999]", b"[NaN]", b"\xef\xbb\xbf[]", b"[" + b"9" * 30 + b"]",
     b'[{"type":"browse","event_id":"e","member_id":"m","sale_id":"s","sku":"k","x":[[[[[[[[1]]]]]]]]}]',
     b'[{"type":"browse","event_id":"e","member_id":"m","sale_id":"s","sku":"k","x":' + b"9" * 400 + b"}]",
     b'{"type":"browse","event_id":"e","member_id":"m","sale_id":"s","sku":"k","event_id":"e2"}',
     b'[{"type":"browse","event_id":"\\ud800","member_id":"m","sale_id":"s","sku":"k"}]'])))
def test_any_bytes_get_the_reference_answer(body: bytes) -> None:
    same(body)


@SAME
@given(plausible())
def test_the_fast_path_vouches_only_for_what_the_reference_accepts_and_builds_the_same_record(row: Any) -> None:
    checked = fast_events(parse(json.dumps(row).encode()), NOW)
    good, refused = check_events([row], NOW)
    if checked is not None:
        assert not refused and checked[0] == good[0]
        kind, record = checked[0]
        assert CODEC.encode(KINDS[kind], record) == CODEC.encode(KINDS[kind], good[0][1])
        assert typed(record) == typed(good[0][1])


def test_the_fast_path_takes_a_site_batch() -> None:
    """Not a property: the fast path must actually be taken for ordinary traffic, or it is dead code."""
    from salepulse.streams.tools.bench_collector import body_of, templates

    body = body_of(templates(2_000), 0, "r1", NOW)
    rows = parse(body)
    assert fast_events(rows, NOW) is not None and len(rows) == 100
    assert {row["type"] for row in parse(body_of(templates(2_000), 0, "r", NOW, 2_000))} == {"browse", "cart",
                                                                                              "order"}
    same(body)


def test_iso_times_read_as_the_models_read_them() -> None:
    for text in ["2025-11-29T07:00:00Z", "2025-11-29T07:00:00", "2025-11-29 08:00:00+01:00", "2025-11-29",
                 *NASTY_STRINGS]:
        if not isinstance(text, str):
            continue
        row = {"type": "browse", "event_id": "e", "member_id": "m", "sale_id": "s", "sku": "k", "ts": text}
        good, _ = check_events([row], NOW, window=False)
        assert iso_ms(text) == (good[0][1]["ts"] if good else None)


def test_nasty_numbers_never_pass_as_quantities() -> None:
    for number in [1.0, True, 2**64, float("nan"), -1, 0]:
        row = {"type": "cart", "event_id": "e", "member_id": "m", "sale_id": "s", "sku": "k", "action": "add",
               "quantity": number, "unit_price": 1.0, "ts": NOW}
        assert fast_events([row], NOW) is None, number
