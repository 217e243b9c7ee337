"""End to end on the real broker and a real ClickHouse engine: producers → worker → sink → ClickHouse."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.schemas.codec import Codec

pytestmark = pytest.mark.integration


def make_events(prefix: str, n_orders: int, start_ms: int) -> list[tuple[str, dict]]:
    """Orders of 1-3 units over 5 skus of 2 sales, each after a view and a cart add."""
    events: list[tuple[str, dict]] = []
    for i in range(n_orders):
        sale, sku, member, ts = f"{prefix}s{i % 2}", f"k{i % 5}", f"m{i % 37}", start_ms + i * 250
        events.append(("browse", {"event_id": f"{prefix}b{i}", "member_id": member, "sale_id": sale, "sku": sku,
                                  "ts": ts}))
        events.append(("cart", {"event_id": f"{prefix}c{i}", "member_id": member, "sale_id": sale, "sku": sku,
                                "action": "add", "quantity": 1, "unit_price": 20.0, "ts": ts + 1}))
        events.append(("order", {"event_id": f"{prefix}o{i}", "order_id": f"{prefix}o{i}", "member_id": member,
                                 "ts": ts + 2, "lines": [{"sale_id": sale, "sku": sku, "quantity": 1 + i % 3,
                                                          "unit_price": 20.0}]}))
    return events


def publish(pipeline: Pipeline, events: list[tuple[str, dict]]) -> int:
    with Publisher(pipeline.settings) as publisher:
        for kind, record in events:
            publisher.send(kind, record)
    return publisher.units


def read_deadletters(pipeline: Pipeline, expected: int, timeout: float = 30.0) -> list[dict]:
    consumer = Consumer(pipeline.settings.kafka_config(**{"group.id": f"dl-{uuid.uuid4().hex}",
                                                          "auto.offset.reset": "earliest"}))
    consumer.subscribe([pipeline.settings.topics.deadletter])
    codec, found = Codec(), []
    deadline = time.monotonic() + timeout
    while len(found) < expected and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            found.append(codec.decode(message.value())[1])
    consumer.close()
    return found


def test_events_reach_clickhouse_exactly_and_bad_input_is_dead_lettered(pipeline: Pipeline) -> None:
    prefix = f"e2e-{uuid.uuid4().hex[:6]}-"
    events = make_events(prefix, 300, start_ms=1_764_403_200_000)
    pipeline.start_worker()
    pipeline.start_sink()
    units = publish(pipeline, events)
    garbage = b"{\"not\": \"avro\"}"
    codec = Codec()
    zero_quantity = codec.encode("CartEvent", {"event_id": f"{prefix}bad", "member_id": "m1", "sale_id": "s",
                                               "sku": "k", "action": "add", "quantity": 0, "unit_price": 1.0,
                                               "ts": 0})
    with Publisher(pipeline.settings) as publisher:
        publisher.send_raw(pipeline.settings.topics.order, garbage, "m1")
        publisher.send_raw(pipeline.settings.topics.cart, zero_quantity, "m1")

    wait_until(lambda: pipeline.stats()["events_processed"] >= len(events), 60, "the worker to process everything")
    pipeline.wait_drained()
    stats = pipeline.stats()
    pipeline.stop_sink()

    assert stats["events_processed"] == len(events)
    assert stats["deadletters"] == 2
    assert pipeline.totals(prefix) == {"views": 300, "carts": 300, "orders": 300, "units": units}

    letters = sorted(read_deadletters(pipeline, 2), key=lambda d: d["source_topic"])
    assert [d["value"] for d in letters] == [zero_quantity, garbage]  # cart topic sorts before order
    assert "quantity: must be 1 .. 1,000,000, got 0" in letters[0]["reason"]
    assert "unknown framing" in letters[1]["reason"]


def test_replaying_the_same_events_does_not_double_count(pipeline: Pipeline) -> None:
    prefix = f"dup-{uuid.uuid4().hex[:6]}-"
    events = make_events(prefix, 200, start_ms=1_764_403_200_000)
    pipeline.start_worker()
    pipeline.start_sink()
    units = publish(pipeline, events)
    publish(pipeline, events)  # the same events again, as a producer retry or a replay would send them
    wait_until(lambda: pipeline.stats()["events_processed"] >= 2 * len(events), 60, "both copies processed")
    pipeline.wait_drained()
    pipeline.stop_sink()
    assert pipeline.totals(prefix)["units"] == units
    assert pipeline.totals(prefix)["orders"] == 200


def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:6]}-"
    start_ms = 1_764_403_200_000
    events = make_events(prefix, 4000, start_ms=start_ms)
    with Publisher(pipeline.settings) as publisher:  # so the worker's live totals can be read back too
        for sale in (f"{prefix}s0", f"{prefix}s1"):
            publisher.send("sale", {"event_id": f"{sale}-v1", "sale_id": sale, "brand": "b", "updated_at": start_ms,
                                    "starts_at": start_ms - 3_600_000, "ends_at": start_ms + 36_000_000,
                                    "products": [{"sku": f"k{i}", "name": f"k{i}", "category": "c", "price": 20.0,
                                                  "stock": 100_000} for i in range(5)]})
    pipeline.start_worker()
    pipeline.start_sink()
    produced: dict[str, int] = {}
    producer = threading.Thread(target=lambda: produced.update(units=publish_slowly(pipeline, events)))
    producer.start()
    wait_until(lambda: pipeline.stats()["events_processed"] > 1500, 60, "the worker to be mid-stream")
    pipeline.kill_worker()
    pipeline.start_worker()
    producer.join(120)
    pipeline.wait_drained(180)
    pipeline.stop_sink()
    totals = pipeline.totals(prefix)
    expected = {record["event_id"] for _kind, record in events}
    in_clickhouse = pipeline.event_ids_in_clickhouse(prefix)
    if in_clickhouse != expected:
        in_topic = pipeline.event_ids_in_facts_topic(prefix)
        missing = sorted(expected - in_clickhouse)
        raise AssertionError(f"{len(missing)} events missing from ClickHouse: {missing[:10]}; of those, "
                             f"{len(set(missing) & in_topic)} are on the facts topic; worker log: "
                             f"{pipeline.worker_log}")
    assert totals["units"] == produced["units"]
    assert totals["orders"] == 4000 and totals["views"] == 4000 and totals["carts"] == 4000
    live = [pipeline.get(f"/sales/{prefix}s{i}") for i in range(2)]  # the restarted worker's changelog-backed state
    assert sum(sale["units"] for sale in live) == produced["units"]
    assert sum(product["views"] for sale in live for product in sale["products"]) == 4000


def publish_slowly(pipeline: Pipeline, events: list[tuple[str, dict]], per_second: float = 2000.0) -> int:
    """Produce at a steady rate so that the kill lands while events are still flowing."""
    from salepulse.consumers.io.publish import Pacer

    pacer = Pacer(rate=per_second)
    with Publisher(pipeline.settings) as publisher:
        for kind, record in events:
            pacer.wait()
            publisher.send(kind, record)
    return publisher.units
