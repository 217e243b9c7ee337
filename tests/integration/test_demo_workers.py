"""`salepulse demo --workers 2`: two velocity workers and a preferences worker, each on its own HTTP port, share
the run's partitions, and every produced unit reaches ClickHouse (issue #12, "Run it")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from salepulse.deploy.kafka.local_broker import free_port
from salepulse.deploy.kafka.processes import free_port_block
from tests.integration.test_demo_signals import _alive, _children

pytestmark = pytest.mark.integration


def test_demo_with_two_velocity_workers_reaches_clickhouse_exactly(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SALEPULSE_STATE_DIR": str(tmp_path / "state"),
           "SALEPULSE_HTTP_PORT": str(free_port_block(8)), "SALEPULSE_SINK_METRICS_PORT": str(free_port()),
           "SALEPULSE_PARTITIONS": "1"}  # fewer than the workers: the demo must raise it for its own topics
    env.pop("CLICKHOUSE_URL", None)  # the demo's own chdb under its state dir
    errors = tmp_path / "demo.stderr"
    process = subprocess.Popen(
        [sys.executable, "-m", "salepulse.streams.tools.cli", "demo", "--workers", "2", "--preference-workers", "1",
         "--rate", "300", "--duration", "20", "--seed", "7"],
        env=env, stdout=subprocess.PIPE, stderr=errors.open("w"), text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"demo ended before the simulator started: {lines}"
            lines.append(line.rstrip("\n"))
            if line.startswith("simulator"):
                break
        ports = {m.group(1): int(m.group(2)) for line in lines
                 if (m := re.match(r"((?:velocity|preferences)-\d)\s+\w+\s+http://127\.0\.0\.1:(\d+)", line))}
        assert set(ports) == {"velocity-1", "velocity-2", "preferences-1"}, lines
        assert len(set(ports.values())) == 3, f"each worker has its own port: {ports}"
        assert "(2 partitions)" in next(line for line in lines if line.startswith("run")), lines
        for name, port in ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
                assert json.loads(response.read())["status"] == "ok", name
        out, _ = process.communicate(timeout=400)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines += out.splitlines()
    assert process.returncode == 0, f"demo exited {process.returncode}: {lines[-3:]} {errors.read_text()[-2000:]}"
    summary = json.loads(lines[-1])
    assert summary["drained"] is True and summary["interrupted"] is False
    assert summary["units_produced"] > 0
    assert summary["units_in_clickhouse"] == summary["units_produced"]
    workers = {w["name"]: w for w in summary["workers"]}
    # Each velocity worker owns one of the two partitions of the member-keyed event topics, so both ingest.
    assert workers["velocity-1"]["events_processed"] > 0 and workers["velocity-2"]["events_processed"] > 0
    assert workers["velocity-1"]["events_processed"] + workers["velocity-2"]["events_processed"] \
        >= summary["events_produced"]
    assert workers["preferences-1"]["signals_learned"] > 0


def test_sigterm_stops_every_worker_of_the_fleet(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SALEPULSE_STATE_DIR": str(tmp_path / "state"),
           "SALEPULSE_HTTP_PORT": str(free_port_block(8)), "SALEPULSE_SINK_METRICS_PORT": str(free_port()),
           "SALEPULSE_PARTITIONS": "2"}
    env.pop("CLICKHOUSE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "salepulse.streams.tools.cli", "demo", "--workers", "2", "--preference-workers", "1",
         "--rate", "200", "--duration", "300"],
        env=env, stdout=subprocess.PIPE, stderr=(tmp_path / "demo.stderr").open("w"), text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        while not lines or not lines[-1].startswith("simulator"):
            line = process.stdout.readline()
            assert line, f"demo ended before the simulator started: {lines}"
            lines.append(line.rstrip("\n"))
        children = _children(process.pid)
        assert len(children) == 4, f"three workers and the sink run as children: {children}"
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, (tmp_path / "demo.stderr").read_text()[-2000:]
    summary = json.loads(out.splitlines()[-1])
    assert summary["interrupted"] is True and len(summary["workers"]) == 3
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "orphaned workers after SIGTERM"
