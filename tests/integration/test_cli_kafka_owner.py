"""`salepulse kafka status` / `kafka down` next to a broker that salepulse did not start: they say whose it is and
never claim to have stopped it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from salepulse.deploy.kafka.local_broker import broker_answers

pytestmark = pytest.mark.integration


def test_status_and_down_name_someone_elses_broker(kafka_bootstrap: str, tmp_path: Path) -> None:
    host, _, port = kafka_bootstrap.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the session broker {kafka_bootstrap} is not on this machine's loopback")
    env = {**os.environ, "SALEPULSE_STATE_DIR": str(tmp_path / "state"), "SALEPULSE_LOCAL_KAFKA_PORT": port}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "salepulse.streams.tools.cli", *args], env=env,
                              capture_output=True,
                              text=True, timeout=60, check=False)

    status = cli("kafka", "status")
    assert status.returncode == 0
    first, rest = status.stdout.split("\n", 1)
    assert "not ours" in first and f"127.0.0.1:{port}" in first
    assert json.loads(rest)["owner"] == "someone else's"

    down = cli("kafka", "down")
    assert down.returncode == 0
    assert down.stdout.startswith("nothing stopped: the broker answering at") and "stopped (" not in down.stdout
    assert broker_answers(kafka_bootstrap, timeout=10.0), "kafka down stopped a broker it did not start"
