"""The column-wise splitter (issue 13) against the row-wise reference it replaced: the same facts messages (same
sales, same chunk boundaries under any byte budget, same columns) and the same signals, for any mix of views,
carts and orders spanning several sales."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from salepulse.schemas.codec import Codec
from salepulse.streams.domain.velocity import extract_facts, facts_by_sale
from salepulse.streams.io.ingest import BatchSplitter, facts_record, output_bytes, signals_of
from salepulse.streams.platform.topology import RECORD_KINDS
from tests.unit.test_ingest import T0, Raw

CODEC = Codec()
ids = st.sampled_from(["s1", "s2", "s3", "sé"])
skus = st.sampled_from(["k1", "k2", "k3", "ké"])
members = st.sampled_from(["m1", "m2", "m3", "mé"])


@st.composite
def events(draw: Any) -> tuple[str, dict[str, Any]]:
    base = {"event_id": draw(st.sampled_from(["e1", "e2", "é3"])) + str(draw(st.integers(0, 99))),
            "member_id": draw(members), "ts": T0 + draw(st.integers(0, 10**6))}
    kind = draw(st.sampled_from(["BrowseEvent", "CartEvent", "OrderEvent"]))
    if kind == "BrowseEvent":
        return kind, {**base, "sale_id": draw(ids), "sku": draw(skus)}
    if kind == "CartEvent":
        return kind, {**base, "sale_id": draw(ids), "sku": draw(skus), "quantity": draw(st.integers(1, 3)),
                      "action": draw(st.sampled_from(["add", "remove"])), "unit_price": 10.0}
    lines = draw(st.lists(st.fixed_dictionaries({"sale_id": ids, "sku": skus, "quantity": st.integers(1, 3),
                                                 "unit_price": st.sampled_from([1.0, 9.5])}), min_size=1, max_size=4))
    region = draw(st.sampled_from([None, "north"]))
    return kind, {**base, "order_id": base["event_id"], "lines": lines, **({"region": region} if region else {})}


def reference(messages: list[Raw], budget: int) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]],
                                                         list[int]]:
    """The row-wise path: Fact rows of every event, regrouped by sale and chunked by facts_by_sale; and the
    offsets of the events whose outputs exceed the budget (dead-lettered)."""
    rows, sizes, signals, oversized = [], {}, [], []
    for message in messages:
        name, record = CODEC.decode(message.value(), timestamps="ms")
        source = f"{message.topic()}:{message.partition()}"
        facts = extract_facts(name, record)
        event_signals = signals_of(RECORD_KINDS[name], record)
        fact_size, signal_size = output_bytes(record, facts, event_signals, source)
        if max(fact_size, signal_size) > budget:
            oversized.append(message.offset())
            continue
        sizes[(source, message.offset())] = fact_size
        rows.extend((fact, source, message.offset()) for fact in facts)
        signals.extend(event_signals)
    return ([(sale, facts_record(sale, chunk)) for sale, chunk in facts_by_sale(rows, budget, sizes)], signals,
            oversized)


@settings(max_examples=150, deadline=None)
@given(st.lists(events(), min_size=1, max_size=30), st.sampled_from([200, 400, 1_000, 500_000]))
def test_column_wise_split_equals_the_row_wise_reference(batch: list[tuple[str, dict[str, Any]]], budget: int) -> None:
    messages = [Raw(f"events.{RECORD_KINDS[name]}", i % 2, 10 + i, CODEC.encode(name, record))
                for i, (name, record) in enumerate(batch)]
    out = BatchSplitter(CODEC, partitions=1, max_message_bytes=budget * 2).split(messages)
    facts, signals, oversized = reference(messages, budget)
    assert [offset for _, _, offset, _ in out.reasons] == oversized
    assert [(sale, CODEC.decode(value, timestamps="ms")[1]) for sale, value in out.facts] == facts
    got = [s for _, value in out.signals for s in CODEC.decode(value, timestamps="ms")[1]["signals"]]
    key = ("member_id", "sale_id", "sku", "kind", "quantity", "action", "unit_price", "ts")
    assert [tuple(s[k] for k in key) for s in got] == [tuple(s[k] for k in key) for s in signals]
    assert out.facts_count == sum(len(record["event_ids"]) for _, record in facts)
