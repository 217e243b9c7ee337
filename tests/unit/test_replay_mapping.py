"""The dataset -> contract mapping of ``salepulse.consumers.tools.replay``, checked without Kafka.

Why both kinds of input: hand-written CSV snippets pin each rule (grouping, merging, skipping) on rows whose
answer is known by construction; the heads of the REAL shared files prove the rules hold on the data as
shipped (column order, quoting, time formats, the five exact duplicate rows of REES46). The real-data tests
skip with one summary line when the data folder is missing (a fresh clone), and fail under
SALEPULSE_REQUIRE_DATA=1, which CI sets, so the mapping cannot rot unnoticed.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from salepulse.consumers.tools.replay import (
    CANCELLATION,
    DUPLICATE_PURCHASE,
    FAV_SKIPPED,
    MALFORMED,
    NON_POSITIVE_QUANTITY,
    NON_PRODUCT,
    UNKNOWN_STOCK,
    UNKNOWN_TYPE,
    ZERO_PRICE,
    Event,
    ReplayPlan,
    get_dataset,
    read_online_retail,
    read_rees46,
    read_taobao,
    run_replay,
)
from salepulse.schemas.codec import Codec
from salepulse.schemas.validation import problems
from salepulse.streams.platform.config import Settings

RECORD_OF_KIND = {
    "browse": "BrowseEvent",
    "cart": "CartEvent",
    "order": "OrderEvent",
    "sale": "Sale",
    "stock": "StockLevel",
}
REES46_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return Settings.from_env().data_dir


def real_file(data_dir: Path, dataset: str) -> Path:
    """The real file; its test carries ``needs_data``, so it only runs when the file is there."""
    return data_dir / get_dataset(dataset).relative_path


def head(source: Path, target: Path, lines: int) -> Path:
    """The first ``lines`` lines of a gzip file (header included), re-gzipped: a fast, real slice."""
    with (
        gzip.open(source, "rt", encoding="utf-8", newline="") as src,
        gzip.open(target, "wt", newline="") as dst,
    ):
        dst.writelines(itertools.islice(src, lines))
    return target


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def assert_contract(codec: Codec, plan: ReplayPlan, events: list[Event]) -> None:
    """Every catalogue record and event passes validation and encodes -> decodes unchanged in meaning."""
    for kind, record in itertools.chain(plan.catalogue(), events):
        name = RECORD_OF_KIND[kind]
        assert problems(name, record) == [], (kind, record)
        decoded_name, decoded = codec.decode(codec.encode(name, record))
        assert decoded_name == name
        assert decoded["event_id"] == record["event_id"]


def by_id(events: list[Event]) -> dict[str, Mapping[str, Any]]:
    return {record["event_id"]: record for _, record in events}


# ------------------------------------------------------------------------------------------------------------
# REES46


@pytest.mark.needs_data("rees46")
def test_rees46_real_file_counts_duplicates_and_contract(data_dir: Path, codec: Codec) -> None:
    path = real_file(data_dir, "rees46")
    plan = read_rees46(path)
    events = list(plan.events())
    kinds = Counter(kind for kind, _ in events)
    # SOURCE.md: 17,434 rows = view 17,055, cart 165, purchase 214 (no purchase row is a duplicate)
    assert plan.rows == 17_434
    assert (kinds["browse"], kinds["cart"]) == (17_055, 165)
    assert sum(line["quantity"] for kind, o in events if kind == "order" for line in o["lines"]) == 214
    assert kinds["order"] == plan.event_count - 17_055 - 165 < 214  # some purchases share an order
    assert plan.skipped == Counter()
    assert len({r["brand"] for r in plan.sales}) == 865  # 864 brands + the catch-all
    assert "rees46-unbranded" in {r["sale_id"] for r in plan.sales}

    # the exact duplicate rows of the source map to the same event_id (and only they do)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        raw = list(csv.reader(f))[1:]
    repeats = sum(n - 1 for n in Counter(map(tuple, raw)).values())
    assert repeats == 5
    non_order = [record["event_id"] for kind, record in events if kind != "order"]
    assert len(non_order) - len(set(non_order)) == 5
    ids_of_row: dict[tuple[str, ...], set[str]] = {}
    for row, event_id in zip((r for r in raw if r[1] != "purchase"), non_order, strict=True):
        ids_of_row.setdefault(tuple(row), set()).add(event_id)
    assert all(len(ids) == 1 for ids in ids_of_row.values())  # same row -> same id
    assert len(set(non_order)) == len(ids_of_row)  # different rows -> different ids
    assert_contract(codec, plan, events)


@pytest.mark.needs_data("rees46")
def test_rees46_first_rows_field_mapping(data_dir: Path, tmp_path: Path) -> None:
    plan = read_rees46(head(real_file(data_dir, "rees46"), tmp_path / "head.csv.gz", 11))
    events = list(plan.events())
    assert len(events) == 10
    kind, first = events[0]
    assert kind == "browse"
    assert first["member_id"] == "541312140"
    assert first["sale_id"] == "rees46-shiseido"
    assert first["sku"] == "44600062"
    assert first["ts"] == ms("2019-10-01 00:00:00")
    assert first["session_id"] == "72d76fde-8bb3-4e00-8c23-a032dfed738c"
    assert first["channel"] == "replay"
    assert events[2][1]["sale_id"] == "rees46-unbranded"  # 17200506, sofa without brand
    products = {p["sku"]: p for sale in plan.sales for p in sale["products"]}
    assert products["44600062"] == {
        "sku": "44600062",
        "name": "",
        "category": "cat-2103807459595387724",  # empty category_code
        "price": 35.79,
        "stock": UNKNOWN_STOCK,
    }
    assert products["3900821"]["category"] == "appliances.environment.water_heater"
    assert {s["sku"] for s in plan.stock} == set(products)
    assert all(s["on_hand"] == UNKNOWN_STOCK for s in plan.stock)


REES46_SNIPPET = f"""
{REES46_HEADER}
2019-10-01 00:00:00 UTC,view,1,10,electronics.phone,acme,9.50,100,sA
2019-10-01 00:00:01 UTC,cart,1,10,electronics.phone,acme,9.50,100,sA
2019-10-01 00:00:02 UTC,purchase,1,10,electronics.phone,acme,9.50,100,sA
2019-10-01 00:00:02 UTC,purchase,2,20,,,4.00,100,sA
2019-10-01 00:00:03 UTC,view,7,70,,other,1.00,200,sB
2019-10-01 00:00:03 UTC,purchase,7,70,,other,1.00,200,sB
2019-10-01 00:00:04 UTC,purchase,1,10,electronics.phone,acme,10.50,100,sA
2019-10-01 00:00:04 UTC,purchase,1,10,electronics.phone,acme,10.50,100,sA
2019-10-01 00:00:05 UTC,view,3,10,electronics.phone,acme,5.00,100,sA
2019-10-01 00:00:05 UTC,view,3,10,electronics.phone,acme,5.00,100,sA
2019-10-01 00:00:06 UTC,purchase,3,10,electronics.phone,acme,5.00,100,sA
2019-10-01 00:00:07 UTC,remove_from_cart,3,10,electronics.phone,acme,5.00,100,sA
2019-10-01 00:00:08 UTC,view,3,10,electronics.phone,acme,not-a-price,100,sA
"""


def test_rees46_purchases_group_into_orders(tmp_path: Path, codec: Codec) -> None:
    plan = read_rees46(write(tmp_path / "rees.csv", REES46_SNIPPET))
    events = list(plan.events())
    assert [kind for kind, _ in events] == [
        "browse",
        "cart",
        "browse",
        "order",
        "order",
        "browse",
        "browse",
        "order",
    ]
    orders = [record for kind, record in events if kind == "order"]
    # sB's one-row order is emitted at its row, before sA's basket, which closes with its row at 00:00:04
    assert orders[0]["member_id"] == "200" and orders[0]["lines"] == [
        {"sale_id": "rees46-other", "sku": "7", "quantity": 1, "unit_price": 1.0}
    ]
    # sA: the run 00:00:02 .. 00:00:04 (interleaved sB rows do not break it) is ONE order, emitted at its last
    # row; product 1 bought twice merges (revenue kept), the exact repeat row at 00:00:04 is a duplicate
    basket = orders[1]
    assert basket["event_id"] == basket["order_id"] and basket["order_id"].startswith("rees46-order-")
    assert basket["ts"] == ms("2019-10-01 00:00:04")
    assert basket["currency"] == "USD"
    assert basket["lines"] == [
        {"sale_id": "rees46-acme", "sku": "1", "quantity": 2, "unit_price": 10.0},
        {"sale_id": "rees46-unbranded", "sku": "2", "quantity": 1, "unit_price": 4.0},
    ]
    # a view in between closes the run: the purchase at 00:00:06 is a second order of the same session
    assert orders[2]["lines"] == [{"sale_id": "rees46-acme", "sku": "3", "quantity": 1, "unit_price": 5.0}]
    assert orders[2]["order_id"] != basket["order_id"]
    assert plan.skipped == Counter({DUPLICATE_PURCHASE: 1, UNKNOWN_TYPE: 1, MALFORMED: 1})
    skipped: Counter[str] = Counter()
    list(plan.events(skipped))
    assert skipped == plan.skipped
    assert plan.event_count == len(events)
    # the two identical views share an id; the cart keeps its price
    views = [record["event_id"] for kind, record in events if kind == "browse"]
    assert views[-1] == views[-2] and len(set(views)) == 3
    assert events[1][1] | {"event_id": "-"} == {
        "event_id": "-",
        "member_id": "100",
        "sale_id": "rees46-acme",
        "sku": "1",
        "action": "add",
        "quantity": 1,
        "unit_price": 9.5,
        "ts": ms("2019-10-01 00:00:01"),
        "channel": "replay",
        "session_id": "sA",
    }
    # catalogue: a sale per brand, window [first, last event + 1 s), first price kept, no category -> cat-id
    sales = {sale["sale_id"]: sale for sale in plan.sales}
    assert set(sales) == {"rees46-acme", "rees46-unbranded", "rees46-other"}
    acme = sales["rees46-acme"]
    assert (acme["starts_at"], acme["ends_at"]) == (ms("2019-10-01 00:00:00"), ms("2019-10-01 00:00:07"))
    assert [(p["sku"], p["price"]) for p in acme["products"]] == [("1", 9.5), ("3", 5.0)]
    unbranded = sales["rees46-unbranded"]
    assert unbranded["products"][0]["category"] == "cat-20"
    # its only row is at 00:00:02, but its order is stamped 00:00:04: the window stretches to cover it
    assert (unbranded["starts_at"], unbranded["ends_at"]) == (
        ms("2019-10-01 00:00:02"),
        ms("2019-10-01 00:00:05"),
    )
    assert_contract(codec, plan, events)


def test_rees46_ids_are_deterministic(tmp_path: Path) -> None:
    path = write(tmp_path / "rees.csv", REES46_SNIPPET)
    first = [record["event_id"] for _, record in read_rees46(path).events()]
    again = read_rees46(path)
    assert [record["event_id"] for _, record in again.events()] == first
    assert [record["event_id"] for _, record in again.events()] == first  # a plan replays identically too
    assert [s["event_id"] for s in again.sales] == [s["event_id"] for s in read_rees46(path).sales]


# ------------------------------------------------------------------------------------------------------------
# Taobao


@pytest.mark.needs_data("taobao")
def test_taobao_real_head_mapping_and_contract(data_dir: Path, tmp_path: Path, codec: Codec) -> None:
    path = head(real_file(data_dir, "taobao"), tmp_path / "head.csv.gz", 3000)
    plan = read_taobao(path)
    events = list(plan.events())
    assert Counter(kind for kind, _ in events) == Counter(browse=2684 + 95, cart=161, order=60)
    assert plan.rows == 3000 and plan.skipped == Counter()
    kind, first = events[0]
    assert (kind, first["member_id"], first["sku"], first["sale_id"], first["ts"]) == (
        "browse",
        "543462",
        "1715",
        "taobao-cat-1464116",
        1_511_658_000_000,
    )
    for kind, order in events:
        if kind == "order":
            assert order["currency"] == "CNY" and order["lines"][0]["quantity"] == 1
            assert order["lines"][0]["unit_price"] == 0.0
    assert all(p["price"] == 0.0 for sale in plan.sales for p in sale["products"])
    assert all(sale["sale_id"] == f"taobao-{sale['brand']}" for sale in plan.sales)
    assert [r["event_id"] for _, r in read_taobao(path).events()] == [r["event_id"] for _, r in events]
    assert_contract(codec, plan, events)


TAOBAO_SNIPPET = """
1,11,5,pv,1511658000
1,11,5,fav,1511658001
1,11,5,cart,1511658002
1,11,5,buy,1511658003
2,12,5,buy,1511658003
2,12,5,buy,1511658003
2,13,6,clicked,1511658004
2,13,6,pv,soon
"""


def test_taobao_snippet_rules(tmp_path: Path, codec: Codec) -> None:
    path = write(tmp_path / "UserBehavior.csv", TAOBAO_SNIPPET)
    plan = read_taobao(path)
    events = list(plan.events())
    assert [kind for kind, _ in events] == ["browse", "browse", "cart", "order", "order", "order"]
    assert plan.skipped == Counter({UNKNOWN_TYPE: 1, MALFORMED: 1})
    cart = events[2][1]
    assert (cart["action"], cart["quantity"], cart["unit_price"], cart["session_id"]) == ("add", 1, 0.0, None)
    # identical rows are the same event, distinct buys are distinct orders
    assert events[4][1]["event_id"] == events[5][1]["event_id"] != events[3][1]["event_id"]
    assert events[3][1]["order_id"] == events[3][1]["event_id"]
    sale = next(s for s in plan.sales if s["sale_id"] == "taobao-cat-5")
    assert (sale["starts_at"], sale["ends_at"]) == (1_511_658_000_000, 1_511_658_004_000)
    assert_contract(codec, plan, events)

    skipping = read_taobao(path, fav="skip")
    assert [kind for kind, _ in skipping.events()] == ["browse", "cart", "order", "order", "order"]
    assert skipping.skipped[FAV_SKIPPED] == 1


# ------------------------------------------------------------------------------------------------------------
# UCI Online Retail


@pytest.mark.needs_data("online-retail")
def test_online_retail_real_head_mapping_and_skips(data_dir: Path, tmp_path: Path, codec: Codec) -> None:
    path = head(real_file(data_dir, "online-retail"), tmp_path / "head.csv.gz", 3001)
    plan = read_online_retail(path)
    events = list(plan.events())
    kind, first = events[0]
    assert kind == "order"
    assert first == {
        "event_id": "retail-536365",
        "order_id": "retail-536365",
        "member_id": "17850",
        "lines": [
            {"sale_id": "retail-2010-W48", "sku": sku, "quantity": qty, "unit_price": price}
            for sku, qty, price in [
                ("85123A", 6, 2.55),
                ("71053", 6, 3.39),
                ("84406B", 8, 2.75),
                ("84029G", 6, 3.39),
                ("84029E", 6, 3.39),
                ("22752", 2, 7.65),
                ("21730", 6, 4.25),
            ]
        ],
        "currency": "GBP",
        "ts": ms("2010-12-01 08:26:00"),
        "channel": "replay",
    }
    # independent recount of the simple rules on the raw slice
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert plan.rows == len(rows) == 3000
    assert plan.skipped[CANCELLATION] == sum(r["InvoiceNo"].startswith("C") for r in rows) > 0
    sales_rows = [r for r in rows if not r["InvoiceNo"].startswith("C")]
    fees = {"POST", "M", "D", "C2", "DOT"}  # the only non-product codes in this slice
    assert plan.skipped[NON_PRODUCT] == sum(r["StockCode"] in fees for r in sales_rows) > 0
    kept = [
        r["InvoiceNo"]
        for r in sales_rows
        if r["StockCode"] not in fees and int(r["Quantity"]) > 0 and float(r["UnitPrice"]) > 0
    ]
    assert [record["order_id"] for _, record in events] == [f"retail-{n}" for n in dict.fromkeys(kept)]
    sale = plan.sales[0]
    assert sale["sale_id"] == "retail-2010-W48"
    assert (sale["starts_at"], sale["ends_at"]) == (ms("2010-11-29 00:00:00"), ms("2010-12-06 00:00:00"))
    assert sale["products"][0] == {
        "sku": "85123A",
        "name": "WHITE HANGING HEART T-LIGHT HOLDER",
        "category": "giftware",
        "price": 2.55,
        "stock": UNKNOWN_STOCK,
    }
    assert_contract(codec, plan, events)


RETAIL_SNIPPET = f"""
{RETAIL_HEADER}
A1,111,MUG ,2,2011-02-14 09:00:00,1.5,17850.0,United Kingdom
A1,111,MUG ,4,2011-02-14 09:00:00,3.0,17850.0,United Kingdom
A1,222,PLATE,1,2011-02-14 09:01:00,2.0,17850.0,United Kingdom
A1,POST,POSTAGE,1,2011-02-14 09:01:00,18.0,17850.0,United Kingdom
B2,111,MUG,3,2011-02-14 10:00:00,1.5,,United Kingdom
A1,333,BOWL,1,2011-02-14 10:05:00,4.0,17850.0,United Kingdom
C9,111,MUG,-2,2011-02-15 10:00:00,1.5,17850.0,United Kingdom
D4,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2011-02-16 10:00:00,17.0,,United Kingdom
D4,m,Manual,1,2011-02-16 10:00:00,2.0,,United Kingdom
D4,BANK CHARGES,Bank Charges,1,2011-02-16 10:00:00,15.0,,United Kingdom
D4,111,,5,2011-02-16 10:00:00,0.0,,United Kingdom
D4,222,damaged,-3,2011-02-16 10:00:00,2.0,,United Kingdom
D4,222,PLATE,x,2011-02-16 10:00:00,2.0,,United Kingdom
E5,444,CUP,1,2011-02-20 20:00:00,1.0,12.0,France
F6,444,CUP,2,2011-02-21 08:00:00,1.25,13.0,France
"""


def test_online_retail_snippet_rules(tmp_path: Path, codec: Codec) -> None:
    plan = read_online_retail(write(tmp_path / "retail.csv", RETAIL_SNIPPET))
    events = by_id(list(plan.events()))
    assert list(events) == ["retail-B2", "retail-A1", "retail-E5", "retail-F6"]
    # invoice A1 is split by B2 and still one order, emitted at its last kept row; the two MUG rows merge with
    # a quantity-weighted price (2 x 1.5 + 4 x 3.0 = 15.0 over 6 units), POST is not a line
    a1 = events["retail-A1"]
    assert a1["member_id"] == "17850"
    assert a1["ts"] == ms("2011-02-14 10:05:00")
    assert a1["lines"] == [
        {"sale_id": "retail-2011-W07", "sku": "111", "quantity": 6, "unit_price": 2.5},
        {"sale_id": "retail-2011-W07", "sku": "222", "quantity": 1, "unit_price": 2.0},
        {"sale_id": "retail-2011-W07", "sku": "333", "quantity": 1, "unit_price": 4.0},
    ]
    assert events["retail-B2"]["member_id"] == "guest-B2"
    # Sunday evening is still week 7, Monday starts week 8
    assert events["retail-E5"]["lines"][0]["sale_id"] == "retail-2011-W07"
    assert events["retail-F6"]["lines"][0]["sale_id"] == "retail-2011-W08"
    assert plan.skipped == Counter(
        {NON_PRODUCT: 4, CANCELLATION: 1, ZERO_PRICE: 1, NON_POSITIVE_QUANTITY: 1, MALFORMED: 1}
    )
    assert plan.rows == 15 and plan.event_count == 4
    sales = {sale["sale_id"]: sale for sale in plan.sales}
    w07 = sales["retail-2011-W07"]
    assert (w07["starts_at"], w07["ends_at"]) == (ms("2011-02-14 00:00:00"), ms("2011-02-21 00:00:00"))
    assert w07["brand"] == "uci-online-retail"
    assert [(p["sku"], p["name"], p["price"]) for p in w07["products"]] == [
        ("111", "MUG", 1.5),
        ("222", "PLATE", 2.0),
        ("333", "BOWL", 4.0),
        ("444", "CUP", 1.0),
    ]
    assert [s["sku"] for s in plan.stock] == ["111", "222", "333", "444"]
    assert_contract(codec, plan, list(plan.events()))


# ------------------------------------------------------------------------------------------------------------
# Errors and the Kafka driver (with a fake publisher: the broker path is covered by the integration tests)


@pytest.mark.parametrize("reader", [read_rees46, read_taobao, read_online_retail])
def test_missing_file_names_path_and_variable(tmp_path: Path, reader: Any) -> None:
    missing = tmp_path / "nope.csv.gz"
    with pytest.raises(FileNotFoundError) as excinfo:
        reader(missing)
    assert str(missing) in str(excinfo.value)
    assert "SALEPULSE_DATA_DIR" in str(excinfo.value)


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Mapping[str, Any]]] = []
        self.flushes: list[int] = []

    def send(self, kind: str, record: Mapping[str, Any]) -> None:
        self.sent.append((kind, record))

    def flush(self, timeout: float = 60.0) -> None:
        self.flushes.append(len(self.sent))


def test_run_replay_sends_catalogue_first_then_events(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    path = tmp_path / get_dataset("online_retail").relative_path
    path.parent.mkdir(parents=True)
    write(path, RETAIL_SNIPPET)
    fake = FakePublisher()
    report = run_replay(settings, "online-retail", limit=3, progress=False, publisher=fake)  # type: ignore[arg-type]
    kinds = [kind for kind, _ in fake.sent]
    n_catalogue = 2 + 4  # weeks 7 and 8, four skus
    assert kinds == ["sale"] * 2 + ["stock"] * 4 + ["order"] * 3
    assert fake.flushes == [n_catalogue, n_catalogue + 3]  # catalogue stored before any event
    assert (report.sales, report.stock_levels, report.events_produced) == (2, 4, {"order": 3})
    assert (report.orders, report.units) == (3, 3 + 8 + 1)
    assert report.skipped == {
        NON_PRODUCT: 4,
        CANCELLATION: 1,
        ZERO_PRICE: 1,
        NON_POSITIVE_QUANTITY: 1,
        MALFORMED: 1,
    }

    with pytest.raises(FileNotFoundError, match="SALEPULSE_DATA_DIR"):
        run_replay(settings, "rees46", progress=False, publisher=fake)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset"):
        run_replay(settings, "amazon", progress=False, publisher=fake)  # type: ignore[arg-type]


def test_rees46_snippet_is_valid_csv() -> None:
    """Guard for the snippet itself: every row has the 9 REES46 columns."""
    rows = list(csv.reader(io.StringIO(REES46_SNIPPET.strip())))
    assert {len(row) for row in rows} == {9}
