"""Bench sections of issue #13's second landing: the garbage-collector tuning on a real worker, and rankings served
off the learning path against the main port, each A/B in the same run (the box is shared: absolute rates drift
between runs, same-run ratios much less).

- ``gc``: the velocity worker's rate on the same pre-filled events, ``SALEPULSE_GC_GEN0_THRESHOLD=0`` (CPython's
  collector as it comes) against the default (start-up heap frozen, gen 0 every 50,000 allocations), alternating.
- ``serving``: one worker with every role, ``SALEPULSE_SERVING_PORT`` set, simulated traffic at ``rate`` events/s;
  the ranking load and the event → ranking probe run against the main port and the serving port in turns.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

GC_VARIANTS: dict[str, str | None] = {"CPython defaults": "0", "tuned (default)": None}


def bench_gc(bootstrap: str, dsn: str, state_dir: Path, n_events: int, repeats: int = 2) -> dict[str, Any]:
    """Velocity worker events/s with and without the collector tuning, alternating, ``repeats`` runs each."""
    from salepulse.streams.tools.bench import prefill, worker_rate

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in GC_VARIANTS}
    for repeat in range(repeats):
        for name, threshold in GC_VARIANTS.items():
            env = {} if threshold is None else {"SALEPULSE_GC_GEN0_THRESHOLD": threshold}
            pipeline = Pipeline(bootstrap, dsn, state_dir / f"gc-{repeat}-{threshold}", partitions=4, extra_env=env)
            try:
                prefill(pipeline, n_events, seed=11)
                runs[name].append(worker_rate(pipeline, n_events, "velocity"))
            finally:
                pipeline.close()
    summary = {name: {"median_per_s": round(statistics.median(r["events_per_s"] for r in rs), 1),
                      "runs": [r["events_per_s"] for r in rs]} for name, rs in runs.items()}
    base, tuned = (summary[name]["median_per_s"] for name in GC_VARIANTS)
    return {"events": n_events, "repeats": repeats, "variants": summary,
            "ratio_tuned_to_defaults": round(tuned / base, 3) if base else None}


def bench_serving(bootstrap: str, dsn: str, state_dir: Path, rate: float, seconds: float,
                  turns: int = 2, probes: int = 15, snapshot_s: float = 0.0) -> dict[str, Any]:
    """Ranking latency (``ranking_load`` at 200 req/s requested, ``seconds`` per port and turn) and event → ranking
    (``probes`` new members per port and turn) on the main port and the serving port, in turns, while simulated
    traffic arrives at ``rate`` events/s; one worker with every role (the demo's layout)."""
    from salepulse.deploy.kafka.processes import free_port
    from salepulse.streams.tools.bench import (
        _has_sale,
        probe_ranking_reflects,
        probe_world,
        ranking_load,
    )

    serving = free_port()
    pipeline = Pipeline(bootstrap, dsn, state_dir / "serving", partitions=4,
                        extra_env={"SALEPULSE_SERVING_PORT": str(serving),
                                   "SALEPULSE_SERVING_SNAPSHOT_S": str(snapshot_s)})
    tag = f"sv{uuid.uuid4().hex[:4]}"
    ports = {"main": pipeline.settings.http_port, "serving": serving}
    mode = f"forked snapshots every {snapshot_s:g} s" if snapshot_s > 0 else "a thread reading the live state"
    results: dict[str, Any] = {"offered_events_per_s": rate, "seconds_per_load": seconds, "turns": turns,
                               "serving_mode": mode,
                               **{name: {"load": [], "reflects": []} for name in ports}}
    try:
        background = probe_world(pipeline.settings, tag, rate, int(time.time() * 1000))
        pipeline.start_worker()
        wait_until(lambda: _has_sale(pipeline, f"{tag}-big"), 60, "the probe catalogue to load")
        clients = {name: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) for name, port in ports.items()}
        probe_publisher = Publisher(pipeline.settings, **{"linger.ms": 0})
        with background:
            time.sleep(3)  # let the load settle
            for turn in range(turns):
                order = list(ports) if turn % 2 == 0 else list(reversed(ports))
                for n, name in enumerate(order):
                    first = (turn * len(ports) + n) * probes  # fresh members and sales for every probe run
                    results[name]["reflects"].append(
                        probe_ranking_reflects(probe_publisher, clients[name], tag, probes, start=first))
                for name in order:
                    results[name]["load"].append(ranking_load(f"http://127.0.0.1:{ports[name]}", tag, rps=200,
                                                              seconds=seconds))
            results["background_events_sent"] = background.sent
            results["lag_at_end"] = pipeline.lag()[0]
        results["snapshot_log"] = [line for line in pipeline.worker_log.read_text().splitlines()
                                   if "ranking snapshots" in line][-3:]
        probe_publisher.flush(10)
        for client in clients.values():
            client.close()
        return results
    finally:
        pipeline.close()


def render_speed(gc_result: dict[str, Any] | None, serving: dict[str, Any] | None) -> list[str]:
    """The markdown of either section (``gc`` or ``serving``; pass the other as None)."""
    lines: list[str] = []
    if gc_result:
        lines += ["## The garbage collector on a velocity worker (issue #13)", "",
                  f"Velocity worker (`SALEPULSE_WORKER_ROLE=velocity`) on {gc_result['events']:,} pre-filled events, "
                  f"{gc_result['repeats']} runs per variant, alternating (the box is shared: compare the ratio).", "",
                  "| garbage collector | events/s, median | runs |", "|---|---|---|"]
        for name, figures in gc_result["variants"].items():
            runs = ", ".join(f"{r:,.0f}" for r in figures["runs"])
            lines.append(f"| {name} | {figures['median_per_s']:,.0f} | {runs} |")
        lines += ["", f"Ratio tuned / defaults: **{gc_result['ratio_tuned_to_defaults']}**.", ""]
    if serving:
        lines += ["## Rankings off the learning path (issue #13)", "",
                  f"One worker with every role, `SALEPULSE_SERVING_PORT` set (served by "
                  f"{serving.get('serving_mode', 'a thread reading the live state')}), "
                  f"{serving['offered_events_per_s']:,.0f} "
                  f"simulated events/s offered; main port and serving port in turns ({serving['turns']} turns, "
                  f"{serving['seconds_per_load']:.0f} s of ranking load per port and turn, 200 req/s requested "
                  "from one synchronous client). Latency is the client's full HTTP round trip.", "",
                  "| port | turn | 200 sales p50 / p99 ms | 5,000 products p50 / p99 ms | achieved req/s "
                  "| event → ranking p50 / p99 ms (missed) |", "|---|---|---|---|---|---|"]
        for name in ("main", "serving"):
            for turn, (load, reflects) in enumerate(zip(serving[name]["load"], serving[name]["reflects"],
                                                        strict=True), start=1):
                sales, products = load["sales_ms"], load["products_5000_ms"]
                lines.append(f"| {name} | {turn} | {sales.get('p50')} / {sales.get('p99')} | "
                             f"{products.get('p50')} / {products.get('p99')} | {load['achieved_rps']} | "
                             f"{reflects.get('p50')} / {reflects.get('p99')} ({reflects['missed']}) |")
        lines += ["", f"Background events sent: {serving['background_events_sent']:,}; worker lag at the end: "
                      f"{serving['lag_at_end']:,}.", ""]
        if serving.get("snapshot_log"):
            lines += ["What the forks cost the worker's loop (its log):", "", "```",
                      *serving["snapshot_log"], "```", ""]
    return lines
