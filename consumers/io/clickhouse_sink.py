"""The ClickHouse sink: velocity facts, snapshots and alerts from Kafka into ClickHouse, in batches, losing nothing.

Guarantees, in order of importance:

1. **Nothing lost.** Offsets are committed only after ClickHouse accepted the batch that contains them. When
   ClickHouse is down (a *transient* error), the sink keeps the batch, retries with exponential backoff, stops
   reading meanwhile (so memory stays bounded) and reports the failure in its log and metrics. Its
   ``max.poll.interval.ms`` is a day, so a long outage does not cost it its partitions and its commits.
2. **Never stalled by data.** When ClickHouse refuses rows for their values (a *permanent* error, see
   :mod:`salepulse.consumers.io.sink_errors`), the batch is bisected: the good rows are written, each row that fails
   alone goes to the ``quarantine`` table with its origin (topic, partition, offset) and the reason, and the sink
   goes on. A record it cannot even read is quarantined whole.
3. **Nothing doubled.** Every row has a natural key (kind + ``event_id`` + ``sku`` for facts, ``version`` for
   snapshots, ``alert_id`` for alerts) and every table is a ReplacingMergeTree read with FINAL, so a batch written
   twice — after a crash between insert and commit, or a replay — counts once.
4. **Fast.** Rows are built column-wise and written in batches of thousands, about once a second.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from salepulse.consumers.io.clickhouse import connect, migrate
from salepulse.consumers.io.sink_errors import isolate
from salepulse.schemas.codec import Codec, DecodeError
from salepulse.streams.platform.config import Settings
from salepulse.streams.platform.logs import get_logger
from salepulse.streams.platform.metrics import Registry
from salepulse.streams.platform.topology import sink_topics

log = get_logger(__name__)

FACT_COLUMNS = ["event_id", "sale_id", "sku", "kind", "units", "revenue", "ts"]
FORECAST_COLUMNS = [
    "sale_id", "sku", "version", "as_of", "views", "carts", "orders", "units", "revenue", "velocity_uph",
    "expert_prior", "prior_source", "p10", "p50", "p90", "stock_available", "projected_stockout_at",
]
HISTORY_COLUMNS = ["sale_id", "sku", "version", "as_of", "units", "velocity_uph", "expert_prior", "p10", "p50", "p90"]
ALERT_COLUMNS = [
    "alert_id", "sale_id", "sku", "status", "severity", "probability", "shortfall", "available", "p90",
    "recommended_quantity", "projected_stockout_at", "reason", "raised_at",
]
PLAN_COLUMNS = [
    "sale_id", "sku", "version", "quantity", "service_level", "p10", "p50", "p90", "expert", "correction", "source",
    "reason", "buyer_id", "warehouse_regions", "warehouse_quantities", "planned_at",
]


@dataclass
class Batch:
    """Columns per table plus the next offset to commit per partition, for exactly what the rows came from.

    Rows are kept column-wise because that is how they are inserted; the facts, nearly all of the volume, go
    straight from the decoded record into the columns without a row in between.
    """

    columns: dict[str, list[list[Any]]] = field(default_factory=dict)
    origins: dict[str, list[tuple[int, str, int, int]]] = field(default_factory=dict)
    """Per table, one entry per message: (its first row in the table's columns, topic, partition, offset), for the
    quarantine (:meth:`origin`); per message, not per row, because facts arrive by the thousand."""
    quarantined: list[list[Any]] = field(default_factory=list)
    """Quarantine rows: records that could not be read or turned into rows at all."""
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    size: int = 0

    def _columns(self, table: str) -> list[list[Any]]:
        columns = self.columns.get(table)
        if columns is None:
            columns = self.columns[table] = [[] for _ in COLUMNS[table]]
        return columns

    def add(self, table: str, row: list[Any], origin: tuple[str, int, int] = ("", -1, -1)) -> None:
        columns = self._columns(table)
        self.origins.setdefault(table, []).append((len(columns[0]), *origin))
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        self.size += 1

    def origin(self, table: str, row: int) -> tuple[str, int, int, int]:
        """(topic, partition, offset, row within that message) of row ``row`` of ``table``.

        >>> batch = Batch()
        >>> batch.add_record("VelocityFacts", {"event_ids": ["a", "b"], "sale_id": "s", "skus": ["k", "k"],
        ...     "kinds": ["view", "view"], "units": [1, 1], "revenues": [0.0, 0.0], "ts": [0, 0]}, ("f", 0, 7))
        >>> batch.add_record("VelocityFacts", {"event_ids": ["c"], "sale_id": "s", "skus": ["k"],
        ...     "kinds": ["view"], "units": [1], "revenues": [0.0], "ts": [0]}, ("f", 1, 3))
        >>> batch.origin(FACTS_TABLE, 1), batch.origin(FACTS_TABLE, 2)
        (('f', 0, 7, 1), ('f', 1, 3, 0))
        """
        entries = self.origins.get(table, [])
        at = bisect_right(entries, row, key=lambda entry: entry[0]) - 1
        if at < 0:
            return ("", -1, -1, row)
        first, topic, partition, offset = entries[at]
        return (topic, partition, offset, row - first)

    def add_record(self, record_name: str, record: dict[str, Any], origin: tuple[str, int, int] = ("", -1, -1)) -> None:
        """Everything one decoded record becomes; raises ValueError for a facts record whose columns disagree."""
        if record_name == "VelocityFacts":  # already column-wise: no row is built
            n = len(record["event_ids"])
            if any(len(record[name]) != n for name in ("skus", "kinds", "units", "revenues", "ts")):
                raise ValueError("VelocityFacts columns have different lengths")
            event_ids, sale_ids, skus, kinds, units, revenues, ts = self._columns(FACTS_TABLE)
            self.origins.setdefault(FACTS_TABLE, []).append((len(event_ids), *origin))
            event_ids.extend(record["event_ids"])
            sale_ids.extend([record["sale_id"]] * len(record["event_ids"]))
            skus.extend(record["skus"])
            kinds.extend(record["kinds"])
            units.extend(record["units"])
            revenues.extend(record["revenues"])
            ts.extend(record["ts"])
            self.size += len(record["event_ids"])
            return
        for table, row in rows_for(record_name, record):
            self.add(table, row, origin)



def rows_for(record_name: str, record: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The (table, row) pairs a snapshot or an alert becomes (facts go column-wise: :meth:`Batch.add_record`)."""
    if record_name == "VelocitySnapshot":
        return [
            ("forecasts", [record[c] for c in FORECAST_COLUMNS]),
            ("forecasts_history", [record[c] for c in HISTORY_COLUMNS]),
        ]
    if record_name == "ReplenishmentAlert":
        return [("alerts", [record[c] for c in ALERT_COLUMNS])]
    if record_name == "StockPlan":
        regions = [w["region"] for w in record["warehouses"]]
        quantities = [w["quantity"] for w in record["warehouses"]]
        return [("plans", [record[c] for c in PLAN_COLUMNS[:-3]] + [regions, quantities, record["planned_at"]])]
    return []


FACTS_TABLE = "velocity_facts_v2"
"""Facts deduplicated by (sale, kind, event id, sku): deploy/clickhouse/004_facts_identity_quarantine.sql."""
QUARANTINE_COLUMNS = ["topic", "partition", "offset", "target", "row", "reason", "excerpt"]

COLUMNS = {
    FACTS_TABLE: FACT_COLUMNS,
    "forecasts": FORECAST_COLUMNS,
    "forecasts_history": HISTORY_COLUMNS,
    "alerts": ALERT_COLUMNS,
    "plans": PLAN_COLUMNS,
}


class ClickHouseSink:
    """Consume, batch, insert, then commit. ``run`` returns when ``stop`` is set, after a last flush."""

    def __init__(
        self,
        settings: Settings,
        *,
        client_factory: Callable[[str], Any] = connect,
        group_id: str | None = None,
        metrics: Registry | None = None,
        on_written: Callable[[Batch], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_written = on_written  # called after each accepted batch; the benchmarks time visibility with it
        self.client_factory = client_factory
        self.codec = Codec(settings.schema_registry_url)
        self.topics = sink_topics(settings.topics)
        self.consumer = Consumer(
            settings.kafka_config(
                **{
                    "group.id": group_id or settings.groups.sink,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.min.bytes": 1,
                    "queued.max.messages.kbytes": 65536,
                    # Retrying through a ClickHouse outage does not poll; a day keeps the group membership (and
                    # the right to commit) through any outage worth waiting out. Liveness is the session timeout.
                    "max.poll.interval.ms": 86_400_000,
                }
            )
        )
        self.metrics = metrics or Registry()
        self.rows_written = self.metrics.counter("salepulse_sink_rows_total", "Rows written to ClickHouse.", ["table"])
        self.batch_rows = self.metrics.gauge("salepulse_sink_batch_rows", "Rows in the last batch written.")
        self.batch_seconds = self.metrics.gauge("salepulse_sink_batch_seconds", "Seconds the last insert took.")
        self.failures = self.metrics.counter("salepulse_sink_failures_total", "Inserts ClickHouse refused or missed.")
        self.undecodable = self.metrics.counter("salepulse_sink_undecodable_total", "Records the sink could not read.")
        self.quarantined = self.metrics.counter("salepulse_sink_quarantined_total",
                                                "Rows or records ClickHouse refused for their values, quarantined.",
                                                ["table"])
        self._client: Any = None
        # clickhouse-connect logs a full traceback for every column it fails to serialise; bisecting one bad row
        # makes a dozen. The sink logs each refusal itself ("rows quarantined", with the reason).
        logging.getLogger("clickhouse_connect.driver.transform").setLevel(logging.CRITICAL)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.client_factory(self.settings.clickhouse_dsn)
            migrate(self._client)
        return self._client

    def serve_metrics(self, host: str, port: int) -> ThreadingHTTPServer:
        """``GET /metrics`` of this sink (batch size and latency, rows, failures), in a daemon thread."""
        registry = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body = registry.render().encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="sink-metrics", daemon=True).start()
        return server

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(self.topics)
        log.info("sink started", topics=self.topics, clickhouse=_redact(self.settings.clickhouse_dsn))
        batch = Batch()
        try:
            while not stop.is_set():
                for message in self.consumer.consume(num_messages=5000, timeout=0.2):
                    self._absorb(batch, message)
                due = time.monotonic() - batch.started >= self.settings.sink_flush_seconds
                if batch.offsets and (batch.size >= self.settings.sink_batch_rows or due):
                    self._write_until_accepted(batch, stop)
                    batch = Batch()
                elif not batch.offsets:
                    batch.started = time.monotonic()
            if batch.offsets:
                self._write_until_accepted(batch, stop, give_up_when_stopped=False)
        finally:
            self.consumer.close()
            log.info("sink stopped", rows=int(self.rows_written.total()))

    def _absorb(self, batch: Batch, message: Any) -> None:
        if message.error():
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", error=str(message.error()))
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        batch.offsets[(topic, partition)] = offset + 1
        try:
            self.absorb_value(batch, message.value(), (topic, partition, offset))
        except Exception as exc:  # noqa: BLE001 - DecodeError, or a record whose fields make no rows
            # Only salepulse's own agents write these topics; an unreadable record is a bug to see, not to stop on.
            self.undecodable.inc()
            reason = f"{'decode' if isinstance(exc, DecodeError) else 'rows'}: {type(exc).__name__}: {exc}"
            log.error("unreadable record quarantined", topic=topic, offset=offset, reason=reason[:300])
            batch.quarantined.append([topic, partition, offset, "", 0, reason[:1000], _excerpt(message.value())])

    def absorb_value(self, batch: Batch, value: bytes, origin: tuple[str, int, int] = ("", -1, -1)) -> None:
        """Decode one Kafka value into ``batch``; raises DecodeError (or ValueError for inconsistent facts)."""
        # Timestamps stay epoch-ms ints: clickhouse-connect writes them to DateTime64(3) as they are, where
        # datetimes cost a conversion each way.
        batch.add_record(*self.codec.decode(value, timestamps="ms"), origin=origin)

    def _write_until_accepted(self, batch: Batch, stop: threading.Event, give_up_when_stopped: bool = True) -> None:
        delay = 0.25
        while True:
            try:
                self.write(batch)
                return
            except Exception as exc:  # network errors, server errors, chdb errors: all mean "not written yet"
                self.failures.inc()
                self._client = None  # reconnect on the next try
                log.error("clickhouse write failed; will retry", error=str(exc)[:300], rows=batch.size,
                          retry_in=round(delay, 2))
                if stop.is_set() and give_up_when_stopped:
                    log.error("stopping with an unwritten batch; its offsets stay uncommitted", rows=batch.size)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def write(self, batch: Batch) -> None:
        """Insert every table of ``batch``, then commit its offsets; raises if ClickHouse did not accept it."""
        self.insert_rows(batch)
        if self.on_written is not None:
            self.on_written(batch)
        commit = [TopicPartition(topic, partition, offset) for (topic, partition), offset in batch.offsets.items()]
        self.consumer.commit(offsets=commit, asynchronous=False)

    def insert_rows(self, batch: Batch) -> None:
        """The ClickHouse half of :meth:`write`: every table's rows, one insert each when all is well.

        Rows refused for their values are isolated by bisection and quarantined (sink_errors.isolate); a transient
        error raises, and the caller retries the whole batch.
        """
        started = time.perf_counter()
        quarantine = list(batch.quarantined)
        for table, columns in batch.columns.items():
            def insert(lo: int, hi: int, table: str = table, columns: list[list[Any]] = columns) -> None:
                # Column-oriented inserts skip a per-row pass inside the client: ~1.3x faster on chdb.
                part = columns if (lo, hi) == (0, len(columns[0])) else [column[lo:hi] for column in columns]
                self.client.insert(table, part, column_names=COLUMNS[table], column_oriented=True)

            refused = isolate(insert, 0, len(columns[0]))
            for row, reason in refused:
                topic, partition, offset, index = batch.origin(table, row)
                values = {name: column[row] for name, column in zip(COLUMNS[table], columns, strict=True)}
                quarantine.append([topic, partition, offset, table, index, reason, _excerpt(repr(values))])
                self.quarantined.inc(table=table)
            self.rows_written.inc(len(columns[0]) - len(refused), table=table)
        if quarantine:
            for row in quarantine:
                log.error("rows quarantined", topic=row[0], partition=row[1], offset=row[2], table=row[3],
                          reason=row[5][:300])
            self.client.insert("quarantine", quarantine, column_names=QUARANTINE_COLUMNS)
        self.batch_seconds.set(time.perf_counter() - started)
        self.batch_rows.set(batch.size)


def _excerpt(value: bytes | str | None, limit: int = 1024) -> str:
    """At most ``limit`` characters of a value, as text ClickHouse accepts (no lone surrogates)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:limit]).decode("utf-8", "backslashreplace")
    return (value or "")[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def _redact(dsn: str) -> str:
    """Hide a password in a DSN before it reaches a log line."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn
