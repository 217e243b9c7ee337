"""Followers: threads of the worker that keep in-memory state current from Kafka topics read whole.

A :class:`TopicFollower` is a confluent-kafka consumer assigned to every partition of its topics, reading from the
beginning, with no consumer group: every worker needs that state whole, whatever partitions of events it owns.
:class:`CatalogFollower` follows the compacted catalogue topics; the worker's shop view follower
(:class:`salepulse.streams.domain.shop_view.ShopView`) follows the snapshots and alerts the other workers publish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.poison import bounded_reason
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.topology import CATALOG_FOLLOWER_GROUP

log = get_logger(__name__)


class Applies(Protocol):
    """State a follower keeps current: ``apply`` takes one decoded record and says why it was refused, if it was."""

    def apply(self, name: str, record: dict[str, Any]) -> str | None: ...


class TopicFollower:
    """Keeps ``target`` current from ``topics`` read whole, in a daemon thread.

    ``ready`` is set once everything that existed at start-up has been read, so views never answer from half-read
    state.
    """

    def __init__(self, kafka_config: Mapping[str, Any], topics: list[str], decode: Callable[[bytes], Any],
                 target: Applies, name: str = "follower") -> None:
        self.kafka_config = dict(kafka_config)
        self.topics = topics
        self.decode = decode
        self.target = target
        self.ready = threading.Event()
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> TopicFollower:
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
                            problem = self.target.apply(name, record)
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the whole catalogue
                        problem = f"{type(exc).__name__}: {exc}"
                    if problem:
                        self.errors += 1
                        log.warning("followed record skipped", topic=message.topic(),
                                    partition=message.partition(), offset=message.offset(),
                                    reason=bounded_reason(problem))
                if not pending and not self.ready.is_set():
                    self.ready.set()
        finally:
            consumer.close()


class CatalogFollower(TopicFollower):
    """Keeps a :class:`Catalog` current from the compacted catalogue topics (sales, priors, stock, outcomes)."""

    def __init__(self, kafka_config: Mapping[str, Any], topics: list[str], decode: Callable[[bytes], Any],
                 catalog: Catalog | None = None) -> None:
        self.catalog = catalog or Catalog()
        super().__init__(kafka_config, topics, decode, self.catalog, name="catalog-follower")
