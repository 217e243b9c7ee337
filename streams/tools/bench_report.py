"""The report of ``salepulse bench``: BENCHMARKS.md rendered from the results of one run (see
:mod:`salepulse.streams.tools.bench`), with each target's verdict."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), Python {python}"


def _fmt(stats: dict[str, Any]) -> str:
    if not stats or not stats.get("n"):
        return "no samples"
    missed = f", missed {stats['missed']}" if stats.get("missed") else ""
    return f"p50 {stats['p50']:.1f} ms, p99 {stats['p99']:.1f} ms (n={stats['n']}{missed})"


def _floor(lat: dict[str, Any], kind: str) -> str:
    """The same-run floor of a ranking row: a bare process answering the same bytes under the same load.

    >>> _floor({"ranking_floor": {"sales_ms": {"n": 9, "p50": 1.0, "p99": 4.25}}}, "sales_ms")
    '; bare process, same bytes, same load: p99 4.2 ms'
    >>> _floor({}, "sales_ms")
    ''
    """
    stats = lat.get("ranking_floor", {}).get(kind, {})
    return f"; bare process, same bytes, same load: p99 {stats['p99']:.1f} ms" if stats.get("n") else ""


def _errors(rank: dict[str, Any]) -> str:
    """Failed ranking requests, by status or error, when there were any.

    >>> _errors({"errors": 2, "failures": {"ReadError": 2}}), _errors({"errors": 0})
    (', 2 failed (ReadError 2)', '')
    """
    if not rank.get("errors"):
        return ""
    kinds = ", ".join(f"{kind} {n}" for kind, n in rank.get("failures", {}).items())
    return f", {rank['errors']} failed" + (f" ({kinds})" if kinds else "")


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


LAYOUTS = {"split": "a velocity worker and a preferences worker", "all": "one worker with every role"}


def latency_table(lat: dict[str, Any]) -> list[str]:
    rank = lat["ranking_under_load"]
    return [
        f"## Latencies at {lat['offered_events_per_s']:,.0f} events/s offered, {LAYOUTS[lat['layout']]}",
        "",
        "| path | latency |",
        "|---|---|",
        f"| event → visible in ClickHouse | {_fmt(lat['event_to_clickhouse_ms'])} |",
        f"| order → GET /sales/{{id}} | {_fmt(lat['order_to_sales_view_ms'])} |",
        f"| order crossing threshold → alert on the topic | {_fmt(lat['order_to_alert_ms'])} |",
        f"| order → member ranking reflects it | {_fmt(lat['event_to_ranking_ms'])} |",
        f"| GET /members/{{id}}/sales (200+ open sales) | {_fmt(rank['sales_ms'])} at {rank['achieved_rps']} req/s |",
        f"| GET /members/{{id}}/products (5,000 products) | {_fmt(rank['products_5000_ms'])} |",
        f"| POST /events, 100 per request | {_fmt(lat['collector']['request_ms'])}, "
        f"{lat['collector']['accepted_events_per_s']:,.0f} events/s |",
        f"| consumer lag at the end | worker {lat['lag_at_end']['worker']:,}, sink {lat['lag_at_end']['sink']:,} |",
        "",
    ]


def render_markdown(r: dict[str, Any]) -> str:
    pure, pipe, lat, sink = r["pure"], r["pipeline"], r["latency"], r["sink"]
    prefs = pure["preferences"]
    worker = pipe["worker"]["events_per_s"]
    everything = pipe["worker_all_roles"]
    vis = lat["event_to_clickhouse_ms"]
    rank = lat["ranking_under_load"]
    coll = lat["collector"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {r['date']} with `{r['command']}` on {r['machine']}; whole run {r['seconds']} s. "
        "Local single-node Kafka (KRaft) and embedded chdb on the same 2 cores as the worker, the load generator "
        "and the probes, so every latency below includes that contention. Raw figures: `BENCHMARKS.json`.",
        "",
        "## Targets",
        "",
        "Latency targets are read at the offered 5,000 events/s the issues name, with a velocity worker and a "
        "preferences worker (`SALEPULSE_WORKER_ROLE`); the tables after it repeat the probes on one worker with "
        "every role.",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *_end_to_end_row(r.get("e2e")),
        f"| velocity pipeline >= 20,000 events/s per worker (events → counted in sale state; velocity worker) | "
        f"{worker:,.0f} events/s (one worker with every role: {everything['events_per_s']:,.0f}) | "
        f"{_verdict(worker >= 20_000)} |",
        f"| ratio to raw consume+decode (goal >= 0.5) | {pipe['ratio_to_baseline']} "
        f"(baseline {pipe['baseline_consume_decode_per_s']:,.0f}/s) | "
        f"{_verdict((pipe['ratio_to_baseline'] or 0) >= 0.5)} |",
        f"| event → visible in ClickHouse p99 <= 2 s at 5,000/s | {_fmt(vis)} | "
        f"{_verdict(vis.get('p99', 1e9) <= 2000)} |",
        f"| pre-sale forecast + plan of 5,000 skus < 1 s (pure) | {pure['presale']['forecast_and_plan_ms']} ms | "
        f"{_verdict(pure['presale']['forecast_and_plan_ms'] < 1000)} |",
        f"| validation boundary <= 5% of the velocity worker's time | "
        f"{pure['validation']['validation_us_per_event']} µs/event × {worker:,.0f} events/s = "
        f"{pure['validation']['validation_us_per_event'] * worker / 1e4:.1f}% | "
        f"{_verdict(pure['validation']['validation_us_per_event'] * worker / 1e4 <= 5)} |",
        f"| forecast update per order <= 50 µs (pure) | {pure['forecast_update_and_quantiles_us']} µs with quantiles, "
        f"{pure['forecast_update_us']} µs update only | {_verdict(pure['forecast_update_and_quantiles_us'] <= 50)} |",
        f"| order → forecast at GET /sales/{{id}} p99 <= 1 s | {_fmt(lat['order_to_sales_view_ms'])} | "
        f"{_verdict(lat['order_to_sales_view_ms'].get('p99', 1e9) <= 1000)} |",
        f"| order crossing threshold → alert p99 <= 2 s | {_fmt(lat['order_to_alert_ms'])} | "
        f"{_verdict(lat['order_to_alert_ms'].get('p99', 1e9) <= 2000)} |",
        f"| ranking 200 sales p99 <= 10 ms (HTTP, under load) | {_fmt(rank['sales_ms'])} at "
        f"{rank['achieved_rps']} req/s{_errors(rank)}{_floor(lat, 'sales_ms')} | "
        f"{_verdict(rank['sales_ms'].get('p99', 1e9) <= 10 and not rank.get('errors'))} |",
        f"| ranking 5,000 products p99 <= 20 ms (HTTP, under load) | {_fmt(rank['products_5000_ms'])}"
        f"{_floor(lat, 'products_5000_ms')} | "
        f"{_verdict(rank['products_5000_ms'].get('p99', 1e9) <= 20 and not rank.get('errors'))} |",
        f"| event → ranking reflects it p99 <= 1 s | {_fmt(lat['event_to_ranking_ms'])} | "
        f"{_verdict(lat['event_to_ranking_ms'].get('p99', 1e9) <= 1000)} |",
        f"| POST /events >= 20,000 events/s in batches of 100, one process (`salepulse collect`) | "
        f"{coll['accepted_events_per_s']:,.0f} events/s | {_verdict(coll['accepted_events_per_s'] >= 20_000)} |",
        f"| POST /events p99 <= 50 ms per request | {_fmt(coll['request_ms'])} | "
        f"{_verdict(coll['request_ms'].get('p99', 1e9) <= 50)} |",
        f"| sink >= 200,000 rows/s into chdb | {sink['sink_path_rows_per_s']:,.0f} rows/s (ratio to bare insert "
        f"{sink['ratio_to_bare']}, bare {sink['bare_insert_rows_per_s']:,.0f}) | "
        f"{_verdict(sink['sink_path_rows_per_s'] >= 200_000)} |",
        "",
        *latency_table(r["latency_all"]),
        *latency_table(r["latency_light"]),
        "## Pure logic (in process)",
        "",
        "| operation | µs per call |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in pure.items() if name != "preferences"],
        "",
        f"Preference model: {json.dumps(prefs)}",
        "",
        "## Live run details",
        "",
        f"- Offered background load: {lat['offered_events_per_s']:,.0f} events/s of simulated traffic "
        f"({lat['background_events_sent']:,} sent); consumer lag at the end: worker {lat['lag_at_end']['worker']:,}, "
        f"sink {lat['lag_at_end']['sink']:,} messages.",
        f"- Pipeline run: {pipe['events']:,} pre-filled events ({pipe['units']:,} units), "
        f"{pipe['worker']['events_processed']:,} processed. Per stage, from the worker's first event until the "
        f"stage had handled all of them. Velocity worker (`SALEPULSE_WORKER_ROLE=velocity`, the figure above): "
        f"ingest {pipe['worker']['ingest_per_s']:,.0f}/s, facts counted into sale state "
        f"{pipe['worker']['velocity_per_s']:,.0f}/s. One worker doing everything (`all`, as in `make demo`): "
        f"ingest {everything['ingest_per_s']:,.0f}/s, sale state {everything['velocity_per_s']:,.0f}/s, "
        f"member preferences {everything['preferences_per_s']:,.0f}/s." + _cpu_per_event(pipe['worker'], everything),
        f"- Ranking load: requested {rank['requested_rps']} req/s, achieved {rank['achieved_rps']} req/s "
        + (f"({rank['concurrency']} client threads in a process of their own, not the one generating the load; "
           if rank.get("client") == "own process" else "(one client in the bench process; ")
        + "latency is the full HTTP round trip)"
        + ("; the floor: the same requests to a bare process answering the same bytes under the same load."
           if "ranking_floor" in lat else "."),
        f"- Collector (`salepulse collect`): {coll['request_ms']['n']} requests of {coll['batch']} events"
        + (f", from {coll['clients']} client processes with {coll['concurrency']} in flight each."
           if "clients" in coll else "."),
        f"- Sink: {sink['rows']:,} rows in batches of {sink['batch_rows']:,}.",
        "",
    ]
    return "\n".join(lines)


def _cpu_per_event(velocity: dict[str, Any], everything: dict[str, Any]) -> str:
    """The pipeline run's CPU per event (worker, and the broker when it ran on this host), against the budget.

    >>> text = _cpu_per_event({"cpu_us_per_event": {"worker": 30.0, "broker": 9.5}},
    ...                       {"cpu_us_per_event": {"worker": 60.0}})
    >>> text[text.index(":") + 2:text.index(" (")]
    'velocity worker 30.0 µs + broker 9.5 µs; every role 60.0 µs'
    >>> _cpu_per_event({}, {})
    ''
    """
    parts = []
    for name, run in (("velocity worker", velocity), ("every role", everything)):
        cpu = run.get("cpu_us_per_event") or {}
        if "worker" in cpu:
            broker = f" + broker {cpu['broker']:.1f} µs" if "broker" in cpu else ""
            parts.append(f"{name} {cpu['worker']:.1f} µs{broker}")
    if not parts:
        return ""
    return (" CPU per event, from the first event until every stage had handled all: " + "; ".join(parts)
            + " (the budget of 100,000 events/s on 2 cores is 20 µs for everything).")


def _end_to_end_row(runs: list[dict[str, Any]] | None) -> list[str]:
    """The targets table's row for every role together (``bench_e2e``), from its best layout; none without it.

    >>> runs = [{"layout": "all", "events_per_s": 9000.0, "exact": True},
    ...         {"layout": "split", "events_per_s": 12000.0, "exact": True}]
    >>> _end_to_end_row(runs)[0].split(" | ")[1:]
    ['12,000 events/s (split layout; all: 9,000), exact', '**missed** |']
    """
    if not runs:
        return []
    best = max(runs, key=lambda run: run["events_per_s"])
    others = "; ".join(f"{run['layout']}: {run['events_per_s']:,.0f}" for run in runs if run is not best)
    exact = "exact" if all(run["exact"] for run in runs) else "**not exact** (see the section)"
    return [f"| every role together >= 100,000 events/s end to end, nothing lost (events produced → sale state, "
            f"preferences, ClickHouse) | {best['events_per_s']:,.0f} events/s ({best['layout']} layout; {others}), "
            f"{exact} | {_verdict(best['events_per_s'] >= 100_000 and all(run['exact'] for run in runs))} |"]
