"""Personalised ranking on the real broker: an order lifts its brand's sale; closed sales and sold-out products
never appear."""

from __future__ import annotations

import time
import uuid

import pytest

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until

pytestmark = pytest.mark.integration
HOUR = 3_600_000
BRANDS = ["alpha", "bravo", "charlie", "delta", "echo"]


def sale_record(sale_id: str, brand: str, start: int, end: int, stocks: list[int]) -> dict:
    return {"event_id": f"{sale_id}-v1", "sale_id": sale_id, "brand": brand, "starts_at": start, "ends_at": end,
            "updated_at": start, "products": [{"sku": f"{sale_id}-p{i}", "name": f"{brand} {i}",
                                               "category": "apparel.shirt", "price": 30.0 + i, "stock": stock}
                                              for i, stock in enumerate(stocks)]}


def order(event_id: str, member: str, sale_id: str, sku: str, ts: int, quantity: int = 1) -> dict:
    return {"event_id": event_id, "order_id": event_id, "member_id": member, "ts": ts,
            "lines": [{"sale_id": sale_id, "sku": sku, "quantity": quantity, "unit_price": 30.0}]}


@pytest.mark.parametrize("layout", ["one worker", "velocity and preferences workers"])
def test_an_order_lifts_its_brand_and_closed_or_sold_out_items_never_show(pipeline: Pipeline, layout: str) -> None:
    if layout == "one worker":
        pipeline.start_worker()
    else:  # SALEPULSE_WORKER_ROLE: each workload in its own process; popularity reaches preferences by snapshots
        pipeline.start_worker(role="velocity")
        pipeline.start_preferences_worker()
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    sales = {brand: f"rk-{tag}-{brand}" for brand in BRANDS}
    closed = f"rk-{tag}-closed"
    with Publisher(pipeline.settings) as publisher:
        for brand, sale_id in sales.items():
            publisher.send("sale", sale_record(sale_id, brand, now - HOUR, now + 3 * HOUR, [1, 50, 50]))
        publisher.send("sale", sale_record(closed, "foxtrot", now - 5 * HOUR, now - HOUR, [50, 50]))
        # Other members make alpha and bravo the trending sales, and sell out charlie's only p0.
        ts = now - 60_000
        for i in range(30):
            brand = "alpha" if i % 3 else "bravo"
            publisher.send("order", order(f"rk-{tag}-bg{i}", f"other-{i}", sales[brand], f"{sales[brand]}-p1", ts + i))
        publisher.send("order", order(f"rk-{tag}-soldout", "other-x", sales["charlie"], f"{sales['charlie']}-p0", ts))
    member = f"member-{tag}"

    def scores() -> dict[str, float]:
        try:
            items = pipeline.get_member(f"/members/{member}/sales?k=10")["items"]
        except OSError:  # 503 while the worker joins its group or loads the catalogue
            return {}
        return {item["sale_id"]: item["score"] for item in items}

    def ranking() -> list[str]:
        return list(scores())

    def trends_counted() -> bool:
        """Every open sale ranked AND the other members' orders counted: alpha and bravo score above the two
        sales nobody ordered from. Sales appear as soon as the catalogue is read, orders are counted later (by
        the ingest and sale_state, and in the split layout only once a velocity snapshot reached the
        preferences worker); a cold ranking read in between ties everything and may put charlie first."""
        current = scores()
        if set(current) != set(sales.values()):
            return False
        quiet = max(current[sales["delta"]], current[sales["echo"]])
        return current[sales["alpha"]] > quiet and current[sales["bravo"]] > quiet

    wait_until(trends_counted, 60, "every open sale ranked with the background orders counted")
    cold = ranking()
    assert closed not in cold
    assert cold.index(sales["charlie"]) > 0, "charlie is not trending, so a cold member should not see it first"

    with Publisher(pipeline.settings) as publisher:
        publisher.send("order", order(f"rk-{tag}-mine", member, sales["charlie"], f"{sales['charlie']}-p2",
                                      int(time.time() * 1000)))
    wait_until(lambda: ranking()[0] == sales["charlie"], 10, "the ordered brand's sale to rise to the top",
               every=0.05)
    first = pipeline.get_member(f"/members/{member}/sales?k=10")["items"][0]
    assert first["reason"] in {"brand you ordered", "sale you visited", "brand you like"}  # about them, not trends
    assert closed not in ranking()

    products = pipeline.get_member(f"/members/{member}/products?sale_id={sales['charlie']}&k=20")["items"]
    skus = [item["sku"] for item in products]
    assert f"{sales['charlie']}-p0" not in skus, "a sold-out product must never be offered"
    assert set(skus) == {f"{sales['charlie']}-p1", f"{sales['charlie']}-p2"}


def test_bad_parameters_and_unknown_sales_get_clear_errors(pipeline: Pipeline) -> None:
    pipeline.start_worker()
    import urllib.error

    for path, status, words in [("/members/m/sales?k=0", 400, "between"),
                                ("/members/m/products?k=5", 400, "sale_id is required"),
                                ("/members/m/products?sale_id=nope", 404, "no sale"),
                                ("/sales/nope", 404, "no sale")]:
        with pytest.raises(urllib.error.HTTPError) as caught:
            pipeline.get(path)
        assert caught.value.code == status
        assert words in caught.value.read().decode()
    # no SALEPULSE_API_TOKEN here: the worker said so, loudly, at start (issue #9, security defaults)
    assert "SECURITY: SALEPULSE_API_TOKEN is not set" in pipeline.worker_log.read_text()


def test_each_role_names_the_role_that_serves_what_it_does_not(pipeline: Pipeline) -> None:
    import urllib.error

    pipeline.start_worker(role="velocity")
    pipeline.start_preferences_worker()
    for path, port, words in [("/members/m/sales", None, "role is all or preferences"),
                              ("/sales", pipeline.preferences_port, "role is all or velocity")]:
        with pytest.raises(urllib.error.HTTPError) as caught:
            pipeline.get(path, port)
        assert caught.value.code == 404
        assert words in caught.value.read().decode()
