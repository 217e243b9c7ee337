"""Batches produced through one idempotent producer, each with one future that resolves once the broker has
acknowledged every message of it: how the HTTP collector knows a request is stored before it answers 2xx.

Before, each request produced its messages and then called ``producer.flush`` in a thread: a flush waits for every
message in the producer's queue, so with many requests in flight each one waited for the others' messages too, and
every request took a thread of the default executor for as long. Here a daemon thread polls the producer (the
delivery reports run there), each message's report counts down its batch, and the last one resolves the batch's
future; the request awaits only its own messages.

>>> pending = Pending(2)
>>> pending(None, None); pending.future.done()
False
>>> pending("broker down", None); pending.future.result()
['broker down']
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Producer

from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)
Outgoing = tuple[str, bytes, str | bytes | None, list[tuple[str, bytes]] | None]
"""(topic, encoded value, key, Kafka headers)"""
POLL_S = 0.05


class Pending:
    """The delivery report of every message of one batch: counts them down, keeps the errors, and resolves
    :attr:`future` with the list of errors (empty: all stored) when the last one is in. Called only from the
    polling thread, so the countdown needs no lock."""

    __slots__ = ("errors", "future", "left")

    def __init__(self, messages: int) -> None:
        self.left = messages
        self.errors: list[str] = []
        self.future: Future[list[str]] = Future()
        if messages == 0:
            self.future.set_result([])

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        self.left -= 1
        if self.left == 0:
            self.future.set_result(self.errors)


class AckedBatches:
    """Produce batches through ``producer`` and learn when each is stored (see the module's docstring)."""

    def __init__(self, producer: Producer, name: str = "collector-acks") -> None:
        self.producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=name, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(POLL_S)

    def send(self, items: Sequence[Outgoing]) -> Future[list[str]]:
        """Produce ``items``; the future resolves with the broker's errors (none: every one acknowledged).

        Messages without headers go in one ``produce_batch`` call per topic (about 1 µs a message less than a
        ``produce`` call each, measured here; the key still picks the partition); ``produce_batch`` takes no
        headers, so the others (an event whose ``ts`` the collector stamped) go one by one.
        """
        pending = Pending(len(items))
        batches: dict[str, list[dict[str, Any]]] = {}
        for topic, value, key, headers in items:
            if headers:
                self._produce(topic, value, key, headers, pending)
            else:
                batches.setdefault(topic, []).append({"value": value, "key": key})
        for topic, messages in batches.items():
            # a full local queue does not raise here: the messages it refused carry "_error" and get no report
            if self.producer.produce_batch(topic, messages, on_delivery=pending) != len(messages):
                for message in messages:
                    if "_error" in message:
                        self._produce(topic, message["value"], message["key"], None, pending)
        return pending.future

    def _produce(self, topic: str, value: bytes, key: str | bytes | None, headers: list[tuple[str, bytes]] | None,
                 pending: Pending) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=pending)
                return
            except BufferError:  # the local queue is full: the polling thread drains it
                time.sleep(POLL_S / 10)

    def close(self, timeout: float = 30.0) -> None:
        """Stop polling and deliver what is queued (their futures resolve here)."""
        self._stop.set()
        self._thread.join(timeout)
        remaining = self.producer.flush(timeout)
        if remaining:
            log.error("collector: messages not acknowledged at shutdown", undelivered=remaining)
