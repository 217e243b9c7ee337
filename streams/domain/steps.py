"""The pure steps behind the worker's agents and timers: no Kafka, no Faust, testable on plain values.

The agents in :mod:`salepulse.streams.runtime.worker` decode a message, call one of these, and emit what it returns.

>>> from salepulse.streams.domain.velocity import Fact, SaleState
>>> state = SaleState("s1")
>>> facts = [(Fact("o1", "s1", "k1", "order", 2, 20.0, 1_000), "events.order:0", 7)]
>>> first, again = count(facts, state), count(facts, state)
>>> [f.event_id for f in first.counted], first.duplicates, again.counted, again.duplicates
(['o1'], 0, [], 1)
>>> state.skus["k1"].units
2
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.velocity import DEDUP_IDS, Fact, SaleState, to_ms
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.topology import sink_topics


@dataclass
class Counted:
    """What :func:`count` did with one message's facts."""

    counted: list[Fact] = field(default_factory=list)
    duplicates: int = 0


def count(facts: Iterable[tuple[Fact, str, int]], state: SaleState, dedup_ids: int = DEDUP_IDS) -> Counted:
    """Count ``(fact, source, offset)`` items into ``state``; a fact whose source offset was counted before
    (redelivery), or a retried order or cart (same kind, event id and sku, among the last ``dedup_ids``), is a
    duplicate, and is skipped. Closes the highest offset seen per source afterwards."""
    out = Counted()
    highest: dict[str, int] = {}
    for fact, source, offset in facts:
        if state.apply(fact, source, offset, dedup_ids):
            out.counted.append(fact)
        else:
            out.duplicates += 1
        highest[source] = max(highest.get(source, -1), offset)
    state.close_offsets(highest)
    return out


def preference_update(signal: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """A MemberSignal as the preference model reads it, with the brand, category and list price of the catalogue.

    >>> signal = {"member_id": "m1", "sale_id": "s1", "sku": "k1", "unit_price": None, "kind": "browse",
    ...           "quantity": 0, "action": None, "ts": 5}
    >>> update = preference_update(signal, Catalog())
    >>> update["brand"], update["price"], update["ts"]
    (None, None, 5)
    """
    product = catalog.products.get((signal["sale_id"], signal["sku"]))
    sale = catalog.sales.get(signal["sale_id"])
    return {
        "member_id": signal["member_id"], "sale_id": signal["sale_id"], "sku": signal["sku"],
        "brand": sale.brand if sale else None, "category": product.category if product else None,
        "price": signal["unit_price"] or (product.price if product else None), "kind": signal["kind"],
        "quantity": signal["quantity"], "action": signal["action"], "ts": to_ms(signal["ts"]),
    }


def lag_groups(settings: Settings) -> list[tuple[str, list[str]]]:
    """The consumer groups (and their topics) whose lag a worker of this role reports on ``/metrics``.

    >>> [group for group, _ in lag_groups(Settings(worker_role="preferences"))]
    ['salepulse-preferences']
    >>> [group for group, _ in lag_groups(Settings())]
    ['salepulse', 'salepulse-ingest', 'salepulse-sink']
    """
    topics, groups = settings.topics, settings.groups
    # A preferences worker reads velocity.snapshots whole without a group (the shop-view follower): no lag to report.
    own = [topics.facts] if settings.counts_velocity else []
    result = [(settings.worker_group, own + ([topics.signals] if settings.learns_preferences else []))]
    if settings.counts_velocity:
        result += [(groups.ingest, list(topics.events)), (groups.sink, sink_topics(topics))]
    return result


class Persistable(Protocol):
    def to_bytes(self) -> bytes: ...


S = TypeVar("S", bound=Persistable)
T = TypeVar("T")


class MemberCache(Generic[S, T]):
    """Recently active members, decoded, with the changes not yet written to the ``member-prefs`` table.

    Writing a member's state on every event doubled the messages the worker produced (one changelog record per
    event) and dominated its time; members are written at most once per flush instead (a member's session is
    bursty, so most of its events within those seconds share one write). A crash loses at most that much
    preference signal (never an order count: those live in ``sale-state``). ``load`` reads a member missing from
    the cache; ``write(member_id, bytes, token)`` stores one, where ``token`` is what :meth:`put` was given (the
    worker passes the Faust event, so the changelog record lands on the member's partition).

    >>> class State:
    ...     def __init__(self, n): self.n = n
    ...     def to_bytes(self): return str(self.n).encode()
    >>> table = {}
    >>> cache = MemberCache(1, lambda m: State(0), lambda m, value, token: table.__setitem__(m, (value, token)))
    >>> cache.put("a", State(1), "e1"); cache.put("b", State(2), "e2")  # "a" is evicted, so written
    >>> sorted(table)
    ['a']
    >>> cache.flush(), table["b"]
    (1, (b'2', 'e2'))
    """

    def __init__(self, size: int, load: Callable[[str], S], write: Callable[[str, bytes, T], None]) -> None:
        self.size = size
        self.load = load
        self.write = write
        self.states: OrderedDict[str, S] = OrderedDict()
        self.dirty: dict[str, T] = {}

    def get(self, member_id: str) -> S:
        state = self.states.get(member_id)
        if state is not None:
            self.states.move_to_end(member_id)
            return state
        return self.load(member_id)

    def put(self, member_id: str, state: S, token: T) -> None:
        self.states[member_id] = state
        self.states.move_to_end(member_id)
        self.dirty[member_id] = token
        while len(self.states) > self.size:
            evicted, old = self.states.popitem(last=False)
            if evicted in self.dirty:
                self.write(evicted, old.to_bytes(), self.dirty.pop(evicted))

    def _write_dirty(self) -> Iterator[str]:
        """Write each dirty member, yielding its id after each write."""
        for member_id in list(self.dirty):
            # Popped one at a time: between two writes of flush_yielding, agents may evict (and write) a member or
            # dirty it again.
            token = self.dirty.pop(member_id, None)
            if token is not None:
                self.write(member_id, self.states[member_id].to_bytes(), token)
                yield member_id

    def flush(self) -> int:
        return sum(1 for _ in self._write_dirty())

    async def flush_yielding(self, every: int = 50) -> int:
        """:meth:`flush`, giving the event loop back every ``every`` members: at 5,000 events/s thousands of members
        are dirty, and writing them in one go stalled the agents and the HTTP API for most of a second."""
        written = 0
        for written, _ in enumerate(self._write_dirty(), start=1):
            if written % every == 0:
                await asyncio.sleep(0)
        return written

    def clear(self) -> None:
        """Flush what can be flushed and forget the rest (partitions may have moved); raises if the flush fails."""
        try:
            self.flush()
        finally:
            self.states.clear()
