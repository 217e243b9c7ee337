"""Sale velocity: what an event does to a (sale, sku), and the live per-sale state that adds it up.

Pure logic (no Kafka, no Faust), so it is unit-tested directly and shared by the agents, the benchmark and the tests.

Two stages, matching the two agents:

1. :func:`extract_facts` turns one decoded event into :class:`Fact` rows, one per (event, sku) it touches.
2. :class:`SaleState` accumulates the facts of one sale: totals per sku and an exponentially weighted velocity.
   It remembers, per source partition, the offset of the last event it counted, so an event redelivered after a
   crash (same partition, same or lower offset) is counted once; see :meth:`SaleState.apply`.

>>> order = {"event_id": "o1", "order_id": "o1", "member_id": "m1", "ts": 3_600_000,
...          "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 10.0}]}
>>> facts = extract_facts("OrderEvent", order)
>>> facts
[Fact(event_id='o1', sale_id='s1', sku='k1', kind='order', units=2, revenue=20.0, ts_ms=3600000, region=None)]
>>> state = SaleState("s1")
>>> state.apply(facts[0], source="events.order:0", offset=41)
True
>>> state.close_offsets({"events.order:0": 41})
>>> state.apply(facts[0], source="events.order:0", offset=41)  # redelivered: already counted
False
>>> state.skus["k1"].units, round(state.skus["k1"].velocity_at(3_600_000), 2)
(2, 5.55)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, NamedTuple

from salepulse.streams.domain.poison import fact_bytes, message_budget

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
VELOCITY_HALF_LIFE_MS = 15 * MINUTE_MS
"""How fast velocity forgets: a flash sale's pace changes within minutes, so a quarter hour keeps it responsive."""
_TAU_MS = VELOCITY_HALF_LIFE_MS / math.log(2)


def to_ms(ts: datetime | int) -> int:
    """Epoch milliseconds of a decoded Avro timestamp-millis (a datetime) or of an int already in ms."""
    return ts if isinstance(ts, int) else int(round(ts.timestamp() * 1000))


class Fact(NamedTuple):
    """One event's effect on one (sale, sku)."""

    event_id: str
    sale_id: str
    sku: str
    kind: str  # view | cart | uncart | order
    units: int
    revenue: float
    ts_ms: int
    region: str | None = None
    """The ordering member's delivery region, when the order carried one (orders only)."""


def extract_facts(record_name: str, record: Mapping[str, Any]) -> list[Fact]:
    """The facts of one decoded event; order lines of the same (sale, sku) are merged into one fact."""
    ts = to_ms(record["ts"])
    if record_name == "BrowseEvent":
        return [Fact(record["event_id"], record["sale_id"], record["sku"], "view", 1, 0.0, ts)]
    if record_name == "CartEvent":
        kind = "cart" if record["action"] == "add" else "uncart"
        return [Fact(record["event_id"], record["sale_id"], record["sku"], kind, record["quantity"], 0.0, ts)]
    if record_name == "OrderEvent":
        merged: dict[tuple[str, str], list[float]] = {}
        for line in record["lines"]:
            units_revenue = merged.setdefault((line["sale_id"], line["sku"]), [0, 0.0])
            units_revenue[0] += line["quantity"]
            units_revenue[1] += line["quantity"] * line["unit_price"]
        return [
            Fact(record["event_id"], sale_id, sku, "order", int(units), round(revenue, 6), ts, record.get("region"))
            for (sale_id, sku), (units, revenue) in merged.items()
        ]
    raise ValueError(f"{record_name} is not an event with velocity")


@dataclass
class SkuTotals:
    """Running totals of one sku in one sale, plus an exponentially weighted order rate.

    The rate is kept as ``rate_uph`` at ``rate_ms``: each order adds ``units / tau`` and the rate decays with
    ``exp(-dt / tau)`` between events, which is the continuous-time EWMA of units per hour.
    """

    views: int = 0
    carts: int = 0
    uncarts: int = 0
    orders: int = 0
    units: int = 0
    revenue: float = 0.0
    rate_uph: float = 0.0
    rate_ms: int = 0
    last_ms: int = 0
    regions: dict[str, int] = field(default_factory=dict)
    """Units ordered per delivery region (orders that carried one): what the stocking plan splits by. Last, so
    that the positional state of an earlier release still reads (with no regions)."""

    def add(self, fact: Fact) -> None:
        if fact.kind == "view":
            self.views += 1
        elif fact.kind == "cart":
            self.carts += 1
        elif fact.kind == "uncart":
            self.uncarts += 1
        else:
            self.orders += 1
            self.units += fact.units
            self.revenue += fact.revenue
            if fact.region is not None:
                self.regions[fact.region] = self.regions.get(fact.region, 0) + fact.units
            self.rate_uph = self.velocity_at(fact.ts_ms) + fact.units * HOUR_MS / _TAU_MS
            self.rate_ms = max(self.rate_ms, fact.ts_ms)
        self.last_ms = max(self.last_ms, fact.ts_ms)

    def velocity_at(self, now_ms: int) -> float:
        """Units per hour, decayed to ``now_ms`` (events out of order do not inflate it)."""
        return self.rate_uph * math.exp(-max(0, now_ms - self.rate_ms) / _TAU_MS)


TOTALS_FIELDS = tuple(f.name for f in fields(SkuTotals))
DEDUP_IDS = 5_000
"""Default of ``SALEPULSE_SALE_DEDUP_IDS``: order and cart identities remembered per sale (about 100 KB of state)."""


def fact_identity(fact: Fact) -> str:
    """What makes two facts the same: kind, event id and sku, never the arrival time (hashed: ids can be long).

    >>> fact_identity(Fact("o1", "s1", "k1", "order", 1, 1.0, 0)) == fact_identity(Fact("o1", "s1", "k1", "order",
    ...                                                                                  1, 1.0, 99))
    True
    >>> len(fact_identity(Fact("o1" * 1000, "s1", "k1", "order", 1, 1.0, 0)))
    16
    """
    return hashlib.blake2b(f"{fact.kind}\x1f{fact.event_id}\x1f{fact.sku}".encode("utf-8", "surrogatepass"),
                           digest_size=8).hexdigest()


@dataclass
class SaleState:
    """Everything counted for one sale, serialisable to JSON for a Faust table's changelog."""

    sale_id: str
    skus: dict[str, SkuTotals] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    """Last counted offset per source ``topic:partition``."""
    version: int = 0
    recent_ids: dict[str, None] = field(default_factory=dict)
    """Identities of the latest orders and carts counted, oldest first (an insertion-ordered set)."""

    def apply(self, fact: Fact, source: str, offset: int, max_ids: int = DEDUP_IDS) -> bool:
        """Count ``fact`` unless it was already counted; True if counted.

        Two checks. **Redelivery**: an event at this source offset or earlier was already counted. Facts of one
        source partition reach this state in offset order (one key, one partition, one producer), so the
        high-water offset is exact and constant-size. **Retry**: the same order or cart (kind, event id, sku) was
        sent again, so it has a new offset; the ids of the last ``max_ids`` orders and carts of this sale are kept
        (hashed, 16 hex characters each) to catch that. A retry comes seconds or minutes after the original, so
        the most recent few thousand per sale cover it while keeping the state, and its changelog record, small;
        the ids go with the sale's state when the sale is evicted. Views are not remembered: they are hundreds
        of times more numerous and a doubled view moves no forecast. ClickHouse dedups every kind exactly.
        """
        if offset <= self.applied.get(source, -1):
            return False
        if fact.kind != "view":
            identity = fact_identity(fact)
            if identity in self.recent_ids:
                return False
            self.recent_ids[identity] = None
            while len(self.recent_ids) > max_ids:
                del self.recent_ids[next(iter(self.recent_ids))]
        self.skus.setdefault(fact.sku, SkuTotals()).add(fact)
        return True

    def close_offsets(self, offsets: Mapping[str, int]) -> None:
        """Record that every event up to these source offsets is now counted (call once per batch)."""
        for source, offset in offsets.items():
            self.applied[source] = max(self.applied.get(source, -1), offset)
        self.version += 1

    def to_json(self) -> dict[str, Any]:
        # Positional lists, not dataclasses.asdict: this runs for every sale touched by every batch, and a weekly
        # sale can carry thousands of skus.
        return {
            "sale_id": self.sale_id,
            "skus": {sku: [getattr(totals, name) for name in TOTALS_FIELDS] for sku, totals in self.skus.items()},
            "applied": self.applied,
            "version": self.version,
            "ids": list(self.recent_ids),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SaleState:
        return cls(
            sale_id=data["sale_id"],
            # Positional lists since the first release's dicts became too slow; both are read.
            skus={sku: SkuTotals(**values) if isinstance(values, dict) else SkuTotals(*values)
                  for sku, values in data["skus"].items()},
            applied=dict(data["applied"]),
            version=data["version"],
            recent_ids=dict.fromkeys(data.get("ids", ())),
        )


def facts_by_sale(
    facts: Iterable[tuple[Fact, str, int]], max_bytes: int | None = None,
    event_bytes: Mapping[tuple[str, int], int] | None = None,
) -> list[tuple[str, list[tuple[Fact, str, int]]]]:
    """Group ``(fact, source, offset)`` by sale, in order, as ``(sale_id, chunk)`` messages of at most ``max_bytes``
    (by estimate, :func:`salepulse.streams.domain.poison.fact_bytes`; default half of Kafka's 1 MB message limit).

    Chunked by bytes, not by count: 3,000 facts with 500,000-character ids once made one message of hundreds of MB.
    A chunk never splits the facts of one event: ``sale_state`` closes each message's source offsets when it has
    applied it, so a second message carrying the rest of an event would be skipped as a redelivery. The ingest
    dead-letters an event whose facts alone exceed the budget, so no chunk does. ``event_bytes`` (per (source,
    offset): the event's facts' size, over all its sales) saves estimating again what the ingest already did.

    >>> f = [(Fact(f"o{i}", "s1", f"k{j}", "order", 1, 1.0, 0), "t:0", i) for i in range(3) for j in range(2)]
    >>> [(sale, [offset for _, _, offset in chunk]) for sale, chunk in facts_by_sale(f, max_bytes=400)]
    [('s1', [0, 0, 1, 1]), ('s1', [2, 2])]
    """
    budget = message_budget() if max_bytes is None else max_bytes
    grouped: dict[str, list[tuple[Fact, str, int]]] = {}
    for item in facts:
        grouped.setdefault(item[0].sale_id, []).append(item)
    messages: list[tuple[str, list[tuple[Fact, str, int]]]] = []
    for sale_id, items in grouped.items():
        events: list[list[tuple[Fact, str, int]]] = []
        for item in items:  # one event's facts are adjacent: extract_facts emits them together
            if not events or (item[1], item[2]) != (events[-1][-1][1], events[-1][-1][2]):
                events.append([])
            events[-1].append(item)
        chunk: list[tuple[Fact, str, int]] = []
        size = 0
        for event in events:
            known = None if event_bytes is None else event_bytes.get((event[0][1], event[0][2]))
            this = known if known is not None else sum(fact_bytes(f.event_id, f.sku, f.kind, source)
                                                       + len((f.region or "").encode("utf-8", "surrogatepass"))
                                                       for f, source, _ in event)
            if chunk and size + this > budget:
                messages.append((sale_id, chunk))
                chunk, size = [], 0
            chunk.extend(event)
            size += this
        messages.append((sale_id, chunk))
    return messages
