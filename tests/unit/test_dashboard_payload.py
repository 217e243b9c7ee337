"""The dashboard's JSON from a real live board (pure): names, deadlines, one coverage verdict, currency, clocks."""

from __future__ import annotations

from salepulse.streams.domain.dashboard import dashboard_payload
from tests.unit.test_live import HOUR, START, board_with_sale, sell


def test_alerts_carry_names_and_deadline_and_a_sale_at_risk_is_never_covered() -> None:
    board, state = board_with_sale(stock=100, prior=100.0)
    for i in range(35):
        sell(board, state, 2, START + 20 * 60_000 + i * 1000, i)
    alert = board.check_alert("s", "k")
    assert alert is not None
    assert (alert["product_name"], alert["sale_name"], alert["units_sold"]) == ("K", "acme", 70)
    assert alert["order_by"] == alert["projected_stockout_at"] - HOUR // 2  # lead time 0.5 h
    payload = dashboard_payload(board, 35, currency="USD", wall_ms=board.stream_ms)
    sale = payload["sales"][0]
    assert sale["coverage"] == "at risk" and sale["products"][0]["name"] == "K"
    assert payload["alerts"][0]["product_name"] == "K" and payload["alerts"][0]["order_by"].startswith("2025-")
    assert payload["currency"] == "USD" and payload["stream_is_wall_clock"] is True
    later = dashboard_payload(board, 35, wall_ms=board.stream_ms + 3 * HOUR)
    assert later["stream_is_wall_clock"] is False and later["currency"] == "EUR"


def test_a_sold_out_product_makes_the_sale_out_of_stock_not_covered() -> None:
    board, state = board_with_sale(stock=10, prior=10.0)
    sell(board, state, 10, START + HOUR, 0)
    sale = dashboard_payload(board, 1)["sales"][0]
    assert sale["out_of_stock"] == 1 and sale["coverage"] == "out of stock"
    assert sale["quiet"] is False


def test_a_sale_with_nothing_sold_is_quiet() -> None:
    board, _ = board_with_sale(stock=100, prior=10.0)
    board.clock.observe(START + HOUR)  # the sale is open, nobody bought
    sale = dashboard_payload(board, 0)["sales"][0]
    assert sale["units"] == 0 and sale["quiet"] is True and sale["coverage"] == "covered"
