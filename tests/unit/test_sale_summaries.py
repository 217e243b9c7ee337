"""Kept per-sale answers (issue 12, ``GET /sales`` under load): whatever happens to a sale, a read answers what a
fresh build answers, and nothing is rebuilt when nothing changed."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from salepulse.streams.domain.sale_summaries import REFRESH_SHARE
from salepulse.streams.domain.shop_view import ALERT, SNAPSHOT, ShopBoard, ShopView
from salepulse.streams.domain.velocity import Fact, SaleState
from tests.unit.test_shop_view import HOUR, START, catalog_of, snapshot

SALES = ("mine", "theirs")


def board_of(owned: set[str], settle_s: float = 0.0) -> tuple[ShopBoard, dict[str, SaleState]]:
    """``settle_s`` 0: the list is as exact as one sale's answer (the default is tested on its own below)."""
    board = ShopBoard(catalog_of(*SALES), view=ShopView(), owns=lambda sale_id: sale_id in owned)
    board.summaries.settle_s = settle_s
    return board, {sale_id: SaleState(sale_id) for sale_id in SALES}


def count(board: ShopBoard, state: SaleState, kind: str, units: int, at_ms: int, offset: int) -> None:
    fact = Fact(f"{state.sale_id}-{kind}{offset}", state.sale_id, "k", kind, units if kind == "order" else 0,
                units * 50.0 if kind == "order" else 0.0, at_ms)
    assert state.apply(fact, f"events.{kind}:0", offset)
    state.close_offsets({f"events.{kind}:0": offset})
    board.observe(state.skus["k"], fact)


def fresh_build(board: ShopBoard, sale_id: str) -> dict:
    return board.build_sale(board.catalog.sales[sale_id])


def listed(board: ShopBoard) -> list[dict]:
    """``GET /sales``'s list as the tick publishes it for the read servers."""
    return json.loads(board.publish_sales())["sales"]


def tick_round(board: ShopBoard) -> None:
    """As many 1 s ticks as it takes the refresh to go round every open sale."""
    for _ in range(REFRESH_SHARE):
        list(board.refresh_answers())


def test_a_counted_fact_is_answered_at_once_and_an_unchanged_sale_is_not_rebuilt() -> None:
    board, states = board_of({"mine"})
    count(board, states["mine"], "order", 3, START + HOUR, 1)
    assert board.sale_view("mine")["units"] == 3
    board.sales_view()
    builds = board.summaries.builds
    board.sales_view(), board.sale_view("mine"), board.publish_sales()
    assert board.summaries.builds == builds, "nothing changed, yet an answer was rebuilt"
    count(board, states["mine"], "order", 2, START + HOUR, 2)  # same stream time: only the version moved
    assert board.sale_view("mine")["units"] == 5
    assert {row["sale_id"]: row["units"] for row in board.sales_view()}["mine"] == 5


def test_the_kept_json_is_the_list_of_summaries() -> None:
    board, states = board_of({"mine"})
    count(board, states["mine"], "order", 4, START + HOUR, 1)
    assert listed(board) == board.sales_view()
    first = board.summaries.sales_json(board.catalog.open_sales(board.stream_ms), board.stream_ms)
    assert listed(board) == board.sales_view()
    again = board.summaries.sales_json(board.catalog.open_sales(board.stream_ms), board.stream_ms)
    assert again is first, "re-rendered with nothing changed"
    count(board, states["mine"], "browse", 1, START + HOUR, 2)
    assert listed(board) == board.sales_view() and board.summaries.sales_json(
        board.catalog.open_sales(board.stream_ms), board.stream_ms) is not first


def test_the_owners_snapshot_alert_and_a_move_change_the_answer_at_once() -> None:
    owned = {"mine"}
    board, states = board_of(owned)
    count(board, states["mine"], "order", 1, START + HOUR, 1)
    assert board.sale_view("theirs")["units"] == 0
    board.view.apply(SNAPSHOT, snapshot("theirs", 10, 6))
    assert board.sale_view("theirs")["units"] == 6
    alert = {"alert_id": "theirs:k:1", "sale_id": "theirs", "sku": "k", "status": "open", "severity": "high"}
    board.view.apply(ALERT, alert)
    assert board.sale_view("theirs")["open_alerts"] == 1
    owned.add("theirs")  # a rebalance gives us the sale: answered from our (empty) state, not the kept view
    assert board.sale_view("theirs")["units"] == 0
    owned.discard("mine")
    board.release(["mine"])
    assert board.sale_view("mine")["units"] == 0  # its new owner has published nothing yet


def test_time_alone_is_refreshed_by_the_tick_and_the_sales_that_closed_are_forgotten() -> None:
    board, states = board_of({"mine"})
    count(board, states["mine"], "order", 3, START + HOUR, 1)
    before = board.sale_view("mine")["elapsed_fraction"]
    board.clock.observe(START + 2 * HOUR)  # an event of another sale moves stream time
    board.clock.observe(START + 2 * HOUR)
    tick_round(board)
    assert board.sale_view("mine")["elapsed_fraction"] > before
    assert board.sale_view("mine") == fresh_build(board, "mine")
    for _ in range(20):
        board.clock.observe(START + 5 * HOUR)  # every sale has ended
    list(board.refresh_answers())
    assert board.summaries.entries == {} and board.sales_view() == []


COUNTED = ("units", "views", "carts", "orders", "revenue", "stock", "open_alerts", "alert", "alert_severity")
"""What facts, snapshots and alerts change (exact at once); the rest moves with stream time alone."""


def counted(view: dict) -> dict:
    rows = [view, *view.get("products", [])]
    return {(i, key): row.get(key) for i, row in enumerate(rows) for key in COUNTED if key in row}


def test_the_list_is_at_most_settle_s_behind_and_the_tick_catches_it_up() -> None:
    board, states = board_of({"mine"}, settle_s=3600.0)  # longer than the test: only the tick can catch up
    count(board, states["mine"], "order", 3, START + HOUR, 1)
    assert board.sales_view()[0]["units"] == 3
    count(board, states["mine"], "order", 2, START + HOUR, 2)
    assert [row["units"] for row in board.sales_view() if row["sale_id"] == "mine"] == [3]  # the list settles
    list(board.refresh_answers())  # one tick
    assert [row["units"] for row in listed(board) if row["sale_id"] == "mine"] == [5]
    count(board, states["mine"], "order", 1, START + HOUR, 3)
    assert board.sale_view("mine")["units"] == 6  # one sale: exact at once


OPS = st.lists(st.tuples(st.sampled_from(["order", "browse", "cart", "snapshot", "alert", "move", "read", "tick"]),
                         st.sampled_from(SALES), st.integers(1, 5)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_every_read_answers_what_a_fresh_build_answers(ops: list[tuple[str, str, int]]) -> None:
    """What was counted is answered exactly at every read (a change that forgot to move the version shows here as a
    stale answer); after a tick, everything is, including what moves with stream time alone."""
    owned = {"mine"}
    board, states = board_of(owned)
    version = 0
    for offset, (op, sale_id, n) in enumerate(ops, start=1):
        if op in ("order", "browse", "cart"):
            if board.owns(sale_id):
                count(board, states[sale_id], op, n, START + HOUR, offset)
        elif op == "snapshot":
            version += n
            board.view.apply(SNAPSHOT, snapshot(sale_id, version, n))
        elif op == "alert":
            status = "open" if n % 2 else "resolved"
            board.view.apply(ALERT, {"alert_id": f"{sale_id}:k:{offset}" + (":resolved" if n % 2 == 0 else ""),
                                     "sale_id": sale_id, "sku": "k", "status": status, "severity": "high"})
        elif op == "move":
            if sale_id in owned:
                owned.discard(sale_id)
                board.release([sale_id])
            else:
                owned.add(sale_id)
        elif op == "tick":
            tick_round(board)
            body = json.loads(board.publish_sales())  # what GET /sales serves on both ports until the next tick
            assert body["sales"] == board.sales_view()
        for sale in SALES:
            fast = board.kept_sale_view(sale)  # the read server's answer without the loop (None: ask the loop)
            kept, built = board.sale_view(sale), fresh_build(board, sale)
            assert fast is None or fast is kept, (op, sale, "the read server would answer other than the main port")
            assert counted(kept) == counted(built), (op, sale)
            if op == "tick":
                assert kept == built, sale
        open_ids = {s.sale_id for s in board.catalog.open_sales(board.stream_ms)}
        assert listed(board) == board.sales_view()
        assert {row["sale_id"] for row in board.sales_view()} == open_ids


def test_the_tick_leaves_a_big_sale_to_the_request_that_reads_it() -> None:
    """A sale too big to build between two yields is never rebuilt by the tick, only by a read (and then exactly)."""
    from salepulse.streams.domain.catalog import Sale
    from salepulse.streams.domain.sale_summaries import EAGER_MAX_PRODUCTS, SummaryCache

    counted = {"small": 0, "big": 0}
    built: list[str] = []

    def build(sale: Sale) -> dict:
        built.append(sale.sale_id)
        return {"sale_id": sale.sale_id, "units": counted[sale.sale_id], "open_alerts": 0, "velocity_uph": 0.0,
                "is_open": True, "products": []}

    cache = SummaryCache(build, version=lambda sale_id: counted[sale_id])
    small = Sale("small", "B", 0, 10, ("k",))
    big = Sale("big", "B", 0, 10, tuple(f"k{i}" for i in range(EAGER_MAX_PRODUCTS + 1)))
    list(cache.refresh([small, big], now_ms=1))
    assert built == ["small"]
    counted["big"] = 7
    assert cache.detail(big, now_ms=1)["units"] == 7 and built == ["small", "big"]
