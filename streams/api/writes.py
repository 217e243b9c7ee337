"""``POST /events`` (the site and app collector) and ``POST /forecasts`` (buyers' expert forecasts).

Both sit behind the bearer token when ``SALEPULSE_API_TOKEN`` is set (declared once, on the router), and answer
202 only once every accepted record is acknowledged by Kafka. Topics, keys and records come from
:data:`salepulse.streams.topology.ROUTES`, as for every other producer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from faust.web import Request

from salepulse.schemas.json_input import parse_event, parse_forecast
from salepulse.streams.api import models
from salepulse.streams.api.body import json_body, parse_each
from salepulse.streams.api.errors import HTTPProblem
from salepulse.streams.api.routing import Router
from salepulse.streams.topology import route

if TYPE_CHECKING:
    from salepulse.streams.worker import Worker

events = Router("events", auth=True)
forecasts = Router("forecasts", auth=True)


async def produce(worker: Worker, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Send ``(kind, record)`` items, in order, through the worker's Faust producer; wait for every ack."""
    sends = []
    for kind, record in items:
        spec = route(kind)
        topic = worker.output_topic(spec.topic(worker.settings.topics))
        sends.append(await topic.send(key=spec.key(record).encode(), value=worker.codec.encode(spec.record, record)))
    await asyncio.gather(*sends)


@events.post("/events", "Post one event or a list of them", body=models.EventsIn, response=models.EventsAccepted,
             status=202, needs_state=False, errors=(400, 401, 413))
async def post_events(worker: Worker, request: Request) -> dict[str, Any]:
    """One JSON event or a list of them: valid ones are produced, each invalid one is named with why."""
    body = await json_body(request, worker.settings.max_body_bytes)
    parsed, refused = parse_each(body, parse_event, id_field="event_id")
    # 202 means stored: every accepted event is acknowledged by the broker before the answer goes out.
    await produce(worker, parsed)
    accepted = len(parsed)
    worker.metrics.collector_events.inc(accepted, outcome="accepted")
    worker.metrics.collector_events.inc(len(refused), outcome="refused")
    if refused and not accepted:
        raise HTTPProblem(400, f"all {len(refused)} events were refused", refused)
    return {"accepted": accepted, "refused": refused}


@forecasts.post("/forecasts", "Post a buyer's forecast or a list of them", body=models.ForecastsIn,
                response=models.ForecastsAccepted, status=202, needs_state=False, errors=(400, 401, 413))
async def post_forecasts(worker: Worker, request: Request) -> dict[str, Any]:
    """A buyer's forecast (or a list): all valid or none applied, like the CSV loader."""
    records, refused = parse_each(await json_body(request, worker.settings.max_body_bytes), parse_forecast)
    if refused:
        raise HTTPProblem(400, f"{len(refused)} of {len(records) + len(refused)} forecasts are invalid; "
                               "none was applied", refused)
    await produce(worker, [("prior", record) for record in records])
    return {"accepted": len(records)}
