"""Every common mistake ends in one line, in under 10 s, with no traceback (the CLI run as a user runs it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from salepulse.deploy.kafka.local_broker import free_port

LIMIT_SECONDS = 10.0


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str, float]:
    full_env = {**os.environ, **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "salepulse.streams.tools.cli", *args], env=full_env,
                          capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def assert_one_line(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture
def nowhere() -> str:
    """A Kafka address nobody listens on."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    return {"SALEPULSE_STATE_DIR": str(tmp_path / "state"), "SALEPULSE_HTTP_PORT": str(free_port()),
            "SALEPULSE_SINK_METRICS_PORT": str(free_port())}


@pytest.fixture
def priors_csv(tmp_path: Path) -> Path:
    path = tmp_path / "priors.csv"
    path.write_text("sale_id,sku,expected_units\ns1,k1,10\n")
    return path


@pytest.fixture
def replay_file(tmp_path: Path) -> Path:
    path = tmp_path / "rees46.csv.gz"
    path.write_bytes(b"")
    return path


def kafka_commands(priors: Path, replay: Path) -> list[tuple[str, ...]]:
    return [("simulate", "--duration", "1"), ("replay", "rees46", str(replay)), ("priors", "load", str(priors)),
            ("alerts", "follow"), ("demo", "--duration", "1")]


@pytest.mark.parametrize("which", range(5), ids=["simulate", "replay", "priors load", "alerts follow", "demo"])
def test_unreachable_kafka_is_one_line_naming_the_address_and_the_ways_out(
    which: int, nowhere: str, state: dict[str, str], priors_csv: Path, replay_file: Path
) -> None:
    args = kafka_commands(priors_csv, replay_file)[which]
    code, out, err, seconds = run_cli(*args, env={"KAFKA_BOOTSTRAP_SERVERS": nowhere, **state})
    assert code == 2
    assert_one_line(err, nowhere, "salepulse kafka up", "KAFKA_BOOTSTRAP_SERVERS")
    assert "rdkafka" not in err.lower() and "Traceback" not in err
    assert seconds < LIMIT_SECONDS


@pytest.mark.parametrize("args", [("replay", "rees46", "{missing}"), ("priors", "load", "{missing}"),
                                  ("replay", "taobao")])
def test_a_missing_file_is_named_before_kafka_is_tried(args: tuple[str, ...], nowhere: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    argv = [a.format(missing=missing) for a in args]
    code, _, err, seconds = run_cli(*argv, env={"KAFKA_BOOTSTRAP_SERVERS": nowhere,
                                                "SALEPULSE_DATA_DIR": str(tmp_path)})
    assert code == 2
    assert_one_line(err, "does not exist")
    assert "Kafka" not in err
    assert seconds < LIMIT_SECONDS


@pytest.mark.parametrize("args, words", [
    (("replay", "amazon"), "invalid choice: 'amazon'"),
    (("evaluate", "forecast", "--dataset", "amazon"), "invalid choice: 'amazon'"),
    (("evaluate", "forecast", "--dataset", "taobao"), "must be one of online-retail, simulated"),
    (("simulate", "--rate", "-5"), "--rate: must be a number > 0, not -5"),
    (("demo", "--duration", "0"), "--duration: must be a number > 0"),
    (("demo", "--bad-rate", "2"), "--bad-rate: must be between 0 and 1"),
    (("replay", "rees46", "--speed", "fast"), "--speed: must be a number"),
    (("replay", "rees46", "--limit", "-1"), "--limit: must be a whole number > 0"),
])
def test_bad_flag_values_are_refused_by_the_parser(args: tuple[str, ...], words: str) -> None:
    code, _, err, seconds = run_cli(*args)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("salepulse") and "error:" in last and words in last, err
    assert "Traceback" not in err
    assert seconds < LIMIT_SECONDS


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["demo", "worker"])
def test_a_busy_port_names_the_variable(command: str, busy_port: int, nowhere: str, state: dict[str, str]) -> None:
    env = {**state, "SALEPULSE_HTTP_PORT": str(busy_port), "KAFKA_BOOTSTRAP_SERVERS": nowhere}
    code, _, err, seconds = run_cli(command, env=env)
    assert code == 2
    assert_one_line(err, f"127.0.0.1:{busy_port}", "SALEPULSE_HTTP_PORT")
    assert seconds < LIMIT_SECONDS


def test_sink_busy_metrics_port_names_its_variable(busy_port: int, nowhere: str, state: dict[str, str]) -> None:
    env = {**state, "SALEPULSE_SINK_METRICS_PORT": str(busy_port), "KAFKA_BOOTSTRAP_SERVERS": nowhere}
    code, _, err, _ = run_cli("sink", env=env)
    assert code == 2
    assert_one_line(err, "SALEPULSE_SINK_METRICS_PORT")


@pytest.mark.parametrize("args", [("kafka", "up"), ("demo", "--duration", "1")])
def test_no_java_is_one_line(args: tuple[str, ...], tmp_path: Path, state: dict[str, str]) -> None:
    env = {**state, "PATH": str(tmp_path), "JAVA_HOME": str(tmp_path / "no-jdk"),
           "SALEPULSE_LOCAL_KAFKA_PORT": str(free_port()), "KAFKA_BOOTSTRAP_SERVERS": ""}
    code, _, err, seconds = run_cli(*args, env=env)
    assert code == 2
    assert_one_line(err, "java", "KAFKA_BOOTSTRAP_SERVERS")
    assert seconds < LIMIT_SECONDS


def test_kafka_down_and_status_with_nothing_running_say_so(state: dict[str, str]) -> None:
    env = {**state, "SALEPULSE_LOCAL_KAFKA_PORT": str(free_port())}
    code, out, _, _ = run_cli("kafka", "down", env=env)
    assert code == 0
    assert out.startswith("nothing stopped: no local Kafka was running")
    assert "stopped (" not in out
    code, out, _, _ = run_cli("kafka", "status", env=env)
    assert code == 0
    assert out.splitlines()[0].startswith("no Kafka broker answers at")
    assert '"owner": "none"' in out


def test_data_check_lists_every_dataset_and_fails_when_one_is_missing(tmp_path: Path) -> None:
    code, out, _, _ = run_cli("data", "check", env={"SALEPULSE_DATA_DIR": str(tmp_path)})
    assert code == 1
    for name in ("rees46", "taobao", "online-retail"):
        assert any(line.split()[0] == name and "MISSING" in line for line in out.splitlines()[1:]), out


def test_debug_shows_the_traceback(nowhere: str, state: dict[str, str]) -> None:
    code, _, err, _ = run_cli("--debug", "alerts", "follow", env={"KAFKA_BOOTSTRAP_SERVERS": nowhere, **state})
    assert code != 0
    assert "Traceback" in err and "CliError" in err
