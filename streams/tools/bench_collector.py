"""One bench case of issue #13 alone: the collector, ``POST /events`` in batches of 100, driven from other processes.

``python -m salepulse.streams.tools.bench_collector [--server worker|collector] [--seconds S] [--clients P]
[--concurrency C] [--profile]`` starts what serves ``POST /events`` on a private pipeline of the real broker
(:func:`salepulse.streams.tools.demo.ensure_broker`): the demo's worker with every role (``worker``), or the
collector process of its own (``collector``, ``salepulse collect``). The simulated world's catalogue is
published first, so the worker knows the sales it then counts.

The load comes from ``P`` client processes (never the server's, nor this one), each with ``C`` requests in
flight on kept-alive connections. Every request is 100 events of the simulated traffic (browse, cart and order
in the world's mix, about 94 / 5 / 1 %), each with a fresh ``event_id`` and ``ts`` = now, so every one is
stored. Bodies are assembled from pre-serialised templates: the clients spend their CPU on HTTP, not on JSON.

Printed as JSON: accepted events/s over the window (after a warm-up), p50/p99/max per request, the answers by
status, and the server process's CPU seconds in the window (so µs of server CPU per event, a figure the other
engineers' load on this shared box moves less than the rate). ``--profile`` samples the server with py-spy
(``--gil``) over the same window and prints the top frames by own and by total time. It writes no file:
the lead's ``make bench`` owns ``BENCHMARKS.md``; its collector case drives ``salepulse collect`` with the same
load (:mod:`salepulse.streams.tools.collector_load`). ``--in-process`` measures only a request's own work (parse,
validate, encode) in this process, reference against fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from salepulse.deploy.kafka.processes import cpu_seconds
from salepulse.streams.platform.config import Settings
from salepulse.streams.tools.collector_load import BATCH, WARMUP_S, _server, body_of, drive, templates

__all__ = ["BATCH", "bench_collector", "body_of", "in_process", "templates"]


# --- the request's own work, in process ----------------------------------------------------------------------
def in_process(requests: int = 200, repeats: int = 5) -> dict[str, float]:
    """µs per event of a 100-event request's work without HTTP or Kafka, best of ``repeats`` (CPU time of this
    process, so other processes on the box move it less than a rate): parse + validate the reference way and the
    fast way, and Avro-encode the records with fastavro and with the compiled writers.

    >>> sorted(in_process(requests=2, repeats=1))[:2]
    ['encode_compiled_us', 'encode_fastavro_us']
    """
    import io

    import fastavro

    from salepulse.schemas.codec import Codec
    from salepulse.streams.domain.collector import collect_events
    from salepulse.streams.platform.topology import route

    pool = templates(min(50_000, requests * BATCH))
    now = int(time.time() * 1000)
    bodies = [body_of(pool, i * BATCH, f"p{i}", now) for i in range(requests)]
    codec = Codec()
    records = [(route(e.kind).record, e.record) for body in bodies for e in collect_events(body, now).events]
    types = {name: codec.record_type(name) for name, _ in records}

    def fastavro_encode() -> None:
        for name, record in records:
            rtype = types[name]
            body = io.BytesIO()
            body.write(rtype.fingerprint)
            fastavro.schemaless_writer(body, rtype.parsed, record)

    cases = {"validate_reference_us": lambda: [collect_events(b, now, fast=False) for b in bodies],
             "validate_fast_us": lambda: [collect_events(b, now) for b in bodies],
             "encode_fastavro_us": fastavro_encode,
             "encode_compiled_us": lambda: [codec.encode(name, record) for name, record in records]}
    result = {}
    for name, case in cases.items():
        best = float("inf")
        for _ in range(repeats):
            started = time.process_time()
            case()
            best = min(best, time.process_time() - started)
        result[name] = round(best / (requests * BATCH) * 1e6, 2)
    return result


def bench_collector(bootstrap: str, dsn: str, state_dir: Path, *, server: str = "worker", seconds: float = 15.0,
                    clients: int = 2, concurrency: int = 2, profile: bool = False) -> dict[str, Any]:
    """``POST /events`` throughput and latency against ``server`` (see the module's docstring)."""
    from salepulse.consumers.io.publish import Publisher
    from salepulse.consumers.tools.harness import Pipeline
    from salepulse.consumers.tools.simulate import world_for_rate
    from salepulse.streams.tools import profiles

    token = "bench-collector-token"
    pipeline = Pipeline(bootstrap, dsn, state_dir / f"collector-{server}", partitions=4,
                        extra_env={"SALEPULSE_API_TOKEN": token})
    result: dict[str, Any] = {"server": server, "load": os.getloadavg()}
    try:
        world = world_for_rate(23, 1000.0)
        with Publisher(pipeline.settings) as publisher:
            for kind, records in (("sale", world.sales), ("prior", world.priors), ("stock", world.stock)):
                for record in records:
                    publisher.send(kind, record)
        pool = templates()
        pid, base, _process = _server(pipeline, server)
        spy = None
        out = state_dir / f"collector-{server}.txt"

        def sample() -> None:  # the window starts after the clients' warm-up
            nonlocal spy
            time.sleep(WARMUP_S + 2.0)  # the clients' interpreters start first
            result["cpu_at_start"] = cpu_seconds(pid)
            if profile:
                spy = profiles.record(pid, seconds - 2.0, out)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        result.update(drive(f"{base}/events", seconds, clients=clients, concurrency=concurrency, token=token,
                            pool=pool, pool_dir=state_dir, warmup=WARMUP_S + 2.0))
        sampler.join()
        result["cpu_s"] = round(cpu_seconds(pid) - result.pop("cpu_at_start"), 2)
        result["server_cpu_us_per_event"] = (round(result["cpu_s"] * 1e6 / (result["accepted_events_per_s"]
                                                                             * result["seconds"]), 1)
                                             if result["accepted_events_per_s"] else None)
        result["wall_s"] = round(time.monotonic() - began, 1)
        if spy is not None:
            spy.communicate(timeout=seconds + 60)
            result["profile"] = profiles.summary(*profiles.parse_collapsed(out.open()), 25)
            result["profile"]["raw"] = str(out)
        result["load_after"] = os.getloadavg()
        return result
    finally:
        pipeline.close()  # stops the server too: the worker, or the collector it started


def main(argv: list[str]) -> int:
    from salepulse.streams.tools.demo import ensure_broker

    parser = argparse.ArgumentParser(prog="bench_collector", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("worker", "collector"), default="worker")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight per client process")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--in-process", action="store_true",
                        help="only the request's own work (parse, validate, encode), no HTTP or Kafka")
    args = parser.parse_args(argv)
    if args.in_process:
        print(json.dumps(in_process(), indent=1))
        return 0
    settings = Settings.from_env()
    bootstrap = ensure_broker(settings)
    state_dir = Path(tempfile.mkdtemp(prefix="salepulse-bench-collector-"))
    result = bench_collector(bootstrap, settings.clickhouse_url or f"chdb://{state_dir / 'chdb'}", state_dir,
                             server=args.server, seconds=args.seconds, clients=args.clients,
                             concurrency=args.concurrency, profile=args.profile)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
