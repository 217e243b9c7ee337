"""The one elapsed-fraction rule of a sale, for datetimes and for epoch milliseconds alike.

Pure: no Kafka, no Faust.  The forecast, the alert rules and the catalogue all place "now" in a sale with it,
so they agree on the edges: before the start is 0, after the end is 1, and a sale of zero (or negative) length
is 0 before its start and 1 from its start on.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

__all__ = ["elapsed_fraction"]

T = TypeVar("T", datetime, int, float)


def elapsed_fraction(now: T, starts_at: T, ends_at: T) -> float:
    """Elapsed fraction of a sale at ``now``, clipped to [0, 1] (datetimes, or epoch ms / s numbers).

    >>> from datetime import datetime
    >>> elapsed_fraction(datetime(2024, 1, 1, 6), datetime(2024, 1, 1), datetime(2024, 1, 2))
    0.25
    >>> elapsed_fraction(datetime(2024, 1, 3), datetime(2024, 1, 1), datetime(2024, 1, 2))
    1.0
    >>> elapsed_fraction(1_500, 1_000, 3_000), elapsed_fraction(500, 1_000, 3_000)
    (0.25, 0.0)
    >>> elapsed_fraction(999, 1_000, 1_000), elapsed_fraction(1_000, 1_000, 1_000)  # zero-length sale
    (0.0, 1.0)
    """
    if isinstance(now, datetime):
        span = (ends_at - starts_at).total_seconds()  # type: ignore[operator]
        done = (now - starts_at).total_seconds()  # type: ignore[operator]
    else:
        span = float(ends_at - starts_at)  # type: ignore[operator]
        done = float(now - starts_at)  # type: ignore[operator]
    if span <= 0:
        return 0.0 if done < 0 else 1.0
    t = done / span
    return 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
