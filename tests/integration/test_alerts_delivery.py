"""Alert delivery on the real broker: a flaky webhook gets every alert, a restarted follower resumes, none lost.

The receiver is a real HTTP server on 127.0.0.1 whose answers the test scripts (500s, a 429 with Retry-After, then
200s), so the retry path, the commit-after-delivery rule and the resume from the committed position are all
exercised through real sockets and a real consumer group.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from confluent_kafka import Producer

from salepulse.consumers.io.alerts_follow import FollowReport, follow
from salepulse.consumers.tools.harness import REPO_ROOT, wait_until
from salepulse.schemas.codec import Codec
from salepulse.streams.io.topics import ensure_topics
from salepulse.streams.platform.config import Settings

pytestmark = pytest.mark.integration

#: (status, headers, body) for one request, decided from its 1-based sequence number and the alert id.
Script = Callable[[int, str], tuple[int, dict[str, str], str]]


def accept_all(_n: int, _alert_id: str) -> tuple[int, dict[str, str], str]:
    return 200, {}, "ok"


class Receiver:
    """A webhook receiver on a free port that answers by ``script`` and records what it accepted."""

    def __init__(self) -> None:
        self.script: Script = accept_all
        self.requests = 0
        self.accepted: Counter[str] = Counter()
        self.header_mismatches = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                alert_id = body["alert_id"]
                with receiver.lock:
                    receiver.requests += 1
                    if self.headers.get("Idempotency-Key") != alert_id:
                        receiver.header_mismatches += 1
                    status, headers, text = receiver.script(receiver.requests, alert_id)
                    if 200 <= status < 300:
                        receiver.accepted[alert_id] += 1
                payload = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.accepted)

    def duplicates(self) -> int:
        with self.lock:
            return sum(self.accepted.values()) - len(self.accepted)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "SALEPULSE_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.", "SALEPULSE_PARTITIONS": "3"}
    s = Settings.from_env(env)
    ensure_topics(s)
    return s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_alerts(prefix: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    raised = 1_795_946_520_000
    return [
        {"event_id": f"{prefix}:{i}", "alert_id": f"{prefix}:{i}", "sale_id": f"{prefix}s{i % 3}", "sku": f"k{i}",
         "status": ("open", "escalated", "resolved")[i % 3], "severity": ("low", "medium", "high", "critical")[i % 4],
         "probability": 0.8, "shortfall": 10.0 + i, "available": 40, "p90": 90.0 + i,
         "recommended_quantity": 50 + i, "projected_stockout_at": raised + 3_600_000 if i % 2 else None,
         "reason": f"alert number {i}", "raised_at": raised + i * 1000}
        for i in range(start, start + n)
    ]


def produce(settings: Settings, values: list[tuple[bytes, str]], partition: int | None = None) -> None:
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True}))
    for value, key in values:
        kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
        producer.produce(settings.topics.alerts, value=value, key=key, **kwargs)
    assert producer.flush(30) == 0


def produce_alerts(settings: Settings, alerts: list[dict[str, Any]], partition: int | None = None) -> None:
    codec = Codec()
    produce(settings, [(codec.encode("ReplenishmentAlert", a), f"{a['sale_id']}:{a['sku']}") for a in alerts],
            partition)


def run_follow(timeout: float, **kwargs: Any) -> tuple[FollowReport, threading.Event]:
    """``follow`` with a watchdog: a hung follower fails the test instead of hanging it."""
    stop = kwargs.pop("stop", None) or threading.Event()
    watchdog = threading.Timer(timeout, stop.set)
    watchdog.start()
    started = time.monotonic()
    try:
        report = follow(stop=stop, **kwargs)
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < timeout, f"follow did not finish within {timeout}s: {kwargs}"
    return report, stop


def test_flaky_webhook_gets_every_alert_and_a_restart_resumes(settings: Settings, receiver: Receiver) -> None:
    prefix, n, m, k = uuid.uuid4().hex[:6], 20, 10, 4
    group = f"alerts-test-{prefix}"
    first = make_alerts(prefix, n)
    produce_alerts(settings, first)

    # Phase 1: four 500s, one 429 (Retry-After 0.1 s), then 200s. Every alert must arrive.
    def flaky(seq: int, _alert_id: str) -> tuple[int, dict[str, str], str]:
        if seq <= 4:
            return 500, {}, f"internal error #{seq}"
        if seq == 5:
            return 429, {"Retry-After": "0.1"}, "slow down"
        return 200, {}, "ok"

    receiver.script = flaky
    report, _ = run_follow(120, settings=settings, webhook=receiver.url, group_id=group, from_beginning=True,
                           max_alerts=n)
    assert report.stopped == "max_alerts" and report.delivered == n
    assert report.failed_attempts == 5 and report.undecodable == 0 and report.commit_failures == 0
    assert receiver.ids() == {a["alert_id"] for a in first}
    assert receiver.header_mismatches == 0
    phase1_duplicates = receiver.duplicates()

    # Phase 2: M more; after k accepted, the receiver starts failing and the follower is stopped meanwhile,
    # so the in-flight alert is abandoned uncommitted.
    second = make_alerts(prefix, m, start=n)
    produce_alerts(settings, second)
    stop = threading.Event()
    base = receiver.requests
    accepted_in_phase = {"n": 0}

    def stop_after_k(seq: int, _alert_id: str) -> tuple[int, dict[str, str], str]:
        if accepted_in_phase["n"] < k:
            accepted_in_phase["n"] += 1
            return 200, {}, "ok"
        stop.set()  # operator presses Ctrl-C while the receiver is down
        return 503, {"Retry-After": "30"}, f"maintenance (request {seq - base})"

    receiver.script = stop_after_k
    report2, _ = run_follow(60, settings=settings, webhook=receiver.url, group_id=group, stop=stop)
    assert report2.stopped == "stop" and report2.delivered == k and report2.abandoned == 1
    assert report2.seconds < 25, "stop must abandon the Retry-After wait, not sit it out"
    phase2_ids = receiver.ids()
    assert len(phase2_ids) == n + k  # phase 1 all, phase 2 exactly k new ones (nothing of phase 1 again)

    # Phase 3: restart with the same group and a healthy receiver: it resumes, and the receiver ends with N+M.
    receiver.script = accept_all
    everything = {a["alert_id"] for a in first + second}
    stop3 = threading.Event()
    result: dict[str, FollowReport] = {}
    thread = threading.Thread(target=lambda: result.update(r=follow(settings, webhook=receiver.url, group_id=group,
                                                                    stop=stop3)), daemon=True)
    thread.start()
    try:
        wait_until(lambda: receiver.ids() >= everything, 60, "every alert at the receiver", every=0.2)
        time.sleep(1.0)  # let any redelivery that would happen, happen, so it is counted
    finally:
        stop3.set()
        thread.join(30)
    assert not thread.is_alive()
    report3 = result["r"]
    assert receiver.ids() == everything
    assert report3.delivered >= m - k
    duplicates = receiver.duplicates()
    print(f"\nalert delivery: {n + m} alerts, {sum(receiver.accepted.values())} accepted, {duplicates} duplicates "
          f"(phase 1: {phase1_duplicates}); follower reports {report.delivered}+{report2.delivered}+"
          f"{report3.delivered}, {report.failed_attempts + report2.failed_attempts} failed attempts")
    # The abandoned alert was never accepted, so it is not a duplicate; a clean stop commits everything it
    # delivered, so only a failed commit (a rebalance) may cause one. Receivers de-duplicate by alert_id anyway.
    assert duplicates <= report.commit_failures + report2.commit_failures + report3.commit_failures
    assert report3.delivered == m - k


def test_json_lines_to_stdout_skip_undecodable(settings: Settings) -> None:
    prefix = uuid.uuid4().hex[:6]
    alerts = make_alerts(prefix, 3)
    codec = Codec()
    sale = codec.encode("Sale", _a_sale(prefix))
    # One partition, garbage first: the follower must meet it before the alerts it is counting.
    produce(settings, [(b"not avro at all", "x"), (sale, "y")], partition=0)
    produce_alerts(settings, alerts, partition=0)

    out = io.StringIO()
    report, _ = run_follow(60, settings=settings, output="json", group_id=f"alerts-json-{prefix}",
                           from_beginning=True, max_alerts=3, out=out)
    lines = out.getvalue().splitlines()
    assert report.delivered == 3 and report.undecodable == 1 and report.not_alerts == 1
    assert len(lines) == 3
    objects = [json.loads(line) for line in lines]
    assert [o["alert_id"] for o in objects] == [a["alert_id"] for a in alerts]
    assert objects[0]["raised_at"] == "2026-11-29T10:02:00.000+00:00"
    assert objects[0]["projected_stockout_at"] is None and objects[1]["projected_stockout_at"].endswith("+00:00")

    # Same group again: everything was committed, so nothing is printed twice.
    out2 = io.StringIO()
    stop = threading.Event()
    threading.Timer(6.0, stop.set).start()
    report2 = follow(settings, output="json", group_id=f"alerts-json-{prefix}", from_beginning=True, stop=stop,
                     out=out2)
    assert report2.delivered == 0 and out2.getvalue() == ""


FOLLOWER = """
import json, sys
from salepulse.consumers.io.alerts_follow import follow
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import configure
configure("INFO")
report = follow(Settings.from_env(), output="json", group_id=sys.argv[1], from_beginning=True)
print("REPORT " + json.dumps(report.__dict__), flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_commits(settings: Settings, kafka_bootstrap: str, sig: signal.Signals) -> None:
    prefix = uuid.uuid4().hex[:6]
    group = f"alerts-signal-{prefix}"
    produce_alerts(settings, make_alerts(prefix, 2))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "SALEPULSE_TOPIC_ALERTS": settings.topics.alerts}
    proc = subprocess.Popen([sys.executable, "-c", FOLLOWER, group], env=env, cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert {json.loads(line)["alert_id"] for line in lines} == {f"{prefix}:0", f"{prefix}:1"}
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    report = json.loads(stdout.strip().splitlines()[-1].removeprefix("REPORT "))
    assert report["delivered"] == 2 and report["stopped"] == "stop"

    # Committed: the same group sees nothing old again.
    stop = threading.Event()
    threading.Timer(6.0, stop.set).start()
    out = io.StringIO()
    assert follow(settings, output="json", group_id=group, stop=stop, out=out).delivered == 0
    assert out.getvalue() == ""


def _a_sale(prefix: str) -> dict[str, Any]:
    """A valid record that is not an alert: it decodes, but must be skipped and counted."""
    ts = 1_795_946_520_000
    return {"event_id": f"{prefix}-sale", "sale_id": f"{prefix}-sale", "brand": "acme", "starts_at": ts,
            "ends_at": ts + 86_400_000, "products": [], "updated_at": ts}
