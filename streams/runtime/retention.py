"""Deletes the table state of sales that ended long ago (the rule: ``streams/domain/retention.py``).

Run from the worker's tick, once a minute, by the velocity worker that owns each sale: its ``sale-state`` and
``alert-state`` entries are removed locally and a tombstone is written to each changelog on the sale's own
partition (the timer has no event to name a partition, as in ``Handover.save_alerts``), so the compacted
changelogs drop them and no later recovery brings them back. The live board and the decoded-state cache forget
them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salepulse.streams.domain.retention import expired_sales
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.runtime.handover import sale_partition

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

log = get_logger(__name__)


def forget_finished_sales(worker: Worker) -> list[str]:
    """Delete the state of the owned sales that ended more than the retention ago; returns their ids."""
    handover, tables = worker.handover, (worker.sale_states, worker.alert_states)
    if handover is None or handover.not_ready() or tables[0] is None or tables[1] is None:
        return []

    def ends_ms(sale_id: str) -> int | None:
        sale = worker.catalog.sales.get(sale_id)
        return None if sale is None else sale.ends_ms

    owned = [key for key in list(tables[0].keys()) if handover.owns(key)]
    expired = expired_sales(owned, ends_ms, worker.board.stream_ms, worker.settings.finished_sale_retention_hours)
    for sale_id in expired:
        partition = sale_partition(sale_id, handover.partitions)
        for table in tables:
            if table.data.pop(sale_id, None) is not None:  # the local copy, then a tombstone in the changelog
                table.send_changelog(partition, sale_id, None)
    if expired:
        worker.sale_cache.drop(expired)
        worker.board.release(expired)
        log.info("finished sales' state deleted", sales=len(expired),
                 retention_hours=worker.settings.finished_sale_retention_hours)
    return expired
