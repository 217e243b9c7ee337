"""Create salepulse's topics with the configured partition counts, before any client relies on auto-creation.

Auto-created topics get the broker's defaults; the catalogue, priors and stock must be compacted (latest value per
key), and the facts topic must have as many partitions as the sale-state table, so creation is explicit.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create any missing salepulse topic; returns the names created now."""
    admin = AdminClient(settings.kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    compacted = set(settings.topics.compacted)
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=-1,
                 config={"cleanup.policy": "compact"} if name in compacted else {})
        for name in settings.topics.all()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except Exception as exc:  # another process may have created it a moment ago
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    log.info("topics created", topics=created, partitions=settings.partitions)
    return created
