"""The collector's pure logic and the input rows of issue #9, without a broker (the live versions are in
tests/integration/test_fuzz_http.py). Each test names the row; on the code before #9 each input was accepted or
raised (the old parse_event took 1e999, NaN, 2**80, huge and bidi ids, and raised TypeError on a list as type)."""

from __future__ import annotations

import io
import json

import pytest

from salepulse.consumers.tools.priors import PriorsFileError, read_priors_csv
from salepulse.streams.domain.collector import (
    TS_HEADER,
    authorize,
    bearer_matches,
    collect_events,
    collect_forecasts,
    content_type_problem,
    security_warnings,
)

NOW = 1_764_403_200_000


def browse(i: int, **changes: object) -> dict:
    return {"type": "browse", "event_id": f"b{i}", "member_id": "m1", "sale_id": "s1", "sku": "k1",
            "ts": NOW - 1000, **changes}


def order(i: int, quantity: object = 2, **changes: object) -> dict:
    return {"type": "order", "event_id": f"o{i}", "member_id": "m1", "ts": NOW - 1000,
            "lines": [{"sale_id": "s1", "sku": "k1", "quantity": quantity, "unit_price": 9.5}], **changes}


def refused_problems(body: str) -> list[str]:
    batch = collect_events(body.encode("utf-8", "surrogatepass"), NOW)
    answer = batch.answer(stored=len(batch.events))
    assert answer.status in (400, 413, 422), answer
    json.dumps(answer.body, allow_nan=False)
    return [p for item in answer.body.get("refused", []) for p in item["problems"]] or [answer.body["error"]]


def test_row1_and_row6_non_finite_prices() -> None:
    text = json.dumps(order(1)).replace("9.5", "1e999")
    assert refused_problems(text) == ["lines[0].unit_price: must be a finite number, got inf"]
    text = json.dumps(order(1)).replace("9.5", "NaN")
    assert refused_problems(text) == ["lines[0].unit_price: must be a finite number, got nan"]


@pytest.mark.parametrize("value", ["1e999", "NaN", "1e308", "-Infinity"])
def test_row2_forecasts_and_priors_csv(value: str) -> None:
    body = f'{{"sale_id": "s1", "sku": "k1", "expected_units": {value}}}'.encode()
    records, refusal = collect_forecasts(body, NOW)
    assert not records and refusal is not None and refusal.status == 422
    csv_value = {"1e999": "inf", "NaN": "nan", "1e308": "1e308", "-Infinity": "-inf"}[value]
    with pytest.raises(PriorsFileError, match="line 2: expected_units: must be"):
        read_priors_csv(io.StringIO(f"sale_id,sku,expected_units\ns1,k1,{csv_value}\n"), submitted_at_ms=NOW)


def test_row3_huge_ids_are_refused_without_echoing_them() -> None:
    batch = collect_events(json.dumps([browse(1, event_id="e" * 505_000), browse(2, sale_id="s" * 510_000)])
                           .encode(), NOW)
    assert not batch.events
    assert [(r["index"], r["event_id"]) for r in batch.refused] == [(0, None), (1, "b2")]
    assert len(json.dumps(batch.answer(stored=0).body)) < 1_000


def test_row4_quantity_and_many_months() -> None:
    assert refused_problems(json.dumps(order(1, quantity=3_000_000_000)))[0].startswith(
        "lines[0].quantity: must be 1 .. 1,000,000")
    months = [browse(i, ts=NOW - 1000 - i * 31 * 86_400_000) for i in range(101)]
    batch = collect_events(json.dumps(months).encode(), NOW)
    assert len(batch.events) == 1 and len(batch.refused) == 100


def test_row5_future_times() -> None:
    for ts in ("2100-06-01T00:00:00Z", 9e15, NOW + 3_600_000):
        assert refused_problems(json.dumps(browse(1, ts=ts)))[0].startswith("ts: ")


def test_row7_poison_in_the_middle_keeps_the_good_ones_and_names_the_bad() -> None:
    body = json.dumps([order(1), browse(2, sku="\ud800"), order(3)]).encode()
    batch = collect_events(body, NOW)
    assert [e.record["event_id"] for e in batch.events] == ["o1", "o3"]
    assert batch.answer(stored=2).status == 422 and batch.refused[0]["index"] == 1
    for text in ('{"type": ["browse"]}', json.dumps(order(1, quantity=2**80)),
                 json.dumps(browse(1, ts=0)).replace('"ts": 0', '"ts": NaN'), "[" * 1000 + "]" * 1000):
        refused_problems(text)
    assert not bearer_matches("Bearer t\u00f6ken\udcff", ["token"])


def test_row8_identity_never_depends_on_arrival_time() -> None:
    event = order(1)
    del event["ts"]
    first = collect_events(json.dumps(event).encode(), NOW).events[0]
    retry = collect_events(json.dumps(event).encode(), NOW + 5_000).events[0]
    assert (first.kind, first.record["event_id"]) == (retry.kind, retry.record["event_id"]) == ("order", "o1")
    assert first.ts_stamped and first.headers == [(TS_HEADER, b"collector")]
    assert collect_events(json.dumps(order(2)).encode(), NOW).events[0].headers is None
    twice = collect_events(json.dumps([order(3), order(3)]).encode(), NOW)  # one request, same event twice
    assert len(twice.events) == 1 and twice.refused[0]["problems"] == ["event_id: repeats item 0 of this request"]


@pytest.mark.parametrize("bad", ["x" * 5_000, "m\x00", "a\u202eb", "\u2066x", "\ud800"])
def test_row10_ids_bounded_in_length_and_character_class(bad: str) -> None:
    assert refused_problems(json.dumps(browse(1, member_id=bad)))[0].startswith("member_id: ")


def test_content_types_and_tokens() -> None:
    assert content_type_problem("application/x-www-form-urlencoded") is None  # curl -d
    assert content_type_problem("application/vnd.api+json") is None
    assert content_type_problem("text/html").status == 415
    assert authorize("Bearer r", ["w", "r"], "member endpoints") is None
    assert authorize("Bearer w", ["w", None], "writes") is None
    assert authorize(None, ["w", "r"], "member endpoints").status == 401


def test_the_worker_warns_without_a_write_token() -> None:
    assert security_warnings(None, None, "0.0.0.0")
    assert security_warnings("w", "w", "0.0.0.0") == [
        "SALEPULSE_READ_TOKEN equals SALEPULSE_API_TOKEN: readers can write"]
    assert security_warnings("w", "r", "0.0.0.0") == []
