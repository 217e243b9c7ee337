"""Produce salepulse records to Kafka, routed by :data:`salepulse.streams.platform.topology.ROUTES`
(record, topic, key).

Used by ``simulate``, ``replay``, ``priors load``, the HTTP collector and the tests, so every producer agrees on
topics, keys and encoding. Delivery is idempotent at the producer (``enable.idempotence``) and at-least-once end
to end; consumers de-duplicate by ``event_id``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException, Producer

from salepulse.schemas.codec import Codec
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.topology import ROUTES


class Publisher:
    """Encode and produce records by kind (``browse``, ``cart``, ``order``, ``sale``, ``prior``, ``stock``).

    ``sent`` counts records by kind; ``units`` counts ordered units, so a run can be checked against ClickHouse.
    """

    def __init__(self, settings: Settings, codec: Codec | None = None, **producer_config: Any) -> None:
        self.settings = settings
        self.codec = codec or Codec(settings.schema_registry_url)
        config = settings.kafka_config(
            **{
                "enable.idempotence": True,
                "partitioner": "murmur2_random",  # key → partition as in Java, aiokafka and Faust's table routing
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                **producer_config,
            }
        )
        self.producer = Producer(config)
        self.sent: Counter[str] = Counter()
        self.units = 0
        self._errors: list[str] = []

    def send(self, kind: str, record: Mapping[str, Any], *, headers: list[tuple[str, bytes]] | None = None,
             on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Encode and produce one record; ``on_delivery(err, msg)`` replaces the shared error tracking of
        :meth:`flush` for callers that need each message's outcome (the HTTP collector)."""
        route = ROUTES[kind]
        self.send_raw(route.topic(self.settings.topics), self.codec.encode(route.record, record), route.key(record),
                      headers=headers, on_delivery=on_delivery)
        self.sent[kind] += 1
        if kind == "order":
            self.units += sum(line["quantity"] for line in record["lines"])

    def send_raw(self, topic: str, value: bytes, key: str | bytes | None = None, partition: int = -1, *,
                 headers: list[tuple[str, bytes]] | None = None,
                 on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Produce already-encoded bytes (also used to inject malformed input in tests and demos); ``partition``
        -1 lets the key choose."""
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=partition, headers=headers,
                                      on_delivery=on_delivery or self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let librdkafka drain, then retry
        self.producer.poll(0)

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything sent is acknowledged; raises if anything was refused."""
        remaining = self.producer.flush(timeout)
        if remaining:
            raise KafkaException(f"{remaining} messages still undelivered after {timeout:.0f}s")
        if self._errors:
            raise KafkaException(f"{len(self._errors)} messages refused by the broker; first: {self._errors[0]}")

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


class Pacer:
    """Hold a producer to a target rate (events per second) or a replay speed-up of event time.

    >>> pacer = Pacer(rate=None)
    >>> pacer.wait()  # no target: returns at once
    """

    def __init__(self, rate: float | None = None, speed: float | None = None) -> None:
        self.rate = rate
        self.speed = speed
        self._started = time.monotonic()
        self._count = 0
        self._first_event_ms: int | None = None

    def wait(self, event_ms: int | None = None) -> None:
        self._count += 1
        if self.speed and event_ms is not None:
            if self._first_event_ms is None:
                self._first_event_ms = event_ms
            due = (event_ms - self._first_event_ms) / 1000.0 / self.speed
        elif self.rate:
            due = self._count / self.rate
        else:
            return
        ahead = due - (time.monotonic() - self._started)
        if ahead > 0.002:
            time.sleep(ahead)
