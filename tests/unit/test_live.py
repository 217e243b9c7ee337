"""The live board: catalogue + counted facts → forecasts, stock, alerts, views (pure, no Kafka)."""

from __future__ import annotations

from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.live import LiveBoard
from salepulse.streams.domain.velocity import Fact, SaleState

HOUR = 3_600_000
START = 1_764_403_200_000


def board_with_sale(stock: int = 100, prior: float | None = 100.0) -> tuple[LiveBoard, SaleState]:
    catalog = Catalog()
    catalog.apply("Sale", {"sale_id": "s", "brand": "acme", "starts_at": START, "ends_at": START + 4 * HOUR,
                           "products": [{"sku": "k", "name": "K", "category": "shoes", "price": 50.0,
                                         "stock": stock}]})
    if prior is not None:
        catalog.apply("ExpertForecast", {"event_id": "f1", "sale_id": "s", "sku": "k", "expected_units": prior,
                                         "low": prior * 0.7, "high": prior * 1.4, "author": "anna"})
    catalog.apply("StockLevel", {"sku": "k", "on_hand": stock, "inbound": 0, "inbound_eta": None,
                                 "lead_time_hours": 0.5})
    return LiveBoard(catalog, alert_probability=0.8), SaleState("s")


def sell(board: LiveBoard, state: SaleState, units: int, at_ms: int, offset: int) -> None:
    fact = Fact(f"o{offset}", "s", "k", "order", units, units * 50.0, at_ms)
    assert state.apply(fact, "events.order:0", offset)
    state.close_offsets({"events.order:0": offset})
    board.observe(state.skus["k"], fact)


def test_a_fast_start_pulls_the_forecast_above_the_prior_and_raises_one_alert() -> None:
    board, state = board_with_sale(stock=100, prior=100.0)
    for i in range(35):
        sell(board, state, 2, START + 20 * 60_000 + i * 1000, i)
    view = board.sale_view("s")["products"][0]
    assert view["units"] == 70 and view["expert_prior"] == 100.0 and view["prior_source"] == "expert"
    assert view["p10"] <= view["p50"] <= view["p90"] and view["p50"] > 140
    assert view["stock"] == 30
    first = board.check_alert("s", "k")
    assert first is not None and first["status"] == "open" and first["available"] == 30
    assert board.check_alert("s", "k") is None  # same condition: no repeat
    snapshot = board.snapshot("s", "k")
    assert snapshot["version"] == 35 and snapshot["units"] == 70 and snapshot["p50"] == view["p50"]


def test_inbound_stock_before_the_end_resolves_the_alert() -> None:
    board, state = board_with_sale(stock=100, prior=100.0)
    for i in range(35):
        sell(board, state, 2, START + 20 * 60_000 + i * 1000, i)
    assert board.check_alert("s", "k")["status"] == "open"
    board.catalog.apply("StockLevel", {"sku": "k", "on_hand": 100, "inbound": 1000, "inbound_eta": START + HOUR,
                                       "lead_time_hours": 0.5})
    resolved = board.check_alert("s", "k")
    assert resolved is not None and resolved["status"] == "resolved" and resolved["alert_id"].endswith(":resolved")
    assert board.sale_view("s")["open_alerts"] == 0


def test_a_revised_expert_forecast_takes_over_with_the_units_already_sold() -> None:
    board, state = board_with_sale(stock=1000, prior=100.0)
    sell(board, state, 1, START + 5 * 60_000, 1)  # five minutes in: the prior still carries the forecast
    before = board.forecast("s", "k")["p50"]
    board.catalog.apply("ExpertForecast", {"event_id": "f2", "sale_id": "s", "sku": "k", "expected_units": 400.0,
                                           "low": 300.0, "high": 520.0, "author": "anna"})
    after = board.forecast("s", "k")
    assert after["expert_prior"] == 400.0 and after["p50"] > 2 * before
    assert board.tracked[("s", "k")].forecaster.units == 1


def test_no_expert_forecast_falls_back_to_a_learned_prior() -> None:
    board, state = board_with_sale(prior=None)
    sell(board, state, 1, START + HOUR, 1)
    assert board.forecast("s", "k")["prior_source"] == "learned"


def test_selling_out_marks_the_stockout_and_unknown_sales_have_no_view() -> None:
    board, state = board_with_sale(stock=10, prior=20.0)
    sell(board, state, 10, START + HOUR, 1)
    assert board.tracked[("s", "k")].forecaster.stockout_fraction is not None
    assert board.sale_view("nope") is None


def test_the_first_order_is_counted_once_by_the_forecaster() -> None:
    """The sale state counts a fact before the board sees it; a forecaster built on that first order must not add
    it a second time on top of the totals it was seeded with."""
    board, state = board_with_sale(stock=100, prior=100.0)
    for i in range(35):
        sell(board, state, 2, START + 20 * 60_000 + i * 1000, i)
    assert board.tracked[("s", "k")].forecaster.units == state.skus["k"].units == 70
    alert = board.check_alert("s", "k")
    assert alert is not None and alert["units_sold"] == 70 and alert["available"] == 30
