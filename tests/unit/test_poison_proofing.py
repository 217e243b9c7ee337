"""Poison-proofing (issue 9), pure half: the stream clock, the ingest's bounded dead letters and byte budgets, the
catalogue's guard, the sink's error sorting and bisection, and the bounded sale cache."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from salepulse.consumers.io.sink_errors import classify, isolate
from salepulse.schemas.codec import Codec
from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.poison import DEFAULT_MESSAGE_BYTES, EXCERPT_BYTES, digest
from salepulse.streams.io.ingest import BatchSplitter
from salepulse.streams.platform.bounded import SaleCache
from salepulse.streams.platform.clock import StreamClock
from tests.unit.test_ingest import Raw

T0 = 1_764_403_200_000
WALL = 1_796_000_000_000  # the wall clock of these tests (Dec 2026)
CODEC = Codec()


# --- the stream clock ---------------------------------------------------------------------------------------
def test_one_event_dated_2100_or_9e15_does_not_move_now() -> None:
    clock = StreamClock(wall_ms=lambda: WALL)
    for i in range(100):
        clock.observe(T0 + i * 1000)
    before = clock.advance()
    clock.observe(4_102_444_800_000)
    clock.observe(9_000_000_000_000_000)
    assert clock.advance() == before
    assert clock.ignored == 2


def test_a_replay_of_2019_and_a_60x_simulation_follow_their_own_time() -> None:
    clock = StreamClock(wall_ms=lambda: WALL)
    replay_start = 1_546_300_800_000  # 2019-01-01
    for i in range(5000):  # 60x: one simulated minute per real second, far behind the wall clock
        clock.observe(replay_start + i * 60_000)
        if i % 100 == 99:
            clock.advance()
    # The 90th percentile of the last 512 events trails the newest by ~51 events' worth of time.
    assert replay_start + 4900 * 60_000 <= clock.advance() <= replay_start + 4999 * 60_000


def test_skewed_events_can_move_now_at_most_to_the_wall_clock_plus_skew() -> None:
    clock = StreamClock(wall_ms=lambda: WALL, skew_ms=300_000)
    for _ in range(1000):
        clock.observe(WALL + 299_000)
    assert clock.advance() <= WALL + 300_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=300),
       st.lists(st.integers(min_value=0, max_value=WALL), min_size=20, max_size=300))
def test_the_clock_never_goes_back_nor_past_the_bound_and_one_outlier_never_moves_it(
        hostile: list[int], honest: list[int]) -> None:
    clock = StreamClock(window=64, wall_ms=lambda: WALL)
    seen = 0
    for ts in [*honest, *hostile]:
        clock.observe(ts)
        now = clock.advance()
        assert now >= seen and now <= WALL + clock.skew_ms
        seen = now
    steady = StreamClock(window=64, wall_ms=lambda: WALL)
    for ts in sorted(honest):
        steady.observe(ts)
    steady.advance()
    steady.observe(WALL + 200_000)  # one event within the skew, far ahead of the rest
    assert steady.advance() <= max(honest)  # it may shift the rank by one honest event, never to itself


# --- the ingest -----------------------------------------------------------------------------------------------
def _browse(offset: int, **fields: object) -> Raw:
    record = {"event_id": f"b{offset}", "member_id": "m1", "sale_id": "s1", "sku": "k1", "ts": T0, **fields}
    return Raw("events.browse", 0, offset, CODEC.encode("BrowseEvent", record))


def test_dead_letters_carry_an_excerpt_a_hash_the_size_and_the_stage_never_the_whole_input() -> None:
    junk = random.Random(1).randbytes(1_040_000)
    huge = _browse(2, sale_id="s" * 510_000)
    inf_cart = Raw("events.cart", 0, 3, CODEC.encode("CartEvent", {
        "event_id": "c1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "action": "add", "quantity": 1,
        "unit_price": math.inf, "ts": T0}))
    batch = BatchSplitter(CODEC, partitions=4).split([Raw("events.order", 0, 1, junk), huge, inf_cart, _browse(4)])
    letters = [CODEC.decode(value, timestamps="ms")[1] for _key, value in batch.deadletters]
    # the validation boundary (schemas/limits.py) refuses the long id and the infinite price before any output
    assert [letter["stage"] for letter in letters] == ["decode", "validate", "validate"]
    assert all(len(letter["value"]) <= EXCERPT_BYTES and len(value) < 4000 for letter, (_k, value)
               in zip(letters, batch.deadletters, strict=True))
    assert letters[0]["value_sha256"] == digest(junk) and letters[0]["value_size"] == len(junk)
    assert batch.kinds["browse"] == 1 and batch.facts_count == 1


def test_outputs_of_a_batch_of_long_ids_are_chunked_under_the_message_limit() -> None:
    # ids as long as the validation boundary allows (200 characters): 6,000 of them pass the byte budget many times
    messages = [_browse(i, event_id=f"{i}-".ljust(200, "x"), sku=f"{i}-".ljust(200, "k")) for i in range(6_000)]
    batch = BatchSplitter(CODEC, partitions=1).split(messages)
    assert batch.facts_count == 6_000 and not batch.deadletters
    assert len(batch.facts) > 1 and len(batch.signals) >= 1
    assert max(len(value) for _sale, value in [*batch.facts, *batch.signals]) < DEFAULT_MESSAGE_BYTES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_no_bytes_make_the_splitter_raise(data: bytes) -> None:
    batch = BatchSplitter(CODEC, partitions=4).split([Raw("events.order", 0, 0, data)])
    assert batch.facts_count + len(batch.deadletters) >= 1 or batch.kinds


# --- the catalogue --------------------------------------------------------------------------------------------
def test_poisoned_priors_and_stock_are_skipped_with_a_reason() -> None:
    catalog = Catalog()
    for value in (1e308, math.nan, math.inf, -1.0):
        assert catalog.apply("ExpertForecast", {"sale_id": "s", "sku": "k", "expected_units": value})
    assert catalog.apply("StockLevel", {"sku": "k", "on_hand": 1, "inbound": 0, "lead_time_hours": math.inf})
    assert catalog.priors == {} and catalog.stock == {} and catalog.rejected == 5
    assert catalog.apply("ExpertForecast", {"sale_id": "s", "sku": "k", "expected_units": 40.0}) is None


# --- the sink -------------------------------------------------------------------------------------------------
def test_errors_are_sorted_into_transient_and_permanent() -> None:
    assert classify(ConnectionError("ClickHouse unreachable (simulated outage)")) == "transient"
    assert classify(TimeoutError()) == "transient"
    assert classify(RuntimeError("something nobody foresaw")) == "transient"  # retried, as before
    assert classify(OverflowError("int too big")) == "permanent"
    assert classify(RuntimeError("Code: 53. DB::Exception: TYPE_MISMATCH")) == "permanent"


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.sets(st.integers(min_value=0, max_value=299), max_size=12))
def test_bisection_keeps_every_good_row_and_isolates_exactly_the_bad_ones(n: int, bad: set[int]) -> None:
    bad = {b for b in bad if b < n}
    written: list[int] = []

    def insert(lo: int, hi: int) -> None:
        if any(i in bad for i in range(lo, hi)):
            raise ValueError("Unable to create native array for column `units`")
        written.extend(range(lo, hi))

    refused = isolate(insert, 0, n)
    assert {row for row, _ in refused} == bad
    assert sorted(written) == [i for i in range(n) if i not in bad]


def test_a_transient_error_during_bisection_propagates() -> None:
    calls = []

    def insert(lo: int, hi: int) -> None:
        calls.append((lo, hi))
        if len(calls) == 1:
            raise ValueError("Unable to create native array")
        raise ConnectionError("gone")

    try:
        isolate(insert, 0, 10)
    except ConnectionError:
        pass
    else:
        raise AssertionError("a ClickHouse outage mid-bisection must not quarantine rows")


# --- bounded state ----------------------------------------------------------------------------------------------
def test_unknown_sale_ids_cost_bounded_memory_whatever_their_number() -> None:
    cache = SaleCache(max_live=10, max_unknown=5)
    evicted_unknown = 0
    for i in range(10_000):
        cache.put(f"made-up-{i}", object(), known=False)
        evicted_unknown += sum(1 for _, unknown in cache.evict() if unknown)
    assert len(cache) == 5 and evicted_unknown == 9_995
    for i in range(20):
        cache.put(f"real-{i}", object(), known=True)
    cache.evict()
    assert len(cache) - len(cache.unknown) == 10

