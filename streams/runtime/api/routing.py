"""Routers: each resource declares its endpoints once (path, method, models, query, auth), and that declaration
both serves the request and describes it in ``/openapi.json``.

A handler is ``async def handler(worker, request, **path_params)``; it returns a dict (validated against the
endpoint's response model), a pydantic model, or an aiohttp response (pages, text).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aiohttp import web
from faust.web import Request, View
from pydantic import BaseModel, TypeAdapter

from salepulse.streams.domain import collector
from salepulse.streams.runtime.api.errors import HTTPProblem

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

Handler = Callable[..., Awaitable[Any]]
T = TypeVar("T")
Auth = Literal["write", "read"] | None
"""``write``: SALEPULSE_API_TOKEN; ``read``: SALEPULSE_READ_TOKEN or the write token; None: open."""


@dataclass(frozen=True)
class Query:
    """One integer query parameter: parsed and documented from the same declaration."""

    name: str
    default: int | None
    low: int
    high: int
    description: str = ""

    def parse(self, request: Request) -> int | None:
        raw = request.query.get(self.name)
        if raw is None:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPProblem(400, f"{self.name} must be an integer, got {raw!r}") from None
        if not self.low <= value <= self.high:
            raise HTTPProblem(400, f"{self.name} must be between {self.low} and {self.high}, got {value}")
        return value


@dataclass(frozen=True)
class Text:
    """One required string query parameter."""

    name: str
    example: str
    description: str = ""

    def parse(self, request: Request) -> str:
        value = request.query.get(self.name)
        if not value:
            raise HTTPProblem(400, f"{self.name} is required, e.g. ?{self.name}={self.example}")
        return value


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    response: Any = None
    """The response body's type (a pydantic model or annotation); None for a page or text answer."""
    media_type: str = "application/json"
    status: int = 200
    body: Any = None
    """The request body's type, for JSON bodies."""
    query: tuple[Query | Text, ...] = ()
    auth: Auth = None
    needs_state: bool = True
    role: str | None = None
    """Served only by workers whose role is all or this one (None: every worker)."""
    errors: tuple[int, ...] = ()
    responses: dict[int, Any] = field(default_factory=dict)
    """Error answers whose body has more than the Problem fields, by status (e.g. the collector's 422)."""
    tag: str = ""
    off_loop: bool = False
    """Also served by the read server (``SALEPULSE_SERVING_PORT``, :mod:`salepulse.streams.runtime.serving`): the
    handler answers from kept state any thread may read and hands anything else to the worker's loop
    (:func:`on_loop`)."""
    adapter: TypeAdapter[Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.response is not None and self.media_type == "application/json":
            self.adapter = TypeAdapter(self.response)

    @property
    def description(self) -> str:
        return (self.handler.__doc__ or self.summary).strip()


class Router:
    """The endpoints of one resource; ``auth`` puts every endpoint of the router behind a bearer token."""

    def __init__(self, tag: str, *, role: str | None = None, auth: Auth = None) -> None:
        self.tag, self.role, self.auth = tag, role, auth
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            options.setdefault("role", self.role)
            options.setdefault("auth", self.auth)
            self.endpoints.append(Endpoint(method, path, handler, summary, tag=self.tag, **options))
            return handler

        return register

    def get(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, summary, **options)

    def post(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, summary, **options)


def authorize(auth: Auth, api_token: str | None, read_token: str | None, request: Request) -> None:
    """Writes need the write token; member reads the read token or the write token (when either is set)."""
    tokens = [api_token, read_token] if auth == "read" else [api_token]
    refusal = collector.authorize(request.headers.get("Authorization"), tokens,
                                  "member endpoints" if auth == "read" else "writes")
    if refusal is not None:
        raise HTTPProblem(refusal.status, refusal.body["error"])


RETRY_AFTER = {"Retry-After": "2"}


def require_ready(worker: Worker) -> None:
    """Table-backed answers need partitions assigned, their state rebuilt (velocity workers, see
    ``streams/runtime/handover.py``) and the catalogue loaded; until then say so, with 503 and ``Retry-After``,
    never with partial totals."""
    app = worker.app
    if app.rebalancing or not app.consumer.assignment():
        raise HTTPProblem(503, "the worker is joining its consumer group; retry in a moment", headers=RETRY_AFTER)
    if not worker.catalog_follower.ready.is_set():
        raise HTTPProblem(503, "the worker is still loading the catalogue; retry in a moment", headers=RETRY_AFTER)
    reason = worker.handover.not_ready() if worker.handover is not None else None
    if worker.handover is None and not worker.view_follower.ready.is_set():
        # a preferences worker: cold rankings need every sale's popularity, not the part read so far
        reason = "the worker is still reading the live popularity of every sale (velocity.snapshots)"
    if reason:
        raise HTTPProblem(503, f"{reason}; retry in a moment", headers=RETRY_AFTER)


def served(endpoint: Endpoint, role: str) -> bool:
    return endpoint.role is None or role in ("all", endpoint.role)


def json_answer(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def check(worker: Worker, endpoint: Endpoint, request: Request) -> None:
    """What every port checks before ``endpoint`` answers: the worker's role serves it, the token, readiness."""
    settings = worker.settings
    if not served(endpoint, settings.worker_role):
        raise HTTPProblem(404, f"{endpoint.path} is not served by a SALEPULSE_WORKER_ROLE={settings.worker_role}"
                               f" worker; ask one whose role is all or {endpoint.role}")
    if endpoint.auth:
        authorize(endpoint.auth, settings.api_token, settings.read_token, request)
    if endpoint.needs_state:
        require_ready(worker)


async def answer(worker: Worker, endpoint: Endpoint, request: Request, **params: Any) -> web.StreamResponse:
    """The handler's result as a response; a dict is checked against the endpoint's response model."""
    result = await endpoint.handler(worker, request, **params)
    if isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, BaseModel):
        return json_answer(result.model_dump(mode="json"), endpoint.status)
    if endpoint.adapter is not None:
        endpoint.adapter.validate_python(result)  # the documented contract holds, or this is a 500
    return json_answer(result, endpoint.status)


async def on_loop(worker: Worker, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` on the worker's event loop, which owns the live board: at once when already there (the main
    port), else handed over and awaited (the read server's thread; ``worker.extensions["loop"]`` is set by it)."""
    loop = worker.extensions.get("loop")
    if loop is None or loop is asyncio.get_running_loop():
        return call(*args)

    async def there() -> T:
        return call(*args)

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(there(), loop))


def view_method(worker: Worker, endpoint: Endpoint) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The Faust view method that serves ``endpoint``: role, auth and readiness checks, then the handler, then the
    response model check."""

    async def call(view: View, request: Request, **params: Any) -> web.StreamResponse:
        return await answer(worker, endpoint, request, **params)

    routed = call
    if endpoint.path.startswith("/members/{member_id}") and worker.member_prefs is not None:
        # Answer on the worker that owns the member's partition of member-prefs.
        routed = worker.app.table_route(table=worker.member_prefs, match_info="member_id")(call)

    async def method(view: View, request: Request, **params: Any) -> web.StreamResponse:
        check(worker, endpoint, request)
        return await routed(view, request, **params)

    method.__name__ = endpoint.handler.__name__
    method.__doc__ = endpoint.handler.__doc__
    return method


def mount_routers(worker: Worker, routers: list[Router]) -> list[Endpoint]:
    """One Faust view per path, with a method per endpoint on it."""
    by_path: dict[str, list[Endpoint]] = {}
    for router in routers:
        for endpoint in router.endpoints:
            by_path.setdefault(endpoint.path, []).append(endpoint)
    for path, endpoints in by_path.items():
        methods = {endpoint.method.lower(): view_method(worker, endpoint) for endpoint in endpoints}
        name = "".join(part.strip("{}").title() for part in path.split("/")) or "Root"
        worker.app.page(path, name=name)(type(name, (View,), methods))
    return [endpoint for endpoints in by_path.values() for endpoint in endpoints]
