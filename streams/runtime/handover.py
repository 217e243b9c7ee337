"""Which sales this velocity worker owns, and what happens when partitions move (README, "Scaling out").

A sale belongs to the partition its id hashes to on ``velocity.facts`` (murmur2, as the ingest's producer and
Faust's table routing place it); the worker assigned that partition owns the sale: it counts it, forecasts it,
alerts on it, publishes its snapshots, outcomes and stocking plans. Nobody else does.

On every rebalance (a start, a worker joining or leaving, a SIGKILL) Faust revokes and re-assigns partitions and
recovers the tables from their changelogs. :class:`Handover` then:

1. on revocation, owns nothing until recovery ends (the timer publishes nothing, the sale endpoints answer 503);
2. once the tables are recovered, releases the live state of the sales that moved away, and rebuilds the live board
   of every sale it now owns from the ``sale-state`` and ``alert-state`` tables *before* answering: totals and
   forecasters from the counted state, alert sequences and open alerts from the alert state; it republishes their
   snapshots, so every other worker's view holds the state as recovered.

Alert state is changelog-backed in ``alert-state`` (one entry per sale, written on the sale's own partition), so a
sale's next owner continues its alert sequences: an alert id is never reused for another alert, and an open alert
is neither forgotten nor raised again because its sale moved.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aiokafka.partitioner import murmur2

from salepulse.streams.platform.logs import get_logger

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

log = get_logger(__name__)

CATALOG_WAIT_S = 60.0
"""How long a rebuild waits for the catalogue: sales it does not know yet would be kept as unknown (bounded)."""
RETRY_AFTER_S = 2


@lru_cache(maxsize=200_000)
def sale_partition(sale_id: str, partitions: int) -> int:
    """The partition of ``velocity.facts`` (and of the velocity tables) a sale belongs to.

    >>> sale_partition("sale-1", 4) == sale_partition("sale-1", 4)
    True
    >>> sorted({sale_partition(f"sale-{i}", 4) for i in range(50)})
    [0, 1, 2, 3]
    """
    return (murmur2(sale_id.encode()) & 0x7FFFFFFF) % partitions


class Handover:
    """Ownership of sales, readiness, and the rebuild of the live board after each rebalance."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.partitions = worker.settings.partitions
        self.owned: frozenset[int] = frozenset()
        self.recovering = True
        self.reason = "the worker is recovering its partitions' state"
        self.generation = 0
        self.rebuilds = 0
        self.last_rebuild_s: float | None = None
        self._revoked_at: float | None = time.monotonic()
        self.last_handover_s: float | None = None
        """Seconds from the revocation to answering again (a start counts from the process start)."""

    # --- ownership ------------------------------------------------------------------------------------------
    def owns(self, sale_id: str) -> bool:
        return sale_partition(sale_id, self.partitions) in self.owned

    def not_ready(self) -> str | None:
        """Why the sale endpoints cannot answer right now (None: they can)."""
        if self.recovering:
            return self.reason
        if not self.worker.view_follower.ready.is_set():
            return "the worker is still reading the other workers' snapshots and alerts"
        return None

    # --- rebalance hooks ------------------------------------------------------------------------------------
    async def on_revoked(self, *_args: Any, **_kwargs: Any) -> None:
        """Partitions are moving: own nothing until the tables are recovered."""
        self.generation += 1
        self.owned = frozenset()
        self.recovering = True
        self.reason = "partitions are moving between workers; this worker is recovering their state"
        if self._revoked_at is None:
            self._revoked_at = time.monotonic()

    async def on_recovered(self) -> None:
        """Called by Faust once the tables are recovered (``Table.on_recover``): rebuild in a task, so that waiting
        for the catalogue does not hold up Faust's recovery."""
        generation = self.generation
        asyncio.ensure_future(self._rebuild(generation))

    async def _rebuild(self, generation: int) -> None:
        worker = self.worker
        deadline = time.monotonic() + CATALOG_WAIT_S
        while not worker.catalog_follower.ready.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if generation != self.generation:
            return  # another rebalance began; its own recovery rebuilds
        started = time.perf_counter()
        facts_topic = worker.settings.topics.facts
        owned = frozenset(tp.partition for tp in worker.app.consumer.assignment() if tp.topic == facts_topic)
        board = worker.board
        gone = {sale_id for sale_id, _sku in list(board.totals)} | set(board.active)
        board.release(s for s in gone if sale_partition(s, self.partitions) not in owned)
        worker.sale_cache.clear()
        self.owned = owned
        sales = [key for key in list(worker.sale_states.keys()) if self.owns(key)]
        for n, sale_id in enumerate(sales, start=1):
            state = worker.load_sale(sale_id)  # into the cache and, for catalogued sales, onto the board
            worker.dirty.update((sale_id, sku) for sku in state.skus)
            if n % 200 == 0:
                await asyncio.sleep(0)
        alerts = self.restore_alerts()
        self.rebuilds += 1
        self.last_rebuild_s = time.perf_counter() - started
        if self._revoked_at is not None:
            self.last_handover_s = time.monotonic() - self._revoked_at
            self._revoked_at = None
        self.recovering = False
        log.info("partitions recovered", partitions=sorted(owned), sales=len(sales), alert_states=alerts,
                 rebuild_s=round(self.last_rebuild_s, 3), handover_s=self.last_handover_s)

    # --- alert state ----------------------------------------------------------------------------------------
    def restore_alerts(self) -> int:
        """Alert sequences and open alerts of the owned sales, from the ``alert-state`` table."""
        board, restored = self.worker.board, 0
        for sale_id, value in list(self.worker.alert_states.items()):
            if not value or not self.owns(sale_id):
                continue
            stored = json.loads(value)
            board.alerts.restore(stored["states"])
            for sku, record in stored["open"].items():
                board.open_alerts[(sale_id, sku)] = record
            board.changed(sale_id)
            restored += 1
        return restored

    def save_alerts(self, sale_ids: set[str]) -> None:
        """Write the alert state of these sales to ``alert-state``, each on its sale's own partition (the table is
        written from the timer, where no event names a partition)."""
        board, table = self.worker.board, self.worker.alert_states
        for sale_id in sale_ids:
            if not self.owns(sale_id):
                continue
            sale = self.worker.catalog.sales.get(sale_id)
            skus = set(sale.skus if sale else ()) | board.active.get(sale_id, set())
            value = json.dumps({
                "states": board.alerts.sale_dict(sale_id, skus),
                "open": {sku: record for (s, sku), record in list(board.open_alerts.items()) if s == sale_id},
            }).encode()
            table.data[sale_id] = value  # the local copy, then the changelog on the sale's partition
            table.send_changelog(sale_partition(sale_id, self.partitions), sale_id, value)
