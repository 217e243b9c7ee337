"""Whole-shop answers and moves (issue 12), on plain values: the shop view, the shop board, alert state that moves
with its sale, and one publisher of plans per sale. The same scenario on the real broker is
``tests/integration/test_scale_out.py``."""

from __future__ import annotations

import doctest
import random

from hypothesis import given
from hypothesis import strategies as st

import salepulse.streams.domain.shop_view as shop_view_mod
import salepulse.streams.runtime.handover as handover_mod
from salepulse.streams.domain.buyer_desk import BuyerDesk
from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.shop_view import ALERT, SNAPSHOT, ShopBoard, ShopView
from salepulse.streams.domain.velocity import Fact, SaleState

HOUR = 3_600_000
START = 1_764_403_200_000


def test_doctests() -> None:
    for module in (shop_view_mod, handover_mod):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def catalog_of(*sale_ids: str) -> Catalog:
    catalog = Catalog()
    for sale_id in sale_ids:
        catalog.apply("Sale", {"sale_id": sale_id, "brand": sale_id.upper(), "starts_at": START,
                               "ends_at": START + 4 * HOUR,
                               "products": [{"sku": "k", "name": "K", "category": "shoes", "price": 50.0,
                                             "stock": 100}]})
        catalog.apply("ExpertForecast", {"event_id": f"f-{sale_id}", "sale_id": sale_id, "sku": "k",
                                         "expected_units": 100.0, "low": 70.0, "high": 140.0, "author": "anna"})
    catalog.apply("StockLevel", {"sku": "k", "on_hand": 100, "inbound": 0, "inbound_eta": None,
                                 "lead_time_hours": 0.5})
    return catalog


def sell(board: ShopBoard, state: SaleState, units: int, at_ms: int, offset: int) -> None:
    fact = Fact(f"{state.sale_id}-o{offset}", state.sale_id, "k", "order", units, units * 50.0, at_ms)
    assert state.apply(fact, "events.order:0", offset)
    state.close_offsets({"events.order:0": offset})
    board.observe(state.skus["k"], fact)


def snapshot(sale_id: str, version: int, units: int, as_of: int = START + HOUR) -> dict:
    return {"event_id": f"{sale_id}:k:{version}", "sale_id": sale_id, "sku": "k", "as_of": as_of,
            "version": version, "views": version - units // 2, "carts": 0, "orders": units // 2, "units": units,
            "revenue": units * 50.0, "velocity_uph": 4.0, "expert_prior": 100.0, "prior_source": "expert",
            "p10": 80.0, "p50": 120.0, "p90": 160.0, "stock_available": 100 - units, "projected_stockout_at": None}


def test_a_worker_answers_its_own_sales_from_its_state_and_the_others_from_their_owners_output() -> None:
    view = ShopView()
    board = ShopBoard(catalog_of("mine", "theirs"), view=view, owns=lambda sale_id: sale_id == "mine")
    state = SaleState("mine")
    for i in range(5):
        sell(board, state, 2, START + HOUR + i * 1000, i)
    view.apply(SNAPSHOT, snapshot("theirs", version=14, units=12))
    # Our own sale's snapshot as read back (an older one, or a stale copy of a previous owner's) changes nothing.
    view.apply(SNAPSHOT, snapshot("mine", version=3, units=999))
    view.apply(ALERT, {"alert_id": "theirs:k:2", "sale_id": "theirs", "sku": "k", "status": "escalated",
                       "severity": "high", "projected_stockout_at": None})
    units = {row["sale_id"]: row["units"] for row in board.sales_view()}
    assert units == {"mine": 10, "theirs": 12}
    theirs = board.sale_view("theirs")
    assert theirs["products"][0]["p50"] == 120.0 and theirs["products"][0]["alert"] == "escalated"
    assert theirs["open_alerts"] == 1
    assert [a["alert_id"] for a in board.shop_alerts()] == ["theirs:k:2"]
    # Stream time moves with the rest of the shop's snapshots too (a worker owning nothing still has a clock).
    assert board.stream_ms >= START + HOUR
    # The clock work and the alert rule iterate our sales only.
    assert [sale for sale, _sku in board.open_active()] == ["mine"]


def test_a_sale_that_moves_away_is_forgotten_and_read_from_its_new_owner() -> None:
    view = ShopView()
    owned = {"s"}
    board = ShopBoard(catalog_of("s"), view=view, owns=lambda sale_id: sale_id in owned)
    state = SaleState("s")
    for i in range(35):
        sell(board, state, 2, START + 20 * 60_000 + i * 1000, i)
    assert board.check_alert("s", "k")["status"] == "open"
    owned.clear()
    board.release(["s"])
    assert not board.open_active() and not board.open_alerts and board.alerts.state("s", "k") == (0, False, "low")
    assert board.sale_view("s")["units"] == 0  # nothing from the new owner yet: no stale figure of ours
    view.apply(SNAPSHOT, snapshot("s", version=40, units=74))
    assert board.sale_view("s")["units"] == 74


def test_alert_state_moves_with_its_sale_so_ids_are_never_reused() -> None:
    first = ShopBoard(catalog_of("s"))
    state = SaleState("s")
    for i in range(35):
        sell(first, state, 2, START + 20 * 60_000 + i * 1000, i)
    opened = first.check_alert("s", "k")
    assert opened["alert_id"] == "s:k:1" and opened["status"] == "open"
    stored = {"states": first.alerts.sale_dict("s", ["k"]), "open": {"k": opened}}  # what alert-state holds

    second = ShopBoard(catalog_of("s"))  # the sale's next owner: counted state and alert state from the tables
    for sku, totals in state.skus.items():
        second.restore("s", sku, totals)
    second.alerts.restore(stored["states"])
    second.open_alerts.update({("s", sku): record for sku, record in stored["open"].items()})
    assert second.check_alert("s", "k") is None, "the open alert was raised again after the move"
    stock = {"sku": "k", "on_hand": 100, "inbound": 0, "inbound_eta": None, "lead_time_hours": 0.5}
    second.catalog.apply("StockLevel", {**stock, "inbound": 1000, "inbound_eta": START + HOUR})
    resolved = second.check_alert("s", "k")
    assert resolved["alert_id"] == "s:k:1:resolved"  # the alert raised before the move is the one resolved
    second.catalog.apply("StockLevel", stock)  # the inbound is cancelled: the condition is back
    reopened = second.check_alert("s", "k")
    assert reopened["alert_id"] == "s:k:2" and reopened["status"] == "open"
    # Without the moved alert state the new owner would have reused the first id for this other alert.
    amnesiac = ShopBoard(catalog_of("s"))
    for sku, totals in state.skus.items():
        amnesiac.restore("s", sku, totals)
    assert amnesiac.check_alert("s", "k")["alert_id"] == "s:k:1"
    assert second.shop_alerts()[0]["alert_id"] == "s:k:2"


def test_only_the_owner_publishes_plans_and_a_sale_gained_once_open_is_not_replanned() -> None:
    catalog = catalog_of("early", "open")
    catalog.apply("Sale", {"sale_id": "early", "brand": "E", "starts_at": START + 10 * HOUR,
                           "ends_at": START + 14 * HOUR,
                           "products": [{"sku": "k", "name": "K", "category": "shoes", "price": 50.0, "stock": 100}]})
    desk = BuyerDesk(catalog)
    owned: set[str] = set()
    now = START + HOUR  # "open" is open, "early" has not opened
    assert desk.plans_due(now, 1, owns=lambda s: s in owned) == []
    owned.update({"early", "open"})  # both move here
    planned = {r["sale_id"] for r in desk.plans_due(now, 2, owns=lambda s: s in owned)}
    assert planned == {"early"}, "a sale gained once open was re-planned (its plan is frozen)"
    assert {r["sale_id"] for r in BuyerDesk(catalog).plans_due(now, 3)} == {"early", "open"}  # one worker: all


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=40), st.randoms())
def test_the_view_keeps_the_newest_snapshot_whatever_the_order_it_reads_them_in(versions: list[int],
                                                                                rnd: random.Random) -> None:
    view = ShopView()
    shuffled = list(versions)
    rnd.shuffle(shuffled)
    for version in shuffled:
        view.apply(SNAPSHOT, snapshot("s", version=version, units=version))
    assert view.snapshot("s", "k")["units"] == max(versions)
