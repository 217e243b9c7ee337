"""Reads served off the worker's event loop: a thread with its own event loop and HTTP server (issues #13, #12).

On the worker's Faust web server (port 6066) a ranking request waits in the one event loop behind everything else
that runs there: the learner's slices, the Faust consumer, the agents' batches, the 1 s live-state tick, the member
flush. Under load that put ranking p99 at 61 ms (200 sales) and 81 ms (5,000 products) for a 0.4 / 4 ms answer.

With ``SALEPULSE_SERVING_PORT`` set, :class:`ReadServer` answers ``GET /members/{id}/sales`` and
``GET /members/{id}/products`` on that port from a thread of its own, with the same handlers, checks (token,
readiness) and response models as the main port, reading the live member state, the preference model, the
catalogue and the live board of this worker:

- **No wait behind the loop.** The thread has its own asyncio loop; the learner's loop never runs its requests.
- **Consistent reads.** The learner folds signals in slices (``LEARN_SLICE``) under :attr:`Worker.learning`, a
  lock this server takes around each ranking, so a ranking never sees a half-applied signal; a waiting request
  (:attr:`Worker.readers_waiting`) ends the slice once it has run ``MIN_LEARN_S`` (2 ms), so it waits at most that
  and one signal, and a steady ranking load cannot starve the learner.
  State changes are visible to the next request: an event reaches the ranking as soon as the learner has folded it
  in, with no snapshot or changelog delay.
- **The GIL.** The thread still needs CPython's GIL, which a busy thread keeps for the switch interval (5 ms by
  default) before handing it over; a request takes it several times (accept, read, rank, write). The server sets
  the interval to :data:`SWITCH_INTERVAL_S`. Measured (docs/ranking-serving-history.md, fourth pass): the
  slowest rankings wait queued on this loop, which under load runs a fifth of the time (the GIL held by the
  learner and the member flush, or no core free); the learner stepping aside for in-flight reads did not change it.
- **Timings.** Each ranking's time, from aiohttp taking it off the connection to the response written, is split
  into :data:`TIMING_PARTS` and logged as a summary every :data:`TIMINGS_EVERY_S` ("ranking request timings":
  p50 / p99 of each part, and where the requests at or above the p99 spent theirs).
- **Routing as on the main port.** A member whose partition another worker owns gets a 307 to that worker's main
  port, where Faust's table routing applies as today.

**Operations' reads** (issue #12, a velocity worker): ``GET /sales`` and ``GET /sales/{id}`` (the endpoints
declared ``off_loop``) are answered here by the main port's own handlers and checks (role, token, readiness:
:func:`~salepulse.streams.runtime.api.routing.check`). Under 5,000 events/s a ``GET /sales`` on the main port
waited for the loop (the agents' batches, the tick's rebuilds, the Faust consumer) for most of its p99; the answer
itself is kept bytes. Here the handler reads the body the tick rendered on the loop (swapped by one reference
assignment, never built here) and the kept, current answer of a sale; anything else (no body yet, one older than
the list's bound, a sale whose answer changed) is handed to the loop (:func:`~salepulse.streams.runtime.api.routing
.on_loop`), where the main port would have built it too. So both ports give the same answers.

Candidate building reads the live board and the catalogue, which other threads change (the catalogue follower, the
agents); a read that meets a dict changing size is retried (:func:`retried`).

**Forked snapshots** (``SALEPULSE_SERVING_SNAPSHOT_S`` > 0, :class:`SnapshotServer`): the GIL is the thread's limit
(measured: no better than the main port on a busy worker), so the rankings can instead come from a *process*: every
``SALEPULSE_SERVING_SNAPSHOT_S`` the worker's loop, between two learner slices, forks a child that serves the state
as it was at the fork (the kernel's copy-on-write pages: nothing is serialised) on a listening socket the worker
opened once and every child shares. When the new child listens, the previous one stops accepting, answers what it
holds and exits; no connection is refused in between. The child has a core and a GIL of its own; an event reaches its
answers at the next snapshot. The child touches nothing another thread may hold a lock on (no Kafka client, no
metrics, no log lines on the request path) and freezes its inherited heap so its collector copies no page. Measured
against the thread under 5,000 events/s (docs/ranking-serving-history.md, third pass) it answered fewer
requests, slower, and the forks slowed the learner: the thread stays the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.metrics import Registry
from salepulse.streams.platform.timings import Timings
from salepulse.streams.runtime.api import ROUTERS, members, models
from salepulse.streams.runtime.api.errors import HTTPProblem, error_middleware
from salepulse.streams.runtime.api.routing import Endpoint, answer, authorize, check, json_answer, require_ready, served

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

log = get_logger(__name__)

MAX_FORK_SHARE = 0.05
"""At most this share of the worker's loop goes to forking: a fork that took 150 ms (a large heap, a busy box: seen
under load) puts the next one 3 s later instead of 1 s, so answers grow staler rather than the learner falling
behind."""
RETIRE_GRACE_S = 2.0
"""A retired snapshot answers the connections it had accepted for this long before it closes."""
SWITCH_INTERVAL_S = 0.001
"""CPython's GIL switch interval while the server runs (default 0.005 s): each of a request's several GIL
acquisitions waits up to this long behind a busy learner or ingest thread."""
RETRIES = 5
TIMING_PARTS = ("queued", "lock_wait", "ranking_cpu", "ranking_waiting", "encode", "write")
"""What a ranking request's time is split into (the read server's "ranking request timings" log line), from aiohttp
taking it off the connection to its response written: queued on this loop before its handler ran (behind other
requests, or this thread waiting for the GIL); waiting for :attr:`Worker.learning`; the ranking (candidates and
scoring) on the CPU, and its wall time off the CPU (the GIL held by another thread, or the process not scheduled);
checking the answer's model and encoding the JSON; writing the response. ``rest`` is what remains (routing, the
token and readiness checks, the middlewares)."""
TIMINGS_EVERY_S = 10.0
"""How often the read server logs the timings of the requests since the last line."""
TIMINGS_KEY = web.AppKey("ranking_timings", Timings)
SPENT_KEY = "salepulse_spent"
ENTERED_KEY = "salepulse_entered"
ANSWERED_KEY = "salepulse_answered"
"""Where a ranking handler leaves its parts (seconds, :data:`TIMING_PARTS`) for :class:`TimedAccess`."""
SNAPSHOT_HEADER = "X-Salepulse-Snapshot-Ms"
"""On a forked snapshot's answers: the epoch milliseconds of the state it answers from (its fork), so a client can
tell how stale an answer is and which snapshot gave it."""


async def retried(call: Callable[[], Awaitable[Any]], retries: int = RETRIES) -> Any:
    """``await call()``, again when it raised ``RuntimeError`` because a dict or set changed size while it iterated
    (another thread wrote the live board or the catalogue meanwhile).

    >>> attempts = []
    >>> async def flaky():
    ...     attempts.append(1)
    ...     if len(attempts) < 3:
    ...         raise RuntimeError("dictionary changed size during iteration")
    ...     return "ranked"
    >>> asyncio.run(retried(flaky)), len(attempts)
    ('ranked', 3)
    """
    for attempt in range(retries):
        try:
            return await call()
        except RuntimeError as exc:
            if "changed size during iteration" not in str(exc) or attempt == retries - 1:
                raise
    raise AssertionError("unreachable")


def ranking_app(worker: Worker, live: bool, requests: Any, snapshot_ms: int = 0) -> web.Application:
    """The two ranking endpoints (a worker that learns preferences) and, on the thread server, the endpoints
    declared ``off_loop`` (``GET /sales``, ``GET /sales/{id}``) of its role. ``live``: reading the state other
    threads change (the thread server: readiness checked per request, rankings under :attr:`Worker.learning`);
    else a forked snapshot's own copy (checked by the worker before it forked) of the moment ``snapshot_ms``."""
    app = web.Application(middlewares=[*([_clocked()] if live else []), error_middleware(requests)])
    if not live:
        # A snapshot retires every refresh: a kept-alive connection would tie a client to it and be reset when it
        # goes, so each answer closes its connection and the next request reaches the newest. The header must say
        # so: aiohttp decides the Connection header before this hook runs, so force_close() alone sent none, the
        # client pooled the connection the server was about to close, and its next request on it was reset (the
        # bench's "Connection reset by peer": 13-27% of requests in tests/integration/test_serving_snapshots.py).
        async def close_after(_request: web.Request, response: web.StreamResponse) -> None:
            response.force_close()
            response.headers["Connection"] = "close"
            response.headers[SNAPSHOT_HEADER] = str(snapshot_ms)

        app.on_response_prepare.append(close_after)
    if worker.settings.learns_preferences:
        app.router.add_get("/members/{member_id}/sales",
                           _handler(worker, members.member_sales, models.MemberSales, live))
        app.router.add_get("/members/{member_id}/products",
                           _handler(worker, members.member_products, models.MemberProducts, live))
    if live:
        for endpoint in off_loop_endpoints(worker.settings.worker_role):
            app.router.add_route(endpoint.method, endpoint.path, _off_loop(worker, endpoint))
    return app


def _clocked() -> Any:
    """Notes when a request's handler began and ended for :class:`TimedAccess`, and writes the response here rather
    than after the middlewares, so that its writing is measured apart."""

    @web.middleware
    async def clocked(request: web.Request, handler: Any) -> web.StreamResponse:
        request[ENTERED_KEY] = time.perf_counter()
        response = await handler(request)
        request[ANSWERED_KEY] = time.perf_counter()
        await response.prepare(request)
        await response.write_eof()  # aiohttp's own prepare and write_eof after this are no-ops
        return response

    return clocked


def off_loop_endpoints(role: str) -> list[Endpoint]:
    """The endpoints the read server of a worker of ``role`` answers besides the rankings.

    >>> [e.path for e in off_loop_endpoints("velocity")], off_loop_endpoints("preferences")
    (['/sales', '/sales/{sale_id}'], [])
    """
    return [endpoint for router in ROUTERS for endpoint in router.endpoints if endpoint.off_loop
            and served(endpoint, role)]


def _off_loop(worker: Worker, endpoint: Endpoint) -> Any:
    """The main port's handler of ``endpoint`` with the main port's checks, on this thread's loop."""

    async def serve(request: web.Request) -> web.StreamResponse:
        check(worker, endpoint, request)
        return await answer(worker, endpoint, request, **request.match_info)

    return serve


def _handler(worker: Worker, handler: Callable[..., Awaitable[dict[str, Any]]], model: Any, live: bool) -> Any:
    settings = worker.settings

    async def serve(request: web.Request) -> web.StreamResponse:
        member_id = request.match_info["member_id"]
        authorize("read", settings.api_token, settings.read_token, request)
        if live:
            require_ready(worker)
        owner = _owner(worker, member_id)
        if owner is not None:  # another worker owns the member: its main port routes as today
            raise web.HTTPTemporaryRedirect(str(request.rel_url.with_scheme("http").with_host(owner[0])
                                                .with_port(owner[1])))

        spent = dict.fromkeys(("lock_wait", "ranking_cpu", "ranking_waiting", "encode"), 0.0)

        async def answer() -> dict[str, Any]:
            if not live:
                return await handler(worker, request, member_id=member_id)
            asked = time.perf_counter()
            worker.readers_waiting += 1  # the learner ends its slice soon (MIN_LEARN_S)
            try:
                worker.learning.acquire()  # between two of the learner's slices, never inside one
            finally:
                worker.readers_waiting -= 1
            locked, cpu = time.perf_counter(), time.thread_time()
            try:
                return await handler(worker, request, member_id=member_id)
            finally:
                worker.learning.release()
                on_cpu = time.thread_time() - cpu
                spent["lock_wait"] += locked - asked
                spent["ranking_cpu"] += on_cpu
                spent["ranking_waiting"] += max(0.0, time.perf_counter() - locked - on_cpu)

        result = await retried(answer)
        encoding = time.perf_counter()
        model.model_validate(result)  # the documented contract holds, or this is a 500
        response = json_answer(result)
        spent["encode"] = time.perf_counter() - encoding
        if live:
            request[SPENT_KEY] = spent
        return response

    return serve


class TimedAccess(AbstractAccessLogger):
    """aiohttp's access-log hook, used for timings only: ``time`` is aiohttp's, from taking the request off the
    connection to the response written (``write_eof``). Each ranking's parts join the app's :class:`Timings`; every
    :data:`TIMINGS_EVERY_S` one "ranking request timings" line gives their summary and the window starts over."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_s: float) -> None:
        spent = request.get(SPENT_KEY)
        if spent is None:  # a redirect, an error: not a ranking
            return
        timings = request.app[TIMINGS_KEY]
        now = time.perf_counter()
        entered, answered = request.get(ENTERED_KEY, now), request.get(ANSWERED_KEY, now)
        timings.record("products" if request.path.endswith("/products") else "sales", time_s,
                       **{**spent, "queued": max(0.0, time_s - (now - entered)), "write": now - answered})
        if time.monotonic() - timings.since >= TIMINGS_EVERY_S:
            # this thread's CPU over the window's wall time: near 1, it is CPU-bound; far below with requests
            # queued, it waited for the GIL or for a core
            cpu, wall = time.thread_time() - timings.cpu_since, time.monotonic() - timings.since
            log.info("ranking request timings", seconds=round(wall, 1), timings=timings.summary(),
                     serving_thread_cpu_share=round(cpu / wall, 3))
            timings.clear()
            timings.cpu_since = time.thread_time()

    @property
    def enabled(self) -> bool:
        return True


def _owner(worker: Worker, member_id: str) -> tuple[str, int] | None:
    """(host, port) of the worker owning the member's partition when it is not this one."""
    app = worker.app
    try:
        url = app.router.key_store(worker.member_prefs.name, member_id)
    except KeyError:
        raise HTTPProblem(503, "the member's partition has no owner yet; retry in a moment") from None
    here = app.conf.canonical_url
    if (url.host, url.port) == (here.host, here.port):
        return None
    return str(url.host), int(url.port or 80)


class ReadServer:
    """The rankings and the ``off_loop`` reads of ``worker`` on ``port``, in a daemon thread; :meth:`start` returns
    once it listens. Built on the worker's loop, which it records for :func:`on_loop`."""

    def __init__(self, worker: Worker, port: int, host: str) -> None:
        self.worker, self.port, self.host = worker, port, host
        with contextlib.suppress(RuntimeError):  # no running loop: every handler runs where it is called
            worker.extensions["loop"] = asyncio.get_running_loop()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.AppRunner | None = None
        self.listening = threading.Event()
        self.thread = threading.Thread(target=self._run, name="serving", daemon=True)
        self.failure: BaseException | None = None
        self.timings = Timings(TIMING_PARTS)
        """Where each ranking's time went (:class:`TimedAccess`), logged every ``TIMINGS_EVERY_S``."""

    def app(self) -> web.Application:
        app = ranking_app(self.worker, live=True, requests=self.worker.metrics.http_requests)
        app[TIMINGS_KEY] = self.timings
        return app

    def start(self, timeout: float = 30.0) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.thread.start()
        if not self.listening.wait(timeout):
            raise RuntimeError(f"the read server did not listen on {self.host}:{self.port}: {self.failure!r}")
        log.info("reads served off the event loop", port=self.port, switch_interval_s=SWITCH_INTERVAL_S,
                 rankings=self.worker.settings.learns_preferences,
                 paths=[e.path for e in off_loop_endpoints(self.worker.settings.worker_role)])

    def _run(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self.runner = web.AppRunner(self.app(), access_log=logging.getLogger(__name__),
                                        access_log_class=TimedAccess)
            loop.run_until_complete(self.runner.setup())
            loop.run_until_complete(web.TCPSite(self.runner, self.host, self.port).start())
        except BaseException as exc:  # noqa: BLE001 - start() reports it
            self.failure = exc
            return
        self.listening.set()
        self.timings.cpu_since = time.thread_time()  # this thread's CPU clock, for the timings line
        loop.run_forever()
        loop.run_until_complete(self.runner.cleanup())
        loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)


class SnapshotServer:
    """Rankings from a forked copy-on-write snapshot of the worker, renewed every ``every_s`` (see the module)."""

    def __init__(self, worker: Worker, port: int, host: str, every_s: float) -> None:
        self.worker, self.every_s = worker, every_s
        self.sock = socket.create_server((host, port), backlog=1024)
        self.sock.setblocking(False)
        self.child: tuple[int, int] | None = None  # (pid, write end of its "retire" pipe)
        self.retired: list[int] = []
        self.forks = 0
        self.failed = 0
        self.last_fork = 0.0
        self.forked_at_ms = 0
        self.fork_ms: list[float] = []
        """Milliseconds the worker's loop spent in each fork (kept to the last 100, for /stats and the bench)."""

    async def refresh(self) -> None:
        """Fork a new snapshot child, wait until it accepts, retire the previous one (called on the worker's loop,
        so never inside a learner slice)."""
        if self.fork_ms and time.monotonic() - self.last_fork < self.fork_ms[-1] / 1000 / MAX_FORK_SHARE:
            return
        try:
            require_ready(self.worker)
        except HTTPProblem:
            return  # nothing consistent to serve yet; the main port says why
        self._reap()
        ready_r, ready_w = os.pipe()
        retire_r, retire_w = os.pipe()
        started = time.perf_counter()
        self.forked_at_ms = int(time.time() * 1000)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(ready_r)
            os.close(retire_w)
            if self.child is not None:
                # the serving child's retire pipe: a copy held here would keep it from ever seeing EOF (a retired
                # snapshot went on answering with the catalogue of its time)
                os.close(self.child[1])
            code = 0
            try:
                self._serve(ready_w, retire_r)
            except BaseException:  # noqa: BLE001 - the child's failure must not run the worker's code
                code = 1
            os._exit(code)
        self.fork_ms = [*self.fork_ms[-99:], round((time.perf_counter() - started) * 1000, 3)]
        self.last_fork = time.monotonic()
        os.close(ready_w)
        os.close(retire_r)
        ready = await asyncio.to_thread(os.read, ready_r, 1)
        os.close(ready_r)
        if ready != b"1":  # the child failed before listening: keep the previous one
            os.close(retire_w)
            self.retired.append(pid)
            log.error("ranking snapshot failed to start; the previous one keeps serving", pid=pid)
            return
        previous, self.child = self.child, (pid, retire_w)
        self.forks += 1
        if self.forks % 60 == 1:  # what the snapshots cost the worker's loop, about once a minute
            log.info("ranking snapshots", forks=self.forks, fork_ms_last=self.fork_ms[-1],
                     fork_ms_median=sorted(self.fork_ms)[len(self.fork_ms) // 2], fork_ms_max=max(self.fork_ms))
        if previous is not None:
            os.close(previous[1])  # EOF on its pipe: it stops accepting, answers what it holds, exits
            self.retired.append(previous[0])

    def _reap(self) -> None:
        still = []
        for pid in self.retired:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if not done:
                still.append(pid)
            elif status:  # a snapshot that died rather than retired dropped the connections it held
                self.failed += 1
                log.warning("ranking snapshot ended abnormally", pid=pid, exit_code=os.waitstatus_to_exitcode(status),
                            failed=self.failed)
        self.retired = still

    def _serve(self, ready_w: int, retire_r: int) -> None:
        """The child: a loop of its own on the shared socket until its retire pipe closes."""
        signal.set_wakeup_fd(-1)  # the inherited one is the worker's loop: a signal here must not wake it
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        gc.freeze()  # the inherited heap is read-only here: a collection walking it would copy every page
        asyncio.events._set_running_loop(None)  # forked from inside the worker's running loop
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(ranking_app(self.worker, live=False, requests=Registry().counter(
            "salepulse_snapshot_requests_total", "Requests answered by the snapshot.", ["route", "status"]),
            snapshot_ms=self.forked_at_ms),
            access_log=None, handle_signals=False, shutdown_timeout=5.0)
        loop.run_until_complete(runner.setup())
        server = loop.run_until_complete(loop.create_server(runner.server, sock=self.sock, backlog=1024))
        os.write(ready_w, b"1")
        os.close(ready_w)
        done = loop.create_future()
        loop.add_reader(retire_r, lambda: done.done() or done.set_result(None))
        loop.run_until_complete(done)
        # Retired: stop accepting (the newer snapshot takes the socket's queue), answer what was accepted, then
        # close. Not by server.close() first: the loop's last pass may have accepted connections whose transports
        # are not made yet, and on a closed asyncio Server (Python 3.11) making one fails in Server._attach and
        # drops the connection unread.
        loop.remove_reader(self.sock.fileno())
        loop.run_until_complete(asyncio.sleep(RETIRE_GRACE_S))
        loop.run_until_complete(runner.cleanup())
        server.close()

    def stop(self) -> None:
        if self.child is not None:
            os.close(self.child[1])
            self.retired.append(self.child[0])
            self.child = None
        deadline = time.monotonic() + 5
        while self.retired and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in self.retired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.sock.close()
