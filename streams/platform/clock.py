"""The stream clock: "now" for forecasts, alerts and "open now", taken from event times, and hard to hijack.

Stream time (not the wall clock) is what lets a replay of 2019 data or a simulation running 60× faster than real
time forecast and rank exactly as it would have live. It used to be the latest event time seen, so ONE event dated
in 2100 (or ``ts`` = 9e15) moved "now" for everyone: every open sale closed, rankings came back empty.

The rule now, in two parts:

1. **Bounded by the wall clock.** An event time later than ``wall clock + skew`` (default 5 minutes) is never
   used as "now" (it is still counted; it just does not move the clock). Replays and simulations carry past
   times, so the bound never binds for them.
2. **A robust statistic, not the maximum.** "Now" is the high percentile (default the 90th, nearest rank) of the
   last ``window`` (default 512) event times that passed the bound, and never goes back. One stray event cannot
   move it once more than ten events are in the window (with fewer, nearest rank is the maximum, and the bound
   alone protects); a minority of skewed events within the bound moves it at most to the bound.

Event times arrive close to sorted (replays, simulations, live traffic), so the 90th percentile of the last 512
trails the newest event by about one twentieth of the window's span: milliseconds live, seconds in a fast replay.

The module also holds :func:`elapsed_fraction`, the one rule placing "now" inside a sale.

Pure: the wall clock is a parameter (``wall_ms``), so tests and doctests control it.

>>> wall = [1_000_000_000]
>>> clock = StreamClock(window=20, wall_ms=lambda: wall[0])
>>> for ts in (100, 200, 300, 400):
...     clock.observe(ts)
>>> clock.advance()
400
>>> clock.observe(4_102_444_800_000)  # a browse dated 2100: beyond the wall clock, ignored by the clock
>>> clock.advance(), clock.ignored
(400, 1)
>>> for ts in [*range(500, 2000, 100), 1_000_000_100]:  # one event slightly ahead, within the skew
...     clock.observe(ts)
>>> clock.advance()  # the 90th percentile of the last 20 is not the one outlier
1800
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar


def wall_ms() -> int:
    """Wall-clock time in epoch milliseconds (the unit of every event time here)."""
    return int(time.time() * 1000)


class StreamClock:
    """Monotonic stream time from recent event times (see the module docstring for the rule)."""

    def __init__(self, *, window: int = 512, quantile: float = 0.9, skew_ms: int = 300_000,
                 wall_ms: Callable[[], int] = wall_ms) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.quantile = quantile
        self.skew_ms = skew_ms
        self.wall_ms = wall_ms
        self.recent: deque[int] = deque(maxlen=window)
        self.now_ms = 0
        self.ignored = 0
        """Event times that were beyond the wall clock plus skew (a gauge for /stats)."""
        self._changed = False
        self._bound = wall_ms() + skew_ms

    def observe(self, ts_ms: int) -> None:
        """One event time; cheap (called per fact). The clock moves on :meth:`advance`."""
        if ts_ms > self._bound:
            self._bound = self.wall_ms() + self.skew_ms  # refreshed only when an event reaches the bound
            if ts_ms > self._bound:
                self.ignored += 1
                return
        self.recent.append(ts_ms)
        self._changed = True

    def advance(self) -> int:
        """Move "now" to the percentile of the recent event times (never back); returns it.

        >>> clock = StreamClock(wall_ms=lambda: 10_000)
        >>> clock.advance(), clock.observe(5_000), clock.advance(), clock.observe(1_000), clock.advance()
        (0, None, 5000, None, 5000)
        """
        if self._changed:
            self._changed = False
            ordered = sorted(self.recent)
            rank = min(len(ordered), max(1, math.ceil(self.quantile * len(ordered))))
            self.now_ms = max(self.now_ms, ordered[rank - 1])
        return self.now_ms


T = TypeVar("T", datetime, int, float)


def elapsed_fraction(now: T, starts_at: T, ends_at: T) -> float:
    """Elapsed fraction of a sale at ``now``, clipped to [0, 1] (datetimes, or epoch ms / s numbers).

    The one rule for the forecast, the alert rules and the catalogue: before the start is 0, after the end is 1,
    and a sale of zero (or negative) length is 0 before its start and 1 from its start on.

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
