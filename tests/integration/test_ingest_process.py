"""The ingest's child process (``SALEPULSE_INGEST_PROCESS``) lives and dies with its worker, on a real broker."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from salepulse.consumers.tools.harness import Pipeline, wait_until
from salepulse.deploy.kafka.processes import children_of

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path) -> Iterator[Pipeline]:
    """The conftest's pipeline with the ingest in its own process (off by default)."""
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state", extra_env={"SALEPULSE_INGEST_PROCESS": "on"})
    yield p
    p.close()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_ingest_process_dies_with_a_killed_worker(pipeline: Pipeline) -> None:
    pipeline.start_worker(role="velocity")
    assert pipeline.worker is not None
    wait_until(lambda: bool(children_of(pipeline.worker.pid)), 30, "the ingest's child process")
    children = children_of(pipeline.worker.pid)
    pipeline.kill_worker()  # SIGKILL of the worker alone: no hook of ours runs
    deadline = time.monotonic() + 10
    while any(alive(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [child for child in children if alive(child)]
    for child in survivors:  # do not leave it consuming for the next test
        os.kill(child, signal.SIGKILL)
    assert not survivors, f"the worker's children {survivors} outlived it"


def test_a_killed_ingest_process_takes_its_worker_down(pipeline: Pipeline) -> None:
    pipeline.start_worker(role="velocity")
    assert pipeline.worker is not None
    wait_until(lambda: bool(children_of(pipeline.worker.pid)), 30, "the ingest's child process")
    for child in children_of(pipeline.worker.pid):
        os.kill(child, signal.SIGKILL)
    assert pipeline.worker.wait(15) == 70  # die_without_commit: nothing committed past what was delivered
    pipeline.stopped.add(pipeline.worker.pid)  # an expected death, not a failure of the harness
