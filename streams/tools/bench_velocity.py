"""The velocity worker alone, profiled by group and measured in turns against another copy of the code (issue #13).

``python -m salepulse.streams.tools.bench_velocity --baseline DIR`` runs, on one private broker, the bench's
pipeline case for the velocity role only (:func:`salepulse.streams.tools.bench.worker_rate`) in turns A, B, A, B:
A is the code under ``DIR`` (a ``git archive`` of the commit to compare against, laid out as ``DIR/salepulse/...``
and put first on the worker's ``PYTHONPATH``), B this checkout. Each run has its own topics, pre-filled with the
same seeded events, and its own consume+decode floor (the bench's ``baseline_consume_decode``), so every ratio is
a same-run ratio. With ``--profile`` each worker is also sampled by py-spy (``--gil``), and the samples are
grouped by :func:`group_of` into the stages of the issue (Kafka consume, decode, split, encode + produce, Faust's
stream machinery, sale-state counting, changelog, commits).

The machine is shared: compare medians of the turns, not single runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from salepulse.deploy.kafka.processes import cpu_by_process
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

GROUPS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    # First group wins. A group matches a stack when one of its alternatives does, and an alternative when every
    # one of its substrings is in some frame: the codec is shared, so a decode is charged by who called it.
    ("ingest: commit + flush", (("EventIngest._commit_delivered",),)),
    ("ingest: produce", (("EventIngest._produce",),)),
    ("ingest: encode facts + signals", (("BatchSplitter._encode_facts",), ("BatchSplitter._signals_message",))),
    ("ingest: validate", (("decode_event (", "problems ("),)),
    ("ingest: decode", (("decode_event (",),)),
    ("ingest: split", (("BatchSplitter.",),)),
    ("ingest: Kafka consume + loop", (("EventIngest.run",),)),
    ("sale_state: changelog (JSON + table write)", (("write_table (",), ("Worker.sale_state", "json/"),
                                                   ("Worker.sale_state", "to_json"))),
    ("sale_state: decode facts", (("Worker.sale_state", "Codec.decode"), ("Worker.sale_state", "facts_of"))),
    ("sale_state: count + forecast", (("Worker.sale_state",),)),
    ("timers: live tick, lag, followers", (("publish_live_state",), ("measure_lag",), ("Follower",),
                                           ("live_tick",))),
    ("Faust: commits", (("faust/", "commit"),)),
    ("Faust: changelog + producer", (("faust/tables/",), ("faust/stores/",), ("Producer.",),
                                     ("aiokafka/producer",))),
    ("Faust: stream machinery + consumer", (("faust/",), ("mode/",), ("aiokafka/",))),
    ("event loop", (("asyncio/",),)),
)


def group_of(frames: list[str]) -> str:
    """The group a sampled stack (root first) is charged to.

    >>> group_of(["run (threading.py)", "EventIngest.run (streams/io/ingest.py)",
    ...           "BatchSplitter.split (streams/io/ingest.py)", "decode_event (streams/io/ingest.py)",
    ...           "Codec.decode (schemas/codec.py)"])
    'ingest: decode'
    >>> group_of(["Worker.sale_state (streams/runtime/worker.py)", "Worker.count_batch (streams/runtime/worker.py)",
    ...           "Codec.decode (schemas/codec.py)"])
    'sale_state: decode facts'
    >>> group_of(["main (x.py)"])
    'other'
    """
    stack = ";".join(frames)
    for name, alternatives in GROUPS:
        if any(all(part in stack for part in alternative) for alternative in alternatives):
            return name
    return "other"


def grouped(lines: Iterable[str]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """Samples per (process, group) of py-spy raw (collapsed) output, and per process: ``ingest process`` for the
    child the ingest runs in (``spawn_main`` in its stack), ``worker`` for the rest."""
    from salepulse.streams.tools.profiles import frame_name

    groups: Counter[tuple[str, str]] = Counter()
    processes: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        process = "ingest process" if "spawn_main" in stack else "worker"
        groups[(process, group_of([frame_name(f) for f in stack.split(";")]))] += int(count)
        processes[process] += int(count)
    return groups, processes


def us_per_event(groups: Counter[tuple[str, str]], processes: Counter[str],
                 cpu_us: dict[str, float]) -> dict[str, float]:
    """Each group's µs per event: its share of its process's samples times that process's CPU µs per event.

    >>> us_per_event(Counter({("worker", "a"): 3, ("worker", "b"): 1}), Counter(worker=4), {"worker": 20.0})
    {'worker / a': 15.0, 'worker / b': 5.0}
    """
    return {f"{process} / {group}": round(n / processes[process] * cpu_us.get(process, 0.0), 2)
            for (process, group), n in groups.most_common()}


def one_run(bootstrap: str, dsn: str, state_dir: Path, n_events: int, variant: str, pythonpath: str | None,
            profile_s: float) -> dict[str, Any]:
    """One turn: fresh topics, the seeded events, the floor, then the velocity worker (profiled if asked)."""
    from salepulse.consumers.tools.harness import Pipeline
    from salepulse.streams.tools import profiles
    from salepulse.streams.tools.bench import baseline_consume_decode, prefill, worker_rate

    extra = {"PYTHONPATH": pythonpath} if pythonpath else None
    pipeline = Pipeline(bootstrap, dsn, state_dir / f"velocity-{variant}", partitions=4, extra_env=extra)
    result: dict[str, Any] = {"variant": variant}
    try:
        prefill(pipeline, n_events, seed=11)
        result["floor_per_s"] = round(baseline_consume_decode(pipeline.settings, n_events), 1)
        spy = None
        if profile_s:
            original = pipeline.start_worker

            def start_and_spy(**kwargs: Any) -> None:
                nonlocal spy
                original(**kwargs)
                assert pipeline.worker is not None
                # --subprocesses: the ingest's child process too (SALEPULSE_INGEST_PROCESS), each stack under
                # its process's frame; --gil: what each interpreter spends holding its GIL.
                spy = subprocess.Popen([profiles.py_spy(), "record", "--pid", str(pipeline.worker.pid),
                                        "--duration", str(max(1, round(profile_s))), "--rate", "100", "--format",
                                        "raw", "--gil", "--subprocesses", "--output",
                                        str(state_dir / f"spy-{variant}.txt")],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

            pipeline.start_worker = start_and_spy  # type: ignore[method-assign]
        polls: list[tuple[int, float]] = []  # (events processed, CPU seconds of the worker and its children)
        stats = pipeline.stats
        per_process: list[dict[int, float]] = []

        def stats_and_cpu() -> dict[str, Any]:
            answer = stats()
            assert pipeline.worker is not None
            by_process = cpu_by_process(pipeline.worker.pid)
            polls.append((answer["events_processed"], sum(by_process.values())))
            per_process.append(by_process)
            return answer

        pipeline.stats = stats_and_cpu  # type: ignore[method-assign]
        result["worker"] = worker_rate(pipeline, n_events, role="velocity")
        started = next((i for i, (n, _) in enumerate(polls) if n), 0)
        counted = next((i for i, (n, _) in enumerate(polls) if n >= n_events), len(polls) - 1)
        # From the poll before the first event to the one that saw them all: the CPU of the work, not the start-up.
        first = max(started - 1, 0)
        result["cpu_us_per_event"] = round((polls[-1][1] - polls[first][1]) / n_events * 1e6, 2)
        assert pipeline.worker is not None
        result["cpu_us_per_event_by_process"] = {
            "worker" if pid == pipeline.worker.pid else f"child {pid}":
            round((seconds - per_process[first].get(pid, 0.0)) / n_events * 1e6, 2)
            for pid, seconds in per_process[-1].items()}
        result["cpu_us_per_event_ingested"] = round((polls[counted][1] - polls[first][1]) / n_events * 1e6, 2)
        if spy is not None:
            spy.communicate(timeout=profile_s + 60)
            groups, processes = grouped((state_dir / f"spy-{variant}.txt").open())
            cpu = {"worker" if name == "worker" else "ingest process": us
                   for name, us in result["cpu_us_per_event_by_process"].items() if us}
            result["profile"] = {"samples": dict(processes), "seconds": profile_s,
                                 "raw": str(state_dir / f"spy-{variant}.txt"),
                                 "us_per_event": us_per_event(groups, processes, cpu)}
    finally:
        pipeline.close()
    rate = result["worker"]["events_per_s"]
    result["ratio"] = round(rate / result["floor_per_s"], 3)
    return result


def main(argv: list[str] | None = None) -> int:
    from salepulse.consumers.tools.harness import REPO_ROOT
    from salepulse.deploy.kafka.local_broker import LocalBroker, free_ports

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="folder holding salepulse/ of the code to compare against (variant A)")
    parser.add_argument("--turns", type=int, default=2, help="A, B pairs")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profile", type=float, default=0.0, help="py-spy seconds per worker (0: none)")
    parser.add_argument("--only", choices=["A", "B"], help="run one variant only")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="salepulse-velbench-"))
    port, controller = free_ports(2)
    # The jars in the checkout's cache, as the tests' private brokers: Maven fetches them once.
    broker = LocalBroker(home=state_dir / "kafka", port=port, controller_port=controller,
                         lib_dir=REPO_ROOT / ".salepulse" / "kafka" / "lib", heap_opts=("-Xms256m", "-Xmx768m"))
    bootstrap = broker.up(timeout=180)
    variants = [v for v in ("A", "B") if args.only in (None, v)]
    if "A" in variants and not args.baseline:
        parser.error("variant A needs --baseline")
    runs: list[dict[str, Any]] = []
    try:
        for turn in range(args.turns):
            for variant in variants:
                path = args.baseline if variant == "A" else None
                run = one_run(bootstrap, f"chdb://{state_dir / 'chdb'}", state_dir / f"t{turn}", args.events,
                              variant, path, args.profile)
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        broker.down()
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        print(f"{variant}: velocity worker {statistics.median(r['worker']['events_per_s'] for r in mine):,.0f}/s "
              f"(runs {[round(r['worker']['events_per_s']) for r in mine]}), floor "
              f"{statistics.median(r['floor_per_s'] for r in mine):,.0f}/s, ratio "
              f"{statistics.median(r['ratio'] for r in mine)} (runs {[r['ratio'] for r in mine]}), CPU µs per event "
              f"{statistics.median(r['cpu_us_per_event'] for r in mine)} "
              f"(runs {[r['cpu_us_per_event'] for r in mine]})", flush=True)
    if args.output:
        args.output.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
