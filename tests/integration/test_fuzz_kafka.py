"""Poison at the Kafka level (issue 9): hostile records produced RAW to the topics, bypassing HTTP and validation.

The worker must stay up, dead-letter exactly the bad inputs (bounded excerpt, stage, hash), keep ClickHouse and its
own live totals equal to the valid events, never let one event move the stream clock, and the sink must drain.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import urllib.request
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest
from confluent_kafka import Producer

from salepulse.consumers.tools import deadletters
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.schemas.codec import Codec
from tests.integration.test_velocity_pipeline import read_deadletters

pytestmark = pytest.mark.integration

T0 = 1_764_403_200_000  # 2025-11-29: in the past of the wall clock, like a replay
HOUR = 3_600_000
CODEC = Codec()


class RawProducer:
    """Produces bytes as they are (up to 2 MB a message) and remembers where each one landed."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.settings = pipeline.settings
        self.producer = Producer(pipeline.settings.kafka_config(**{
            "message.max.bytes": 2_000_000, "enable.idempotence": True, "linger.ms": 5,
        }))
        self.landed: list[tuple[str, int, int]] = []
        self.errors: list[str] = []

    def send(self, topic: str, value: bytes, key: bytes | None = b"m1") -> None:
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.landed.append((msg.topic(), msg.partition(), msg.offset()))

        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=done)
                return
            except BufferError:
                self.producer.poll(0.1)

    def flush(self) -> None:
        assert self.producer.flush(60) == 0
        assert not self.errors, self.errors[:3]


def sale_record(sale_id: str, skus: list[str]) -> dict[str, Any]:
    return {"event_id": f"{sale_id}-v1", "sale_id": sale_id, "brand": "b", "updated_at": T0,
            "starts_at": T0 - HOUR, "ends_at": T0 + 48 * HOUR,
            "products": [{"sku": sku, "name": sku, "category": "c", "price": 20.0, "stock": 1_000_000}
                         for sku in skus]}


class Expected:
    """What the valid events add up to, per sale (views, carts, orders, units), and the bytes to send."""

    def __init__(self) -> None:
        self.totals: dict[str, Counter[str]] = {}
        self.valid: list[tuple[str, bytes]] = []

    def browse(self, topic: str, event_id: str, sale: str, sku: str, ts: int, count: bool = True) -> None:
        self.valid.append((topic, CODEC.encode("BrowseEvent", {"event_id": event_id, "member_id": f"m{ts % 7}",
                                                                "sale_id": sale, "sku": sku, "ts": ts})))
        if count:
            self.totals.setdefault(sale, Counter())["views"] += 1

    def cart(self, topic: str, event_id: str, sale: str, sku: str, ts: int) -> None:
        self.valid.append((topic, CODEC.encode("CartEvent", {"event_id": event_id, "member_id": f"m{ts % 7}",
                                                              "sale_id": sale, "sku": sku, "action": "add",
                                                              "quantity": 1, "unit_price": 20.0, "ts": ts})))
        self.totals.setdefault(sale, Counter())["carts"] += 1

    def order(self, topic: str, event_id: str, sale: str, sku: str, units: int, ts: int, count: bool = True) -> None:
        self.valid.append((topic, CODEC.encode("OrderEvent", {
            "event_id": event_id, "order_id": event_id, "member_id": f"m{ts % 7}", "ts": ts,
            "lines": [{"sale_id": sale, "sku": sku, "quantity": units, "unit_price": 20.0}]})))
        if count:
            self.totals.setdefault(sale, Counter())["orders"] += 1
            self.totals[sale]["units"] += units


def get(pipeline: Pipeline, path: str) -> tuple[int, Any]:
    """Status and parsed JSON (strict: NaN or Infinity in a body fails the test)."""
    url = f"http://127.0.0.1:{pipeline.settings.http_port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
        return response.status, json.loads(body, parse_constant=lambda c: pytest.fail(f"{path} emitted {c}"))


def clickhouse_totals(pipeline: Pipeline, sale: str) -> Counter[str]:
    row = pipeline.clickhouse().query(
        "SELECT sum(views), sum(carts), sum(orders), sum(units), sum(revenue) FROM velocity_minute "
        "WHERE sale_id = {s:String}", parameters={"s": sale}).result_rows[0]
    assert row[4] is None or math.isfinite(row[4]), f"revenue of {sale} is {row[4]}"
    return Counter({k: int(v or 0) for k, v in zip(["views", "carts", "orders", "units"], row[:4], strict=True)
                    if v})


def live_totals(pipeline: Pipeline, sale: str) -> Counter[str]:
    status, view = get(pipeline, f"/sales/{sale}")
    assert status == 200
    products = view["products"]
    found = Counter({"views": sum(p["views"] for p in products), "carts": sum(p["carts"] for p in products),
                     "orders": sum(p["orders"] for p in products), "units": view["units"]})
    return +found


def _live_or_none(pipeline: Pipeline, sale: str) -> Counter[str] | None:
    try:
        return live_totals(pipeline, sale)
    except OSError:  # 404 until the catalogue has the sale
        return None


def wait_handled(pipeline: Pipeline, events: int, deadletters: int, timeout: float = 90.0) -> dict[str, Any]:
    def done() -> bool:
        stats = pipeline.stats()
        return stats["events_processed"] + stats["deadletters"] >= events + deadletters
    wait_until(done, timeout, f"{events} events and {deadletters} dead letters handled")
    pipeline.wait_drained(120)
    return pipeline.stats()


def assert_worker_answers(pipeline: Pipeline, open_sale: str) -> None:
    assert pipeline.worker is not None and pipeline.worker.poll() is None, "the worker exited"
    assert get(pipeline, "/health")[1]["status"] == "ok"
    status, sales = get(pipeline, "/sales")
    assert status == 200 and open_sale in {s["sale_id"] for s in sales["sales"]}, "the open sale left /sales"
    assert get(pipeline, "/stats")[0] == 200
    assert get(pipeline, "/api/dashboard")[0] == 200


def test_the_issue_rows_produced_raw_to_kafka(pipeline: Pipeline) -> None:
    topics = pipeline.settings.topics
    prefix = f"rows-{uuid.uuid4().hex[:6]}-"
    sale, months_sale, sink_sale = f"{prefix}s", f"{prefix}months", f"{prefix}sink"
    raw = RawProducer(pipeline)
    raw.send(topics.sales, CODEC.encode("Sale", sale_record(sale, ["k0", "k1", "k2", "k3"])), sale.encode())
    # Row 2: poisoned expert forecasts already in the compacted topic when the worker starts.
    for sku, expected in (("k0", 1e308), ("k1", math.nan), ("k2", math.inf)):
        raw.send(topics.priors, CODEC.encode("ExpertForecast", {
            "event_id": f"{sale}:{sku}:p", "sale_id": sale, "sku": sku, "expected_units": expected, "low": None,
            "high": None, "author": "x", "submitted_at": T0}), f"{sale}:{sku}".encode())
    raw.flush()
    pipeline.start_worker()
    pipeline.start_sink()

    good = Expected()
    for i in range(60):
        ts = T0 + i * 1000
        good.browse(topics.browse, f"{prefix}b{i}", sale, f"k{i % 4}", ts)
        good.cart(topics.cart, f"{prefix}c{i}", sale, f"k{i % 4}", ts + 1)
        good.order(topics.order, f"{prefix}o{i}", sale, f"k{i % 4}", 1 + i % 3, ts + 2)  # k0..k2: poisoned priors
    # Row 8: the same order retried without ts (a new ts, a new offset): counted once, live and in ClickHouse.
    good.order(topics.order, f"{prefix}retry", sale, "k3", 5, T0 + 100_000)
    good.order(topics.order, f"{prefix}retry", sale, "k3", 5, T0 + 160_000, count=False)
    # Row 9: a browse reusing an order's event_id, sale, sku and ts does not replace the order.
    good.browse(topics.browse, f"{prefix}retry", sale, "k3", T0 + 100_000)
    # Row 5 (first half): a browse dated 2099-06-01 (the validation window ends at 2100) is counted but must not
    # move the stream clock.
    good.browse(topics.browse, f"{prefix}future", sale, "k3", 4_083_955_200_000)
    # A sale whose orders arrive before the catalogue has it: counted, and on the live board once it is known.
    late_sale = f"{prefix}late"
    for i in range(5):
        good.order(topics.order, f"{prefix}late{i}", late_sale, "k0", 2, T0 + i)
    # Row 4 (second half): 101 browses over 101 months reach ClickHouse without "Too many partitions".
    for m in range(101):
        good.browse(topics.browse, f"{prefix}m{m}", months_sale, "k", T0 - m * 31 * 24 * HOUR)

    def body(name: str, record: dict[str, Any]) -> bytes:
        return CODEC.encode(name, record)

    bad: list[tuple[str, bytes]] = [
        # Row 1: a cart priced at JSON Infinity crashed the preference model (int(log2(inf))).
        (topics.cart, body("CartEvent", {"event_id": f"{prefix}inf", "member_id": "m1", "sale_id": sale,
                                         "sku": "k0", "action": "add", "quantity": 1, "unit_price": math.inf,
                                         "ts": T0})),
        # Row 3: 510,000-character sale_id; two browses with 505,000-character event ids; 1,040,000 random bytes.
        (topics.browse, body("BrowseEvent", {"event_id": f"{prefix}long", "member_id": "m1", "sale_id": "s" * 510_000,
                                             "sku": "k0", "ts": T0})),
        *[(topics.browse, body("BrowseEvent", {"event_id": f"{c}" * 505_000, "member_id": "m1", "sale_id": sale,
                                               "sku": "k0", "ts": T0})) for c in "ab"],
        (topics.order, random.Random(9).randbytes(1_040_000)),
        # Row 5 (second half): ts = 9e15 ms.
        (topics.browse, body("BrowseEvent", {"event_id": f"{prefix}9e15", "member_id": "m1", "sale_id": sale,
                                             "sku": "k0", "ts": 9_000_000_000_000_000})),
        # Row 6: NaN unit_price made ClickHouse's sum(revenue) NaN and /sales/{id} invalid JSON.
        (topics.order, body("OrderEvent", {"event_id": f"{prefix}nan", "order_id": f"{prefix}nan", "member_id": "m1",
                                           "ts": T0, "lines": [{"sale_id": sale, "sku": "k0", "quantity": 1,
                                                                "unit_price": math.nan}]})),
        # Row 4 (first half) through the ingest: two lines of one sku summing past Int32.
        (topics.order, body("OrderEvent", {"event_id": f"{prefix}big", "order_id": f"{prefix}big", "member_id": "m1",
                                           "ts": T0, "lines": [{"sale_id": sale, "sku": "k0", "quantity": 2**31 - 1,
                                                                "unit_price": 1.0}] * 2})),
    ]
    for topic, value in [*good.valid[:90], *bad, *good.valid[90:]]:
        raw.send(topic, value)
    # Row 4 at the sink: a facts record with 3,000,000,000 units produced around the ingest, next to a good one.
    raw.send(topics.facts, body("VelocityFacts", {
        "event_id": f"{prefix}poisoned-facts", "sale_id": sink_sale, "event_ids": ["x1", "x2"], "skus": ["k", "k"],
        "kinds": ["order", "order"], "units": [3_000_000_000, 2], "revenues": [1.0, 1.0], "ts": [T0, T0],
        "sources": ["raw:0", "raw:0"], "offsets": [1, 2]}), sink_sale.encode())
    raw.flush()

    stats = wait_handled(pipeline, len(good.valid), len(bad))
    assert_worker_answers(pipeline, sale)
    assert stats["deadletters"] == len(bad)
    clock = datetime.fromisoformat(stats["stream_time"]).timestamp() * 1000
    assert T0 <= clock <= T0 + 24 * HOUR, f"the stream clock moved to {stats['stream_time']}"
    assert stats["clock_ignored"] >= 1  # the browse dated 2100 was seen, and not used as "now"
    assert live_totals(pipeline, sale) == good.totals[sale]
    raw.send(topics.sales, CODEC.encode("Sale", sale_record(late_sale, ["k0"])), late_sale.encode())
    raw.flush()
    wait_until(lambda: pipeline.stats()["catalog_rejected"] >= 3 and _live_or_none(pipeline, late_sale)
               == good.totals[late_sale], 30, "the late-catalogued sale's totals on the live board")

    letters = read_deadletters(pipeline, len(bad))
    assert len(letters) == len(bad)
    assert all(len(letter["value"]) <= 1024 and len(letter["reason"]) <= 1100 for letter in letters)
    by_sha = {letter["value_sha256"]: letter for letter in letters}
    for _topic, value in bad:
        assert hashlib.sha256(value).hexdigest() in by_sha
    tailed = list(deadletters.tail(pipeline.settings, 50))  # what `salepulse deadletters tail` prints
    assert len(tailed) == len(bad) and all(deadletters.describe(letter) for letter in tailed)
    # The validation boundary may refuse some first ("validate"); what matters is that each is refused once.
    assert set(Counter(letter["stage"] for letter in letters)) <= {"limits", "oversized", "decode", "validate"}

    pipeline.stop_sink()
    assert clickhouse_totals(pipeline, sale) == good.totals[sale]
    assert clickhouse_totals(pipeline, months_sale) == good.totals[months_sale]
    quarantined = pipeline.clickhouse().query(
        "SELECT target, reason, excerpt FROM quarantine FINAL WHERE excerpt LIKE {p:String}",
        parameters={"p": f"%{sink_sale}%"}).result_rows
    assert len(quarantined) == 1 and "3000000000" in quarantined[0][2]
    assert any(sink_sale in row["excerpt"] for row in deadletters.quarantine(pipeline.settings))
    assert clickhouse_totals(pipeline, sink_sale) == {"orders": 1, "units": 2}  # the good row of that record

    # Row 2 after a restart: the poisoned priors are read again at start and must not crash a timer.
    pipeline.stop_worker()
    pipeline.start_worker()
    more = Expected()
    more.order(topics.order, f"{prefix}after-restart", sale, "k0", 2, T0 + 200_000)
    for topic, value in more.valid:
        raw.send(topic, value)
    raw.flush()
    wait_until(lambda: pipeline.stats()["events_processed"] >= 1, 60, "the event sent after the restart")
    time.sleep(6)  # the alert rule runs on every open sale each 5 s: let it run with the priors loaded
    assert_worker_answers(pipeline, sale)
    assert live_totals(pipeline, sale) == good.totals[sale] + more.totals[sale]


def hostile_values(rng: random.Random, prefix: str, sale: str, i: int) -> bytes:
    """Valid Avro whose values no pipeline can carry: non-finite or huge numbers, impossible times."""
    ts = rng.choice([9_000_000_000_000_000, -5, 2**62, 7_258_118_400_000 + rng.randrange(10**9)])
    price = rng.choice([math.inf, -math.inf, math.nan, 1e300])
    choice = i % 4
    if choice == 0:
        return CODEC.encode("BrowseEvent", {"event_id": f"{prefix}h{i}", "member_id": "m", "sale_id": sale,
                                            "sku": "k0", "ts": ts})
    if choice == 1:
        return CODEC.encode("CartEvent", {"event_id": f"{prefix}h{i}", "member_id": "m", "sale_id": sale,
                                          "sku": "k0", "action": "add", "quantity": 1, "unit_price": price,
                                          "ts": T0})
    lines = ([{"sale_id": sale, "sku": "k0", "quantity": 1, "unit_price": price}] if choice == 2 else
             [{"sale_id": sale, "sku": "k0", "quantity": 2**31 - 1, "unit_price": 1.0}] * 2)
    return CODEC.encode("OrderEvent", {"event_id": f"{prefix}h{i}", "order_id": f"{prefix}h{i}", "member_id": "m",
                                       "ts": T0, "lines": lines})


def undecodable(rng: random.Random, valid: bytes, i: int) -> bytes:
    """Truncated, bit-flipped (in the framing, so the result cannot be a different valid record) or random."""
    kind = i % 3
    if kind == 0:
        candidate = valid[:rng.randrange(0, len(valid) - 1)]
    elif kind == 1:
        flipped = bytearray(valid)
        flipped[rng.randrange(0, 10)] ^= 1 << rng.randrange(8)
        candidate = bytes(flipped)
    else:
        candidate = rng.randbytes(rng.randrange(1, 300))
    try:
        CODEC.decode(candidate)
    except Exception:  # noqa: BLE001 - any refusal makes it a bad input
        return candidate
    return undecodable(rng, valid, i + 3)  # it happened to decode: not a bad input, try another


def test_fuzz_two_thousand_bad_inputs_mixed_with_valid_events(pipeline: Pipeline) -> None:
    started = time.monotonic()
    topics = pipeline.settings.topics
    rng = random.Random(20261201)
    prefix = f"fz-{uuid.uuid4().hex[:6]}-"
    sales = [f"{prefix}s{j}" for j in range(3)]
    raw = RawProducer(pipeline)
    for sale in sales:
        raw.send(topics.sales, CODEC.encode("Sale", sale_record(sale, [f"k{k}" for k in range(4)])), sale.encode())
    raw.flush()
    pipeline.start_worker()
    pipeline.start_sink()

    good = Expected()
    for i in range(600):
        sale, sku, ts = sales[i % 3], f"k{i % 4}", T0 + i * 500
        [good.browse, good.cart][i % 2](topics.browse if i % 2 == 0 else topics.cart, f"{prefix}v{i}", sale, sku, ts)
        if i % 3 == 0:
            good.order(topics.order, f"{prefix}o{i}", sale, sku, 1 + i % 4, ts + 1)
    bad: list[tuple[str, bytes]] = []
    for i in range(2000):
        topic = topics.events[i % 3]
        kind = i % 10
        if kind < 6:
            bad.append((topic, undecodable(rng, good.valid[i % len(good.valid)][1], i)))
        elif kind < 9:
            bad.append((topic, hostile_values(rng, prefix, sales[i % 3], i)))
        elif i % 200 == 9:  # oversized: an id past the byte budget (a few: each is ~0.6 MB on the broker)
            bad.append((topic, CODEC.encode("BrowseEvent", {"event_id": "x" * 600_000, "member_id": "m",
                                                            "sale_id": sales[0], "sku": "k0", "ts": T0})))
        else:  # an unknown record type on an event topic
            bad.append((topic, CODEC.encode("StockLevel", {"sku": "k", "on_hand": 1, "inbound": 0,
                                                           "inbound_eta": None, "lead_time_hours": 1.0,
                                                           "event_id": f"{prefix}st{i}", "updated_at": T0})))
    mixed = [*good.valid, *bad]
    rng.shuffle(mixed)
    for topic, value in mixed:
        raw.send(topic, value)
    raw.flush()

    stats = wait_handled(pipeline, len(good.valid), len(bad), timeout=120)
    assert stats["deadletters"] == len(bad) >= 2000
    assert stats["events_processed"] == len(good.valid)
    assert_worker_answers(pipeline, sales[0])
    for sale in sales:
        assert live_totals(pipeline, sale) == good.totals[sale]
    pipeline.stop_sink()
    for sale in sales:
        assert clickhouse_totals(pipeline, sale) == good.totals[sale]
    assert time.monotonic() - started < 180
