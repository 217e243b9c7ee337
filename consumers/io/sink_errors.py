"""What the ClickHouse sink does when an insert fails: retry the outage, isolate the poison.

Pure logic (no Kafka, no ClickHouse client), used by :mod:`salepulse.consumers.io.clickhouse_sink`.

- **Transient** errors (connection refused or reset, timeouts, a busy or overloaded server, anything unknown)
  mean "not written yet": the sink keeps the batch and retries with backoff, as it always did.
- **Permanent** errors are about the data: a value the column type cannot hold ("Unable to create native array",
  type mismatch, out of range), or a block ClickHouse refuses as a whole ("Too many partitions for single INSERT
  block"). Retrying them only stalls every later fact, snapshot and alert behind one row. The sink bisects the
  rows (:func:`isolate`): halves that insert are kept, and each single row that still fails goes to the
  ``quarantine`` table with the reason. A block refused for its partition count succeeds once halved, so
  nothing is quarantined for it.

>>> classify(ConnectionError("connection refused"))
'transient'
>>> classify(ValueError("Unable to create native array for column `units`: error"))
'permanent'
>>> classify(RuntimeError("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100)"))
'permanent'
>>> classify(RuntimeError("Code: 252. DB::Exception: Too many parts (300). Merges are processing slowly"))
'transient'
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Literal

Kind = Literal["transient", "permanent"]

PERMANENT_MESSAGES = (
    "unable to create native array",
    "too many partitions for single insert block",
    "type_mismatch",
    "cannot convert",
    "cannot parse",
    "out of range",
    "value_is_out_of_range",
    "argument_out_of_bound",
    "cannot_insert_null",
    "cannot insert null",
    "too_large_string_size",
    "error serializing column",
)
"""Lower-case fragments of ClickHouse and clickhouse-connect messages that describe the rows, not the server."""

TRANSIENT_MESSAGES = ("too many parts", "timeout", "timed out", "memory limit", "too many simultaneous", "connection")
"""Checked first: "Too many parts" (merges behind) shares code 252 with "Too many partitions" but is load."""

PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    ValueError, TypeError, OverflowError, struct.error, UnicodeError, KeyError, IndexError,
)
"""Raised while clickhouse-connect serialises a column (client side): the server was never asked."""


def classify(exc: BaseException) -> Kind:
    """``permanent`` when the error is about the rows, ``transient`` otherwise (unknown errors are retried)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(e) for e in chain).lower()
    if isinstance(exc, ConnectionError | TimeoutError) or any(m in text for m in TRANSIENT_MESSAGES):
        return "transient"
    if any(m in text for m in PERMANENT_MESSAGES) or isinstance(exc, PERMANENT_TYPES):
        return "permanent"
    return "transient"


def isolate(insert: Callable[[int, int], None], lo: int, hi: int) -> list[tuple[int, str]]:
    """Insert rows ``[lo, hi)`` with ``insert(lo, hi)``, bisecting on permanent errors; returns the rows that fail
    alone, each with its reason. A transient error propagates (the caller retries the whole batch; rows already
    written are written again, which the ReplacingMergeTree tables absorb).

    >>> written = []
    >>> def insert(lo, hi):
    ...     if any(i in (3, 6) for i in range(lo, hi)):
    ...         raise ValueError("Unable to create native array")
    ...     written.extend(range(lo, hi))
    >>> isolate(insert, 0, 8)
    [(3, 'ValueError: Unable to create native array'), (6, 'ValueError: Unable to create native array')]
    >>> sorted(written)
    [0, 1, 2, 4, 5, 7]
    """
    if hi <= lo:
        return []
    try:
        insert(lo, hi)
        return []
    except Exception as exc:
        if classify(exc) == "transient":
            raise
        if hi - lo == 1:
            return [(lo, f"{type(exc).__name__}: {exc}"[:1000])]
    mid = (lo + hi) // 2
    return isolate(insert, lo, mid) + isolate(insert, mid, hi)
