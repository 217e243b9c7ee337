"""Per-stage cost of the pipeline in µs, each stage alone on the same simulated events (issue #13, item 2).

The stages are the code the worker and the sink run per message, called directly: no Faust, no consumer. Only
``produce`` needs a broker (skipped without one) and only the sink's insert needs ClickHouse (embedded chdb).
Every figure is the best of ``rounds`` passes (the ingest's four taking turns; the box is shared: the minimum is
the code's own cost), divided by the events, facts or signals the pass handled, as its name says.

- ingest: ``decode`` and ``validate`` of each raw event, ``split`` (facts per sale, signals per member, limits,
  sizes) as the whole :meth:`BatchSplitter.split` minus decode, validate and encode, ``encode`` of the facts and
  signals messages it produced, ``produce`` of those messages to a broker until acknowledged;
- ``sale_state``: decode a facts message, dedup and count its facts into :class:`SaleState`, one JSON state write
  per sale touched per batch of 100 messages (as ``count_batch``), without the live board's forecast update;
- ``preferences``: decode a signals message and fold each signal into :class:`PreferenceModel` (also with the
  worker's collector tuning), and write each member learnt as its changelog record (``MemberState.to_bytes``);
- ``sink``: decode facts messages into a batch's columns, and insert them into chdb.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from salepulse.schemas.codec import Codec
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

NAMES = {"browse": "BrowseEvent", "cart": "CartEvent", "order": "OrderEvent"}


class Raw:
    """A Kafka message as the splitter reads it."""

    __slots__ = ("_offset", "_partition", "_topic", "_value")

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._value


def best_seconds(fn: Callable[[], Any], rounds: int, clock: Callable[[], float] = time.thread_time) -> float:
    """The fastest of ``rounds`` calls of ``fn``, in seconds of ``clock``.

    The default clock is this thread's CPU time: on a box shared by other engineers' runs, wall time also counts
    the time the thread waited for a core (measured: 43-65 µs wall for 23-29 µs CPU per event in the splitter).
    Produce (waits on the broker) is timed on the wall clock, the chdb insert (its own threads) on the process's.

    >>> best_seconds(lambda: None, 3) >= 0
    True
    """
    best = float("inf")
    for _ in range(rounds):
        started = clock()
        fn()
        best = min(best, clock() - started)
    return best


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """The fastest of ``rounds`` calls of each function, the functions taking turns round by round: the ingest's
    split is derived by difference, so its parts must be timed under the same load, not minutes apart.

    >>> sorted(interleaved({"a": lambda: None, "b": lambda: None}, 2))
    ['a', 'b']
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.thread_time()
            fn()
            best[name] = min(best[name], time.thread_time() - started)
    return best


def gc_seconds(fn: Callable[[], Any]) -> float:
    """Seconds the cyclic garbage collector ran during one call of ``fn`` (from ``gc.callbacks``).

    >>> gc_seconds(lambda: [[] for _ in range(10)]) >= 0
    True
    """
    spent, started = [0.0], [0.0]

    def timer(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - started[0]

    gc.callbacks.append(timer)
    try:
        fn()
    finally:
        gc.callbacks.remove(timer)
    return spent[0]


@contextmanager
def tuned_collector(gen0_threshold: int | None = None) -> Iterator[None]:
    """The worker's collector tuning (:func:`salepulse.streams.platform.gc_tuning.tune_collector`) for the duration
    of the block, CPython's state restored after it: the splitter timed both ways in one process.

    >>> before = gc.get_threshold()
    >>> with tuned_collector(): gc.get_threshold()[0] == Settings().gc_gen0_threshold
    True
    >>> gc.get_threshold() == before
    True
    """
    from salepulse.streams.platform.gc_tuning import tune_collector

    before = gc.get_threshold()
    tune_collector(Settings().gc_gen0_threshold if gen0_threshold is None else gen0_threshold)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def us(seconds: float, count: int) -> float:
    """µs per item, rounded to 3 places.

    >>> us(0.5, 100_000)
    5.0
    """
    return round(seconds / count * 1e6, 3) if count else 0.0


def world_catalog(world: Any) -> Any:
    """The simulated world's sales in a :class:`~salepulse.streams.domain.catalog.Catalog`, as the worker's catalogue
    follower would hold them: learning then maps signals with the worker's own ``preference_update``."""
    from salepulse.streams.domain.catalog import Catalog

    catalog = Catalog()
    for sale in world.sales:
        catalog.apply("Sale", sale)
    return catalog


def simulated_events(n_events: int, seed: int = 11) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """The first ``n_events`` events of the bench's simulated world (the same the pipeline section pre-fills)."""
    from salepulse.consumers.tools.simulate import world_for_rate

    world = world_for_rate(seed, 5000.0)
    events = []
    for kind, record in world.events():
        events.append((kind, record))
        if len(events) == n_events:
            break
    return events, world


def bench_stages(n_events: int = 20_000, rounds: int = 3, settings: Settings | None = None,
                 dsn: str | None = None, batch_size: int = 2000, codec: Codec | None = None) -> dict[str, Any]:
    """µs per event (or per fact, per signal) of each stage; ``settings`` (a reachable broker) enables
    ``produce``, ``dsn`` (ClickHouse) the sink's insert; ``codec`` is every stage's (one without the compiled
    reader measures the decode before it)."""
    from salepulse.schemas.validation import problems
    from salepulse.streams.domain.preferences import PreferenceModel
    from salepulse.streams.domain.steps import preference_update
    from salepulse.streams.domain.velocity import SaleState
    from salepulse.streams.io.ingest import BatchSplitter, facts_of

    codec = codec or Codec()
    events, world = simulated_events(n_events)
    topics = {kind: f"events.{kind}" for kind in NAMES}
    raw = [Raw(topics[kind], i % 4, i, codec.encode(NAMES[kind], record)) for i, (kind, record) in enumerate(events)]
    batches = [raw[i:i + batch_size] for i in range(0, len(raw), batch_size)]
    decoded = [codec.decode(m.value(), timestamps="ms") for m in raw]
    splitter = BatchSplitter(codec, partitions=4)
    split = [splitter.split(batch) for batch in batches]
    dead = sum(sum(b.failures.values()) for b in split)
    facts_values = [value for b in split for _, value in b.facts]
    signal_values = [value for b in split for _, value in b.signals]
    facts_records = [codec.decode(v, timestamps="ms")[1] for v in facts_values]
    signal_records = [codec.decode(v, timestamps="ms")[1] for v in signal_values]
    n_facts = sum(len(r["event_ids"]) for r in facts_records)
    n_signals = sum(len(r["signals"]) for r in signal_records)

    def decode_all() -> None:
        for m in raw:
            codec.decode(m.value(), timestamps="ms")

    def validate_all() -> None:
        for name, record in decoded:
            problems(name, record)

    def encode_all() -> None:
        for record in facts_records:
            codec.encode("VelocityFacts", record)
        for record in signal_records:
            codec.encode("MemberSignals", record)

    def split_all() -> None:
        for batch in batches:
            splitter.split(batch)

    result: dict[str, Any] = {"events": len(raw), "facts": n_facts, "signals": n_signals, "dead_lettered": dead,
                              "rounds": rounds, "batch_size": batch_size}
    best = interleaved({"decode": decode_all, "validate": validate_all, "encode": encode_all,
                        "splitter_total": split_all}, rounds)
    ingest = {f"{name}_us_per_event": us(seconds, len(raw)) for name, seconds in best.items()}
    ingest["gc_in_splitter_us_per_event"] = us(gc_seconds(split_all), len(raw))
    # The collector tuned as in the worker, in turns with CPython's defaults (the tuning itself, a full collection,
    # stays outside the timing).
    pair = {"defaults": float("inf"), "tuned": float("inf")}
    for _ in range(rounds):
        pair["defaults"] = min(pair["defaults"], best_seconds(split_all, 1))
        with tuned_collector():
            pair["tuned"] = min(pair["tuned"], best_seconds(split_all, 1))
    ingest["splitter_total_gc_defaults_us_per_event"] = us(pair["defaults"], len(raw))
    ingest["splitter_total_gc_tuned_us_per_event"] = us(pair["tuned"], len(raw))
    with tuned_collector():
        ingest["gc_in_splitter_gc_tuned_us_per_event"] = us(gc_seconds(split_all), len(raw))
    ingest["split_us_per_event"] = round(ingest["splitter_total_us_per_event"] - ingest["decode_us_per_event"]
                                         - ingest["validate_us_per_event"] - ingest["encode_us_per_event"], 3)
    if settings is not None:
        ingest["produce_us_per_event"] = us(produce_seconds(settings, codec, split, rounds), len(raw))
    result["ingest"] = ingest

    def count_all() -> None:
        states: dict[str, SaleState] = {}
        for start in range(0, len(facts_values), 100):  # count_batch's take_events(100)
            touched: dict[str, SaleState] = {}
            for value in facts_values[start:start + 100]:
                _, record = codec.decode(value, timestamps="ms")
                sale_id = record["sale_id"]
                state = states.setdefault(sale_id, SaleState(sale_id))
                touched[sale_id] = state
                highest: dict[str, int] = {}
                for fact, source, offset in facts_of(record):
                    state.apply(fact, source, offset)
                    highest[source] = max(highest.get(source, -1), offset)
                state.close_offsets(highest)
            for state in touched.values():
                json.dumps(state.to_json()).encode()

    count_seconds = best_seconds(count_all, rounds)
    result["sale_state"] = {"count_us_per_fact": us(count_seconds, n_facts),
                            "count_us_per_event": us(count_seconds, len(raw))}

    catalog = world_catalog(world)

    learned: dict[str, Any] = {}

    def learn_all() -> None:
        model, members = PreferenceModel(), {}
        for value in signal_values:
            for signal in codec.decode(value, timestamps="ms")[1]["signals"]:
                member_id = signal["member_id"]
                members[member_id] = model.update(members.get(member_id), preference_update(signal, catalog))
        learned["members"] = members

    # Each pass learns into a fresh model and fresh members (the same workload every time), so the best of
    # ``rounds`` passes is the code's cost as for the other stages; in turns with the collector tuned as in the
    # worker, which learns with it (a new member is seven tracked objects: full collections walk them all).
    pair = {"defaults": float("inf"), "tuned": float("inf")}
    for _ in range(rounds):
        pair["defaults"] = min(pair["defaults"], best_seconds(learn_all, 1))
        with tuned_collector():
            pair["tuned"] = min(pair["tuned"], best_seconds(learn_all, 1))
    states = list(learned["members"].values())
    write_seconds = best_seconds(lambda: [state.to_bytes() for state in states], rounds)
    result["preferences"] = {"learn_us_per_signal": us(pair["defaults"], n_signals),
                             "learn_us_per_event": us(pair["defaults"], len(raw)),
                             "learn_gc_tuned_us_per_signal": us(pair["tuned"], n_signals),
                             "members": len(states), "member_write_us_per_member": us(write_seconds, len(states))}
    if dsn is not None:
        result["sink"] = sink_costs(dsn, facts_values, n_facts, rounds, codec)
    return result


def produce_seconds(settings: Settings, codec: Codec, split: Sequence[Any], rounds: int) -> float:
    """Best time to produce every output message of ``split`` to fresh topics and have them acknowledged (the
    ingest's producer settings: idempotent, linger 5 ms)."""
    from salepulse.consumers.io.publish import Publisher
    from salepulse.streams.io.topics import ensure_topics

    prefix = f"stages{uuid.uuid4().hex[:6]}."
    private = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap, "SALEPULSE_TOPIC_PREFIX": prefix,
                                 "SALEPULSE_PARTITIONS": "4"})
    ensure_topics(private)
    publisher = Publisher(private, codec, **{"linger.ms": 5, "queue.buffering.max.messages": 1_000_000})
    facts, signals = private.topics.facts, private.topics.signals

    def produce_all() -> None:
        for batch in split:
            for sale_id, value in batch.facts:
                publisher.send_raw(facts, value, key=sale_id.encode())
            for partition, value in batch.signals:
                publisher.send_raw(signals, value, partition=partition)
        publisher.flush(60)

    return best_seconds(produce_all, rounds, clock=time.perf_counter)


def sink_costs(dsn: str, facts_values: list[bytes], n_facts: int, rounds: int,
               codec: Codec | None = None) -> dict[str, float]:
    """The sink's decode into a batch's columns, and its insert into ClickHouse, per fact row."""
    from salepulse.consumers.io.clickhouse import connect, migrate
    from salepulse.consumers.io.clickhouse_sink import Batch, ClickHouseSink

    client = connect(dsn)
    migrate(client)
    sink = ClickHouseSink(Settings(), client_factory=lambda _dsn: client)
    if codec is not None:
        sink.codec = codec
    batch_rows = Settings().sink_batch_rows

    def decode_batches() -> list[Any]:
        batches, batch = [], Batch()
        for value in facts_values:
            sink.absorb_value(batch, value)
            if batch.size >= batch_rows:
                batches.append(batch)
                batch = Batch()
        return [*batches, batch] if batch.size else batches

    decode = best_seconds(decode_batches, rounds)
    batches = decode_batches()
    # Inserted once: a second insert of the same event ids measures ReplacingMergeTree's duplicates, not the sink.
    insert = best_seconds(lambda: [sink.insert_rows(b) for b in batches], 1, clock=time.process_time)
    return {"decode_us_per_fact": us(decode, n_facts), "insert_us_per_fact": us(insert, n_facts),
            "rows": n_facts}


def in_sum(row: str) -> bool:
    """Whether a stage row counts in the sum: not the totals, parts or variants of the rows around it, nor the member
    write (once per member per flush, not once per pass).

    >>> [in_sum(row) for row in ("ingest: decode",
    ...                          "ingest: split into facts/signals (splitter total − decode − validate − encode)",
    ...                          "ingest: splitter total (decode+validate+split+encode)",
    ...                          "ingest: of which the garbage collector (one pass, wall)",
    ...                          "preferences: decode + learn, collector tuned as in the worker",
    ...                          "preferences: member record written for the changelog (to_bytes; once per member)")]
    [True, True, False, False, False, False]
    """
    if row.startswith(("ingest: splitter total", "ingest: of which")):
        return False
    return not any(part in row for part in ("collector tuned", "to_bytes"))


def render_stages(stages: dict[str, Any]) -> list[str]:
    """The per-stage section of BENCHMARKS.md."""
    ingest, sink = stages["ingest"], stages.get("sink", {})
    rows = [
        ("ingest: decode", ingest["decode_us_per_event"], "event"),
        ("ingest: validate", ingest["validate_us_per_event"], "event"),
        ("ingest: split into facts/signals (splitter total − decode − validate − encode)",
         ingest["split_us_per_event"], "event"),
        ("ingest: encode facts + signals messages", ingest["encode_us_per_event"], "event"),
        ("ingest: splitter total (decode+validate+split+encode)", ingest["splitter_total_us_per_event"], "event"),
        ("ingest: of which the garbage collector (one pass, wall)", ingest.get("gc_in_splitter_us_per_event"),
         "event"),
        ("ingest: splitter total, CPython's collector (in turns with the next row)",
         ingest.get("splitter_total_gc_defaults_us_per_event"), "event"),
        ("ingest: splitter total, collector tuned as in the worker (SALEPULSE_GC_GEN0_THRESHOLD)",
         ingest.get("splitter_total_gc_tuned_us_per_event"), "event"),
        ("ingest: of which the garbage collector, tuned (one pass, wall)",
         ingest.get("gc_in_splitter_gc_tuned_us_per_event"), "event"),
        ("ingest: produce facts + signals, until acknowledged", ingest.get("produce_us_per_event"), "event"),
        ("sale_state: decode + dedup + count + JSON state write", stages["sale_state"]["count_us_per_fact"], "fact"),
        ("preferences: decode + learn", stages["preferences"]["learn_us_per_signal"], "signal"),
        ("preferences: decode + learn, collector tuned as in the worker (in turns with the row above)",
         stages["preferences"].get("learn_gc_tuned_us_per_signal"), "signal"),
        ("preferences: member record written for the changelog (to_bytes; once per member per flush)",
         stages["preferences"].get("member_write_us_per_member"), "member"),
        ("sink: decode into columns", sink.get("decode_us_per_fact"), "fact row"),
        ("sink: insert into chdb", sink.get("insert_us_per_fact"), "fact row"),
    ]
    per_event = {"fact": stages["facts"] / stages["events"], "signal": stages["signals"] / stages["events"],
                 "fact row": stages["facts"] / stages["events"], "event": 1.0,
                 "member": stages["preferences"].get("members", 0) / stages["events"]}
    lines = [
        "## Per-stage cost (pure micro-benchmarks, issue #13)",
        "",
        f"Each stage alone, in process, on the first {stages['events']:,} events of the bench's simulated world "
        f"({stages['facts']:,} facts, {stages['signals']:,} signals, {stages['dead_lettered']} dead-lettered); best "
        f"of {stages['rounds']} passes (the insert: one pass), in CPU time of the thread (the "
        "insert: of the process; produce: wall time, to the local broker). The insert goes to embedded chdb. The "
        "µs per event column is the budget: at 100,000 events/s on 2 cores the whole product has 20 µs per event.",
        "",
        "| stage | µs per unit | unit | µs per event |",
        "|---|---|---|---|",
    ]
    total = 0.0
    for what, cost, unit in rows:
        if cost is None:
            lines.append(f"| {what} | not measured | {unit} | |")
            continue
        event_cost = cost * per_event[unit]
        if in_sum(what):
            total += event_cost
        lines.append(f"| {what} | {cost} | {unit} | {event_cost:.2f} |")
    lines += [f"| **sum of the stages** | | | **{total:.2f}** |", ""]
    return lines

