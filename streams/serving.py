"""Member rankings served off the learning path: a thread with its own event loop and HTTP server (issue #13).

On the worker's Faust web server (port 6066) a ranking request waits in the one event loop behind everything else
that runs there: the learner's slices, the Faust consumer, the agents' batches, the 1 s live-state tick, the member
flush. Under load that put ranking p99 at 61 ms (200 sales) and 81 ms (5,000 products) for a 0.4 / 4 ms answer.

With ``SALEPULSE_SERVING_PORT`` set, :class:`RankingServer` answers ``GET /members/{id}/sales`` and
``GET /members/{id}/products`` on that port from a thread of its own, with the same handlers, checks (token,
readiness) and response models as the main port, reading the live member state, the preference model, the
catalogue and the live board of this worker:

- **No wait behind the loop.** The thread has its own asyncio loop; the learner's loop never runs its requests.
- **Consistent reads.** The learner folds signals in slices (``LEARN_SLICE``) under :attr:`Worker.learning`, a
  lock this server takes around each ranking, so a ranking never sees a half-applied signal; a request waits at
  most one slice (~2 ms). State changes are visible to the next request: an event reaches the ranking as soon
  as the learner has folded it in, with no snapshot or changelog delay.
- **The GIL.** The thread still needs CPython's GIL, which a busy thread keeps for the switch interval (5 ms by
  default) before handing it over; a request takes it several times (accept, read, rank, write). The server sets
  the interval to :data:`SWITCH_INTERVAL_S`.
- **Routing as on the main port.** A member whose partition another worker owns gets a 307 to that worker's main
  port, where Faust's table routing applies as today.

Candidate building reads the live board and the catalogue, which other threads change (the catalogue follower, the
agents); a read that meets a dict changing size is retried (:func:`retried`).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from salepulse.streams.api import members, models
from salepulse.streams.api.errors import HTTPProblem, error_middleware
from salepulse.streams.api.routing import authorize, json_answer, require_ready
from salepulse.streams.logs import get_logger

if TYPE_CHECKING:
    from salepulse.streams.worker import Worker

log = get_logger(__name__)

SWITCH_INTERVAL_S = 0.001
"""CPython's GIL switch interval while the server runs (default 0.005 s): each of a request's several GIL
acquisitions waits up to this long behind a busy learner or ingest thread."""
RETRIES = 5


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


class RankingServer:
    """The rankings of ``worker`` on ``port``, in a daemon thread; :meth:`start` returns once it listens."""

    def __init__(self, worker: Worker, port: int, host: str) -> None:
        self.worker, self.port, self.host = worker, port, host
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.AppRunner | None = None
        self.listening = threading.Event()
        self.thread = threading.Thread(target=self._run, name="serving", daemon=True)
        self.failure: BaseException | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware(self.worker.metrics.http_requests)])
        app.router.add_get("/members/{member_id}/sales", self._handler(members.member_sales, models.MemberSales))
        app.router.add_get("/members/{member_id}/products",
                           self._handler(members.member_products, models.MemberProducts))
        return app

    def _handler(self, handler: Callable[..., Awaitable[dict[str, Any]]], model: Any) -> Any:
        worker, settings = self.worker, self.worker.settings

        async def serve(request: web.Request) -> web.StreamResponse:
            member_id = request.match_info["member_id"]
            authorize("read", settings.api_token, settings.read_token, request)
            require_ready(worker)
            owner = self._owner(member_id)
            if owner is not None:  # another worker owns the member: its main port routes as today
                raise web.HTTPTemporaryRedirect(str(request.rel_url.with_scheme("http").with_host(owner[0])
                                                    .with_port(owner[1])))

            async def answer() -> dict[str, Any]:
                with worker.learning:  # between two of the learner's slices, never inside one
                    return await handler(worker, request, member_id=member_id)

            result = await retried(answer)
            model.model_validate(result)  # the documented contract holds, or this is a 500
            return json_answer(result)

        return serve

    def _owner(self, member_id: str) -> tuple[str, int] | None:
        """(host, port) of the worker owning the member's partition when it is not this one."""
        app = self.worker.app
        try:
            url = app.router.key_store(self.worker.member_prefs.name, member_id)
        except KeyError:
            raise HTTPProblem(503, "the member's partition has no owner yet; retry in a moment") from None
        here = app.conf.canonical_url
        if (url.host, url.port) == (here.host, here.port):
            return None
        return str(url.host), int(url.port or 80)

    def start(self, timeout: float = 30.0) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.thread.start()
        if not self.listening.wait(timeout):
            raise RuntimeError(f"the ranking server did not listen on {self.host}:{self.port}: {self.failure!r}")
        log.info("rankings served off the learning path", port=self.port, switch_interval_s=SWITCH_INTERVAL_S)

    def _run(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self.runner = web.AppRunner(self.app(), access_log=None)
            loop.run_until_complete(self.runner.setup())
            loop.run_until_complete(web.TCPSite(self.runner, self.host, self.port).start())
        except BaseException as exc:  # noqa: BLE001 - start() reports it
            self.failure = exc
            return
        self.listening.set()
        loop.run_forever()
        loop.run_until_complete(self.runner.cleanup())
        loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
