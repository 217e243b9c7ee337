"""The ClickHouse sink: velocity facts, snapshots and alerts from Kafka into ClickHouse, in batches, losing nothing.

Guarantees, in order of importance:

1. **Nothing lost.** Offsets are committed only after ClickHouse accepted the batch that contains them. When
   ClickHouse is down or refuses a batch, the sink keeps the batch, retries with exponential backoff, stops reading
   meanwhile (so memory stays bounded) and reports the failure in its log and metrics.
2. **Nothing doubled.** Every row has a natural key (``event_id`` + ``sku`` for facts, ``version`` for snapshots,
   ``alert_id`` for alerts) and every table is a ReplacingMergeTree read with FINAL, so a batch written twice — after
   a crash between insert and commit, or a replay — counts once.
3. **Fast.** Rows are built column-wise and written in batches of thousands, about once a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from salepulse.consumers.clickhouse import connect, migrate
from salepulse.schemas.codec import Codec, DecodeError
from salepulse.streams.config import Settings
from salepulse.streams.logs import get_logger
from salepulse.streams.metrics import Registry

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
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    size: int = 0

    def _columns(self, table: str) -> list[list[Any]]:
        columns = self.columns.get(table)
        if columns is None:
            columns = self.columns[table] = [[] for _ in COLUMNS[table]]
        return columns

    def add(self, table: str, row: list[Any]) -> None:
        for column, value in zip(self._columns(table), row, strict=True):
            column.append(value)
        self.size += 1

    def add_record(self, record_name: str, record: dict[str, Any]) -> None:
        """Everything one decoded record becomes."""
        if record_name == "VelocityFacts":  # already column-wise: no row is built
            event_ids, sale_ids, skus, kinds, units, revenues, ts = self._columns("velocity_facts")
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
            self.add(table, row)



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


COLUMNS = {
    "velocity_facts": FACT_COLUMNS,
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
        group_id: str = "salepulse-sink",
        metrics: Registry | None = None,
        on_written: Callable[[Batch], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_written = on_written  # called after each accepted batch; the benchmarks time visibility with it
        self.client_factory = client_factory
        self.codec = Codec(settings.schema_registry_url)
        self.topics = [settings.topics.facts, settings.topics.snapshots, settings.topics.alerts, settings.topics.plans]
        self.consumer = Consumer(
            settings.kafka_config(
                **{
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.min.bytes": 1,
                    "queued.max.messages.kbytes": 65536,
                }
            )
        )
        self.metrics = metrics or Registry()
        self.rows_written = self.metrics.counter("salepulse_sink_rows_total", "Rows written to ClickHouse.", ["table"])
        self.batch_rows = self.metrics.gauge("salepulse_sink_batch_rows", "Rows in the last batch written.")
        self.batch_seconds = self.metrics.gauge("salepulse_sink_batch_seconds", "Seconds the last insert took.")
        self.failures = self.metrics.counter("salepulse_sink_failures_total", "Inserts ClickHouse refused or missed.")
        self.undecodable = self.metrics.counter("salepulse_sink_undecodable_total", "Records the sink could not read.")
        self._client: Any = None

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
        batch.offsets[(message.topic(), message.partition())] = message.offset() + 1
        try:
            self.absorb_value(batch, message.value())
        except DecodeError as exc:
            # Only salepulse's own agents write these topics; an unreadable record is a bug to see, not to stop on.
            self.undecodable.inc()
            log.error("undecodable record skipped", topic=message.topic(), offset=message.offset(), reason=str(exc))

    def absorb_value(self, batch: Batch, value: bytes) -> None:
        """Decode one Kafka value into ``batch``; raises DecodeError."""
        # Timestamps stay epoch-ms ints: clickhouse-connect writes them to DateTime64(3) as they are, where
        # datetimes cost a conversion each way.
        batch.add_record(*self.codec.decode(value, timestamps="ms"))

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
        """The ClickHouse half of :meth:`write`: every table's rows, one insert each."""
        started = time.perf_counter()
        for table, columns in batch.columns.items():
            # Column-oriented inserts skip a per-row pass inside the client: ~1.3x faster on chdb.
            self.client.insert(table, columns, column_names=COLUMNS[table], column_oriented=True)
            self.rows_written.inc(len(columns[0]), table=table)
        self.batch_seconds.set(time.perf_counter() - started)
        self.batch_rows.set(batch.size)


def _redact(dsn: str) -> str:
    """Hide a password in a DSN before it reaches a log line."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn
