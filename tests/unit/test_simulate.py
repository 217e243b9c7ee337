"""The simulated world is only useful as a yardstick if it is reproducible, valid and shaped like a real shop.

Pure tests (no broker): one small world is generated once per module and checked for every property the
forecast, alerting and personalization code relies on.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from salepulse.consumers.tools.simulate import SimulatedWorld, SimulationReport, run_simulation, world_for_rate
from salepulse.schemas.codec import Codec, DecodeError
from salepulse.schemas.validation import problems
from salepulse.streams.platform.config import Settings

START = datetime(2025, 5, 5, 7, 0, tzinfo=UTC)
KIND_RECORD = {"browse": "BrowseEvent", "cart": "CartEvent", "order": "OrderEvent"}


def small_world(seed: int = 11) -> SimulatedWorld:
    return SimulatedWorld(seed, n_members=4_000, n_sales=8, start=START)


@pytest.fixture(scope="module")
def world() -> SimulatedWorld:
    return small_world()


@pytest.fixture(scope="module")
def events(world: SimulatedWorld) -> list[tuple[str, dict[str, Any]]]:
    return list(world.events())


def test_same_seed_same_world_other_seed_other_world(events: list[tuple[str, dict[str, Any]]]) -> None:
    again = small_world()
    assert again.sales == small_world().sales
    assert again.priors == small_world().priors
    assert again.stock == small_world().stock
    assert again.true_demand == small_world().true_demand
    assert list(again.events()) == events
    assert list(again.events()) == events  # a second call replays from full stock
    other = small_world(seed=12)
    assert other.sales != again.sales
    assert list(itertools.islice(other.events(), 200)) != events[:200]


def test_every_record_encodes_and_passes_validation(world: SimulatedWorld,
                                                    events: list[tuple[str, dict[str, Any]]]) -> None:
    codec = Codec()
    catalogue = [("Sale", r) for r in world.sales] + [("ExpertForecast", r) for r in world.priors]
    catalogue += [("StockLevel", r) for r in world.stock]
    for name, record in catalogue + [(KIND_RECORD[kind], r) for kind, r in events]:
        assert problems(name, record) == [], (name, record)
        decoded_name, decoded = codec.decode(codec.encode(name, record))
        assert decoded_name == name
    assert {kind for kind, _ in events} == {"browse", "cart", "order"}
    ids = [r["event_id"] for _, r in events]
    assert len(ids) == len(set(ids))
    assert len({r["event_id"] for r in world.sales + world.priors + world.stock}) == (
        len(world.sales) + len(world.priors) + len(world.stock))
    for kind, record in events:
        if kind == "order":
            assert record["event_id"] == record["order_id"]
            assert all(set(line) == {"sale_id", "sku", "quantity", "unit_price"} for line in record["lines"])


def test_catalogue_shape(world: SimulatedWorld) -> None:
    starts = [s["starts_at"] for s in world.sales]
    assert starts == sorted(starts) and len(set(starts)) > 3  # staggered
    assert all(s["starts_at"].tzinfo is not None and s["ends_at"] > s["starts_at"] for s in world.sales)
    assert all(10 <= len(s["products"]) <= 60 for s in world.sales)
    # several sales open at once
    overlap = max(sum(s["starts_at"] <= t < s["ends_at"] for s in world.sales) for t in starts)
    assert overlap >= 3
    skus = [p["sku"] for s in world.sales for p in s["products"]]
    assert len(skus) == len(set(skus)) == len(world.stock) == len(world.true_demand)
    assert {r["sku"]: r["on_hand"] for r in world.stock} == {
        p["sku"]: p["stock"] for s in world.sales for p in s["products"]}


def test_events_in_time_order_and_inside_their_sale(world: SimulatedWorld,
                                                    events: list[tuple[str, dict[str, Any]]]) -> None:
    sales = {s["sale_id"]: s for s in world.sales}
    times = [r["ts"] for _, r in events]
    assert all(a <= b for a, b in zip(times, times[1:], strict=False))
    for kind, record in events:
        sale_ids = [line["sale_id"] for line in record["lines"]] if kind == "order" else [record["sale_id"]]
        for sale_id in sale_ids:
            assert sales[sale_id]["starts_at"] <= record["ts"] < sales[sale_id]["ends_at"]


def test_orders_are_front_loaded(world: SimulatedWorld, events: list[tuple[str, dict[str, Any]]]) -> None:
    sales = {s["sale_id"]: s for s in world.sales}
    fractions = []
    for kind, record in events:
        if kind == "order":
            sale = sales[record["lines"][0]["sale_id"]]
            fractions.append((record["ts"] - sale["starts_at"]) / (sale["ends_at"] - sale["starts_at"]))
    fractions_a = np.array(fractions)
    assert (fractions_a < 0.35).mean() > 0.5
    assert (fractions_a > 0.9).mean() > 0.01  # the last-chance bump exists


def test_stock_is_never_oversold_and_unconstrained_demand_is_realised(
        world: SimulatedWorld, events: list[tuple[str, dict[str, Any]]]) -> None:
    stock = {(s["sale_id"], p["sku"]): p["stock"] for s in world.sales for p in s["products"]}
    sold: Counter[tuple[str, str]] = Counter()
    last_sale: dict[tuple[str, str], datetime] = {}
    last_add: dict[tuple[str, str], datetime] = {}
    for kind, record in events:
        if kind == "order":
            for line in record["lines"]:
                key = (line["sale_id"], line["sku"])
                sold[key] += line["quantity"]
                last_sale[key] = record["ts"]
        elif kind == "cart" and record["action"] == "add":
            last_add[(record["sale_id"], record["sku"])] = record["ts"]
    assert all(sold[key] <= stock[key] for key in stock)
    sold_out = {key for key in stock if sold[key] == stock[key]}
    assert set(world.stockouts) == sold_out
    assert 0 < len(sold_out) < len(stock) / 2  # stock is sometimes too low for the demand ...
    assert sum(stock[k] >= 2 * world.true_demand[k] for k in stock) > len(stock) / 10  # ... and sometimes ample
    for key in sold_out:
        assert world.true_demand[key] >= stock[key]
        assert last_sale[key] == world.stockouts[key]  # a sold-out product stops selling
        assert last_add.get(key, world.stockouts[key]) <= world.stockouts[key]
    for key in stock.keys() - sold_out:
        assert sold[key] == world.true_demand[key]


def test_funnel_conversion_is_realistic(events: list[tuple[str, dict[str, Any]]]) -> None:
    views = sum(kind == "browse" for kind, _ in events)
    adds = sum(kind == "cart" and r["action"] == "add" for kind, r in events)
    removes = sum(kind == "cart" and r["action"] == "remove" for kind, r in events)
    lines = [line for kind, r in events if kind == "order" for line in r["lines"]]
    assert 0.03 <= adds / views <= 0.08
    assert 0.30 <= len(lines) / adds <= 0.50
    assert 0.1 <= removes / adds <= 0.5
    quantities = Counter(line["quantity"] for line in lines)
    assert quantities[1] / len(lines) > 0.6 and max(quantities) >= 4  # mostly one unit, sometimes several
    multi = sum(len(r["lines"]) > 1 for kind, r in events if kind == "order")
    assert multi > 0


def test_members_buy_what_they_like(world: SimulatedWorld, events: list[tuple[str, dict[str, Any]]]) -> None:
    brand = {s["sale_id"]: s["brand"] for s in world.sales}
    category = {p["sku"]: p["category"] for s in world.sales for p in s["products"]}
    orders = [r for kind, r in events if kind == "order"]
    members = [world.taste(f"m{m:06d}") for m in range(0, world.n_members, 7)]
    hits_brand = hits_cat = base_brand = base_cat = 0.0
    for record in orders:
        taste = world.taste(record["member_id"])
        line = record["lines"][0]
        hits_brand += brand[line["sale_id"]] in taste["brands"]
        hits_cat += category[line["sku"]] in taste["categories"]
        base_brand += np.mean([brand[line["sale_id"]] in t["brands"] for t in members])
        base_cat += np.mean([category[line["sku"]] in t["categories"] for t in members])
    # orders by members who are not fans of the brand are far rarer than non-fans are among members
    assert len(orders) - hits_brand < 0.6 * (len(orders) - base_brand)
    assert hits_cat > 1.3 * base_cat
    per_member = Counter(r["member_id"] for kind, r in events if kind == "browse")
    counts = np.sort(np.array(list(per_member.values())))[::-1]
    assert counts[: len(counts) // 10].sum() > 0.25 * counts.sum()  # heavy-tailed activity


def test_expert_forecasts_are_informative_but_biased_and_noisy(world: SimulatedWorld) -> None:
    priors = {(p["sale_id"], p["sku"]): p for p in world.priors}
    assert 0 < len(world.true_demand) - len(priors) < 0.15 * len(world.true_demand)  # a few have none
    forecast = np.array([p["expected_units"] for p in priors.values()])
    truth = np.array([world.true_demand[key] for key in priors])
    correlation = np.corrcoef(np.log1p(forecast), np.log1p(truth))[0, 1]
    assert 0.5 < correlation < 0.97
    assert (forecast == truth).mean() < 0.3
    ranged = [p for p in priors.values() if p["low"] is not None]
    assert 0.3 * len(priors) < len(ranged) < 0.9 * len(priors)
    coverage = np.mean([p["low"] <= world.true_demand[(p["sale_id"], p["sku"])] <= p["high"] for p in ranged])
    assert 0.3 < coverage < 0.95  # an "80 %" range that is not quite one
    many = np.array([p["expected_units"] for p in SimulatedWorld(11, n_sales=40, start=START).priors])
    assert np.mean(many[many >= 10] % 5 == 0) > 0.6  # people forecast in round numbers
    assert len({p["author"] for p in priors.values()}) > 1
    log_errors = np.log((forecast + 1) / (truth + 1))
    assert np.abs(log_errors).max() > 1.0  # big misses happen
    assert all(p["submitted_at"] < s["starts_at"] for s in world.sales for p in world.priors
               if p["sale_id"] == s["sale_id"])


class FakePublisher:
    """Stands in for salepulse.consumers.io.publish.Publisher: encodes like it, keeps what would have gone to Kafka."""

    made: list[FakePublisher] = []

    def __init__(self, settings: Settings, codec: Codec | None = None, **_: Any) -> None:
        FakePublisher.made.append(self)
        self.settings = settings
        self.codec = codec or Codec()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.raw: list[tuple[str, bytes]] = []
        self.flushed = False

    def send(self, kind: str, record: dict[str, Any]) -> None:
        name = {"sale": "Sale", "prior": "ExpertForecast", "stock": "StockLevel", **KIND_RECORD}[kind]
        self.codec.encode(name, record)
        self.sent.append((kind, record))

    def send_raw(self, topic: str, value: bytes, key: str | bytes | None = None) -> None:
        self.raw.append((topic, value))

    def flush(self, timeout: float = 60.0) -> None:
        self.flushed = True


def test_run_simulation_sends_catalogue_first_then_paced_events_and_bad_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import salepulse.consumers.io.publish

    FakePublisher.made.clear()
    monkeypatch.setattr(salepulse.consumers.io.publish, "Publisher", FakePublisher)
    world = SimulatedWorld(5, n_members=2_000, n_sales=4, start=START)
    report = run_simulation(Settings(), seed=5, rate=1e9, max_events=3_000, bad_rate=0.1, progress=False,
                            world=world)
    assert isinstance(report, SimulationReport)
    publisher = FakePublisher.made[0]
    assert publisher.flushed
    n_catalogue = len(world.sales) + len(world.priors) + len(world.stock)
    assert [k for k, _ in publisher.sent[:n_catalogue]] == (
        ["sale"] * len(world.sales) + ["prior"] * len(world.priors) + ["stock"] * len(world.stock))
    sent_events = publisher.sent[n_catalogue:]
    assert sum(report.events_produced.values()) == len(sent_events) == 3_000
    assert sent_events == list(itertools.islice(world.events(), 3_000))
    orders = [r for k, r in sent_events if k == "order"]
    assert report.orders_produced == len(orders)
    assert report.units_produced == sum(line["quantity"] for r in orders for line in r["lines"])
    assert report.sale_ids == [s["sale_id"] for s in world.sales] and report.sales == len(world.sales)
    assert report.bad_produced == len(publisher.raw)
    assert 0.05 < report.bad_produced / (report.bad_produced + 3_000) < 0.15
    assert {topic for topic, _ in publisher.raw} <= set(Settings().topics.events)
    codec = Codec()
    for _, value in publisher.raw:  # every injected message must be refused by the consumers
        try:
            name, record = codec.decode(value)
        except DecodeError:
            continue
        assert problems(name, record), record
    assert math.isclose(report.seconds, report.seconds) and report.simulated_until == sent_events[-1][1]["ts"]


def test_run_simulation_stops_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import salepulse.consumers.io.publish

    monkeypatch.setattr(salepulse.consumers.io.publish, "Publisher", FakePublisher)
    stop = threading.Event()
    stop.set()
    report = run_simulation(Settings(), rate=1e9, progress=False, stop=stop,
                            world=SimulatedWorld(2, n_members=500, n_sales=2, start=START))
    assert report.events_produced == {} and report.sales == 2


def test_worlds_from_the_lazy_generator_need_no_full_materialisation() -> None:
    big = SimulatedWorld(3, n_members=100_000, n_sales=40, start=START)
    assert big.expected_events > 1_000_000
    first = list(itertools.islice(big.events(), 1_000))  # cheap: only the opening minutes are generated
    assert len(first) == 1_000 and first[0][1]["ts"] >= START
    per_sale: defaultdict[str, int] = defaultdict(int)
    for kind, record in first:
        if kind != "order":
            per_sale[record["sale_id"]] += 1
    assert len(per_sale) >= 2


def test_world_for_rate_sizes_members_to_the_rate_and_keys_ids_by_start() -> None:
    slow, fast = world_for_rate(4, 500.0, start=START), world_for_rate(4, 5_000.0, start=START)
    assert slow.n_members < fast.n_members
    span = (fast.ends_at - fast.start).total_seconds()
    assert 30 < span / (fast.expected_events / 5_000.0) < 120  # about time_scale (60) simulated s per real s
    assert world_for_rate(4, 500.0, start=START).sales == slow.sales
    later = world_for_rate(4, 500.0, start=START.replace(hour=9))
    assert not {s["sale_id"] for s in later.sales} & {s["sale_id"] for s in slow.sales}
