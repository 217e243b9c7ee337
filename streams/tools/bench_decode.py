"""The Avro decode of every role before and after the compiled reader, in one process (issue #13).

``python -m salepulse.streams.tools.bench_decode [--events N] [--turns T] [--dsn chdb:///path] [--sink-rows R]``

The box is shared by other engineers' runs, so the two codecs take turns: each turn measures fastavro
(``Codec(compiled_reader=False)``, the decode as it was) and then the compiled reader on the same bytes, and the
report gives the median over turns of each figure (each figure itself the best of a few passes in thread CPU time,
as in :mod:`salepulse.streams.tools.bench_stages`).

- µs per decode of each record type the roles read: the three events (velocity worker's ingest), the facts batch
  (sale state, sink) and the signals batch (preferences), with µs per fact and per signal for the batches;
- the roles' per-stage costs from :func:`~salepulse.streams.tools.bench_stages.bench_stages` with either codec;
- with ``--sink-rows``, the sink's decode → insert path in rows/s (``bench_sink`` of the bench).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from tqdm import tqdm

from salepulse.schemas.codec import Codec
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)
CODECS = ("fastavro", "compiled")


def sample_messages(n_events: int, batch_size: int = 2000) -> dict[str, list[bytes]]:
    """Encoded messages of each record type the roles decode: the simulated world's first ``n_events`` events,
    and the facts and signals batches the ingest makes of them (``batch_size`` events per split, as the bench)."""
    from salepulse.streams.io.ingest import BatchSplitter
    from salepulse.streams.tools.bench_stages import NAMES, Raw, simulated_events

    codec = Codec()
    events, _world = simulated_events(n_events)
    by_type: dict[str, list[bytes]] = {}
    raw = []
    for i, (kind, record) in enumerate(events):
        value = codec.encode(NAMES[kind], record)
        by_type.setdefault(NAMES[kind], []).append(value)
        raw.append(Raw(f"events.{kind}", i % 4, i, value))
    splitter = BatchSplitter(codec, partitions=4)
    split = [splitter.split(raw[i:i + batch_size]) for i in range(0, len(raw), batch_size)]
    by_type["VelocityFacts"] = [value for batch in split for _, value in batch.facts]
    by_type["MemberSignals"] = [value for batch in split for _, value in batch.signals]
    return by_type


def items_of(name: str, record: dict[str, Any]) -> int:
    """Facts or signals in a batch record, 1 for an event."""
    if name == "VelocityFacts":
        return len(record["event_ids"])
    if name == "MemberSignals":
        return len(record["signals"])
    return 1


def decode_seconds(codec: Codec, values: list[bytes], passes: int = 5) -> float:
    """Best of ``passes`` of decoding every value (``timestamps="ms"``, as every role), thread CPU seconds, with
    the worker's collector tuning: untuned, a pass after the stage bench paid for collections of that bench's heap
    (measured: the same codec 30 % slower right after it)."""
    from salepulse.streams.tools.bench_stages import tuned_collector

    best = float("inf")
    with tuned_collector():
        for _ in range(passes):
            started = time.thread_time()
            for value in values:
                codec.decode(value, timestamps="ms")
            best = min(best, time.thread_time() - started)
    return best


def median_of(turns: list[dict[str, Any]], path: tuple[str, ...]) -> float | None:
    """The median over turns of the figure at ``path`` (None where a turn lacks it).

    >>> median_of([{"a": {"b": 1.0}}, {"a": {"b": 3.0}}, {"a": {"b": 2.0}}], ("a", "b"))
    2.0
    """
    found = []
    for turn in turns:
        value: Any = turn
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            found.append(value)
    return round(statistics.median(found), 3) if found else None


def bench_decode(n_events: int = 20_000, turns: int = 5, dsn: str | None = None, stages: bool = True,
                 sink_rows: int = 0) -> dict[str, Any]:
    """Before (fastavro) and after (compiled reader), taking turns; medians over ``turns``."""
    from salepulse.streams.tools.bench_stages import bench_stages

    codecs = {"fastavro": Codec(compiled_reader=False), "compiled": Codec()}
    messages = sample_messages(n_events)
    reference = codecs["fastavro"]
    for name, values in messages.items():  # the same records, or the comparison means nothing
        for value in values:
            if codecs["compiled"].decode(value, timestamps="ms") != reference.decode(value, timestamps="ms"):
                raise RuntimeError(f"the compiled reader reads a {name} otherwise than fastavro")
    items = {name: sum(items_of(name, reference.decode(v, timestamps="ms")[1]) for v in values)
             for name, values in messages.items()}
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in CODECS}
    for turn in tqdm(range(turns), desc="decode turns", unit="turn"):
        for key in CODECS if turn % 2 == 0 else CODECS[::-1]:  # who goes first alternates too
            run: dict[str, Any] = {"decode_us": {}, "decode_us_per_item": {}}
            for name, values in messages.items():
                seconds = decode_seconds(codecs[key], values)
                run["decode_us"][name] = seconds / len(values) * 1e6
                run["decode_us_per_item"][name] = seconds / items[name] * 1e6
            runs[key].append(run)
    for turn in tqdm(range(turns if stages or sink_rows else 0), desc="stage turns", unit="turn"):
        for key in CODECS if turn % 2 == 0 else CODECS[::-1]:
            codec, run = codecs[key], runs[key][turn]
            if stages:
                run["stages"] = bench_stages(n_events, rounds=3, dsn=dsn, codec=codec)
            if sink_rows and dsn:
                from salepulse.streams.tools.bench import bench_sink

                run["sink"] = bench_sink(dsn, sink_rows, codec=codec)
    figures = {
        "ingest decode, µs per event": ("stages", "ingest", "decode_us_per_event"),
        "ingest splitter total (decode+validate+split+encode), µs per event":
            ("stages", "ingest", "splitter_total_us_per_event"),
        "sale state: decode + dedup + count + JSON, µs per fact": ("stages", "sale_state", "count_us_per_fact"),
        "preferences: decode + learn, µs per signal": ("stages", "preferences", "learn_us_per_signal"),
        "sink: decode into columns, µs per fact row": ("stages", "sink", "decode_us_per_fact"),
        "sink: insert into chdb, µs per fact row": ("stages", "sink", "insert_us_per_fact"),
        "sink path (decode → insert), rows/s": ("sink", "sink_path_rows_per_s"),
        "sink bare insert, rows/s": ("sink", "bare_insert_rows_per_s"),
    }
    for name in messages:
        figures[f"decode {name}, µs per message"] = ("decode_us", name)
        if name in ("VelocityFacts", "MemberSignals"):
            figures[f"decode {name}, µs per {'fact' if name == 'VelocityFacts' else 'signal'}"] = (
                "decode_us_per_item", name)
    table = {}
    for label, path in figures.items():
        before, after = median_of(runs["fastavro"], path), median_of(runs["compiled"], path)
        if before is not None and after is not None:
            table[label] = {"fastavro": before, "compiled": after, "after/before": round(after / before, 3)}
    return {"events": n_events, "turns": turns, "messages": {k: len(v) for k, v in messages.items()},
            "items": items, "medians": table}


def render(result: dict[str, Any]) -> list[str]:
    """A markdown table of the medians."""
    lines = [f"{result['events']:,} simulated events, {result['turns']} turns alternating fastavro / compiled "
             f"(medians); messages {result['messages']}", "",
             "| figure | fastavro | compiled reader | after / before |", "|---|---|---|---|"]
    for label, row in result["medians"].items():
        lines.append(f"| {label} | {row['fastavro']} | {row['compiled']} | {row['after/before']} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--dsn", default=None, help="ClickHouse for the sink's figures, e.g. chdb:///tmp/bench")
    parser.add_argument("--sink-rows", type=int, default=0, help="rows for the sink path's rows/s (needs --dsn)")
    parser.add_argument("--no-stages", action="store_true", help="only the µs per decode")
    args = parser.parse_args(argv)
    result = bench_decode(args.events, args.turns, args.dsn, not args.no_stages, args.sink_rows)
    log.info("decode bench done", **{k: v for k, v in result.items() if k != "medians"})
    print("\n".join(render(result)))
    print(json.dumps(result["medians"], ensure_ascii=False))


if __name__ == "__main__":
    main()
