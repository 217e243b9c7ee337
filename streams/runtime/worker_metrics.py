"""The counters and gauges one worker exposes on ``/metrics`` (Prometheus text), by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from salepulse.streams.platform.metrics import Metric, Registry


@dataclass
class WorkerMetrics:
    """The worker's Prometheus series (``GET /metrics``), also read by ``GET /stats``."""

    registry: Registry = field(default_factory=Registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_processed: Metric = r.counter("salepulse_events_processed_total", "Events decoded and counted.",
                                                   ["kind"])
        self.events_failed: Metric = r.counter(
            "salepulse_events_failed_total", "Inputs that failed, by stage (decode, validate).", ["stage"])
        self.deadletters_sent: Metric = r.counter("salepulse_deadletters_total",
                                                   "Records sent to the dead-letter topic.")
        self.facts_sent: Metric = r.counter("salepulse_facts_total", "Facts sent to velocity.facts.")
        self.signals_sent: Metric = r.counter("salepulse_member_signals_sent_total",
                                               "Member signals sent to member.signals.")
        self.signals_learned: Metric = r.counter("salepulse_member_signals_learned_total",
                                                  "Member signals folded into member preferences.")
        self.facts_counted: Metric = r.counter(
            "salepulse_facts_counted_total", "Facts counted into sale state; redelivered ones are not.", ["outcome"])
        self.alerts_sent: Metric = r.counter("salepulse_alerts_total", "Replenishment alerts sent, by status.",
                                              ["status"])
        self.snapshots_sent: Metric = r.counter("salepulse_snapshots_total", "Velocity snapshots sent.")
        self.consumer_lag: Metric = r.gauge("salepulse_consumer_lag_messages",
                                           "Messages not yet committed, by consumer group.", ["group"])
        self.http_requests: Metric = r.counter("salepulse_http_requests_total", "HTTP requests, by route and status.",
                                                ["route", "status"])
        self.collector_events: Metric = r.counter("salepulse_collector_events_total", "Events posted, by outcome.",
                                                   ["outcome"])
        self.plans_sent: Metric = r.counter("salepulse_plans_total", "Stock plan lines sent to stock.plans.")
        # Whole-shop gauges (README, "Scaling out"): the same on every velocity worker, so take one, never the sum.
        self.shop: Metric = r.gauge("salepulse_shop", "The whole shop as this worker answers for it (open_sales, "
                                    "units and open_alerts of the open sales); equal on every worker.", ["figure"])
        self.owned_partitions: Metric = r.gauge("salepulse_owned_partitions",
                                                "Partitions of velocity.facts whose sales this worker owns.")
        self.recovering: Metric = r.gauge("salepulse_recovering",
                                          "1 while this worker rebuilds the state of partitions it gained.")
