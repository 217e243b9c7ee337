"""A simulated flash-sale shop, deterministic under a seed, and a producer that plays it into Kafka.

Why a simulator at all: real logs (see ``replay``) have no buyer forecasts, no stock and no known truth, so they
cannot tell whether the forecast is right or whether a replenishment alert was deserved. Here the truth is
known by construction, and everything the pipeline has to cope with is present on purpose:

- **Members with lasting tastes**: favourite brands and categories and a price band each, with heavy-tailed
  activity (a few members do much of the browsing), so personalization has something to learn.
- **Sales on a schedule**: staggered openings, several open at once; each is one brand with 10-60 products in a
  few categories, with a price and an allocated stock. Buyers allocate stock from their own (wrong) forecast,
  so some products sell out (alerts are deserved) and some never come close.
- **Expert forecasts as real judgement is**: per-buyer optimism or pessimism, lognormal noise, shrinkage toward
  the sale's typical product, rounding to round numbers, occasional big misses, over-confident 80 % ranges on
  some products and none on others, and a few products with no forecast at all.
- **Known true demand** per (sale, sku) (``true_demand``: units that would sell with unlimited stock), realised
  through front-loaded arrivals (intensity ~ exp(-k t) plus a small last-chance bump), overdispersed units per
  order, and view -> cart -> order funnels of realistic conversion with cart removals. An order never takes more
  than the stock left; a sold-out product stops selling and its stock-out time is recorded (``stockouts``).

Two layers, so the world is tested without a broker:

1. **Pure** - :class:`SimulatedWorld` (imports neither Kafka nor Faust). Catalogue, priors and stock are built
   eagerly (they are small); :meth:`SimulatedWorld.events` generates events lazily, one simulated minute of
   one sale at a time, merged across sales through a heap, so memory stays flat however long the run.
2. **Kafka** - :func:`run_simulation` sends the catalogue, priors and stock, then the events at a target rate,
   optionally interleaved with malformed messages so the dead-letter path is exercised.

Events carry *simulated* time starting at ``start``; consumers work in event time, so a sale of a few simulated
hours can be played in a few real minutes (``time_scale`` simulated seconds per real second).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from salepulse.consumers.simulate_plan import DEFAULT_TIME_SCALE, Event, Record
from salepulse.consumers.simulate_world import SimulatedWorld
from salepulse.streams.config import Settings

if TYPE_CHECKING:
    from salepulse.consumers.publish import Publisher

__all__ = ["DEFAULT_TIME_SCALE", "Event", "Record", "SimulatedWorld", "SimulationReport", "run_simulation",
           "world_for_rate"]



# ---------------------------------------------------------------------- Kafka
@dataclass
class SimulationReport:
    """What a run produced; ``units_produced`` is what ClickHouse must end up holding for ``sale_ids``."""

    seed: int
    events_produced: dict[str, int] = field(default_factory=dict)
    """Valid events by kind (browse, cart, order)."""
    orders_produced: int = 0
    units_produced: int = 0
    bad_produced: int = 0
    """Malformed messages injected on purpose (not counted in events_produced)."""
    sales: int = 0
    sale_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    simulated_until: datetime | None = None
    """Event time of the last valid event produced."""


def world_for_rate(seed: int, rate: float, *, start: datetime | None = None,
                   time_scale: float = DEFAULT_TIME_SCALE) -> SimulatedWorld:
    """A world whose event density makes ``rate`` real events/s advance simulated time by ~``time_scale``.

    Why: pacing is by event count (the demo promises a rate), so the member base is sized to make that rate
    mean "a few simulated hours in a few real minutes". Ids carry the start minute, so a rerun with the
    same seed at another time is a new set of sales rather than a silent duplicate of the last run.
    """
    if start is None:
        start = datetime.now(UTC).replace(second=0, microsecond=0)
    prefix = f"sim{seed}-{start:%y%m%d%H%M}"
    probe = SimulatedWorld(seed, n_members=20_000, start=start, id_prefix=prefix)
    span = (probe.ends_at - probe.start).total_seconds()
    density = probe.expected_events / span  # events per simulated second at 20k members
    members = int(np.clip(20_000 * (rate / time_scale) / density, 1_000, 200_000))
    return SimulatedWorld(seed, n_members=members, start=start, time_scale=time_scale, id_prefix=prefix)


def _bad_message(rng: np.random.Generator, publisher: Publisher, world: SimulatedWorld) -> tuple[str, bytes]:
    """One malformed message for an events topic: random bytes, or well-framed Avro that breaks a rule."""
    topics = publisher.settings.topics
    sale = world.sales[int(rng.integers(len(world.sales)))]
    sku = sale["products"][0]["sku"]
    ts = sale["starts_at"]
    choice = int(rng.integers(4))
    if choice == 0:
        return topics.browse if rng.random() < 0.5 else topics.cart, rng.bytes(int(rng.integers(1, 64)))
    n = int(rng.integers(1_000_000_000))
    if choice == 1:  # fastavro accepts quantity 0; the validation rules do not
        bad_id = f"{world.prefix}-bad-o{n}"
        record = {"event_id": bad_id, "order_id": bad_id, "member_id": "m000000", "ts": ts,
                  "lines": [{"sale_id": sale["sale_id"], "sku": sku, "quantity": 0, "unit_price": 9.99}]}
        return topics.order, publisher.codec.encode("OrderEvent", record)
    if choice == 2:
        record = {"event_id": f"{world.prefix}-bad-c{n}", "member_id": "m000000", "sale_id": sale["sale_id"],
                  "sku": sku, "action": "add", "quantity": 0, "unit_price": 9.99, "ts": ts}
        return topics.cart, publisher.codec.encode("CartEvent", record)
    good = publisher.codec.encode("BrowseEvent", {"event_id": f"{world.prefix}-bad-v{n}", "member_id": "m000000",
                                                  "sale_id": sale["sale_id"], "sku": sku, "ts": ts})
    return topics.browse, good[: max(11, len(good) // 2)]  # right framing, truncated body


def run_simulation(
    settings: Settings,
    *,
    seed: int = 7,
    rate: float = 2000.0,
    duration: float | None = None,
    max_events: int | None = None,
    bad_rate: float = 0.0,
    progress: bool = True,
    stop: threading.Event | None = None,
    world: SimulatedWorld | None = None,
) -> SimulationReport:
    """Produce a simulated world to Kafka: catalogue, priors and stock first, then events at ``rate``/s.

    Stops when the world runs out, after ``duration`` real seconds, after ``max_events`` valid events, or when
    ``stop`` is set. With ``bad_rate`` > 0 about that share of all messages on the events topics are malformed
    (counted in ``bad_produced``). ``world`` defaults to :func:`world_for_rate` starting now; pass one to replay
    an exact world.
    """
    from tqdm import tqdm

    from salepulse.consumers.publish import Pacer, Publisher

    began = time.monotonic()
    world = world or world_for_rate(seed, rate)  # when a world is given, ``seed`` is the world's
    report = SimulationReport(seed=world.seed, sales=len(world.sales), sale_ids=[s["sale_id"] for s in world.sales])
    bad_rng = np.random.default_rng([seed, 99])
    kinds: Counter[str] = Counter()
    publisher = Publisher(settings)
    try:
        for kind, records in (("sale", world.sales), ("prior", world.priors), ("stock", world.stock)):
            for record in records:
                publisher.send(kind, record)
        pacer = Pacer(rate=rate)
        deadline = None if duration is None else began + duration
        bar = tqdm(total=max_events, unit="ev", desc="simulate", disable=not progress, mininterval=0.5)
        pending = 0
        for produced, (kind, record) in enumerate(world.events()):
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                break
            if max_events is not None and produced >= max_events:
                break
            while bad_rate > 0 and bad_rng.random() < bad_rate:
                topic, value = _bad_message(bad_rng, publisher, world)
                pacer.wait()
                publisher.send_raw(topic, value, b"bad")
                report.bad_produced += 1
            pacer.wait()
            publisher.send(kind, record)
            kinds[kind] += 1
            if kind == "order":
                report.orders_produced += 1
                report.units_produced += sum(line["quantity"] for line in record["lines"])
            report.simulated_until = record["ts"]
            pending += 1
            if pending >= 500:
                bar.update(pending)
                pending = 0
        bar.update(pending)
        bar.close()
    finally:
        publisher.flush()
    report.events_produced = dict(kinds)
    report.seconds = round(time.monotonic() - began, 3)
    return report
