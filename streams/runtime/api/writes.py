"""``POST /events`` (the site and app collector) and ``POST /forecasts`` (buyers' expert forecasts).

Both sit behind the write token when ``SALEPULSE_API_TOKEN`` is set (declared once, on the routers). The request is
validated whole by the pure :mod:`salepulse.streams.domain.collector`, then every valid record is produced through one
idempotent :class:`~salepulse.consumers.io.publish.Publisher` (routes from
:mod:`salepulse.streams.platform.topology`), and the
answer goes out only once the broker acknowledged them all.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request

from salepulse.consumers.io.acked import AckedBatches, Outgoing
from salepulse.consumers.io.publish import Publisher
from salepulse.streams.domain import collector
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.topology import route
from salepulse.streams.runtime.api import models
from salepulse.streams.runtime.api.body import read_body
from salepulse.streams.runtime.api.errors import HTTPProblem
from salepulse.streams.runtime.api.routing import Router, json_answer

if TYPE_CHECKING:
    from salepulse.streams.runtime.worker import Worker

log = get_logger(__name__)
events = Router("events", auth="write")
forecasts = Router("forecasts", auth="write")
LINGER_MS = 2
"""The producer's ``linger.ms``: a request's messages leave together, and a request waits at most this long."""
ACK_TIMEOUT_S = 30.0


def publisher(worker: Worker) -> AckedBatches:
    """The collector's one idempotent producer (``enable.idempotence``, so ``acks=all``), made on first use, with a
    future per request (:mod:`salepulse.consumers.io.acked`)."""
    made = worker.extensions.get("publisher")
    if made is None:
        producer = Publisher(worker.settings, worker.codec, **{"linger.ms": LINGER_MS, "acks": "all"}).producer
        made = worker.extensions["publisher"] = AckedBatches(producer)
    return made


async def store(worker: Worker, items: list[Outgoing]) -> None:
    """Produce every item and wait until the broker acknowledged all of them; 503 (retry) if it did not."""
    try:
        errors = await asyncio.wait_for(asyncio.wrap_future(publisher(worker).send(items)), ACK_TIMEOUT_S)
    except TimeoutError:
        errors = [f"not acknowledged within {ACK_TIMEOUT_S:.0f} s"]
    if errors:
        log.error("collector: broker did not acknowledge", errors=errors[:3], refused=len(errors))
        raise HTTPProblem(503, "the broker did not acknowledge every event; retry the request (it is safe: "
                               "events already stored are recognised by their event_id)")


@events.post("/events", "Post one event or a list of them", body=models.EventsIn, response=models.EventsAccepted,
             status=202, needs_state=False, errors=(400, 401, 413, 415, 503),
             responses={422: models.EventsRefused})
async def post_events(worker: Worker, request: Request) -> web.Response:
    """One JSON event or a list: validated whole, then every valid one stored (see streams/domain/collector.py)."""
    settings = worker.settings
    batch = collector.collect_events(
        await read_body(request, settings.max_body_bytes), int(time.time() * 1000), window=settings.event_time_window,
        max_age_ms=int(settings.event_max_age_s * 1000), max_lead_ms=int(settings.event_max_lead_s * 1000))
    items: list[Outgoing] = []
    encode, routes = worker.codec.encode, {kind: route(kind) for kind in {event.kind for event in batch.events}}
    topics = {kind: spec.topic(settings.topics) for kind, spec in routes.items()}
    for event in batch.events:
        spec = routes[event.kind]
        try:
            value = encode(spec.record, event.record)
        except ValueError as exc:  # validation should have caught it; refuse rather than fail the request
            batch.refused.append({"index": event.index, "event_id": event.record["event_id"],
                                  "problems": [str(exc)[:200]]})
            continue
        items.append((topics[event.kind], value, spec.key(event.record), event.headers))
    if items:
        # 2xx means stored: every accepted event is acknowledged by the broker before the answer goes out
        await store(worker, items)
    worker.metrics.collector_events.inc(len(items), outcome="accepted")
    worker.metrics.collector_events.inc(len(batch.refused), outcome="refused")
    answer = batch.answer(stored=len(items))
    return json_answer(answer.body, answer.status)


@forecasts.post("/forecasts", "Post a buyer's forecast or a list of them", body=models.ForecastsIn,
                response=models.ForecastsAccepted, status=202, needs_state=False,
                errors=(400, 401, 413, 415, 422, 503))
async def post_forecasts(worker: Worker, request: Request) -> dict[str, Any]:
    """A buyer's forecast (or a list): all valid or none applied, like the CSV loader."""
    settings = worker.settings
    records, refusal = collector.collect_forecasts(await read_body(request, settings.max_body_bytes),
                                                   int(time.time() * 1000))
    if refusal is not None:
        raise HTTPProblem(refusal.status, refusal.body["error"], refusal.body.get("problems"))
    spec = route("prior")
    await store(worker, [(spec.topic(settings.topics), worker.codec.encode(spec.record, record), spec.key(record),
                          None) for record in records])
    return {"accepted": len(records)}
