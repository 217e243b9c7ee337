"""A member's ranking is the same whichever preferences worker is asked (issue 12), on the real broker and chdb.

Two preferences workers split the partitions of ``member.signals`` (and of the ``member-prefs`` table); a member
request to the worker that does not own the member's partition is forwarded to the one that does. Each member
here ordered from one brand, so their ranking is personal: a worker answering from its own (empty) state for a
member it does not own would answer a cold ranking instead, and the equality below would fail.

Each preferences worker also reads every partition of ``velocity.snapshots`` (no consumer group), so a cold member's
ranking orders every sale by the whole shop's popularity, the same from both workers: orders of a different size
per sale, on products whose snapshots land on every partition, must come back in that order from each.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from salepulse.consumers.io.publish import Publisher
from salepulse.consumers.tools.harness import Pipeline, WorkerProcess, wait_until
from salepulse.streams.io.ingest import member_partition
from salepulse.streams.io.lag import group_lag
from salepulse.streams.platform.topology import sku_key
from salepulse.streams.runtime.handover import sale_partition
from salepulse.streams.tools.bench_scale import group_assignment, split_between

pytestmark = pytest.mark.integration

PARTITIONS = 4
HOUR = 3_600_000
BRANDS = ["alpha", "bravo", "charlie", "delta", "echo"]
PERSONAL = {"brand you ordered", "sale you visited", "brand you like"}
PRODUCTS = 8
"""Products per sale: their 8 snapshot keys per sale spread over every partition of velocity.snapshots."""
CROWD_UNITS = {"echo": 16, "delta": 8, "charlie": 4, "bravo": 2, "alpha": 1}
"""Units per product the crowd orders from each brand's sale: the reverse of the members' order counts."""


@pytest.fixture
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state", partitions=PARTITIONS)
    yield p
    p.close()


def members_on_every_partition(prefix: str, per_partition: int = 2) -> list[str]:
    """``per_partition`` members on each partition of member.signals, so both workers own some whatever the split."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while any(len(ids) < per_partition for ids in found.values()):
        member = f"{prefix}m{n}"
        if len(found[member_partition(member, PARTITIONS)]) < per_partition:
            found[member_partition(member, PARTITIONS)].append(member)
        n += 1
    return [m for ids in found.values() for m in ids]


def ranking(pipeline: Pipeline, child: WorkerProcess, member: str) -> list[dict]:
    return pipeline.get(f"/members/{member}/sales?k=10", child.port)["items"]


def test_a_members_ranking_is_the_same_from_either_preferences_worker(pipeline: Pipeline) -> None:
    prefix = f"sm-{uuid.uuid4().hex[:6]}-"
    now = int(time.time() * 1000)
    sales = {brand: f"{prefix}{brand}" for brand in BRANDS}
    velocity = pipeline.spawn("velocity", "velocity")  # the ingest runs in velocity workers: it makes the signals
    prefs = [pipeline.spawn("preferences", "preferences-a"), pipeline.spawn("preferences", "preferences-b")]
    for child in (velocity, *prefs):
        pipeline.wait_ready(child, 180)
    print("workers ready", flush=True)
    group = pipeline.settings.groups.worker("preferences")
    wait_until(lambda: split_between(pipeline.settings, [group], 2), 120,
               "the two preferences workers to split the partitions of member.signals")
    print(f"partitions per preferences worker: {group_assignment(pipeline.settings, group)[1]}")

    members = members_on_every_partition(prefix)
    ordered = {member: BRANDS[i % len(BRANDS)] for i, member in enumerate(members)}
    with Publisher(pipeline.settings) as publisher:
        for brand, sale_id in sales.items():
            publisher.send("sale", {"event_id": f"{sale_id}-v1", "sale_id": sale_id, "brand": brand,
                                    "starts_at": now - HOUR, "ends_at": now + 4 * HOUR, "updated_at": now,
                                    "products": [{"sku": f"{sale_id}-p{i}", "name": f"{brand} {i}",
                                                  "category": "apparel.shirt", "price": 30.0 + i, "stock": 500}
                                                 for i in range(PRODUCTS)]})

    def catalogued() -> bool:
        """Every sale known to every worker: an order read before its sale teaches the member nothing about it."""
        try:
            for sale_id in sales.values():  # 404 until the velocity worker's catalogue has it
                pipeline.get(f"/sales/{sale_id}", velocity.port)
            return all(
                {i["sale_id"] for i in ranking(pipeline, child, f"{prefix}nobody")} == set(sales.values())
                for child in prefs)
        except OSError:  # 503 while a worker still loads the catalogue
            return False

    wait_until(catalogued, 60, "both preferences workers to rank every sale")
    with Publisher(pipeline.settings) as publisher:
        for i, (member, brand) in enumerate(ordered.items()):
            sale_id = sales[brand]
            publisher.send("order", {"event_id": f"{prefix}o{i}", "order_id": f"{prefix}o{i}", "member_id": member,
                                     "ts": now - 30_000 + i, "lines": [{"sale_id": sale_id, "sku": f"{sale_id}-p1",
                                                                        "quantity": 1, "unit_price": 31.0}]})
    print(f"{len(members)} members' orders sent", flush=True)
    s, t = pipeline.settings, pipeline.settings.topics
    wait_until(lambda: group_lag(s, s.groups.ingest, list(t.events)) == 0
               and group_lag(s, group, [t.signals]) == 0, 120,
               "the ingest and both preferences workers to commit every event and signal", every=1.0)

    def personal(items: list[dict]) -> bool:
        return bool(items) and items[0]["reason"] in PERSONAL

    def answers() -> dict[str, list[list[dict]]]:
        return {member: [ranking(pipeline, child, member) for child in prefs] for member in members}

    # Learned state reaches the ranking within a flush; wait for the first personal answer, bounded.
    wait_until(lambda: any(personal(both[0]) for both in answers().values()), 60,
               "a personal ranking for at least one member (else the equality below proves nothing)")
    found = answers()
    for member, (a, b) in found.items():
        assert a == b, f"{member} (partition {member_partition(member, PARTITIONS)}) is ranked differently by " \
                       f"{prefs[0].name} and {prefs[1].name}: {a} != {b}"
    learned = [m for m, (a, _) in found.items() if personal(a) and a[0]["sale_id"] == sales[ordered[m]]]
    print(f"{len(learned)} of {len(members)} members ranked personally, the same from either worker", flush=True)
    # A member nobody has seen gets the cold ranking: what a worker answering without forwarding would have given.
    cold = [ranking(pipeline, child, f"{prefix}nobody") for child in prefs]
    assert cold[0] == cold[1]
    assert cold[0][0]["reason"] not in PERSONAL, f"a cold member got a personal reason: {cold[0]}"
    # Every member ordered: each must be ranked personally, by the worker that learned them (the routing key and
    # the signals' partition are the same hash; JSON table keys once sent 3 members in 4 to the wrong worker).
    cold_members = sorted(set(members) - set(learned))
    assert not cold_members, f"{len(cold_members)} of {len(members)} members ranked cold by both: {cold_members}"

    # Popularity of every sale, whichever worker ranks (a preferences worker once read only the partitions of
    # velocity.snapshots its group gave it). The crowd's orders are many times the members', in the reverse order.
    keys = [(sales[brand], f"{sales[brand]}-p{i}") for brand in BRANDS for i in range(PRODUCTS)]
    covered = {sale_partition(sku_key(*key).decode(), PARTITIONS) for key in keys}  # murmur2, as the producer
    assert covered == set(range(PARTITIONS)), f"the crowd's snapshots reach only partitions {covered}"
    brand_of = {sale_id: brand for brand, sale_id in sales.items()}
    with Publisher(pipeline.settings) as publisher:
        for i, (sale_id, sku) in enumerate(keys):
            publisher.send("order", {"event_id": f"{prefix}c{i}", "order_id": f"{prefix}c{i}",
                                     "member_id": f"{prefix}crowd{i}", "ts": now - 20_000,
                                     "lines": [{"sale_id": sale_id, "sku": sku,
                                                "quantity": CROWD_UNITS[brand_of[sale_id]], "unit_price": 31.0}]})
    units = {sales[b]: PRODUCTS * CROWD_UNITS[b] + sum(1 for m in members if ordered[m] == b) for b in BRANDS}
    expected = sorted(units, key=lambda sale_id: units[sale_id], reverse=True)
    print(f"crowd orders sent; units per sale {units}", flush=True)

    # A member request is answered by the owner of the member's partition: cold members on every partition of
    # member.signals, so that both workers rank (one cold member alone would always be ranked by the same one).
    newcomers = members_on_every_partition(f"{prefix}new-", per_partition=1)

    def cold_rankings() -> list[list[dict]]:
        return [ranking(pipeline, prefs[i % 2], member) for i, member in enumerate(newcomers)]

    def by_popularity() -> bool:
        found = cold_rankings()
        return all(c == found[0] for c in found) and [i["sale_id"] for i in found[0]] == expected

    wait_until(by_popularity, 90, "both preferences workers to rank every sale alike, by the whole shop's "
               "popularity", every=1.0)
    cold = cold_rankings()
    print(f"cold ranking: {[(i['sale_id'][len(prefix):], i['score']) for i in cold[0]]}", flush=True)
    for member, answer in zip(newcomers, cold, strict=True):
        assert answer == cold[0], f"{member} (partition {member_partition(member, PARTITIONS)}) is ranked " \
                                  f"otherwise: {answer} != {cold[0]}"
    assert [i["sale_id"] for i in cold[0]] == expected
    assert all(item["score"] > 0 for item in cold[0]), f"a sale without popularity: {cold[0]}"
