"""``salepulse demo``: the whole pipeline on one machine, then a JSON account of what went in and what came out.

Order of events: broker (local unless one is configured or already answers) → topics → workers and sink as child
processes (one worker with every role, or ``--workers N`` velocity and ``--preference-workers M`` preferences
workers, each on its own HTTP port: :mod:`salepulse.streams.tools.demo_fleet`) → simulator in this process for
``duration`` seconds → drain (bounded wait until the workers and the sink have caught up and ClickHouse holds every
produced unit) → clean shutdown → the summary as the last line.

Each run has its own namespace: topics prefixed ``demo-<run id>.`` and its own Faust app id (so its tables'
changelogs too), so sales and units of earlier runs on the same broker never show up in this one. SIGTERM (systemd,
Docker, CI) stops it exactly like Ctrl-C: children stopped, summary printed. ``keep_serving`` leaves the worker
and its dashboard up after the summary until one of those signals.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salepulse.streams.io.lag import end_offsets, group_lag
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.tools.demo_fleet import FleetMember, combined_stats, fleet_partitions, plan_fleet, worker_lag

log = get_logger(__name__)
DRAIN_TIMEOUT_SECONDS = 180.0


@dataclass
class Children:
    """The worker and sink processes, stopped together whatever happens."""

    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    env: dict[str, str] | None = None

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        logfile = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        # Own session: a Ctrl-C in the terminal reaches only the demo, which then stops the children in order
        # (worker first, so the sink can still write what the worker sent).
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "salepulse.streams.tools.cli", *args], stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True, env=env if env is not None else self.env,
        )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log_tail = _last_line(self.log_dir / f"{name}.log")
                raise RuntimeError(f"{name} exited with code {process.returncode} ({log_tail}); see "
                                   f"{self.log_dir / (name + '.log')}")

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


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-200:] if lines else "empty log"


def demo_settings(settings: Settings, run_id: str, environ: dict[str, str] | None = None) -> tuple[Settings, dict]:
    """This run's settings and the environment of its children: its own topic prefix and app id.

    A prefix the user set (``SALEPULSE_TOPIC_PREFIX``) is kept, with the run id after it.

    >>> s, env = demo_settings(Settings(), "r1", {})
    >>> s.topics.order, s.app_id, env["SALEPULSE_TOPIC_PREFIX"]
    ('demo-r1.events.order', 'salepulse-demo-r1', 'demo-r1.')
    """
    environ = dict(os.environ if environ is None else environ)
    prefix = environ.get("SALEPULSE_TOPIC_PREFIX", "") + f"demo-{run_id}."
    environ.update({"SALEPULSE_TOPIC_PREFIX": prefix, "SALEPULSE_APP_ID": f"{settings.app_id}-demo-{run_id}"})
    return Settings.from_env(environ), environ


def _worker_stats(settings: Settings, port: int | None = None) -> dict[str, Any]:
    url = f"http://{settings.http_host}:{port or settings.http_port}/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _fleet_stats(settings: Settings, fleet: list[FleetMember]) -> dict[str, Any]:
    """The counters of every worker of the fleet as one (:func:`combined_stats`)."""
    return combined_stats(_worker_stats(settings, member.port) for member in fleet)


def _final_stats(settings: Settings, fleet: list[FleetMember]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The counters of the fleet's counting workers (velocity or all) and each worker's events processed (and
    member signals learned); a worker that never answered (stopped before it was up) counts zeros."""
    per_worker, stats = [], []
    for member in fleet:
        try:
            one = _worker_stats(settings, member.port)
        except OSError:
            one = {"events_processed": 0, "deadletters": 0, "alerts": {}}
        if member.role != "preferences":
            stats.append(one)
        per_worker.append({"name": member.name, "role": member.role, "port": member.port,
                           "events_processed": one["events_processed"],
                           "signals_learned": one.get("signals_learned", 0)})
    return combined_stats(stats), per_worker


def wait_for_worker(settings: Settings, children: Children, timeout: float = 120.0,
                    stop: threading.Event | None = None, port: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        children.check_alive()
        try:
            _worker_stats(settings, port)
            return
        except OSError:
            time.sleep(0.5)
    if stop is not None and stop.is_set():
        return
    raise TimeoutError(f"worker did not answer on port {port or settings.http_port} within {timeout:.0f}s")


def ensure_broker(settings: Settings) -> str:
    """Use the configured broker, or one already answering, or start the local one."""
    from salepulse.deploy.kafka.local_broker import LocalBroker, broker_answers
    from salepulse.streams.tools.preflight import require_kafka

    if not settings.uses_local_kafka:
        require_kafka(settings)
        print(f"kafka      {settings.bootstrap} (KAFKA_BOOTSTRAP_SERVERS)", flush=True)
        return settings.bootstrap
    if broker_answers(settings.bootstrap, timeout=2.0):
        print(f"kafka      {settings.bootstrap} (already running)", flush=True)
        return settings.bootstrap
    from salepulse.deploy.kafka.local_broker import LocalBrokerError
    from salepulse.streams.tools.preflight import CliError

    broker = LocalBroker(home=settings.state_dir / "kafka", port=settings.local_kafka_port,
                         controller_port=settings.local_kafka_port + 1)
    print(f"kafka      starting local broker in {broker.home} ...", flush=True)
    try:
        bootstrap = broker.up()
    except LocalBrokerError as exc:  # no Java, no Maven, a port taken: its first line says which
        raise CliError(str(exc).splitlines()[0]) from exc
    print(f"kafka      {bootstrap} (local, KRaft; stop with `salepulse kafka down`)", flush=True)
    return bootstrap


def drain(settings: Settings, children: Children, messages_produced: int, stop: threading.Event | None = None,
          fleet: list[FleetMember] | None = None) -> bool:
    """Wait until the worker has handled every produced message and the sink has written everything the worker
    sent on; False if the bounded wait ran out.

    Progress is read from the workers' own counters and the sink's consumer group rather than the workers'
    committed offsets: Faust's commits can trail far behind processing (see the README's known issues), and the
    demo should report what was processed, not when Faust last committed. With several workers, sums of counters
    would count twice what a moved partition re-delivered, so progress is the highest offset any worker handled
    per partition of the event and facts topics (:func:`worker_lag`).
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    topics = settings.topics
    fleet = fleet or [FleetMember("worker", settings.worker_role, settings.http_port)]
    counting = [member for member in fleet if member.role != "preferences"]
    caught_up_once = False
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        children.check_alive()
        stats = _fleet_stats(settings, counting)
        handled = stats["events_processed"] + stats["deadletters"]
        lag = worker_lag(end_offsets(settings, [*topics.events, topics.facts]), stats["processed_offsets"])
        sink_lag = group_lag(settings, settings.groups.sink, [topics.facts, topics.snapshots])
        counted = stats["facts_counted"] + stats["facts_duplicate"] >= stats["facts_sent"]
        if handled >= messages_produced and counted and lag == 0 and sink_lag == 0:
            if caught_up_once:  # twice in a row: the snapshot timer and the sink's last flush have run
                return True
            caught_up_once = True
        else:
            caught_up_once = False
            log.info("draining", worker_handled=handled, produced=messages_produced, worker_lag=lag, sink_lag=sink_lag)
        time.sleep(1.5)
    return False


def units_in_clickhouse(settings: Settings, sale_ids: list[str]) -> int:
    """Units of these sales in ClickHouse. The schema is applied first (idempotent): a run stopped within seconds
    may end before the sink got to its migrations, and then the answer is 0, not an error."""
    from salepulse.consumers.io.clickhouse import connect, migrate

    client = connect(settings.clickhouse_dsn)
    migrate(client)
    row = client.query(
        "SELECT sum(units) FROM velocity_minute WHERE sale_id IN {sales:Array(String)}",
        parameters={"sales": sale_ids},
    ).result_rows[0]
    return int(row[0] or 0)


def run_demo(settings: Settings, *, duration: float, rate: float, seed: int | None, bad_rate: float,
             keep_serving: bool = False, workers: int | None = None, preference_workers: int | None = None,
             collector: bool = False) -> int:
    """The demo; ``workers`` (``--workers N``) runs N velocity workers and ``preference_workers`` (default 1)
    preferences workers instead of one worker with every role; ``collector`` (``--collector``) also runs
    ``salepulse collect`` for the site's ``POST /events``."""
    from salepulse.consumers.tools.simulate import run_simulation
    from salepulse.streams.io.topics import ensure_topics
    from salepulse.streams.tools.preflight import CliError, require_port

    if workers is None and preference_workers is not None:
        raise CliError("--preference-workers goes with --workers N (the velocity workers); without it the demo runs "
                       "one worker with every role")
    try:
        fleet = plan_fleet(settings.http_port, workers, 1 if preference_workers is None else preference_workers,
                           reserved={settings.sink_metrics_port}, single_role=settings.worker_role)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    for member in fleet:  # the workers take consecutive ports from SALEPULSE_HTTP_PORT
        what = "the worker's HTTP API and dashboard" if len(fleet) == 1 else f"worker {member.name}'s HTTP API"
        require_port(settings.http_host, member.port, "SALEPULSE_HTTP_PORT", what)
        if member.serving_port:
            require_port(settings.http_host, member.serving_port, "SALEPULSE_HTTP_PORT",  # read ports follow it
                         f"worker {member.name}'s read server (GET /sales off its event loop)")
    require_port(settings.http_host, settings.sink_metrics_port, "SALEPULSE_SINK_METRICS_PORT", "the sink's metrics")
    if collector:
        require_port(settings.http_host, settings.collector_port, "SALEPULSE_COLLECTOR_PORT", "the collector")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    seed = seed if seed is not None else int(time.time()) % 1_000_000
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    settings, env = demo_settings(settings, run_id)
    partitions = fleet_partitions(settings.partitions, fleet)
    if partitions != settings.partitions:
        # The run's topics are its own, so they can have what the fleet needs whatever SALEPULSE_PARTITIONS says.
        env["SALEPULSE_PARTITIONS"] = str(partitions)
        settings = Settings.from_env(env)
    children = Children(settings.state_dir, env=env)
    stop = threading.Event()
    # SIGTERM is how systemd, Docker and CI stop a process: it must end the run the way Ctrl-C does.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    dashboard = f"{fleet[0].url(settings.http_host)}/dashboard"

    def stop_fleet() -> None:
        children.stop("collector")  # nothing new comes in; what it accepted is on the broker already
        for member in fleet:  # workers first, so the sink can still write what they sent
            children.stop(member.name)
        children.stop("sink")

    try:
        print(f"dashboard  {dashboard}  (live once the worker answers)", flush=True)
        prefix = env["SALEPULSE_TOPIC_PREFIX"]
        print(f"run        {run_id}: topics {prefix}* ({partitions} partitions), app id {settings.app_id}", flush=True)
        print(f"alerts     SALEPULSE_TOPIC_PREFIX={prefix} salepulse alerts follow --from-beginning", flush=True)
        ensure_broker(settings)
        ensure_topics(settings)
        for member in fleet:
            children.start(member.name, "worker", env=member.env(env))
        children.start("sink", "sink")
        if collector:
            children.start("collector", "collect")
            print(f"collector  http://{settings.http_host}:{settings.collector_port}/events  (log "
                  f"{settings.state_dir}/collector.log)", flush=True)
        for member in fleet:
            role = "" if member.name == "worker" else f" {member.role:<11}"
            reads = f"  reads http://{settings.http_host}:{member.serving_port}/sales" if member.serving_port else ""
            print(f"{member.name:<10}{role} {member.url(settings.http_host)}{reads}  (log {settings.state_dir}/"
                  f"{member.name}.log)", flush=True)
        print(f"sink       {settings.clickhouse_dsn}  (log {settings.state_dir}/sink.log)", flush=True)
        for member in fleet:
            wait_for_worker(settings, children, stop=stop, port=member.port)
        print(f"simulator  seed {seed}, {rate:.0f} events/s for {duration:.0f}s; dashboard {dashboard}", flush=True)
        report = run_simulation(settings, seed=seed, rate=rate, duration=duration, bad_rate=bad_rate, stop=stop)
        interrupted = stop.is_set()
        produced = sum(report.events_produced.values()) + report.bad_produced
        drained = False if interrupted else drain(settings, children, produced, stop, fleet)
        interrupted = stop.is_set()
        stats, per_worker = _final_stats(settings, fleet)
        if not keep_serving or interrupted:
            stop_fleet()
        units_stored = None if keep_serving and not interrupted else units_in_clickhouse(settings, report.sale_ids)
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
            "run_id": run_id,
        }
        if len(fleet) > 1:
            # Per worker: a partition that moved mid-run is handled by both, so these can add up to more than
            # events_produced; events_processed above is the same sum.
            summary["workers"] = per_worker
        if keep_serving and not interrupted:
            # chdb is in process: the sink still holds it, so ClickHouse is read after Ctrl-C, not now.
            print(f"serving    {dashboard} until Ctrl-C or SIGTERM (workers and sink keep running)", flush=True)
            print(json.dumps({**summary, "units_in_clickhouse": "read at exit"}), flush=True)
            while not stop.wait(0.5):
                children.check_alive()
            stop_fleet()
            summary["units_in_clickhouse"] = units_in_clickhouse(settings, report.sale_ids)
            summary["interrupted"] = False
        print(json.dumps(summary), flush=True)
        ok = summary["units_in_clickhouse"] == summary["units_produced"] or interrupted
        return 0 if ok else 1
    finally:
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
