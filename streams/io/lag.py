"""Consumer-group lag: how far a group is behind the end of its topics. The demo and the benchmarks wait on it."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.topology import LAG_PROBE_GROUP


def end_offsets(settings: Settings, topics: Iterable[str], timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """High watermark of every partition of ``topics``."""
    probe = Consumer(settings.kafka_config(**{"group.id": LAG_PROBE_GROUP, "enable.auto.commit": False}))
    try:
        metadata = probe.list_topics(timeout=timeout)
        ends = {}
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
                ends[(topic, partition)] = high
        return ends
    finally:
        probe.close()


def committed_offsets(settings: Settings, group: str, timeout: float = 10.0) -> dict[tuple[str, int], int]:
    admin = AdminClient(settings.kafka_config())
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=timeout)
    result = futures[group].result()
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def group_lag(settings: Settings, group: str, topics: Iterable[str]) -> int:
    """Messages in ``topics`` not yet committed by ``group`` (a partition it never committed counts whole)."""
    topics = list(topics)
    ends = end_offsets(settings, topics)
    committed = committed_offsets(settings, group)
    return sum(max(0, high - committed.get(tp, 0)) for tp, high in ends.items())
