"""The consume+decode floor of the bench, measured twice: with librdkafka's fetch defaults and CPU-bound (issue #13).

With the defaults, a consumer that is faster than its fetches waits on them: once a partition's local queue is
past ``queued.min.messages`` (or ``queued.max.messages.kbytes``), librdkafka postpones that partition's next fetch
by ``fetch.queue.backoff.ms`` (1 s). A floor measured that way is limited by fetching, not by the CPU, and every
ratio against it flatters the worker. :data:`CPU_BOUND_FETCH` shortens the backoff so that the loop, not the
fetcher, is the limit; both floors are reported, and every worker ratio is taken against both.

The same session also measures the velocity worker with the ingest's fetch backoff at the default and at the
CPU-bound value (``SALEPULSE_INGEST_FETCH_BACKOFF_MS``), alternating, ``repeats`` times, on the same seeded events:
the machine is shared, so the spread is reported with the medians.
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path
from typing import Any

from salepulse.consumers.tools.harness import Pipeline
from salepulse.schemas.codec import Codec
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

DEFAULT_FETCH: dict[str, Any] = {}
"""librdkafka's defaults (fetch.queue.backoff.ms 1000, queued.min.messages 100000, queued.max.messages.kbytes 65536)."""

CPU_BOUND_FETCH: dict[str, Any] = {"fetch.queue.backoff.ms": 10}
"""A fetch pause short enough that the consume loop, not the fetcher, sets the rate."""

FETCHES = {"default": DEFAULT_FETCH, "cpu_bound": CPU_BOUND_FETCH}
INGEST_BACKOFF_MS = {"default": 1000, "cpu_bound": CPU_BOUND_FETCH["fetch.queue.backoff.ms"]}


def consume_decode_rate(settings: Settings, n_events: int, fetch: dict[str, Any]) -> float:
    """Events/s of a plain confluent-kafka consumer that decodes every message of the event topics (no processing),
    from its first message to its ``n_events``-th, with ``fetch`` added to its config."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    codec = Codec()
    consumer = Consumer(settings.kafka_config(**{"group.id": f"bench-floor-{uuid.uuid4().hex}",
                                                 "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                                 **fetch}))
    # Assigned, not subscribed: no group join to wait for (on a busy shared broker one took minutes), and the
    # clock starts at the first message anyway.
    metadata = consumer.list_topics(timeout=30)
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for topic in settings.topics.events
                     for partition in metadata.topics[topic].partitions])
    from salepulse.streams.tools.bench import consume_decode

    seen, elapsed = consume_decode(consumer, codec, n_events)
    if seen < n_events:
        raise AssertionError(f"the floor consumer read {seen} of {n_events} events within its wait")
    return seen / elapsed if elapsed else 0.0


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated rates (rounded), and the runs themselves.

    >>> spread([3.0, 1.0, 2.0])
    {'median': 2.0, 'min': 1.0, 'max': 3.0, 'runs': [3.0, 1.0, 2.0]}
    """
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1), "runs": [round(v, 1) for v in values]}


def ratio(rate: float | None, floor: float | None) -> float | None:
    """``rate / floor`` rounded to 3 places; None when either is missing.

    >>> ratio(50.0, 200.0), ratio(None, 200.0), ratio(1.0, 0.0)
    (0.25, None, None)
    """
    return round(rate / floor, 3) if rate and floor else None


def bench_floor(bootstrap: str, dsn: str, state_dir: Path, n_events: int, repeats: int = 3,
                all_roles: bool = True, backoff_events: int = 0) -> dict[str, Any]:
    """Both floors and the velocity worker under both ingest fetch settings, ``repeats`` times, alternating; then
    one worker with every role at the better setting. Every run has its own topics, filled with the same events."""
    from salepulse.streams.tools.bench import prefill, worker_rate

    floors: dict[str, list[float]] = {name: [] for name in FETCHES}
    workers: dict[str, list[dict[str, Any]]] = {name: [] for name in FETCHES}
    for repeat in range(repeats):
        # Alternate the order so that neither setting always runs first (the box's load drifts).
        for name in (("default", "cpu_bound") if repeat % 2 == 0 else ("cpu_bound", "default")):
            pipeline = Pipeline(bootstrap, dsn, state_dir / f"floor-{repeat}-{name}", partitions=4,
                                extra_env={"SALEPULSE_INGEST_FETCH_BACKOFF_MS": str(INGEST_BACKOFF_MS[name])})
            try:
                prefill(pipeline, n_events, seed=11)
                floors[name].append(consume_decode_rate(pipeline.settings, n_events, FETCHES[name]))
                workers[name].append(worker_rate(pipeline, n_events, "velocity"))
                log.info("floor run", repeat=repeat, fetch=name, floor=round(floors[name][-1]),
                         worker=workers[name][-1]["events_per_s"])
            finally:
                pipeline.close()
    result: dict[str, Any] = {
        "events": n_events, "repeats": repeats,
        "fetch": {name: FETCHES[name] for name in FETCHES},
        "floor_per_s": {name: spread(values) for name, values in floors.items()},
        "velocity_worker_per_s": {name: spread([w["events_per_s"] for w in runs]) for name, runs in workers.items()},
        "velocity_worker_ingest_per_s": {name: spread([w["ingest_per_s"] for w in runs])
                                         for name, runs in workers.items()},
    }
    medians = {name: result["velocity_worker_per_s"][name]["median"] for name in FETCHES}
    result["better_ingest_fetch"] = max(medians, key=lambda name: medians[name])
    if backoff_events:
        result["backoff_check"] = backoff_check(bootstrap, dsn, state_dir, backoff_events)
    if all_roles:
        pipeline = Pipeline(bootstrap, dsn, state_dir / "floor-all", partitions=4, extra_env={
            "SALEPULSE_INGEST_FETCH_BACKOFF_MS": str(INGEST_BACKOFF_MS[result["better_ingest_fetch"]])})
        try:
            prefill(pipeline, n_events, seed=11)
            result["worker_all_roles"] = worker_rate(pipeline, n_events, "all")
        finally:
            pipeline.close()
    return result


def backoff_check(bootstrap: str, dsn: str, state_dir: Path, n_events: int, repeats: int = 2) -> dict[str, Any]:
    """Both floors on topics of ONE partition each, where the browse partition alone holds more than
    ``queued.min.messages`` (100,000) events: there the default fetch does pause, and the two floors differ by what
    the pause costs. (On the bench's 4 partitions no partition's queue reaches that, so the backoff never engages
    and the two floors differ only by the machine's noise.)"""
    from salepulse.streams.tools.bench import prefill

    pipeline = Pipeline(bootstrap, dsn, state_dir / "floor-one-partition", partitions=1)
    floors: dict[str, list[float]] = {name: [] for name in FETCHES}
    try:
        prefill(pipeline, n_events, seed=11)
        for repeat in range(repeats):
            for name in (("default", "cpu_bound") if repeat % 2 == 0 else ("cpu_bound", "default")):
                floors[name].append(consume_decode_rate(pipeline.settings, n_events, FETCHES[name]))
    finally:
        pipeline.close()
    return {"events": n_events, "partitions": 1, "floor_per_s": {name: spread(v) for name, v in floors.items()}}


def floor_ratios(floor: dict[str, Any], pipeline: dict[str, Any] | None = None) -> list[tuple[str, float, str]]:
    """(what, events/s, source) of every worker rate the ratios are taken of: this section's own runs, and the
    pipeline section's workers when the full bench ran it."""
    rows = [(f"velocity worker, ingest fetch {name} (median of {floor['repeats']})",
             floor["velocity_worker_per_s"][name]["median"], "floor section") for name in FETCHES]
    if "worker_all_roles" in floor:
        everything = floor["worker_all_roles"]
        rows.append((f"every role, sale state (ingest fetch {floor['better_ingest_fetch']})",
                     everything["velocity_per_s"], "floor section"))
        if "preferences_per_s" in everything:
            rows.append(("every role, member preferences", everything["preferences_per_s"], "floor section"))
    if pipeline:
        rows.append(("velocity worker", pipeline["worker"]["events_per_s"], "pipeline section"))
        rows.append(("every role, sale state", pipeline["worker_all_roles"]["velocity_per_s"], "pipeline section"))
        rows.append(("every role, member preferences", pipeline["worker_all_roles"]["preferences_per_s"],
                     "pipeline section"))
    return rows


def _spread_text(s: dict[str, Any]) -> str:
    return f"{s['median']:,.0f}/s (min {s['min']:,.0f}, max {s['max']:,.0f})"


def _backoff_lines(check: dict[str, Any] | None) -> list[str]:
    if not check:
        return []
    f = check["floor_per_s"]
    return [f"Does the backoff engage? Same floors on topics of one partition ({check['events']:,} events, so the "
            "browse partition alone passes `queued.min.messages`, 100,000): defaults "
            f"{_spread_text(f['default'])}, CPU-bound {_spread_text(f['cpu_bound'])} "
            f"(ratio {ratio(f['cpu_bound']['median'], f['default']['median'])}). On the 4 partitions above no "
            "partition's queue reaches that threshold (nor 64 MB), so the backoff never engages there.", ""]


def _us(rate: float) -> str:
    return f"{1e6 / rate:.2f}" if rate else "n/a"


def render_floor(floor: dict[str, Any], pipeline: dict[str, Any] | None = None) -> list[str]:
    """The floor section of BENCHMARKS.md."""
    cpu, default = floor["floor_per_s"]["cpu_bound"]["median"], floor["floor_per_s"]["default"]["median"]
    lines = [
        "## Consume+decode floor and the ingest's fetch settings (issue #13)",
        "",
        f"{floor['events']:,} pre-filled events per run, {floor['repeats']} runs per setting, alternating; each run "
        "on its own topics with the same seeded events. Medians, with min and max: the box is shared.",
        "",
        "| | librdkafka defaults | CPU-bound fetch (`fetch.queue.backoff.ms` "
        f"{CPU_BOUND_FETCH['fetch.queue.backoff.ms']}) |",
        "|---|---|---|",
        f"| plain consume+decode floor | {_spread_text(floor['floor_per_s']['default'])} | "
        f"{_spread_text(floor['floor_per_s']['cpu_bound'])} |",
        f"| floor, µs per event | {_us(default)} | {_us(cpu)} |",
        f"| velocity worker (ingest with that fetch setting) | "
        f"{_spread_text(floor['velocity_worker_per_s']['default'])} | "
        f"{_spread_text(floor['velocity_worker_per_s']['cpu_bound'])} |",
        f"| velocity worker, ingest stage alone | {_spread_text(floor['velocity_worker_ingest_per_s']['default'])} | "
        f"{_spread_text(floor['velocity_worker_ingest_per_s']['cpu_bound'])} |",
        "",
        f"Better ingest setting in this run: **{floor['better_ingest_fetch']}**.",
        "",
        *_backoff_lines(floor.get("backoff_check")),
        "| rate | events/s | / default floor | / CPU-bound floor | from |",
        "|---|---|---|---|---|",
        *[f"| {what} | {rate:,.0f} | {ratio(rate, default)} | {ratio(rate, cpu)} | {source} |"
          for what, rate, source in floor_ratios(floor, pipeline)],
        "",
    ]
    return lines
