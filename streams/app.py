"""The salepulse Faust app: every topic, table and agent of the worker, in one file.

Topology::

    events.browse ─┐
    events.cart  ──┼─ velocity_extract ──> velocity.facts (key sale_id) ─┬─ sale_state ──> velocity.snapshots
    events.order ─┘        │                                            │   (table sale-state, changelog)
                           └─> events.deadletter (bytes + reason)       └─ ClickHouse sink (other process)

- ``velocity_extract`` runs partitioned by member (the producers' key). It decodes, validates, dead-letters bad
  input, and turns each event into facts, sent on as one message per sale and batch. Re-keying by sale here is the
  repartition step: the next stage owns each sale's state on exactly one partition.
- ``sale_state`` owns the per-sale totals and velocity in a changelog-backed table. It counts each source offset once
  (see :class:`streams.velocity.SaleState`), so a crash between the table write and the offset commit is harmless.

Serialization is explicit: every topic carries raw bytes and :mod:`schemas.codec` does the Avro work, so the same
bytes are readable by any Avro client. Exactly-once mode is deliberately off (faust-streaming issues #323, #517):
delivery is at-least-once, made exact by idempotence, and Faust flushes the producer before it commits offsets.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import faust
from aiohttp import web

from schemas.codec import Codec, DecodeError
from schemas.validation import problems
from streams.config import Settings
from streams.logs import get_logger
from streams.metrics import Registry
from streams.velocity import Fact, SaleState, extract_facts, facts_by_sale, to_ms

log = get_logger(__name__)
settings = Settings.from_env()
codec = Codec(settings.schema_registry_url)
metrics = Registry()
events_processed = metrics.counter("salepulse_events_processed_total", "Events decoded and counted.", ["kind"])
events_failed = metrics.counter(
    "salepulse_events_failed_total", "Inputs that failed, by stage (decode, validate).", ["stage"]
)
deadletters_sent = metrics.counter("salepulse_deadletters_total", "Records sent to the dead-letter topic.")
facts_sent = metrics.counter("salepulse_facts_total", "Facts sent to velocity.facts.")
facts_counted = metrics.counter(
    "salepulse_facts_counted_total", "Facts counted into sale state; redelivered ones are not.", ["outcome"]
)

RECORD_KIND = {"BrowseEvent": "browse", "CartEvent": "cart", "OrderEvent": "order"}


def _credentials(security: dict[str, str]) -> Any:
    """Map the librdkafka-style security settings onto Faust's credentials object."""
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol in {"SASL_PLAINTEXT", "SASL_SSL"}:
        ssl_context = None
        if protocol == "SASL_SSL":
            ssl_context = faust.ssl.create_default_context(cafile=security.get("ssl.ca.location"))
        return faust.SASLCredentials(
            username=security.get("sasl.username"),
            password=security.get("sasl.password"),
            mechanism=security.get("sasl.mechanism", "PLAIN"),
            ssl_context=ssl_context,
        )
    if protocol == "SSL":
        context = faust.ssl.create_default_context(cafile=security.get("ssl.ca.location"))
        if security.get("ssl.certificate.location"):
            context.load_cert_chain(security["ssl.certificate.location"], security.get("ssl.key.location"))
        return faust.SSLCredentials(context)
    return None


app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.bootstrap}",
    broker_credentials=_credentials(dict(settings.kafka_security)),
    store="memory://",  # tables are rebuilt from their changelog topics on start
    topic_partitions=settings.partitions,
    key_serializer="raw",
    value_serializer="raw",
    web_port=settings.http_port,
    web_bind=settings.http_host,
    web_host=settings.http_host,
    producer_acks=-1,
    producer_linger_ms=5,
    broker_commit_interval=1.0,
    broker_max_poll_records=2000,
    stream_buffer_maxsize=8192,
    consumer_auto_offset_reset="earliest",
)

events_topic = app.topic(*settings.topics.events, value_type=bytes, key_type=bytes)
facts_topic = app.topic(settings.topics.facts, value_type=bytes, key_type=bytes, partitions=settings.partitions)
snapshots_topic = app.topic(settings.topics.snapshots, value_type=bytes, key_type=bytes)
deadletter_topic = app.topic(settings.topics.deadletter, value_type=bytes, key_type=bytes)

sale_states = app.Table("sale-state", key_type=str, value_type=bytes, partitions=settings.partitions)
"""sale_id -> SaleState as JSON bytes."""

# sale:sku of what changed since the last snapshot tick, per worker.
_dirty: dict[str, set[str]] = {}


def _now_ms() -> int:
    return int(time.time() * 1000)


async def send_deadletter(message: Any, reason: str) -> None:
    record = {
        "event_id": f"{message.topic}:{message.partition}:{message.offset}",
        "source_topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key if isinstance(message.key, bytes) else None,
        "value": message.value if isinstance(message.value, bytes) else bytes(message.value or b""),
        "reason": reason,
        "failed_at": _now_ms(),
    }
    await deadletter_topic.send(key=message.key, value=codec.encode("DeadLetter", record))
    deadletters_sent.inc()
    log.warning("dead-lettered", topic=message.topic, partition=message.partition, offset=message.offset,
                reason=reason)


def decode_event(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode and validate one event; raises DecodeError or ValueError with the reason."""
    name, record = codec.decode(data)
    if name not in RECORD_KIND:
        raise ValueError(f"{name} is not an event (expected BrowseEvent, CartEvent or OrderEvent)")
    found = problems(name, record)
    if found:
        raise ValueError(f"{name} {record.get('event_id', '?')} fails validation: {'; '.join(found)}")
    return name, record


@app.agent(events_topic)
async def velocity_extract(stream: faust.StreamT) -> None:
    """Decode, validate, dead-letter, and forward facts re-keyed by sale."""
    async for events in stream.take_events(2000, within=0.05):
        facts: list[tuple[Fact, str, int]] = []
        kinds: Counter[str] = Counter()
        for event in events:
            message = event.message
            try:
                name, record = decode_event(message.value)
            except DecodeError as exc:
                events_failed.inc(stage="decode")
                await send_deadletter(message, f"decode: {exc}")
                continue
            except ValueError as exc:
                events_failed.inc(stage="validate")
                await send_deadletter(message, f"validate: {exc}")
                continue
            kinds[RECORD_KIND[name]] += 1
            source = f"{message.topic}:{message.partition}"
            facts.extend((fact, source, message.offset) for fact in extract_facts(name, record))
        for kind, count in kinds.items():
            events_processed.inc(count, kind=kind)
        for sale_id, items in facts_by_sale(facts).items():
            first_source, first_offset = items[0][1], items[0][2]
            batch = {
                "event_id": f"{first_source}:{first_offset}:{sale_id}",
                "facts": [
                    {"event_id": f.event_id, "sale_id": f.sale_id, "sku": f.sku, "kind": f.kind, "units": f.units,
                     "revenue": f.revenue, "ts": f.ts_ms, "source": source, "offset": offset}
                    for f, source, offset in items
                ],
            }
            await facts_topic.send(key=sale_id.encode(), value=codec.encode("VelocityFacts", batch))
            facts_sent.inc(len(items))


@app.agent(facts_topic)
async def sale_state(stream: faust.StreamT) -> None:
    """Count facts into the per-sale state; redelivered facts (same source offset) are skipped."""
    async for values in stream.take(500, within=0.05):
        touched: dict[str, SaleState] = {}
        for value in values:
            try:
                _, batch = codec.decode(value)
            except DecodeError as exc:
                # Only velocity_extract writes this topic: a bad record is a bug to see, and must not crash the
                # agent, because Faust commits the offsets of a crashed agent's batch.
                log.error("unreadable facts record skipped", reason=str(exc))
                continue
            sale_id = batch["facts"][0]["sale_id"]  # one message carries one sale's facts
            state = touched.get(sale_id)
            if state is None:
                stored = sale_states.get(sale_id)
                state = touched[sale_id] = SaleState.from_json(json.loads(stored)) if stored else SaleState(sale_id)
            highest: dict[str, int] = {}
            for item in batch["facts"]:
                fact = Fact(item["event_id"], sale_id, item["sku"], item["kind"], item["units"], item["revenue"],
                            to_ms(item["ts"]))
                counted = state.apply(fact, item["source"], item["offset"])
                facts_counted.inc(outcome="counted" if counted else "duplicate")
                if counted:
                    _dirty.setdefault(sale_id, set()).add(fact.sku)
                highest[item["source"]] = max(highest.get(item["source"], -1), item["offset"])
            state.close_offsets(highest)
        for sale_id, state in touched.items():
            sale_states[sale_id] = json.dumps(state.to_json()).encode()


@app.timer(interval=1.0)
async def publish_snapshots() -> None:
    """Send the live state of every (sale, sku) that changed in the last second."""
    if not _dirty:
        return
    dirty = dict(_dirty)
    _dirty.clear()
    for sale_id, skus in dirty.items():
        stored = sale_states.get(sale_id)
        if not stored:
            continue
        state = SaleState.from_json(json.loads(stored))
        for sku in skus:
            totals = state.skus[sku]
            snapshot = {
                "event_id": f"{sale_id}:{sku}:{state.version}",
                "sale_id": sale_id,
                "sku": sku,
                "as_of": totals.last_ms,
                "version": state.version,
                "views": totals.views,
                "carts": totals.carts,
                "orders": totals.orders,
                "units": totals.units,
                "revenue": totals.revenue,
                "velocity_uph": totals.velocity_at(totals.last_ms),
            }
            await snapshots_topic.send(key=f"{sale_id}:{sku}".encode(),
                                       value=codec.encode("VelocitySnapshot", snapshot))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


@app.page("/health")
async def health(_view: faust.web.View, _request: faust.web.Request) -> web.Response:
    return _json({"status": "ok", "time": datetime.now(UTC).isoformat()})


@app.page("/stats")
async def stats(_view: faust.web.View, _request: faust.web.Request) -> web.Response:
    """Counters as JSON: what the demo and the tests read to know the worker has caught up."""
    return _json(
        {
            "events_processed": int(events_processed.total()),
            "events_processed_by_kind": {k[0]: int(v) for k, v in events_processed.values.items()},
            "deadletters": int(deadletters_sent.total()),
            "facts_sent": int(facts_sent.total()),
            "facts_counted": int(facts_counted.get(outcome="counted")),
            "facts_duplicate": int(facts_counted.get(outcome="duplicate")),
        }
    )


@app.page("/metrics")
async def prometheus(_view: faust.web.View, _request: faust.web.Request) -> web.Response:
    return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")
