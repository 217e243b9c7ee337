"""Round trip through a real Kafka broker, plus the LocalBroker up/status/down lifecycle.

Why: every salepulse stream rests on the broker fixture; if produce/consume across partitions does
not work here, nothing downstream can be trusted. The lifecycle test proves `down` really ends the JVM.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from salepulse.deploy.kafka.local_broker import LocalBroker, broker_answers, free_ports
from tests.conftest import SHARED_KAFKA_LIB

pytestmark = pytest.mark.integration

PARTITIONS = 3
MESSAGES = 12


def _create_topic(admin: AdminClient, name: str, partitions: int) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # creation is async; wait until metadata shows every partition
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {name} did not show {partitions} partitions in metadata")


def test_produce_and_consume_across_partitions(kafka_bootstrap: str) -> None:
    topic = f"salepulse-it-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    _create_topic(admin, topic, PARTITIONS)
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True})
        delivered: list[tuple[int, int]] = []
        errors: list[str] = []

        def on_delivery(err: object, msg: object) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

        sent = {f"order-{i}": f"sku-{i % 5}:qty={i}" for i in range(MESSAGES)}
        for i, (key, value) in enumerate(sent.items()):
            producer.produce(topic, key=key, value=value, partition=i % PARTITIONS, on_delivery=on_delivery)
        assert producer.flush(30) == 0, "producer still had undelivered messages after 30s"
        assert not errors, errors
        assert {p for p, _ in delivered} == set(range(PARTITIONS))

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"{topic}-reader",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        received: dict[str, str] = {}
        partitions_seen: set[int] = set()
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 60
            while len(received) < MESSAGES and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                assert msg.error() is None, msg.error()
                received[msg.key().decode()] = msg.value().decode()
                partitions_seen.add(msg.partition())
        finally:
            consumer.close()

        assert received == sent
        assert partitions_seen == set(range(PARTITIONS))
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


def test_local_broker_lifecycle(tmp_path: Path) -> None:
    """A private LocalBroker comes up, reports itself, is idempotent, and is really gone after down()."""
    port, controller_port = free_ports(2)
    broker = LocalBroker(
        home=tmp_path / "kafka",
        port=port,
        controller_port=controller_port,
        lib_dir=SHARED_KAFKA_LIB,
        heap_opts=("-Xms128m", "-Xmx512m"),
    )
    try:
        assert broker.status()["running"] is False
        bootstrap = broker.up(timeout=120)
        assert bootstrap == f"127.0.0.1:{port}"
        status = broker.status()
        pid = status["pid"]
        assert status["running"] is True and status["answering"] is True
        assert isinstance(pid, int) and broker.pid_file.read_text().strip() == str(pid)
        assert broker.up() == bootstrap and broker.status()["pid"] == pid  # no second JVM
        assert broker.server_log.stat().st_size > 0, "log4j2 backend wrote nothing"
    finally:
        stopped = broker.down()
    assert stopped is True
    assert not broker.pid_file.exists()
    assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    with pytest.raises(ProcessLookupError):
        _signal0_unless_zombie(pid)
    assert not broker_answers(bootstrap, timeout=2.0)
    assert broker.down() is False


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _signal0_unless_zombie(pid: int) -> None:
    if _is_zombie(pid):
        raise ProcessLookupError(pid)
    os.kill(pid, 0)
