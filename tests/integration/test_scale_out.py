"""Scale-out on the real broker and chdb (issue 12): two velocity workers and one preferences worker under load,
a SIGKILL of one velocity worker mid-stream, its restart (a rebalance back), and the whole shop exact from either.

Every wait is for a state (ownership, readiness, committed lag), bounded, with a message saying what was awaited.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from salepulse.consumers.io.publish import Pacer, Publisher
from salepulse.consumers.tools.harness import Pipeline, WorkerProcess, wait_until
from salepulse.schemas.codec import Codec
from salepulse.streams.io.lag import group_lag
from salepulse.streams.runtime.handover import sale_partition

pytestmark = pytest.mark.integration

PARTITIONS = 4
HANDOVER_TARGET_S = 15.0
HOUR = 3_600_000


@pytest.fixture
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state", partitions=PARTITIONS)
    yield p
    p.close()


def sale_ids(prefix: str) -> list[str]:
    """Two sales on each partition of velocity.facts, so that both velocity workers own some whatever the split."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    n = 0
    while any(len(ids) < 2 for ids in found.values()):
        sale_id = f"{prefix}s{n}"
        if len(found[sale_partition(sale_id, PARTITIONS)]) < 2:
            found[sale_partition(sale_id, PARTITIONS)].append(sale_id)
        n += 1
    return sorted(s for ids in found.values() for s in ids)


def publish_catalogue(pipeline: Pipeline, sales: list[str], start_ms: int) -> None:
    """Each sale has 4 skus; k0 has little stock in the warehouse and a short restock lead time, so it alerts in
    every sale (and alert state moves with the sales)."""
    with Publisher(pipeline.settings) as publisher:
        for sale in sales:
            publisher.send("sale", {"event_id": f"{sale}-v1", "sale_id": sale, "brand": "b", "updated_at": start_ms,
                                    "starts_at": start_ms - HOUR, "ends_at": start_ms + 8 * HOUR,
                                    "products": [{"sku": f"k{j}", "name": f"k{j}", "category": "c", "price": 20.0,
                                                  "stock": 60 if (sale, j) == (sales[0], 0) else 1_000_000}
                                                 for j in range(4)]})
        publisher.send("stock", {"event_id": "k0-s1", "sku": "k0", "on_hand": 150, "inbound": 0, "inbound_eta": None,
                                 "lead_time_hours": 0.5, "updated_at": start_ms})
        publisher.send("prior", {"event_id": f"{sales[0]}-f1", "sale_id": sales[0], "sku": "k0",
                                 "expected_units": 40.0, "low": 30.0, "high": 55.0, "author": "anna",
                                 "submitted_at": start_ms - 2 * HOUR})


def make_events(prefix: str, sales: list[str], n_orders: int, start_ms: int) -> list[tuple[str, dict]]:
    """A view, a cart add and an order of 1-3 units per step, spread over every sale and sku."""
    events: list[tuple[str, dict]] = []
    for i in range(n_orders):
        sale, sku, member, ts = sales[i % len(sales)], f"k{(i // len(sales)) % 4}", f"m{i % 41}", start_ms + i * 20
        events.append(("browse", {"event_id": f"{prefix}b{i}", "member_id": member, "sale_id": sale, "sku": sku,
                                  "ts": ts}))
        events.append(("cart", {"event_id": f"{prefix}c{i}", "member_id": member, "sale_id": sale, "sku": sku,
                                "action": "add", "quantity": 1, "unit_price": 20.0, "ts": ts + 1}))
        events.append(("order", {"event_id": f"{prefix}o{i}", "order_id": f"{prefix}o{i}", "member_id": member,
                                 "ts": ts + 2, "lines": [{"sale_id": sale, "sku": sku, "quantity": 1 + i % 3,
                                                          "unit_price": 20.0}]}))
    return events


def expected_totals(events: list[tuple[str, dict]]) -> dict[str, Counter[str]]:
    totals: dict[str, Counter[str]] = {}
    for kind, record in events:
        if kind == "order":
            for line in record["lines"]:
                sale = totals.setdefault(line["sale_id"], Counter())
                sale["orders"] += 1
                sale["units"] += line["quantity"]
        else:
            totals.setdefault(record["sale_id"], Counter())["views" if kind == "browse" else "carts"] += 1
    return totals


def publish_paced(pipeline: Pipeline, events: list[tuple[str, dict]], per_second: float) -> None:
    pacer = Pacer(rate=per_second)
    with Publisher(pipeline.settings) as publisher:
        for kind, record in events:
            pacer.wait()
            publisher.send(kind, record)


def gauges(child: WorkerProcess) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{child.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(salepulse_owned_partitions|salepulse_recovering) (\S+)$", text, re.M)}


def owns(pipeline: Pipeline, child: WorkerProcess) -> int:
    """Partitions the worker owns with their state rebuilt (0 while it recovers)."""
    try:
        g = gauges(child)
    except OSError:
        return 0
    return int(g.get("salepulse_owned_partitions", 0)) if not g.get("salepulse_recovering", 1) else 0


def drained(pipeline: Pipeline) -> bool:
    """Everything produced is committed by the ingest, the velocity workers and the sink."""
    s, t = pipeline.settings, pipeline.settings.topics
    return (group_lag(s, s.groups.ingest, list(t.events)) == 0
            and group_lag(s, s.groups.worker("velocity"), [t.facts]) == 0
            and group_lag(s, pipeline.sink_group, [t.facts, t.snapshots]) == 0)


def wait_drained(pipeline: Pipeline, timeout: float) -> None:
    streak = [0]

    def twice() -> bool:
        streak[0] = streak[0] + 1 if drained(pipeline) else 0
        return streak[0] >= 2

    wait_until(twice, timeout, "ingest, velocity workers and sink to commit everything produced", every=1.0)


def live_totals(pipeline: Pipeline, child: WorkerProcess, sales: list[str]) -> dict[str, Counter[str]]:
    out = {}
    for sale in sales:
        view = pipeline.get(f"/sales/{sale}", child.port)
        out[sale] = Counter({k: sum(p[k] for p in view["products"]) for k in ("views", "carts", "orders", "units")})
    return out


def clickhouse_totals(pipeline: Pipeline, prefix: str) -> dict[str, Counter[str]]:
    rows = pipeline.clickhouse().query(
        "SELECT sale_id, sum(views), sum(carts), sum(orders), sum(units) FROM velocity_minute "
        "WHERE startsWith(sale_id, {p:String}) GROUP BY sale_id", parameters={"p": prefix}).result_rows
    return {r[0]: Counter(dict(zip(["views", "carts", "orders", "units"], map(int, r[1:]), strict=True)))
            for r in rows}


def read_alerts(pipeline: Pipeline) -> list[dict]:
    consumer = Consumer(pipeline.settings.kafka_config(**{"group.id": f"scale-alerts-{uuid.uuid4().hex}",
                                                          "auto.offset.reset": "earliest"}))
    topic = pipeline.settings.topics.alerts
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    consumer.subscribe([topic])
    seen, found, codec = {p: -1 for p in ends}, [], Codec()
    deadline = time.monotonic() + 30
    while any(seen[p] < ends[p] - 1 for p in ends) and time.monotonic() < deadline:
        for message in consumer.consume(200, timeout=0.5):
            if not message.error():
                seen[message.partition()] = message.offset()
                found.append(codec.decode(message.value())[1])
    consumer.close()
    return found


def same_from_everyone(pipeline: Pipeline, workers: list[WorkerProcess], sales: list[str],
                       expected: dict[str, Counter[str]], when: str) -> None:
    for child in workers:
        listed = {s["sale_id"] for s in pipeline.get("/sales", child.port)["sales"]}
        assert set(sales) <= listed, f"{when}: {child.name} lists {len(set(sales) & listed)} of {len(sales)} sales"
        live = live_totals(pipeline, child, sales)
        wrong = {s: (dict(live[s]), dict(expected[s])) for s in sales if live[s] != expected[s]}
        if wrong:  # say whether the figures were late (converge) or lost (never do), then fail either way
            waited = time.monotonic()
            try:
                wait_until(lambda c=child: live_totals(pipeline, c, sales) == expected, 20, "convergence")
                late = f"they converged {time.monotonic() - waited:.1f} s later"
            except AssertionError:
                late = "they did not converge within 20 s"
            raise AssertionError(f"{when}: {child.name} answers wrong live totals (got, produced): {wrong}; {late}; "
                                 f"sale partitions {[(s, sale_partition(s, PARTITIONS)) for s in wrong]}; "
                                 f"log {child.log}")


def test_two_velocity_workers_a_sigkill_and_a_restart_keep_the_whole_shop_exact(pipeline: Pipeline) -> None:
    prefix = f"so-{uuid.uuid4().hex[:6]}-"
    sales = sale_ids(prefix)
    start_ms = int(time.time() * 1000) - 60_000
    publish_catalogue(pipeline, sales, start_ms)
    a, b = pipeline.spawn("velocity", "velocity-a"), pipeline.spawn("velocity", "velocity-b")
    prefs = pipeline.spawn("preferences", "preferences")
    for child in (a, b, prefs):
        pipeline.wait_ready(child, 120)
    wait_until(lambda: owns(pipeline, a) > 0 and owns(pipeline, b) > 0
               and owns(pipeline, a) + owns(pipeline, b) == PARTITIONS, 90,
               "the two velocity workers to split the partitions and rebuild their state")
    pipeline.start_sink()

    first = make_events(prefix + "1-", sales, 3000, start_ms)
    producer = threading.Thread(target=publish_paced, args=(pipeline, first, 1500.0))
    producer.start()
    wait_until(lambda: pipeline.get("/stats", a.port)["events_processed"] > 1500, 60, "worker a to be mid-stream")
    pipeline.kill(a)
    killed_at = time.monotonic()
    # The survivor takes over: it owns every partition with its state rebuilt and answers again.
    wait_until(lambda: owns(pipeline, b) == PARTITIONS, 90, "worker b to own every partition after the SIGKILL")
    handover_s = time.monotonic() - killed_at
    before = pipeline.get("/stats", b.port)["events_processed"]
    wait_until(lambda: not producer.is_alive() or pipeline.get("/stats", b.port)["events_processed"] > before, 30,
               "worker b to process events again")
    print(f"handover after SIGKILL: survivor owns all {PARTITIONS} partitions, state rebuilt, {handover_s:.1f} s")
    assert handover_s <= HANDOVER_TARGET_S, f"the survivor took {handover_s:.1f} s (target {HANDOVER_TARGET_S} s)"
    producer.join(120)
    assert not producer.is_alive(), "the producer did not finish"
    wait_drained(pipeline, 180)
    pipeline.stop_sink()

    expected = expected_totals(first)
    in_clickhouse = clickhouse_totals(pipeline, prefix)
    assert {s: in_clickhouse.get(s) for s in sales} == expected, "ClickHouse totals differ from what was produced"
    same_from_everyone(pipeline, [b], sales, expected, "after the SIGKILL and the drain")

    # Restart the killed worker: a rebalance back. Then more load, while both own partitions again.
    a2 = pipeline.spawn("velocity", "velocity-a-restarted")
    pipeline.wait_ready(a2, 120)
    wait_until(lambda: owns(pipeline, a2) > 0 and owns(pipeline, a2) + owns(pipeline, b) == PARTITIONS, 90,
               "the restarted worker to take partitions back and both to rebuild their state")
    same_from_everyone(pipeline, [a2, b], sales, expected, "after the rebalance back, before new load")
    pipeline.start_sink()
    second = make_events(prefix + "2-", sales, 1000, start_ms + 70_000)
    publish_paced(pipeline, second, 2000.0)
    wait_drained(pipeline, 180)
    pipeline.stop_sink()
    for sale, counts in expected_totals(second).items():
        expected[sale] += counts
    in_clickhouse = clickhouse_totals(pipeline, prefix)
    assert {s: in_clickhouse.get(s) for s in sales} == expected, "ClickHouse double counted after the restart"
    # Owned sales answer at once; the others once their owner's last snapshot (sent each second) is read.
    wait_until(lambda: all(live_totals(pipeline, c, sales) == expected for c in (a2, b)), 30,
               "both workers to show the totals produced")
    same_from_everyone(pipeline, [a2, b], sales, expected, "after the restart and more load")

    alerts = read_alerts(pipeline)
    repeated = {i: n for i, n in Counter(al["alert_id"] for al in alerts).items() if n > 1}
    print(f"alerts: {Counter(al['status'] for al in alerts)} over {len({al['sale_id'] for al in alerts})} sales")
    assert alerts, "the low-stock sku raised no alert: the alert checks below would prove nothing"
    assert not repeated, f"alert ids repeated: {repeated}"

    # A member's ranking does not depend on which velocity worker the popularity came from: the preferences
    # worker answers, and the velocity workers name the role that does.
    def ranking() -> list[str]:
        return [item["sale_id"] for item in pipeline.get("/members/m1/sales?k=20", prefs.port)["items"]]

    first_answer = ranking()
    assert set(first_answer) & set(sales), "member m1's ranking names none of the sales"
    assert ranking() == first_answer
    for child in (a2, b):
        with pytest.raises(urllib.error.HTTPError) as refused:
            pipeline.get("/members/m1/sales", child.port)
        assert refused.value.code == 404
