"""Session fixtures that hand tests REAL infrastructure: a Kafka broker and a ClickHouse engine.

Why the fallback chains: CI and developer machines differ. An explicitly configured service wins
(env vars), then Docker via testcontainers when a daemon answers, then something that needs no
Docker at all (the project's own KRaft broker from Maven jars; chdb, ClickHouse in-process).
Nothing here skips silently: if no option works the fixture raises and the tests error loudly.

The public datasets are the one exception: they cannot ship with the repository, so a test marked
``@pytest.mark.needs_data("rees46", ...)`` skips when its files are missing (one summary line says which and
where), and fails instead when ``SALEPULSE_REQUIRE_DATA=1`` (CI sets it, so CI always runs them).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from salepulse.consumers.data.datasets import REQUIRE_DATA_VARIABLE, missing, missing_message
from salepulse.deploy.kafka.local_broker import LocalBroker, broker_answers, free_ports
from salepulse.streams.platform.config import Settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Shared jar cache (same folder the default `salepulse kafka up` broker uses when run from the repo),
#: so Maven runs once per pom version rather than once per test session.
SHARED_KAFKA_LIB = REPO_ROOT / ".salepulse" / "kafka" / "lib"

DOCKER_PING_TIMEOUT_S = 3

_DATA_SKIPS: dict[str, Any] = {"tests": 0, "absent": {}}  # gathered for the one summary line


def _require_data() -> bool:
    return os.environ.get(REQUIRE_DATA_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers",
                            "needs_data(*names): needs these public datasets (see consumers/data/datasets.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("needs_data")
    if marker is None:
        return
    data_dir = Settings.from_env().data_dir
    absent = missing(data_dir, marker.args)
    if not absent:
        return
    message = missing_message(data_dir, absent)
    if _require_data():
        pytest.fail(f"{message} ({REQUIRE_DATA_VARIABLE}=1)", pytrace=False)
    _DATA_SKIPS["tests"] += 1
    _DATA_SKIPS["absent"].update({d.name: d for d in absent})
    _DATA_SKIPS["data_dir"] = data_dir
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One visible line for every missing-data skip, even under ``-q`` (skip reasons are hidden without ``-rs``)."""
    if _DATA_SKIPS["tests"]:
        message = missing_message(_DATA_SKIPS["data_dir"], _DATA_SKIPS["absent"].values())
        terminalreporter.write_line(f"SKIPPED {_DATA_SKIPS['tests']} test(s): {message}", yellow=True)


def _docker_unix_socket_refuses() -> bool:
    """True when DOCKER_HOST is a unix socket nobody listens on.

    Checked by hand because the docker SDK leaks its socket (a ResourceWarning) when connect fails.
    """
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(DOCKER_PING_TIMEOUT_S)
        try:
            sock.connect(host[len("unix://") :])
        except OSError:
            return True
    return False


@functools.cache
def docker_answers() -> bool:
    """True when a Docker daemon answers a ping within a few seconds (the CLI alone is not enough)."""
    if _docker_unix_socket_refuses():
        log.info("no docker daemon on DOCKER_HOST's unix socket; using docker-free fallbacks")
        return False
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable daemon"
        log.info("no docker daemon answers (%s); using docker-free fallbacks", type(exc).__name__)
        return False


def _kafka_container_cls() -> type:
    """testcontainers moved modules under ``community`` in 4.x; accept both layouts."""
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer


def _clickhouse_container_cls() -> type:
    try:
        from testcontainers.community.clickhouse import ClickHouseContainer
    except ImportError:
        from testcontainers.clickhouse import ClickHouseContainer
    return ClickHouseContainer


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for the whole session.

    Order: ``$KAFKA_BOOTSTRAP_SERVERS`` (must answer), a testcontainers KRaft ``KafkaContainer`` if
    Docker answers, else a private :class:`LocalBroker` in a temp dir on free ports (stopped at the end).
    """
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        if not broker_answers(configured, timeout=15.0):
            pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={configured} is set but no Kafka broker answers there")
        log.info("using kafka from KAFKA_BOOTSTRAP_SERVERS=%s", configured)
        yield configured
        return

    if docker_answers():
        container = _kafka_container_cls()().with_kraft()
        container.start()
        try:
            bootstrap = container.get_bootstrap_server()
            log.info("using testcontainers kafka at %s", bootstrap)
            yield bootstrap
        finally:
            container.stop()
        return

    port, controller_port = free_ports(2)
    broker = LocalBroker(
        home=tmp_path_factory.mktemp("kafka"),
        port=port,
        controller_port=controller_port,
        lib_dir=SHARED_KAFKA_LIB,
        heap_opts=("-Xms256m", "-Xmx768m"),
    )
    bootstrap = broker.up(timeout=120)  # raises LocalBrokerError (with the log tail) on failure
    log.info("using private local kafka broker at %s (home %s)", bootstrap, broker.home)
    try:
        yield bootstrap
    finally:
        broker.down()


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DSN for ``clickhouse_connect.get_client(dsn=...)`` pointing at a real ClickHouse engine.

    Order: ``$CLICKHOUSE_URL``, a testcontainers ``ClickHouseContainer`` (HTTP URL with credentials)
    if Docker answers, else ``chdb:///<tmp>/chdb`` (the ClickHouse engine in-process, no server).
    The chosen engine is probed with ``SELECT 1`` so a broken setup fails here, not mid-test.
    """
    import clickhouse_connect

    def probe(dsn: str) -> None:
        try:
            client = clickhouse_connect.get_client(dsn=dsn)
            try:
                client.query("SELECT 1")
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - re-raised as a loud fixture failure
            pytest.fail(f"ClickHouse at {dsn!r} does not answer SELECT 1: {exc!r}")

    configured = os.environ.get("CLICKHOUSE_URL", "").strip()
    if configured:
        probe(configured)
        yield configured
        return

    if docker_answers():
        container = _clickhouse_container_cls()()
        container.start()
        try:
            host = container.get_container_host_ip()
            http_port = container.get_exposed_port(8123)
            dsn = f"http://{container.username}:{container.password}@{host}:{http_port}/{container.dbname}"
            probe(dsn)
            yield dsn
        finally:
            container.stop()
        return

    path = tmp_path_factory.mktemp("clickhouse") / "chdb"
    dsn = f"chdb://{path}"  # path is absolute, so this reads chdb:///tmp/...
    probe(dsn)
    yield dsn
