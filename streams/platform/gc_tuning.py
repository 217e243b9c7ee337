"""The garbage collector of a long-running worker: start-up objects frozen, young collections rarer (issue #13).

The ingest allocates a dict per decoded event, a list per column and a dict per signal, thousands per batch, all
alive until the batch is produced. With CPython's default threshold (a young collection every 700 allocations)
those survivors are traversed again and again and promoted, and every promotion brings the next full collection
closer; a full collection walks everything the worker holds (catalogue, tables, member states). The split stage
measured ~8 µs of its 28 µs per event in the collector. Two remedies, both standard CPython:

- :func:`gc.freeze` after start-up moves what exists then (modules, Faust's services, the catalogue read so far)
  to a permanent generation that no collection walks again;
- a higher first threshold makes young collections rarer; the objects in a batch die by reference counting
  anyway (they hold no cycles), so fewer collections find the same garbage.

Reference cycles are still collected, only less often; memory is not the constraint here (a gen-0 of 50,000
objects is a few MB).

:class:`PauseWatch` times the collections themselves (the worker logs them every 10 s as "garbage collections"):
a collection holds the GIL, so a read server's requests wait behind it.

>>> import gc
>>> before = gc.get_threshold()
>>> tune_collector(0) is None   # 0 leaves CPython's defaults
True
>>> tune_collector(50_000)["threshold"][0]
50000
>>> gc.unfreeze(); gc.set_threshold(*before)
"""

from __future__ import annotations

import gc
import time
from typing import Any


def tune_collector(gen0_threshold: int) -> dict[str, Any] | None:
    """Freeze what is alive now and set the first collection threshold; ``0`` leaves the collector as it is.

    Returns what it did (the caller logs it), or None when it did nothing.
    """
    if gen0_threshold <= 0:
        return None
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    return {"frozen_objects": gc.get_freeze_count(), "threshold": gc.get_threshold()}


class PauseWatch:
    """Times every garbage collection (``gc.callbacks``) and keeps, per generation, the count, the total and the
    longest pause since the last :meth:`take`: a full collection holds the GIL for as long as it walks the heap,
    and every thread of the process (a read server's included) waits for it.

    >>> watch = PauseWatch()
    >>> watch.install()
    >>> _ = gc.collect()
    >>> took = watch.take()
    >>> took[2]["count"] >= 1 and took[2]["max_ms"] >= 0
    True
    >>> watch.uninstall()
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pauses[info["generation"]].append((time.perf_counter() - self._started) * 1000)

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        gc.callbacks.remove(self._callback)

    def take(self) -> dict[int, dict[str, float]]:
        """Count, total and longest pause (ms) per generation since the last call, and start over."""
        pauses, self._pauses = self._pauses, {0: [], 1: [], 2: []}
        return {generation: {"count": len(ms), "total_ms": round(sum(ms), 1), "max_ms": round(max(ms, default=0), 1)}
                for generation, ms in pauses.items()}
