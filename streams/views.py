"""The worker's HTTP API, on the Faust web server (default port 6066).

Reads: ``/health``, ``/stats``, ``/metrics``, ``/sales``, ``/sales/{sale_id}``, ``/members/{id}/sales``,
``/members/{id}/products``, ``/api/dashboard``, ``/dashboard``.
Writes: ``POST /events`` (the site and app collector), ``POST /forecasts`` (buyers' expert forecasts). With
``SALEPULSE_API_TOKEN`` set, writes need ``Authorization: Bearer <token>``. Bodies over
``SALEPULSE_MAX_BODY_BYTES`` get 413. Errors are JSON ``{"error": …, "problems": [...]}`` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import mimetypes
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from faust.web import Request, Response, View

from salepulse.consumers.publish import ROUTES, Publisher
from salepulse.streams import collector
from salepulse.streams.app import (
    _sale_cache,
    alerts_sent,
    app,
    board,
    catalog,
    catalog_follower,
    codec,
    deadletters_sent,
    events_processed,
    facts_counted,
    facts_sent,
    member_prefs,
    members,
    metrics,
    preferences,
    processed_offsets,
    settings,
    signals_learned,
    signals_sent,
)
from salepulse.streams.dashboard import dashboard_payload
from salepulse.streams.live import ms_to_dt
from salepulse.streams.logs import get_logger
from salepulse.streams.preferences import ProductCandidates, SaleCandidates

log = get_logger(__name__)
WEB_DIR = Path(__file__).parent / "web"
for _warning in collector.security_warnings(settings.api_token, settings.read_token, settings.http_host):
    log.warning(f"SECURITY: {_warning}")
http_requests = metrics.counter("salepulse_http_requests_total", "HTTP requests, by route and status.",
                                ["route", "status"])
collector_events = metrics.counter("salepulse_collector_events_total", "Events posted, by outcome.", ["outcome"])


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems


def _authorize(request: Request, reading: bool = False) -> None:
    """Writes need the write token; member reads the read token or the write token (when either is set)."""
    tokens = [settings.api_token, settings.read_token] if reading else [settings.api_token]
    refusal = collector.authorize(request.headers.get("Authorization"), tokens,
                                  "member endpoints" if reading else "writes")
    if refusal is not None:
        raise HTTPProblem(refusal.status, refusal.body["error"])


async def _body(request: Request) -> bytes:
    """The request body, read at most ``max_body_bytes`` far whatever Content-Length says (chunked, gzip)."""
    refusal = collector.content_type_problem(request.headers.get("Content-Type"))
    if refusal is not None:
        raise HTTPProblem(refusal.status, refusal.body["error"])
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise HTTPProblem(413, f"body of {request.content_length} bytes is over the {limit}-byte limit; "
                               "send smaller batches")
    chunks, size = [], 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise HTTPProblem(413, f"body is over the {limit}-byte limit; send smaller batches")
            chunks.append(chunk)
    except HTTPProblem:
        raise
    except Exception as exc:  # a broken gzip stream or a connection cut mid-body: the caller's input, not ours
        raise HTTPProblem(400, f"body could not be read: {type(exc).__name__}") from None
    return b"".join(chunks)


_publisher: Publisher | None = None


def _collector_publisher() -> Publisher:
    """The collector's one idempotent producer (``enable.idempotence``, so ``acks=all``), made on first use."""
    global _publisher
    if _publisher is None:
        _publisher = Publisher(settings, codec, **{"linger.ms": 2, "acks": "all"})
    return _publisher


Outgoing = tuple[str, bytes, str, list[tuple[str, bytes]] | None]
"""(topic, encoded value, key, Kafka headers)"""


async def _store(items: list[Outgoing]) -> None:
    """Produce every item and wait until the broker acknowledged all of them; 503 (retry) if it did not."""
    publisher = _collector_publisher()
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for topic, value, key, headers in items:
        publisher.send_raw(topic, value, key, headers=headers, on_delivery=delivered)
    remaining = await asyncio.get_running_loop().run_in_executor(None, publisher.producer.flush, 30.0)
    if remaining or errors:
        log.error("collector: broker did not acknowledge", undelivered=remaining, errors=errors[:3])
        raise HTTPProblem(503, "the broker did not acknowledge every event; retry the request (it is safe: "
                               "events already stored are recognised by their event_id)")


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise HTTPProblem(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _require_ready() -> None:
    """Table-backed answers need partitions assigned and the catalogue loaded; until then say so, with 503."""
    if app.rebalancing or not app.consumer.assignment():
        raise HTTPProblem(503, "the worker is joining its consumer group; retry in a moment")
    if not catalog_follower.ready.is_set():
        raise HTTPProblem(503, "the worker is still loading the catalogue; retry in a moment")


def handled(route: str, needs_state: bool = True, served: bool = True, reading: bool = False) -> Any:
    """Turn :class:`HTTPProblem` into a JSON error response and count every answer by status.

    ``served`` is False for a route this worker's role does not answer (a 404 that names the role that does).
    ``reading`` routes (member data) check the read token first, before any routing to the member's worker.
    """

    def wrap(fun: Any) -> Any:
        async def inner(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                if not served:
                    raise HTTPProblem(404, f"{route} is not served by a SALEPULSE_WORKER_ROLE="
                                           f"{settings.worker_role} worker; ask one whose role is all or "
                                           f"{'preferences' if route.startswith('/members') else 'velocity'}")
                if reading:
                    _authorize(request, reading=True)
                if needs_state:
                    _require_ready()
                response = await fun(view, request, *args, **kwargs)
            except HTTPProblem as problem:
                body: dict[str, Any] = {"error": problem.message}
                if problem.problems is not None:
                    body["problems"] = problem.problems
                response = view.json(body, status=problem.status)
            http_requests.inc(route=route, status=str(response.status))
            return response

        inner.__name__ = fun.__name__
        inner.__doc__ = fun.__doc__
        return inner

    return wrap


def _dumps(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        try:
            _require_ready()
            ready, detail = True, "ready"
        except HTTPProblem as problem:
            ready, detail = False, problem.message
        return self.json({"status": "ok", "ready": ready, "detail": detail, "time": datetime.now(UTC).isoformat()})


@app.page("/stats")
class Stats(View):
    """Counters as JSON: what the demo and the tests read to know the worker has caught up."""

    async def get(self, request: Request) -> Response:
        return self.json({
            "events_processed": int(events_processed.total()),
            "events_processed_by_kind": {k[0]: int(v) for k, v in events_processed.values.items()},
            "deadletters": int(deadletters_sent.total()),
            "facts_sent": int(facts_sent.total()),
            "facts_counted": int(facts_counted.get(outcome="counted")),
            "facts_duplicate": int(facts_counted.get(outcome="duplicate")),
            "signals_sent": int(signals_sent.total()),
            "signals_learned": int(signals_learned.total()),
            "alerts": {k[0]: int(v) for k, v in alerts_sent.values.items()},
            "processed_offsets": processed_offsets,
            "open_sales": len(catalog.open_sales(board.stream_ms)) if board.stream_ms else 0,
            "stream_time": _stream_time(),
            # Poison-proofing (streams/clock.py, streams/bounded.py): event times too far ahead to be "now",
            # catalogue records skipped, sales kept in memory.
            "clock_ignored": board.clock.ignored,
            "catalog_rejected": catalog.rejected,
            "sales_cached": len(_sale_cache),
        })


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.text(metrics.render(), content_type="text/plain; version=0.0.4")


@app.page("/sales")
class Sales(View):
    @handled("/sales", served=settings.counts_velocity)
    async def get(self, request: Request) -> Response:
        """Open sales at stream time, with units, velocity, forecast band and open alerts."""
        return self.json({"stream_time": _stream_time(), "sales": _dumps(board.sales_view())})


@app.page("/sales/{sale_id}")
class SaleDetail(View):
    @handled("/sales/{sale_id}", served=settings.counts_velocity)
    async def get(self, request: Request, sale_id: str) -> Response:
        view = board.sale_view(sale_id)
        if view is None:
            raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue; GET /sales lists the open ones")
        return self.json(_dumps(view))


def _stream_time() -> str | None:
    return ms_to_dt(board.stream_ms).isoformat() if board.stream_ms else None


def _now_ms() -> int:
    """Stream time when events flow (replays and simulations run on their own clock), else wall time."""
    return board.stream_ms or int(time.time() * 1000)


_candidate_cache: dict[tuple[str, ...], tuple[Any, Any]] = {}


def _static_candidates(key: tuple[str, ...], version: Any, build: Any) -> Any:
    """Catalogue-derived candidate arrays (ids, hashed brands and categories), rebuilt only when they change.

    Building them costs milliseconds for a 5,000-product sale; only popularity and stock change between two
    requests, and those are swapped in per request.
    """
    cached = _candidate_cache.get(key)
    if cached is None or cached[0] != version:
        cached = _candidate_cache[key] = (version, build())
    return cached[1]


def _sale_velocity(sale_id: str, now_ms: int) -> float:
    return sum(board.totals[(sale_id, sku)].velocity_at(now_ms) for sku in board.active.get(sale_id, ()))


def sale_candidates(now_ms: int) -> SaleCandidates:
    open_sales = catalog.open_sales(now_ms)
    open_ids = tuple(sale.sale_id for sale in open_sales)

    def build() -> SaleCandidates:
        return SaleCandidates.from_records([
            {"sale_id": sale.sale_id, "brand": sale.brand, "popularity": 0.0, "starts_at": sale.starts_ms,
             "ends_at": sale.ends_ms,
             "categories": sorted({catalog.products[(sale.sale_id, sku)].category for sku in sale.skus})}
            for sale in open_sales])

    base = _static_candidates(("sales",), (catalog.version, open_ids), build)
    popularity = np.array([_sale_velocity(sale_id, now_ms) for sale_id in open_ids], dtype=np.float64)
    return dataclasses.replace(base, popularity=popularity)


def product_candidates(sale_id: str, now_ms: int) -> ProductCandidates:
    sale = catalog.sales[sale_id]

    def build() -> ProductCandidates:
        products = [catalog.products[(sale_id, sku)] for sku in sale.skus]
        return ProductCandidates.build([p.sku for p in products], [sale.brand] * len(products),
                                       [p.category for p in products], [p.price for p in products],
                                       [0.0] * len(products), stock=[1] * len(products),
                                       sale_id=[sale_id] * len(products))

    base = _static_candidates(("products", sale_id), catalog.version, build)
    popularity, stock = [], []
    for sku in sale.skus:
        totals = board.totals.get((sale_id, sku))
        on_hand = catalog.on_hand(sale_id, sku)
        popularity.append(totals.velocity_at(now_ms) if totals else 0.0)
        stock.append((on_hand - (totals.units if totals else 0)) if on_hand is not None else 1)
    return dataclasses.replace(base, popularity=np.asarray(popularity, dtype=np.float64), stock=np.asarray(stock))


def _ranked(items: list[Any]) -> list[dict[str, Any]]:
    return [{"id": item.id, "score": round(float(item.score), 6), "reason": item.reason, "part": item.part}
            for item in items]


def routed_by_member(fun: Any) -> Any:
    """Answer on the worker that owns the member's partition of ``member-prefs`` (where there is such a table)."""
    return app.table_route(table=member_prefs, match_info="member_id")(fun) if member_prefs is not None else fun


@app.page("/members/{member_id}/sales")
class MemberSales(View):
    @handled("/members/{member_id}/sales", served=settings.learns_preferences, reading=True)
    @routed_by_member
    async def get(self, request: Request, member_id: str) -> Response:
        """The open sales ranked for this member (live popularity for a member never seen)."""
        k = _query_int(request, "k", 10, 1, 500)
        now = _now_ms()
        state = members.get(member_id)
        ranked = preferences.rank_sales(state, sale_candidates(now), k=k, now_ms=now)
        items = [{"sale_id": r["id"], "brand": catalog.sales[r["id"]].brand, "score": r["score"],
                  "reason": r["reason"]} for r in _ranked(ranked)]
        # no "known member" flag and the same shape for anyone: the answer must not reveal who is a member
        return self.json({"member_id": member_id, "items": items})


@app.page("/members/{member_id}/products")
class MemberProducts(View):
    @handled("/members/{member_id}/products", served=settings.learns_preferences, reading=True)
    @routed_by_member
    async def get(self, request: Request, member_id: str) -> Response:
        """The in-stock products of one sale, ranked for this member."""
        sale_id = request.query.get("sale_id")
        if not sale_id:
            raise HTTPProblem(400, "sale_id is required, e.g. ?sale_id=s-12&k=20")
        if sale_id not in catalog.sales:
            raise HTTPProblem(404, f"no sale {sale_id!r} in the catalogue")
        k = _query_int(request, "k", 20, 1, 5000)
        now = _now_ms()
        if not catalog.is_open(sale_id, now):
            raise HTTPProblem(404, f"sale {sale_id!r} is not open now")
        state = members.get(member_id)
        ranked = preferences.rank_products(state, product_candidates(sale_id, now), k=k, now_ms=now)
        # one ranking in two parts: "again" (the member's own items) then "new" (new for you)
        items = [{"sku": r["id"], "score": r["score"], "reason": r["reason"], "part": r["part"]}
                 for r in _ranked(ranked)]
        return self.json({"member_id": member_id, "sale_id": sale_id, "items": items})


@app.page("/events")
class Collector(View):
    @handled("/events", needs_state=False)
    async def post(self, request: Request) -> Response:
        """One JSON event or a list: validated whole, then every valid one stored (see streams/collector.py)."""
        _authorize(request)
        batch = collector.collect_events(
            await _body(request), int(time.time() * 1000), window=settings.event_time_window,
            max_age_ms=int(settings.event_max_age_s * 1000), max_lead_ms=int(settings.event_max_lead_s * 1000))
        items: list[Outgoing] = []
        for event in batch.events:
            route = ROUTES[event.kind]
            try:
                value = codec.encode(route.record, event.record)
            except ValueError as exc:  # validation should have caught it; refuse rather than fail the request
                batch.refused.append({"index": event.index, "event_id": event.record["event_id"],
                                      "problems": [str(exc)[:200]]})
                continue
            items.append((route.topic(settings.topics), value, route.key(event.record), event.headers))
        if items:
            # 2xx means stored: every accepted event is acknowledged by the broker before the answer goes out
            await _store(items)
        collector_events.inc(len(items), outcome="accepted")
        collector_events.inc(len(batch.refused), outcome="refused")
        answer = batch.answer(stored=len(items))
        return self.json(answer.body, status=answer.status)


@app.page("/forecasts")
class Forecasts(View):
    @handled("/forecasts", needs_state=False)
    async def post(self, request: Request) -> Response:
        """A buyer's forecast (or a list): all valid or none applied, like the CSV loader."""
        _authorize(request)
        records, refusal = collector.collect_forecasts(await _body(request), int(time.time() * 1000))
        if refusal is not None:
            raise HTTPProblem(refusal.status, refusal.body["error"], refusal.body.get("problems"))
        route = ROUTES["prior"]
        await _store([(route.topic(settings.topics), codec.encode(route.record, record), route.key(record), None)
                      for record in records])
        return self.json({"accepted": len(records)}, status=202)


@app.page("/api/dashboard")
class DashboardData(View):
    async def get(self, request: Request) -> Response:
        """Everything the dashboard page shows, in one poll."""
        return self.json(_dumps(dashboard_payload(board, int(events_processed.total()), currency=settings.currency)))


@app.page("/dashboard")
class Dashboard(View):
    async def get(self, request: Request) -> Response:
        page = WEB_DIR / "dashboard.html"
        if not page.exists():
            return self.error(404, "the dashboard page is not installed")
        return self.html(page.read_text())


@app.page("/dashboard/static/{name}")
class DashboardStatic(View):
    async def get(self, request: Request, name: str) -> Response:
        for folder in (WEB_DIR, WEB_DIR / "vendor"):
            path = (folder / name).resolve()
            if path.parent == folder.resolve() and path.is_file():
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return self.bytes(path.read_bytes(), content_type=content_type,
                                  headers={"Cache-Control": "max-age=300"})
        return self.error(404, f"no static file {name!r}")

