"""The pure steps behind the worker's agents, without Faust or Kafka."""

from __future__ import annotations

from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.steps import MemberCache, count, lag_groups, preference_update
from salepulse.streams.domain.velocity import Fact, SaleState
from salepulse.streams.platform.config import Settings


def _facts(offsets: list[int], source: str = "events.order:0", prefix: str = "o") -> list[tuple[Fact, str, int]]:
    return [(Fact(f"{prefix}{o}", "s1", "k1", "order", 1, 10.0, 1_000 + o), source, o) for o in offsets]


def test_count_counts_each_source_offset_once() -> None:
    state = SaleState("s1")
    first = count(_facts([1, 2, 3]), state)
    assert [f.event_id for f in first.counted] == ["o1", "o2", "o3"] and first.duplicates == 0
    replay = count(_facts([2, 3, 4]), state)  # a redelivery overlapping the first batch
    assert [f.event_id for f in replay.counted] == ["o4"] and replay.duplicates == 2
    assert state.skus["k1"].units == 4


def test_count_keeps_sources_apart() -> None:
    state = SaleState("s1")
    count(_facts([5]), state)
    other = count(_facts([5], source="events.order:1", prefix="p"), state)
    assert len(other.counted) == 1 and state.skus["k1"].units == 2


def test_count_drops_a_retried_order_at_a_new_offset() -> None:
    state = SaleState("s1")
    count(_facts([5]), state)
    retried = count([(Fact("o5", "s1", "k1", "order", 1, 10.0, 1_005), "events.order:0", 9)], state)
    assert retried.counted == [] and retried.duplicates == 1 and state.skus["k1"].units == 1


def test_preference_update_reads_the_catalogue() -> None:
    catalog = Catalog()
    catalog.apply("Sale", {"sale_id": "s1", "brand": "nike", "starts_at": 0, "ends_at": 3_600_000,
                           "products": [{"sku": "k1", "name": "Air", "category": "shoes", "price": 50.0,
                                         "stock": 10}]})
    signal = {"member_id": "m1", "sale_id": "s1", "sku": "k1", "unit_price": None, "kind": "cart",
              "quantity": 1, "action": "add", "ts": 7}
    update = preference_update(signal, catalog)
    assert (update["brand"], update["category"], update["price"]) == ("nike", "shoes", 50.0)
    assert preference_update({**signal, "unit_price": 42.0}, catalog)["price"] == 42.0


class _State:
    def __init__(self, value: int) -> None:
        self.value = value

    def to_bytes(self) -> bytes:
        return str(self.value).encode()


def test_member_cache_writes_evicted_and_dirty_members_once() -> None:
    written: list[tuple[str, bytes, str]] = []
    cache: MemberCache[_State, str] = MemberCache(2, lambda m: _State(0),
                                                  lambda m, value, token: written.append((m, value, token)))
    assert cache.get("a").value == 0  # loaded, not cached
    cache.put("a", _State(1), "e1")
    cache.put("b", _State(2), "e2")
    cache.put("a", _State(3), "e3")  # "a" becomes the most recent
    cache.put("c", _State(4), "e4")  # evicts "b", which is dirty
    assert written == [("b", b"2", "e2")]
    assert cache.flush() == 2 and cache.flush() == 0
    assert sorted(written[1:]) == [("a", b"3", "e3"), ("c", b"4", "e4")]
    cache.clear()
    assert not cache.states


def test_lag_groups_by_role() -> None:
    velocity = dict(lag_groups(Settings(worker_role="velocity", app_id="x")))
    assert velocity["x"] == [Settings().topics.facts]
    assert set(velocity) == {"x", "x-ingest", "salepulse-sink"}
    preferences = dict(lag_groups(Settings(worker_role="preferences", app_id="x")))
    assert preferences == {"x-preferences": [Settings().topics.signals]}  # snapshots: read whole, no group


def test_cors_origins_from_the_environment() -> None:
    assert Settings.from_env({}).cors_origins == ()
    assert Settings.from_env({"SALEPULSE_CORS_ORIGINS": " https://a.example , "}).cors_origins == ("https://a.example",)
