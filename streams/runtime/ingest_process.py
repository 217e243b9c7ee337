"""The ingest in a child process of the worker (``SALEPULSE_INGEST_PROCESS=on``; issue #13).

Why a process: the ingest (decode, validate, split, encode) and ``sale_state`` (decode, count, forecast, changelog)
are pure Python, and in one interpreter they take turns on one GIL. A py-spy profile of a velocity worker on a
backlog (``python -m salepulse.streams.tools.bench_velocity --profile``) has the ingest thread holding it about
two thirds of the time; in a child process it runs on the other core and the worker's loop keeps the GIL for the
agents, the timers and the HTTP API.

Nothing about delivery changes: the child runs the same :class:`~salepulse.streams.io.ingest.EventIngest`, which
commits its input only after the broker acknowledged every output of it. What crosses back to the worker is only
what ``/stats`` and ``/metrics`` report (:func:`summary`), so a lost summary costs a counter, never an event.

Lifetimes are tied both ways, so that no ingest runs without its worker (it would keep consuming, under the
worker's name, events whose facts nobody counts on a kill test's restarted worker):

- the child dies with the worker: ``PR_SET_PDEATHSIG`` (SIGKILL) on Linux, and it stops when its parent changes;
- the worker dies with the child: a child that exits while the worker did not ask it to is what a crashed ingest
  thread was, and the worker exits without committing (``on_death``).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from salepulse.schemas.codec import Codec
from salepulse.streams.io.ingest import EventIngest, IngestBatch
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.gc_tuning import tune_collector
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

PR_SET_PDEATHSIG = 1
Summary = tuple[dict[tuple[str, int], int], dict[str, int], dict[str, int], int, int, int]


def summary(batch: IngestBatch) -> Summary:
    """What the worker reports of a batch, without the encoded messages (those stay in the child).

    >>> batch = IngestBatch(kinds=Counter(browse=3), facts_count=3, signals_count=3,
    ...                     last_offsets={("events.browse", 0): 9}, deadletters=[(b"k", b"dl")])
    >>> restored = from_summary(summary(batch))
    >>> restored.kinds, restored.facts_count, len(restored.deadletters), restored.last_offsets
    (Counter({'browse': 3}), 3, 1, {('events.browse', 0): 9})
    """
    return (dict(batch.last_offsets), dict(batch.kinds), dict(batch.failures), len(batch.deadletters),
            batch.facts_count, batch.signals_count)


def from_summary(data: Summary) -> IngestBatch:
    """The batch the worker's ``on_batch`` reads, rebuilt from :func:`summary` (messages left out)."""
    last_offsets, kinds, failures, deadletters, facts, signals = data
    return IngestBatch(kinds=Counter(kinds), failures=Counter(failures), facts_count=facts, signals_count=signals,
                       last_offsets=last_offsets, deadletters=[(None, b"")] * deadletters)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when the worker goes (Linux); elsewhere the parent check remains."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the worker died before the request above
        os._exit(0)


def _child(settings: Settings, stop: Any, out: Any, parent: int) -> None:
    """The child's main: the worker's ingest, its summaries on ``out``, until ``stop`` is set."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the worker decides when we stop
    tune_collector(settings.gc_gen0_threshold)

    def watch_parent() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                os._exit(0)  # nothing committed past what was delivered; the next owner reads the rest again

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()
    try:
        EventIngest(settings, Codec(settings.schema_registry_url), group_id=settings.groups.ingest,
                    on_batch=lambda batch: out.put(summary(batch))).run(stop)
    except Exception as exc:  # noqa: BLE001 - reported, then the exit code tells the worker
        log.critical("ingest process failed; exiting without committing", error=repr(exc))
        out.close()
        out.join_thread()
        os._exit(70)
    out.close()
    out.join_thread()  # every summary flushed to the pipe before the process ends


class IngestProcess:
    """The worker's side: starts the child, feeds its summaries to ``on_batch``, notices its death.

    ``start`` must run on the worker's main thread: the kernel's parent-death signal fires when the *thread* that
    forked the child ends, and the main thread ends only with the process.
    """

    def __init__(self, settings: Settings, on_batch: Callable[[IngestBatch], None],
                 on_death: Callable[[int | None], None]) -> None:
        self.settings = settings
        self.on_batch = on_batch
        self.on_death = on_death
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with threads and an event loop
        self._stop = self._context.Event()
        self._queue = self._context.Queue()
        self._stopping = False
        self.process = self._context.Process(target=_child, name="ingest", daemon=True,
                                             args=(settings, self._stop, self._queue, os.getpid()))
        self._reader = threading.Thread(target=self._read, name="ingest-summaries", daemon=True)

    def start(self) -> None:
        self.process.start()
        self._reader.start()
        log.info("ingest process started", pid=self.process.pid)

    def _read(self) -> None:
        while True:
            try:
                self.on_batch(from_summary(self._queue.get(timeout=0.5)))
            except queue.Empty:
                if not self.process.is_alive():
                    if not self._stopping or self.process.exitcode not in (0, None):
                        self.on_death(self.process.exitcode)
                    return

    def stop(self, timeout: float = 30.0) -> None:
        """Let the child commit what it delivered and exit; its last summaries are read before this returns."""
        self._stopping = True
        self._stop.set()
        self.process.join(timeout)
        if self.process.is_alive():
            log.warning("ingest process did not stop in time; killing it", pid=self.process.pid)
            self.process.kill()
            self.process.join(5)
        self._reader.join(5)
