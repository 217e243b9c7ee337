"""One bench case of issue #13 alone: member rankings in the split layout under load.

``python -m salepulse.streams.tools.bench_ranking [rate] [probes] [seconds] [main,serving] [snapshot_s]
[--bench-process] [--warm=S]`` starts a velocity worker and a preferences worker (``SALEPULSE_WORKER_ROLE``, as ``make
bench``'s targets table), the latter alone with ``SALEPULSE_SERVING_PORT`` set (and
``SALEPULSE_SERVING_SNAPSHOT_S=snapshot_s``: forked snapshots; 0, the default, a thread), offers ``rate`` simulated
events/s, and measures on each of the preferences worker's ports in the given order: event → ranking reflects it
(:func:`~salepulse.streams.tools.ranking_client.ranking_reflects`) and the ranking latency at 200 req/s requested
(:func:`~salepulse.streams.tools.ranking_client.ranking_load`), both from client processes of their own; then the
floor (the same requests to a bare process answering the same bytes, under the same load). ``--bench-process``
also runs the load's client in the bench process, beside the one generating the load (how it was measured before):
the difference is what that client measured of its own wait.

It samples, every second, the preferences worker's backlog (signals the velocity worker sent minus those the
preferences worker learned) and prints the results as JSON with the "members flushed" log lines (how long each
member flush held the worker's loop), the read server's "ranking request timings" lines (where each request's
time went, server side: :data:`~salepulse.streams.runtime.serving.TIMING_PARTS`) and, with snapshots, the
"ranking snapshots" lines (what forks cost). It writes no file: the lead's ``make bench`` owns ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.streams.platform.config import Settings
from salepulse.streams.tools.bench import _has_sale, probe_world
from salepulse.streams.tools.ranking_client import CONCURRENCY, ranking_floor, ranking_load, ranking_reflects
from salepulse.streams.tools.ranking_client_process import ask_rankings


class BacklogSampler:
    """Every ``every`` seconds in a thread: (seconds since start, signals sent by the velocity worker, signals
    learned by the preferences worker)."""

    def __init__(self, pipeline: Pipeline, every: float = 1.0) -> None:
        self.pipeline, self.every = pipeline, every
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="backlog", daemon=True)

    def _run(self) -> None:
        began = time.monotonic()
        while not self.stop.wait(self.every):
            try:
                sent = self.pipeline.stats()["signals_sent"]
                learned = self.pipeline.get("/stats", self.pipeline.preferences_port)["signals_learned"]
            except (OSError, KeyError, ValueError):
                continue
            self.samples.append((round(time.monotonic() - began, 1), sent, learned))

    def __enter__(self) -> BacklogSampler:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def summary(self) -> dict[str, Any]:
        """The backlog's course (every 5th sample), its maximum and the learner's rate over the run."""
        return summarise_backlog(self.samples)


def summarise_backlog(samples: list[tuple[float, int, int]]) -> dict[str, Any]:
    """Backlog (sent − learned) over the run, its maximum, and sent and learned signals/s from first to last sample.

    >>> s = summarise_backlog([(1.0, 100, 90), (2.0, 200, 150), (3.0, 300, 290)])
    >>> s["max_backlog"], s["sent_per_s"], s["learned_per_s"], s["course"]
    (50, 100.0, 100.0, [[1.0, 10]])
    >>> summarise_backlog([])
    {'samples': 0}
    """
    if not samples:
        return {"samples": 0}
    (t0, sent0, learned0), (t1, sent1, learned1) = samples[0], samples[-1]
    span = max(t1 - t0, 1e-9)
    return {"samples": len(samples), "max_backlog": max(sent - learned for _, sent, learned in samples),
            "backlog_at_end": sent1 - learned1, "sent_per_s": round((sent1 - sent0) / span, 1),
            "learned_per_s": round((learned1 - learned0) / span, 1),
            "course": [[t, sent - learned] for t, sent, learned in samples[::5]]}


def log_lines(path: Path, marker: str) -> list[str]:
    """What follows ``marker`` on each line of a worker's log that holds it."""
    return [line.split(marker, 1)[1].strip() for line in path.read_text(errors="replace").splitlines()
            if marker in line]


def bench_ranking(bootstrap: str, dsn: str, state_dir: Path, rate: float = 5000.0, probes: int = 30,
                  seconds: float = 15.0, order: tuple[str, ...] = ("main", "serving"), snapshot_s: float = 0.0,
                  bench_process: bool = False, warm_s: float = 0.0) -> dict[str, Any]:
    """Event → ranking and ranking latency on both ports of a preferences worker, split layout, ``rate`` events/s;
    the ports in ``order`` (a learner's backlog can grow during the run, so swap it to compare the ports fairly).
    ``warm_s``: seconds of load before the first probe (``make bench`` probes rankings a minute or more into its
    load, after the other probes)."""
    from salepulse.deploy.kafka.processes import free_port

    serving = free_port()
    pipeline = Pipeline(bootstrap, dsn, state_dir / f"ranking-{int(rate)}", partitions=4,
                        extra_env={"SALEPULSE_SERVING_SNAPSHOT_S": str(snapshot_s)})
    tag = f"rk{uuid.uuid4().hex[:4]}"
    results: dict[str, Any] = {"offered_events_per_s": rate, "layout": "split", "serving_snapshot_s": snapshot_s,
                               "load_average_before": [round(x, 1) for x in os.getloadavg()]}
    try:
        background = probe_world(pipeline.settings, tag, rate, int(time.time() * 1000))
        pipeline.start_worker(role="velocity")
        pipeline.start_preferences_worker(serving_port=serving)
        wait_until(lambda: _has_sale(pipeline, f"{tag}-big"), 60, "the probe catalogue to load")
        urls = {"main": f"http://127.0.0.1:{pipeline.preferences_port}", "serving": f"http://127.0.0.1:{serving}"}
        wait_until(lambda: _ranks(urls[order[-1]], tag), 60, "the rankings to answer")
        with BacklogSampler(pipeline) as backlog, background:
            started = time.monotonic()
            time.sleep(3 + warm_s)  # let the load settle
            for n, name in enumerate(order):
                results[name] = {
                    "event_to_ranking_ms": ranking_reflects(pipeline.env, urls[name], tag, probes, start=n * probes),
                    "ranking_load": ranking_load(urls[name], tag, rps=200, seconds=seconds)}
                if bench_process:
                    results[name]["ranking_load_from_bench_process"] = ask_rankings(urls[name], tag, 200, seconds,
                                                                                    CONCURRENCY)
            results["floor"] = ranking_floor(urls[order[-1]], tag, pipeline.settings.state_dir, 200, seconds)
            results["background_events_sent"] = background.sent
            results["achieved_events_per_s"] = round(background.sent / (time.monotonic() - started), 1)
            results["lag_at_end"] = pipeline.lag()[0]
        results["preferences_backlog_signals"] = backlog.summary()
        results["members_flushed"] = log_lines(pipeline.preferences_log, "members flushed")
        results["garbage_collections"] = log_lines(pipeline.preferences_log, "garbage collections")
        results["ranking_snapshots"] = log_lines(pipeline.preferences_log, "ranking snapshots")
        results["serving_timings"] = log_lines(pipeline.preferences_log, "ranking request timings")
        results["load_average_after"] = [round(x, 1) for x in os.getloadavg()]
        return results
    finally:
        pipeline.close()


def _ranks(url: str, tag: str) -> bool:
    try:
        return httpx.get(f"{url}/members/{tag}-fan0/sales", params={"k": 3}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str]) -> int:
    from salepulse.streams.tools.demo import ensure_broker

    bench_process = "--bench-process" in argv
    warm_s = float(next((a.split("=", 1)[1] for a in argv if a.startswith("--warm=")), 0.0))
    argv = [a for a in argv if a != "--bench-process" and not a.startswith("--warm=")]
    settings = Settings.from_env()
    bootstrap = ensure_broker(settings)
    state_dir = Path(tempfile.mkdtemp(prefix="salepulse-bench-ranking-"))
    rate, probes, seconds = (float(argv[0]) if argv else 5000.0, int(argv[1]) if len(argv) > 1 else 30,
                             float(argv[2]) if len(argv) > 2 else 15.0)
    order = tuple(argv[3].split(",")) if len(argv) > 3 else ("main", "serving")
    snapshot_s = float(argv[4]) if len(argv) > 4 else 0.0
    result = bench_ranking(bootstrap, settings.clickhouse_url or f"chdb://{state_dir / 'chdb'}", state_dir,
                           rate, probes, seconds, order, snapshot_s, bench_process, warm_s)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
