"""Hostile HTTP input against a live worker on the real broker and ClickHouse engine (issue #9, the HTTP side).

Every HTTP row of the issue's table is a regression test here; then more than 2,000 generated bad inputs (bad
values in every field, random bytes, truncated JSON, deep nesting, wrong content types, odd tokens, oversized
bodies, good and bad events mixed in one request). Throughout: no answer is a 5xx, every answer is JSON, the worker
keeps answering ``/health`` and ``/sales`` with valid JSON, and at the end ClickHouse holds exactly the units of
the valid orders: nothing refused got in, nothing accepted was lost or doubled.

On the code before #9 each row failed: rows 1, 2 and 6 were accepted (202, then the worker crashed or ClickHouse
summed NaN), rows 3, 4, 5 and 10 were accepted (202) and stalled or skewed the pipeline downstream, and every
input of row 7 answered a bare 500 after storing the first good event. The tests assert the new 4xx answers, so
each fails on that code at its first assertion.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline
from salepulse.schemas.json_input import InputError, parse_event

pytestmark = pytest.mark.integration
TOKEN = "fuzz-token"
READ_TOKEN = "fuzz-read-token"
TAG = uuid.uuid4().hex[:6]
SALE = f"fz-{TAG}-sale"
SALE8 = f"fz8-{TAG}-sale"  # row 8 on its own sale: its total is checked apart from the fuzz's
SKUS = [f"k{i}" for i in range(5)]
GENERATED = 2_000


def strict_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN and Infinity, as a browser's JSON.parse does."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


class Tally:
    """Expected totals of what the worker must store: units of every accepted order."""

    def __init__(self) -> None:
        self.units = 0
        self.statuses: Counter[int] = Counter()
        self.seq = 0

    def next_id(self, kind: str) -> str:
        self.seq += 1
        return f"fz-{TAG}-{kind}{self.seq}"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path_factory.mktemp("fuzz-http"),
                 extra_env={"SALEPULSE_API_TOKEN": TOKEN, "SALEPULSE_READ_TOKEN": READ_TOKEN})
    now = int(time.time() * 1000)
    with Publisher(p.settings) as publisher:  # the sales exist, so their orders count on any branch of the worker
        for sale in (SALE, SALE8):
            publisher.send("sale", {"event_id": f"{sale}-v1", "sale_id": sale, "brand": "fuzz",
                                    "starts_at": now - 7_200_000, "ends_at": now + 86_400_000, "updated_at": now,
                                    "products": [{"sku": sku, "name": sku, "category": "c", "price": 10.0,
                                                  "stock": 1_000_000} for sku in SKUS]})
    p.start_worker()
    p.start_sink()
    yield p
    p.close()


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def client(pipeline: Pipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{pipeline.settings.http_port}", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def post(client: httpx.Client, tally: Tally, body: str | bytes, path: str = "/events",
         headers: dict[str, Any] | None = None) -> httpx.Response:
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    response = client.post(path, content=content, headers={"Content-Type": "application/json", **(headers or {})})
    tally.statuses[response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500], content[:200])
    strict_json(response.content)  # every answer, 4xx included, is a JSON body that says what is wrong
    return response


def order(tally: Tally, quantity: int = 2, **changes: Any) -> dict[str, Any]:
    event_id = tally.next_id("o")
    record = {"type": "order", "event_id": event_id, "member_id": "m1", "ts": int(time.time() * 1000) - 60_000,
              "lines": [{"sale_id": SALE, "sku": random.choice(SKUS), "quantity": quantity, "unit_price": 9.5}]}
    record.update(changes)
    return record


def browse(tally: Tally, **changes: Any) -> dict[str, Any]:
    return {"type": "browse", "event_id": tally.next_id("b"), "member_id": "m1", "sale_id": SALE, "sku": "k0",
            "ts": int(time.time() * 1000) - 60_000, **changes}


def cart(tally: Tally, **changes: Any) -> dict[str, Any]:
    return {"type": "cart", "event_id": tally.next_id("c"), "member_id": "m1", "sale_id": SALE, "sku": "k1",
            "action": "add", "quantity": 1, "unit_price": 9.5, "ts": int(time.time() * 1000) - 60_000, **changes}


def accepted_order(client: httpx.Client, tally: Tally) -> None:
    """A good order after a bad input: it must still be stored (and counted at the end)."""
    response = post(client, tally, json.dumps(order(tally, quantity=3)))
    assert response.status_code == 202, response.text
    tally.units += 3


def refused(response: httpx.Response, status: int = 422) -> list[str]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    named = [p for item in body.get("refused", []) for p in item["problems"]]
    named += [p for item in body.get("problems", []) for p in (item["problems"] if isinstance(item, dict) else [item])]
    return named or [body["error"]]


def assert_alive(pipeline: Pipeline) -> None:
    health = pipeline.get("/health")
    assert health["status"] == "ok" and health["ready"]
    url = f"http://127.0.0.1:{pipeline.settings.http_port}/sales"
    sales = strict_json(httpx.get(url, timeout=10).content)  # valid JSON: no NaN anywhere
    assert "sales" in sales


# ---- the table, one test per HTTP row ---------------------------------------------------------------

def test_row1_infinite_unit_price_is_refused(pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    body = json.dumps(cart(tally)).replace('"unit_price": 9.5', '"unit_price": 1e999')
    assert refused(post(client, tally, body)) == ["unit_price: must be a finite number, got inf"]
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row2_non_finite_or_huge_forecasts_are_refused(pipeline: Pipeline, client: httpx.Client,
                                                       tally: Tally) -> None:
    for value in ("1e999", "NaN", "1e308"):
        body = f'{{"sale_id": "{SALE}", "sku": "k2", "expected_units": {value}}}'
        problems = refused(post(client, tally, body, path="/forecasts"))
        assert any(p.startswith("expected_units: must be") for p in problems), problems
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row3_huge_ids_are_refused(pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    problems = refused(post(client, tally, json.dumps(browse(tally, sale_id="s" * 510_000))))
    assert problems == ["sale_id: at most 200 characters, got 510000"]
    two = [browse(tally, event_id="e" * 505_000), browse(tally, event_id="f" * 505_000)]
    response = post(client, tally, json.dumps(two))
    assert [item["index"] for item in response.json()["refused"]] == [0, 1] and response.json()["accepted"] == 0
    assert all(item["event_id"] is None for item in response.json()["refused"])  # never echoed back whole
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row4_huge_quantity_and_many_months_are_refused(pipeline: Pipeline, client: httpx.Client,
                                                        tally: Tally) -> None:
    problems = refused(post(client, tally, json.dumps(order(tally, quantity=3_000_000_000))))
    assert problems[0].startswith("lines[0].quantity: must be 1 .. 1,000,000")
    now = int(time.time() * 1000)
    months = [browse(tally, ts=now - 60_000 - m * 31 * 86_400_000) for m in range(101)]
    body = post(client, tally, json.dumps(months)).json()
    assert body["accepted"] == 1 and len(body["refused"]) == 100  # only this month's is live traffic
    assert all("before ingestion" in item["problems"][0] for item in body["refused"])
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row5_far_future_times_are_refused(pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    problems = refused(post(client, tally, json.dumps(browse(tally, ts="2100-06-01T00:00:00Z"))))
    assert problems[0].startswith("ts: must be 2000-01-01 .. 2100-01-01")
    problems = refused(post(client, tally, json.dumps(browse(tally, ts=9e15))))
    assert problems[0].startswith("ts: must be 2000-01-01 .. 2100-01-01")
    problems = refused(post(client, tally, json.dumps(browse(tally, ts=int(time.time() * 1000) + 3_600_000))))
    assert problems[0].startswith("ts: more than 5 min after ingestion")
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row6_nan_price_is_refused(pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    body = json.dumps(order(tally)).replace('"unit_price": 9.5', '"unit_price": NaN')
    assert refused(post(client, tally, body)) == ["lines[0].unit_price: must be a finite number, got nan"]
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row7_poison_in_a_batch_is_named_and_the_good_events_are_stored_once(
        pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    first, last = order(tally, quantity=4), order(tally, quantity=5)
    body = json.dumps([first, browse(tally, sku="\ud800"), last], ensure_ascii=True)
    answer = post(client, tally, body).json()
    assert answer["accepted"] == 2 and [item["index"] for item in answer["refused"]] == [1]
    tally.units += 9
    again = post(client, tally, body).json()  # the client's retry: stored again, counted once (same identity)
    assert again["accepted"] == 2
    for ts in ("NaN", "Infinity", "-Infinity", str(2**63), str(-(2**63) - 1)):
        text = json.dumps(browse(tally, ts=0)).replace('"ts": 0', f'"ts": {ts}')
        assert refused(post(client, tally, text))[0].startswith("ts: must be 2000-01-01")
    assert refused(post(client, tally, json.dumps(order(tally, quantity=2**80))))[0].startswith(
        "lines[0].quantity: must be 1 .. 1,000,000, got 1208925819614629174706176")
    assert refused(post(client, tally, json.dumps(browse(tally, type=["browse"])))) == [
        "type: must be one of browse, cart, order, got list"]
    deep = "[" * 1000 + "]" * 1000
    assert "nested 1000 deep" in refused(post(client, tally, deep), 400)[0]
    for header in ("Bearer t\u00f6ken".encode(), b"Bearer \xff\xfe", "Bearer ✓".encode()):
        assert refused(post(client, tally, json.dumps(browse(tally)), headers={"Authorization": header}), 401)
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_row8_an_order_retried_without_ts_keeps_its_identity_and_counts_once(
        pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    """Before #9 the collector's producer was not idempotent and ClickHouse keyed facts by the stamped ``ts``, so
    the retry counted twice. Now the collector flags the stamp on the message (header ``salepulse-ts: collector``)
    and never makes up an identity: both copies carry the client's ``event_id``. Counting them once in ClickHouse
    needs the facts keyed by identity, not ``ts`` (the worker side of #9); on a table still keyed by ``ts`` this
    test says so (xfail) instead of passing."""
    import re

    from confluent_kafka import Consumer

    from salepulse.schemas.codec import Codec

    event = order(tally, quantity=7)
    del event["ts"]
    event["lines"][0]["sale_id"] = SALE8
    for _ in range(2):
        assert post(client, tally, json.dumps(event)).status_code == 202
        time.sleep(0.01)  # a retry comes later: a different stamp

    consumer = Consumer(pipeline.settings.kafka_config(**{"group.id": f"r8-{uuid.uuid4().hex}",
                                                          "auto.offset.reset": "earliest"}))
    consumer.subscribe([pipeline.settings.topics.order])
    copies, deadline = [], time.monotonic() + 30
    while len(copies) < 2 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        record = Codec().decode(message.value(), timestamps="ms")[1]
        if record["event_id"] == event["event_id"]:
            copies.append((record, dict(message.headers() or [])))
    consumer.close()
    assert len(copies) == 2 and all(headers.get("salepulse-ts") == b"collector" for _, headers in copies)
    assert {record["order_id"] for record, _ in copies} == {event["event_id"]}

    pipeline.wait_drained()
    pipeline.stop_sink()
    try:
        units = pipeline.totals(SALE8)["units"]
        keys = pipeline.clickhouse().query(
            "SELECT name, sorting_key FROM system.tables WHERE database = currentDatabase() "
            "AND startsWith(name, 'velocity_facts') AND engine LIKE '%MergeTree' ORDER BY name DESC").result_rows
    finally:
        pipeline.start_sink()
    if keys and "ts" in re.findall(r"\w+", keys[0][1]):
        pytest.xfail(f"ClickHouse {keys[0][0]} is keyed by ({keys[0][1]}): the stamped ts is part of its "
                     f"dedup key until the worker side of #9 is merged (counted {units} units for 7)")
    assert units == 7


def test_row10_bad_characters_and_long_ids_are_refused(pipeline: Pipeline, client: httpx.Client,
                                                       tally: Tally) -> None:
    for bad in ("x" * 5_000, "m\x00", "sale\u202eevil", "\u2066iso"):
        problems = refused(post(client, tally, json.dumps(browse(tally, member_id=bad))))
        assert problems[0].startswith("member_id: "), problems
    accepted_order(client, tally)
    assert_alive(pipeline)


def test_member_endpoints_need_a_read_token_and_do_not_reveal_membership(pipeline: Pipeline,
                                                                         client: httpx.Client) -> None:
    url = f"http://127.0.0.1:{pipeline.settings.http_port}"
    assert httpx.get(f"{url}/members/m1/sales", timeout=10).status_code == 401
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # stays open
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
    answers = []
    for member in ("m1", f"nobody-{TAG}"):  # m1 ordered above; the other never existed
        for token in (READ_TOKEN, TOKEN):
            response = httpx.get(f"{url}/members/{member}/sales", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
            body = response.json()
            answers.append((response.status_code, tuple(sorted(body)),
                            tuple(sorted(body["items"][0])) if body["items"] else None))
    assert len(set(answers)) == 1, answers  # same status and shape, known member or not


def test_malformed_http_is_a_4xx_before_the_application(pipeline: Pipeline) -> None:
    """Control characters in a header or a bad Content-Length never reach the collector: aiohttp's HTTP parser
    answers 400 (plain text, the one answer that is not JSON) and the worker stays up."""
    import socket

    for raw in (b"POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x19\x00\r\nContent-Length: 2\r\n\r\n{}",
                b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"):
        with socket.create_connection(("127.0.0.1", pipeline.settings.http_port), timeout=10) as sock:
            sock.sendall(raw)
            status = sock.recv(200).split(b" ")[1]
        assert status.startswith(b"4"), status
    assert_alive(pipeline)


# ---- generated bad inputs ------------------------------------------------------------------------------

BAD_VALUES: list[Any] = [None, "", [], {}, ["x"], {"a": 1}, True, -1, 0, 2**31, 2**63, 2**80, 1e308, -0.5, "NaN",
                         "\x00", "\ud800", "a\u202eb", "x" * 300, "2100-01-01T00:00:00Z", 9e15, "1,5", "\u2028"]
FIELDS = {"browse": ["type", "event_id", "member_id", "sale_id", "sku", "ts", "channel"],
          "cart": ["type", "event_id", "member_id", "sale_id", "sku", "action", "quantity", "unit_price", "ts"],
          "order": ["type", "event_id", "member_id", "lines", "ts", "channel", "currency"]}
LINE_FIELDS = ["sale_id", "sku", "quantity", "unit_price"]


def bad_event(rng: random.Random, tally: Tally) -> dict[str, Any]:
    """A valid event with one field replaced by a hostile value or removed (a few of them stay valid: a string
    like "NaN" is a fine id; the test asks the validator which, and counts only the refused ones as bad)."""
    kind = rng.choice(list(FIELDS))
    event = {"browse": browse, "cart": cart, "order": order}[kind](tally)
    value = rng.choice(BAD_VALUES)
    target = event["lines"][0] if kind == "order" and rng.random() < 0.5 else event
    field = rng.choice(LINE_FIELDS if target is not event else FIELDS[kind])
    if value is None:
        target.pop(field, None)
    elif field == "event_id" and isinstance(value, str):
        target[field] = value + event["event_id"]  # identities stay unique: "NaN" is a valid id, twice is a retry
    else:
        target[field] = value
    return event


def units_of(event: Any) -> int:
    """Units an accepted event adds to this test's sale (a valid but different sale id counts elsewhere)."""
    if isinstance(event, dict) and event.get("type") == "order":
        return sum(line["quantity"] for line in event["lines"] if line.get("sale_id") == SALE)
    return 0


Generated = tuple[str, bytes, dict[str, Any], int | None, list[dict[str, Any]]]
"""(path, body, headers, expected status or None for event batches, the events of a batch)"""


def generated_inputs(rng: random.Random, tally: Tally) -> Iterator[Generated]:
    while True:
        choice = rng.random()
        if choice < 0.45:
            events = [bad_event(rng, tally)]
            yield "/events", json.dumps(events[0], ensure_ascii=True).encode(), {}, None, events
        elif choice < 0.60:  # good and bad mixed: the good ones are stored, once
            events = [order(tally, quantity=rng.randint(1, 4)), bad_event(rng, tally)]
            rng.shuffle(events)
            yield "/events", json.dumps(events, ensure_ascii=True).encode(), {}, None, events
        elif choice < 0.68:
            yield "/events", rng.randbytes(rng.randint(1, 400)), {}, 400, []
        elif choice < 0.76:
            text = json.dumps([order(tally)])
            yield "/events", text[: rng.randint(1, len(text) - 1)].encode(), {}, 400, []
        elif choice < 0.82:
            yield "/events", (rng.choice("[{") * rng.randint(9, 5_000)).encode(), {}, 400, []
        elif choice < 0.87:
            kind = rng.choice(["text/html", "multipart/form-data; boundary=x", "application/xml",
                               "application/json; charset=latin-1", "image/png", "application/json; charset=utf-16"])
            yield "/events", json.dumps(order(tally)).encode(), {"Content-Type": kind}, 415, []
        elif choice < 0.93:
            # legal header octets (RFC 9110 field-vchar, obs-text); control characters are refused by aiohttp's
            # parser before the application runs: see test_malformed_http_is_a_4xx_before_the_application
            noise = bytes(b for b in rng.randbytes(12) if b == 9 or 32 <= b != 127)
            token = rng.choice([b"Bearer", b"Basic xyz", b"Bearer " + noise + b"x", "Bearer ünïcode".encode(),
                                b"bearer x"])
            yield "/events", json.dumps(order(tally)).encode(), {"Authorization": token}, 401, []
        elif choice < 0.995:
            units = rng.choice([v for v in BAD_VALUES[1:] if v != 0])  # 0 is a valid forecast
            forecast = {"sale_id": SALE, "sku": "k3", "expected_units": units}
            body = json.dumps(forecast, ensure_ascii=True).encode()
            yield "/forecasts", body, {}, 422, []
        else:
            yield "/events", b"[" + b'"x",' * 300_000 + b'"x"]', {}, 413, []


def test_generated_bad_inputs_never_5xx_and_clickhouse_holds_exactly_the_valid_units(
        pipeline: Pipeline, client: httpx.Client, tally: Tally) -> None:
    rng = random.Random(20261201)
    random.seed(20261201)
    started = time.monotonic()
    mismatched, bad_inputs, sent = [], 0, 0
    for path, body, headers, expected, events in generated_inputs(rng, tally):
        if bad_inputs >= GENERATED:
            break
        sent += 1
        now = int(time.time() * 1000)
        locally_bad = [i for i, event in enumerate(events) if _refused_locally(event, now)]
        response = post(client, tally, body, path=path, headers=headers)
        if expected is None:  # an event batch: 202 if all valid, else 422 naming exactly the invalid ones
            expected = 422 if locally_bad else 202
            if response.status_code in (202, 422):
                refused_at = [item["index"] for item in response.json()["refused"]]
                if refused_at != locally_bad:
                    mismatched.append(("refused", locally_bad, refused_at, body[:160]))
                tally.units += sum(units_of(e) for i, e in enumerate(events) if i not in refused_at)
            bad_inputs += len(locally_bad)
        else:
            bad_inputs += 1
        if response.status_code != expected:
            mismatched.append((expected, response.status_code, body[:120], response.text[:200]))
        if sent % 500 == 0:
            assert_alive(pipeline)
    elapsed = time.monotonic() - started
    assert not mismatched, mismatched[:5]
    assert_alive(pipeline)

    pipeline.wait_drained()
    pipeline.stop_sink()
    totals = pipeline.totals(SALE)
    print(f"{bad_inputs} bad inputs in {sent} requests, {elapsed:.1f}s; statuses {dict(tally.statuses)}; "
          f"ClickHouse units {totals['units']} (expected {tally.units})")
    assert totals["units"] == tally.units
    assert bad_inputs >= 2_000


def _refused_locally(event: dict[str, Any], now_ms: int) -> bool:
    try:
        parse_event(event, now_ms)
    except InputError:
        return True
    return False
