"""Each real dataset, replayed through the real broker, worker and sink, lands in ClickHouse exactly."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.consumers.tools.replay import get_dataset, run_replay

pytestmark = pytest.mark.integration

SALE_PREFIX = {"rees46": "rees46-", "taobao": "taobao-", "online-retail": "retail-"}


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path_factory.mktemp("replay"))
    p.start_worker()
    yield p
    p.close()


@pytest.mark.parametrize(
    "dataset",
    [pytest.param(name, marks=pytest.mark.needs_data(name)) for name in ("rees46", "taobao", "online-retail")],
)
def test_replayed_slice_lands_in_clickhouse_exactly(pipeline: Pipeline, dataset: str) -> None:
    before = pipeline.stats()["events_processed"]
    report = run_replay(pipeline.settings, dataset, limit=1500, progress=False)
    assert report.events == 1500
    pipeline.start_sink()
    wait_until(lambda: pipeline.stats()["events_processed"] - before >= report.events, 180, f"{dataset} processed")
    pipeline.wait_drained()
    pipeline.stop_sink()
    totals = pipeline.totals(SALE_PREFIX[dataset])
    assert totals["units"] == report.units
    assert totals["orders"] >= report.orders  # an order spanning two sales counts once per sale
    assert totals["views"] == distinct_browse_ids(pipeline, dataset, 1500)


def distinct_browse_ids(pipeline: Pipeline, dataset: str, limit: int) -> int:
    """Browse events of the slice, counting exact duplicate rows of the source once (they share an event_id)."""
    spec = get_dataset(dataset)
    events = itertools.islice(spec.reader(pipeline.settings.data_dir / spec.relative_path).events(), limit)
    return len({record["event_id"] for kind, record in events if kind == "browse"})
