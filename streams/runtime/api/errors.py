"""The one error handler of the HTTP API: every failure becomes ``{"error": …, "problems"?: […]}`` with its status.

An aiohttp middleware, so it also covers what no view sees: an unknown path (404), a method a path does not
answer (405, with ``Allow``), a refused CORS preflight (403), a body over the server's limit (413), a bug (500).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.metrics import Metric

log = get_logger(__name__)


class HTTPProblem(Exception):
    """Raised by a handler: the status, a message that says what to do, and optionally the itemised problems."""

    def __init__(self, status: int, message: str, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.problems is not None:
            body["problems"] = self.problems
        return body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def error_middleware(requests: Metric) -> Any:
    """The middleware; ``requests`` counts every answer by route and status."""

    @web.middleware
    async def handle_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except HTTPProblem as problem:
            response = web.json_response(problem.body(), status=problem.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            if exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}; allowed: {headers.get('Allow', '')}"
            elif exc.status == 404 and request.match_info.route.resource is None:
                message = f"no endpoint {request.path}; GET /openapi.json lists them"
            response = web.json_response({"error": message}, status=exc.status, headers=headers)
        except Exception as exc:  # a bug: say so as JSON, and log it with the traceback
            log.exception("request failed", path=request.path, error=repr(exc))
            response = web.json_response({"error": "internal error; see the worker log"}, status=500)
        requests.inc(route=_route_label(request), status=str(response.status))
        return response

    return handle_errors
