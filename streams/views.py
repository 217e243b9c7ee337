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
import hmac
import json
import mimetypes
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from faust.web import Request, Response, View

from salepulse.schemas.json_input import InputError, parse_event, parse_forecast
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
from salepulse.streams.preferences import ProductCandidates, SaleCandidates

WEB_DIR = Path(__file__).parent / "web"
MAX_BATCH = 10_000
EVENT_TOPICS = {kind: app.topic(name, value_type=bytes, key_type=bytes) for kind, name in
                (("browse", settings.topics.browse), ("cart", settings.topics.cart), ("order", settings.topics.order))}
PRIORS_TOPIC = app.topic(settings.topics.priors, value_type=bytes, key_type=bytes)
RECORDS = {"browse": "BrowseEvent", "cart": "CartEvent", "order": "OrderEvent"}
http_requests = metrics.counter("salepulse_http_requests_total", "HTTP requests, by route and status.",
                                ["route", "status"])
collector_events = metrics.counter("salepulse_collector_events_total", "Events posted, by outcome.", ["outcome"])


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems


def _authorize(request: Request) -> None:
    if not settings.api_token:
        return
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not hmac.compare_digest(header[7:], settings.api_token):
        raise HTTPProblem(401, "this endpoint needs 'Authorization: Bearer <SALEPULSE_API_TOKEN>'")


async def _json_body(request: Request) -> Any:
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise HTTPProblem(413, f"body of {length} bytes is over the {settings.max_body_bytes}-byte limit; "
                               f"send smaller batches")
    body = await request.read()
    if len(body) > settings.max_body_bytes:
        raise HTTPProblem(413, f"body is over the {settings.max_body_bytes}-byte limit; send smaller batches")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HTTPProblem(400, f"body is not JSON: {exc}") from None


def _parse_each(body: Any, parse: Any, id_field: str | None = None) -> tuple[list[Any], list[dict[str, Any]]]:
    """Parse one JSON object or a list of them: the parsed ones, and each refused one with its index and problems."""
    rows = body if isinstance(body, list) else [body]
    if len(rows) > MAX_BATCH:
        raise HTTPProblem(413, f"{len(rows)} items in one request; send at most {MAX_BATCH}")
    parsed, refused = [], []
    for index, row in enumerate(rows):
        try:
            parsed.append(parse(row))
        except InputError as error:
            item: dict[str, Any] = {"index": index}
            if id_field:
                item[id_field] = row.get(id_field) if isinstance(row, dict) else None
            refused.append({**item, "problems": error.problems})
    return parsed, refused


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


def handled(route: str, needs_state: bool = True, served: bool = True) -> Any:
    """Turn :class:`HTTPProblem` into a JSON error response and count every answer by status.

    ``served`` is False for a route this worker's role does not answer (a 404 that names the role that does).
    """

    def wrap(fun: Any) -> Any:
        async def inner(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                if not served:
                    raise HTTPProblem(404, f"{route} is not served by a SALEPULSE_WORKER_ROLE="
                                           f"{settings.worker_role} worker; ask one whose role is all or "
                                           f"{'preferences' if route.startswith('/members') else 'velocity'}")
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
    @handled("/members/{member_id}/sales", served=settings.learns_preferences)
    @routed_by_member
    async def get(self, request: Request, member_id: str) -> Response:
        """The open sales ranked for this member (live popularity for a member never seen)."""
        k = _query_int(request, "k", 10, 1, 500)
        now = _now_ms()
        state = members.get(member_id)
        ranked = preferences.rank_sales(state, sale_candidates(now), k=k, now_ms=now)
        items = [{"sale_id": r["id"], "brand": catalog.sales[r["id"]].brand, "score": r["score"],
                  "reason": r["reason"]} for r in _ranked(ranked)]
        return self.json({"member_id": member_id, "known_member": not state.is_cold, "items": items})


@app.page("/members/{member_id}/products")
class MemberProducts(View):
    @handled("/members/{member_id}/products", served=settings.learns_preferences)
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
        return self.json({"member_id": member_id, "sale_id": sale_id, "known_member": not state.is_cold,
                          "items": items})


@app.page("/events")
class Collector(View):
    @handled("/events", needs_state=False)
    async def post(self, request: Request) -> Response:
        """One JSON event or a list of them: valid ones are produced, each invalid one is named with why."""
        _authorize(request)
        events, refused = _parse_each(await _json_body(request), parse_event, id_field="event_id")
        # 202 means stored: every accepted event is acknowledged by the broker before the answer goes out.
        await asyncio.gather(*[
            await EVENT_TOPICS[kind].send(key=record["member_id"].encode(), value=codec.encode(RECORDS[kind], record))
            for kind, record in events
        ])
        accepted = len(events)
        collector_events.inc(accepted, outcome="accepted")
        collector_events.inc(len(refused), outcome="refused")
        if refused and not accepted:
            raise HTTPProblem(400, f"all {len(refused)} events were refused", refused)
        return self.json({"accepted": accepted, "refused": refused}, status=202)


@app.page("/forecasts")
class Forecasts(View):
    @handled("/forecasts", needs_state=False)
    async def post(self, request: Request) -> Response:
        """A buyer's forecast (or a list): all valid or none applied, like the CSV loader."""
        _authorize(request)
        records, refused = _parse_each(await _json_body(request), parse_forecast)
        if refused:
            raise HTTPProblem(400, f"{len(refused)} of {len(records) + len(refused)} forecasts are invalid; "
                                   "none was applied", refused)
        await asyncio.gather(*[
            await PRIORS_TOPIC.send(key=f"{record['sale_id']}:{record['sku']}".encode(),
                                    value=codec.encode("ExpertForecast", record))
            for record in records
        ])
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

