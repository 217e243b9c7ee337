"""Where a request's time goes: per-request parts kept in a bounded window, summarised by percentile, and the
requests at or above the total's p99 broken down part by part (issue #13: the ranking p99 of the read server).

Pure and cheap (a tuple appended to a deque per request); the read server
(:mod:`salepulse.streams.runtime.serving`) fills it and logs :meth:`Timings.summary` every few seconds.

>>> t = Timings(("wait", "work"), keep=100)
>>> for n in range(100):
...     t.record("sales", total=0.010 if n < 98 else 0.100, wait=0.001 if n < 98 else 0.080, work=0.005)
>>> s = t.summary()
>>> s["sales"]["n"], s["sales"]["total_ms"]["p50"], s["sales"]["total_ms"]["p99"]
(100, 10.0, 100.0)
>>> s["sales"]["slowest"]["n"], s["sales"]["slowest"]["mean_ms"]
(2, {'total': 100.0, 'wait': 80.0, 'work': 5.0, 'rest': 15.0})
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``ordered`` by nearest rank (no interpolation: a value that was seen).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99), percentile([], 0.5)
    (2.0, 4.0, 0.0)
    """
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


class Timings:
    """Seconds per request and per named part, by route, over the last ``keep`` requests of each route.

    ``rest`` is what the parts do not cover: total − the sum of the parts (loop and GIL waits, reading and writing).
    """

    def __init__(self, parts: tuple[str, ...], keep: int = 4096) -> None:
        self.parts, self.keep = parts, keep
        self.samples: dict[str, deque[tuple[float, ...]]] = {}
        self.count = 0
        self.since = time.monotonic()
        """When the window was last cleared (monotonic seconds)."""
        self.cpu_since = 0.0
        """The recording thread's CPU clock (``time.thread_time``) at that moment, kept by the caller."""

    def record(self, route: str, total: float, **parts: float) -> None:
        """One request's total and parts (seconds); a part not given counts as 0."""
        window = self.samples.get(route)
        if window is None:
            window = self.samples[route] = deque(maxlen=self.keep)
        window.append((total, *(parts.get(name, 0.0) for name in self.parts)))
        self.count += 1

    def clear(self) -> None:
        self.samples.clear()
        self.since = time.monotonic()

    def summary(self) -> dict[str, Any]:
        """Per route: how many requests, p50 / p99 / max of the total and of each part (ms), and the mean of each
        part (and ``rest``) over the requests whose total is at or above the p99: where the slow ones spent it."""
        out: dict[str, Any] = {}
        names = ("total", *self.parts)
        for route, window in self.samples.items():
            rows = list(window)
            columns = list(zip(*rows, strict=True))
            entry: dict[str, Any] = {"n": len(rows)}
            for name, column in zip(names, columns, strict=True):
                ordered = sorted(column)
                entry[f"{name}_ms"] = {"p50": round(percentile(ordered, 0.5) * 1000, 3),
                                       "p99": round(percentile(ordered, 0.99) * 1000, 3),
                                       "max": round(ordered[-1] * 1000, 3)}
            cut = percentile(sorted(columns[0]), 0.99)
            slow = [row for row in rows if row[0] >= cut]
            means = {name: round(sum(row[i] for row in slow) / len(slow) * 1000, 3) for i, name in enumerate(names)}
            means["rest"] = round(means["total"] - sum(means[name] for name in self.parts), 3)
            entry["slowest"] = {"n": len(slow), "mean_ms": means}
            out[route] = entry
        return out
