"""Finished sales leave the tables (issue 12), on the real broker and chdb: with a retention of 0 hours, the
owner deletes the ``sale-state`` and ``alert-state`` entries of a sale that has ended (tombstones in the
compacted changelogs), and keeps those of a sale still open."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until

pytestmark = pytest.mark.integration
HOUR = 3_600_000


@pytest.fixture
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state", partitions=2,
                 extra_env={"SALEPULSE_FINISHED_SALE_RETENTION_HOURS": "0"})
    yield p
    p.close()


def changelog(pipeline: Pipeline, table: str) -> dict[str, list[bytes | None]]:
    """Every value written to a table's changelog, by key, oldest first."""
    topic = f"{pipeline.settings.groups.worker('velocity')}-{table}-changelog"
    consumer = Consumer(pipeline.settings.kafka_config(**{"group.id": f"retention-{uuid.uuid4().hex}",
                                                          "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    found: dict[str, list[bytes | None]] = {}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 3:
        for message in consumer.consume(100, timeout=0.5):
            if not message.error():
                # Faust writes a str key as JSON
                found.setdefault(json.loads(message.key()), []).append(message.value())
                quiet_since = time.monotonic()
    consumer.close()
    return found


def test_the_state_of_a_sale_that_ended_is_deleted_and_an_open_sales_is_kept(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex[:6]
    ended, live = f"ret-{tag}-ended", f"ret-{tag}-live"
    now = int(time.time() * 1000)
    with Publisher(pipeline.settings) as publisher:
        for sale_id, start, end in ((ended, now - 3 * HOUR, now - HOUR), (live, now - HOUR, now + 3 * HOUR)):
            publisher.send("sale", {"event_id": f"{sale_id}-v1", "sale_id": sale_id, "brand": "b", "starts_at": start,
                                    "ends_at": end, "updated_at": now,
                                    "products": [{"sku": "k", "name": "k", "category": "c", "price": 10.0,
                                                  "stock": 100}]})
    worker = pipeline.spawn("velocity", "velocity")
    pipeline.wait_ready(worker, 180)
    with Publisher(pipeline.settings) as publisher:
        for i, (sale_id, ts) in enumerate(((ended, now - 2 * HOUR), (live, now))):
            publisher.send("order", {"event_id": f"ret-{tag}-o{i}", "order_id": f"ret-{tag}-o{i}", "member_id": "m",
                                     "ts": ts, "lines": [{"sale_id": sale_id, "sku": "k", "quantity": 2,
                                                          "unit_price": 10.0}]})
    wait_until(lambda: pipeline.get(f"/sales/{live}", worker.port)["units"] == 2, 60, "the open sale's order counted")
    wait_until(lambda: {ended, live} <= set(changelog(pipeline, "sale-state")), 60,
               "both sales' counted state in the sale-state changelog (else there is nothing to delete)")
    # The owner's tick deletes once a minute.
    wait_until(lambda: changelog(pipeline, "sale-state")[ended][-1] is None, 150,
               "a tombstone for the ended sale in the sale-state changelog", every=5.0)
    kept = changelog(pipeline, "sale-state")
    assert kept[live][-1] is not None, "the open sale's state was deleted too"
    assert pipeline.get(f"/sales/{live}", worker.port)["units"] == 2
