"""How long the state of a finished sale is kept (issue #12): its ``sale-state`` and ``alert-state`` entries are
deleted ``SALEPULSE_FINISHED_SALE_RETENTION_HOURS`` of stream time after the sale ended.

Until then a sale's totals stay exact for ``GET /sales/{id}``, late orders from a lagging partition are still
deduplicated against its state, and its outcomes can be re-sent. After it, ClickHouse holds the sale's history,
and the tables (and every restart's recovery) no longer grow with every sale ever run. Pure: the worker hands in
the keys, the sales' ends and the stream time (``streams/runtime/retention.py`` deletes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

HOUR_MS = 3_600_000


def expired_sales(sale_ids: Iterable[str], ends_ms: Callable[[str], int | None], now_ms: int,
                  retention_hours: float) -> list[str]:
    """The sales whose end is more than ``retention_hours`` before ``now_ms`` (stream time).

    A sale whose end is unknown (not, or no longer, in the catalogue) is kept: nothing says it ended. Before any
    event (``now_ms`` 0) nothing has expired.

    >>> ends = {"old": 0, "recent": 47 * HOUR_MS, "open": 60 * HOUR_MS}.get
    >>> expired_sales(["old", "recent", "open", "unknown"], ends, now_ms=48 * HOUR_MS + 1, retention_hours=48)
    ['old']
    >>> expired_sales(["old"], ends, now_ms=0, retention_hours=0)
    []
    """
    if now_ms <= 0:
        return []
    cutoff = now_ms - retention_hours * HOUR_MS
    expired = []
    for sale_id in sale_ids:
        end = ends_ms(sale_id)
        if end is not None and end < cutoff:
            expired.append(sale_id)
    return expired
