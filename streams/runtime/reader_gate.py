"""The learner steps aside while the read server answers (issue #13, the ranking p99 in the split layout).

The read server (:mod:`salepulse.streams.runtime.serving`) is a thread of the preferences worker: it needs the GIL
that the worker's loop holds while it learns. Measured under the bench's load (README, "Rankings off the learning
path", fourth pass), the slowest rankings spent little in the ranking itself or waiting for :attr:`Worker.learning`:
most of it went queued on the read server's loop behind other requests, each of which shared the GIL with the
worker's loop (py-spy, 10 s of that load: the loop held the GIL 87% of the samples, learning 44% and the member
flush 36%; the read server 12%). So while a read is in flight (:meth:`ReaderGate.enter` to :meth:`ReaderGate.leave`)
the learner, once its slice has run ``MIN_LEARN_S``, blocks here with the GIL released until the reads are done or
:data:`READER_YIELD_S` passed: the learner still gets at least ``MIN_LEARN_S`` of every
``MIN_LEARN_S + READER_YIELD_S`` under a steady read load. The member flush does not step aside: in smaller chunks
that did, a flush under load took 8-20 s instead of 3-10 s (what a crash loses), for no measured gain.

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

import threading
import time

READER_YIELD_S = 0.003
"""The longest the learner waits for the reads in flight each time it steps aside; 0: it never does (reads are not
counted), as before this gate."""


class ReaderGate:
    """Reads in flight on the read server (only its thread calls :meth:`enter` and :meth:`leave`) and the learner's
    :meth:`step_aside`."""

    def __init__(self, yield_s: float = READER_YIELD_S) -> None:
        self.yield_s = yield_s
        self.in_flight = 0
        self.idle = threading.Event()
        self.idle.set()
        self.waited_s = 0.0
        """Seconds the learner spent stepping aside (the read server's timings line)."""

    def enter(self) -> None:
        if not self.yield_s:
            return
        self.in_flight += 1
        self.idle.clear()

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
