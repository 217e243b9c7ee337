"""Ingest: the raw event topics turned into facts per sale, signals per member and dead letters, at Kafka speed.

Topology::

    events.browse ─┐                           ┌─> velocity.facts    (key sale_id; one message per sale and batch)
    events.cart  ──┼─ EventIngest ─────────────┼─> member.signals    (member's partition; one per partition, batch)
    events.order ─┘  (confluent-kafka, thread) └─> events.deadletter (stage, reason, 1 KB excerpt, SHA-256)

Two reasons this stage is a confluent-kafka consumer inside the worker rather than a Faust agent:

- **Speed.** A Faust agent that does nothing tops out near 10,000 events/s on this machine (every message becomes
  an Event, goes through a stream, a take buffer and an ack list); the target is 20,000 events/s per worker.
- **Exactness.** Faust picks the offsets it commits from its own ack and gap bookkeeping; after a SIGKILL and a
  restart it sometimes committed past an event whose facts had never left the killed process (one event in
  ~12,000, in 2 of 4 test runs). Here the rule is explicit and local: a batch's input offsets are committed only
  after the broker has acknowledged every message produced from that batch (``producer.flush``). Whatever was
  read after the last commit is read again after a crash, and the stages downstream drop what they already
  counted (``sale_state`` by source offset, ClickHouse by event id).

The splitting is pure (:class:`BatchSplitter`, unit-tested without a broker); :class:`EventIngest` is the I/O.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import groupby
from typing import Any, Protocol

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from salepulse.consumers.io.publish import Publisher
from salepulse.schemas.codec import Codec, DecodeError
from salepulse.schemas.validation import problems
from salepulse.streams.domain.poison import (
    DEFAULT_MESSAGE_BYTES,
    FACT_OVERHEAD_BYTES,
    dead_letter,
    event_problem,
    message_budget,
    text_bytes,
)
from salepulse.streams.domain.velocity import Fact, extract_facts, facts_by_sale, to_ms
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.topology import RECORD_KINDS

log = get_logger(__name__)


MAX_SIGNAL_LINES = 50
"""Lines of one order the preference model learns from: a 500-line wholesale invoice says little more about taste
than its first 50, and co-visitation costs grow with the square of the lines."""


class Message(Protocol):
    """What the splitter reads of a Kafka message (confluent-kafka's ``Message`` has exactly these methods)."""

    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


@lru_cache(maxsize=262_144)
def member_partition(member_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java, aiokafka, librdkafka ``murmur2_random``) gives the key.

    The member-prefs table and the HTTP routing of ``/members/{id}`` use this function's twin inside Faust, so a
    member's signals must land exactly here.

    >>> member_partition("m-42", 8) == member_partition("m-42", 8)
    True
    >>> 0 <= member_partition("m-42", 8) < 8
    True
    """
    return (murmur2(member_id.encode()) & 0x7FFFFFFF) % partitions


def decode_event(codec: Codec, data: bytes | None) -> tuple[str, dict[str, Any]]:
    """Decode and validate one event; raises DecodeError or ValueError with the reason."""
    name, record = codec.decode(data or b"", timestamps="ms")
    if name not in RECORD_KINDS:
        raise ValueError(f"{name} is not an event (expected BrowseEvent, CartEvent or OrderEvent)")
    found = problems(name, record)
    if found:
        raise ValueError(f"{name} {record.get('event_id', '?')} fails validation: {'; '.join(found)}")
    return name, record


def signals_of(kind: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The MemberSignal records of one validated event (one per order line, up to ``MAX_SIGNAL_LINES``)."""
    ts = to_ms(record["ts"])
    if kind == "order":
        return [{"member_id": record["member_id"], "sale_id": line["sale_id"], "sku": line["sku"], "kind": kind,
                 "quantity": line["quantity"], "action": None, "unit_price": line.get("unit_price"), "ts": ts}
                for line in record["lines"][:MAX_SIGNAL_LINES]]
    return [{"member_id": record["member_id"], "sale_id": record["sale_id"], "sku": record["sku"], "kind": kind,
             "quantity": record.get("quantity", 1), "action": record.get("action"),
             "unit_price": record.get("unit_price"), "ts": ts}]


@dataclass
class IngestBatch:
    """Everything one batch of raw events becomes, ready to produce, plus what to report and commit."""

    facts: list[tuple[str, bytes]] = field(default_factory=list)
    """(sale_id, encoded VelocityFacts)"""
    signals: list[tuple[int, bytes]] = field(default_factory=list)
    """(partition, encoded MemberSignals)"""
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    """(original key, encoded DeadLetter)"""
    kinds: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    facts_count: int = 0
    signals_count: int = 0
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    reasons: list[tuple[str, int, int, str]] = field(default_factory=list)
    """(topic, partition, offset, reason) of each dead letter, for the log."""


class BatchSplitter:
    """Split raw event messages into facts per sale, member signals per partition and dead letters.

    >>> from salepulse.schemas.codec import Codec
    >>> codec = Codec()
    >>> class Raw:
    ...     def __init__(self, offset, value): self._offset, self._value = offset, value
    ...     def topic(self): return "events.browse"
    ...     def partition(self): return 0
    ...     def offset(self): return self._offset
    ...     def key(self): return b"m1"
    ...     def value(self): return self._value
    >>> view = codec.encode("BrowseEvent", {"event_id": "b1", "member_id": "m1", "sale_id": "s1", "sku": "k1",
    ...                                     "ts": 1_764_403_200_000})
    >>> batch = BatchSplitter(codec, partitions=4).split([Raw(7, view), Raw(8, b"junk")])
    >>> batch.kinds["browse"], batch.facts_count, len(batch.signals), batch.failures["decode"]
    (1, 1, 1, 1)
    >>> batch.last_offsets
    {('events.browse', 0): 8}
    """

    def __init__(self, codec: Codec, partitions: int, now_ms: Callable[[], int] | None = None,
                 max_message_bytes: int = DEFAULT_MESSAGE_BYTES) -> None:
        self.codec = codec
        self.partitions = partitions
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.budget = message_budget(max_message_bytes)

    def split(self, messages: Sequence[Message]) -> IngestBatch:
        out = IngestBatch()
        facts: list[tuple[Any, str, int]] = []
        signals: dict[int, list[tuple[list[dict[str, Any]], int, str]]] = {}  # per event: signals, bytes, origin
        sizes: dict[tuple[str, int], int] = {}
        by_source: dict[tuple[str, int], Message] = {}
        for message in messages:
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            out.last_offsets[(topic, partition)] = offset
            try:
                name, record = decode_event(self.codec, message.value())
            except DecodeError as exc:
                self._dead_letter(out, message, "decode", f"decode: {exc}")
                continue
            except ValueError as exc:
                self._dead_letter(out, message, "validate", f"validate: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - whatever a hostile record does to the decoder, it stops here
                self._dead_letter(out, message, "decode", f"decode: {type(exc).__name__}: {exc}")
                continue
            source = f"{topic}:{partition}"
            try:
                # What validation let through but the pipeline cannot carry (see salepulse.streams.domain.poison).
                problem = event_problem(name, record)
                if problem:
                    self._dead_letter(out, message, "limits", f"limits: {problem}")
                    continue
                kind = RECORD_KINDS[name]
                event_facts = extract_facts(name, record)
                event_signals = signals_of(kind, record)
                target = member_partition(record["member_id"], self.partitions)
                fact_size, signal_size = output_bytes(record, event_facts, event_signals, source)
                if max(fact_size, signal_size) > self.budget:
                    self._dead_letter(out, message, "oversized",
                                      f"oversized: its outputs (~{max(fact_size, signal_size)} bytes) would "
                                      f"not fit one Kafka message (budget {self.budget})")
                    continue
            except Exception as exc:  # noqa: BLE001 - a record that breaks processing is dead-lettered, not fatal
                self._dead_letter(out, message, "process", f"process: {type(exc).__name__}: {exc}")
                continue
            out.kinds[kind] += 1
            by_source[(source, offset)] = message
            sizes[(source, offset)] = fact_size
            facts.extend((fact, source, offset) for fact in event_facts)
            signals.setdefault(target, []).append((event_signals, signal_size, source))
            out.signals_count += len(event_signals)
        out.facts_count = len(facts)
        for sale_id, items in facts_by_sale(facts, max_bytes=self.budget, event_bytes=sizes):
            out.facts.extend(self._encode_facts(out, sale_id, items, by_source))
        for target, per_event in signals.items():
            chunk: list[dict[str, Any]] = []
            size, first = 0, per_event[0][2]
            for event_signals, signal_size, source in per_event:
                if chunk and size + signal_size > self.budget:
                    out.signals.append((target, self._signals_message(target, chunk, first)))
                    chunk, size, first = [], 0, source
                chunk.extend(event_signals)
                size += signal_size
            out.signals.append((target, self._signals_message(target, chunk, first)))
        return out

    def _encode_facts(self, out: IngestBatch, sale_id: str, items: list[tuple[Any, str, int]],
                      by_source: dict[tuple[str, int], Message]) -> list[tuple[str, bytes]]:
        """The facts message of one chunk; if it does not encode, each event on its own, dead-lettering those that
        fail (a value the guard did not foresee must cost one event, not the worker)."""
        try:
            return [(sale_id, self.codec.encode("VelocityFacts", facts_record(sale_id, items)))]
        except Exception:  # noqa: BLE001 - narrowed down below, event by event
            pass
        encoded: list[tuple[str, bytes]] = []
        for (source, offset), event in groupby(items, key=lambda item: (item[1], item[2])):
            event_items = list(event)
            try:
                encoded.append((sale_id, self.codec.encode("VelocityFacts", facts_record(sale_id, event_items))))
            except Exception as exc:  # noqa: BLE001
                out.facts_count -= len(event_items)
                self._dead_letter(out, by_source[(source, offset)], "process", f"process: facts: {exc}")
        return encoded

    def _signals_message(self, target: int, chunk: list[dict[str, Any]], first: str) -> bytes:
        """One MemberSignals message, named after its first event and its partition."""
        return self.codec.encode("MemberSignals", {"event_id": f"{first}:p{target}", "signals": chunk})

    def _dead_letter(self, out: IngestBatch, message: Message, stage: str, reason: str) -> None:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        record = dead_letter(topic, partition, offset, message.key(), message.value(), stage, reason,
                             self.now_ms())
        out.failures[stage] += 1
        out.deadletters.append((record["key"], self.codec.encode("DeadLetter", record)))
        out.reasons.append((topic, partition, offset, record["reason"]))


def output_bytes(record: dict[str, Any], facts: list[Fact], signals: list[dict[str, Any]],
                 source: str) -> tuple[int, int]:
    """Upper estimates of the bytes one event adds to its facts messages and to its signals message.

    Per fact: its event id, sku, kind and source plus a fixed overhead; per signal: member, sale and sku plus the
    same overhead. Browses and carts (one fact, one signal) take the short path: this runs for every event.

    >>> from salepulse.streams.domain.velocity import Fact
    >>> f = Fact("b1", "s1", "k1", "view", 1, 0.0, 0)
    >>> output_bytes({"event_id": "b1", "member_id": "m1"}, [f], [{"sale_id": "s1", "sku": "k1"}], "events.browse:0")
    (88, 70)
    """
    eid, member = record["event_id"], record["member_id"]
    fixed = (len(eid) if eid.isascii() else text_bytes(eid)) + len(source) + 5 + FACT_OVERHEAD_BYTES
    per_signal = (len(member) if member.isascii() else text_bytes(member)) + FACT_OVERHEAD_BYTES
    if len(facts) == 1 and len(signals) == 1:
        sku, sale = facts[0].sku, signals[0]["sale_id"]
        sku_b = len(sku) if sku.isascii() else text_bytes(sku)
        return fixed + sku_b, per_signal + sku_b + (len(sale) if sale.isascii() else text_bytes(sale))
    fact_size = sum(fixed + text_bytes(f.sku) for f in facts)
    signal_size = sum(per_signal + text_bytes(s["sale_id"]) + text_bytes(s["sku"]) for s in signals)
    return fact_size, signal_size


def facts_record(sale_id: str, items: Sequence[tuple[Fact, str, int]]) -> dict[str, Any]:
    """The VelocityFacts record (column-wise) of one sale's ``(fact, source, offset)`` triples.

    >>> from salepulse.streams.domain.velocity import Fact
    >>> facts_record("s1", [(Fact("o1", "s1", "k1", "order", 2, 20.0, 3_600_000), "events.order:0", 41)])["units"]
    [2]
    """
    facts = [fact for fact, _, _ in items]
    return {
        "event_id": f"{items[0][1]}:{items[0][2]}:{sale_id}",
        "sale_id": sale_id,
        "event_ids": [f.event_id for f in facts],
        "skus": [f.sku for f in facts],
        "kinds": [f.kind for f in facts],
        "units": [f.units for f in facts],
        "revenues": [f.revenue for f in facts],
        "ts": [f.ts_ms for f in facts],
        "sources": [source for _, source, _ in items],
        "offsets": [offset for _, _, offset in items],
        "regions": [f.region for f in facts],
    }


def facts_of(record: dict[str, Any]) -> list[tuple[Fact, str, int]]:
    """Inverse of :func:`facts_record`."""
    sale_id = record["sale_id"]
    # a record written before regions existed reads with an empty list: no fact has a region
    regions = record.get("regions") or [None] * len(record["event_ids"])
    return [(Fact(event_id, sale_id, sku, kind, units, revenue, ts, region), source, offset)
            for event_id, sku, kind, units, revenue, ts, source, offset, region in zip(
                record["event_ids"], record["skus"], record["kinds"], record["units"], record["revenues"],
                record["ts"], record["sources"], record["offsets"], regions, strict=True)]


class IngestError(RuntimeError):
    """The ingest cannot guarantee its outputs reached Kafka; the worker must stop without committing."""


class EventIngest:
    """Consume the event topics, split each batch, produce its outputs, commit once they are acknowledged.

    ``run`` blocks until ``stop`` is set (then it commits what was delivered and closes); it raises
    :class:`IngestError` when the broker refused an output, and the caller must then exit without committing.
    ``on_batch`` is called with every split batch, after its outputs were handed to the producer.
    """

    def __init__(self, settings: Settings, codec: Codec, *, group_id: str,
                 on_batch: Callable[[IngestBatch], None], batch_size: int = 2000, commit_every: float = 1.0) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.splitter = BatchSplitter(codec, settings.partitions, max_message_bytes=settings.max_message_bytes)
        self.on_batch = on_batch
        self.batch_size = batch_size
        self.commit_every = commit_every
        self.consumer = Consumer(settings.kafka_config(**{
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,  # a killed worker's partitions move in seconds
            "heartbeat.interval.ms": 2_000,
            "queued.max.messages.kbytes": 65_536,
            "fetch.queue.backoff.ms": settings.ingest_fetch_backoff_ms,
        }))
        # Idempotent (ordered, no duplicates per partition: sale_state relies on it) and murmur2-partitioned like
        # Faust's router and tables; see Publisher.
        self.publisher = Publisher(settings, codec, **{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
        self._uncommitted: dict[tuple[str, int], int] = {}  # next offset to commit, per input partition

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(list(self.topics.events), on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("ingest started", topics=list(self.topics.events))
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                messages = [m for m in self.consumer.consume(self.batch_size, 0.05) if self._readable(m)]
                if messages:
                    batch = self.splitter.split(messages)
                    self._produce(batch)
                    for tp, offset in batch.last_offsets.items():
                        self._uncommitted[tp] = offset + 1
                    self.on_batch(batch)
                if self._uncommitted and time.monotonic() - last_commit >= self.commit_every:
                    self._commit_delivered()
                    last_commit = time.monotonic()
            self._commit_delivered()
        finally:
            self.consumer.close()
            log.info("ingest stopped")

    @staticmethod
    def _readable(message: Any) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consume error", error=str(error))
        return False

    def _produce(self, batch: IngestBatch) -> None:
        topics, send = self.topics, self.publisher.send_raw
        for sale_id, value in batch.facts:
            send(topics.facts, value, key=sale_id.encode())
        for partition, value in batch.signals:
            send(topics.signals, value, partition=partition)
        for key, value in batch.deadletters:
            send(topics.deadletter, value, key=key)
        for topic, partition, offset, reason in batch.reasons:
            log.warning("dead-lettered", topic=topic, partition=partition, offset=offset, reason=reason)

    def _commit_delivered(self, only: set[tuple[str, int]] | None = None) -> None:
        """Wait until every output produced so far is acknowledged, then commit the inputs they came from."""
        try:
            self.publisher.flush(30)
        except KafkaException as exc:
            raise IngestError(f"outputs not acknowledged by the broker ({exc}); not committing") from exc
        offsets = {tp: o for tp, o in self._uncommitted.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance in progress: the events are read again, and dropped later
            log.warning("ingest commit failed; those events will be read again", error=str(exc))
            return
        for tp, offset in offsets.items():
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit_delivered(only=revoked)
        for tp in revoked:
            self._uncommitted.pop(tp, None)

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:  # another worker owns them now: its reads start from our last commit
            self._uncommitted.pop((tp.topic, tp.partition), None)
