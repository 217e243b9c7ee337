"""`salepulse demo` stopped the way systemd, Docker and CI stop processes (SIGTERM): children included, summary
printed; and `--keep-serving` keeps the dashboard up after the summary until that signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from salepulse.deploy.kafka.local_broker import free_port

pytestmark = pytest.mark.integration


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() \
        else "X"
    return state not in ("Z", "X")


def _start_demo(kafka_bootstrap: str, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SALEPULSE_STATE_DIR": str(tmp_path / "state"),
           "SALEPULSE_HTTP_PORT": str(port), "SALEPULSE_SINK_METRICS_PORT": str(free_port()),
           "SALEPULSE_PARTITIONS": "2"}
    env.pop("CLICKHOUSE_URL", None)  # the demo's own chdb under its state dir
    errors = open(tmp_path / "demo.stderr", "w")  # noqa: SIM115 - read back by _stop_and_check on failure
    process = subprocess.Popen([sys.executable, "-m", "salepulse.streams.tools.cli", "demo", "--rate", "200", *args],
                               env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    process.stderr_path = tmp_path / "demo.stderr"  # type: ignore[attr-defined]
    return process, port


def _read_until(process: subprocess.Popen[str], word: str, lines: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"demo ended before {word!r}: {lines}")
        lines.append(line.rstrip("\n"))
        if line.startswith(word):
            return
    raise AssertionError(f"no {word!r} line within {timeout:.0f}s: {lines}")


def _stop_and_check(process: subprocess.Popen[str], lines: list[str]) -> dict:
    children = _children(process.pid)
    assert len(children) >= 2, "the worker and the sink run as children"
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=90)
    lines.extend(out.splitlines())
    if process.returncode != 0:
        stderr = process.stderr_path.read_text(errors="replace")  # type: ignore[attr-defined]
        tail = [line for line in stderr.replace("\r", "\n").splitlines() if not line.startswith("simulate")][-15:]
        raise AssertionError(f"demo exited {process.returncode}; stdout tail {lines[-3:]}; stderr tail {tail}")
    summary = json.loads(lines[-1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "orphaned children after SIGTERM"
    return summary


def test_sigterm_mid_run_stops_children_and_prints_the_summary(kafka_bootstrap: str, tmp_path: Path) -> None:
    process, port = _start_demo(kafka_bootstrap, tmp_path, "--duration", "300")
    lines: list[str] = []
    try:
        _read_until(process, "simulator", lines, 150)
        assert lines[0].startswith("dashboard") and f":{port}/dashboard" in lines[0]
        time.sleep(3)  # some events in flight
        summary = _stop_and_check(process, lines)
    finally:
        if process.poll() is None:
            process.kill()
    assert summary["interrupted"] is True
    assert summary["seconds"] < 300
    assert summary["run_id"]


def test_keep_serving_keeps_the_dashboard_up_until_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    process, port = _start_demo(kafka_bootstrap, tmp_path, "--duration", "3", "--keep-serving")
    lines: list[str] = []
    try:
        _read_until(process, "serving", lines, 300)
        time.sleep(2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=10) as response:
            assert response.status == 200
        summary = _stop_and_check(process, lines)
    finally:
        if process.poll() is None:
            process.kill()
    assert summary["interrupted"] is False
    assert summary["units_in_clickhouse"] == summary["units_produced"]
