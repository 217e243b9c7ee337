"""Rankings served off the learning path (issue 13): the serving port answers what the main port answers, an order
reaches it within seconds, and the token and parameter checks hold there too."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.deploy.kafka.processes import free_port
from tests.integration.test_member_ranking import BRANDS, HOUR, order, sale_record

pytestmark = pytest.mark.integration


def fetch(port: int, path: str, token: str | None = "reader") -> tuple[int, object]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("snapshot_s", ["1.0", "0"], ids=["forked snapshots", "thread"])
def test_the_serving_port_ranks_like_the_main_port_and_sees_an_order_within_seconds(
        kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path, snapshot_s: str) -> None:
    serving = free_port()
    pipeline = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state",
                        extra_env={"SALEPULSE_SERVING_PORT": str(serving), "SALEPULSE_READ_TOKEN": "reader",
                                   "SALEPULSE_SERVING_SNAPSHOT_S": snapshot_s})
    try:
        pipeline.start_worker()
        main = pipeline.settings.http_port
        tag = uuid.uuid4().hex[:6]
        now = int(time.time() * 1000)
        sales = {brand: f"sv-{tag}-{brand}" for brand in BRANDS}
        with Publisher(pipeline.settings) as publisher:
            for brand, sale_id in sales.items():
                publisher.send("sale", sale_record(sale_id, brand, now - HOUR, now + 3 * HOUR, [50, 50, 50]))
        member = f"member-{tag}"
        path = f"/members/{member}/sales?k=10"

        def all_listed() -> bool:
            status, body = fetch(serving, path)
            return status == 200 and {item["sale_id"] for item in body["items"]} == set(sales.values())

        wait_until(all_listed, 60, "the serving port to rank every open sale")
        # a snapshot may trail the live state by one refresh: the same answer within seconds, not at once
        wait_until(lambda: fetch(serving, path) == fetch(main, path), 10, "the same ranking on both ports")

        with Publisher(pipeline.settings) as publisher:
            publisher.send("order", order(f"sv-{tag}-mine", member, sales["delta"], f"{sales['delta']}-p1",
                                          int(time.time() * 1000)))
        answers: list[object] = []

        def tops() -> bool:
            status, body = fetch(serving, path)
            answers.append((status, body))
            assert status == 200 and body["items"], f"no ranking from the serving port: {answers[-3:]}"
            return body["items"][0]["sale_id"] == sales["delta"]

        wait_until(tops, 10, "the ordered sale to top the serving port's ranking", every=0.05)
        wait_until(lambda: fetch(serving, path) == fetch(main, path), 10, "the same ranking on both ports")
        products = f"/members/{member}/products?sale_id={sales['delta']}&k=5"
        wait_until(lambda: fetch(serving, products) == fetch(main, products), 10, "the same products on both ports")

        # a snapshot retires every refresh: it closes each connection, so no client stays tied to a retired one
        with httpx.Client(base_url=f"http://127.0.0.1:{serving}", headers={"Authorization": "Bearer reader"}) as c:
            for _ in range(40 if snapshot_s != "0" else 1):
                assert c.get(path).status_code == 200
                time.sleep(0.05)
        assert fetch(serving, path, token=None)[0] == 401
        assert fetch(serving, f"/members/{member}/sales?k=0")[0] == 400
        assert fetch(serving, f"/members/{member}/products?sale_id=nope")[0] == 404
    finally:
        pipeline.close()
