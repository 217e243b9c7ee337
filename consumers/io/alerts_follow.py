"""Follow ``replenishment.alerts`` for logistics: print each alert, or POST it to a webhook, losing none.

``salepulse alerts follow [--json] [--webhook URL] [--group NAME] [--from-beginning]``

Why it is built this way:

- **At-least-once, end to end.** The follower is a Kafka consumer group with ``enable.auto.commit=false``; an
  alert's offset is committed only after the alert was printed or the webhook answered 2xx. A crash or a stop
  before that means the alert comes again on the next start (from the group's committed position). Duplicates
  are possible, losses are not; every alert carries a stable ``alert_id`` (also sent as the ``Idempotency-Key``
  header) so receivers de-duplicate.
- **A webhook that refuses is retried, never skipped.** 5xx, 408, 429 and network errors are the usual
  transient trouble; a 4xx such as 400/401/404 usually means the receiver is misconfigured, and skipping would
  silently lose a replenishment order. So every failure is logged (status + body excerpt, loudly for 4xx) and
  retried with capped, jittered exponential backoff (:func:`backoff_delay`), honouring ``Retry-After`` on
  429/503. The consumer's ``max.poll.interval.ms`` is raised so that a long outage does not get the follower
  evicted from its group (which would only cause redeliveries, not losses).
- **Stops cleanly.** SIGINT/SIGTERM (or the ``stop`` event) end the loop between alerts; an in-flight delivery
  that has not yet succeeded is abandoned *without* committing it.
- **Garbage is not an alert.** Records that do not decode (or decode to another record type) are logged with
  topic/partition/offset, counted, and committed past: they can never become deliverable, and re-reading them
  after every restart would only repeat the same error.

Consumer group default: ``salepulse-alerts-<sink>``, where the sink is ``text``, ``json`` or
``webhook-<host>-<port>``; two different webhooks therefore each get every alert, while two followers of the same
webhook share the partitions.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from salepulse.schemas.codec import Codec, DecodeError
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.metrics import Registry
from salepulse.streams.platform.topology import Groups

log = get_logger(__name__)

ALERT_RECORD = "ReplenishmentAlert"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
#: Retry-After is honoured as given, up to this ceiling: a receiver asking for an hour is most likely confused,
#: and a replenishment order that waits an hour is worth less than one more polite retry.
RETRY_AFTER_CAP_S = 300.0
BODY_EXCERPT_CHARS = 300
#: librdkafka's maximum. A webhook outage blocks the poll loop on purpose (nothing may be skipped); without this the
#: group would evict the follower after 5 minutes and the in-flight alert would be redelivered anyway.
MAX_POLL_INTERVAL_MS = 86_400_000
RETRY_AFTER_STATUSES = frozenset({429, 503})
TRANSIENT_4XX = frozenset({408, 429})


# --- pure helpers ---------------------------------------------------------------------------------------------
def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
    jitter: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry after the first failure).

    Exponential (``base * 2**(attempt-1)``), capped at ``cap``, then "equal jitter": a uniform draw between half
    and all of it, so a fleet of followers that failed together does not retry in lock-step, yet the wait never
    collapses to zero. ``jitter`` in [0, 1] fixes the draw (tests); ``None`` draws at random. A server's
    ``retry_after`` wins over the formula (clamped to ``[0, RETRY_AFTER_CAP_S]``): it knows when it will be back.

    >>> backoff_delay(1, jitter=1.0), backoff_delay(3, jitter=1.0), backoff_delay(20, jitter=1.0)
    (0.5, 2.0, 30.0)
    >>> backoff_delay(3, jitter=0.0)
    1.0
    >>> backoff_delay(7, retry_after=0.1)
    0.1
    """
    if retry_after is not None:
        return min(max(float(retry_after), 0.0), RETRY_AFTER_CAP_S)
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    draw = random.random() if jitter is None else min(max(jitter, 0.0), 1.0)
    return ceiling * (0.5 + 0.5 * draw)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from now: delta-seconds (fractions accepted) or an HTTP-date.

    >>> parse_retry_after("0.1"), parse_retry_after("120"), parse_retry_after("soon"), parse_retry_after(None)
    (0.1, 120.0, None, None)
    >>> parse_retry_after("Sun, 29 Nov 2026 10:02:30 GMT", now=datetime(2026, 11, 29, 10, 2, tzinfo=UTC))
    30.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay


def _as_datetime(value: Any) -> datetime | None:
    """fastavro gives aware datetimes for timestamp-millis; raw dicts may hold epoch millis."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(value) / 1000.0, tz=UTC)


def alert_to_json(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The alert as a JSON-ready dict (timestamps ISO 8601, UTC): the ``--json`` line and the webhook body.

    ``alert_id`` is always present, so a receiver can de-duplicate on the body alone.

    >>> alert_to_json({"alert_id": "s:k:1", "raised_at": 0, "projected_stockout_at": None})
    {'alert_id': 's:k:1', 'raised_at': '1970-01-01T00:00:00.000+00:00', 'projected_stockout_at': None}
    """
    body: dict[str, Any] = {}
    for key, value in alert.items():
        if key in ("raised_at", "projected_stockout_at", "order_by", "wall_clock_at"):
            when = _as_datetime(value)
            body[key] = when.isoformat(timespec="milliseconds") if when else None
        elif isinstance(value, datetime):
            body[key] = value.isoformat(timespec="milliseconds")
        else:
            body[key] = value
    body.setdefault("alert_id", alert.get("event_id"))
    return body


def json_line(alert: Mapping[str, Any]) -> str:
    """One compact JSON object, no newline (``--json`` output)."""
    return json.dumps(alert_to_json(alert), separators=(",", ":"), ensure_ascii=False)


def _units(value: Any) -> str:
    return f"{float(value):.0f}"


#: Stream time within this of the wall clock counts as "the same clock" (live), so it is not shown twice.
SAME_CLOCK_SECONDS = 120.0
LINE_TARGET = 160


def _clip(text: Any, width: int) -> str:
    text = str(text or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _what(alert: Mapping[str, Any], width: int = 80) -> str:
    """``Air Max 90 (k-3) · nike sale``: the product's name and sku, the sale's name (its id when it has none),
    in about ``width`` characters. The sale id and every number stay in ``--json``.

    >>> _what({"sku": "k-3", "sale_id": "s-12", "product_name": "Air Max 90 Essential", "sale_name": "nike"}, 30)
    'Air Max 90 Ess… (k-3) · nike sale'
    >>> _what({"sku": "k-3", "sale_id": "s-12"})
    'sku k-3 · sale s-12'
    """
    sku = _clip(alert.get("sku"), 16)
    product_name, sale_name = str(alert.get("product_name") or ""), str(alert.get("sale_name") or "")
    sale_text = f"{sale_name} sale" if sale_name else f"sale {_clip(alert.get('sale_id'), 24)}"
    room = max(width - len(sku) - 6, 24)
    if len(sale_text) > room // 2:
        sale_text = _clip(sale_name, max(room // 2 - 5, 6)) + " sale" if sale_name else _clip(sale_text, room // 2)
    product = f"{_clip(product_name, max(room - len(sale_text), 10))} ({sku})" if product_name else f"sku {sku}"
    return f"{product} · {sale_text}"


def format_alert(alert: Mapping[str, Any], *, tz: tzinfo = UTC) -> str:
    """One line (under ~160 characters) a person in logistics acts on (pure; times in ``tz``, UTC by default).

    It names the product and the sale, says how many units to order and by when (the order-by deadline is the
    projected stockout minus the restock lead time), and when stock runs out. Times are wall-clock; when the
    worker's stream time differs (a replay, a simulation), the deadlines are stream times and say so, with the
    stream's own "now". A resolved alert says what changed.

    >>> a = {"alert_id": "s-12:k-3:1", "sale_id": "s-12", "sku": "k-3", "status": "open", "severity": "high",
    ...      "shortfall": 80.2, "recommended_quantity": 120, "available": 40, "probability": 0.9,
    ...      "projected_stockout_at": 1795962600000, "order_by": 1795951800000, "raised_at": 1795946520000,
    ...      "wall_clock_at": 1795946520000, "product_name": "Air Max 90", "sale_name": "nike", "reason": "..."}
    >>> print(format_alert(a).replace(" · ", "\\n"))
    2026-11-29 10:02 OPEN      high     Air Max 90 (k-3)
    nike sale
    order 120 u by 11:30
    runs out ~14:30
    >>> print(format_alert({**a, "wall_clock_at": 1795946520000 + 86_400_000}).replace(" · ", "\\n"))
    2026-11-30 10:02 OPEN      high     Air Max 90 (k-3)
    nike sale
    order 120 u by 11:30
    runs out ~14:30 [stream time 11-29 10:02]
    """
    raised = _as_datetime(alert.get("raised_at"))
    wall = _as_datetime(alert.get("wall_clock_at")) or raised
    stream_differs = raised is not None and wall is not None and \
        abs((wall - raised).total_seconds()) > SAME_CLOCK_SECONDS
    head_time = wall.astimezone(tz).strftime("%Y-%m-%d %H:%M") if wall else "????-??-?? ??:??"
    status = str(alert.get("status", "?"))
    head = f"{head_time} {status.upper():<9} {str(alert.get('severity', '?')):<8} "
    if status == "resolved":
        reason = str(alert.get("reason") or "").removeprefix("resolved: ")
        body = f"cleared: {reason}" if reason else f"cleared, available {_units(alert.get('available', 0))} u"
        return _clip(f"{head}{_what(alert, 60)} · {body}", LINE_TARGET)

    reference = raised if stream_differs else wall

    def clock(value: Any) -> str | None:
        when = _as_datetime(value)
        if when is None:
            return None
        local = when.astimezone(tz)
        same_day = reference is not None and local.date() == reference.astimezone(tz).date()
        return local.strftime("%H:%M" if same_day else "%m-%d %H:%M")

    order_by, stockout = _as_datetime(alert.get("order_by")), clock(alert.get("projected_stockout_at"))
    send = f"order {_units(alert.get('recommended_quantity', 0))} u"
    if order_by is None:
        deadline = send
    elif raised is not None and order_by <= raised:
        deadline = f"{send} NOW (deadline {clock(order_by)} passed)"
    else:
        deadline = f"{send} by {clock(order_by)}"
    runs_out = f"runs out ~{stockout}" if stockout else "no stockout projected"
    tail = f"{deadline} · {runs_out}"
    if stream_differs and raised is not None:
        tail += f" [stream time {raised.astimezone(tz):%m-%d %H:%M}]"
    return f"{head}{_what(alert, LINE_TARGET - len(head) - len(tail) - 3)} · {tail}"


def default_group_id(output: str, webhook: str | None) -> str:
    """``salepulse-alerts-<sink>``: one committed position per destination.

    >>> default_group_id("text", None), default_group_id("json", "https://hooks.example.com:8443/x")
    ('salepulse-alerts-text', 'salepulse-alerts-webhook-hooks.example.com-8443')
    """
    if webhook:
        parts = urlsplit(webhook)
        sink = "webhook-" + re.sub(r"[^A-Za-z0-9._-]+", "-", parts.netloc.rsplit("@", 1)[-1]).strip("-")
    else:
        sink = output
    return Groups.alerts_follower(sink)


# --- webhook --------------------------------------------------------------------------------------------------
class DeliveryAbandoned(Exception):
    """``stop`` was set before the receiver accepted the alert; its offset must not be committed."""


class WebhookClient:
    """POST alerts as JSON until the receiver answers 2xx or ``stop`` is set.

    Each alert is sent with ``Idempotency-Key: <alert_id>`` and the ``alert_id`` in the body, because
    at-least-once delivery means the receiver will sometimes see the same alert twice.
    """

    def __init__(
        self,
        url: str,
        *,
        stop: threading.Event | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
        metrics: Registry | None = None,
    ) -> None:
        self.url = url
        self.stop = stop or threading.Event()
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._owns_client = client is None
        self.headers = {"User-Agent": "salepulse-alerts/1", **(headers or {})}
        self.metrics = metrics or Registry()
        self.delivered = self.metrics.counter("salepulse_alerts_webhook_delivered_total",
                                              "Alerts the webhook accepted (2xx).")
        self.failures = self.metrics.counter("salepulse_alerts_webhook_failures_total",
                                             "Webhook attempts that failed, by HTTP status or 'network'.", ["status"])

    def deliver(self, alert: Mapping[str, Any]) -> None:
        """Return once the receiver accepted ``alert``; raise :class:`DeliveryAbandoned` if stopped first."""
        body = alert_to_json(alert)
        alert_id = str(body["alert_id"])
        headers = {**self.headers, "Idempotency-Key": alert_id}
        attempt = 0
        while True:
            if self.stop.is_set():
                raise DeliveryAbandoned(alert_id)
            attempt += 1
            retry_after: float | None = None
            try:
                response = self.client.post(self.url, json=body, headers=headers)
            except httpx.HTTPError as exc:  # connect refused, timeout, reset: the receiver may come back
                self.failures.inc(status="network")
                delay = backoff_delay(attempt)
                log.warning("webhook unreachable; will retry", alert_id=alert_id, attempt=attempt,
                            error=f"{type(exc).__name__}: {exc}", retry_in=round(delay, 2))
            else:
                if response.is_success:
                    self.delivered.inc()
                    if attempt > 1:
                        log.info("webhook accepted after retries", alert_id=alert_id, attempts=attempt)
                    return
                status = response.status_code
                self.failures.inc(status=str(status))
                if status in RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = backoff_delay(attempt, retry_after)
                fields = {"alert_id": alert_id, "attempt": attempt, "status": status,
                          "body": response.text[:BODY_EXCERPT_CHARS], "retry_in": round(delay, 2)}
                if 400 <= status < 500 and status not in TRANSIENT_4XX:
                    # Looks permanent, but skipping would lose a replenishment order: shout and keep trying.
                    log.error("webhook REFUSED the alert (client error); retrying anyway, nothing is skipped",
                              **fields)
                else:
                    log.warning("webhook failed; will retry", **fields)
            if self.stop.wait(delay):
                raise DeliveryAbandoned(alert_id)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> WebhookClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the follower ---------------------------------------------------------------------------------------------
@dataclass
class FollowReport:
    """What one ``follow`` run did; ``stopped`` says why it returned."""

    group_id: str
    sink: str
    delivered: int = 0
    undecodable: int = 0
    not_alerts: int = 0
    failed_attempts: int = 0
    commit_failures: int = 0
    abandoned: int = 0
    stopped: str = ""
    seconds: float = 0.0


@contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` while following (main thread only; restored afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def follow(
    settings: Settings,
    *,
    output: Literal["text", "json"] = "text",
    webhook: str | None = None,
    group_id: str | None = None,
    from_beginning: bool = False,
    stop: threading.Event | None = None,
    max_alerts: int | None = None,
    out: TextIO = sys.stdout,
    metrics: Registry | None = None,
) -> FollowReport:
    """Follow the alerts topic until ``stop`` is set or ``max_alerts`` alerts were delivered.

    ``webhook`` POSTs each alert there instead of writing to ``out``. ``from_beginning`` only matters for a
    group without a committed position (like ``kafka-console-consumer``): it starts at the oldest alert instead
    of the next new one; a group that has committed always resumes where it left off. Without ``stop`` a new
    event is made and SIGINT/SIGTERM set it (when called from the main thread).
    """
    sink = "webhook" if webhook else output
    group = group_id or default_group_id(output, webhook)
    report = FollowReport(group_id=group, sink=sink)
    own_stop = stop is None
    stop = stop or threading.Event()
    metrics = metrics or Registry()
    delivered = metrics.counter("salepulse_alerts_followed_total", "Alerts printed or delivered.", ["sink"])
    undecodable = metrics.counter("salepulse_alerts_undecodable_total",
                                  "Records on the alerts topic that could not be decoded.")
    codec = Codec(settings.schema_registry_url)
    topic = settings.topics.alerts
    consumer = Consumer(settings.kafka_config(**{
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
    }))
    client = WebhookClient(webhook, stop=stop, metrics=metrics) if webhook else None
    started = time.monotonic()

    def emit(alert: dict[str, Any]) -> None:
        if client is not None:
            client.deliver(alert)
        else:
            out.write((json_line(alert) if output == "json" else format_alert(alert)) + "\n")
            out.flush()

    def commit(message: Message) -> None:
        tp = TopicPartition(message.topic(), message.partition(), message.offset() + 1)
        try:
            consumer.commit(offsets=[tp], asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance: the record will come again, which is allowed
            report.commit_failures += 1
            log.warning("offset commit failed; the record may be delivered again", topic=tp.topic,
                        partition=tp.partition, offset=message.offset(), error=str(exc))

    log.info("following alerts", topic=topic, group=group, sink=sink, webhook=_redact_url(webhook),
             from_beginning=from_beginning, max_alerts=max_alerts)
    consumer.subscribe([topic])
    try:
        with _signals_set(stop) if own_stop else nullcontext():
            while not stop.is_set() and not report.stopped:
                for message in consumer.consume(num_messages=100, timeout=0.5):
                    if stop.is_set():
                        break  # leave the rest uncommitted: it comes again on the next start
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consume error", topic=topic, error=str(error))
                        continue
                    try:
                        name, alert = codec.decode(message.value() or b"")
                    except DecodeError as exc:
                        report.undecodable += 1
                        undecodable.inc()
                        log.error("undecodable record skipped", topic=message.topic(),
                                  partition=message.partition(), offset=message.offset(), reason=str(exc))
                        commit(message)
                        continue
                    if name != ALERT_RECORD:
                        report.not_alerts += 1
                        log.error("record is not a ReplenishmentAlert; skipped", record=name, topic=message.topic(),
                                  partition=message.partition(), offset=message.offset())
                        commit(message)
                        continue
                    try:
                        emit(alert)
                    except DeliveryAbandoned:
                        report.abandoned += 1
                        log.warning("stopping with an undelivered alert; its offset stays uncommitted",
                                    alert_id=alert.get("alert_id"), partition=message.partition(),
                                    offset=message.offset())
                        break
                    except BrokenPipeError:  # `salepulse alerts follow | head`: the reader went away
                        report.stopped = "broken_pipe"
                        break
                    commit(message)
                    report.delivered += 1
                    delivered.inc(sink=sink)
                    log.debug("alert delivered", alert_id=alert.get("alert_id"), partition=message.partition(),
                              offset=message.offset())
                    if max_alerts is not None and report.delivered >= max_alerts:
                        report.stopped = "max_alerts"
                        break
        report.stopped = report.stopped or "stop"
    finally:
        consumer.close()
        if client is not None:
            report.failed_attempts = int(client.failures.total())
            client.close()
        report.seconds = round(time.monotonic() - started, 3)
        log.info("stopped following alerts", group=group, sink=sink, delivered=report.delivered,
                 undecodable=report.undecodable, not_alerts=report.not_alerts, failed_attempts=report.failed_attempts,
                 abandoned=report.abandoned, reason=report.stopped)
    return report


def _redact_url(url: str | None) -> str | None:
    """Drop credentials and the query (tokens often live there) before a URL reaches a log line."""
    if not url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
