"""The salepulse Faust app: every topic, table, agent and timer of the worker, in one file.

Topology::

    events.browse ─┐  EventIngest             ┌─> member.signals ── member_preferences ─> member-prefs table
    events.cart  ──┼─ (confluent-kafka thread,┼─> events.deadletter (bytes + reason)       └─ GET /members/{id}/…
    events.order ─┘   key member_id)          └─> velocity.facts (key sale_id) ── sale_state ─┬─> velocity.snapshots
                                                                            (sale-state table) └─> replenishment.alerts
    catalog.sales, forecast.priors, stock.levels ── CatalogFollower (every worker reads all of it)

- :class:`salepulse.streams.ingest.EventIngest` reads the raw events (a confluent-kafka consumer in a thread of this
  worker, see that module for why it is not a Faust agent). It decodes, validates, dead-letters bad input, and sends on
  facts per sale and signals per member partition; it commits its input only once those are acknowledged.
- ``member_preferences`` folds each member's signals into the ``member-prefs`` table (changelog-backed).
- ``sale_state`` owns the per-sale totals and velocity in a changelog-backed table and counts each source offset
  once (see :class:`salepulse.streams.velocity.SaleState`), so a crash between the table write and the offset commit is
  harmless. It feeds the :class:`salepulse.streams.live.LiveBoard`, which forecasts demand and raises alerts.
- ``publish_live_state`` (a timer) sends snapshots of what changed, and re-runs the alert rule as time passes.

Roles (``SALEPULSE_WORKER_ROLE``): ``all`` runs everything above in one process (the demo, the tests). ``velocity``
runs the ingest, ``sale_state`` and the timers; ``preferences`` runs ``member_preferences`` and follows
``velocity.snapshots`` for live popularity (``follow_velocity``). The two workloads then scale separately, each
role with its own consumer group and its own tables; the registration block at the end of this file is the map.

Serialization is explicit: every topic carries raw bytes and :mod:`salepulse.schemas.codec` does the Avro work, so
the same bytes are readable by any Avro client. Exactly-once mode is deliberately off (faust-streaming issues #323,
#517): delivery is at-least-once, made exact by idempotence downstream of every stage.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import traceback
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import Any

import faust
from faust.streams import _current_event

from salepulse.schemas.codec import Codec, DecodeError
from salepulse.streams.bounded import SaleCache
from salepulse.streams.buyer_desk import BuyerDesk
from salepulse.streams.catalog import CatalogFollower
from salepulse.streams.clock import StreamClock
from salepulse.streams.config import Settings
from salepulse.streams.ingest import EventIngest, IngestBatch, facts_of
from salepulse.streams.live import LiveBoard
from salepulse.streams.logs import get_logger
from salepulse.streams.metrics import Registry
from salepulse.streams.poison import dead_letter
from salepulse.streams.preferences import PreferenceModel
from salepulse.streams.velocity import SaleState, SkuTotals, to_ms

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
signals_sent = metrics.counter("salepulse_member_signals_sent_total", "Member signals sent to member.signals.")
signals_learned = metrics.counter("salepulse_member_signals_learned_total",
                                  "Member signals folded into member preferences.")
facts_counted = metrics.counter(
    "salepulse_facts_counted_total", "Facts counted into sale state; redelivered ones are not.", ["outcome"]
)
alerts_sent = metrics.counter("salepulse_alerts_total", "Replenishment alerts sent, by status.", ["status"])
snapshots_sent = metrics.counter("salepulse_snapshots_total", "Velocity snapshots sent.")
consumer_lag = metrics.gauge("salepulse_consumer_lag_messages", "Messages not yet committed, by consumer group.",
                             ["group"])

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
    settings.worker_group,
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
    broker_session_timeout=10.0,  # a crashed worker's partitions move in seconds, not the default minute
    broker_heartbeat_interval=2.0,
    broker_max_poll_records=2000,
    stream_buffer_maxsize=8192,
    consumer_auto_offset_reset="earliest",
)

facts_topic = app.topic(settings.topics.facts, value_type=bytes, key_type=bytes, partitions=settings.partitions)
signals_topic = app.topic(settings.topics.signals, value_type=bytes, key_type=bytes, partitions=settings.partitions)
snapshots_topic = app.topic(settings.topics.snapshots, value_type=bytes, key_type=bytes)
alerts_topic = app.topic(settings.topics.alerts, value_type=bytes, key_type=bytes)
deadletter_topic = app.topic(settings.topics.deadletter, value_type=bytes, key_type=bytes)

# Each role owns only its own tables, so a velocity worker never restores member state and vice versa.
sale_states = (app.Table("sale-state", key_type=str, value_type=bytes, partitions=settings.partitions)
               if settings.counts_velocity else None)
"""sale_id -> SaleState as JSON bytes."""
member_prefs = (app.Table("member-prefs", key_type=str, value_type=bytes, partitions=settings.partitions)
                if settings.learns_preferences else None)
"""member_id -> MemberState bytes (bounded, decayed)."""

catalog_follower = CatalogFollower(
    settings.kafka_config(), list(settings.topics.followed), codec.decode
)
catalog = catalog_follower.catalog
# --- buyer desk (issue 15): pre-sale correction, stocking plans, scorecards --------------------------------------
buyer_desk = BuyerDesk(catalog, settings.plan_cost_ratio, settings.presale_prior_strength)
plans_topic = app.topic(settings.topics.plans, value_type=bytes, key_type=bytes)
outcomes_topic = app.topic(settings.topics.outcomes, value_type=bytes, key_type=bytes)
plans_sent = metrics.counter("salepulse_plans_total", "Stock plan lines sent to stock.plans.")
board = LiveBoard(catalog, alert_probability=settings.alert_probability,
                  clock=StreamClock(skew_ms=int(settings.clock_skew_seconds * 1000)),
                  corrected_prior=buyer_desk.corrected_prior)
preferences = PreferenceModel()

# Decoded SaleState of the sales this worker owns; the table holds the durable copy.
_sale_cache = SaleCache(settings.max_live_sales, settings.max_unknown_sales)
# The last event that carried each cached unknown sale: its table entry is deleted on that event's partition when
# the sale is evicted (bounded by SALEPULSE_MAX_UNKNOWN_SALES, see salepulse.streams.bounded).
_unknown_events: dict[str, faust.EventT] = {}
MEMBER_FLUSH_SECONDS = 15.0


class MemberCache:
    """Recently active members, decoded, with the changes not yet written to the ``member-prefs`` table.

    Writing a member's state on every event doubled the messages the worker produced (one changelog record per
    event) and dominated its time; members are written at most once per ``MEMBER_FLUSH_SECONDS`` instead (a
    member's session is bursty, so most of its events within those seconds share one write). A crash loses at most
    that much preference signal (never an order count: those live in ``sale-state``).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.states: OrderedDict[str, Any] = OrderedDict()
        self.dirty: dict[str, faust.EventT] = {}

    def get(self, member_id: str) -> Any:
        state = self.states.get(member_id)
        if state is not None:
            self.states.move_to_end(member_id)
            return state
        return preferences.load_state(member_prefs.get(member_id), member_id)

    def put(self, member_id: str, state: Any, event: faust.EventT) -> None:
        self.states[member_id] = state
        self.states.move_to_end(member_id)
        self.dirty[member_id] = event
        while len(self.states) > self.size:
            evicted, old = self.states.popitem(last=False)
            if evicted in self.dirty:
                write_table(member_prefs, evicted, old.to_bytes(), self.dirty.pop(evicted))

    def _write_dirty(self) -> Iterator[str]:
        """Write each dirty member to the table, yielding its id after each write."""
        for member_id in list(self.dirty):
            # Popped one at a time: between two writes of flush_yielding, agents may evict (and write) a member or
            # dirty it again.
            event = self.dirty.pop(member_id, None)
            if event is not None:
                write_table(member_prefs, member_id, self.states[member_id].to_bytes(), event)
                yield member_id

    def flush(self) -> int:
        return sum(1 for _ in self._write_dirty())

    async def flush_yielding(self, every: int = 50) -> int:
        """:meth:`flush`, giving the event loop back every ``every`` members: at 5,000 events/s thousands of members
        are dirty, and writing them in one go stalled the agents and the HTTP API for most of a second."""
        written = 0
        for written, _ in enumerate(self._write_dirty(), start=1):
            if written % every == 0:
                await asyncio.sleep(0)
        return written

    def clear(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # partitions already gone: those members are re-read from the changelog
            log.warning("member flush on rebalance failed", error=str(exc), members=len(self.dirty))
        self.states.clear()


members = MemberCache(settings.max_members)  # SALEPULSE_MAX_MEMBERS
# Highest offset handled per "topic:partition", whatever the commits say: how tests and the demo know the worker has
# caught up (Faust's commits can trail; see the README's known issues).
processed_offsets: dict[str, int] = {}
# (sale_id, sku) changed since the last snapshot tick.
_dirty: set[tuple[str, str]] = set()


@app.task
async def start_catalog() -> None:
    catalog_follower.start()


@app.on_partitions_revoked.connect
async def _forget_cached_sales(*_args: Any, **_kwargs: Any) -> None:
    """Partitions may move: re-read state from the tables rather than trust a cached copy."""
    _sale_cache.clear()
    _unknown_events.clear()
    members.clear()


def write_table(table: faust.Table, key: str, value: bytes | None, event: faust.EventT) -> None:
    """Write ``table[key]`` (delete it when ``value`` is None) as if inside ``event``'s iteration.

    Faust sends the changelog record to the partition of the *current* event. Agents here work on batches, so the
    current event is set explicitly to the event that carried ``key`` (same key, same partition), which keeps
    every key's changelog on its own partition and recovery correct after a rebalance.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    finally:
        _current_event.reset(token)


def _now_ms() -> int:
    return int(time.time() * 1000)


def die_without_commit(agent: str, exc: BaseException) -> None:
    """Stop the process at once, without committing offsets.

    When an agent raises, Faust restarts the agent and acknowledges the batch it was in, so the next commit would
    skip events that were never counted. Bad input never gets here (it is dead-lettered); a bug or an
    infrastructure error does, and then the only at-least-once answer is to exit and let the supervisor restart
    the worker from its last commit (the stages downstream drop what they have already counted).
    """
    log.critical("agent failed; exiting without committing", agent=agent, error=repr(exc),
                 traceback="".join(traceback.format_exception(exc)))
    os._exit(70)


def _ingested(batch: IngestBatch) -> None:
    """Called by the ingest thread after each batch: counters for /stats and /metrics."""
    for (topic, partition), offset in batch.last_offsets.items():
        processed_offsets[f"{topic}:{partition}"] = offset
    for kind, count in batch.kinds.items():
        events_processed.inc(count, kind=kind)
    for stage, count in batch.failures.items():
        events_failed.inc(count, stage=stage)
    deadletters_sent.inc(len(batch.deadletters))
    facts_sent.inc(batch.facts_count)
    signals_sent.inc(batch.signals_count)


_ingest_stop = threading.Event()


def _run_ingest() -> None:
    try:
        EventIngest(settings, codec, group_id=f"{settings.app_id}-ingest", on_batch=_ingested).run(_ingest_stop)
    except Exception as exc:
        die_without_commit("ingest", exc)


_ingest_thread = threading.Thread(target=_run_ingest, name="ingest", daemon=True)


async def start_ingest() -> None:
    _ingest_thread.start()


@app.on_before_shutdown.connect
async def _stop_ingest(*_args: Any, **_kwargs: Any) -> None:
    """Let the ingest commit what it delivered before the process goes."""
    _ingest_stop.set()
    if _ingest_thread.is_alive():
        await asyncio.to_thread(_ingest_thread.join, 30)


def preference_update(signal: dict[str, Any]) -> dict[str, Any]:
    """A MemberSignal as the preference model reads it, with the brand, category and list price of the catalogue."""
    product = catalog.products.get((signal["sale_id"], signal["sku"]))
    sale = catalog.sales.get(signal["sale_id"])
    return {
        "member_id": signal["member_id"], "sale_id": signal["sale_id"], "sku": signal["sku"],
        "brand": sale.brand if sale else None, "category": product.category if product else None,
        "price": signal["unit_price"] or (product.price if product else None), "kind": signal["kind"],
        "quantity": signal["quantity"], "action": signal["action"], "ts": to_ms(signal["ts"]),
    }


async def member_preferences(stream: faust.StreamT) -> None:
    """Fold member signals into the member-prefs table (through the cache, written at most every 2 s per member).

    One message carries a whole ingest batch's signals for a partition (hundreds, ~30 µs each), so the loop is given
    back every ``LEARN_SLICE`` signals: ranking requests and the other agents must not wait behind a message.
    """
    async for events in stream.take_events(4, within=0.02):
        try:
            for event in events:
                failure = await learn(event)
                if failure:
                    await send_dead_letters("member_preferences", [(event, failure)])
        except Exception as exc:
            die_without_commit("member_preferences", exc)


LEARN_SLICE = 64


async def learn(event: faust.EventT) -> str | None:
    """Fold one MemberSignals message in; returns why some of it could not be learned (to dead-letter), if so.

    A signal that fails is skipped and the rest of the message is learned: only the ingest writes this topic, so
    a failure is a bug or a record produced around the ingest's guards, and neither may stop the agent.
    """
    message = event.message
    processed_offsets[f"{message.topic}:{message.partition}"] = message.offset
    try:
        _, batch = codec.decode(event.value, timestamps="ms")
    except DecodeError as exc:
        return f"decode: {exc}"
    failures: list[str] = []
    for count, signal in enumerate(batch["signals"], start=1):
        try:
            member_id = signal["member_id"]
            members.put(member_id, preferences.update(members.get(member_id), preference_update(signal)), event)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{type(exc).__name__}: {exc}")
        if count % LEARN_SLICE == 0:
            await asyncio.sleep(0)
    signals_learned.inc(len(batch["signals"]) - len(failures))
    if failures:
        return f"{len(failures)} of {len(batch['signals'])} signals not learned; first: {failures[0]}"
    return None


def _load_sale(sale_id: str) -> SaleState:
    """The sale's state: cached, else from the table. Only sales the catalogue knows reach the live board."""
    known = sale_id in catalog.sales
    state = _sale_cache.get(sale_id)
    if state is None:
        stored = sale_states.get(sale_id)
        state = SaleState.from_json(json.loads(stored)) if stored else SaleState(sale_id)
        _sale_cache.put(sale_id, state, known=known)
        if known:
            _restore_board(state)
    elif known and _sale_cache.mark_known(sale_id):  # counted before the catalogue had read the sale
        _promote(state)
    return state


def _restore_board(state: SaleState) -> None:
    for sku, totals in state.skus.items():
        board.restore(state.sale_id, sku, totals)


def _promote(state: SaleState) -> None:
    """A sale counted while the catalogue did not know it is known now: its totals join the live board."""
    _unknown_events.pop(state.sale_id, None)
    _restore_board(state)
    _dirty.update((state.sale_id, sku) for sku in state.skus)  # their snapshots were never sent


def promote_catalogued_sales() -> None:
    """Called each tick: the catalogue follower and the ingest race, so a sale's first facts can arrive before the
    sale itself; without this its totals would reach the board only with its next fact."""
    for sale_id in [s for s in _sale_cache.unknown if s in catalog.sales]:
        state = _sale_cache.get(sale_id)
        if state is not None and _sale_cache.mark_known(sale_id):
            _promote(state)


async def sale_state(stream: faust.StreamT) -> None:
    """Count facts into the per-sale state; redelivered facts (same source offset) and retried orders and carts
    (same kind, event id and sku) are skipped; a message that fails is dead-lettered, and counting goes on."""
    async for events in stream.take_events(100, within=0.02):
        try:
            failed = count_batch(events)
            await send_dead_letters("sale_state", failed)
        except Exception as exc:
            die_without_commit("sale_state", exc)


async def send_dead_letters(stage: str, failed: list[tuple[faust.EventT, str]]) -> None:
    """Dead-letter messages an agent could not process (bounded excerpt, hash, stage, reason); see poison.py."""
    for event, reason in failed:
        message = event.message
        record = dead_letter(message.topic, message.partition, message.offset, message.key, event.value, stage,
                             reason, _now_ms())
        log.error("dead-lettered", stage=stage, topic=message.topic, partition=message.partition,
                  offset=message.offset, reason=record["reason"])
        await deadletter_topic.send(key=record["key"], value=codec.encode("DeadLetter", record))
        deadletters_sent.inc()
        events_failed.inc(stage=stage)


def count_batch(events: list[faust.EventT]) -> list[tuple[faust.EventT, str]]:
    """One batch of facts messages into the sale states, then one table write per sale touched; returns the
    messages that could not be counted, with the reason (the caller dead-letters them)."""
    touched: dict[str, tuple[faust.EventT, SaleState]] = {}
    outcomes: Counter[bool] = Counter()
    failed: list[tuple[faust.EventT, str]] = []
    for event in events:
        source = f"{event.message.topic}:{event.message.partition}"
        processed_offsets[source] = max(processed_offsets.get(source, -1), event.message.offset)
        try:
            # Only the ingest writes this topic, so a failure here is a bug or a record produced around it; it
            # must not crash the agent either way, because Faust commits the offsets of a crashed agent's batch.
            _, batch = codec.decode(event.value, timestamps="ms")
            sale_id = batch["sale_id"]  # one message carries one sale's facts
            facts = facts_of(batch)
            state = _load_sale(sale_id)
        except Exception as exc:  # noqa: BLE001
            failed.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        known = sale_id not in _sale_cache.unknown
        touched[sale_id] = (event, state)
        if not known:
            _unknown_events[sale_id] = event
        highest: dict[str, int] = {}
        for fact, source, offset in facts:
            counted = state.apply(fact, source, offset, settings.sale_dedup_ids)
            outcomes[counted] += 1
            if counted and known:
                _observe(state.skus[fact.sku], fact)
                _dirty.add((sale_id, fact.sku))
            highest[source] = max(highest.get(source, -1), offset)
        state.close_offsets(highest)
    facts_counted.inc(outcomes[True], outcome="counted")
    facts_counted.inc(outcomes[False], outcome="duplicate")
    for sale_id, (event, state) in touched.items():
        write_table(sale_states, sale_id, json.dumps(state.to_json()).encode(), event)
    for sale_id, unknown in _sale_cache.evict():
        if unknown and sale_id in _unknown_events:  # made-up or never-catalogued sale: gone for good
            write_table(sale_states, sale_id, None, _unknown_events.pop(sale_id))
    return failed


def _observe(totals: SkuTotals, fact: Any) -> None:
    """The live board's forecast of a counted fact; if it fails (a value the guards did not foresee), the count
    stands and only that forecast update is lost."""
    try:
        board.observe(totals, fact)
    except Exception as exc:  # noqa: BLE001
        log.error("forecast update skipped", sale_id=fact.sale_id[:200], sku=fact.sku[:200], error=repr(exc)[:300])


_ticks = 0


async def flush_members() -> None:
    await members.flush_yielding()


async def measure_lag() -> None:
    """Lag of this worker's groups and of the sink's, for /metrics (admin calls run off the event loop)."""
    from salepulse.streams.lag import group_lag

    topics = settings.topics
    own = [topics.facts] if settings.counts_velocity else [topics.snapshots]
    groups = [(settings.worker_group, own + ([topics.signals] if settings.learns_preferences else []))]
    if settings.counts_velocity:
        groups += [(f"{settings.app_id}-ingest", list(topics.events)),
                   ("salepulse-sink", [topics.facts, topics.snapshots, topics.alerts])]
    for group, names in groups:
        try:
            consumer_lag.set(await asyncio.to_thread(group_lag, settings, group, names), group=group)
        except Exception as exc:  # the broker may be busy; the next tick tries again
            log.warning("lag measurement failed", group=group, error=str(exc))


@app.task
async def widen_producer_buffer() -> None:
    """Faust flushes its producer buffer every 100 messages, one await each; batches here send thousands."""
    app.producer.buffer.max_messages = 10_000


async def publish_live_state() -> None:
    """Snapshots of what changed in the last second; the alert rule for those, and for every open sale each 5 s.

    Forecasts move with time even when nothing sells, so the rule must also run on a clock, not only on events.
    """
    global _ticks
    _ticks += 1
    promote_catalogued_sales()
    dirty = set(_dirty)
    _dirty.clear()
    # Data errors (a value no guard foresaw) skip that (sale, sku) for this tick; a send the broker refuses is
    # infrastructure and still stops the worker.
    for count, (sale_id, sku) in enumerate(dirty, start=1):
        try:
            value = codec.encode("VelocitySnapshot", board.snapshot(sale_id, sku))
        except Exception as exc:  # noqa: BLE001
            _tick_failed("snapshot", sale_id, sku, exc)
            continue
        await snapshots_topic.send(key=f"{sale_id}:{sku}".encode(), value=value)
        snapshots_sent.inc()
        if count % 200 == 0:
            await asyncio.sleep(0)  # keep the HTTP API and the agents responsive during a big tick
    to_check = dirty
    try:
        board.sample_velocity()
        if _ticks % 5 == 0:
            to_check = dirty | set(board.open_active())
            _sale_cache.drop(board.finish_ended_sales())
    except Exception as exc:  # noqa: BLE001
        _tick_failed("clock work", "*", "*", exc)
    if _ticks % 5 == 0:
        await publish_buyer_desk()
    for count, (sale_id, sku) in enumerate(to_check, start=1):
        if count % 200 == 0:
            await asyncio.sleep(0)
        try:
            alert = board.check_alert(sale_id, sku)
            value = None if alert is None else codec.encode("ReplenishmentAlert", alert)
        except Exception as exc:  # noqa: BLE001
            _tick_failed("alert rule", sale_id, sku, exc)
            continue
        if alert is not None:
            await alerts_topic.send(key=f"{sale_id}:{sku}".encode(), value=value)
            alerts_sent.inc(status=alert["status"])
            log.info("replenishment alert", alert_id=alert["alert_id"], status=alert["status"],
                     severity=alert["severity"], reason=alert["reason"])


def _tick_failed(work: str, sale_id: str, sku: str, exc: BaseException) -> None:
    log.error("live state work skipped", work=work, sale_id=sale_id[:200], sku=sku[:200], error=repr(exc)[:300])


async def publish_buyer_desk() -> None:
    """Outcomes of the sales that ended here (what every worker's desk learns), then the plans that changed."""
    outcomes, board.finished_outcomes = board.finished_outcomes, []
    for record in outcomes:
        await outcomes_topic.send(key=f"{record['sale_id']}:{record['sku']}".encode(),
                                  value=codec.encode("ForecastOutcome", record))
    for count, record in enumerate(buyer_desk.plans_due(board.stream_ms, _now_ms()), start=1):
        await plans_topic.send(key=f"{record['sale_id']}:{record['sku']}".encode(),
                               value=codec.encode("StockPlan", record))
        plans_sent.inc()
        if count % 200 == 0:
            await asyncio.sleep(0)


async def follow_velocity(stream: faust.StreamT) -> None:
    """A preferences-only worker learns live popularity (cold start, "trending") from the velocity snapshots."""
    async for value in stream:
        try:
            _, snapshot = codec.decode(value, timestamps="ms")
            totals = SkuTotals(views=snapshot["views"], carts=snapshot["carts"], orders=snapshot["orders"],
                               units=snapshot["units"], revenue=snapshot["revenue"],
                               rate_uph=snapshot["velocity_uph"], rate_ms=snapshot["as_of"],
                               last_ms=snapshot["as_of"])
            board.restore(snapshot["sale_id"], snapshot["sku"], totals)
        except Exception as exc:  # noqa: BLE001 - one unreadable snapshot costs that snapshot, not the worker
            log.error("snapshot skipped", error=repr(exc)[:300])


# --- what this worker runs, by role (SALEPULSE_WORKER_ROLE) -----------------------------------------------------
if settings.counts_velocity:
    app.task(start_ingest)
    app.agent(facts_topic, name="sale_state")(sale_state)
    app.timer(interval=1.0)(publish_live_state)
if settings.learns_preferences:
    app.agent(signals_topic, name="member_preferences")(member_preferences)
    app.timer(interval=MEMBER_FLUSH_SECONDS)(flush_members)
if not settings.counts_velocity:
    app.agent(snapshots_topic, name="follow_velocity")(follow_velocity)
app.timer(interval=10.0)(measure_lag)

from salepulse.streams import buyer_views, views  # noqa: E402,F401,I001  - register the HTTP views (buyer_views: issue 15)
