"""The buyer desk end to end on the real broker and ClickHouse (issue 15).

Alice's forecasts ran half again above what sold in six finished sales. Her next sale, not open yet, is planned
from her number read down, with her record as the reason; the plan reaches ``stock.plans`` and ClickHouse, and her
scorecard says why.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.schemas.codec import Codec

pytestmark = pytest.mark.integration
HOUR = 3_600_000
SKUS = [f"shoe-{i}" for i in range(5)]
FORECAST, SOLD = 150.0, 100  # alice says 150, 100 sell: she runs 50 % high


def _sale(sale_id: str, start: int) -> dict:
    return {"event_id": f"{sale_id}-v1", "sale_id": sale_id, "brand": "acme", "starts_at": start,
            "ends_at": start + HOUR, "updated_at": start,
            "products": [{"sku": f"{sale_id}-{sku}", "name": sku, "category": "shoes.sneakers", "price": 80.0,
                          "stock": 1000} for sku in SKUS]}


def _forecasts(sale_id: str, start: int) -> list[dict]:
    return [{"event_id": f"{sale_id}-{sku}-f1", "sale_id": sale_id, "sku": f"{sale_id}-{sku}",
             "expected_units": FORECAST, "low": 100.0, "high": 220.0, "author": "alice", "buyer_id": "alice",
             "submitted_at": start - HOUR} for sku in SKUS]


class PlanReader:
    def __init__(self, pipeline: Pipeline) -> None:
        self.consumer = Consumer(pipeline.settings.kafka_config(
            **{"group.id": f"plans-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}))
        self.consumer.subscribe([pipeline.settings.topics.plans])
        self.codec = Codec()
        self.plans: list[tuple[bytes, dict]] = []

    def poll(self) -> list[tuple[bytes, dict]]:
        for message in self.consumer.consume(100, timeout=0.5):
            if not message.error():
                self.plans.append((message.key(), self.codec.decode(message.value(), timestamps="ms")[1]))
        return self.plans


def test_an_optimistic_buyer_is_corrected_planned_and_told_why(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    pipeline.start_sink()
    reader = PlanReader(pipeline)
    tag = uuid.uuid4().hex[:6]
    base = int(time.time() * 1000) - 10 * 24 * HOUR
    past = [(f"bd-{tag}-{i}", base + i * 2 * HOUR) for i in range(6)]
    upcoming = (f"bd-{tag}-next", base + 30 * HOUR)
    with Publisher(pipeline.settings) as publisher:
        for sale_id, start in [*past, upcoming]:
            publisher.send("sale", _sale(sale_id, start))
            for record in _forecasts(sale_id, start):
                publisher.send("prior", record)
        for sale_id, start in past:  # 10 orders of 10 units of every product: 100 sold each
            for o in range(10):
                publisher.send("order", {
                    "event_id": f"{sale_id}-o{o}", "order_id": f"{sale_id}-o{o}", "member_id": f"m{o}",
                    "ts": start + 10 * 60_000 + o * 1000, **_region(o),
                    "lines": [{"sale_id": sale_id, "sku": f"{sale_id}-{sku}", "quantity": SOLD // 10,
                               "unit_price": 80.0} for sku in SKUS]})
    # every order counted before stream time jumps ahead (a sale's outcome is taken when stream time passes its
    # end; orders counted later are not in it: README, known issues)
    def counted(sale_id: str) -> bool:
        try:
            return pipeline.get(f"/sales/{sale_id}")["units"] == SOLD * len(SKUS)
        except OSError:  # 404 until the catalogue reaches the worker
            return False

    wait_until(lambda: all(counted(sale_id) for sale_id, _ in past), 90, "the worker to count the six sales")
    with Publisher(pipeline.settings) as publisher:
        # stream time moves past the six sales (but not to the next one): they finish, their outcomes go out.
        # The clock is 100 views in a sale open at that time: stream time is a high percentile of recent event
        # times (streams/platform/clock.py), so one event does not move it.
        clock = (f"bd-{tag}-clock", base + 19 * HOUR)
        publisher.send("sale", _sale(*clock))
        wait_until(lambda: _known(pipeline, clock[0]), 30, "the clock sale in the catalogue")
        for i in range(100):
            publisher.send("browse", {"event_id": f"bd-{tag}-tick{i}", "member_id": f"m{i}", "sale_id": clock[0],
                                      "sku": f"{clock[0]}-{SKUS[0]}", "ts": base + 19 * HOUR + 60_000 + i})

    sku = f"{upcoming[0]}-{SKUS[0]}"

    def corrected() -> dict | None:
        # outcomes arrive sale by sale, and the sale is re-planned as the desk learns: wait for all six
        return next((p for key, p in reversed(reader.poll()) if key == f"{upcoming[0]}:{sku}".encode()
                     and p["source"] == "expert-corrected" and "over 6 sales" in p["reason"]), None)

    wait_until(lambda: corrected() is not None, 120, "a plan for alice's next sale on stock.plans, from 6 sales")
    plan = corrected()
    assert plan is not None
    assert plan["expert"] == FORECAST and plan["buyer_id"] == "alice"
    assert 0.6 < plan["correction"] < 0.8  # 100 / 150, shrunk a little toward 1 over 30 forecasts
    assert plan["p10"] <= plan["p50"] <= plan["p90"] and plan["p50"] < FORECAST
    assert plan["quantity"] >= plan["p50"] and plan["service_level"] == pytest.approx(0.9)
    assert "alice's forecasts on shoes.sneakers" in plan["reason"] and "% high over 6 sales" in plan["reason"]

    # per warehouse: the regions' shares of the units that carried one (north 60, south 30), in whole units
    assert plan["warehouses"], "no per-warehouse split"
    parts = {w["region"]: w["quantity"] for w in plan["warehouses"]}
    assert set(parts) == {"north", "south"} and sum(parts.values()) == plan["quantity"]
    assert parts["north"] > parts["south"] > 0

    api = pipeline.get(f"/sales/{upcoming[0]}/plan")
    assert all(sum(p["warehouses"].values()) == p["quantity"] for p in api["products"])
    assert {p["sku"] for p in api["products"]} == {f"{upcoming[0]}-{s}" for s in SKUS}
    assert all(p["source"] == "expert-corrected" for p in api["products"])

    def in_clickhouse() -> list[tuple]:
        return pipeline.clickhouse().query(
            "SELECT source, correction, reason FROM plans FINAL WHERE sale_id = {s:String} AND sku = {k:String}",
            parameters={"s": upcoming[0], "k": sku}).result_rows

    wait_until(lambda: any(row[0] == "expert-corrected" for row in in_clickhouse()), 60, "the plan in ClickHouse")
    assert in_clickhouse()[0][1] == pytest.approx(plan["correction"])

    card = pipeline.get("/buyers/alice")
    assert card["forecasts"] >= 30 and card["sales"] >= 6 and card["sold_out"] == 0
    assert card["bias"] == pytest.approx(FORECAST / SOLD - 1, abs=1e-9)  # +50 %: her record, plainly
    assert card["range_coverage"] == 1.0  # 100 sold, inside her [100, 220]
    shoes = next(c for c in card["categories"] if c["category"] == "shoes.sneakers")
    assert shoes["learned_bias"] > 0.25 and "ran" in shoes["reason"] and "high" in shoes["reason"]
    assert len(card["recent_sales"]) == 6 and card["recent_sales"][0]["actual"] == SOLD * len(SKUS)

    # the warehouse's view: salepulse plan --sale S --csv, and the buyer's page
    out = subprocess.run([sys.executable, "-m", "salepulse.streams.tools.cli", "plan", "--sale", upcoming[0], "--csv"],
                         env=pipeline.env, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["sku"] for r in rows} == {f"{upcoming[0]}-{s}" for s in SKUS}
    assert all(int(r["quantity"]) >= 1 and "alice's forecasts" in r["reason"] for r in rows)
    assert {r["warehouse"] for r in rows} == {"north", "south"}
    url = f"http://127.0.0.1:{pipeline.settings.http_port}/dashboard/buyers/alice"
    with urllib.request.urlopen(url, timeout=5) as response:
        page = response.read().decode()
    assert "Buyer alice" in page and "+50%" in page and "shoes.sneakers" in page


def _region(order: int) -> dict:
    """Members m0-m5 live in the north, m6-m8 in the south; m9's orders carry no region (an older producer)."""
    if order < 6:
        return {"region": "north"}
    return {"region": "south"} if order < 9 else {}


def _known(pipeline: Pipeline, sale_id: str) -> bool:
    try:
        pipeline.get(f"/sales/{sale_id}")
        return True
    except OSError:
        return False
