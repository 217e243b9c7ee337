"""Every topic, key, record type, consumer group, partition rule and worker role of salepulse, named once.

Producers, the ingest, the agents, the sink, the alert follower and :func:`salepulse.streams.io.topics.ensure_topics`
read their names from here; ``tests/unit/test_topology.py`` checks ``docker-compose.yml`` and the README diagram
against it. Topic *names* are configurable (``SALEPULSE_TOPIC_PREFIX``, ``SALEPULSE_TOPIC_<FIELD>``), so a
:class:`Topics` instance, built by :class:`salepulse.streams.platform.config.Settings`, carries the names in force; the
rest of a topic's contract (key, records, compaction, partitioning) is fixed in :data:`TOPICS`.

>>> t = Topics()
>>> [spec.field for spec in TOPICS if spec.compacted] == list(COMPACTED_FIELDS)
True
>>> route("order").record, route("order").topic(t), route("order").key({"member_id": "m1"})
('OrderEvent', 'events.order', 'm1')
>>> EVENT_RECORDS["cart"], RECORD_KINDS["CartEvent"]
('CartEvent', 'cart')
>>> groups = Groups("salepulse")
>>> groups.worker("preferences"), groups.ingest, groups.sink
('salepulse-preferences', 'salepulse-ingest', 'salepulse-sink')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class Topics:
    """Kafka topic names: ``SALEPULSE_TOPIC_PREFIX`` prefixes them all, ``SALEPULSE_TOPIC_<FIELD>`` renames one."""

    browse: str = "events.browse"
    cart: str = "events.cart"
    order: str = "events.order"
    sales: str = "catalog.sales"
    priors: str = "forecast.priors"
    stock: str = "stock.levels"
    facts: str = "velocity.facts"
    signals: str = "member.signals"
    snapshots: str = "velocity.snapshots"
    alerts: str = "replenishment.alerts"
    deadletter: str = "events.deadletter"
    outcomes: str = "forecast.outcomes"
    plans: str = "stock.plans"

    @property
    def events(self) -> tuple[str, str, str]:
        return (self.browse, self.cart, self.order)

    @property
    def compacted(self) -> tuple[str, ...]:
        """Topics that hold the latest value per key (catalogue, priors, stock, snapshots, outcomes, plans)."""
        return tuple(getattr(self, name) for name in COMPACTED_FIELDS)

    @property
    def followed(self) -> tuple[str, ...]:
        """Compacted topics every worker reads whole: the catalogue, and the outcomes the pre-sale desk learns."""
        return tuple(getattr(self, name) for name in FOLLOWED_FIELDS)

    @property
    def shop_view(self) -> tuple[str, ...]:
        """What every velocity worker reads whole to answer for the sales it does not own (README, "Scaling out")."""
        return tuple(getattr(self, name) for name in SHOP_VIEW_FIELDS)

    def all(self) -> tuple[str, ...]:
        """Every topic name, in declaration order (what ``ensure_topics`` creates)."""
        return tuple(getattr(self, f.name) for f in fields(self))


Partitioning = Literal["by key", "by member partition", "by sale"]


@dataclass(frozen=True)
class TopicSpec:
    """The contract of one topic: its :class:`Topics` field, key, record types and who writes and reads it."""

    field: str
    key: str
    records: tuple[str, ...]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    compacted: bool = False
    partitioning: Partitioning = "by key"


#: The topology, in flow order. ``partitioning`` "by member partition": the ingest sends each batch of signals to
#: the partition that ``member_id`` hashes to (murmur2 of its UTF-8 bytes, as Faust routes the ``member-prefs``
#: table, whose keys are those raw bytes), so the topic
#: must have ``SALEPULSE_PARTITIONS`` partitions like every other.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("browse", "member_id", ("BrowseEvent",), ("collector", "simulate", "replay"), ("ingest",)),
    TopicSpec("cart", "member_id", ("CartEvent",), ("collector", "simulate", "replay"), ("ingest",)),
    TopicSpec("order", "member_id", ("OrderEvent",), ("collector", "simulate", "replay"), ("ingest",)),
    TopicSpec("sales", "sale_id", ("Sale",), ("simulate", "replay"), ("catalog follower",), compacted=True),
    TopicSpec("priors", "sale_id:sku", ("ExpertForecast",), ("forecasts endpoint", "priors load", "simulate"),
              ("catalog follower",), compacted=True),
    TopicSpec("stock", "sku", ("StockLevel",), ("simulate", "replay"), ("catalog follower",), compacted=True),
    TopicSpec("facts", "sale_id", ("VelocityFacts",), ("ingest",), ("sale_state agent", "sink"),
              partitioning="by sale"),
    TopicSpec("signals", "none (partition chosen from member_id)", ("MemberSignals",), ("ingest",),
              ("member_preferences agent",), partitioning="by member partition"),
    TopicSpec("snapshots", "sale_id:sku", ("VelocitySnapshot",), ("live-state timer",),
              ("sink", "shop view follower (velocity and preferences workers)"), compacted=True),
    TopicSpec("alerts", "sale_id:sku", ("ReplenishmentAlert",), ("live-state timer",),
              ("sink", "alerts follow", "shop view follower")),
    TopicSpec("deadletter", "source key", ("DeadLetter",), ("ingest", "sale_state and member_preferences agents"),
              ("salepulse deadletters",)),
    TopicSpec("outcomes", "sale_id:sku", ("ForecastOutcome",), ("live-state timer (sales that ended)",),
              ("catalog follower (buyer desk)",), compacted=True),
    TopicSpec("plans", "sale_id:sku", ("StockPlan",), ("live-state timer (buyer desk)",), ("sink",),
              compacted=True),
)
COMPACTED_FIELDS: tuple[str, ...] = tuple(spec.field for spec in TOPICS if spec.compacted)
#: What the catalogue follower of every worker reads whole (plans are written, never read back).
FOLLOWED_FIELDS: tuple[str, ...] = ("sales", "priors", "stock", "outcomes")
#: What every velocity worker reads whole for the sales other workers own: their snapshots and their alerts.
SHOP_VIEW_FIELDS: tuple[str, ...] = ("snapshots", "alerts")
SPECS: Mapping[str, TopicSpec] = {spec.field: spec for spec in TOPICS}

#: Event kind (the ``type`` of a posted JSON event, the name used in counters) ↔ Avro record name.
EVENT_RECORDS: Mapping[str, str] = {"browse": "BrowseEvent", "cart": "CartEvent", "order": "OrderEvent"}
RECORD_KINDS: Mapping[str, str] = {record: kind for kind, record in EVENT_RECORDS.items()}


@dataclass(frozen=True)
class Route:
    """Where a record of one kind goes: its Avro record, its topic (from the names in force) and its key."""

    record: str
    field: str
    key: Callable[[Mapping[str, Any]], str]

    def topic(self, topics: Topics) -> str:
        return str(getattr(topics, self.field))


def _by(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda record: record[name]


#: Every kind a producer may send (``Publisher.send(kind, record)``, the collector, the forecasts endpoint).
ROUTES: Mapping[str, Route] = {
    "browse": Route("BrowseEvent", "browse", _by("member_id")),
    "cart": Route("CartEvent", "cart", _by("member_id")),
    "order": Route("OrderEvent", "order", _by("member_id")),
    "sale": Route("Sale", "sales", _by("sale_id")),
    "prior": Route("ExpertForecast", "priors", lambda r: f"{r['sale_id']}:{r['sku']}"),
    "stock": Route("StockLevel", "stock", _by("sku")),
}


def route(kind: str) -> Route:
    return ROUTES[kind]


def sku_key(sale_id: str, sku: str) -> bytes:
    """The key of the per-(sale, sku) topics (snapshots, alerts, priors)."""
    return f"{sale_id}:{sku}".encode()


WorkerRole = Literal["all", "velocity", "preferences"]
#: ``SALEPULSE_WORKER_ROLE``: ``all`` runs everything in one process; ``velocity`` and ``preferences`` split the
#: two workloads so they scale separately, each with its own consumer group and its own tables.
WORKER_ROLES: tuple[WorkerRole, ...] = ("all", "velocity", "preferences")


def counts_velocity(role: str) -> bool:
    return role in ("all", "velocity")


def learns_preferences(role: str) -> bool:
    return role in ("all", "preferences")


#: Faust tables: name → (the role flag that owns it, what it maps).
TABLES: Mapping[str, str] = {
    "sale-state": "sale_id -> SaleState JSON (velocity role)",
    "member-prefs": "member_id -> MemberState bytes (preferences role)",
    "alert-state": "sale_id -> alert state JSON of the sale's skus: sequence, open, severity (velocity role)",
}
#: The role whose workers keep each table (``all`` keeps every one).
TABLE_ROLES: Mapping[str, str] = {"sale-state": "velocity", "member-prefs": "preferences", "alert-state": "velocity"}


#: The catalogue follower assigns partitions itself and commits nothing; librdkafka still wants a group id.
CATALOG_FOLLOWER_GROUP = "salepulse-catalog-unused"
#: The consumer that reads committed offsets for lag (it never joins: it only asks the group coordinator).
LAG_PROBE_GROUP = "salepulse-lag-probe"


@dataclass(frozen=True)
class Groups:
    """Consumer groups, derived from ``SALEPULSE_APP_ID`` (the sink's and the alert followers' are fixed: one sink
    per cluster, one committed position per alert destination)."""

    app_id: str
    sink: str = "salepulse-sink"

    @staticmethod
    def alerts_follower(destination: str) -> str:
        """``salepulse alerts follow``: ``salepulse-alerts-<destination>`` (text, json, webhook-<host>)."""
        return f"salepulse-alerts-{destination}"

    def worker(self, role: str) -> str:
        """The Faust app id (consumer group) of a worker of ``role``."""
        return f"{self.app_id}-preferences" if role == "preferences" else self.app_id

    @property
    def ingest(self) -> str:
        return f"{self.app_id}-ingest"


#: Topics the sink writes to ClickHouse.
SINK_FIELDS: tuple[str, ...] = ("facts", "snapshots", "alerts", "plans")


def sink_topics(topics: Topics) -> list[str]:
    return [getattr(topics, name) for name in SINK_FIELDS]
