"""ClickHouse goes away mid-stream and comes back: the sink retries, keeps its place, and the totals are exact."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from salepulse.consumers.io.clickhouse import connect
from salepulse.consumers.tools.harness import Pipeline, wait_until
from tests.integration.test_velocity_pipeline import make_events, publish_slowly

pytestmark = pytest.mark.integration


class FlakyClickHouse:
    """A real ClickHouse client whose inserts fail while ``down`` is set, as a dropped server would."""

    def __init__(self, dsn: str) -> None:
        self.client = connect(dsn)
        self.down = threading.Event()
        self.refused = 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.down.is_set():
            self.refused += 1
            raise ConnectionError("ClickHouse unreachable (simulated outage)")
        return self.client.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_an_outage_mid_stream_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    prefix = f"outage-{uuid.uuid4().hex[:6]}-"
    events = make_events(prefix, 3000, start_ms=1_764_403_200_000)
    flaky = FlakyClickHouse(pipeline.settings.clickhouse_dsn)
    pipeline.start_worker()
    sink = pipeline.start_sink(client_factory=lambda _dsn: flaky)
    produced: dict[str, int] = {}
    producer = threading.Thread(target=lambda: produced.update(units=publish_slowly(pipeline, events, 1500.0)))
    producer.start()
    wait_until(lambda: sink.rows_written.total() > 0, 60, "the first rows in ClickHouse")
    flaky.down.set()
    wait_until(lambda: flaky.refused >= 3, 60, "the sink to retry against the outage")
    written_during_outage = sink.rows_written.total()
    flaky.down.clear()
    producer.join(120)
    pipeline.wait_drained(180)
    pipeline.stop_sink()

    assert sink.failures.total() >= 3
    assert written_during_outage < 9000  # the outage really held rows back
    totals = pipeline.totals(prefix)
    assert totals["units"] == produced["units"]
    assert (totals["orders"], totals["views"], totals["carts"]) == (3000, 3000, 3000)
