"""The worker's HTTP API, on the Faust web server (default port 6066): one router per resource, handed the
:class:`~salepulse.streams.runtime.worker.Worker`, never importing a module-level app.

Reads: ``/health``, ``/stats``, ``/metrics``, ``/sales``, ``/sales/{sale_id}``, ``/sales/{sale_id}/plan``,
``/buyers``, ``/buyers/{id}``, ``/members/{id}/sales``, ``/members/{id}/products``, ``/api/dashboard``,
``/dashboard``, ``/dashboard/buyers/{id}``, ``/openapi.json``, ``/docs``.
Writes: ``POST /events`` (the site and app collector), ``POST /forecasts`` (buyers' expert forecasts). With
``SALEPULSE_API_TOKEN`` set, writes need ``Authorization: Bearer <token>``; member reads need it or
``SALEPULSE_READ_TOKEN``. Bodies over
``SALEPULSE_MAX_BODY_BYTES`` get 413. Every error is JSON ``{"error": …, "problems"?: [...]}`` (one handler:
:mod:`salepulse.streams.runtime.api.errors`). Browsers may call from the origins in ``SALEPULSE_CORS_ORIGINS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salepulse.streams.domain import collector
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.runtime.api import buyers, dashboard, docs, members, ops, sales, writes
from salepulse.streams.runtime.api.errors import error_middleware
from salepulse.streams.runtime.api.routing import Router, mount_routers

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

ROUTERS: list[Router] = [sales.router, buyers.router, members.router, writes.events, writes.forecasts, dashboard.router,
                         ops.router, docs.router]
log = get_logger(__name__)


def mount(worker: Worker) -> None:
    """Register every router's endpoints and the error handler on the worker's Faust web server."""
    settings = worker.settings
    for warning in collector.security_warnings(settings.api_token, settings.read_token, settings.http_host):
        log.warning(f"SECURITY: {warning}")
    worker.app.web.web_app.middlewares.append(error_middleware(worker.metrics.http_requests))
    worker.extensions["endpoints"] = mount_routers(worker, ROUTERS)
