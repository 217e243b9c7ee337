"""The one settings object of salepulse, read from the environment.

Every process (worker, sink, producers, CLI) builds it with :meth:`Settings.from_env`; nothing else reads
``os.environ``. The README's "Configuration" table lists the same names.

>>> s = Settings.from_env({"SALEPULSE_PARTITIONS": "8", "SALEPULSE_TOPIC_ORDER": "shop.orders"})
>>> s.partitions, s.topics.order, s.http_port, s.clickhouse_dsn.startswith("chdb:///")
(8, 'shop.orders', 6066, True)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from salepulse.schemas import limits
from salepulse.streams.platform.topology import WORKER_ROLES, Groups, Topics, counts_velocity, learns_preferences

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# Passed through to every Kafka client as librdkafka / aiokafka settings; secrets come only from here.
KAFKA_SECURITY_VARIABLES = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
}



def _one_of(variable: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{variable}={value!r} is not one of {', '.join(allowed)}")
    return value


def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"SALEPULSE_CURRENCY={value!r} is not a three-letter ISO 4217 code such as EUR or USD")
    return code
def _switch(variable: str, value: str) -> bool:
    if value.lower() not in ("on", "off", "true", "false", "1", "0"):
        raise ValueError(f"{variable}={value!r} is not on or off")
    return value.lower() in ("on", "true", "1")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with embedded defaults that make ``make demo`` work on a bare machine."""

    kafka_bootstrap_servers: str | None = None
    """KAFKA_BOOTSTRAP_SERVERS; unset means the project's own local broker on ``local_kafka_port``."""
    kafka_security: Mapping[str, str] = field(default_factory=dict)
    schema_registry_url: str | None = None
    clickhouse_url: str | None = None
    """CLICKHOUSE_URL (http://user:pass@host:8123/db); unset means embedded chdb under ``state_dir``."""
    state_dir: Path = PROJECT_ROOT / ".salepulse"
    data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    http_port: int = 6066
    http_host: str = "127.0.0.1"
    local_kafka_port: int = 9092
    partitions: int = 4
    topics: Topics = field(default_factory=Topics)
    app_id: str = "salepulse"
    worker_role: str = "all"
    """SALEPULSE_WORKER_ROLE: ``all`` (one process does everything), or ``velocity`` / ``preferences`` to run the
    two workloads as separate, separately scaled workers."""
    api_token: str | None = None
    cors_origins: tuple[str, ...] = ()
    """SALEPULSE_CORS_ORIGINS: comma-separated origins a browser may call the HTTP API from (none by default)."""
    read_token: str | None = None
    """SALEPULSE_READ_TOKEN: when set (or when SALEPULSE_API_TOKEN is), ``/members/…`` needs one of the two."""
    event_time_window: bool = True
    """SALEPULSE_EVENT_TIME_WINDOW (on/off): the collector refuses events outside the live window below."""
    event_max_age_s: float = limits.DEFAULT_MAX_EVENT_AGE_MS / 1000
    event_max_lead_s: float = limits.DEFAULT_MAX_EVENT_LEAD_MS / 1000
    max_body_bytes: int = 1_048_576
    ingest_fetch_backoff_ms: int = 1000
    """SALEPULSE_INGEST_FETCH_BACKOFF_MS: librdkafka's ``fetch.queue.backoff.ms`` for the ingest's consumer (how
    long a partition's fetch pauses once its local queue is full); ``salepulse bench --only floor`` measures it."""
    ingest_process: bool = False
    """SALEPULSE_INGEST_PROCESS: on, the ingest runs in a child process of the worker (its own interpreter, so its
    own core) instead of a thread sharing the worker's interpreter with sale_state (salepulse.streams.runtime.
    ingest_process). Off by default: measured on 2 cores it cost ~19% more CPU per event for no clear gain in
    events/s (README, "Velocity worker: where the µs go"), and with every role on one box CPU is what runs out."""
    gc_gen0_threshold: int = 50_000
    """SALEPULSE_GC_GEN0_THRESHOLD: the worker freezes its start-up heap and collects its youngest generation every
    this many allocations (CPython: 700); 0 leaves the collector as CPython sets it (streams/platform/gc_tuning)."""
    serving_port: int = 0
    """SALEPULSE_SERVING_PORT: a read server on this port, a thread with its own event loop
    (salepulse.streams.runtime.serving): the member rankings (off the learning path) and, on a velocity worker,
    GET /sales and GET /sales/{id} (off the worker's event loop); 0: none."""
    serving_snapshot_s: float = 0.0
    """SALEPULSE_SERVING_SNAPSHOT_S: with a serving port, > 0 serves the rankings from a forked copy-on-write
    snapshot of the worker renewed this often (slower than the thread under load, see the README); 0: from a
    thread reading the live state."""
    collector_port: int = 6070
    """SALEPULSE_COLLECTOR_PORT: the port of ``salepulse collect`` (POST /events and /forecasts in a process of
    their own, salepulse.streams.runtime.collector_app)."""
    collector_processes: int = 1
    """SALEPULSE_COLLECTOR_PROCESSES: ``salepulse collect`` processes sharing that port (SO_REUSEPORT), one per core."""
    sink_batch_rows: int = 20_000
    sink_flush_seconds: float = 1.0
    sink_metrics_port: int = 6067
    alert_probability: float = 0.8
    # Poison-proofing (README, "Bad input"): output size, the stream clock's bound and the in-memory state caps.
    max_message_bytes: int = 1_000_000
    clock_skew_seconds: float = 300.0
    max_live_sales: int = 5_000
    max_unknown_sales: int = 200
    sale_dedup_ids: int = 5_000
    max_members: int = 50_000
    finished_sale_retention_hours: float = 48.0
    """SALEPULSE_FINISHED_SALE_RETENTION_HOURS: a sale's ``sale-state`` and ``alert-state`` entries are deleted
    this long (stream time) after it ended (issue #12: state of finished sales was never deleted)."""
    plan_cost_ratio: float = 9.0
    """SALEPULSE_PLAN_COST_RATIO: cost of a unit short over the cost of a unit left over; the stocking plan
    positions the ratio / (1 + ratio) quantile of pre-sale demand (9 -> the 90 % quantile)."""
    presale_prior_strength: float = 20.0
    """SALEPULSE_PRESALE_PRIOR_STRENGTH: pseudo-forecasts pulling a buyer's (or a group's) correction toward the
    pooled one while their record is short; the correction's is learned after 200 finished forecasts, the spread's
    groups keep this one."""
    log_level: str = "INFO"
    log_format: str = "console"
    currency: str = "EUR"
    """SALEPULSE_CURRENCY: ISO 4217 code of the prices and revenue the dashboard shows."""
    table_standby_replicas: int = 1
    """SALEPULSE_TABLE_STANDBY_REPLICAS: workers that keep a standby copy of each table partition (Faust's
    ``table_standby_replicas``), so a partition's next owner is already following its changelog."""

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.local_kafka_port}"

    @property
    def http_advertised_host(self) -> str:
        """Where other workers reach this one (Faust's table route forwards a member request to the worker owning
        the member): the bind address, or this machine's name when bound to every interface, since ``0.0.0.0`` is
        nobody's address and every worker would take itself for the owner.

        >>> Settings(http_host="127.0.0.1").http_advertised_host
        '127.0.0.1'
        >>> Settings(http_host="0.0.0.0").http_advertised_host == socket.gethostname()
        True
        """
        return socket.gethostname() if self.http_host in ("0.0.0.0", "::", "") else self.http_host

    @property
    def uses_local_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def counts_velocity(self) -> bool:
        """This worker ingests events and keeps sale state, forecasts and alerts."""
        return counts_velocity(self.worker_role)

    @property
    def learns_preferences(self) -> bool:
        """This worker keeps member preferences and answers the member rankings."""
        return learns_preferences(self.worker_role)

    @property
    def worker_group(self) -> str:
        """The Faust app id (consumer group) of this worker's role."""
        return self.groups.worker(self.worker_role)

    @property
    def groups(self) -> Groups:
        """Consumer groups of every salepulse process (:mod:`salepulse.streams.platform.topology`)."""
        return Groups(self.app_id)

    @property
    def chdb_path(self) -> Path:
        return self.state_dir / "chdb"

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{self.chdb_path}"

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka settings for a confluent-kafka client."""
        return {"bootstrap.servers": self.bootstrap, **self.kafka_security, **extra}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        get = env.get
        defaults = cls()
        prefix = get("SALEPULSE_TOPIC_PREFIX", "")
        topics = Topics(
            **{f.name: get(f"SALEPULSE_TOPIC_{f.name.upper()}", f"{prefix}{f.default}") for f in fields(Topics)}
        )
        return cls(
            kafka_bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_security={key: get(var) for var, key in KAFKA_SECURITY_VARIABLES.items() if get(var)},
            schema_registry_url=get("SCHEMA_REGISTRY_URL") or None,
            clickhouse_url=get("CLICKHOUSE_URL") or None,
            state_dir=Path(get("SALEPULSE_STATE_DIR", str(defaults.state_dir))).resolve(),
            data_dir=Path(get("SALEPULSE_DATA_DIR", str(defaults.data_dir))).resolve(),
            http_port=int(get("SALEPULSE_HTTP_PORT", defaults.http_port)),
            http_host=get("SALEPULSE_HTTP_HOST", defaults.http_host),
            local_kafka_port=int(get("SALEPULSE_LOCAL_KAFKA_PORT", defaults.local_kafka_port)),
            partitions=int(get("SALEPULSE_PARTITIONS", defaults.partitions)),
            topics=topics,
            app_id=get("SALEPULSE_APP_ID", defaults.app_id),
            worker_role=_one_of("SALEPULSE_WORKER_ROLE", get("SALEPULSE_WORKER_ROLE", defaults.worker_role),
                                WORKER_ROLES),
            api_token=get("SALEPULSE_API_TOKEN") or None,
            cors_origins=tuple(o.strip() for o in get("SALEPULSE_CORS_ORIGINS", "").split(",") if o.strip()),
            read_token=get("SALEPULSE_READ_TOKEN") or None,
            event_time_window=_switch("SALEPULSE_EVENT_TIME_WINDOW", get("SALEPULSE_EVENT_TIME_WINDOW", "on")),
            event_max_age_s=float(get("SALEPULSE_EVENT_MAX_AGE_S", defaults.event_max_age_s)),
            event_max_lead_s=float(get("SALEPULSE_EVENT_MAX_LEAD_S", defaults.event_max_lead_s)),
            max_body_bytes=int(get("SALEPULSE_MAX_BODY_BYTES", defaults.max_body_bytes)),
            ingest_fetch_backoff_ms=int(get("SALEPULSE_INGEST_FETCH_BACKOFF_MS", defaults.ingest_fetch_backoff_ms)),
            ingest_process=_switch("SALEPULSE_INGEST_PROCESS", get("SALEPULSE_INGEST_PROCESS", "off")),
            gc_gen0_threshold=int(get("SALEPULSE_GC_GEN0_THRESHOLD", defaults.gc_gen0_threshold)),
            serving_port=int(get("SALEPULSE_SERVING_PORT", defaults.serving_port)),
            serving_snapshot_s=float(get("SALEPULSE_SERVING_SNAPSHOT_S", defaults.serving_snapshot_s)),
            collector_port=int(get("SALEPULSE_COLLECTOR_PORT", defaults.collector_port)),
            collector_processes=int(get("SALEPULSE_COLLECTOR_PROCESSES", defaults.collector_processes)),
            sink_batch_rows=int(get("SALEPULSE_SINK_BATCH_ROWS", defaults.sink_batch_rows)),
            sink_flush_seconds=float(get("SALEPULSE_SINK_FLUSH_SECONDS", defaults.sink_flush_seconds)),
            sink_metrics_port=int(get("SALEPULSE_SINK_METRICS_PORT", defaults.sink_metrics_port)),
            alert_probability=float(get("SALEPULSE_ALERT_PROBABILITY", defaults.alert_probability)),
            max_message_bytes=int(get("SALEPULSE_MAX_MESSAGE_BYTES", defaults.max_message_bytes)),
            clock_skew_seconds=float(get("SALEPULSE_CLOCK_SKEW_SECONDS", defaults.clock_skew_seconds)),
            max_live_sales=int(get("SALEPULSE_MAX_LIVE_SALES", defaults.max_live_sales)),
            max_unknown_sales=int(get("SALEPULSE_MAX_UNKNOWN_SALES", defaults.max_unknown_sales)),
            sale_dedup_ids=int(get("SALEPULSE_SALE_DEDUP_IDS", defaults.sale_dedup_ids)),
            max_members=int(get("SALEPULSE_MAX_MEMBERS", defaults.max_members)),
            finished_sale_retention_hours=float(get("SALEPULSE_FINISHED_SALE_RETENTION_HOURS",
                                                    defaults.finished_sale_retention_hours)),
            plan_cost_ratio=float(get("SALEPULSE_PLAN_COST_RATIO", defaults.plan_cost_ratio)),
            presale_prior_strength=float(get("SALEPULSE_PRESALE_PRIOR_STRENGTH", defaults.presale_prior_strength)),
            log_level=get("SALEPULSE_LOG_LEVEL", defaults.log_level).upper(),
            log_format=get("SALEPULSE_LOG_FORMAT", defaults.log_format),
            currency=_currency(get("SALEPULSE_CURRENCY", defaults.currency)),
            table_standby_replicas=int(get("SALEPULSE_TABLE_STANDBY_REPLICAS", defaults.table_standby_replicas)),
        )
