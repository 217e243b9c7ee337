"""Followers: threads of the worker that keep in-memory state current from Kafka topics read whole.

:class:`CatalogFollower` is a confluent-kafka consumer assigned to every partition of the compacted catalogue
topics, reading from the beginning, with no consumer group: every worker needs the whole catalogue, whatever
partitions of events it owns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.poison import bounded_reason
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.topology import CATALOG_FOLLOWER_GROUP

log = get_logger(__name__)


class CatalogFollower:
    """Keeps a :class:`Catalog` current from the compacted topics, in a daemon thread.

    ``ready`` is set once everything that existed at start-up has been read, so views never answer from a
    half-loaded catalogue.
    """

    def __init__(self, kafka_config: Mapping[str, Any], topics: list[str], decode: Callable[[bytes], Any],
                 catalog: Catalog | None = None) -> None:
        self.kafka_config = dict(kafka_config)
        self.topics = topics
        self.decode = decode
        self.catalog = catalog or Catalog()
        self.ready = threading.Event()
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="catalog-follower", daemon=True)

    def start(self) -> CatalogFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        consumer = Consumer({**self.kafka_config, "group.id": CATALOG_FOLLOWER_GROUP,
                             "enable.auto.commit": False, "enable.partition.eof": True})
        metadata = consumer.list_topics(timeout=30)
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for topic in self.topics
                      for p in metadata.topics[topic].partitions]
        ends = {}
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            ends[(tp.topic, tp.partition)] = high
        pending = {key for key, high in ends.items() if high > 0}
        consumer.assign(partitions)
        if not pending:
            self.ready.set()
        try:
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    key = (message.topic(), message.partition())
                    if message.error():
                        pending.discard(key)  # end of partition
                        continue
                    if message.offset() + 1 >= ends.get(key, 0):
                        pending.discard(key)
                    if message.value() is None:
                        continue
                    try:
                        name, record = self.decode(message.value())
                        with self._lock:
                            problem = self.catalog.apply(name, record)
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the whole catalogue
                        problem = f"{type(exc).__name__}: {exc}"
                    if problem:
                        self.errors += 1
                        log.warning("catalogue record skipped", topic=message.topic(),
                                    partition=message.partition(), offset=message.offset(),
                                    reason=bounded_reason(problem))
                if not pending and not self.ready.is_set():
                    self.ready.set()
        finally:
            consumer.close()
