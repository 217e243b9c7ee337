"""``salepulse collect`` on the real broker: the same answers as the worker's ``POST /events``, and what it accepts
reaches the worker, counted once; a batch it accepts is on the broker before the 202."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.streams.tools.bench_collector import body_of, templates

pytestmark = pytest.mark.integration
TOKEN = "collector-token"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path_factory.mktemp("collector"),
                 extra_env={"SALEPULSE_API_TOKEN": TOKEN})
    p.start_worker()
    yield p
    p.close()


@pytest.fixture(scope="module")
def collector(pipeline: Pipeline) -> Iterator[httpx.Client]:
    port, _process = pipeline.start_collector()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def test_the_collector_answers_as_the_worker_does(pipeline: Pipeline, collector: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    bodies = [
        json.dumps([{"type": "browse", "event_id": f"{tag}-1", "member_id": "m1", "sale_id": "s", "sku": "k"},
                    {"type": "cart", "event_id": f"{tag}-2", "member_id": "m1", "sale_id": "s", "sku": "k",
                     "action": "add", "quantity": 0, "unit_price": 3.0},
                    {"type": "order", "event_id": f"{tag}-3", "member_id": "m1", "ts": now + 3_600_000,
                     "lines": [{"sale_id": "s", "sku": "k", "quantity": 1, "unit_price": "cheap"}]},
                    {"type": "teleport"}]).encode(),
        b"{not json", b"[]", b"[" * 20 + b"]" * 20,
        json.dumps({"type": "order", "event_id": f"{tag}-4", "member_id": "m1",
                    "lines": [{"sale_id": "s", "sku": "k", "quantity": 2, "unit_price": 1e999}]}).encode(),
    ]
    worker = httpx.Client(base_url=f"http://127.0.0.1:{pipeline.settings.http_port}", timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    for body in bodies:
        mine, theirs = collector.post("/events", content=body), worker.post("/events", content=body)
        assert mine.status_code == theirs.status_code, body
        assert mine.json() == theirs.json(), body
    worker.close()
    assert httpx.post(str(collector.base_url).rstrip("/") + "/events", content=b"{}").status_code == 401
    assert collector.get("/health").json()["ready"] is True


def test_what_the_collector_accepts_is_counted_once(pipeline: Pipeline, collector: httpx.Client) -> None:
    pool = templates(3_000)
    before, stored = pipeline.stats()["events_processed"], accepted_total(collector)
    tag = uuid.uuid4().hex[:6]
    accepted = 0
    for i in range(5):
        response = collector.post("/events", content=body_of(pool, i * 100, f"{tag}-{i}", int(time.time() * 1000)))
        assert response.status_code == 202, response.text
        accepted += response.json()["accepted"]
    again = collector.post("/events", content=body_of(pool, 0, f"{tag}-0", int(time.time() * 1000)))
    assert again.status_code == 202  # a resent batch is stored again; its identities count once downstream
    assert accepted == 500
    wait_until(lambda: pipeline.stats()["events_processed"] >= before + 600, 60, "the worker to read the events")
    assert accepted_total(collector) == stored + 600


def accepted_total(collector: httpx.Client) -> float:
    for line in collector.get("/metrics").text.splitlines():
        if line.startswith('salepulse_collector_events_total{outcome="accepted"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_collector_stops_cleanly_on_sigterm(pipeline: Pipeline) -> None:
    port, process = pipeline.start_collector()
    response = httpx.post(f"http://127.0.0.1:{port}/events", headers={"Authorization": f"Bearer {TOKEN}"},
                          content=json.dumps({"type": "browse", "event_id": uuid.uuid4().hex, "member_id": "m",
                                              "sale_id": "s", "sku": "k"}))
    assert response.status_code == 202
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
