"""Bounded live state: the decoded sale states a velocity worker keeps in memory, with caps and eviction.

Pure (no Kafka, no Faust); ``sale_state`` in :mod:`salepulse.streams.runtime.worker` is the glue.

Rules:

- **Known sales** (in the catalogue) are kept up to ``max_live`` (``SALEPULSE_MAX_LIVE_SALES``), least recently
  counted evicted first. Evicting one only drops the decoded copy: the ``sale-state`` table keeps the durable one
  and it is read again on the sale's next fact.
- **Finished sales** are dropped from memory when they end (stream time); their table entry stays, so
  ``/sales/{id}`` still answers for them.
- **Unknown sales** (a sale id the catalogue does not know) are not fed to the live board (no forecast, no
  snapshot per tick, no alert) and at most ``max_unknown`` (``SALEPULSE_MAX_UNKNOWN_SALES``) of them are kept.
  They are kept at all because the catalogue follower and the ingest are separate consumers: a sale published a
  moment before its first orders can be counted before the catalogue has read it, and those orders must not be
  lost. An unknown sale evicted by newer ones loses its state for good (the caller deletes it from the table):
  made-up sale ids cost bounded memory and bounded table space, whatever their number.

>>> cache = SaleCache(max_live=2, max_unknown=1)
>>> for sale_id, known in [("a", True), ("b", True), ("x", False), ("y", False), ("c", True)]:
...     cache.put(sale_id, object(), known=known)
>>> cache.evict()
[('a', False), ('x', True)]
>>> sorted(cache.states), sorted(cache.unknown)
(['b', 'c', 'y'], ['y'])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any


class SaleCache:
    """An LRU of decoded sale states with separate caps for known and unknown sales."""

    def __init__(self, max_live: int, max_unknown: int) -> None:
        self.max_live = max_live
        self.max_unknown = max_unknown
        self.states: OrderedDict[str, Any] = OrderedDict()
        self.unknown: OrderedDict[str, None] = OrderedDict()
        """Cached sales the catalogue did not know when they were last counted (oldest first)."""
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.states)

    def get(self, sale_id: str) -> Any | None:
        state = self.states.get(sale_id)
        if state is not None:
            self.states.move_to_end(sale_id)
            if sale_id in self.unknown:
                self.unknown.move_to_end(sale_id)
        return state

    def put(self, sale_id: str, state: Any, *, known: bool) -> None:
        self.states[sale_id] = state
        self.states.move_to_end(sale_id)
        if known:
            self.unknown.pop(sale_id, None)
        else:
            self.unknown[sale_id] = None
            self.unknown.move_to_end(sale_id)

    def mark_known(self, sale_id: str) -> bool:
        """The catalogue has learned the sale; True if it was cached as unknown (its totals must reach the board).

        >>> cache = SaleCache(2, 2); cache.put("x", object(), known=False)
        >>> cache.mark_known("x"), cache.mark_known("x")
        (True, False)
        """
        return sale_id in self.unknown and self.unknown.pop(sale_id) is None

    def evict(self) -> list[tuple[str, bool]]:
        """Drop what is over the caps; returns ``(sale_id, was_unknown)`` of each evicted sale."""
        out: list[tuple[str, bool]] = []
        while len(self.unknown) > self.max_unknown:
            sale_id, _ = self.unknown.popitem(last=False)
            self.states.pop(sale_id, None)
            out.append((sale_id, True))
        known = len(self.states) - len(self.unknown)
        if known > self.max_live:
            for sale_id in list(self.states):
                if known <= self.max_live:
                    break
                if sale_id not in self.unknown:
                    del self.states[sale_id]
                    out.append((sale_id, False))
                    known -= 1
        out.sort(key=lambda item: item[0])
        self.evicted += len(out)
        return out

    def drop(self, sale_ids: Iterable[str]) -> None:
        """Forget finished sales (the table keeps them)."""
        for sale_id in sale_ids:
            self.states.pop(sale_id, None)
            self.unknown.pop(sale_id, None)

    def clear(self) -> None:
        self.states.clear()
        self.unknown.clear()
