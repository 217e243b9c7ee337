"""Velocity arithmetic: facts from events, per-sale totals, EWMA, redelivery by source offset."""

from __future__ import annotations

import math

from salepulse.streams.domain.poison import DEFAULT_MESSAGE_BYTES, fact_bytes
from salepulse.streams.domain.velocity import (
    HOUR_MS,
    VELOCITY_HALF_LIFE_MS,
    Fact,
    SaleState,
    SkuTotals,
    extract_facts,
    facts_by_sale,
)


def test_order_lines_of_the_same_sku_merge_and_lines_of_other_sales_split() -> None:
    order = {"event_id": "o1", "ts": 1000, "lines": [
        {"sale_id": "s1", "sku": "a", "quantity": 2, "unit_price": 10.0},
        {"sale_id": "s1", "sku": "a", "quantity": 1, "unit_price": 12.0},
        {"sale_id": "s2", "sku": "b", "quantity": 1, "unit_price": 5.0}]}
    facts = extract_facts("OrderEvent", order)
    assert facts == [Fact("o1", "s1", "a", "order", 3, 32.0, 1000), Fact("o1", "s2", "b", "order", 1, 5.0, 1000)]
    grouped = facts_by_sale([(f, "t:0", 7) for f in facts])
    assert [sale for sale, _ in grouped] == ["s1", "s2"]


def test_facts_messages_are_chunked_by_bytes_but_never_split_an_event() -> None:
    facts = [(Fact(f"o{i}", "s", f"k{j}", "order", 1, 1.0, 0), "t:0", i) for i in range(10) for j in range(400)]
    per_event = sum(fact_bytes(f.event_id, f.sku, f.kind, src) for f, src, off in facts if off == 0)
    chunks = facts_by_sale(facts, max_bytes=int(per_event * 2.5))
    assert sum(len(chunk) for _, chunk in chunks) == 4000
    assert len(chunks) == 5  # two whole events per chunk: a third would pass the budget
    boundaries = [(chunk[0][2], chunk[-1][2]) for _, chunk in chunks]
    assert all(b[1] < nxt[0] for b, nxt in zip(boundaries, boundaries[1:], strict=False))


def test_a_chunk_at_the_default_budget_encodes_under_kafkas_message_limit() -> None:
    from salepulse.schemas.codec import Codec
    from salepulse.streams.io.ingest import facts_record

    long_id = "x" * 20_000
    facts = [(Fact(f"{long_id}{i}", "s", long_id, "order", 1, 1.0, 0), "events.order:0", i) for i in range(200)]
    chunks = facts_by_sale(facts)
    assert len(chunks) > 1
    codec = Codec()
    sizes = [len(codec.encode("VelocityFacts", facts_record(sale, chunk))) for sale, chunk in chunks]
    assert max(sizes) < DEFAULT_MESSAGE_BYTES


def test_cart_remove_is_its_own_kind_and_browse_counts_one_view() -> None:
    cart = {"event_id": "c", "sale_id": "s", "sku": "a", "action": "remove", "quantity": 2, "ts": 5}
    assert extract_facts("CartEvent", cart)[0].kind == "uncart"
    assert extract_facts("BrowseEvent", {"event_id": "b", "sale_id": "s", "sku": "a", "ts": 5})[0].units == 1


def test_ewma_velocity_halves_after_one_half_life_and_sums_orders() -> None:
    totals = SkuTotals()
    totals.add(Fact("o1", "s", "a", "order", 6, 60.0, 0))
    first = totals.velocity_at(0)
    assert math.isclose(first, 6 * HOUR_MS / (VELOCITY_HALF_LIFE_MS / math.log(2)))
    assert math.isclose(totals.velocity_at(VELOCITY_HALF_LIFE_MS), first / 2)
    totals.add(Fact("o2", "s", "a", "order", 6, 60.0, VELOCITY_HALF_LIFE_MS))
    assert math.isclose(totals.velocity_at(VELOCITY_HALF_LIFE_MS), first * 1.5)
    assert (totals.orders, totals.units, totals.revenue) == (2, 12, 120.0)


def test_late_events_do_not_inflate_velocity() -> None:
    totals = SkuTotals()
    totals.add(Fact("o1", "s", "a", "order", 1, 1.0, 10 * HOUR_MS))
    before = totals.velocity_at(10 * HOUR_MS)
    totals.add(Fact("o0", "s", "a", "order", 1, 1.0, 0))  # arrives late, stamped 10 h earlier
    assert totals.velocity_at(10 * HOUR_MS) <= before * 2 + 1e-9


def test_redelivered_facts_are_skipped_by_source_offset_and_state_round_trips() -> None:
    state = SaleState("s")
    fact = Fact("o1", "s", "a", "order", 2, 20.0, 0)
    assert state.apply(fact, "events.order:1", 10)
    state.close_offsets({"events.order:1": 10})
    assert not state.apply(fact, "events.order:1", 10)
    assert not state.apply(fact, "events.order:1", 9)
    assert state.apply(fact._replace(event_id="o2"), "events.order:2", 3)  # another partition has its own offsets
    restored = SaleState.from_json(state.to_json())
    assert restored == state
    assert restored.skus["a"].units == 4


def test_sale_state_reads_the_first_release_dict_format_too() -> None:
    from salepulse.streams.domain.velocity import SaleState

    legacy = {"sale_id": "s1", "applied": {"events.order:0": 7}, "version": 3,
              "skus": {"k1": {"views": 2, "carts": 1, "uncarts": 0, "orders": 1, "units": 2, "revenue": 20.0,
                              "rate_uph": 1.5, "rate_ms": 1000, "last_ms": 1000}}}
    state = SaleState.from_json(legacy)
    assert state.skus["k1"].units == 2 and state.skus["k1"].last_ms == 1000
    assert SaleState.from_json(state.to_json()) == state


def test_a_retried_order_or_cart_with_a_new_offset_counts_once_and_the_id_memory_is_bounded() -> None:
    state = SaleState("s")
    order = Fact("o1", "s", "a", "order", 2, 20.0, 0)
    assert state.apply(order, "events.order:0", 1)
    assert not state.apply(order._replace(ts_ms=99), "events.order:0", 2)  # retried without ts: a new ts, same id
    assert state.apply(order._replace(kind="cart"), "events.cart:0", 3)  # another kind is another fact
    assert state.apply(order._replace(sku="b"), "events.order:0", 4)  # another line of the same order
    view = Fact("o1", "s", "a", "view", 1, 0.0, 0)
    assert state.apply(view, "events.browse:0", 5) and state.apply(view, "events.browse:0", 6)
    assert state.skus["a"].units == 2 and state.skus["a"].views == 2
    for i in range(50):
        state.apply(Fact(f"x{i}", "s", "a", "order", 1, 1.0, 0), "events.order:0", 10 + i, max_ids=20)
    assert len(state.recent_ids) == 20
    again = SaleState.from_json(state.to_json())
    assert again.recent_ids == state.recent_ids
    assert not again.apply(Fact("x49", "s", "a", "order", 1, 1.0, 0), "events.order:1", 0)
