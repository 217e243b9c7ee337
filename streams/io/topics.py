"""Create salepulse's topics with the configured partition counts, before any client relies on auto-creation.

Auto-created topics get the broker's defaults; the catalogue, priors and stock must be compacted (latest value per
key), and the facts topic must have as many partitions as the sale-state table, so creation is explicit.
"""

from __future__ import annotations

import time

from confluent_kafka.admin import AdminClient, NewTopic

from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.topology import TABLE_ROLES

log = get_logger(__name__)


def table_changelogs(settings: Settings) -> list[str]:
    """Faust's changelog topic (``<app id>-<table>-changelog``) of each table a worker of this role keeps.

    >>> table_changelogs(Settings(app_id="shop", worker_role="velocity"))
    ['shop-sale-state-changelog', 'shop-alert-state-changelog']
    """
    return [f"{settings.worker_group}-{table}-changelog" for table, role in TABLE_ROLES.items()
            if settings.worker_role in ("all", role)]


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create any missing salepulse topic, and the changelogs of this role's tables; returns the names created now.

    The changelogs are created here, before the Faust app starts, because a changelog that Faust creates itself
    can be missing from its consumer's metadata when the group assigns partitions ("Ignoring missing topic"):
    the table is then never recovered on that worker until a later rebalance (seen with ``alert-state`` under load).
    """
    admin = AdminClient(settings.kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    compacted = set(settings.topics.compacted) | set(table_changelogs(settings))
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=-1,
                 config={"cleanup.policy": "compact"} if name in compacted else {})
        for name in (*settings.topics.all(), *table_changelogs(settings))
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
    _wait_for_leaders(admin, created, timeout)
    log.info("topics created", topics=created, partitions=settings.partitions)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Until every partition of ``names`` has a leader in the broker's metadata.

    A created topic can still be unknown to the broker that leads it for a moment (seen on a freshly started
    broker: a producer right after creation had 31,680 messages refused with UNKNOWN_TOPIC_OR_PART).
    """
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        missing = [name for name in names
                   if name not in topics or topics[name].error is not None or not topics[name].partitions
                   or any(p.leader < 0 for p in topics[name].partitions.values())]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics created but without a partition leader after {timeout:.0f} s: {missing}")
        time.sleep(0.1)
