"""The live worker teaches its ranking blends from carts and orders, and keeps them over a restart (issue 10)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.streams.domain.preferences import Ranker
from salepulse.streams.runtime.ranker_store import store_path

pytestmark = pytest.mark.integration
HOUR = 3_600_000
CATEGORIES = ["shoes", "hats", "bags", "belts"]


def _initial() -> dict[str, dict[str, float]]:
    ranker = Ranker()
    return {name: getattr(ranker, name).weights() for name in ("again", "new", "sale")}


def _moved(weights: dict[str, dict[str, float]], initial: dict[str, dict[str, float]]) -> bool:
    return any(abs(weights[part][name] - value) > 1e-9 for part in initial for name, value in initial[part].items())


def test_carts_and_orders_teach_the_blends_and_a_restart_keeps_them(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    sales = [f"lr-{tag}-{i}" for i in range(3)]
    with Publisher(pipeline.settings) as publisher:
        for i, sale_id in enumerate(sales):
            publisher.send("sale", {
                "event_id": f"{sale_id}-v1", "sale_id": sale_id, "brand": f"brand{i}", "starts_at": now - HOUR,
                "ends_at": now + 3 * HOUR, "updated_at": now - HOUR,
                "products": [{"sku": f"{sale_id}-p{j}", "name": f"p{j}", "category": CATEGORIES[j % 4],
                              "price": 20.0 + j, "stock": 100} for j in range(40)]})
    # A choice in a sale the worker's catalogue does not know yet teaches nothing (ChoiceCandidates): once the
    # learner got faster, signals sent at once can reach it before the catalogue follower has read the sales.
    wait_until(lambda: all(_known(pipeline, sale_id) for sale_id in sales), 60, "the sales in the catalogue")
    initial = _initial()
    assert _moved(pipeline.stats()["ranker_weights"], initial) is False  # a fresh worker scores with the priors

    with Publisher(pipeline.settings) as publisher:
        for m in range(60):
            member, sale_id = f"lr-{tag}-m{m}", sales[m % 3]
            category = m % 4
            ts = now + m * 10
            # two views in one category, then a cart add of a third product of it, and an order of it
            for k, j in enumerate((category, category + 4)):
                publisher.send("browse", {"event_id": f"lr-{tag}-b{m}-{k}", "member_id": member, "sale_id": sale_id,
                                          "sku": f"{sale_id}-p{j}", "ts": ts + k})
            chosen = f"{sale_id}-p{category + 8 + 4 * (m % 5)}"
            publisher.send("cart", {"event_id": f"lr-{tag}-c{m}", "member_id": member, "sale_id": sale_id,
                                    "sku": chosen, "action": "add", "quantity": 1, "unit_price": 30.0,
                                    "ts": ts + 3})
            publisher.send("order", {"event_id": f"lr-{tag}-o{m}", "order_id": f"lr-{tag}-o{m}", "member_id": member,
                                     "ts": ts + 4, "lines": [{"sale_id": sale_id, "sku": chosen, "quantity": 1,
                                                              "unit_price": 30.0}]})

    def learnt() -> bool:
        stats = pipeline.stats()
        taught = stats["ranker_updates"]
        return taught["products"] + taught["over_budget"] >= 100 and taught["products"] > 0

    wait_until(learnt, 120, "the carts and orders to reach the learner")
    stats = pipeline.stats()
    assert stats["ranker_updates"]["sales"] > 0
    weights = stats["ranker_weights"]
    assert _moved(weights, initial), "the live ranking still scores with its prior weights"

    # a clean stop writes the snapshot; the next worker starts from it, not from the priors
    pipeline.stop_worker()
    path = store_path(pipeline.settings)
    saved = json.loads(path.read_text())
    assert _moved({name: saved[name] for name in initial}, initial)
    pipeline.start_worker()
    restored = pipeline.stats()["ranker_weights"]
    for part in initial:
        assert restored[part] == pytest.approx(saved[part], rel=1e-9, abs=1e-12)


def _known(pipeline: Pipeline, sale_id: str) -> bool:
    try:
        pipeline.get(f"/sales/{sale_id}")
        return True
    except OSError:  # 404 until the catalogue follower has read the sale (503 while not ready)
        return False
