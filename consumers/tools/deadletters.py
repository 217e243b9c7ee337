"""``salepulse deadletters tail|quarantine``: what the pipeline refused, and why.

- **Dead letters** (Kafka topic ``events.deadletter``): inputs the worker could not use — undecodable bytes,
  events that fail validation or that the pipeline cannot carry, records an agent failed on. Each holds the stage,
  the reason, the first 1 KB of the original, its SHA-256 and size.
- **Quarantine** (ClickHouse table ``quarantine``): rows ClickHouse refused for their values, with the topic,
  partition and offset they came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from salepulse.schemas.codec import Codec
from salepulse.streams.platform.config import Settings


def describe(letter: dict[str, Any]) -> str:
    """One readable line per dead letter.

    >>> describe({"failed_at": 1_764_403_200_000, "stage": "limits", "source_topic": "events.cart", "partition": 1,
    ...           "offset": 42, "value_size": 120, "value_sha256": "ab" * 32, "reason": "limits: unit_price: inf"})
    '2025-11-29T08:00:00+00:00  limits     events.cart:1:42  120 B  sha256 abababababab  limits: unit_price: inf'
    """
    at = datetime.fromtimestamp(letter["failed_at"] / 1000, tz=UTC).isoformat()
    size = letter.get("value_size", -1)
    size = len(letter.get("value") or b"") if size is None or size < 0 else size
    sha = (letter.get("value_sha256") or "")[:12] or "-"
    return (f"{at}  {letter.get('stage') or '-':<9}  {letter['source_topic']}:{letter['partition']}:"
            f"{letter['offset']}  {size} B  sha256 {sha}  {letter['reason']}")


def tail(settings: Settings, last: int = 20, timeout: float = 10.0) -> Iterator[dict[str, Any]]:
    """The last ``last`` dead letters of every partition of the dead-letter topic, oldest first."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.topics.deadletter
    consumer = Consumer(settings.kafka_config(**{"group.id": "salepulse-deadletters-tail",
                                                 "enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = []
        ends: dict[int, int] = {}
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                partitions.append(TopicPartition(topic, p, max(low, high - last)))
                ends[p] = high
        consumer.assign(partitions)
        codec, letters = Codec(settings.schema_registry_url), []
        while ends:
            batch = consumer.consume(500, timeout)
            if not batch:
                break
            for message in batch:
                if message.error():
                    continue
                letters.append(codec.decode(message.value(), timestamps="ms")[1])
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        yield from sorted(letters, key=lambda letter: letter["failed_at"])[-last:]
    finally:
        consumer.close()


def quarantine(settings: Settings, last: int = 20) -> list[dict[str, Any]]:
    """The latest rows of the ClickHouse ``quarantine`` table."""
    from salepulse.consumers.io.clickhouse import connect, migrate

    client = connect(settings.clickhouse_dsn)
    migrate(client)
    result = client.query("SELECT ts, topic, partition, offset, target, row, reason, excerpt FROM quarantine FINAL "
                          "ORDER BY ts DESC LIMIT {n:UInt32}", parameters={"n": last})
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def print_letters(settings: Settings, last: int, as_json: bool) -> int:
    for letter in tail(settings, last):
        if as_json:
            print(json.dumps({**letter, "key": None, "value": (letter["value"] or b"")[:200].hex()}, default=str))
        else:
            print(describe(letter))
    return 0
