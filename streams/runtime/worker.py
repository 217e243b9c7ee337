"""The salepulse worker: a :class:`Worker` assembled from :class:`Settings` by :func:`build_worker`.

Nothing is built at import. ``salepulse worker`` calls ``build_worker(Settings.from_env()).app.main()``;
``faust -A salepulse.streams.runtime.worker:app`` works too (the module attribute ``app`` is built on first access).

Topology (every name is in :mod:`salepulse.streams.platform.topology`)::

    events.browse ─┐  EventIngest             ┌─> member.signals ── member_preferences ─> member-prefs table
    events.cart  ──┼─ (confluent-kafka thread,┼─> events.deadletter (bytes + reason)       └─ GET /members/{id}/…
    events.order ─┘   key member_id)          └─> velocity.facts (key sale_id) ── sale_state ─┬─> velocity.snapshots
                                                                            (sale-state table) └─> replenishment.alerts
    catalog.sales, forecast.priors, stock.levels ── CatalogFollower (every worker reads all of it)

- :class:`salepulse.streams.io.ingest.EventIngest` reads the raw events (a confluent-kafka consumer in a thread of this
  worker, see that module for why it is not a Faust agent). It decodes, validates, dead-letters bad input, and sends on
  facts per sale and signals per member partition; it commits its input only once those are acknowledged.
- ``member_preferences`` folds each member's signals into the ``member-prefs`` table (changelog-backed).
- ``sale_state`` owns the per-sale totals and velocity in a changelog-backed table and counts each source offset
  once (:func:`salepulse.streams.domain.steps.count`), so a crash between the table write and the offset commit is
  harmless. It feeds the :class:`salepulse.streams.domain.live.LiveBoard`, which forecasts demand and raises alerts.
- ``publish_live_state`` (a timer, :mod:`salepulse.streams.runtime.live_tick`) sends snapshots of what changed, re-runs
  the alert rule as time passes and publishes the buyer desk's outcomes and plans.

Roles (``SALEPULSE_WORKER_ROLE``): ``all`` runs everything above in one process (the demo, the tests). ``velocity``
runs the ingest, ``sale_state`` and the timers; ``preferences`` runs ``member_preferences`` and reads every partition
of ``velocity.snapshots`` for the whole shop's live popularity (the shop-view follower). :meth:`Worker.register` is
the map.

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
from typing import Any

import faust
from faust.streams import _current_event

from salepulse.schemas.codec import Codec, DecodeError
from salepulse.streams.domain.buyer_desk import BuyerDesk
from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.poison import dead_letter
from salepulse.streams.domain.preferences import MemberState, PreferenceModel
from salepulse.streams.domain.shop_view import ShopBoard, ShopView, owns_nothing
from salepulse.streams.domain.steps import MemberCache, count, lag_groups, preference_update
from salepulse.streams.domain.velocity import SaleState, SkuTotals
from salepulse.streams.io.followers import CatalogFollower, TopicFollower
from salepulse.streams.io.ingest import EventIngest, IngestBatch, facts_of
from salepulse.streams.io.lag import group_lag
from salepulse.streams.platform.bounded import SaleCache
from salepulse.streams.platform.clock import StreamClock, wall_ms
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.gc_tuning import PauseWatch, tune_collector
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.runtime import live_tick
from salepulse.streams.runtime.candidates import ChoiceCandidates
from salepulse.streams.runtime.faust_app import faust_app
from salepulse.streams.runtime.handover import Handover
from salepulse.streams.runtime.ingest_process import IngestProcess
from salepulse.streams.runtime.ranker_store import RankerStore, store_path
from salepulse.streams.runtime.worker_metrics import WorkerMetrics

log = get_logger(__name__)

MEMBER_FLUSH_SECONDS = 15.0
LEARN_SLICE = 64
MIN_LEARN_S = 0.002
"""A slice runs this long before it ends for a waiting ranking: ending it at once let steady rankings starve it."""


def write_table(table: faust.Table, key: str | bytes, value: bytes | None, event: faust.EventT) -> None:
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


class Worker:
    """Everything one worker process holds: the Faust app, its topics and tables, caches, the live board, the
    catalogue, the ingest thread and the metrics. Built by :func:`build_worker`; the HTTP routers are handed it."""

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec(settings.schema_registry_url)
        self.metrics = WorkerMetrics()
        self.gc_pauses = PauseWatch()
        self.app = faust_app(settings)
        names = settings.topics
        self.facts_topic = self.app.topic(names.facts, value_type=bytes, key_type=bytes,
                                          partitions=settings.partitions)
        self.signals_topic = self.app.topic(names.signals, value_type=bytes, key_type=bytes,
                                            partitions=settings.partitions)
        self.snapshots_topic = self.app.topic(names.snapshots, value_type=bytes, key_type=bytes)
        self.alerts_topic = self.app.topic(names.alerts, value_type=bytes, key_type=bytes)
        self.deadletter_topic = self.app.topic(names.deadletter, value_type=bytes, key_type=bytes)
        self.plans_topic = self.app.topic(names.plans, value_type=bytes, key_type=bytes)
        self.outcomes_topic = self.app.topic(names.outcomes, value_type=bytes, key_type=bytes)
        # Each role owns only its own tables, so a velocity worker never restores member state and vice versa.
        self.sale_states: faust.Table | None = (
            self.app.Table("sale-state", key_type=str, value_type=bytes, partitions=settings.partitions)
            if settings.counts_velocity else None)
        # Alert sequences and open alerts per sale (issue 12): a sale's next owner continues them.
        self.alert_states: faust.Table | None = (
            self.app.Table("alert-state", key_type=str, value_type=bytes, partitions=settings.partitions)
            if settings.counts_velocity else None)
        # Raw key bytes, not Faust's default JSON for str keys: Faust routes /members/{id} to the owner of
        # murmur2(key bytes), and the ingest puts a member's signals on murmur2(member id) (member_partition).
        # With JSON keys ('"m1"') the two disagreed for 3 members in 4 and a second preferences worker
        # answered them cold.
        self.member_prefs: faust.Table | None = (
            self.app.Table("member-prefs", key_type=bytes, value_type=bytes, partitions=settings.partitions)
            if settings.learns_preferences else None)
        self.catalog_follower = CatalogFollower(settings.kafka_config(), list(names.followed), self.codec.decode)
        self.catalog: Catalog = self.catalog_follower.catalog
        # The buyer desk (issue 15): pre-sale correction, stocking plans, scorecards.
        self.buyer_desk = BuyerDesk(self.catalog, settings.plan_cost_ratio, settings.presale_prior_strength)
        # Whole-shop answers (README, "Scaling out"): the sales this worker owns from its state, the others from
        # the snapshots and alerts their owners publish, which every velocity worker follows. A preferences worker
        # counts no sale: it follows every partition of the snapshots (no group), so its popularity is the whole
        # shop's; a Faust agent in its group read only the partitions it was assigned.
        self.shop_view = ShopView()
        followed = names.shop_view if settings.counts_velocity else (names.snapshots,)
        self.view_follower = TopicFollower(settings.kafka_config(), list(followed),
                                           lambda value: self.codec.decode(value, timestamps="ms"),
                                           self.shop_view, name="shop-view-follower")
        self.handover: Handover | None = Handover(self) if settings.counts_velocity else None
        self.board = ShopBoard(self.catalog, alert_probability=settings.alert_probability,
                               clock=StreamClock(skew_ms=int(settings.clock_skew_seconds * 1000)),
                               corrected_prior=self.buyer_desk.corrected_prior, view=self.shop_view,
                               owns=self.handover.owns if self.handover else owns_nothing)
        self.preferences = PreferenceModel()
        # Carts and orders teach the ranking blends, among the candidates the HTTP ranking would have shown.
        self.choices = ChoiceCandidates(self)
        self.ranker_store = RankerStore(store_path(settings))
        if settings.learns_preferences and self.ranker_store.restore(self.preferences.ranker):
            log.info("ranker weights restored", path=str(self.ranker_store.path))
        self.members: MemberCache[MemberState, faust.EventT] = MemberCache(
            settings.max_members, self._load_member,
            lambda member_id, value, event: write_table(self.member_prefs, member_id.encode(), value, event))
        # Decoded SaleState of the sales this worker owns (bounded, see salepulse.streams.platform.bounded); the
        # table holds
        # the durable copy.
        self.sale_cache = SaleCache(settings.max_live_sales, settings.max_unknown_sales)
        # The last event that carried each cached unknown sale: its table entry is deleted on that event's
        # partition when the sale is evicted (bounded by SALEPULSE_MAX_UNKNOWN_SALES).
        self.unknown_events: dict[str, faust.EventT] = {}
        # Highest offset handled per "topic:partition", whatever the commits say: how tests and the demo know the
        # worker has caught up (Faust's commits can trail; see the README's known issues).
        self.processed_offsets: dict[str, int] = {}
        # (sale_id, sku) changed since the last snapshot tick.
        self.dirty: set[tuple[str, str]] = set()
        self.ticks = 0
        self.extensions: dict[str, Any] = {}
        """State the HTTP routers keep per worker (e.g. the ranking candidates cache), by name."""
        self._output_topics: dict[str, faust.TopicT] = {}
        for name in (*names.events, names.priors):  # what the HTTP writes produce to
            self.output_topic(name)
        self.learning = threading.Lock()
        """Held by the learner while it folds a slice of signals in, and by the ranking server while it ranks."""
        self.readers_waiting = 0
        """Ranking requests waiting for :attr:`learning` (only the serving thread writes it): the learner ends its
        slice once it has run ``MIN_LEARN_S``, so a request waits that and one signal, not a whole slice."""
        self.ranking_server: Any = None
        self._ingest_stop = threading.Event()
        self._ingest_thread = threading.Thread(target=self._run_ingest, name="ingest", daemon=True)
        self._ingest_process: IngestProcess | None = None

    def output_topic(self, name: str) -> faust.TopicT:
        """A Faust topic to produce bytes to (the HTTP writes), made once per name."""
        topic = self._output_topics.get(name)
        if topic is None:
            topic = self._output_topics[name] = self.app.topic(name, value_type=bytes, key_type=bytes)
        return topic

    # --- state access ---------------------------------------------------------------------------------------
    def _load_member(self, member_id: str) -> MemberState:
        stored = self.member_prefs.get(member_id.encode()) if self.member_prefs is not None else None
        return self.preferences.load_state(stored, member_id)

    def load_sale(self, sale_id: str) -> SaleState:
        """The sale's state: cached, else from the table. Only sales the catalogue knows reach the live board."""
        known = sale_id in self.catalog.sales
        state = self.sale_cache.get(sale_id)
        if state is None:
            stored = self.sale_states.get(sale_id)
            state = SaleState.from_json(json.loads(stored)) if stored else SaleState(sale_id)
            self.sale_cache.put(sale_id, state, known=known)
            if known:
                self._restore_board(state)
        elif known and self.sale_cache.mark_known(sale_id):  # counted before the catalogue had read the sale
            self._promote(state)
        return state

    def _restore_board(self, state: SaleState) -> None:
        for sku, totals in state.skus.items():
            self.board.restore(state.sale_id, sku, totals)

    def _promote(self, state: SaleState) -> None:
        """A sale counted while the catalogue did not know it is known now: its totals join the live board."""
        self.unknown_events.pop(state.sale_id, None)
        self._restore_board(state)
        self.dirty.update((state.sale_id, sku) for sku in state.skus)  # their snapshots were never sent

    def promote_catalogued_sales(self) -> None:
        """Called each tick: the catalogue follower and the ingest race, so a sale's first facts can arrive before
        the sale itself; without this its totals would reach the board only with its next fact."""
        for sale_id in [s for s in self.sale_cache.unknown if s in self.catalog.sales]:
            state = self.sale_cache.get(sale_id)
            if state is not None and self.sale_cache.mark_known(sale_id):
                self._promote(state)

    # --- ingest thread -------------------------------------------------------------------------------------
    def _ingested(self, batch: IngestBatch) -> None:
        """Called by the ingest thread after each batch: counters for /stats and /metrics."""
        m = self.metrics
        for (topic, partition), offset in batch.last_offsets.items():
            self.processed_offsets[f"{topic}:{partition}"] = offset
        for kind, n in batch.kinds.items():
            m.events_processed.inc(n, kind=kind)
        for stage, n in batch.failures.items():
            m.events_failed.inc(n, stage=stage)
        m.deadletters_sent.inc(len(batch.deadletters))
        m.facts_sent.inc(batch.facts_count)
        m.signals_sent.inc(batch.signals_count)

    def _run_ingest(self) -> None:
        try:
            EventIngest(self.settings, self.codec, group_id=self.settings.groups.ingest,
                        on_batch=self._ingested).run(self._ingest_stop)
        except Exception as exc:
            die_without_commit("ingest", exc)

    async def start_ingest(self) -> None:
        if self.settings.ingest_process:  # its own interpreter, its own core (salepulse.streams.runtime.ingest_process)
            self._ingest_process = IngestProcess(self.settings, self._ingested, lambda code: die_without_commit(
                "ingest", RuntimeError(f"the ingest process exited with {code}")))
            self._ingest_process.start()
            return
        self._ingest_thread.start()

    async def stop_ingest(self, *_args: Any, **_kwargs: Any) -> None:
        """Let the ingest commit what it delivered before the process goes."""
        if self._ingest_process is not None:
            await asyncio.to_thread(self._ingest_process.stop, 30)
        self._ingest_stop.set()
        if self._ingest_thread.is_alive():
            await asyncio.to_thread(self._ingest_thread.join, 30)

    # --- agents: decode, call a step of salepulse.streams.domain.steps, emit ------------------------------------------
    async def sale_state(self, stream: faust.StreamT) -> None:
        """Count facts into the per-sale state; redelivered facts (same source offset) and retried orders and carts
        (same kind, event id and sku) are skipped; a message that fails is dead-lettered, and counting goes on."""
        async for events in stream.take_events(100, within=0.02):
            try:
                await self.send_dead_letters("sale_state", self.count_batch(events))
            except Exception as exc:
                die_without_commit("sale_state", exc)

    async def send_dead_letters(self, stage: str, failed: list[tuple[faust.EventT, str]]) -> None:
        """Dead-letter messages an agent could not process (bounded excerpt, hash, stage, reason); see poison.py."""
        for event, reason in failed:
            message = event.message
            record = dead_letter(message.topic, message.partition, message.offset, message.key, event.value, stage,
                                 reason, wall_ms())
            log.error("dead-lettered", stage=stage, topic=message.topic, partition=message.partition,
                      offset=message.offset, reason=record["reason"])
            await self.deadletter_topic.send(key=record["key"], value=self.codec.encode("DeadLetter", record))
            self.metrics.deadletters_sent.inc()
            self.metrics.events_failed.inc(stage=stage)

    def count_batch(self, events: list[faust.EventT]) -> list[tuple[faust.EventT, str]]:
        """One batch of facts messages into the sale states, then one table write per sale touched; returns the
        messages that could not be counted, with the reason (the caller dead-letters them)."""
        touched: dict[str, tuple[faust.EventT, SaleState]] = {}
        failed: list[tuple[faust.EventT, str]] = []
        counted = duplicates = 0
        for event in events:
            message = event.message
            source = f"{message.topic}:{message.partition}"
            self.processed_offsets[source] = max(self.processed_offsets.get(source, -1), message.offset)
            try:
                # Only the ingest writes this topic, so a failure here is a bug or a record produced around it; it
                # must not crash the agent either way, because Faust commits the offsets of a crashed agent's batch.
                _, batch = self.codec.decode(event.value, timestamps="ms")
                sale_id = batch["sale_id"]  # one message carries one sale's facts
                facts = facts_of(batch)
                state = self.load_sale(sale_id)
            except Exception as exc:  # noqa: BLE001
                failed.append((event, f"{type(exc).__name__}: {exc}"))
                continue
            known = sale_id not in self.sale_cache.unknown
            touched[sale_id] = (event, state)
            if not known:
                self.unknown_events[sale_id] = event
            result = count(facts, state, self.settings.sale_dedup_ids)
            if known:
                for fact in result.counted:
                    self._observe(state.skus[fact.sku], fact)
                    self.dirty.add((sale_id, fact.sku))
            counted += len(result.counted)
            duplicates += result.duplicates
        self.metrics.facts_counted.inc(counted, outcome="counted")
        self.metrics.facts_counted.inc(duplicates, outcome="duplicate")
        for sale_id, (event, state) in touched.items():
            write_table(self.sale_states, sale_id, json.dumps(state.to_json()).encode(), event)
        for sale_id, unknown in self.sale_cache.evict():
            if unknown and sale_id in self.unknown_events:  # made-up or never-catalogued sale: gone for good
                write_table(self.sale_states, sale_id, None, self.unknown_events.pop(sale_id))
        return failed

    def _observe(self, totals: SkuTotals, fact: Any) -> None:
        """The live board's forecast of a counted fact; if it fails (a value the guards did not foresee), the count
        stands and only that forecast update is lost."""
        try:
            self.board.observe(totals, fact)
        except Exception as exc:  # noqa: BLE001
            log.error("forecast update skipped", sale_id=fact.sale_id[:200], sku=fact.sku[:200],
                      error=repr(exc)[:300])

    async def member_preferences(self, stream: faust.StreamT) -> None:
        """Fold member signals into the member-prefs table (through the cache, written every
        ``MEMBER_FLUSH_SECONDS`` at most per member); a message that fails is dead-lettered.

        One message carries a whole ingest batch's signals for a partition (hundreds, ~30 µs each), so the loop is
        given back every ``LEARN_SLICE`` signals: ranking requests and the other agents must not wait behind it.
        """
        async for events in stream.take_events(4, within=0.02):
            try:
                for event in events:
                    failure = await self.learn(event)
                    if failure:
                        await self.send_dead_letters("member_preferences", [(event, failure)])
            except Exception as exc:
                die_without_commit("member_preferences", exc)

    async def learn(self, event: faust.EventT) -> str | None:
        """Fold one MemberSignals message in; returns why some of it could not be learned (to dead-letter), if so.

        A signal that fails is skipped and the rest of the message is learned: only the ingest writes this topic,
        so a failure is a bug or a record produced around the ingest's guards, and neither may stop the agent.
        """
        message = event.message
        self.processed_offsets[f"{message.topic}:{message.partition}"] = message.offset
        try:
            _, batch = self.codec.decode(event.value, timestamps="ms")
        except DecodeError as exc:
            return f"decode: {exc}"
        members, update, signals, choices = self.members, self.preferences.update, batch["signals"], self.choices
        failures: list[str] = []
        done = 0
        while done < len(signals):
            with self.learning:  # the ranking server (salepulse.streams.runtime.serving) reads between slices only
                began = time.perf_counter()
                for signal in signals[done:done + LEARN_SLICE]:
                    done += 1
                    try:
                        member_id = signal["member_id"]
                        change = preference_update(signal, self.catalog)
                        members.put(member_id, update(members.get(member_id), change, *choices(change)), event)
                    except Exception as exc:  # noqa: BLE001
                        failures.append(f"{type(exc).__name__}: {exc}")
                    if self.readers_waiting and time.perf_counter() - began >= MIN_LEARN_S:
                        break
            await asyncio.sleep(0)
        self.metrics.signals_learned.inc(len(batch["signals"]) - len(failures))
        if failures:
            return f"{len(failures)} of {len(batch['signals'])} signals not learned; first: {failures[0]}"
        return None

    # --- timers and hooks ------------------------------------------------------------------------------------
    async def publish_live_state(self) -> None:
        """The 1 s tick: snapshots, the alert rule, the buyer desk's records (:mod:`.live_tick`)."""
        await live_tick.publish_live_state(self)

    async def flush_members(self) -> None:
        started = time.perf_counter()
        written = await self.members.flush_yielding()
        log.info("members flushed", written=written, seconds=round(time.perf_counter() - started, 3),
                 cached=len(self.members.states))
        self.save_ranker()

    def save_ranker(self, *_args: Any, **_kwargs: Any) -> None:
        """Snapshot the learnt blends (salepulse.streams.runtime.ranker_store); a failed write is retried next time."""
        try:
            self.ranker_store.save(self.preferences.ranker)
        except OSError as exc:
            log.warning("ranker snapshot failed", path=str(self.ranker_store.path), error=str(exc))

    async def measure_lag(self) -> None:
        """Lag of this worker's groups and of the sink's, for /metrics (admin calls run off the event loop)."""
        for group, names in lag_groups(self.settings):
            try:
                lag = await asyncio.to_thread(group_lag, self.settings, group, names)
                self.metrics.consumer_lag.set(lag, group=group)
            except Exception as exc:  # the broker may be busy; the next tick tries again
                log.warning("lag measurement failed", group=group, error=str(exc))

    async def log_collector_pauses(self) -> None:
        """How long the garbage collector held the GIL in the last 10 s, per generation (a read server's requests
        wait behind it; streams/platform/gc_tuning.PauseWatch)."""
        log.info("garbage collections", **{f"gen{gen}": took for gen, took in self.gc_pauses.take().items()})

    async def start_catalog(self) -> None:
        self.catalog_follower.start()

    async def start_shop_view(self) -> None:
        self.view_follower.start()

    async def tune_gc(self) -> None:
        tuned = tune_collector(self.settings.gc_gen0_threshold)
        if tuned:
            log.info("garbage collector tuned", **tuned)
        self.gc_pauses.install()

    async def start_serving(self) -> None:
        """Reads on SALEPULSE_SERVING_PORT off the event loop (salepulse.streams.runtime.serving): from a thread, or
        the rankings from forked snapshots (refreshed by ``refresh_serving``) when SALEPULSE_SERVING_SNAPSHOT_S > 0."""
        from salepulse.streams.runtime.serving import ReadServer, SnapshotServer

        settings = self.settings
        if settings.serving_snapshot_s > 0 and settings.learns_preferences:
            self.ranking_server = SnapshotServer(self, settings.serving_port, settings.http_host,
                                                 settings.serving_snapshot_s)
            return
        self.ranking_server = ReadServer(self, settings.serving_port, settings.http_host)
        await asyncio.to_thread(self.ranking_server.start)

    async def refresh_serving(self) -> None:
        if self.ranking_server is not None:
            await self.ranking_server.refresh()

    async def stop_serving(self, *_args: Any, **_kwargs: Any) -> None:
        if self.ranking_server is not None:
            await asyncio.to_thread(self.ranking_server.stop)

    async def widen_producer_buffer(self) -> None:
        """Faust flushes its producer buffer every 100 messages, one await each; batches here send thousands."""
        self.app.producer.buffer.max_messages = 10_000

    async def forget_cached_state(self, *_args: Any, **_kwargs: Any) -> None:
        """Partitions may move: re-read state from the tables rather than trust a cached copy."""
        self.sale_cache.clear()
        self.unknown_events.clear()
        try:
            self.members.clear()
        except Exception as exc:  # partitions already gone: those members are re-read from the changelog
            log.warning("member flush on rebalance failed", error=str(exc), members=len(self.members.dirty))

    def register(self) -> None:
        """What this worker runs, by role (``SALEPULSE_WORKER_ROLE``)."""
        app, settings = self.app, self.settings
        app.task(self.start_catalog)
        app.task(self.widen_producer_buffer)
        app.task(self.tune_gc)
        app.on_partitions_revoked.connect(self.forget_cached_state)
        app.on_before_shutdown.connect(self.stop_ingest)
        if settings.counts_velocity and self.handover is not None:
            app.task(self.start_shop_view)
            app.on_partitions_revoked.connect(self.handover.on_revoked)
            self.sale_states.on_recover(self.handover.on_recovered)
            app.task(self.start_ingest)
            app.agent(self.facts_topic, name="sale_state")(self.sale_state)
            app.timer(interval=1.0, name="publish_live_state")(self.publish_live_state)
        if settings.learns_preferences:
            app.agent(self.signals_topic, name="member_preferences")(self.member_preferences)
            app.timer(interval=MEMBER_FLUSH_SECONDS, name="flush_members")(self.flush_members)
            app.on_before_shutdown.connect(self.save_ranker)
            if settings.serving_port and settings.serving_snapshot_s > 0:
                app.timer(interval=settings.serving_snapshot_s, name="refresh_serving")(self.refresh_serving)
        if settings.serving_port:  # rankings and /sales off the event loop
            app.task(self.start_serving)
            app.on_before_shutdown.connect(self.stop_serving)
        if not settings.counts_velocity:
            app.task(self.start_shop_view)  # live popularity (cold start, "trending") of every sale
        app.timer(interval=10.0, name="measure_lag")(self.measure_lag)
        app.timer(interval=10.0, name="log_collector_pauses")(self.log_collector_pauses)


def build_worker(settings: Settings, codec: Codec | None = None) -> Worker:
    """The one function that assembles a worker: state, agents, timers and the HTTP API."""
    from salepulse.streams.runtime.api import mount

    worker = Worker(settings, codec)
    worker.register()
    mount(worker)
    return worker


def __getattr__(name: str) -> Any:
    """``faust -A salepulse.streams.runtime.worker:app``: the app of a worker built from the environment, on first
    use."""
    if name == "app":
        global app
        app = build_worker(Settings.from_env()).app
        return app
    raise AttributeError(name)
