"""``make bench``: every measurement of :mod:`salepulse.streams.tools.bench` and the sections of
:mod:`salepulse.streams.tools.bench_sections`, on one broker and one ClickHouse, written to BENCHMARKS.md.

The orchestration lives apart from the measurements so that the sections can use the measurements' helpers
without an import cycle.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from salepulse.streams.platform.config import Settings
from salepulse.streams.tools import bench_sections
from salepulse.streams.tools.bench import bench_latency, bench_pipeline, bench_pure, bench_sink
from salepulse.streams.tools.bench_report import machine, render_markdown


def run_bench(settings: Settings, output: Path, quick: bool = False) -> int:
    import tempfile

    from salepulse.streams.tools.demo import ensure_broker

    bootstrap = ensure_broker(settings)
    state_dir = Path(tempfile.mkdtemp(prefix="salepulse-bench-"))
    dsn = settings.clickhouse_url or f"chdb://{state_dir / 'chdb'}"
    n_events = 30_000 if quick else 200_000
    seconds = 15.0 if quick else 45.0
    started = time.time()
    results: dict[str, Any] = {"machine": machine(), "command": "make bench" + (" BENCH_ARGS=--quick" if quick else ""),
                               "date": datetime.now(UTC).isoformat(timespec="seconds")}
    results["pure"] = bench_pure(quick)
    results["pipeline"] = bench_pipeline(bootstrap, dsn, state_dir, n_events)
    # The targets' load on the layout meant for it (a velocity worker and a preferences worker), then the same
    # probes on one worker doing everything (the demo's layout) at that load and at 1,000/s.
    results["latency"] = bench_latency(bootstrap, dsn, state_dir, rate=5000.0, seconds=seconds, layout="split")
    results["latency_all"] = bench_latency(bootstrap, dsn, state_dir, rate=5000.0, seconds=seconds, layout="all")
    results["latency_light"] = bench_latency(bootstrap, dsn, state_dir, rate=1000.0, seconds=seconds, layout="all")
    results["sink"] = bench_sink(dsn, 50_000 if quick else 400_000)
    # Issue #13: both consume+decode floors, the ingest's fetch settings and the per-stage costs (bench_sections);
    # issue #12: several workers (1 -> 2, GET /sales from any worker, handover after SIGKILL).
    results.update(bench_sections.run_sections(settings, bootstrap, dsn, state_dir, {"floor", "stages", "e2e", "scale"},
                                               quick))
    results["seconds"] = round(time.time() - started, 1)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2))
    bench_sections.write(output, results, results["command"], results["date"], markdown=render_markdown(results))
    print(f"wrote {output} ({results['seconds']}s)")
    return 0
