"""The write endpoints on the real worker: the collector and expert forecasts, with auth and size limits."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from salepulse.consumers.tools.harness import Pipeline, wait_until

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path_factory.mktemp("http"),
                 extra_env={"SALEPULSE_API_TOKEN": TOKEN, "SALEPULSE_MAX_BODY_BYTES": "20000"})
    p.start_worker()
    yield p
    p.close()


@pytest.fixture
def client(pipeline: Pipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{pipeline.settings.http_port}", timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def test_writes_need_the_token(pipeline: Pipeline, client: httpx.Client) -> None:
    anonymous = httpx.post(f"http://127.0.0.1:{pipeline.settings.http_port}/events", content=b"{}")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]
    wrong = client.post("/forecasts", content=b"{}", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_a_batch_keeps_its_good_events_and_names_each_bad_one(pipeline: Pipeline, client: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:6]
    before = pipeline.stats()["events_processed"]
    batch = [
        {"type": "browse", "event_id": f"{tag}-1", "member_id": "m1", "sale_id": "s", "sku": "k"},
        {"type": "cart", "event_id": f"{tag}-2", "member_id": "m1", "sale_id": "s", "sku": "k", "action": "add",
         "quantity": 0, "unit_price": 3.0},
        {"type": "order", "event_id": f"{tag}-3", "member_id": "m1",
         "lines": [{"sale_id": "s", "sku": "k", "quantity": 1, "unit_price": "cheap"}]},
        {"type": "teleport", "event_id": f"{tag}-4"},
        {"type": "order", "event_id": f"{tag}-5", "member_id": "m1", "ts": int(time.time() * 1000) - 3_600_000,
         "lines": [{"sale_id": "s", "sku": "k", "quantity": 2, "unit_price": 3.5}]},
    ]
    response = client.post("/events", content=json.dumps(batch))
    assert response.status_code == 422  # some refused: 4xx that names them; the good ones are stored
    body = response.json()
    assert body["accepted"] == 2
    refused = {item["index"]: item["problems"] for item in body["refused"]}
    assert refused == {
        1: ["quantity: must be 1 .. 1,000,000, got 0"],
        2: ["lines[0].unit_price: expected number, got str"],
        3: ["type: must be one of browse, cart, order, got 'teleport'"],
    }
    wait_until(lambda: pipeline.stats()["events_processed"] >= before + 2, 30, "the accepted events to be processed")


def test_all_bad_is_422_and_oversized_is_413_and_not_json_is_400(client: httpx.Client) -> None:
    response = client.post("/events", content=json.dumps({"type": "browse"}))
    assert response.status_code == 422 and response.json()["accepted"] == 0
    assert response.json()["refused"][0]["index"] == 0
    assert "event_id: required" in response.json()["refused"][0]["problems"]
    assert client.post("/events", content=b"{not json").status_code == 400
    huge = json.dumps([{"type": "browse", "event_id": str(i), "member_id": "m", "sale_id": "s", "sku": "k"}
                       for i in range(1000)])
    response = client.post("/events", content=huge)
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_forecasts_are_all_or_nothing(pipeline: Pipeline, client: httpx.Client) -> None:
    good = {"sale_id": "s1", "sku": "k1", "expected_units": 120, "low": 80, "high": 200, "author": "anna"}
    bad = {"sale_id": "s1", "sku": "k2", "expected_units": 50, "low": 60}
    response = client.post("/forecasts", content=json.dumps([good, bad]))
    assert response.status_code == 422
    assert response.json()["problems"] == [{"index": 1, "problems": ["low/high: give both ends of the 80% range, "
                                                                      "or neither"]}]
    assert client.post("/forecasts", content=json.dumps(good)).status_code == 202
