"""The ingest's pure half: one batch of raw messages → facts per sale, member signals per partition, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from salepulse.schemas.codec import Codec
from salepulse.streams.io.ingest import BatchSplitter, facts_of, member_partition

T0 = 1_764_403_200_000


@dataclass
class Raw:
    """The slice of confluent-kafka's Message the splitter reads."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes
    _key: bytes | None = b"m1"

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value


@pytest.fixture
def codec() -> Codec:
    return Codec()


def test_a_batch_becomes_facts_per_sale_signals_per_member_partition_and_dead_letters(codec: Codec) -> None:
    view = codec.encode("BrowseEvent", {"event_id": "b1", "member_id": "m1", "sale_id": "s1", "sku": "k1",
                                        "ts": T0})
    cart = codec.encode("CartEvent", {"event_id": "c1", "member_id": "m2", "sale_id": "s2", "sku": "k9",
                                      "action": "add", "quantity": 2, "unit_price": 5.0, "ts": T0 + 1})
    order = codec.encode("OrderEvent", {"event_id": "o1", "order_id": "o1", "member_id": "m1", "ts": T0 + 2,
                                        "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 10.0},
                                                  {"sale_id": "s2", "sku": "k9", "quantity": 1, "unit_price": 5.0}]})
    invalid = codec.encode("CartEvent", {"event_id": "c2", "member_id": "m3", "sale_id": "s1", "sku": "k1",
                                         "action": "add", "quantity": 0, "unit_price": 5.0, "ts": T0})
    messages = [Raw("events.browse", 0, 10, view), Raw("events.cart", 1, 20, cart),
                Raw("events.order", 0, 30, order), Raw("events.cart", 1, 21, invalid),
                Raw("events.order", 0, 31, b"not avro at all", b"m9")]

    batch = BatchSplitter(codec, partitions=4, now_ms=lambda: 42).split(messages)

    assert batch.kinds == {"browse": 1, "cart": 1, "order": 1}
    assert batch.failures == {"validate": 1, "decode": 1}
    assert batch.last_offsets == {("events.browse", 0): 10, ("events.cart", 1): 21, ("events.order", 0): 31}

    facts = {}
    for sale_id, value in batch.facts:
        name, record = codec.decode(value, timestamps="ms")
        assert name == "VelocityFacts" and record["sale_id"] == sale_id
        facts[sale_id] = [(f.event_id, f.sku, f.kind, f.units, f.revenue, source, offset)
                          for f, source, offset in facts_of(record)]
    assert facts == {
        "s1": [("b1", "k1", "view", 1, 0.0, "events.browse:0", 10),
               ("o1", "k1", "order", 2, 20.0, "events.order:0", 30)],
        "s2": [("c1", "k9", "cart", 2, 0.0, "events.cart:1", 20),
               ("o1", "k9", "order", 1, 5.0, "events.order:0", 30)],
    }
    assert batch.facts_count == 4

    signals = {}
    for partition, value in batch.signals:
        for signal in codec.decode(value, timestamps="ms")[1]["signals"]:
            assert partition == member_partition(signal["member_id"], 4)
            signals.setdefault(signal["member_id"], []).append((signal["kind"], signal["sku"], signal["quantity"]))
    assert signals == {"m1": [("browse", "k1", 1), ("order", "k1", 2), ("order", "k9", 1)],
                       "m2": [("cart", "k9", 2)]}

    letters = [codec.decode(value, timestamps="ms")[1] for _key, value in batch.deadletters]
    assert [(d["source_topic"], d["offset"], d["failed_at"]) for d in letters] == [("events.cart", 21, 42),
                                                                                  ("events.order", 31, 42)]
    assert "quantity: must be 1 .. 1,000,000, got 0" in letters[0]["reason"] and letters[0]["value"] == invalid
    assert letters[1]["reason"].startswith("decode: unknown framing") and letters[1]["key"] == b"m9"


def test_member_partition_is_kafkas_default_partitioner() -> None:
    # Reference values of Kafka's Java murmur2 (org.apache.kafka.common.utils.Utils#murmur2), as signed ints.
    for key, java in [("21", -973932308), ("foobar", -790332482), ("abc", 479470107)]:
        assert member_partition(key, 12) == (java & 0x7FFFFFFF) % 12
