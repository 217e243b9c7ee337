"""The whole product end to end (issue #13, "every role together"): events produced → counted in sale state,
learned by preferences, written to ClickHouse.

The demo's roles start on empty topics (the catalogue already on them) and hold their partitions; then the run's
events, simulated and encoded beforehand (a Python producer that also simulates runs at a worker's rate and would
cap the figure), are produced as fast as one producer can while the roles read them. A stage is done when it has
handled every event of the run:

- ``velocity``: every fact counted into sale state (counted, or dropped as a redelivery);
- ``preferences``: every member signal learned;
- ``clickhouse``: every fact written by the sink.

The end to end figure is ``events / (last stage done - first event produced)``. Two layouts: ``all`` (one worker
with every role, and the sink, as ``make demo`` runs them) and ``split`` (a velocity worker, a preferences worker
and the sink). The sink and the producer are threads of the bench's process. Then, with the sink stopped,
ClickHouse's totals are compared with what was produced (views + carts + orders = the events, and the units
ordered): "nothing lost" at that rate. The CPU per event of each process (the local broker's too, when it runs on
this host) says where the 20 µs per event that 100,000 events/s leave on 2 cores go.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from salepulse.consumers.io.clickhouse_sink import FACTS_TABLE
from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.deploy.kafka.processes import cpu_seconds, tree_cpu_seconds
from salepulse.schemas.codec import Codec
from salepulse.streams.io.lag import end_offsets
from salepulse.streams.tools.bench import broker_pid
from salepulse.streams.tools.bench_scale import encoded_events, split_between

STAGES = ("velocity", "preferences", "clickhouse")


def stages_done(velocity: dict[str, Any], preferences: dict[str, Any], facts_written: int,
                n_events: int) -> dict[str, bool]:
    """Which stages have handled every one of ``n_events``, from the workers' ``/stats`` and the sink's rows.

    >>> v = {"events_processed": 10, "facts_sent": 10, "facts_counted": 9, "facts_duplicate": 1,
    ...      "signals_sent": 4}
    >>> stages_done(v, {"signals_learned": 3}, facts_written=10, n_events=10)
    {'velocity': True, 'preferences': False, 'clickhouse': True}
    >>> stages_done({**v, "events_processed": 9}, {"signals_learned": 4}, facts_written=10, n_events=10)
    {'velocity': False, 'preferences': False, 'clickhouse': False}
    """
    if velocity["events_processed"] < n_events:  # facts_sent and signals_sent are final only then
        return dict.fromkeys(STAGES, False)
    return {"velocity": velocity["facts_counted"] + velocity["facts_duplicate"] >= velocity["facts_sent"],
            "preferences": preferences["signals_learned"] >= velocity["signals_sent"],
            "clickhouse": facts_written >= velocity["facts_sent"]}


def facts_in_clickhouse(pipeline: Pipeline, sale_prefix: str) -> dict[str, int]:
    """Facts (deduplicated by identity, as every reader sees them) and units ordered in ClickHouse for the sales whose
    id starts with ``sale_prefix``."""
    facts, units = pipeline.clickhouse().query(
        f"SELECT count(), sumIf(units, kind = 'order') FROM {FACTS_TABLE} FINAL "
        "WHERE startsWith(sale_id, {p:String})",
        parameters={"p": sale_prefix}).result_rows[0]
    return {"facts": int(facts), "units": int(units or 0)}


def bench_end_to_end(bootstrap: str, dsn: str, state_dir: Path, n_events: int, layout: str = "all",
                     seed: int = 11, timeout_s: float = 900.0) -> dict[str, Any]:
    """``n_events`` events through every role in ``layout`` (``all`` or ``split``); see the module."""
    pipeline = Pipeline(bootstrap, dsn, state_dir / f"e2e-{layout}", partitions=4)
    written = [0]

    def on_written(batch: Any) -> None:
        written[0] += len(batch.columns.get(FACTS_TABLE, [[]])[0])

    try:
        messages = encoded_events(pipeline, n_events, seed)  # the catalogue is produced now, the events later
        codec = Codec()
        units = sum(line["quantity"] for topic, value, _ in messages if topic == pipeline.settings.topics.order
                    for line in codec.decode(value)[1]["lines"])
        before = facts_in_clickhouse(pipeline, f"sim{seed}-")  # the bench's ClickHouse: count what this run adds
        pipeline.start_sink(on_written=on_written)
        roles = ("velocity", "preferences") if layout == "split" else ("all",)
        pipeline.start_worker(role=roles[0])
        if layout == "split":
            pipeline.start_preferences_worker()
        settings = pipeline.settings
        groups = [settings.groups.ingest, *(settings.groups.worker(role) for role in roles)]
        wait_until(lambda: split_between(settings, groups, 1), 180, f"the workers to hold partitions in {groups}",
                   every=0.5)
        pids = {f"{role} worker": process.pid for role, process in
                zip(roles, (pipeline.worker, pipeline.preferences_worker), strict=False)}
        pids |= {"bench process (sink, producer)": os.getpid(), "broker": broker_pid(settings.bootstrap)}
        pids = {name: pid for name, pid in pids.items() if pid}
        # A worker's ingest runs in a child process of it (SALEPULSE_INGEST_PROCESS): its CPU is the worker's.
        cpu_of = {name: tree_cpu_seconds if name.endswith("worker") else cpu_seconds for name in pids}
        cpu_first = {name: cpu_of[name](pid) for name, pid in pids.items()}
        started = time.perf_counter()
        produced: dict[str, float] = {}

        def produce() -> None:
            with Publisher(settings) as publisher:
                for topic, value, key in messages:
                    publisher.send_raw(topic, value, key)
            produced["seconds"] = time.perf_counter() - started
            # what is on the topics: the simulator's stream can hold a few events fewer than asked for
            produced["events"] = sum(end_offsets(settings, list(settings.topics.events)).values())

        producer = threading.Thread(target=produce, name="produce", daemon=True)
        producer.start()
        done: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        with tqdm(total=len(messages), desc=f"end to end ({layout})", unit="ev") as bar:
            while len(done) < len(STAGES):
                if time.monotonic() > deadline or ("events" not in produced and not producer.is_alive()):
                    raise AssertionError(f"end to end ({layout}): {sorted(done)} done of {STAGES} after "
                                         f"{time.monotonic() - deadline + timeout_s:.0f} s; produced {produced}")
                velocity = pipeline.stats()
                preferences = pipeline.get("/stats", pipeline.preferences_port) if layout == "split" else velocity
                now = time.perf_counter()
                bar.update(min(velocity["events_processed"], bar.total) - bar.n)
                if "events" in produced:
                    finished = stages_done(velocity, preferences, written[0], int(produced["events"]))
                    for stage in (stage for stage, yes in finished.items() if yes and stage not in done):
                        done[stage] = now
                time.sleep(0.05)
        cpu_us = {name: round((cpu_of[name](pid) - cpu_first[name]) * 1e6 / produced["events"], 2)
                  for name, pid in pids.items()}
        pipeline.stop_sink()
        after = facts_in_clickhouse(pipeline, f"sim{seed}-")
        totals = {name: after[name] - before[name] for name in after}
        events = int(produced["events"])
        return {"layout": layout, "events": events, "units_produced": units,
                "events_processed": velocity["events_processed"], "facts_sent": velocity["facts_sent"],
                "deadletters": velocity["deadletters"], "produce_s": round(produced["seconds"], 2),
                "events_per_s": round(events / (max(done.values()) - started), 1),
                **{f"{stage}_per_s": round(events / (at - started), 1) for stage, at in done.items()},
                "cpu_us_per_event": {**cpu_us, "total": round(sum(cpu_us.values()), 2)},
                "clickhouse_totals": totals,
                "exact": velocity["events_processed"] == events and totals["units"] == units
                and totals["facts"] == velocity["facts_sent"]}
    finally:
        pipeline.close()


def render_end_to_end(runs: list[dict[str, Any]]) -> list[str]:
    """The markdown of the end-to-end runs.

    >>> run = {"layout": "all", "events": 1000, "units_produced": 30, "events_per_s": 500.0, "velocity_per_s": 900.0,
    ...        "preferences_per_s": 500.0, "clickhouse_per_s": 800.0, "exact": True, "produce_s": 0.5,
    ...        "events_processed": 1000, "facts_sent": 1000, "deadletters": 0,
    ...        "clickhouse_totals": {"facts": 1000, "units": 30},
    ...        "cpu_us_per_event": {"all worker": 60.0, "broker": 15.0, "total": 75.0}}
    >>> render_end_to_end([run])[-1].split(" | ")[5:]
    ['all worker 60.0, broker 15.0; total 75.0', 'exact: 1,000 events handled, 1,000 facts, 30 units |']
    """
    lines = ["Every role together (`streams/tools/bench_e2e.py`): the roles hold their partitions, then one producer "
             "writes the run's events (encoded beforehand) as fast as it can while they read them. A stage's rate "
             "is the run's events over the time from the first event produced until that stage had handled them "
             "all; the end to end figure is the slowest stage's (target: 100,000 events/s, nothing lost). CPU: each "
             "process over the same time, per event; the bench process holds the sink and the producer.", "",
             "| layout | end to end events/s | sale state | preferences | ClickHouse | CPU µs per event | "
             "ClickHouse against what was produced |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        cpu = run["cpu_us_per_event"]
        parts = ", ".join(f"{name.replace('_', ' ')} {us:.1f}" for name, us in cpu.items() if name != "total")
        totals = run["clickhouse_totals"]
        found = totals["facts"]
        verdict = (f"exact: {run['events_processed']:,} events handled, {found:,} facts, {totals['units']:,} units"
                   if run["exact"] else
                   f"**not exact**: {run['events_processed']:,} of {run['events']:,} events handled, {found:,} of "
                   f"{run['facts_sent']:,} facts, {totals['units']:,} of {run['units_produced']:,} units")
        lines.append(f"| {run['layout']} | {run['events_per_s']:,.0f} | {run['velocity_per_s']:,.0f} | "
                     f"{run['preferences_per_s']:,.0f} | {run['clickhouse_per_s']:,.0f} | {parts}; total "
                     f"{cpu['total']:.1f} | {verdict} |")
    return lines
