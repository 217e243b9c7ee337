"""``salepulse demo``: the whole pipeline on one machine, then a JSON account of what went in and what came out.

Order of events: broker (local unless one is configured or already answers) → topics → worker and sink as child
processes → simulator in this process for ``duration`` seconds → drain (bounded wait until both consumer groups
have caught up and ClickHouse holds every produced unit) → clean shutdown → the summary as the last line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salepulse.streams.config import Settings
from salepulse.streams.lag import group_lag
from salepulse.streams.logs import get_logger

log = get_logger(__name__)
DRAIN_TIMEOUT_SECONDS = 180.0


@dataclass
class Children:
    """The worker and sink processes, stopped together whatever happens."""

    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        logfile = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "salepulse.streams.cli", *args], stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}; see .salepulse/{name}.log")

    def stop(self, name: str, timeout: float = 30.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("child did not stop in time; killing", child=name)
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def _worker_stats(settings: Settings) -> dict[str, Any]:
    url = f"http://{settings.http_host}:{settings.http_port}/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for_worker(settings: Settings, children: Children, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children.check_alive()
        try:
            _worker_stats(settings)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"worker did not answer on port {settings.http_port} within {timeout:.0f}s")


def ensure_broker(settings: Settings) -> str:
    """Use the configured broker, or one already answering, or start the local one."""
    from salepulse.deploy.kafka.local_broker import LocalBroker, broker_answers

    if not settings.uses_local_kafka or broker_answers(settings.bootstrap, timeout=2.0):
        print(f"kafka      {settings.bootstrap} (already running)", flush=True)
        return settings.bootstrap
    broker = LocalBroker(home=settings.state_dir / "kafka", port=settings.local_kafka_port,
                         controller_port=settings.local_kafka_port + 1)
    print(f"kafka      starting local broker in {broker.home} ...", flush=True)
    bootstrap = broker.up()
    print(f"kafka      {bootstrap} (local, KRaft; stop with `salepulse kafka down`)", flush=True)
    return bootstrap


def drain(settings: Settings, children: Children, messages_produced: int) -> bool:
    """Wait until the worker has handled every produced message and the sink has written everything the worker
    sent on; False if the bounded wait ran out.

    Progress is read from the worker's own counters and the sink's consumer group rather than the worker's
    committed offsets: Faust's commits can trail far behind processing (see the README's known issues), and the
    demo should report what was processed, not when Faust last committed.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    topics = settings.topics
    caught_up_once = False
    while time.monotonic() < deadline:
        children.check_alive()
        stats = _worker_stats(settings)
        handled = stats["events_processed"] + stats["deadletters"]
        sink_lag = group_lag(settings, settings.groups.sink, [topics.facts, topics.snapshots])
        if handled >= messages_produced and stats["facts_counted"] + stats["facts_duplicate"] >= stats["facts_sent"] \
                and sink_lag == 0:
            if caught_up_once:  # twice in a row: the snapshot timer and the sink's last flush have run
                return True
            caught_up_once = True
        else:
            caught_up_once = False
            log.info("draining", worker_handled=handled, produced=messages_produced, sink_lag=sink_lag)
        time.sleep(1.5)
    return False


def units_in_clickhouse(settings: Settings, sale_ids: list[str]) -> int:
    from salepulse.consumers.clickhouse import connect

    row = connect(settings.clickhouse_dsn).query(
        "SELECT sum(units) FROM velocity_minute WHERE sale_id IN {sales:Array(String)}",
        parameters={"sales": sale_ids},
    ).result_rows[0]
    return int(row[0] or 0)


def run_demo(settings: Settings, *, duration: float, rate: float, seed: int | None, bad_rate: float) -> int:
    from salepulse.consumers.simulate import run_simulation
    from salepulse.streams.topics import ensure_topics

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    seed = seed if seed is not None else int(time.time()) % 1_000_000
    children = Children(settings.state_dir)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        ensure_broker(settings)
        ensure_topics(settings)
        children.start("worker", "worker")
        children.start("sink", "sink")
        print(f"worker     http://{settings.http_host}:{settings.http_port}  (log .salepulse/worker.log)", flush=True)
        print(f"sink       {settings.clickhouse_dsn}  (log .salepulse/sink.log)", flush=True)
        wait_for_worker(settings, children)
        print(f"simulator  seed {seed}, {rate:.0f} events/s for {duration:.0f}s", flush=True)
        report = run_simulation(settings, seed=seed, rate=rate, duration=duration, bad_rate=bad_rate, stop=stop)
        interrupted = stop.is_set()
        produced = sum(report.events_produced.values()) + report.bad_produced
        drained = False if interrupted else drain(settings, children, produced)
        stats = _worker_stats(settings)
        children.stop("worker")
        children.stop("sink")
        units_stored = units_in_clickhouse(settings, report.sale_ids)
        summary = {
            "events_produced": sum(report.events_produced.values()),
            "events_processed": stats["events_processed"],
            "orders_produced": report.orders_produced,
            "units_produced": report.units_produced,
            "units_in_clickhouse": units_stored,
            "deadletters": stats["deadletters"],
            "alerts": stats["alerts"],
            "bad_produced": report.bad_produced,
            "drained": drained,
            "interrupted": interrupted,
            "seed": seed,
            "sales": len(report.sale_ids),
            "seconds": round(report.seconds, 1),
        }
        print(json.dumps(summary), flush=True)
        return 0 if summary["units_in_clickhouse"] == summary["units_produced"] or interrupted else 1
    finally:
        children.stop_all()
        signal.signal(signal.SIGINT, previous)
