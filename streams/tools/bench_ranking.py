"""One bench case of issue #13 alone: member rankings in the split layout under load.

``python -m salepulse.streams.tools.bench_ranking [rate] [probes] [seconds] [main,serving]`` starts a velocity worker
and a preferences worker (``SALEPULSE_WORKER_ROLE``, as ``make bench``'s targets table), the latter with
``SALEPULSE_SERVING_PORT`` set, offers ``rate`` simulated events/s, and measures on the preferences worker's main
port and on its serving port: event → ranking reflects it (``probe_ranking_reflects``) and the ranking latency at
200 req/s requested (``ranking_load``, concurrent). It prints the results as JSON, with the preferences worker's
"members flushed" log lines (how long each member flush held the worker's loop). It writes no file: the lead's
``make bench`` owns ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.streams.platform.config import Settings
from salepulse.streams.tools.bench import (
    _has_sale,
    probe_ranking_reflects,
    probe_world,
    ranking_load,
)


def bench_ranking(bootstrap: str, dsn: str, state_dir: Path, rate: float = 5000.0, probes: int = 30,
                  seconds: float = 15.0, order: tuple[str, ...] = ("main", "serving")) -> dict[str, Any]:
    """Event → ranking and ranking latency on both ports of a preferences worker, split layout, ``rate`` events/s;
    the ports in ``order`` (a learner's backlog grows during the run, so swap it to compare the ports fairly)."""
    from salepulse.deploy.kafka.processes import free_port

    serving = free_port()
    pipeline = Pipeline(bootstrap, dsn, state_dir / f"ranking-{int(rate)}", partitions=4,
                        extra_env={"SALEPULSE_SERVING_PORT": str(serving)})
    tag = f"rk{uuid.uuid4().hex[:4]}"
    results: dict[str, Any] = {"offered_events_per_s": rate, "layout": "split"}
    try:
        background = probe_world(pipeline.settings, tag, rate, int(time.time() * 1000))
        pipeline.start_worker(role="velocity")
        pipeline.start_preferences_worker()
        wait_until(lambda: _has_sale(pipeline, f"{tag}-big"), 60, "the probe catalogue to load")
        ports = {"main": pipeline.preferences_port, "serving": serving}
        clients = {name: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) for name, port in ports.items()}
        probe_publisher = Publisher(pipeline.settings, **{"linger.ms": 0})
        with background:
            time.sleep(3)  # let the load settle
            for n, name in enumerate(order):
                client = clients[name]
                reflects = probe_ranking_reflects(probe_publisher, client, tag, probes, start=n * probes)
                results[name] = {"event_to_ranking_ms": reflects,
                                 "ranking_load": ranking_load(client, tag, rps=200, seconds=seconds)}
            results["background_events_sent"] = background.sent
            results["lag_at_end"] = pipeline.lag()[0]
        results["members_flushed"] = [line.split("members flushed", 1)[1].strip()
                                      for line in pipeline.preferences_log.read_text(errors="replace").splitlines()
                                      if "members flushed" in line]
        for client in clients.values():
            client.close()
        return results
    finally:
        pipeline.close()


def main(argv: list[str]) -> int:
    from salepulse.streams.tools.demo import ensure_broker

    settings = Settings.from_env()
    bootstrap = ensure_broker(settings)
    state_dir = Path(tempfile.mkdtemp(prefix="salepulse-bench-ranking-"))
    rate, probes, seconds = (float(argv[0]) if argv else 5000.0, int(argv[1]) if len(argv) > 1 else 30,
                             float(argv[2]) if len(argv) > 2 else 15.0)
    order = tuple(argv[3].split(",")) if len(argv) > 3 else ("main", "serving")
    result = bench_ranking(bootstrap, settings.clickhouse_url or f"chdb://{state_dir / 'chdb'}", state_dir,
                           rate, probes, seconds, order)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
