"""Checks the CLI runs before any real work, so that each common mistake ends in one line that says what to do.

Why here and not deep in the clients: librdkafka retries an unreachable broker for half a minute while it logs
every refused connection, Faust prints a page of "Stopping..." lines when its port is taken, and a missing file
found after the Kafka check costs that wait for nothing. Each check is cheap and runs first.

>>> positive_float("2.5")
2.5
>>> positive_float("-5")
Traceback (most recent call last):
...
argparse.ArgumentTypeError: must be a number > 0, not -5
>>> share("0.01")
0.01
"""

from __future__ import annotations

import argparse
import contextlib
import math
import socket
from pathlib import Path

from salepulse.streams.platform.config import Settings

KAFKA_CHECK_SECONDS = 8.0
KAFKA_WAYS_OUT = "start the local one with `salepulse kafka up`, or set KAFKA_BOOTSTRAP_SERVERS to your broker"


class CliError(Exception):
    """A mistake the user can fix: printed as one ``error: ...`` line, exit code 2, no traceback."""


# --- argparse value types -------------------------------------------------------------------------------------
def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (rates, durations)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number > 0 (counts, limits)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0, not {text}")
    return value


def share(text: str) -> float:
    """A share between 0 and 1 (``--bad-rate``)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def speed(text: str) -> str:
    """``max`` or a number > 0 (``replay --speed``)."""
    if text != "max":
        positive_float(text)
    return text


# --- checks -----------------------------------------------------------------------------------------------------
def _endpoints(bootstrap: str) -> list[tuple[str, int]]:
    found = []
    for item in bootstrap.split(","):
        host, sep, port = item.strip().split("://")[-1].rpartition(":")
        if sep and port.isdigit():
            found.append((host.strip("[]") or "127.0.0.1", int(port)))
    return found


def kafka_answers(settings: Settings, timeout: float = KAFKA_CHECK_SECONDS) -> bool:
    """True when a Kafka broker at the configured address answers a metadata request within ``timeout``.

    A refused TCP connection answers at once; only then is a client built (quiet: librdkafka's own log off), with
    the configured security settings so that a SASL/TLS broker is asked the way the real clients will ask it.
    """
    reachable = False
    for host, port in _endpoints(settings.bootstrap):
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=min(timeout, 3.0)):
            reachable = True
            break
    if not reachable:
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_config(**{
        "log_level": 0, "socket.timeout.ms": int(timeout * 1000),
        "socket.connection.setup.timeout.ms": int(timeout * 1000)}))
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


def require_kafka(settings: Settings, timeout: float = KAFKA_CHECK_SECONDS) -> None:
    """Raise :class:`CliError` naming the address and the two ways out when no broker answers."""
    if not kafka_answers(settings, timeout):
        where = "KAFKA_BOOTSTRAP_SERVERS" if settings.kafka_bootstrap_servers else "the local default"
        raise CliError(f"no Kafka broker answers at {settings.bootstrap} ({where}): {KAFKA_WAYS_OUT}")


def require_file(path: Path, what: str, hint: str = "") -> None:
    """Raise :class:`CliError` when ``path`` is not a readable file."""
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise CliError(f"{what} {path} {state}{'; ' + hint if hint else ''}")


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def require_port(host: str, port: int, variable: str, what: str) -> None:
    """Raise :class:`CliError` naming the variable that moves ``what`` elsewhere when its port is taken."""
    if port_in_use(host, port):
        raise CliError(f"port {host}:{port} for {what} is in use; set {variable} to a free port "
                       f"(e.g. {variable}={port + 100})")
