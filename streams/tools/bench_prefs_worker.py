"""Signals/s of one preferences worker (``SALEPULSE_WORKER_ROLE=preferences``) on a backlog (issue #13).

The pipeline section of ``make bench`` reads member preferences inside the all-roles worker only. This measures the
preferences role alone, as it is deployed: a velocity worker forwards every simulated event's signals first, then a
preferences worker starts on that backlog and is timed from its first learned signal to its last, so its rate is
its own (decode, learn, member flushes to the changelog), not the ingest's. On a shared box the wall-clock rate
follows the load; ``signals_per_cpu_s`` (the worker process's user + system CPU time over the same window, all its
threads) is what one process does per core-second.

``python -m salepulse.streams.tools.bench_prefs_worker --in-process --events 20000`` measures decode + learn and
the member writes in process (:func:`learn_costs`). Without ``--in-process`` it starts a private broker (the jars of
``.salepulse/kafka/lib``) and an embedded ClickHouse in a temp dir, and stops them after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from salepulse.deploy.kafka.processes import cpu_seconds
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]


def learn_costs(n_events: int = 20_000, rounds: int = 3) -> dict[str, Any]:
    """In process, CPU time of the thread: µs per signal to decode and learn the first ``n_events`` simulated events'
    signals (the stage bench's ``learn_all``, best of ``rounds`` passes, each on a fresh model), then µs per member to
    write (``to_bytes``) and read back every member learnt, and their mean size."""
    from salepulse.schemas.codec import Codec
    from salepulse.streams.domain.preferences import MemberState, PreferenceModel
    from salepulse.streams.domain.steps import preference_update
    from salepulse.streams.io.ingest import BatchSplitter
    from salepulse.streams.tools.bench_stages import NAMES, Raw, simulated_events, world_catalog

    codec = Codec()
    events, world = simulated_events(n_events)
    raw = [Raw(f"events.{kind}", i % 4, i, codec.encode(NAMES[kind], record))
           for i, (kind, record) in enumerate(events)]
    splitter = BatchSplitter(codec, partitions=4)
    values = [v for start in range(0, len(raw), 2000) for _, v in splitter.split(raw[start:start + 2000]).signals]
    catalog = world_catalog(world)

    def learn_all() -> tuple[int, dict[str, MemberState]]:
        model, members, n = PreferenceModel(), {}, 0
        for value in values:
            for signal in codec.decode(value, timestamps="ms")[1]["signals"]:
                member_id = signal["member_id"]
                members[member_id] = model.update(members.get(member_id), preference_update(signal, catalog))
                n += 1
        return n, members

    best = float("inf")
    for _ in tqdm(range(rounds), desc="learn passes", unit="pass"):
        started = time.thread_time()
        n_signals, members = learn_all()
        best = min(best, time.thread_time() - started)
    started = time.thread_time()
    blobs = [state.to_bytes() for state in members.values()]
    write = time.thread_time() - started
    started = time.thread_time()
    for blob in blobs:
        MemberState.from_bytes(blob)
    read = time.thread_time() - started
    return {"events": n_events, "signals": n_signals, "members": len(members),
            "learn_us_per_signal": round(best / n_signals * 1e6, 2), "signals_per_s": round(n_signals / best),
            "to_bytes_us_per_member": round(write / len(blobs) * 1e6, 2),
            "from_bytes_us_per_member": round(read / len(blobs) * 1e6, 2),
            "bytes_per_member": round(sum(map(len, blobs)) / len(blobs), 1)}




def preferences_backlog(bootstrap: str, dsn: str, state_dir: Path, n_events: int, seed: int = 11,
                        wait_s: float = 900.0, profile_s: float = 0.0) -> dict[str, Any]:
    """Pre-fill ``n_events``, let a velocity worker forward their signals, then time a preferences worker on them.

    ``profile_s``: also sample the preferences worker with py-spy for that long from its start (its top frames are
    returned under ``profile``)."""
    from salepulse.consumers.tools.harness import Pipeline, wait_until
    from salepulse.streams.tools.bench import prefill
    from salepulse.streams.tools.profiles import parse_collapsed, record, summary

    pipeline = Pipeline(bootstrap, dsn, state_dir, partitions=4)
    try:
        prefill(pipeline, n_events, seed=seed)
        pipeline.start_worker(role="velocity")
        wait_until(lambda: pipeline.stats()["events_processed"] >= n_events, wait_s, "the velocity worker's backlog")
        signals = pipeline.stats()["signals_sent"]
        pipeline.start_preferences_worker()
        assert pipeline.preferences_worker is not None
        raw = state_dir / "preferences.pyspy.txt"
        spy = record(pipeline.preferences_worker.pid, profile_s, raw) if profile_s else None
        learned = lambda: pipeline.get("/stats", pipeline.preferences_port)["signals_learned"]  # noqa: E731
        first: float | None = None
        count = at_first = 0
        cpu_first = 0.0
        deadline = time.monotonic() + wait_s
        with tqdm(total=signals, desc="preferences", unit="signal") as bar:
            while count < signals and time.monotonic() < deadline:
                count = learned()
                if count and first is None:
                    first, at_first = time.perf_counter(), count
                    cpu_first = cpu_seconds(pipeline.preferences_worker.pid)
                bar.update(count - bar.n)
                time.sleep(0.05)
        end = time.perf_counter()
        cpu = cpu_seconds(pipeline.preferences_worker.pid) - cpu_first if first is not None else 0.0
        if first is None or count < signals:
            raise AssertionError(f"the preferences worker learned {count} of {signals} signals within {wait_s:.0f} s")
        # timed from the first poll that saw a learned signal, so the signals learned before it are left out
        result: dict[str, Any] = {"events": n_events, "signals": signals, "seconds": round(end - first, 3),
                                  "signals_per_s": round((count - at_first) / (end - first), 1),
                                  # what the worker does with a core of its own: the box is shared
                                  "cpu_seconds": round(cpu, 3),
                                  "signals_per_cpu_s": round((count - at_first) / cpu, 1) if cpu else None}
        if spy is not None:
            _, err = spy.communicate(timeout=profile_s + 60)
            if spy.returncode != 0 or not raw.exists():
                raise RuntimeError(f"py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}")
            with raw.open() as lines:
                result["profile"] = summary(*parse_collapsed(lines), top=25)
        return result
    finally:
        pipeline.close()


def main(argv: list[str] | None = None) -> None:
    from salepulse.deploy.kafka.local_broker import LocalBroker, free_ports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--in-process", action="store_true",
                        help="only the in-process costs (learn_costs: decode + learn, to_bytes), no broker")
    parser.add_argument("--runs", type=int, default=1, help="runs on the same broker (each on fresh topics)")
    parser.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                        help="sample the preferences worker with py-spy for SECONDS from its start")
    args = parser.parse_args(argv)
    if args.in_process:
        print(json.dumps(learn_costs(args.events)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="prefs-bench-") as tmp:
        port, controller_port = free_ports(2)
        broker = LocalBroker(home=Path(tmp) / "kafka", port=port, controller_port=controller_port,
                             lib_dir=REPO_ROOT / ".salepulse" / "kafka" / "lib", heap_opts=("-Xms256m", "-Xmx768m"))
        bootstrap = broker.up(timeout=180)
        try:
            for run in range(args.runs):
                result = preferences_backlog(bootstrap, f"chdb:///{tmp}/chdb", Path(tmp) / f"run{run}", args.events,
                                             profile_s=args.profile)
                log.info("preferences backlog", **result)
                print(json.dumps(result), flush=True)
        finally:
            broker.down()


if __name__ == "__main__":
    main()
