"""The data layer: one reader per dataset, and the rules every consumer of the data shares."""

from __future__ import annotations

from pathlib import Path

from salepulse.consumers.data import interactions
from salepulse.consumers.data.csvio import CANCELLATION, NON_PRODUCT, UNKNOWN_TYPE, ZERO_PRICE
from salepulse.consumers.data.online_retail import skip_reason
from salepulse.consumers.tools.replay import read_rees46

REES46 = """event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session
2019-10-01 00:00:00 UTC,view,1,10,electronics.phone,Acme,9.50,100,sA
2019-10-01 00:00:01 UTC,cart,1,10,electronics.phone,acme,9.50,100,sA
2019-10-01 00:00:02 UTC,remove_from_cart,1,10,electronics.phone,acme,9.50,100,sA
2019-10-01 00:00:03 UTC,purchase,2,20,,,4.00,100,sA
"""


def test_rees46_remove_from_cart_is_a_removal_never_a_positive_add(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(REES46)
    events = interactions("rees46", path)
    assert [(e.kind, e.action, e.positive) for e in events] == [
        ("browse", "add", False), ("cart", "add", True), ("cart", "remove", False), ("order", "add", True)]
    assert events[0].lines[0].brand == "acme" and events[0].lines[0].category == "cat-10"
    # replay streams no removal for this dataset yet: it is passed over, never turned into a cart add
    plan = read_rees46(path)
    carts = [r for kind, r in plan.events() if kind == "cart"]
    assert [c["action"] for c in carts] == ["add"]
    assert plan.skipped[UNKNOWN_TYPE] == 1


def test_online_retail_one_rule() -> None:
    assert skip_reason("C1", "85123A", "HEART", -1, 2.0) == CANCELLATION
    assert skip_reason("1", "POST", "POSTAGE", 1, 18.0) == NON_PRODUCT
    assert skip_reason("1", "DCGS0003", "ebay", 1, 1.0) == NON_PRODUCT
    assert skip_reason("1", "85123A", "HEART", 1, 0.0) == ZERO_PRICE
    assert skip_reason("1", "85123A", "HEART", 1, 2.0) is None


RETAIL = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
A1,85123a,HEART,2,2011-02-14 09:00:00,1.5,17850.0,UK
A1,85123A,HEART,1,2011-02-14 09:00:00,1.5,17850.0,UK
A1,POST,POSTAGE,1,2011-02-14 09:00:00,18.0,17850.0,UK
B2,22222,MUG,1,2011-02-14 10:00:00,1.0,,UK
"""


def test_online_retail_orders_of_known_customers_merge_codes(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(RETAIL)
    (order,) = interactions("online-retail", path)  # B2 is a guest: it cannot be followed
    assert order.member == "17850" and [(ln.sku, ln.quantity) for ln in order.lines] == [("85123A", 3)]
