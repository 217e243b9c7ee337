"""The dashboard against the REAL worker in headless Chromium: it loads, updates while events flow, and its
numbers match ClickHouse once the stream has drained."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.consumers.tools.simulate import SimulatedWorld, run_simulation
from salepulse.schemas.codec import Codec
from salepulse.streams.io.lag import end_offsets
from tests.integration.test_dashboard_page import check_dashboard_page

pytestmark = pytest.mark.integration


def test_dashboard_follows_the_stream_and_matches_clickhouse(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.start_worker()
    pipeline.start_sink()
    # Every sale open from the start, so orders spread over all of them; long enough (8-10 h of stream time, as
    # many minutes here) that none closes while the page is checked, which would take its units off the total.
    world = SimulatedWorld(5, n_members=3000, n_sales=6, open_at_start=6, stagger_minutes=0.0, sale_hours=(8.0, 10.0),
                           start=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50),
                           id_prefix="dash")
    stop = threading.Event()
    report: dict = {}
    producer = threading.Thread(target=lambda: report.update(r=run_simulation(
        pipeline.settings, rate=1500, stop=stop, world=world, progress=False, max_events=40_000)))
    producer.start()
    try:
        # Buying journeys take a few simulated minutes: check the page once orders flow steadily, so that units
        # must grow between its two loads.
        wait_until(lambda: pipeline.get("/api/dashboard")["totals"]["units"] >= 100, 120, "orders flowing")
        check_dashboard_page(f"http://127.0.0.1:{pipeline.settings.http_port}", tmp_path / "chromium",
                             raised_alerts=lambda: alert_ids_raised(pipeline))
    finally:
        stop.set()
        producer.join(60)
    pipeline.wait_drained()
    shown = {sale["sale_id"]: sale["units"] for sale in pipeline.get("/api/dashboard")["sales"]}
    pipeline.stop_sink()
    in_clickhouse = dict(pipeline.clickhouse().query(
        "SELECT sale_id, sum(units) FROM velocity_minute WHERE sale_id IN {ids:Array(String)} GROUP BY sale_id",
        parameters={"ids": list(shown)}).result_rows)
    assert shown and sum(shown.values()) > 0
    assert {sale: units for sale, units in shown.items() if units} == {s: int(u) for s, u in in_clickhouse.items()}


def alert_ids_raised(pipeline: Pipeline, timeout: float = 20.0) -> set[str]:
    """Every alert id on the pipeline's alerts topic so far (open, escalated and resolved)."""
    topic = pipeline.settings.topics.alerts
    ends = end_offsets(pipeline.settings, [topic])
    consumer = Consumer(pipeline.settings.kafka_config(**{"group.id": f"diag-{uuid.uuid4().hex}",
                                                          "auto.offset.reset": "earliest",
                                                          "enable.auto.commit": False}))
    consumer.subscribe([topic])
    codec, found, seen = Codec(), set(), {tp: -1 for tp in ends}
    deadline = time.monotonic() + timeout
    try:
        while any(seen[tp] < end - 1 for tp, end in ends.items()) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            seen[(message.topic(), message.partition())] = message.offset()
            found.add(codec.decode(message.value())[1]["alert_id"])
    finally:
        consumer.close()
    return found
