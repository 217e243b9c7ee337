"""Reproducible CPU profiles of each role under a fixed load (issue #13, item 5): ``salepulse bench --profile``.

The load is a backlog: ``n_events`` simulated events pre-filled on a private pipeline's topics, so each role runs
flat out for the whole sampling window. py-spy samples the role's process from outside (it needs ptrace: root, or
CAP_SYS_PTRACE) for ``seconds``:

- the velocity worker (``SALEPULSE_WORKER_ROLE=velocity``) from its start on the backlog;
- the preferences worker, started once the velocity worker has forwarded every event's signals;
- the sink, a thread of this process (as in the harness), on the workers' facts plus ``sink_rows`` more produced
  for it (the workers' alone last it a few seconds): only the samples whose stack goes through
  ``clickhouse_sink`` are kept, GIL or not (chdb's insert runs outside it), except those of its first connection's
  imports (start-up, not work).

The workers are sampled with ``--gil`` (see :func:`record`): what is listed is where their interpreter's time goes.

What is committed is text: the top frames by own time (where the CPU is spent) and by total time (what they are
called from), per role, under ``docs/profiles/``, and the top 10 by own time in BENCHMARKS.md. py-spy's raw
(collapsed-stack) files stay in the bench's temporary directory; load one into speedscope to browse it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

PROFILES_DIR = Path("docs/profiles")
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str:
    """The py-spy executable next to this interpreter (the test extras install it), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("py-spy is not installed: pip install -e '.[test]'")
    return found


def record(pid: int, seconds: float, output: Path, rate: int = 100, gil: bool = True,
           subprocesses: bool = False) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` into a raw collapsed-stack file; the caller waits for it.

    ``gil``: only samples holding the GIL. A worker is bound by its one interpreter, and without it every thread
    blocked in librdkafka's ``consume`` (GIL released, but not idle to py-spy) shows up as CPU time of its caller.
    ``subprocesses``: its child processes too (a velocity worker's ingest runs in one, ``SALEPULSE_INGEST_PROCESS``).
    """
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate",
               str(rate), "--format", "raw", "--output", str(output), *(["--gil"] if gil else []),
               *(["--subprocesses"] if subprocesses else [])]
    log.info("profiling", pid=pid, seconds=seconds, output=str(output))
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def frame_name(frame: str) -> str:
    """A py-spy frame without its line number, with the path shortened after site-packages or the repo.

    >>> frame_name("apply (/x/.venv/lib/python3.12/site-packages/faust/streams.py:812)")
    'apply (faust/streams.py)'
    >>> frame_name("split (/work/wt/t/streams/io/ingest.py:170)")
    'split (streams/io/ingest.py)'
    """
    frame = _LINE.sub(")", frame)
    for marker in ("site-packages/", "/streams/", "/consumers/", "/schemas/"):
        if marker in frame:
            head, tail = frame.split("(", 1)
            path = tail[:-1]
            short = path.split(marker, 1)[1] if marker == "site-packages/" else marker[1:] + path.split(marker, 1)[1]
            return f"{head}({short})"
    return frame


def parse_collapsed(lines: Iterable[str], keep: str | None = None,
                    drop: str | None = None) -> tuple[Counter[str], Counter[str], int]:
    """(own samples per frame, total samples per frame, all samples) of py-spy raw output; ``keep`` keeps only
    stacks with a frame containing it, ``drop`` drops those that have one.

    >>> own, total, n = parse_collapsed(["main (a.py:1);work (a.py:5) 3", "main (a.py:1) 1"])
    >>> own["work (a.py)"], total["main (a.py)"], n
    (3, 4, 4)
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit() or (keep and keep not in stack) or (drop and drop in stack):
            continue
        frames = [frame_name(f) for f in stack.split(";")]
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    return own, total, samples


def summary(own: Counter[str], total: Counter[str], samples: int, top: int) -> dict[str, Any]:
    """The ``top`` frames by own and by total samples, with their share of all samples (%)."""
    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, n, round(100 * n / samples, 1)] for name, n in counter.most_common(top)] if samples else []

    return {"samples": samples, "own": share(own), "total": share(total)}


def _wait(process: subprocess.Popen[bytes], output: Path, seconds: float) -> None:
    _, err = process.communicate(timeout=seconds + 60)
    if process.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed ({process.returncode}): {err.decode(errors='replace')[-500:]}")


def prefill_facts(pipeline: Any, rows: int, per_message: int = 200) -> int:
    """``rows`` more fact rows on the facts topic, as the ingest writes them (one sale per message), so that the
    sink has a backlog that outlasts the sampling window; returns the facts now on the topic for it."""
    from salepulse.consumers.io.publish import Publisher
    from salepulse.streams.domain.velocity import Fact
    from salepulse.streams.io.ingest import facts_record

    now = int(time.time() * 1000)
    with Publisher(pipeline.settings) as publisher:
        for m in range(rows // per_message):
            sale_id = f"profile-s{m % 50}"
            facts = [(Fact(f"profile-{m}-{j}", sale_id, f"k{j % 60}", "order" if j % 20 == 0 else "view", 1, 0.0,
                           now), "profile:0", m * per_message + j) for j in range(per_message)]
            publisher.send_raw(pipeline.settings.topics.facts,
                               publisher.codec.encode("VelocityFacts", facts_record(sale_id, facts)),
                               key=sale_id.encode())
    return rows // per_message * per_message


def profile_roles(bootstrap: str, dsn: str, state_dir: Path, n_events: int, seconds: float,
                  top: int = 30, sink_rows: int = 1_000_000) -> dict[str, Any]:
    """Profile the velocity worker, the preferences worker and the sink on one pre-filled pipeline."""
    from salepulse.consumers.tools.harness import Pipeline, wait_until
    from salepulse.streams.tools.bench import prefill

    pipeline = Pipeline(bootstrap, dsn, state_dir / "profiles", partitions=4)
    raw = state_dir / "profiles"
    result: dict[str, Any] = {"events": n_events, "seconds": seconds}
    try:
        prefill(pipeline, n_events, seed=11)
        pipeline.start_worker(role="velocity")
        assert pipeline.worker is not None
        before = pipeline.stats()["events_processed"]
        spy = record(pipeline.worker.pid, seconds, raw / "velocity.txt", subprocesses=True)
        _wait(spy, raw / "velocity.txt", seconds)
        handled = pipeline.stats()["events_processed"] - before
        result["velocity"] = {**summary(*parse_collapsed((raw / "velocity.txt").open()), top),
                              "handled": f"{handled:,} events in the window"}
        wait_until(lambda: pipeline.stats()["events_processed"] >= n_events, 600, "the velocity worker's backlog")

        pipeline.start_preferences_worker()
        assert pipeline.preferences_worker is not None
        learned = lambda: pipeline.get("/stats", pipeline.preferences_port)["signals_learned"]  # noqa: E731
        before = learned()
        spy = record(pipeline.preferences_worker.pid, seconds, raw / "preferences.txt")
        _wait(spy, raw / "preferences.txt", seconds)
        result["preferences"] = {**summary(*parse_collapsed((raw / "preferences.txt").open()), top),
                                 "handled": f"{learned() - before:,} signals learned in the window"}

        rows = prefill_facts(pipeline, sink_rows)
        import chdb  # noqa: F401 - imported before sampling: the import is start-up, not the sink's work

        pipeline.start_sink()
        spy = record(os.getpid(), seconds, raw / "sink.txt", gil=False)
        _wait(spy, raw / "sink.txt", seconds)
        stacks = parse_collapsed((raw / "sink.txt").open(), keep="clickhouse_sink", drop="importlib._bootstrap")
        result["sink"] = {**summary(*stacks, top), "handled": f"backlog of {rows:,} fact rows (the sink thread's "
                          "samples, its first connection's imports left out)"}
    finally:
        pipeline.close()
    result["raw_dir"] = str(raw)
    return result


ROLES = {"velocity": "velocity worker (`SALEPULSE_WORKER_ROLE=velocity`)",
         "preferences": "preferences worker (`SALEPULSE_WORKER_ROLE=preferences`)",
         "sink": "sink (thread of the bench process)"}


def write_summaries(profiles: dict[str, Any], directory: Path = PROFILES_DIR) -> list[Path]:
    """One text file per role: the command, the load, and the top frames by own and by total time."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for role, title in ROLES.items():
        p = profiles[role]
        flags = "--format raw" if role == "sink" else "--format raw --gil"
        lines = [f"# {title}", f"# salepulse bench --profile: py-spy record {flags}, {profiles['seconds']} s at "
                 f"100 Hz, backlog of {profiles['events']:,} simulated events; {p['handled']}; {p['samples']} samples",
                 "", "## own time (where the CPU is)", *[f"{pct:5.1f}%  {n:6d}  {name}" for name, n, pct in p["own"]],
                 "", "## total time (inclusive)", *[f"{pct:5.1f}%  {n:6d}  {name}" for name, n, pct in p["total"]]]
        path = directory / f"{role}.txt"
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def render_profiles(profiles: dict[str, Any], top: int = 10) -> list[str]:
    """The profile section of BENCHMARKS.md: per role, the top frames by own time."""
    lines = ["## Profiles (issue #13)", "",
             f"`salepulse bench --profile` (or `make profile`): py-spy (`record --format raw`, 100 Hz, workers with "
             "`--gil`, the sink without, "
             f"{profiles['seconds']} s per role) on a backlog of {profiles['events']:,} simulated events. Top "
             f"{top} frames by own time (% of the role's samples); full lists, with inclusive time, in "
             "`docs/profiles/`.", ""]
    for role, title in ROLES.items():
        p = profiles[role]
        lines += [f"### {title}", "", f"{p['samples']} samples; {p['handled']}.", "", "| own % | frame |",
                  "|---|---|", *[f"| {pct} | `{name}` |" for name, _, pct in p["own"][:top]], ""]
    return lines

