"""A private pipeline on a real broker, for the integration tests and the benchmarks.

Each :class:`Pipeline` has its own topics (a prefix), consumer groups and HTTP port, so runs never see each other's
data. The worker runs as a child process (so a test can SIGKILL it); the sink runs in a thread of the calling
process, which then owns the chdb engine and can read ClickHouse once the sink is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from salepulse.consumers.io.clickhouse import connect, migrate
from salepulse.consumers.io.clickhouse_sink import ClickHouseSink
from salepulse.deploy.kafka.local_broker import free_port
from salepulse.schemas.codec import Codec
from salepulse.streams.io.lag import end_offsets, group_lag
from salepulse.streams.io.topics import ensure_topics
from salepulse.streams.platform.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Pipeline:
    def __init__(self, bootstrap: str, clickhouse_dsn: str, state_dir: Path, partitions: int = 3,
                 extra_env: dict[str, str] | None = None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLICKHOUSE_URL": clickhouse_dsn,
            "SALEPULSE_TOPIC_PREFIX": f"t{tag}.",
            "SALEPULSE_APP_ID": f"salepulse-test-{tag}",
            "SALEPULSE_HTTP_PORT": str(free_port()),
            "SALEPULSE_STATE_DIR": str(state_dir),
            "SALEPULSE_PARTITIONS": str(partitions),
            **(extra_env or {}),
        }
        self.settings = Settings.from_env(self.env)
        self.sink_group = f"{self.settings.groups.sink}-{tag}"
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = state_dir / f"worker-{tag}.log"
        self.preferences_worker: subprocess.Popen[bytes] | None = None
        self.preferences_port = free_port()
        self.preferences_log = state_dir / f"preferences-{tag}.log"
        self.children: list[WorkerProcess] = []
        self.collectors: list[subprocess.Popen[bytes]] = []
        self.stopped: set[int] = set()
        """Pids of the workers :meth:`stop_worker` stopped on purpose: their exit is not a death."""
        self._sink_stop = threading.Event()
        self._sink_thread: threading.Thread | None = None
        self.sink: ClickHouseSink | None = None
        state_dir.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.settings)

    # --- worker -------------------------------------------------------------------------------------------
    def start_worker(self, timeout: float = 90.0, role: str = "all") -> None:
        """The worker that ingests (``role`` all or velocity), on ``settings.http_port``."""
        self.worker = self._spawn(role, self.settings.http_port, self.worker_log)
        wait_until(lambda: self._answers(self.worker, self.settings.http_port, self.worker_log), timeout,
                   "the worker's HTTP port")

    def start_preferences_worker(self, timeout: float = 90.0, serving_port: int = 0) -> None:
        """A second worker with SALEPULSE_WORKER_ROLE=preferences, on its own port; member requests go to it.
        ``serving_port``: its read server's (``SALEPULSE_SERVING_PORT``), for it alone (the velocity worker's read
        server would take the same port if ``extra_env`` named it)."""
        self.preferences_worker = self._spawn("preferences", self.preferences_port, self.preferences_log,
                                              serving_port)
        wait_until(lambda: self._answers(self.preferences_worker, self.preferences_port, self.preferences_log),
                   timeout, "the preferences worker's HTTP port")

    def start_collector(self, timeout: float = 90.0) -> tuple[int, subprocess.Popen[bytes]]:
        """``salepulse collect`` (POST /events in a process of its own) on this pipeline's topics and a port of its
        own: (port, process); stopped by :meth:`close`."""
        port = free_port()
        log = self.worker_log.parent / f"collector-{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "salepulse.streams.tools.cli", "collect"], cwd=REPO_ROOT,
            env={**self.env, "SALEPULSE_COLLECTOR_PORT": str(port)}, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.collectors.append(process)
        wait_until(lambda: self._answers(process, port, log), timeout, "the collector's HTTP port")
        return port, process

    def _spawn(self, role: str, port: int, log: Path, serving_port: int = 0) -> subprocess.Popen[bytes]:
        env = {**self.env, "SALEPULSE_WORKER_ROLE": role, "SALEPULSE_HTTP_PORT": str(port)}
        if serving_port:
            env["SALEPULSE_SERVING_PORT"] = str(serving_port)
        return subprocess.Popen(
            [sys.executable, "-m", "salepulse.streams.tools.cli", "worker"], env=env, cwd=REPO_ROOT,
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _answers(self, worker: subprocess.Popen[bytes] | None, port: int, log: Path) -> bool:
        assert worker is not None
        if worker.poll() is not None:
            raise AssertionError(f"worker exited with {worker.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return bool(self.get("/health", port)["ready"])
        except OSError:
            return False

    def get(self, path: str, port: int | None = None) -> Any:
        url = f"http://127.0.0.1:{port or self.settings.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            self.raise_if_a_worker_died()
            raise

    def raise_if_a_worker_died(self) -> None:
        """A worker that exited fails the test with its exit code and the end of its log, not with the
        connection-refused error of the request that noticed."""
        for worker, log in ((self.worker, self.worker_log), (self.preferences_worker, self.preferences_log)):
            if (worker is not None and worker.poll() is not None and worker.returncode != -signal.SIGKILL
                    and worker.pid not in self.stopped):
                tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
                raise AssertionError(f"worker exited with {worker.returncode}; end of {log}:\n{tail}")

    def stats(self) -> dict[str, Any]:
        return self.get("/stats")

    def get_member(self, path: str) -> Any:
        """A ``/members/...`` request, to the preferences worker when one runs."""
        return self.get(path, self.preferences_port if self.preferences_worker else None)

    def kill_worker(self) -> None:
        """SIGKILL: no shutdown hook, no final commit, no flush."""
        assert self.worker is not None
        os.kill(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)

    def stop_worker(self) -> None:
        for worker in (self.worker, self.preferences_worker):
            if worker and worker.poll() is None:
                self.stopped.add(worker.pid)  # its exit is no failure (the bench's collector case runs after it)
                stop_process(worker)

    # --- sink ---------------------------------------------------------------------------------------------
    def start_sink(self, client_factory: Callable[[str], Any] = connect,
                   on_written: Callable[[Any], None] | None = None) -> ClickHouseSink:
        self._sink_stop = threading.Event()
        self.sink = ClickHouseSink(self.settings, client_factory=client_factory, group_id=self.sink_group,
                                   on_written=on_written)
        self._sink_thread = threading.Thread(target=self.sink.run, args=(self._sink_stop,), daemon=True)
        self._sink_thread.start()
        return self.sink

    def stop_sink(self) -> None:
        if self._sink_thread:
            self._sink_stop.set()
            self._sink_thread.join(60)
            assert not self._sink_thread.is_alive(), "sink did not stop"
            self._sink_thread = None

    # --- progress and results -----------------------------------------------------------------------------
    def lag(self) -> tuple[int, int]:
        """(worker, sink) messages not yet handled. The worker's is read from the offsets it reports handled, not
        from its commits, which can trail processing (README, known issues); the sink's from its group."""
        topics = self.settings.topics
        handled = dict(self.stats()["processed_offsets"])
        if self.preferences_worker:
            handled.update(self.get("/stats", self.preferences_port)["processed_offsets"])
        ends = end_offsets(self.settings, [*topics.events, topics.facts, topics.signals])
        worker = sum(max(0, end - handled.get(f"{topic}:{partition}", -1) - 1)
                     for (topic, partition), end in ends.items())
        sink = group_lag(self.settings, self.sink_group, [topics.facts, topics.snapshots])
        return worker, sink

    def wait_drained(self, timeout: float = 120.0) -> None:
        """Until nothing is left for the worker or the sink, twice in a row a second apart (a fact sent just before
        the first look is not in the end offsets yet)."""
        streak = [0]

        def caught_up() -> bool:
            streak[0] = streak[0] + 1 if self.lag() == (0, 0) else 0
            return streak[0] >= 2

        wait_until(caught_up, timeout, "worker and sink to catch up", every=1.0)

    def clickhouse(self) -> Any:
        client = connect(self.settings.clickhouse_dsn)
        migrate(client)
        return client

    def totals(self, sale_prefix: str = "") -> dict[str, int]:
        """Velocity totals in ClickHouse for sales whose id starts with ``sale_prefix`` (sink must be stopped)."""
        row = self.clickhouse().query(
            "SELECT sum(views), sum(carts), sum(orders), sum(units) FROM velocity_minute "
            "WHERE startsWith(sale_id, {p:String})", parameters={"p": sale_prefix},
        ).result_rows[0]
        return dict(zip(["views", "carts", "orders", "units"], (int(v or 0) for v in row), strict=True))

    def event_ids_in_clickhouse(self, sale_prefix: str) -> set[str]:
        """Distinct event ids of the facts ClickHouse holds for sales starting with ``sale_prefix``."""
        rows = self.clickhouse().query(
            "SELECT DISTINCT event_id FROM velocity_facts_v2 FINAL WHERE startsWith(sale_id, {p:String})",
            parameters={"p": sale_prefix},
        ).result_rows
        return {row[0] for row in rows}

    def event_ids_in_facts_topic(self, sale_prefix: str, timeout: float = 20.0) -> set[str]:
        """Distinct event ids the worker forwarded on the facts topic for sales starting with ``sale_prefix``."""
        topic = self.settings.topics.facts
        ends = end_offsets(self.settings, [topic])
        consumer = Consumer(self.settings.kafka_config(**{"group.id": f"diag-{uuid.uuid4().hex}",
                                                          "auto.offset.reset": "earliest",
                                                          "enable.auto.commit": False}))
        consumer.subscribe([topic])
        codec, found, seen = Codec(), set(), {tp: -1 for tp in ends}
        deadline = time.monotonic() + timeout
        while any(seen[tp] < end - 1 for tp, end in ends.items()) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            seen[(message.topic(), message.partition())] = message.offset()
            facts = codec.decode(message.value())[1]
            if facts["sale_id"].startswith(sale_prefix):
                found.update(facts["event_ids"])
        consumer.close()
        return found

    # --- several workers of one role (scale-out tests) ----------------------------------------------------
    def spawn(self, role: str, name: str, serving: bool = False) -> WorkerProcess:
        """One more worker of ``role`` on its own port and log, started now (wait with :meth:`wait_ready`);
        ``serving``: with a read server (``SALEPULSE_SERVING_PORT``) on a port of its own too."""
        port, log = free_port(), self.worker_log.parent / f"{name}-{self.worker_log.stem}.log"
        serving_port = free_port() if serving else 0
        while serving and serving_port == port:  # two probes of the kernel's free ports can agree
            serving_port = free_port()
        child = WorkerProcess(name, role, port, log, self._spawn(role, port, log, serving_port), serving_port)
        self.children.append(child)
        return child

    def wait_ready(self, child: WorkerProcess, timeout: float = 90.0) -> None:
        wait_until(lambda: self._answers(child.process, child.port, child.log), timeout,
                   f"worker {child.name} ({child.role}) to answer /health with ready")

    def kill(self, child: WorkerProcess) -> None:
        """SIGKILL: no shutdown hook, no final commit, no flush."""
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.wait(10)

    def close(self) -> None:
        self.stop_sink()
        self.stop_worker()
        for process in [*self.collectors, *(child.process for child in self.children)]:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM, so the process shuts down cleanly; SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class WorkerProcess:
    """A worker started by :meth:`Pipeline.spawn`."""

    name: str
    role: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    serving_port: int = 0
