"""The worker's loop steps aside while the read server answers (issue #13, the ranking p99 in the split layout).

The read server (:mod:`salepulse.streams.runtime.serving`) is a thread of the preferences worker: it needs the GIL
that the worker's loop holds while it learns, flushes members or runs Faust. Measured under the bench's load (README,
"Rankings off the learning path", fourth pass), the slowest rankings spent little in the ranking itself or waiting
for :attr:`Worker.learning`: most of it went queued on the read server's loop behind other requests, each of which
shared the GIL with the worker's loop (py-spy, 10 s of that load: the loop held the GIL 87% of the time, learning
44% and the member flush 36%; the read server 12%). So while a read is in flight (:meth:`ReaderGate.enter` to
:meth:`ReaderGate.leave`) the worker's loop, between two of its callbacks, blocks here with the GIL released until
the reads are done or :data:`READER_YIELD_S` passed, and again every :data:`EVERY_S` while reads are in flight: the
read server runs alone, and the loop keeps at least ``EVERY_S`` of every ``EVERY_S + READER_YIELD_S`` under a
steady read load. Its callbacks must be short for this to bite: the learner's slice ends at ``MIN_LEARN_S`` when a
read is in flight, and the member flush gives the loop back every ``FLUSH_EVERY`` members.

>>> gate = ReaderGate(yield_s=0.05)
>>> gate.step_aside()  # no read in flight: no wait
0.0
>>> gate.enter(); gate.in_flight
1
>>> 0.04 < gate.step_aside() < 1.0  # a read in flight: waits, at most yield_s (plus scheduling)
True
>>> gate.leave(); gate.in_flight, gate.step_aside()
(0, 0.0)
"""

from __future__ import annotations

import asyncio
import threading
import time

READER_YIELD_S = 0.003
"""The longest the learner waits for the reads in flight each time it steps aside; 0: it never does (reads are not
counted), as before this gate."""
EVERY_S = 0.002
"""While reads are in flight the worker's loop runs at least this long between two steps aside (the learner's
``MIN_LEARN_S``)."""


class ReaderGate:
    """Reads in flight on the read server (only its thread calls :meth:`enter` and :meth:`leave`) and the learner's
    :meth:`step_aside`."""

    def __init__(self, yield_s: float = READER_YIELD_S, every_s: float = EVERY_S) -> None:
        self.yield_s, self.every_s = yield_s, every_s
        self.in_flight = 0
        self.idle = threading.Event()
        self.idle.set()
        self.waited_s = 0.0
        """Seconds the worker's loop spent stepping aside (for the bench and /stats)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.armed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's loop: while reads are in flight it steps aside every ``every_s`` (:meth:`_aside`)."""
        self.loop = loop

    def enter(self) -> None:
        if not self.yield_s:
            return
        self.in_flight += 1
        self.idle.clear()
        if self.loop is not None and not self.armed:
            self.armed = True
            self.loop.call_soon_threadsafe(self._aside)

    def _aside(self) -> None:
        """On the worker's loop, between two of its callbacks (a learner slice, a chunk of the member flush, a Faust
        fetch): step aside, then again in ``every_s`` while reads are in flight. A callback, not a task, so that an
        idle read server costs the loop nothing."""
        self.step_aside()
        if self.in_flight and self.loop is not None:
            self.loop.call_later(self.every_s, self._aside)
        else:
            self.armed = False  # the next read arms it again

    def leave(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if not self.in_flight:
            self.idle.set()

    def step_aside(self) -> float:
        """Block the calling thread (GIL released) while reads are in flight, at most ``yield_s``; seconds waited."""
        if not self.in_flight:
            return 0.0
        began = time.perf_counter()
        self.idle.wait(self.yield_s)
        waited = time.perf_counter() - began
        self.waited_s += waited
        return waited
