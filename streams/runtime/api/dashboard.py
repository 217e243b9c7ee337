"""``GET /dashboard`` (the page), its static files, and ``GET /api/dashboard`` (the JSON it polls)."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request

from salepulse.streams.domain.dashboard import dashboard_payload
from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Router

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
router = Router("dashboard")


def static_file(folders: tuple[Path, ...], name: str) -> web.Response:
    """A file directly inside one of ``folders`` (no path escapes), cached for 5 minutes."""
    for folder in folders:
        path = (folder / name).resolve()
        if path.parent == folder.resolve() and path.is_file():
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return web.Response(body=path.read_bytes(), content_type=content_type,
                                headers={"Cache-Control": "max-age=300"})
    raise HTTPProblem(404, f"no static file {name!r}")


@router.get("/api/dashboard", "Dashboard data", response=models.Dashboard, needs_state=False)
async def dashboard_data(worker: Worker, request: Request) -> dict[str, Any]:
    """Everything the dashboard page shows, in one poll."""
    payload = dashboard_payload(worker.board, int(worker.metrics.events_processed.total()),
                                currency=worker.settings.currency)
    return json.loads(json.dumps(payload, default=str))


@router.get("/dashboard", "The live dashboard page", media_type="text/html", needs_state=False)
async def dashboard_page(worker: Worker, request: Request) -> web.Response:
    """An HTML page that polls ``/api/dashboard``."""
    page = WEB_DIR / "dashboard.html"
    if not page.exists():
        raise HTTPProblem(404, "the dashboard page is not installed")
    return web.Response(text=page.read_text(), content_type="text/html")


@router.get("/dashboard/static/{name}", "The dashboard's scripts and styles", media_type="application/octet-stream",
            needs_state=False, errors=(404,))
async def dashboard_static(worker: Worker, request: Request, name: str) -> web.Response:
    """A static file of the dashboard page."""
    return static_file((WEB_DIR, WEB_DIR / "vendor"), name)
